"""``micropl reanalyze SESSION... --out RESULTS``: re-fit and re-judge every QD, one table.

Every QD of every session is re-fitted from its stored raw data (accumulated spectrum
and its frames, raw time tags) with the settings given (the sessions' own for those
not given), re-judged (``single``, ``multiple_emitters``, ``poor_fit``, ``failed``) and
written as one row of RESULTS (Parquet or CSV by the suffix). The session files are
only read. The work runs on Dask (:mod:`micropl.reanalysis.schedule`): the local
process pool by default, ``--scheduler tcp://HOST:PORT`` on a cluster. A QD whose
analysis fails is named on stderr (session and QD) and the others go on; the exit code
is then 1, after the table is written.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from micropl.acquisition.config import format_validation_error
from micropl.cli import UsageError
from micropl.cli.output import print_json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reanalyze`` command."""
    parser = subparsers.add_parser(
        "reanalyze", help="re-fit and re-judge every QD of sessions into one results table",
        description="Re-fit every QD's stored spectra and g² from the raw data, re-judge "
                    "its status (single, multiple_emitters, poor_fit, failed) and write one "
                    "results table (Parquet or CSV by the suffix of --out). Settings not "
                    "given are each session's own. The session files are only read.")
    parser.add_argument("sessions", nargs="+", type=Path, metavar="SESSION",
                        help="session files (.h5)")
    parser.add_argument("--out", type=Path, required=True, metavar="RESULTS",
                        help="results table to write: .parquet or .csv (never overwritten)")
    fit = parser.add_argument_group("fit settings (default: each session's own)")
    fit.add_argument("--model", choices=("lorentzian", "gaussian", "voigt"),
                     help="line shape of the spectrum fit")
    fit.add_argument("--window-fraction", type=float, metavar="F",
                     help="fraction of the period integrated around each g² peak, 0 < F <= 1")
    fit.add_argument("--bin-ps", type=int, metavar="B", dest="g2_bin_ps",
                     help="g² histogram bin width, ps")
    fit.add_argument("--n-side", type=int, metavar="N", help="side peaks per side for g²(0)")
    fit.add_argument("--no-peak-train", dest="peak_train", action="store_false",
                     help="skip the peak-train fit (background-free g²(0), lifetime)")
    rules = parser.add_argument_group("selection rules")
    rules.add_argument("--bgcorr", choices=("yes", "no"), default="yes",
                       help="judge single emitters on the background-corrected g²(0) "
                            "(yes, the survey's rule) or on the raw ratio (no)")
    rules.add_argument("--single-threshold", type=float, metavar="T",
                       help="single emitter: g²(0) + n·σ below T (default 0.5)")
    rules.add_argument("--single-n-sigma", type=float, metavar="N",
                       help="the n of that rule (default 2)")
    rules.add_argument("--no-two-line-test", dest="two_line_test", action="store_false",
                       help="do not flag spectra with two resolved lines as multiple emitters")
    where = parser.add_argument_group("execution")
    where.add_argument("--scheduler", default="processes", metavar="WHERE",
                       help="processes (default: Dask's local process pool), threads, sync, "
                            "or a Dask scheduler address tcp://HOST:PORT")
    where.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes or threads (default: the CPUs)")
    where.add_argument("--chunk-qds", type=int, default=4, metavar="N",
                       help="QDs per task (default 4)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> Any:
    from micropl.reanalysis.settings import ReanalysisSettings

    given = {"model": args.model, "window_fraction": args.window_fraction,
             "g2_bin_ps": args.g2_bin_ps, "n_side": args.n_side,
             "single_threshold": args.single_threshold, "single_n_sigma": args.single_n_sigma}
    values: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    values.update(bgcorr=args.bgcorr == "yes", two_line_test=args.two_line_test,
                  peak_train=args.peak_train)
    try:
        return ReanalysisSettings(**values)
    except ValidationError as exc:
        text = format_validation_error(exc)
        option = text.split(":", 1)[0].replace("_", "-").replace("g2-bin-ps", "bin-ps")
        raise UsageError(f"--{option}:{text.split(':', 1)[1] if ':' in text else text}") \
            from None


def run(args: argparse.Namespace) -> int:
    """Re-analyse; 0 when every QD was analysed (failed QDs included), 1 when a task raised."""
    from micropl.reanalysis.schedule import check_scheduler, reanalyze
    from micropl.reanalysis.table import check_out, write_table

    settings = _settings(args)
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.chunk_qds < 1:
        raise UsageError(f"--chunk-qds must be >= 1, got {args.chunk_qds}")
    check_scheduler(args.scheduler)
    check_out(args.out)  # before any work
    for session in args.sessions:
        if not session.exists():
            raise FileNotFoundError(2, "No such file or directory", str(session))
    with _Bar(quiet=args.json) as bar:
        result = reanalyze([str(s) for s in args.sessions], settings,
                           scheduler=args.scheduler, workers=args.workers,
                           chunk_qds=args.chunk_qds, progress=bar.update)
    # The settings only: the table does not depend on where it was computed.
    out = write_table(result.rows, args.out, settings.describe())
    failed = result.failed_tasks
    for row in failed:
        sys.stderr.write(f"micropl: {row['session']} QD {row['qd_id']}: {row['reason']}\n")
    counts = Counter(str(r["status"]) for r in result.rows)
    summary = {"out": str(out), "n_sessions": len(args.sessions), "n_qds": len(result.rows),
               "n_tasks": result.n_tasks, "scheduler": result.scheduler,
               "workers": result.workers, "status_counts": dict(sorted(counts.items())),
               "failed_tasks": [{"session": r["session"], "qd_id": r["qd_id"],
                                 "reason": r["reason"]} for r in failed],
               "settings": settings.describe()}
    if args.json:
        print_json(summary)
    else:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        sys.stdout.write(f"{out}: {len(result.rows)} QDs from {len(args.sessions)} "
                         f"session(s) ({parts}); {result.n_tasks} tasks on "
                         f"{result.scheduler}\n")
    return 1 if failed else 0


class _Bar:
    """A rich progress bar of the tasks on stderr (terminals only)."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = not quiet and self.console.is_terminal
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn("reanalyze"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     console=self.console)
            self.progress.start()
        return self

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("reanalyze", total=total)
        self.progress.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
