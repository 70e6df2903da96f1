"""``micropl replay FILE``: re-run the live analysis on recorded data.

Argument parsing and printing only: the :class:`~micropl.acquisition.replay.Replay`
procedure, the session loader and :func:`~micropl.acquisition.replay.open_replay`
live in :mod:`micropl.acquisition.replay`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import sys
from pathlib import Path
from typing import Any

from micropl.acquisition import logs
from micropl.acquisition.live import AnalysisSettings
from micropl.acquisition.replay import Replay, check_source, open_replay, replay_source_of
from micropl.analysis.g2 import G2Result, histogram_bins, pulsed_window_ps
from micropl.cli import UsageError
from micropl.cli.output import print_json
from micropl.errors import FileFormatError
from micropl.simulators import replay as rp

__all__ = ["register", "run"]


# --------------------------------------------------------------------------- command
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` command."""
    text = "replay a recorded session or PTU file through the live analysis"
    parser = subparsers.add_parser(
        "replay", help=text,
        description="Replay recorded data (micropl session file or PTU T2) through replay "
                    "instruments, the runner and the live analysis, optionally with other fit "
                    "settings, into a new session file that records its source.")
    parser.add_argument("file", type=Path, help="session file (.h5) or PTU T2 file")
    parser.add_argument("--speed", default=None, metavar="X",
                        help="N× real time (1 = real time) or 'max' = as fast as possible "
                             "(default: max; 1 with --gui)")
    parser.add_argument("--out", type=Path, help="new session file (default runs/replay-<time>.h5)")
    parser.add_argument("--config", type=Path, help="replay setup YAML (default configs/replay.yaml)")
    parser.add_argument("--model", dest="spectrum_model", choices=("lorentzian", "gaussian", "voigt"),
                        help="spectrum line shape (default lorentzian)")
    parser.add_argument("--n-side", type=int, metavar="N", help="g² side peaks per side (default 5)")
    parser.add_argument("--bin-ps", type=int, metavar="B",
                        help="g² bin width, ps (default 128 for sessions, 64 for PTU files, "
                             "as micropl analyze g2)")
    parser.add_argument("--channels", nargs=2, type=int, metavar=("A", "B"),
                        help="PTU: input channels to correlate (default 1 2)")
    parser.add_argument("--rep-rate", type=float, dest="rep_rate_hz", metavar="HZ",
                        help="laser repetition rate, Hz (default: recorded / PTU sync rate)")
    parser.add_argument("--gui", action="store_true", help="replay in the GUI (play, pause, "
                                                           "seek, speed)")
    parser.add_argument("--json", action="store_true", help="machine output")
    parser.set_defaults(func=run)


def parse_speed(text: str | None, default: float) -> float:
    """``--speed``: a positive factor, or ``max``/``inf``/``fast`` for as fast as possible."""
    if text is None:
        return default
    if text.strip().lower() in ("max", "inf", "fast"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--speed {text!r}: expected a factor > 0 or 'max'") from None
    if not value > 0:
        raise UsageError(f"--speed {text!r}: must be > 0 (or 'max')")
    return value


def analysis_settings(args: argparse.Namespace, kind: str) -> AnalysisSettings:
    """Fit settings from the options (PTU default bin: that of ``analyze g2``)."""
    from pydantic import ValidationError

    from micropl.acquisition.config import format_validation_error
    from micropl.analysis.g2_files import DEFAULT_BIN_PS

    values: dict[str, Any] = {}
    if args.spectrum_model:
        values["spectrum_model"] = args.spectrum_model
    if args.n_side is not None:
        values["n_side"] = args.n_side
    if args.bin_ps is not None:
        values["g2_bin_ps"] = args.bin_ps
    elif kind == "ptu":
        values["g2_bin_ps"] = DEFAULT_BIN_PS
    try:
        return AnalysisSettings(**values)
    except ValidationError as exc:
        raise UsageError(f"replay analysis settings: {format_validation_error(exc)}") from None


def run(args: argparse.Namespace) -> int:
    """Replay ``args.file``; returns the exit code."""
    path: Path = args.file
    kind = check_source(path)
    speed = parse_speed(args.speed, 1.0 if args.gui else math.inf)
    analysis = analysis_settings(args, kind)
    if kind == "ptu":
        from micropl.analysis.g2_files import check_replay_rate

        check_replay_rate(path, args.rep_rate_hz, analysis.n_side, analysis.g2_bin_ps,
                          tuple(args.channels) if args.channels else None)
    out = args.out or Path("runs") / f"replay-{_dt.datetime.now():%Y%m%d-%H%M%S}.h5"
    from micropl.acquisition.storage import prepare_output

    # Early check; creating the session file is exclusive as well (never replaces a file).
    prepare_output(out, hint="choose another --out")
    if args.gui:
        from micropl.gui.app import run_replay_gui

        return run_replay_gui(path, out=out, speed=speed, analysis=analysis,
                              config=args.config)
    from micropl.acquisition.session import Session

    with open_replay(path, speed=speed, config=args.config,
                     channels=tuple(args.channels) if args.channels else None,
                     rep_rate_hz=args.rep_rate_hz) as setup:
        source = replay_source_of(setup)
        with Session(setup, out, analysis=analysis) as session:
            result = session.run(Replay.for_source(source, analysis))
    if result.status != "completed":
        sys.stderr.write(f"micropl: replay {result.status}: {result.reason}{logs.hint()}\n")
        return 1
    if kind == "ptu":
        return _print_g2(args, source, result.value, analysis, setup, out)
    return _print_session(args, out, source, analysis)


def _print_session(args: argparse.Namespace, out: Path, source: rp.ReplaySource,
                   analysis: AnalysisSettings) -> int:
    from micropl.acquisition.storage import SessionReader
    from micropl.acquisition.summary import session_summary
    from micropl.cli.info import print_summary

    with SessionReader(out) as reader:
        summary = session_summary(reader)
    summary["replay"] = {"source": str(source.path), "sha256": source.provenance["sha256"],
                         "source_software_version": source.provenance["software_version"],
                         "analysis": analysis.model_dump(), "out": str(out)}
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
        print(f"replayed {source.path} into {out}")
    return 0


def _print_g2(args: argparse.Namespace, source: rp.ReplaySource, result: G2Result | None,
              analysis: AnalysisSettings, setup: Any, out: Path) -> int:
    """The keys and values of ``micropl analyze g2 FILE.ptu --json``."""
    from micropl.cli.analyze.g2 import _human

    if result is None:
        raise FileFormatError(f"{args.file}: the replay produced no g²(0) (see the log)")
    data = source.extra["tag_data"]
    ch_a, ch_b = setup.apd_channels
    n_a = int((data.channel == ch_a).sum())
    n_b = int((data.channel == ch_b).sum())
    rate_hz = setup.laser.rep_rate_hz
    # The live core's window (n_side + 1 periods, rounded up to whole bins), from the
    # function the live core calls.
    window_ps = pulsed_window_ps(rate_hz, analysis.n_side, analysis.g2_bin_ps)
    duration = data.duration_s
    info = {"file": str(args.file), "kind": "ptu", "record_type": data.record_type,
            "channels": [ch_a, ch_b], "n_tags": n_a + n_b, "n_tags_a": n_a, "n_tags_b": n_b,
            "duration_s": duration, "sync_rate_hz": data.sync_rate_hz, "window_ps": window_ps,
            "rate_a_hz": n_a / duration if duration > 0 else float("nan"),
            "rate_b_hz": n_b / duration if duration > 0 else float("nan"),
            "bin_ps": analysis.g2_bin_ps, "exposure_s": duration,
            "format": "ptu-t3" if data.record_type.endswith("T3") else "ptu-t2",
            "n_points": histogram_bins(analysis.g2_bin_ps, window_ps)[0]}
    if info["format"] == "ptu-t3":  # the decay after the sync, as analyze g2 gives it
        from micropl.analysis.formats.t3 import read_t3_header, t3_lifetime_info

        info.update(t3_lifetime_info(*read_t3_header(args.file), (ch_a, ch_b)))
    # The live core is given the rate; say where the replay laser got it.
    origin = "user" if args.rep_rate_hz is not None else "header"
    result = dataclasses.replace(result, period_source=origin)
    if args.json:
        print_json({**info, **result.as_dict()})
    else:
        sys.stdout.write(_human(result, info) + f"\nreplayed into {out}\n")
    return 0
