"""``micropl survey | scan | spectrum | g2 | demo``: run a procedure from the terminal.

Each command loads a setup (the simulated one by default), runs one procedure
in a session that stores everything in an HDF5 file, shows rich progress bars
on a terminal, and prints a summary (``--json`` for machine output).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from micropl.acquisition import logs
from micropl.acquisition.cli import UsageError
from micropl.acquisition.config import format_validation_error
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.runner import Progress, RunResult
from micropl.acquisition.session import Session
from micropl.acquisition.setup import load_setup

log = logging.getLogger(__name__)

_PROCEDURES: dict[str, tuple[type[BaseModel], str]] = {
    "survey": (Survey, "find single QDs and measure each one's spectrum and g²"),
    "scan": (RasterScan, "record a PL map"),
    "spectrum": (SpectrumAcquisition, "acquire a spectrum at the current position"),
    "g2": (G2, "acquire an HBT g² measurement at the current position"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the acquisition commands and ``demo``."""
    for name, (_, help_text) in _PROCEDURES.items():
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        _common(parser, out_required=True)
        if name == "survey":
            parser.add_argument("--max-qds", type=int, help="largest number of QDs measured")
            parser.add_argument("--resume", metavar="FILE", type=Path,
                                help="continue the survey in FILE at the first QD not measured")
        parser.set_defaults(func=run_command, procedure=name)
    demo = subparsers.add_parser(
        "demo", help="run a fast survey on the simulated setup and write a report",
        description="A fast-mode survey of the simulated sample: writes runs/demo-<time>.h5 "
                    "and a report PNG, and prints a summary table.")
    _common(demo, out_required=False)
    demo.add_argument("--max-qds", type=int, default=30, help="QDs to measure (default 30)")
    demo.add_argument("--report", type=Path, help="report PNG (default: beside the file)")
    demo.set_defaults(func=run_demo, procedure="survey")


def _common(parser: argparse.ArgumentParser, *, out_required: bool) -> None:
    parser.add_argument("--config", type=Path, help="setup YAML (default: simulated setup)")
    parser.add_argument("--out", type=Path, required=False,
                        help="session file to write (.h5)" + ("" if out_required else
                                                               " (default runs/demo-<time>.h5)"))
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: simulated instruments advance time instantly")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="procedure parameter, e.g. spectrum.exposure_s=2 (repeatable)")


# --------------------------------------------------------------------------- parameters
def build_procedure(name: str, params: list[str], extra: dict[str, Any] | None = None) -> Any:
    """The procedure ``name`` with ``KEY=VALUE`` overrides (dotted keys for nested models)."""
    cls = _PROCEDURES[name][0]
    values: dict[str, Any] = {}
    for item in params:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    values.update(extra or {})
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise UsageError(f"{name} parameters: {format_validation_error(exc)}") from None


# --------------------------------------------------------------------------- commands
def run_command(args: argparse.Namespace) -> int:
    if args.out is None and getattr(args, "resume", None) is None:
        raise UsageError(f"{args.procedure}: --out FILE.h5 is required")
    extra: dict[str, Any] = {}
    if getattr(args, "max_qds", None) is not None:
        extra["max_qds"] = args.max_qds
    resume = getattr(args, "resume", None)
    if resume is not None:
        return _resume(args, resume, extra)
    procedure = build_procedure(args.procedure, args.param, extra)
    _refuse_overwrite(args.out)
    result = execute(procedure, args.config, args.out, fast=args.fast, quiet=args.json)
    return _finish(args, result)


def run_demo(args: argparse.Namespace) -> int:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"demo-{stamp}.h5"
    _refuse_overwrite(out)
    procedure = build_procedure("survey", args.param, {"max_qds": args.max_qds})
    result = execute(procedure, args.config, out, fast=True, quiet=args.json)
    report = args.report or out.with_suffix(".png")
    from micropl.acquisition.report import write_report

    write_report(out, report)
    if not args.json:
        sys.stderr.write(f"report: {report}\n")
    args.out = out
    return _finish(args, result, report=report)


def _resume(args: argparse.Namespace, path: Path, extra: dict[str, Any]) -> int:
    from micropl.acquisition.storage import SessionReader

    with SessionReader(path) as reader:
        plan = reader.resume_plan()
        film = reader.film_reference()
    if plan is None:
        raise UsageError(f"{path}: holds no survey to resume")
    parameters, pending = plan
    if not pending:
        if not args.json:
            sys.stderr.write(f"{path}: every selected QD is already measured\n")
        args.out = path
        return _finish(args, None)
    parameters.update(extra)
    parameters["targets"] = pending
    try:
        procedure = Survey.model_validate(parameters).reusing_film(film)
    except ValidationError as exc:
        raise UsageError(f"{path}: stored survey parameters: "
                         f"{format_validation_error(exc)}") from None
    result = execute(procedure, args.config, path, fast=args.fast, quiet=args.json,
                     resume=True)
    args.out = path
    return _finish(args, result)


def execute(procedure: Any, config: Path | None, out: Path, *, fast: bool, quiet: bool,
            resume: bool = False) -> RunResult:
    """Load the setup, run ``procedure`` into ``out`` with progress bars, close everything."""
    with load_setup(config, clock_mode="fast" if fast else None) as setup:
        with Session(setup, out, resume=resume) as session:
            with _progress_display(session, quiet):
                return session.run(procedure)


def _refuse_overwrite(path: Path) -> None:
    if path.exists():
        raise UsageError(f"{path}: already exists; choose another --out (or --resume it)")
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)


def _finish(args: argparse.Namespace, result: RunResult | None, **extra: Any) -> int:
    from micropl.acquisition.cli_info import print_summary, session_summary
    from micropl.acquisition.storage import SessionReader

    with SessionReader(args.out) as reader:
        summary = session_summary(reader)
    if result is not None:
        summary["result"] = {"status": result.status, "reason": result.reason,
                             "procedure": result.procedure, "run_id": result.run_id}
    summary.update({k: str(v) for k, v in extra.items()})
    if args.json:
        print(json.dumps(summary, default=_json_default))
    else:
        print_summary(summary)
    if result is not None and result.status != "completed":
        sys.stderr.write(f"micropl: run {result.status}: {result.reason}{logs.hint()}\n")
        return 1
    return 0


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------- progress
class _progress_display:  # noqa: N801 - used as a context manager
    """Rich progress bars fed from the stream's Progress records (terminals only)."""

    def __init__(self, session: Session, quiet: bool, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self.enabled = not quiet and self.console.is_terminal
        self.session = session
        self.progress = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _progress_display:
        if not self.enabled:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.progress = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(),
                                     TimeRemainingColumn(),
                                     console=self.console, transient=False)
        self.progress.start()
        self.session.on(self._update, maxlen=200)
        return self

    def _update(self, item: Any) -> None:
        if not isinstance(item, Progress) or self.progress is None:
            return
        # One bar for the QDs ("QD 3/30"), one per other stage ("cooling camera (…)").
        key = "qd" if item.stage.startswith("QD") else item.stage.split(" (")[0]
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(item.stage, total=item.total)
        self.progress.update(self.tasks[key], description=item.stage, completed=item.done,
                             total=item.total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
