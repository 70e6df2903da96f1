"""From the data stream to the GUI thread: a thread-safe, bounded, coalescing buffer.

A :class:`DisplayBuffer` is attached to the session's stream as a coalescing
display subscriber (``session.on(buffer.handle, maxlen=...)``); its
:meth:`~DisplayBuffer.handle` runs on the subscriber's own thread and sorts each
record into a small state: the map lines of the current map, the newest frame
and accumulated spectrum with their fits, the newest g² histogram and result,
the APD rates, the QD table rows and the run events. The GUI drains it with
:meth:`~DisplayBuffer.take` from a QTimer (≥ 10 Hz), receiving only what
changed since the previous drain.

Everything is bounded: map lines by the map's rows, QD rows by ``max_rows``
(the oldest go first), per-QD curves by an LRU of ``max_cached_qds`` entries,
events by a deque.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from micropl.acquisition.live import G2Done
from micropl.acquisition.runner import Progress
from micropl.analysis.g2 import G2Result, PeakTrainFit
from micropl.analysis.spectra import SpectrumFit
from micropl.gui.rate_trace import RateTrace
from micropl.records import (
    NO_ID,
    G2Histogram,
    MapLine,
    QDFlags,
    QDStatus,
    QDTarget,
    RefocusResult,
    RunStart,
    RunStop,
    Spectrum,
    TagChunk,
    Tagged,
)
from micropl.records.points import PointOfInterest

log = logging.getLogger(__name__)

__all__ = ["DisplayBuffer", "QDRow", "QDCurves", "Source", "Update"]

def _scalar(value: Any) -> float:
    return float(np.asarray(value, dtype=float).ravel()[0])


@dataclass
class QDRow:
    """One row of the survey table: target, status and fitted results.

    Energies in eV, widths in meV, positions in µm; NaN until known.
    """

    run_id: int
    qd_id: int
    x_um: float = float("nan")
    y_um: float = float("nan")
    snr: float = float("nan")
    status: str = "pending"
    reason: str = ""
    peak_energy_ev: float = float("nan")
    peak_energy_err_ev: float = float("nan")
    fwhm_mev: float = float("nan")
    fwhm_err_mev: float = float("nan")
    g2_0: float = float("nan")
    g2_0_err: float = float("nan")
    lifetime_ns: float = float("nan")
    lifetime_ns_err: float = float("nan")
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Source:
    """Which run, QD and position a shown record belongs to (NaN position: unknown)."""

    run_id: int = NO_ID
    qd_id: int = NO_ID
    x_um: float = float("nan")
    y_um: float = float("nan")

    def text(self) -> str:
        """E.g. ``run 3 · QD 12 · (4.20, 7.10) µm`` or ``run 3 · no QD · (…) µm``."""
        if self.run_id == NO_ID and self.qd_id == NO_ID:
            return "no run"
        parts = [f"run {self.run_id}" if self.run_id != NO_ID else "no run",
                 f"QD {self.qd_id}" if self.qd_id != NO_ID else "no QD"]
        if np.isfinite(self.x_um) and np.isfinite(self.y_um):
            parts.append(f"({self.x_um:.2f}, {self.y_um:.2f}) µm")
        return " · ".join(parts)


@dataclass
class QDCurves:
    """The data shown for one QD: spectrum, fit, g² histogram and results."""

    source: Source = field(default_factory=Source)
    spectrum: Spectrum | None = None
    fit: SpectrumFit | None = None
    histogram: G2Histogram | None = None
    g2: G2Result | None = None
    lifetime: PeakTrainFit | None = None


@dataclass
class Update:
    """What changed since the previous :meth:`DisplayBuffer.take` (None: unchanged).

    Attributes
    ----------
    map_reset : bool
        A new map started: clear the image before adding ``map_lines``.
    map_lines : list of MapLine
        Lines of the current map received since the last drain.
    frame, frame_fit : Spectrum, SpectrumFit
        Newest single frame and its fit.
    accumulated, accumulated_fit : Spectrum, SpectrumFit
        Newest accumulated spectrum and its fit.
    histogram, g2 : G2Histogram, G2Result
        Newest g² histogram and result (live or final; see ``g2_final``).
    lifetime : PeakTrainFit
        Peak-train fit of the newest final histogram (the stream's record).
    spectrum_source, g2_source : Source
        Run, QD and position of the newest spectrum (or fit) and g² record.
    rates_cps : dict of int to float
        Newest APD count rate per channel, counts/s.
    map_rate_cps : float
        Newest map pixel rate (both APDs), counts/s.
    position_um : tuple
        Newest known scanner position (from map lines and refocus results).
    qd_rows : list of QDRow
        QD rows added or changed.
    progress : Progress
        Newest progress record.
    trace : bool
        The count-rate trace (:attr:`DisplayBuffer.trace`) has new bins.
    points : list of PointOfInterest
        Point-of-interest records, in order (from a session file, or another window).
    events : list
        RunStart / RunStop records, in order.
    dropped : int
        Records the stream subscriber dropped so far (display fell behind).
    """

    map_reset: bool = False
    map_lines: list[MapLine] = field(default_factory=list)
    frame: Spectrum | None = None
    frame_fit: SpectrumFit | None = None
    accumulated: Spectrum | None = None
    accumulated_fit: SpectrumFit | None = None
    histogram: G2Histogram | None = None
    g2: G2Result | None = None
    g2_final: bool = False
    lifetime: PeakTrainFit | None = None
    spectrum_source: Source | None = None
    g2_source: Source | None = None
    rates_cps: dict[int, float] | None = None
    map_rate_cps: float | None = None
    position_um: tuple[float, float] | None = None
    qd_rows: list[QDRow] = field(default_factory=list)
    progress: Progress | None = None
    trace: bool = False
    points: list[PointOfInterest] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)


class DisplayBuffer:
    """Thread-safe coalescing state between the stream and the GUI.

    Parameters
    ----------
    max_map_lines : int
        Largest number of map lines kept between two drains.
    max_rows : int
        QD rows kept (the session's table and statistics); the oldest go first.
    max_cached_qds : int
        QDs whose curves (spectrum, histogram) are kept for browsing.
    max_events : int
        Run events kept between two drains.
    apd_channels : (int, int)
        The APD channels of the count-rate trace (:attr:`trace`).

    The lifetime shown is the :class:`~micropl.analysis.g2.PeakTrainFit` record
    of the stream (table ``peak_train_fit``, the same record a session file
    holds): the display fits nothing of its own.
    """

    def __init__(self, *, max_map_lines: int = 5000, max_rows: int = 5000,
                 max_cached_qds: int = 200,
                 max_events: int = 1000, apd_channels: tuple[int, int] = (1, 2)) -> None:
        self._lock = threading.Lock()
        self._pending = Update()
        self._map_key: tuple[int, int] | None = None
        self._map_lines: collections.deque[MapLine] = collections.deque(maxlen=max_map_lines)
        self._events: collections.deque[Any] = collections.deque(maxlen=max_events)
        self._rows: dict[tuple[int, int], QDRow] = {}
        self._max_rows = max_rows
        self._changed: dict[tuple[int, int], None] = {}
        self._curves: collections.OrderedDict[tuple[int, int], QDCurves] = \
            collections.OrderedDict()
        self._max_cached_qds = max_cached_qds
        self._position: tuple[float, float] = (float("nan"), float("nan"))
        #: Both APDs' rates over the last minutes, from every tag chunk of the stream.
        self.trace = RateTrace(apd_channels)
        self._trace_taken = 0
        self.handled = 0

    # ------------------------------------------------------------------ producer side
    def handle(self, item: Any) -> None:
        """Stream handler (any thread): fold ``item`` into the pending update."""
        self.handled += 1
        if isinstance(item, Tagged):
            self._data(item.record, item.run_id, item.qd_id, item.kind)
        elif isinstance(item, QDTarget):
            with self._lock:
                row = self._row(item.run_id, item.qd_id)
                row.x_um, row.y_um, row.snr = item.x_um, item.y_um, item.snr
        elif isinstance(item, QDStatus):
            with self._lock:
                row = self._row(item.run_id, item.qd_id)
                row.status, row.reason = item.status, item.reason
        elif isinstance(item, RunStart | RunStop):
            with self._lock:
                self._events.append(item)
        elif isinstance(item, Progress):
            with self._lock:
                self._pending.progress = item

    def _data(self, record: Any, run_id: int, qd_id: int, kind: str) -> None:
        if isinstance(record, MapLine):
            self._map_line(record, run_id)
        elif isinstance(record, TagChunk):
            self._rates(record)
        elif isinstance(record, Spectrum) and kind in ("frame", "accumulated"):
            with self._lock:
                self._pending.spectrum_source = self._source(run_id, qd_id)
                setattr(self._pending, kind, record)
                if kind == "accumulated" and qd_id != NO_ID:
                    self._curve(run_id, qd_id).spectrum = record
        elif isinstance(record, SpectrumFit) and kind in ("frame", "accumulated"):
            with self._lock:
                self._pending.spectrum_source = self._source(run_id, qd_id)
                setattr(self._pending, f"{kind}_fit", record)
                if kind == "accumulated" and qd_id != NO_ID:
                    self._curve(run_id, qd_id).fit = record
                    row = self._row(run_id, qd_id)
                    row.peak_energy_ev = _scalar(record.peak_energy_ev)
                    row.peak_energy_err_ev = _scalar(record.peak_energy_err_ev)
                    row.fwhm_mev = _scalar(record.fwhm_mev)
                    row.fwhm_err_mev = _scalar(record.fwhm_err_mev)
        elif isinstance(record, G2Histogram) and kind in ("live", "final"):
            with self._lock:
                self._pending.g2_source = self._source(run_id, qd_id)
                self._pending.histogram = record
                self._pending.g2_final = kind == "final"
                if kind == "final" and qd_id != NO_ID:
                    self._curve(run_id, qd_id).histogram = record
        elif isinstance(record, G2Result) and kind in ("live", "final"):
            with self._lock:
                self._pending.g2_source = self._source(run_id, qd_id)
                self._pending.g2 = record
                self._pending.g2_final = kind == "final"
                if kind == "final" and qd_id != NO_ID:
                    self._curve(run_id, qd_id).g2 = record
                    row = self._row(run_id, qd_id)
                    row.g2_0, row.g2_0_err = float(record.g2_0), float(record.g2_0_err)
        elif isinstance(record, QDFlags) and qd_id != NO_ID:
            with self._lock:
                self._row(run_id, qd_id).flags = tuple(record.flag_list)
        elif isinstance(record, PeakTrainFit):
            self._lifetime_done(record, run_id, qd_id)
        elif isinstance(record, RefocusResult) or type(record).__name__ == "RefocusResult":
            with self._lock:
                self._position = (float(record.x_um), float(record.y_um))
                self._pending.position_um = self._position
        elif isinstance(record, PointOfInterest):
            with self._lock:
                self._pending.points.append(record)
        elif isinstance(record, G2Done):
            return

    def _map_line(self, line: MapLine, run_id: int) -> None:
        key = (run_id, int(line.x_um.size))
        rate = float(line.counts[-1]) / line.dwell_s if line.counts.size else 0.0
        with self._lock:
            if key != self._map_key or line.line_index == 0:
                self._map_key = key
                self._map_lines.clear()
                self._pending.map_reset = True
            self._map_lines.append(line)
            self._pending.map_rate_cps = rate
            if line.x_um.size:
                self._position = (float(line.x_um[-1]), float(line.y_um))
                self._pending.position_um = self._position

    def _rates(self, chunk: TagChunk) -> None:
        duration_s = chunk.duration_s
        if duration_s <= 0:
            return
        self.trace.add_chunk(chunk)
        channels, counts = np.unique(chunk.channel, return_counts=True)
        rates = {int(c): float(n) / duration_s for c, n in zip(channels, counts)}
        with self._lock:
            previous = self._pending.rates_cps or {}
            self._pending.rates_cps = {**previous, **rates}

    def _lifetime_done(self, fit: PeakTrainFit, run_id: int, qd_id: int) -> None:
        with self._lock:
            self._pending.g2_source = self._source(run_id, qd_id)
            self._pending.lifetime = fit
            if qd_id != NO_ID:
                self._curve(run_id, qd_id).lifetime = fit
                row = self._row(run_id, qd_id)
                row.lifetime_ns, row.lifetime_ns_err = fit.lifetime_ns, fit.lifetime_ns_err

    # ------------------------------------------------------------------ state (lock held)
    def _row(self, run_id: int, qd_id: int) -> QDRow:
        key = (run_id, qd_id)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = QDRow(run_id, qd_id)
            while len(self._rows) > self._max_rows:
                oldest = next(iter(self._rows))
                del self._rows[oldest]
                self._changed.pop(oldest, None)
        self._changed[key] = None
        return row

    def _source(self, run_id: int, qd_id: int) -> Source:
        """Run, QD and position of a record: the QD's target, else the scanner's last."""
        row = self._rows.get((run_id, qd_id)) if qd_id != NO_ID else None
        x, y = (row.x_um, row.y_um) if row is not None else self._position
        return Source(run_id, qd_id, float(x), float(y))

    def _curve(self, run_id: int, qd_id: int) -> QDCurves:
        key = (run_id, qd_id)
        curves = self._curves.get(key)
        if curves is None:
            curves = self._curves[key] = QDCurves(source=self._source(run_id, qd_id))
            while len(self._curves) > self._max_cached_qds:
                self._curves.popitem(last=False)
        else:
            self._curves.move_to_end(key)
        return curves

    # ------------------------------------------------------------------ consumer side
    def take(self) -> Update:
        """Everything that changed since the previous call (GUI thread)."""
        with self._lock:
            update, self._pending = self._pending, Update()
            update.map_lines = list(self._map_lines)
            self._map_lines.clear()
            update.events = list(self._events)
            self._events.clear()
            update.qd_rows = [QDRow(**vars(self._rows[key])) for key in self._changed]
            self._changed.clear()
            version = self.trace.version
            update.trace = version != self._trace_taken
            self._trace_taken = version
        return update

    def curves(self, run_id: int, qd_id: int) -> QDCurves | None:
        """The cached curves of a QD (None when not, or no longer, cached)."""
        with self._lock:
            curves = self._curves.get((run_id, qd_id))
            if curves is None:
                return None
            return QDCurves(**{**vars(curves), "source": self._source(run_id, qd_id)})

    def rows(self) -> list[QDRow]:
        """Copies of every QD row known."""
        with self._lock:
            return [QDRow(**vars(row)) for row in self._rows.values()]
