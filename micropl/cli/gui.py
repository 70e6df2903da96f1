"""``micropl gui``: the PyQt5 + pyqtgraph application (simulated setup by default).

``--screenshot FILE.png --run survey`` runs a small fast survey, saves a
picture of the main window and quits; it works offscreen
(``QT_QPA_PLATFORM=offscreen``).

Before the window opens, the Qt platform is checked: missing system libraries
of the platform plugin (e.g. ``libxcb-icccm4`` on a fresh Debian) or no
display are one line naming what to install, exit code 2.

SIGTERM, SIGHUP and SIGINT end it safely (laser off, run aborted naming the
signal, session file closed) with exit code 128 + the signal's number and one
line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import signal
import sys
from pathlib import Path

from micropl.cli import UsageError

__all__ = ["register", "run", "check_platform"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gui`` command."""
    text = "open the graphical interface (map, spectrum, g², instruments, survey)"
    parser = subparsers.add_parser("gui", help=text, description=text)
    parser.add_argument("--config", type=Path, help="setup YAML (default: simulated setup)")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: simulated instruments advance time instantly")
    parser.add_argument("--out", type=Path,
                        help="session file to write (default runs/gui-<time>.h5)")
    parser.add_argument("--no-store", action="store_true", help="write no session file")
    parser.add_argument("--screenshot", type=Path, metavar="FILE.png",
                        help="save a picture of the window when the run ended, then quit")
    parser.add_argument("--run", metavar="PROCEDURE",
                        help="start a procedure at once (survey: a small demo survey)")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS",
                        help="quit after this many seconds (a run still going is aborted)")
    parser.add_argument("--size", default="1600x1000", metavar="WxH",
                        help="window size in pixels (default 1600x1000)")
    parser.set_defaults(func=run)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1600x1000") from None
    if not (200 <= w <= 10000 and 200 <= h <= 10000):
        raise UsageError(f"--size {text!r}: width and height must be 200–10000 px")
    return w, h


def run(args: argparse.Namespace) -> int:
    """Run the GUI; returns the exit code."""
    from micropl.acquisition.procedures import PROCEDURES

    size = _size(args.size)
    if args.run is not None and args.run not in PROCEDURES:
        raise UsageError(f"--run {args.run!r}: choose one of {', '.join(PROCEDURES)}")
    if args.exit_after is not None and not args.exit_after > 0:
        raise UsageError(f"--exit-after {args.exit_after}: must be > 0 s")
    if args.screenshot is not None and args.screenshot.suffix.lower() != ".png":
        raise UsageError(f"--screenshot {args.screenshot}: the file must end in .png")
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(2, "No such file or directory", str(args.config))
    check_platform()
    out = None
    if not args.no_store:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = args.out or Path("runs") / f"gui-{stamp}.h5"

    from micropl.gui.app import run_gui

    code = run_gui(args.config, fast=args.fast, out=out, screenshot=args.screenshot,
                   run=args.run, exit_after_s=args.exit_after, size=size)
    if code > 128:
        report_signal_exit(code, out)
    return code


def check_platform() -> None:
    """Refuse to start (one line, exit 2) when Qt could not open its platform plugin here.

    Done before any QApplication exists: Qt aborts the process on a missing
    library of its platform plugin (see :mod:`micropl.gui.platform_check`).
    """
    from micropl.gui.platform_check import platform_problem

    problem = platform_problem()
    if problem is not None:
        raise UsageError(problem)


def report_signal_exit(code: int, out: Path | None) -> None:
    """One line on stderr after signal ``code - 128`` ended the GUI."""
    try:
        name = signal.Signals(code - 128).name
    except ValueError:
        name = f"signal {code - 128}"
    stored = f", {out} closed" if out is not None else ""
    # After SIGHUP the terminal may be gone: a failed write must not change the exit code.
    with contextlib.suppress(OSError):
        sys.stderr.write(f"micropl: {name} received: window closed, a run in progress "
                         f"aborted, instruments were made safe{stored}\n")
        sys.stderr.flush()
