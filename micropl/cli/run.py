"""``micropl survey | scan | spectrum | g2 | demo``: run a procedure from the terminal.

Each command loads a setup (the simulated one by default), runs one procedure
in a session that stores everything in an HDF5 file, shows rich progress bars
on a terminal, and prints a summary (``--json`` for machine output).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from micropl.acquisition import logs
from micropl.acquisition.config import format_validation_error
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.runner import RunResult
from micropl.acquisition.session import Session
from micropl.acquisition.setup import load_setup
from micropl.cli import UsageError
from micropl.cli.output import ProgressDisplay, print_json

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
            parser.add_argument("--sample", metavar="NAME",
                                help="sample label stored in the session file (editable later "
                                     "with 'micropl label')")
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
    parser.add_argument("--raw-tags", choices=("all", "none", "around-peaks"),
                        help="raw time tags stored (default: the setup's storage.raw_tags, "
                             "all): around-peaks keeps only the tags of g² coincidences")
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
_OUT_HINT = "choose another --out (or --resume it)"


def run_command(args: argparse.Namespace) -> int:
    resume = getattr(args, "resume", None)
    if getattr(args, "sample", None) is not None:
        from micropl.reanalysis.labels import check_label

        args.sample = check_label(args.sample)  # refused before any instrument is opened
    extra: dict[str, Any] = {}
    if getattr(args, "max_qds", None) is not None:
        extra["max_qds"] = args.max_qds
    if resume is not None:
        if args.out is not None:
            raise UsageError(f"{resume}: --out cannot be given with --resume (the survey "
                             f"continues in the file it resumes)")
        if args.param:
            raise UsageError(f"{resume}: --param cannot be given with --resume (the survey "
                             f"continues with the parameters stored in the file)")
        return _resume(args, resume, extra)
    if args.out is None:
        raise UsageError(f"{args.procedure}: --out FILE.h5 is required")
    procedure = build_procedure(args.procedure, args.param, extra)
    _refuse_overwrite(args.out)
    result = execute(procedure, args.config, args.out, fast=args.fast, quiet=args.json,
                     raw_tags=args.raw_tags)
    _label(args, args.out)
    return _finish(args, result)


def _label(args: argparse.Namespace, path: Path) -> None:
    """Store ``--sample`` in the closed session file (one attribute)."""
    if getattr(args, "sample", None) is not None:
        from micropl.reanalysis.labels import write_sample

        write_sample(path, args.sample)


def run_demo(args: argparse.Namespace) -> int:
    from micropl.acquisition.storage import prepare_output, write_new_file

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("runs") / f"demo-{stamp}.h5"
    _refuse_overwrite(out)
    report = args.report or out.with_suffix(".png")
    prepare_output(report, hint="choose another --report")
    procedure = build_procedure("survey", args.param, {"max_qds": args.max_qds})
    result = execute(procedure, args.config, out, fast=True, quiet=args.json,
                     raw_tags=args.raw_tags)
    from micropl.acquisition.report import write_report

    write_new_file(report, lambda tmp: write_report(out, tmp), hint="choose another --report")
    if not args.json:
        sys.stderr.write(f"report: {report}\n")
    args.out = out
    return _finish(args, result, report=report)


def _resume(args: argparse.Namespace, path: Path, extra: dict[str, Any]) -> int:
    """Continue the survey stored in ``path`` on the setup it records.

    The file is locked first: a second resume (or a live writer) is refused
    before anything is read or any instrument opened.
    """
    from micropl.acquisition.storage import SessionLock, SessionReader, SessionWriter

    if extra:
        build_procedure("survey", [], extra)  # --max-qds must be valid on its own
    lock = SessionLock.acquire(path)
    try:
        with SessionReader(path, assume_no_writer=True) as reader:
            state = reader.survey_state()
            config_text = reader.config_text
        if state is None:
            raise UsageError(f"{path}: holds no survey to resume")
        config, text = _resume_setup(path, config_text, args.config)
        procedure, n_pending = plan_resume(path, state, extra)
        if procedure is None:
            closed = len(state.open_runs)
            if closed:
                SessionWriter.resume(path, lock=lock).close()  # closes the interrupted runs
            lock.release()
            if not args.json:
                note = f"; {closed} interrupted run(s) closed" if closed else ""
                sys.stderr.write(f"{path}: every selected QD is already measured{note}\n")
            _label(args, path)
            args.out = path
            return _finish(args, None)
        if not args.json:
            what = "the map did not finish: the survey starts again from the map" \
                if n_pending is None else f"{n_pending} QD(s) left to measure"
            sys.stderr.write(f"{path}: resuming: {what}\n")
        result = execute(procedure, config, path, fast=args.fast, quiet=args.json,
                         resume=True, config_text=text, resume_lock=lock,
                         raw_tags=args.raw_tags)
    finally:
        lock.release()
    _label(args, path)
    args.out = path
    return _finish(args, result)


def plan_resume(path: Path, state: Any, extra: dict[str, Any]) -> tuple[Any, int | None]:
    """The survey that continues ``state`` (a :class:`SurveyState`), and the QDs it measures.

    * The map had finished (its spot list is stored): the selection is rebuilt
      from the spot list with the stored parameters (so QDs whose target record
      was lost in the kill are measured too), merged with the stored targets;
      the QDs without a status are measured (at most ``max_qds`` of them when
      ``--max-qds`` is given). The stored film reference is reused, or taken
      on the stored map when none was stored.
    * No spot list and no stored target (killed or failed during the map): the
      whole survey runs again, in a new run.

    Returns
    -------
    (survey, n) : (Survey or None, int or None)
        None when nothing is left to measure; ``n`` the number of QDs, None
        when the map is redone.
    """
    from micropl.acquisition.procedures.raster_scan import MapImage
    from micropl.acquisition.procedures.survey import Target

    parameters = {k: v for k, v in state.parameters.items() if k != "targets"}
    original = _stored_survey(path, parameters)
    stored = {q.qd_id: q for q in state.qds}
    if state.spots is None and not stored:
        return _stored_survey(path, {**parameters, **extra}), None
    targets: dict[int, Any] = {}
    if state.spots is not None:
        try:
            targets = {t.qd_id: t for t in original.select(state.spots)}
        except (ValueError, IndexError, TypeError) as exc:
            raise _bad_file(path, f"stored spot list: {exc}") from None
    for q in stored.values():
        targets[q.qd_id] = Target(qd_id=q.qd_id, x_um=q.x_um, y_um=q.y_um,
                                  amplitude=q.amplitude, snr=q.snr)
    pending = [targets[i] for i in sorted(targets)
               if i not in stored or stored[i].status == "pending"]
    if extra.get("max_qds") is not None:
        pending = pending[: extra["max_qds"]]
    if not pending:
        return None, 0
    survey = _stored_survey(path, {**parameters, **extra,
                                   "targets": [t.model_dump() for t in pending]})
    image = None
    if state.film is None and survey.film_reference:
        image = _stored_map(state.map_lines, original.scan, MapImage)
    announce = [t.qd_id for t in pending if t.qd_id not in stored]
    return survey.resuming(film=state.film, image=image, announce=announce), len(pending)


def _bad_file(path: Path, why: str) -> Exception:
    from micropl.errors import FileFormatError

    return FileFormatError(f"{path}: {' '.join(why.split())}")


def _stored_survey(path: Path, parameters: dict[str, Any]) -> Survey:
    try:
        return Survey.model_validate(parameters)
    except ValidationError as exc:
        raise UsageError(f"{path}: stored survey parameters: "
                         f"{format_validation_error(exc)}") from None


def _stored_map(lines: list[Any], scan: Any, image_type: type) -> Any:
    """The PL map rebuilt from its stored lines, or None when they do not make one."""
    import numpy as np

    x_um, y_um = scan.axes_um()
    by_row = {int(line.line_index): line for line in lines}
    if sorted(by_row) != list(range(y_um.size)):
        return None
    counts = np.zeros((y_um.size, x_um.size))
    for row, line in by_row.items():
        if np.shape(line.counts) != (x_um.size,):
            return None
        counts[row] = line.counts
    return image_type(x_um=x_um, y_um=y_um, counts=counts, dwell_s=scan.dwell_s,
                      source=scan.source)


def _resume_setup(path: Path, stored_text: str, config: Path | None
                  ) -> tuple[Path | None, str | None]:
    """(config file, config text) to resume on: the setup ``path`` records.

    Raises
    ------
    FileFormatError
        When the stored setup is missing or invalid.
    UsageError
        When ``config`` describes another setup (instruments, sample, safety;
        the clock mode may differ), naming the first difference.
    """
    from micropl.acquisition.config import load_config
    from micropl.errors import ConfigError

    if not stored_text.strip():
        if config is None:
            raise _bad_file(path, "records no setup (empty config_text); give the setup it "
                                  "was recorded with as --config")
        return config, None
    try:
        stored, _ = load_config(text=stored_text)
    except ConfigError as exc:
        raise _bad_file(path, f"the setup stored in the file (config_text) is invalid: "
                              f"{exc}") from None
    if config is None:
        return None, stored_text
    given, _ = load_config(config)
    difference = setup_difference(given, stored)
    if difference:
        raise UsageError(f"{path}: --config differs from the setup this session was recorded "
                         f"with: {difference} (--config vs recorded); resume without --config "
                         f"to use the recorded setup")
    return config, None


def setup_difference(given: BaseModel, stored: BaseModel) -> str | None:
    """The first difference between two validated setups, ignoring the clock mode.

    Returns
    -------
    str or None
        ``"camera.driver 'andor' vs 'simulated'"`` (``given`` first), None
        when they describe the same setup.
    """
    a = given.model_dump(mode="json", exclude={"clock"})
    b = stored.model_dump(mode="json", exclude={"clock"})
    return _first_difference(a, b, "")


def _first_difference(a: Any, b: Any, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b), key=lambda k: (k != "driver", str(k)))
        for key in keys:
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return f"{sub} {a.get(key, '(absent)')!r} vs {b.get(key, '(absent)')!r}"
            found = _first_difference(a[key], b[key], sub)
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            found = _first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where} {a!r} vs {b!r}"


def execute(procedure: Any, config: Path | None, out: Path, *, fast: bool, quiet: bool,
            resume: bool = False, config_text: str | None = None,
            resume_lock: Any = None, raw_tags: str | None = None) -> RunResult:
    """Load the setup, run ``procedure`` into ``out`` with progress bars, close everything.

    ``config_text`` (the setup stored in a resumed file) is used instead of ``config``.
    """
    with load_setup(None if config_text is not None else config, text=config_text,
                    clock_mode="fast" if fast else None) as setup:
        procedure.check(setup)  # refused parameters leave no session file behind
        with Session(setup, out, resume=resume, resume_lock=resume_lock,
                     raw_tags=raw_tags) as session:
            with ProgressDisplay(session, quiet):
                return session.run(procedure)


def _refuse_overwrite(path: Path) -> None:
    """Refuse an existing ``--out`` (or one that cannot be created) before any work.

    The creation of the session file is exclusive as well (see
    :meth:`SessionWriter.create`), so a file created meanwhile is not replaced.
    """
    from micropl.acquisition.storage import prepare_output

    prepare_output(path, hint=_OUT_HINT)


def _finish(args: argparse.Namespace, result: RunResult | None, **extra: Any) -> int:
    from micropl.acquisition.storage import SessionReader
    from micropl.acquisition.summary import session_summary
    from micropl.cli.info import print_summary

    with SessionReader(args.out) as reader:
        summary = session_summary(reader)
    if result is not None:
        summary["result"] = {"status": result.status, "reason": result.reason,
                             "procedure": result.procedure, "run_id": result.run_id}
    summary.update({k: str(v) for k, v in extra.items()})
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
    if result is not None and result.status != "completed":
        sys.stderr.write(f"micropl: run {result.status}: {result.reason}{logs.hint()}\n")
        return 1
    return 0
