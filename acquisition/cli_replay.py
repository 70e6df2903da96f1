"""``micropl replay FILE``: re-run the live analysis on recorded data.

The recorded file (a micropl session file or a PicoQuant PTU T2 file) is served
by the replay instruments of :mod:`micropl.simulators.replay` (setup
``configs/replay.yaml``). The :class:`Replay` procedure, run by the same
:class:`~micropl.acquisition.runner.Runner` in the same
:class:`~micropl.acquisition.session.Session` as live acquisition, walks the
recorded time line: it takes every frame from the replay camera and every tag
chunk from the replay tagger, and re-publishes them — and the other recorded
raw records (spectra, map lines, QD targets and statuses, refocus results) —
with their recorded QD and kind. The live analysis core recomputes every fit
with the chosen :class:`~micropl.acquisition.live.AnalysisSettings`, and
storage writes a new session file whose replay run records the source (path,
SHA-256, software version, its runs) and the analysis settings.

Why re-publish rather than re-run the original procedures: a survey's map
pixels, refocus scans and drift images are not stored as raw data (only their
results are), so re-running ``survey`` on replay instruments cannot reproduce
it; re-publishing the stored raw records in order reproduces exactly what the
live core saw.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from micropl.acquisition import logs
from micropl.acquisition.cli import UsageError
from micropl.acquisition.live import AnalysisSettings, G2Done
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.records import (
    G2Histogram,
    InstrumentSnapshot,
    QDStatus,
    QDTarget,
    RefocusResult,
    RunStart,
    RunStop,
)
from micropl.analysis.errors import FileFormatError
from micropl.analysis.g2 import G2Result
from micropl.drivers.interfaces import Frame, InstrumentError, MapLine, Spectrum, TagChunk
from micropl.simulators import replay as rp

log = logging.getLogger(__name__)

__all__ = ["Replay", "register", "run", "session_source", "open_replay"]

#: Records the live core derives: not replayed, recomputed (a QD's flags follow from its
#: recomputed fits: ``info`` computes them for the replayed session).
_DERIVED_TABLES = ("spectrum_fit", "g2_histogram", "g2_result", "peak_train_fit", "cw_g2_fit",
                   "qd_flags")
#: Bookkeeping of the original runs: recorded in the replay run's parameters instead.
_RUN_TABLES = ("run_start", "run_stop", "instrument_snapshot")


# --------------------------------------------------------------------------- session loader
def session_source(path: Path, settings: Any) -> rp.ReplaySource:
    """A micropl session file's raw records on a replay time line.

    Raises
    ------
    FileFormatError
        When the file is not a readable micropl session file (one line).
    """
    from micropl.acquisition.storage import SessionReader

    with SessionReader(path) as reader:
        stored = []
        for table in reader.tables:
            if table in _RUN_TABLES:
                continue
            if table not in _DERIVED_TABLES and reader.spec(table).record_type is None:
                log.warning("%s: table %r unknown to this micropl is not replayed",
                            path, table)
                continue
            if table in _DERIVED_TABLES and table != "g2_histogram":
                continue
            stored += reader.records(table)
        runs = [{"run_id": r.run_id, "procedure": r.procedure,
                 "parameters": reader.json_field(r.parameters_json or "{}",
                                                 f"run {r.run_id} parameters_json"),
                 "status": r.status,
                 "reason": r.reason} for r in reader.runs()]
        snapshot = reader.instruments
        provenance = {"path": str(path), "kind": "session", "sha256": rp.file_sha256(path),
                      "software_version": reader.software_version, "created": reader.created,
                      "simulated": reader.simulated, "runs": runs}
    stored.sort(key=lambda r: r.seq)
    windows = {r["run_id"]: _g2_window_fraction(r["procedure"], r["parameters"]) for r in runs}
    events: list[rp.ReplayEvent] = []
    open_g2: dict[tuple[int, int], int] = {}
    position = 0.0
    for item in stored:
        record = item.record
        if isinstance(record, G2Histogram):
            # The final histogram marks where the original G2Done was: after the
            # last g² chunk of that run/QD.
            index = open_g2.pop((item.run_id, item.qd_id), None)
            if item.kind == "final" and index is not None:
                events[index] = dataclasses.replace(
                    events[index], ends_g2=True, g2_integration_s=record.integration_s,
                    g2_window_fraction=windows.get(item.run_id))
            continue
        end = position + rp.record_duration_s(record)
        events.append(rp.ReplayEvent(record, position, end, item.run_id, item.qd_id,
                                     item.kind))
        if isinstance(record, TagChunk) and item.kind == "g2":
            open_g2[(item.run_id, item.qd_id)] = len(events) - 1
        position = end
    laser = snapshot.get("laser", {}) if isinstance(snapshot, dict) else {}
    rate = laser.get("rep_rate_hz") if isinstance(laser, dict) else None
    return rp.ReplaySource(path, "session", events, snapshot=snapshot, provenance=provenance,
                           rep_rate_hz=float(rate) if rate else None)


rp.register_loader("session", session_source)


def _g2_window_fraction(procedure: str, parameters: Any) -> float | None:
    """The g² window a recorded run used (``g2`` or ``survey``), None when not recorded."""
    if not isinstance(parameters, dict):
        return None
    g2 = parameters if procedure == "g2" else parameters.get("g2")
    value = g2.get("window_fraction") if isinstance(g2, dict) else None
    return float(value) if isinstance(value, int | float) and 0 < value <= 1 else None


# --------------------------------------------------------------------------- the procedure
class Replay(ProcedureBase):
    """Re-publish a recorded file's raw data, served by the replay instruments.

    The parameters are the provenance of the replay: which file (path, SHA-256,
    the software that wrote it, its runs) and the analysis settings used.
    """

    name: ClassVar[str] = "replay"
    title: ClassVar[str] = "Replay a recorded file"

    source: str = Field(description="replayed file")
    source_kind: str = Field("session", description="session or ptu")
    source_sha256: str = Field("", description="SHA-256 of the replayed file")
    source_software_version: str = Field("", description="software that wrote it")
    source_runs: list[dict[str, Any]] = Field(default_factory=list,
                                              description="runs of the replayed file")
    analysis: dict[str, Any] = Field(default_factory=dict,
                                     description="live analysis settings of the replay")
    start_s: float = Field(0.0, ge=0, description="play as fast as possible up to this "
                                                  "recorded time (seek), s")

    @classmethod
    def for_source(cls, source: rp.ReplaySource, analysis: AnalysisSettings,
                   start_s: float = 0.0) -> Replay:
        """The replay of ``source`` with ``analysis`` (provenance filled in)."""
        p = source.provenance
        return cls(source=str(source.path), source_kind=source.kind,
                   source_sha256=p.get("sha256", ""),
                   source_software_version=str(p.get("software_version", "")),
                   source_runs=p.get("runs", []), analysis=analysis.model_dump(),
                   start_s=start_s)

    def run(self, ctx: Any) -> Any:
        setup = ctx.setup
        source = replay_source_of(setup)
        if self.source_sha256 and source.provenance.get("sha256") != self.source_sha256:
            raise InstrumentError(f"replay: the setup serves {source.path.name}, not the file "
                                  f"with SHA-256 {self.source_sha256[:12]}…")
        source.reset()
        source.attach_clock(ctx.clock)
        source.fast_forward_to(self.start_s)
        n = len(source.events)
        for i, event in enumerate(source.events):
            source.play_to(event.end_s, ctx.checkpoint)
            self._replay(ctx, source, event)
            if i % 25 == 0 or i == n - 1:
                ctx.progress("replay", source.position_s, source.duration_s)
        setup.tagger.stop()
        if ctx.live is None:
            return None
        ctx.sync()
        if source.kind == "ptu":
            return ctx.live.latest(ctx.run_id, -1, G2Result, "final")
        return {"events": n, "duration_s": source.duration_s}

    def _replay(self, ctx: Any, source: rp.ReplaySource, event: rp.ReplayEvent) -> None:
        setup = ctx.setup
        record = event.record
        tags = {"qd_id": event.qd_id, "kind": event.kind}
        if isinstance(record, Frame):
            record = setup.camera.acquire()
            _check_step(record, event, "camera")
        elif isinstance(record, TagChunk):
            setup.tagger.start(setup.apd_channels)
            record = setup.tagger.read()
            _check_step(record, event, "tagger")
        elif isinstance(record, Spectrum):
            source.note_spectrum(record)
        elif isinstance(record, MapLine):
            if record.x_um.size:
                _move(setup, float(record.x_um[-1]), record.y_um)
        elif isinstance(record, QDTarget | QDStatus):
            record = dataclasses.replace(record, run_id=ctx.run_id)
            if isinstance(record, QDTarget):
                _move(setup, record.x_um, record.y_um)
            ctx.emit(record)
            return
        elif isinstance(record, RefocusResult):
            _move(setup, record.x_um, record.y_um, record.z_um)
        elif isinstance(record, RunStart | RunStop | InstrumentSnapshot):
            return
        ctx.emit(record, **tags)
        if event.ends_g2:
            ctx.emit(G2Done(integration_s=event.g2_integration_s,
                            window_fraction=event.g2_window_fraction), **tags)


def _check_step(record: Any, event: rp.ReplayEvent, role: str) -> None:
    if record is not event.record:
        raise InstrumentError(f"{role} 'replay': served data out of step with the recorded "
                              "time line")


def _move(setup: Any, x_um: float, y_um: float, z_um: float | None = None) -> None:
    try:
        setup.scanner.move_to(x_um, y_um, z_um)
    except InstrumentError as exc:  # a recorded position outside the recorded limits
        log.warning("replay: %s", exc)


def replay_source_of(setup: Any) -> rp.ReplaySource:
    """The recorded source a replay setup serves.

    Raises
    ------
    InstrumentError
        When the setup's instruments are not replay instruments of one file.
    """
    sources = {id(getattr(i, "source", None)) for i in setup.instruments.values()}
    source = getattr(setup.tagger, "source", None)
    if not isinstance(source, rp.ReplaySource) or len(sources) != 1:
        raise InstrumentError("replay needs a setup whose every instrument is 'driver: replay' "
                              "on the same source file (configs/replay.yaml)")
    return source


# --------------------------------------------------------------------------- opening
def check_source(path: Path) -> str:
    """``"session"`` or ``"ptu"``; raises FileFormatError (one line) for anything else."""
    kind = rp.file_kind(path)
    if kind == "session":
        from micropl.acquisition.storage import SessionReader

        with SessionReader(path):
            pass
    else:
        from micropl.analysis.tags import read_ptu_t2

        read_ptu_t2(path)
    return kind


def open_replay(path: str | Path, *, speed: float = math.inf, config: Path | None = None,
                channels: tuple[int, int] | None = None,
                rep_rate_hz: float | None = None) -> Any:
    """Load a replay setup serving ``path`` (``configs/replay.yaml`` by default).

    ``speed``: recorded seconds per clock second (``inf``: as fast as possible,
    on the fast clock).
    """
    from micropl.acquisition.config import ROLES, packaged_config
    from micropl.acquisition.setup import load_setup

    source = str(Path(path).expanduser().resolve())
    overrides: dict[str, Any] = {role: {"driver": "replay", "source": source, "speed": speed}
                                 for role in ROLES}
    if channels is not None:
        overrides["tagger"]["apd_channels"] = list(channels)
    if rep_rate_hz is not None:
        overrides["laser"]["rep_rate_hz"] = rep_rate_hz
    clock_mode = "fast" if math.isinf(speed) else "real"
    return load_setup(config or packaged_config("replay"), clock_mode=clock_mode,
                      overrides=overrides)


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

    from micropl.acquisition.cli_analyze_g2 import DEFAULT_BIN_PS
    from micropl.acquisition.config import format_validation_error

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
        from micropl.acquisition.cli_analyze_g2 import check_replay_rate

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
    from micropl.acquisition.cli_info import print_summary, session_summary
    from micropl.acquisition.storage import SessionReader

    with SessionReader(out) as reader:
        summary = session_summary(reader)
    summary["replay"] = {"source": str(source.path), "sha256": source.provenance["sha256"],
                         "source_software_version": source.provenance["software_version"],
                         "analysis": analysis.model_dump(), "out": str(out)}
    if args.json:
        print(json.dumps(summary, default=lambda v: v.tolist() if hasattr(v, "tolist")
                         else str(v)))
    else:
        print_summary(summary)
        print(f"replayed {source.path} into {out}")
    return 0


def _print_g2(args: argparse.Namespace, source: rp.ReplaySource, result: G2Result | None,
              analysis: AnalysisSettings, setup: Any, out: Path) -> int:
    """The keys and values of ``micropl analyze g2 FILE.ptu --json``."""
    from micropl.acquisition.cli_analyze_g2 import _human, _jsonable

    if result is None:
        raise FileFormatError(f"{args.file}: the replay produced no g²(0) (see the log)")
    data = source.extra["tag_data"]
    ch_a, ch_b = setup.apd_channels
    n_a = int((data.channel == ch_a).sum())
    n_b = int((data.channel == ch_b).sum())
    rate_hz = setup.laser.rep_rate_hz
    period_ps = 1e12 / rate_hz
    # The live core's window: n_side + 1 periods, a whole number of bins.
    window_ps = int(round((analysis.n_side + 1) * period_ps))
    window_ps -= window_ps % analysis.g2_bin_ps
    duration = data.duration_s
    info = {"file": str(args.file), "kind": "ptu", "record_type": data.record_type,
            "channels": [ch_a, ch_b], "n_tags": n_a + n_b, "n_tags_a": n_a, "n_tags_b": n_b,
            "duration_s": duration, "sync_rate_hz": data.sync_rate_hz, "window_ps": window_ps,
            "rate_a_hz": n_a / duration if duration > 0 else float("nan"),
            "rate_b_hz": n_b / duration if duration > 0 else float("nan"),
            "bin_ps": analysis.g2_bin_ps}
    # The live core is given the rate; say where the replay laser got it.
    origin = "user" if args.rep_rate_hz is not None else "header"
    result = dataclasses.replace(result, period_source=origin)
    if args.json:
        sys.stdout.write(json.dumps(_jsonable({**info, **result.as_dict()})) + "\n")
    else:
        sys.stdout.write(_human(result, info) + f"\nreplayed into {out}\n")
    return 0
