"""Replay of recorded data through the acquisition pipeline (``micropl replay FILE``).

The recorded file (a micropl session file or a PicoQuant PTU T2 file) is served
by the replay instruments of :mod:`micropl.simulators.replay` (setup
``configs/replay.yaml``). The :class:`Replay` procedure, run by the same
:class:`~micropl.acquisition.runner.Runner` in the same
:class:`~micropl.acquisition.session.Session` as live acquisition, walks the
recorded time line: it takes every frame from the replay camera and every tag
chunk from the replay tagger, and re-publishes them — and the other recorded
raw records (spectra, map lines, QD targets and statuses, refocus results) —
with their recorded QD and kind. It recomputes every fit as the procedures do
(:mod:`micropl.acquisition.results`) with the chosen
:class:`~micropl.acquisition.results.AnalysisSettings`, and
storage writes a new session file whose replay run records the source (path,
SHA-256, software version, its runs) and the analysis settings.

Why re-publish rather than re-run the original procedures: a survey's map
pixels, refocus scans and drift images are not stored as raw data (only their
results are), so re-running ``survey`` on replay instruments cannot reproduce
it; re-publishing the stored raw records in order reproduces exactly what the
procedures computed from.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from micropl.acquisition.live import G2Done
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.results import (
    AnalysisSettings,
    G2Measurement,
    check_window_fraction,
    fit_spectrum_records,
)
from micropl.analysis.g2 import G2Result
from micropl.errors import InstrumentError, UserError
from micropl.records import (
    Frame,
    G2Histogram,
    InstrumentSnapshot,
    MapLine,
    QDStatus,
    QDTarget,
    RefocusResult,
    RunStart,
    RunStop,
    Spectrum,
    TagChunk,
)
from micropl.simulators import replay as rp

log = logging.getLogger(__name__)

__all__ = ["Replay", "check_source", "open_replay", "replay_source_of", "session_source"]

#: Records derived from the raw data (the procedures' results): not replayed, recomputed (a QD's flags follow from its
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
    served_ps = max(int(round(settings.ptu_chunk_s * 1e12)), 1)
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
        # Tags stored gathered into long records are served in read-sized pieces.
        pieces = rp.tile_chunk(record, served_ps) if isinstance(record, TagChunk) else [record]
        for piece in pieces:
            end = position + rp.record_duration_s(piece)
            events.append(rp.ReplayEvent(piece, position, end, item.run_id, item.qd_id,
                                         item.kind))
            position = end
        if isinstance(record, TagChunk) and item.kind == "g2":
            open_g2[(item.run_id, item.qd_id)] = len(events) - 1
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
        derived = _Derived(ctx)
        for i, event in enumerate(source.events):
            source.play_to(event.end_s, ctx.checkpoint)
            self._replay(ctx, source, event, derived)
            if i % 25 == 0 or i == n - 1:
                ctx.progress("replay", source.position_s, source.duration_s)
        setup.tagger.stop()
        if source.kind == "ptu":
            return derived.g2_results.get(-1)
        return {"events": n, "duration_s": source.duration_s}

    def _replay(self, ctx: Any, source: rp.ReplaySource, event: rp.ReplayEvent,
                derived: _Derived) -> None:
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
        derived.add(record, event)
        if event.ends_g2:
            ctx.emit(G2Done(integration_s=event.g2_integration_s,
                            window_fraction=event.g2_window_fraction), **tags)
            derived.finish_g2(event)


class _Derived:
    """The results replay recomputes from the raw records, with the functions the
    procedures use (:mod:`micropl.acquisition.results`) and the replay's settings.

    Spectra of kinds ``frame`` and ``accumulated`` are fitted as they are replayed;
    the g² tag chunks of each QD are correlated, and at the recorded end of the
    measurement its final histogram, g²(0) and peak-train fit are emitted. Data the
    analysis refuses is logged and left without a result (the replay goes on).
    """

    def __init__(self, ctx: Any) -> None:
        self._ctx = ctx
        self._g2: dict[int, G2Measurement | None] = {}
        self.g2_results: dict[int, G2Result] = {}

    def add(self, record: Any, event: rp.ReplayEvent) -> None:
        ctx = self._ctx
        g2_chunk = isinstance(record, TagChunk) and event.kind == "g2"
        if not g2_chunk and self._g2.pop(event.qd_id, None) is not None:
            # A g² attempt's chunks are contiguous: another record of its QD means that
            # attempt ended without a result (the survey retried); the next starts afresh.
            log.info("replay: QD %d g² attempt without a result", event.qd_id)
        if g2_chunk:
            measurement = self._measurement(event.qd_id)
            if measurement is not None:
                measurement.add(record)
        elif isinstance(record, Spectrum) and event.kind in ("frame", "accumulated"):
            try:
                fit = fit_spectrum_records([record], ctx.analysis.spectrum_model)[0]
            except UserError as exc:
                log.warning("replay: QD %d %s spectrum not fitted: %s", event.qd_id,
                            event.kind, exc)
                return
            ctx.emit(fit, qd_id=event.qd_id, kind=event.kind)

    def _measurement(self, qd_id: int) -> G2Measurement | None:
        if qd_id not in self._g2:
            ctx = self._ctx
            try:
                self._g2[qd_id] = G2Measurement(ctx.analysis, ctx.setup.laser.rep_rate_hz,
                                                ctx.setup.apd_channels)
            except UserError as exc:
                log.warning("replay: QD %d g² not computed: %s", qd_id, exc)
                self._g2[qd_id] = None
        return self._g2[qd_id]

    def finish_g2(self, event: rp.ReplayEvent) -> None:
        measurement = self._g2.pop(event.qd_id, None)
        if measurement is None:
            return
        ctx, tags = self._ctx, {"qd_id": event.qd_id, "kind": "final"}
        histogram = measurement.histogram()
        ctx.emit(histogram, **tags)
        try:
            if event.g2_window_fraction is not None:
                measurement.window_fraction = check_window_fraction(event.g2_window_fraction)
            outcome = measurement.finish(histogram)
        except UserError as exc:
            log.warning("replay: QD %d g² not computed: %s", event.qd_id, exc)
            return
        for record in outcome.records()[1:]:
            ctx.emit(record, **tags)
        self.g2_results[event.qd_id] = outcome.result


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
    """``"session"`` or ``"ptu"``; raises FileFormatError (one line) for anything else.

    Replay serves session files and PTU tags (T2, and T3 as absolute times). A file
    micropl reads but does not replay (PHU, SIF, SPE, legacy PicoQuant, ``.ttbin``)
    gets one line naming its format and the command that analyses it.
    """
    _refuse_analysis_only(path)
    kind = rp.file_kind(path)
    if kind == "session":
        from micropl.acquisition.storage import SessionReader

        with SessionReader(path):
            pass
    else:
        from micropl.analysis.tags import read_ptu_header

        # The header only: the records are decoded once by the pre-flight correlation
        # and once when the source is served, each refusing bad records in one line.
        read_ptu_header(path, allow_t3=True)
    return kind


def _refuse_analysis_only(path: Path) -> None:
    """One line for a file in a format ``micropl analyze`` reads but replay does not."""
    from micropl.analysis.formats.legacy import legacy_picoquant
    from micropl.analysis.formats.sif import SIF_MAGIC
    from micropl.analysis.formats.spe import SPE_HEADER_BYTES, looks_like_spe
    from micropl.errors import FileFormatError

    if not path.is_file():
        return  # file_kind names the problem
    with open(path, "rb") as fh:
        head = fh.read(SPE_HEADER_BYTES)
    analyse = "replay serves micropl session files and PTU time tags"
    legacy = legacy_picoquant(path, head)
    if legacy is not None:
        raise FileFormatError(legacy)
    if head.startswith(b"PQHISTO"):
        raise FileFormatError(f"{path}: PicoQuant PHU histogram file; {analyse}: analyse "
                              "it with `micropl analyze g2`")
    if path.suffix.lower() == ".ttbin":
        raise FileFormatError(f"{path}: Swabian .ttbin file; {analyse}: analyse it with "
                              "`micropl analyze g2`")
    if head.startswith(SIF_MAGIC) or looks_like_spe(head, path.stat().st_size):
        raise FileFormatError(f"{path}: spectrum file; {analyse}: analyse it with "
                              "`micropl analyze spectrum`")


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
