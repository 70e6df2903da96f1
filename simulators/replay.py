"""Replay instruments: recorded data served through the instrument protocols.

A replay setup (``configs/replay.yaml``) names ``driver: replay`` and a
``source: FILE`` for every role. All five instruments of a setup share one
:class:`ReplaySource` — the recorded data of the file laid out on one time
line — and one *player position* on that time line:

* :class:`ReplayTimeTagger` serves the recorded :class:`TagChunk` records (or the
  tags of a PTU T2 file cut into chunks) once the player has reached their end:
  ``read()`` returns every chunk recorded up to the current position, with the
  tag times (``t_ps``) exactly as recorded;
* :class:`ReplayCamera` serves the recorded :class:`Frame` records in order
  (``acquire()`` plays the time line to the end of the frame's exposure first);
* :class:`ReplaySpectrograph` reports the recorded settings and the recorded
  wavelength axis of the spectrum being replayed;
* :class:`ReplayLaser` and :class:`ReplayScanner` accept the same commands as
  real ones (limits enforced) and report the recorded settings.

Timing
------
The time line is the recorded *data* time: each frame lasts its exposure, each
tag chunk its interval ``[t_start_ps, t_stop_ps)``, each map line
``n_x × dwell_s``. Dead time between measurements (moves, unrecorded refocus
scans) is not on it. :meth:`ReplaySource.play_to` advances the position,
waiting through the setup clock (DESIGN §4): ``speed`` recorded seconds per
clock second (1 = real time, 10 = ten times faster) in ``real`` clock mode,
or at once in ``fast`` mode or with ``speed = inf`` (as fast as possible).

Loaders
-------
PTU T2 files are read here (:func:`micropl.analysis.tags.read_ptu_t2`, which
uses ``ptufile``). Session files (HDF5) are read by the acquisition layer,
which registers its loader with :func:`register_loader` (simulators do not
import acquisition); ``micropl.acquisition.replay`` does so on import, and the
setup loader imports it when :func:`open_instrument` asks its context to.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from micropl.drivers.limits import EM_GAIN_MAX, EM_GAIN_MAX_ADVANCED, limit_error
from micropl.errors import FileFormatError, InstrumentError
from micropl.records import Frame, Grating, MapLine, Spectrum, TagChunk

log = logging.getLogger(__name__)

__all__ = [
    "ReplayEvent", "ReplaySource", "ReplaySettings", "ReplayLaser", "ReplaySpectrograph",
    "ReplayCamera", "ReplayTimeTagger", "ReplayScanner", "DRIVERS", "open_instrument",
    "register_loader", "load_source", "ptu_source", "file_sha256",
]

PTU_MAGIC = b"PQTTTR\0\0"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Most tag chunks a PTU file's time line is cut into (longer files: longer chunks).
MAX_PTU_CHUNKS = 2_000
#: Slack when comparing the player position with a record's end, s (1 ns).
_DUE_SLACK_S = 1e-9


# --------------------------------------------------------------------------- settings
class _ReplayBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["replay"] = "replay"
    source: Path = Field(..., description="recorded file: micropl session (.h5) or PTU T2")
    speed: float = Field(1.0, gt=0, description="recorded seconds per clock second in real "
                                               "clock mode (inf: as fast as possible)")
    ptu_chunk_s: float = Field(0.02, gt=0, le=1.0,
                               description="tags are served in chunks of at most this, s (PTU files, "
                                           "and session tags stored in longer records)")


class ReplayLaserSettings(_ReplayBase):
    """Replay laser: accepts commands, reports the recorded repetition rate."""

    name: str = "laser"
    rep_rate_hz: float | None = Field(None, gt=0, description="override the recorded rate, Hz")


class ReplaySpectrographSettings(_ReplayBase):
    """Replay spectrograph: recorded settings and wavelength axis."""

    name: str = "spectrograph"


class ReplayCameraSettings(_ReplayBase):
    """Replay camera: serves the recorded frames in order."""

    name: str = "camera"


class ReplayTaggerSettings(_ReplayBase):
    """Replay time tagger: serves the recorded tags as the player advances."""

    name: str = "tagger"
    apd_channels: tuple[int, int] = (1, 2)


class ReplayScannerSettings(_ReplayBase):
    """Replay scanner: accepts moves within the recorded limits."""

    name: str = "scanner"


#: Common name for the replay settings models.
ReplaySettings = _ReplayBase

DRIVERS: dict[str, type[BaseModel]] = {
    "laser": ReplayLaserSettings,
    "spectrograph": ReplaySpectrographSettings,
    "camera": ReplayCameraSettings,
    "tagger": ReplayTaggerSettings,
    "scanner": ReplayScannerSettings,
}


# --------------------------------------------------------------------------- the time line
@dataclass(frozen=True)
class ReplayEvent:
    """One recorded record on the replay time line.

    Attributes
    ----------
    record : object
        The recorded record (instrument record, bookkeeping or analysis record).
    start_s, end_s : float
        Position of the record on the time line (recorded data time), s.
    run_id, qd_id : int
        Run and QD it was recorded under (``-1``: none).
    kind : str
        Its recorded role (``"g2"``, ``"raw"``, ``"accumulated"``...).
    ends_g2 : bool
        The g² measurement of this run/QD ended after this tag chunk.
    g2_integration_s : float
        For ``ends_g2``: the recorded integration time, s.
    g2_window_fraction : float or None
        For ``ends_g2``: the integration window the run used (fraction of the period),
        None when the recording does not say.
    """

    record: Any
    start_s: float
    end_s: float
    run_id: int = -1
    qd_id: int = -1
    kind: str = ""
    ends_g2: bool = False
    g2_integration_s: float = 0.0
    g2_window_fraction: float | None = None


def record_duration_s(record: Any) -> float:
    """Recorded data time a record covers, s (0 for records that take no time)."""
    if isinstance(record, TagChunk):
        return record.duration_s
    if isinstance(record, Frame):
        return float(record.exposure_s)
    if isinstance(record, MapLine):
        return float(record.dwell_s) * int(np.asarray(record.x_um).size)
    return 0.0


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ReplaySource:
    """Recorded data on one time line, and the player position shared by the instruments.

    Parameters
    ----------
    path : Path
        The recorded file.
    kind : {"session", "ptu"}
        What the file is.
    events : list of ReplayEvent
        In recorded order, with ``start_s``/``end_s`` set.
    snapshot : dict
        Recorded instrument settings, role → dict (may be empty).
    provenance : dict
        ``path``, ``sha256``, ``software_version`` and whatever the loader adds.
    rep_rate_hz : float or None
        Recorded laser repetition rate, Hz.
    extra : dict
        Loader-specific data (e.g. the PTU ``TagData``).
    """

    def __init__(self, path: Path, kind: str, events: list[ReplayEvent], *,
                 snapshot: dict[str, dict[str, Any]] | None = None,
                 provenance: dict[str, Any] | None = None, rep_rate_hz: float | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.kind = kind
        self.events = events
        self.snapshot = snapshot or {}
        self.provenance = provenance or {}
        self.rep_rate_hz = rep_rate_hz
        self.extra = extra or {}
        self.duration_s = events[-1].end_s if events else 0.0
        self.frames = [e for e in events if isinstance(e.record, Frame)]
        self.chunks = [e for e in events if isinstance(e.record, TagChunk)]
        self.spectra = [e for e in events if isinstance(e.record, Spectrum)]
        self._lock = threading.Lock()
        self.clock: Any = None
        self.speed = 1.0
        self.reset()

    # ------------------------------------------------------------------ player
    def reset(self) -> None:
        """Back to the start of the time line (every instrument cursor too)."""
        with self._lock:
            self.position_s = 0.0
            self.fast_until_s = 0.0
            self.next_frame = 0
            self.next_chunk = 0
            self.last_spectrum: Spectrum | None = None

    def attach_clock(self, clock: Any) -> None:
        """The clock every wait of the player goes through (the setup's clock)."""
        self.clock = clock

    def set_speed(self, speed: float) -> None:
        """Recorded seconds per clock second (``inf``: as fast as possible)."""
        if not speed > 0:
            raise limit_error("replay", self.path.name, f"speed {speed}", "must be > 0")
        with self._lock:
            self.speed = float(speed)

    def fast_forward_to(self, position_s: float) -> None:
        """Play as fast as possible until ``position_s`` (a seek forward)."""
        with self._lock:
            self.fast_until_s = float(position_s)

    def play_to(self, end_s: float, checkpoint: Callable[[], None] | None = None,
                slice_s: float = 0.05) -> None:
        """Advance the position to ``end_s``, waiting through the clock at ``speed``.

        ``checkpoint`` is called before every wait (the runner's pause/abort).
        """
        clock = self.clock
        while True:
            if checkpoint is not None:
                checkpoint()
            with self._lock:
                left = end_s - self.position_s
                if left <= 0:
                    return
                if self.position_s < self.fast_until_s or clock is None:
                    self.position_s = min(end_s, self.fast_until_s) if clock is not None \
                        else end_s
                    continue
                speed = self.speed
            if math.isinf(speed):
                # As fast as possible: a fast clock still advances by the data time.
                if clock.mode == "fast":
                    clock.sleep(left)
                with self._lock:
                    self.position_s = end_s
                continue
            wait = left / speed
            if clock.mode == "real":
                wait = min(wait, slice_s)
            t0 = clock.now()
            clock.sleep(wait)
            played = (clock.now() - t0) * speed
            with self._lock:
                # Never past end_s: the record ends there; float rounding is absorbed.
                self.position_s = end_s if played >= left * (1 - 1e-12) \
                    else self.position_s + played

    # ------------------------------------------------------------------ serving
    def take_frame(self) -> Frame:
        """The next recorded frame (after playing to the end of its exposure)."""
        with self._lock:
            i = self.next_frame
        if i >= len(self.frames):
            raise InstrumentError(f"camera 'replay': no more recorded frames in {self.path.name} "
                                  f"({len(self.frames)} served)")
        self.play_to(self.frames[i].end_s)
        with self._lock:
            self.next_frame = i + 1
        return self.frames[i].record

    def take_due_chunks(self) -> list[TagChunk]:
        """Recorded tag chunks whose end the player has reached, not yet served."""
        with self._lock:
            out = []
            while self.next_chunk < len(self.chunks) and \
                    self.chunks[self.next_chunk].end_s <= self.position_s + _DUE_SLACK_S:
                out.append(self.chunks[self.next_chunk].record)
                self.next_chunk += 1
            return out

    def note_spectrum(self, spectrum: Spectrum) -> None:
        """The spectrum being replayed (the spectrograph reports its axis)."""
        with self._lock:
            self.last_spectrum = spectrum


# --------------------------------------------------------------------------- loaders
_LOADERS: dict[str, Callable[[Path, _ReplayBase], ReplaySource]] = {}
_SOURCES: weakref.WeakValueDictionary[tuple, ReplaySource] = weakref.WeakValueDictionary()
_SOURCES_LOCK = threading.Lock()


def register_loader(kind: str, loader: Callable[[Path, Any], ReplaySource]) -> None:
    """Register the loader of a file kind (``"session"`` is registered by acquisition)."""
    _LOADERS[kind] = loader


def file_kind(path: Path) -> str:
    """``"ptu"`` or ``"session"`` from the file's magic bytes.

    Raises
    ------
    FileFormatError
        Missing, empty or foreign file (one line naming it).
    """
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == PTU_MAGIC:
        return "ptu"
    if magic == HDF5_MAGIC:
        return "session"
    if not magic:
        raise FileFormatError(f"{path}: empty file, not a micropl session or PTU file")
    raise FileFormatError(f"{path}: not a micropl session file (HDF5) or a PTU T2 file")


def load_source(settings: _ReplayBase) -> ReplaySource:
    """The shared :class:`ReplaySource` of ``settings.source`` (loaded once per file)."""
    path = Path(settings.source).expanduser().resolve()
    kind = file_kind(path)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, settings.ptu_chunk_s)
    with _SOURCES_LOCK:
        source = _SOURCES.get(key)
        if source is None:
            loader = _LOADERS.get(kind) if kind != "ptu" else ptu_source
            if loader is None:
                raise InstrumentError(
                    f"replay: cannot read {path.name}: the session-file loader is registered "
                    "by micropl.acquisition.replay; import it first")
            source = loader(path, settings)
            _SOURCES[key] = source
    source.set_speed(settings.speed)
    return source


def tile_chunk(chunk: TagChunk, chunk_ps: int) -> list[TagChunk]:
    """``chunk`` cut into consecutive chunks of at most ``chunk_ps`` that tile its interval.

    The pieces are views of its arrays; a chunk no longer than ``chunk_ps`` comes back
    whole. Replay serves recorded tags in such pieces, as a tagger's reads would come,
    whatever size the file stored them in.

    Examples
    --------
    >>> import numpy as np
    >>> whole = TagChunk(np.array([5, 15, 25], np.int64), np.array([1, 2, 1], np.uint8), 0, 30)
    >>> [(c.t_start_ps, c.t_stop_ps, c.t_ps.tolist()) for c in tile_chunk(whole, 20)]
    [(0, 20, [5, 15]), (20, 30, [25])]
    """
    start, stop = int(chunk.t_start_ps), int(chunk.t_stop_ps)
    if stop - start <= chunk_ps:
        return [chunk]
    edges = np.append(np.arange(start, stop, chunk_ps, dtype=np.int64), stop)
    cuts = np.searchsorted(chunk.t_ps, edges, side="left")
    return [TagChunk(t_ps=chunk.t_ps[cuts[k]:cuts[k + 1]], channel=chunk.channel[cuts[k]:cuts[k + 1]],
                     t_start_ps=int(edges[k]), t_stop_ps=int(edges[k + 1]),
                     overflow=chunk.overflow and k == 0,
                     missed_events=chunk.missed_events if k == 0 else 0)
            for k in range(edges.size - 1)]


def ptu_source(path: Path, settings: _ReplayBase) -> ReplaySource:
    """A PTU T2 file's tags on a time line, in chunks of ``settings.ptu_chunk_s``.

    The chunks tile ``[0, duration)`` of the file's time base; tag times are kept
    as recorded. The last chunk ends the g² measurement. A file longer than
    :data:`MAX_PTU_CHUNKS` chunks is cut into that many longer chunks (the g² does
    not depend on the cut), so the time line stays bounded for any time span.
    The tags are read into memory (at most
    :data:`~micropl.analysis.tags.MAX_PTU_RECORDS_IN_MEMORY` records); the chunks
    are views of them.
    """
    from micropl.analysis.g2_files import read_ptu_tags  # T2, or T3 as absolute times

    data = read_ptu_tags(path)
    chunk_ps = max(int(round(settings.ptu_chunk_s * 1e12)), 1)
    last_ps = int(data.t_ps[-1]) + 1 if data.t_ps.size else 0
    end_ps = max(int(round(data.duration_s * 1e12)), last_ps, 1)
    if -(-end_ps // chunk_ps) > MAX_PTU_CHUNKS:
        chunk_ps = -(-end_ps // MAX_PTU_CHUNKS)
        log.info("%s: %.4g s of tags served in %d chunks of %.4g s", path, end_ps * 1e-12,
                 -(-end_ps // chunk_ps), chunk_ps * 1e-12)
    events = []
    position = 0.0
    for chunk in tile_chunk(TagChunk(data.t_ps, data.channel, 0, end_ps), chunk_ps):
        end = position + chunk.duration_s
        events.append(ReplayEvent(chunk, position, end, kind="g2"))
        position = end
    if events:
        last = events[-1]
        events[-1] = ReplayEvent(last.record, last.start_s, last.end_s, kind="g2", ends_g2=True,
                                 g2_integration_s=last.end_s)
    rate = data.sync_rate_hz if data.sync_rate_hz > 0 else None
    provenance = {"path": str(path), "kind": "ptu", "sha256": file_sha256(path),
                  "software_version": str(data.tags.get("CreatorSW_Name", "")) + " " +
                  str(data.tags.get("CreatorSW_Version", "")),
                  "record_type": data.record_type}
    provenance["software_version"] = provenance["software_version"].strip() or "unknown"
    return ReplaySource(path, "ptu", events, provenance=provenance, rep_rate_hz=rate,
                        extra={"tag_data": data})


# --------------------------------------------------------------------------- instruments
class _ReplayInstrument:
    role = "instrument"

    def __init__(self, settings: _ReplayBase, source: ReplaySource) -> None:
        self.settings = settings
        self.source = source
        self.name = settings.name
        self.recorded = dict(source.snapshot.get(self.role, {}))

    def _recorded(self, key: str, default: Any) -> Any:
        value = self.recorded.get(key)
        return default if value is None else value

    def snapshot(self) -> dict[str, Any]:
        """Replay provenance plus the current settings."""
        return {"driver": "replay", "name": self.name, "source": str(self.source.path),
                "source_sha256": self.source.provenance.get("sha256", ""),
                "speed": self.source.speed, "position_s": self.source.position_s,
                **self._state()}

    def _state(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Nothing to release (the source is shared)."""


class ReplayLaser(_ReplayInstrument):
    """Accepts on/off and power; reports the recorded wavelength and repetition rate."""

    role = "laser"

    def __init__(self, settings: ReplayLaserSettings, source: ReplaySource) -> None:
        super().__init__(settings, source)
        self.wavelength_nm = float(self._recorded("wavelength_nm", 405.0))
        rate = settings.rep_rate_hz or source.rep_rate_hz or self._recorded("rep_rate_hz", None)
        if rate is None:
            raise InstrumentError(f"laser '{self.name}': {source.path.name} records no "
                                  "repetition rate; set laser.rep_rate_hz in the replay setup")
        self.rep_rate_hz = float(rate)
        self.max_power_percent = float(self._recorded("max_power_percent", 100.0))
        self._power_percent = float(self._recorded("power_percent", 0.0))
        self.emission_on = False

    @property
    def power_percent(self) -> float:
        return self._power_percent

    @power_percent.setter
    def power_percent(self, value: float) -> None:
        if not 0 <= value <= self.max_power_percent:
            raise limit_error("laser", self.name, f"power {value} %",
                              f"range 0–{self.max_power_percent:g} %")
        self._power_percent = float(value)

    def off(self) -> None:
        """Emission off."""
        self.emission_on = False

    def _state(self) -> dict[str, Any]:
        return {"wavelength_nm": self.wavelength_nm, "rep_rate_hz": self.rep_rate_hz,
                "power_percent": self._power_percent, "emission_on": self.emission_on}


class ReplaySpectrograph(_ReplayInstrument):
    """Reports the recorded grating and centre; the axis is the replayed spectrum's."""

    role = "spectrograph"

    def __init__(self, settings: ReplaySpectrographSettings, source: ReplaySource) -> None:
        super().__init__(settings, source)
        grooves = self._recorded("gratings_grooves_per_mm", [300.0])
        self.gratings = [Grating(i + 1, float(g)) for i, g in enumerate(grooves)]
        self.grating = int(self._recorded("grating", 1))
        self.center_wavelength_nm = float(self._recorded("center_wavelength_nm", float("nan")))

    def wavelength_range_nm(self, grating: int | None = None) -> tuple[float, float]:
        """Any centre wavelength: the replayed spectra carry their own axis, nm."""
        return 0.0, math.inf

    def wavelength_axis_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """The recorded axis of the spectrum being replayed (else the first recorded).

        Raises
        ------
        InstrumentError
            When nothing recorded has ``n_px`` pixels.
        """
        candidates = [self.source.last_spectrum] + [e.record for e in self.source.spectra]
        for spectrum in candidates:
            if spectrum is not None and spectrum.wavelength_nm.size == int(n_px):
                return np.asarray(spectrum.wavelength_nm, dtype=float).copy()
        raise InstrumentError(f"spectrograph '{self.name}': no recorded spectrum with {n_px} "
                              f"pixels in {self.source.path.name}")

    def _state(self) -> dict[str, Any]:
        spectrum = self.source.last_spectrum
        state: dict[str, Any] = {"grating": self.grating,
                                 "center_wavelength_nm": self.center_wavelength_nm}
        if spectrum is not None and spectrum.wavelength_nm.size:
            state["axis_nm"] = [float(spectrum.wavelength_nm[0]),
                                float(spectrum.wavelength_nm[-1])]
        return state


class ReplayCamera(_ReplayInstrument):
    """Serves the recorded frames in their recorded order."""

    role = "camera"

    def __init__(self, settings: ReplayCameraSettings, source: ReplaySource) -> None:
        super().__init__(settings, source)
        first = source.frames[0].record if source.frames else None
        self.sensor_shape = tuple(int(v) for v in self._recorded(
            "sensor_shape", [1, first.counts.shape[-1] if first is not None else 1]))
        self.pixel_um = float(self._recorded("pixel_um", 16.0))
        self.e_per_adu = float(self._recorded("e_per_adu", 1.0))
        self.exposure_s = float(self._recorded("exposure_s", 1.0))
        self.em_gain = int(self._recorded("em_gain", 1))
        self.em_gain_advanced = bool(self._recorded("em_gain_advanced", False))
        self.read_mode = self._recorded("read_mode", "fvb")
        self.roi_rows = tuple(self._recorded("roi_rows", [0, self.sensor_shape[0]]))
        # The snapshot is taken when the file is created, usually before the cooler got
        # there; frames recorded with EM gain passed the live watchdog, so the replayed
        # sensor sits at its recorded set point (the EM-gain watchdog checks it).
        self.target_temperature_c = float(self._recorded("target_temperature_c", -80.0))
        self.temperature_c = self.target_temperature_c
        self.cooler_on = bool(self._recorded("cooler_on", True))
        self._streaming = False

    #: Any exposure: the recorded frames are served whatever is asked, s.
    exposure_range_s: tuple[float, float] = (0.0, math.inf)

    def em_gain_range(self, advanced: bool | None = None) -> tuple[int, int]:
        """EM gains a camera accepts with advanced mode ``advanced`` (None: as recorded)."""
        on = self.em_gain_advanced if advanced is None else bool(advanced)
        return 1, EM_GAIN_MAX_ADVANCED if on else EM_GAIN_MAX

    def acquire(self) -> Frame:
        """The next recorded frame (its settings become the camera's)."""
        frame = self.source.take_frame()
        self.exposure_s, self.em_gain, self.read_mode = (float(frame.exposure_s),
                                                         int(frame.em_gain), frame.read_mode)
        return frame

    def start_stream(self) -> None:
        """Continuous mode: ``read_frames`` serves the frames due at the player position."""
        self._streaming = True

    def read_frames(self) -> list[Frame]:
        """Recorded frames whose exposure the player has passed."""
        out = []
        while self._streaming:
            with self.source._lock:
                i = self.source.next_frame
                due = i < len(self.source.frames) and \
                    self.source.frames[i].end_s <= self.source.position_s + _DUE_SLACK_S
            if not due:
                break
            out.append(self.acquire())
        return out

    def stop(self) -> None:
        """Stop streaming."""
        self._streaming = False

    def _state(self) -> dict[str, Any]:
        return {"exposure_s": self.exposure_s, "em_gain": self.em_gain,
                "read_mode": self.read_mode, "temperature_c": self.temperature_c,
                "frames_served": self.source.next_frame, "frames": len(self.source.frames)}


class ReplayTimeTagger(_ReplayInstrument):
    """Serves the recorded tags once the player has reached them (``t_ps`` as recorded)."""

    role = "tagger"

    def __init__(self, settings: ReplayTaggerSettings, source: ReplaySource) -> None:
        super().__init__(settings, source)
        recorded = self._recorded("channels", list(settings.apd_channels))
        self.channels = tuple(int(c) for c in recorded)
        self.apd_channels = settings.apd_channels
        self.resolution_ps = float(self._recorded("resolution_ps", 1.0))
        self._running = False
        self._last_stop_ps: int | None = None
        self._rates: dict[int, float] = {}

    def start(self, channels: tuple[int, ...] | None = None) -> None:
        """Start serving (tags recorded on every channel are served)."""
        self._running = True

    def read(self) -> TagChunk:
        """Every recorded chunk due since the previous read, as one chunk.

        Consecutive recorded chunks tile time, so their union is one chunk. With
        nothing due, an empty chunk of zero length at the last served time.
        """
        chunks = self.source.take_due_chunks() if self._running else []
        if not chunks:
            t = self._last_stop_ps or 0
            return TagChunk(np.zeros(0, np.int64), np.zeros(0, np.uint8), t, t)
        if len(chunks) == 1:
            chunk = chunks[0]
        else:
            chunk = TagChunk(np.concatenate([c.t_ps for c in chunks]),
                             np.concatenate([c.channel for c in chunks]),
                             chunks[0].t_start_ps, chunks[-1].t_stop_ps,
                             overflow=any(c.overflow for c in chunks),
                             missed_events=sum(c.missed_events for c in chunks))
        self._last_stop_ps = chunk.t_stop_ps
        duration = chunk.duration_s
        if duration > 0:
            counts = np.bincount(chunk.channel, minlength=max(self.channels, default=0) + 1)
            self._rates = {c: float(counts[c]) / duration for c in self.channels
                           if c < counts.size}
        return chunk

    def count_rates_hz(self) -> dict[int, float]:
        """Rates of the last served chunk, counts/s."""
        return dict(self._rates)

    def stop(self) -> None:
        """Stop serving."""
        self._running = False

    def _state(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "apd_channels": list(self.apd_channels),
                "running": self._running, "chunks_served": self.source.next_chunk,
                "chunks": len(self.source.chunks)}


class ReplayScanner(_ReplayInstrument):
    """Accepts moves within the recorded limits (instantly; data time only is replayed)."""

    role = "scanner"

    def __init__(self, settings: ReplayScannerSettings, source: ReplaySource) -> None:
        super().__init__(settings, source)
        limits = self._recorded("limits_um", [[-1e6, 1e6]] * 3)
        self.limits_um = tuple((float(lo), float(hi)) for lo, hi in limits)
        self._position_um = tuple(float(v) for v in self._recorded("position_um", [0, 0, 0]))

    @property
    def position_um(self) -> tuple[float, float, float]:
        return self._position_um  # type: ignore[return-value]

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) µm; refuses targets outside the limits."""
        z = self._position_um[2] if z_um is None else float(z_um)
        for axis, value, (lo, hi) in zip("xyz", (x_um, y_um, z), self.limits_um):
            if not lo <= value <= hi:
                raise limit_error("scanner", self.name, f"move {axis}={value:.3f} µm",
                                  f"range {lo:g}–{hi:g} µm")
        self._position_um = (float(x_um), float(y_um), z)

    def _state(self) -> dict[str, Any]:
        return {"position_um": list(self._position_um),
                "limits_um": [list(a) for a in self.limits_um]}


_CLASSES: dict[type[BaseModel], type[_ReplayInstrument]] = {
    ReplayLaserSettings: ReplayLaser,
    ReplaySpectrographSettings: ReplaySpectrograph,
    ReplayCameraSettings: ReplayCamera,
    ReplayTaggerSettings: ReplayTimeTagger,
    ReplayScannerSettings: ReplayScanner,
}


def open_instrument(settings: _ReplayBase, context: Any = None) -> _ReplayInstrument:
    """Open the replay instrument of ``settings`` on its (shared) recorded source.

    Parameters
    ----------
    settings : ReplaySettings
        The role's validated section.
    context : OpenContext, optional
        The setup loader's context (:class:`micropl.acquisition.setup.OpenContext`);
        its ``load_session_reader()`` registers the session-file reader. Without
        one, that reader must have been registered already (:func:`register_loader`).

    Raises
    ------
    FileFormatError
        When the source is missing, truncated or foreign (one line naming the file).
    """
    if context is not None:
        context.load_session_reader()
    source = load_source(settings)
    return _CLASSES[type(settings)](settings, source)
