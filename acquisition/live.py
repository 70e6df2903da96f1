"""The live preview core: running g² for displays, off the acquisition thread.

A stream subscriber (DESIGN §5). The procedures compute their own results
(:mod:`micropl.acquisition.results`) and emit them as the final records of their
stages; this core only makes **previews** for displays, published with kind
``live`` (:data:`PREVIEW_KIND`), which storage never keeps:

* :class:`~micropl.records.TagChunk` records of kind ``g2`` are
  correlated incrementally; every ``g2_update_interval_s`` of wall time a
  preview :class:`~micropl.records.G2Histogram` and
  :class:`~micropl.analysis.g2.G2Result` (g²(0) without background correction,
  as the ``g2`` procedure's precision check) are published. :class:`G2Start`
  gives the window, :class:`G2Done` ends the preview of that run/QD.

For displays and scripts that watch a session, :meth:`LiveAnalysis.latest`
tells the newest result record of a type and kind seen on the stream for the
most recent run/QD pairs (the procedures' results, and the previews).
Procedures never read it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from micropl.acquisition.logs import REPORTED_IN_RESULT
from micropl.acquisition.results import AnalysisSettings, G2Measurement, spectrum_noise
from micropl.analysis.g2 import CwG2Fit, G2Result, PeakTrainFit, check_channel_pair
from micropl.analysis.spectra import SpectrumFit
from micropl.errors import UserError
from micropl.records import G2Histogram, TagChunk, Tagged

log = logging.getLogger(__name__)

# AnalysisSettings and spectrum_noise live in micropl.acquisition.results; re-exported here.
__all__ = ["PREVIEW_KIND", "AnalysisSettings", "G2Done", "G2Start", "LiveAnalysis",
           "spectrum_noise"]


@dataclass(frozen=True)
class G2Start:
    """Marker: a g² measurement of this run/QD starts, with its window (not stored).

    Sent before the first tag chunk; without it the live preview uses
    ``AnalysisSettings.g2_window_fraction``.
    """

    window_fraction: float
    transient = True


@dataclass(frozen=True)
class G2Done:
    """Marker: the g² measurement of this run/QD is complete (not stored).

    The live preview of the run/QD ends. ``integration_s`` is the data time measured
    (s); ``window_fraction``, when given, the window of the final result (replay
    reads it back from the recorded parameters).
    """

    integration_s: float
    window_fraction: float | None = None
    transient = True


#: The kind of every preview record (storage skips it; displays show it as live).
PREVIEW_KIND = "live"

#: How many run/QD pairs keep their latest records in memory (:meth:`LiveAnalysis.latest`).
RECENT_KEYS = 32

#: Records :meth:`LiveAnalysis.latest` remembers.
_RESULT_TYPES = (SpectrumFit, G2Histogram, G2Result, PeakTrainFit, CwG2Fit)


class LiveAnalysis:
    """Running g² previews for every run and QD (displays only; nothing stored).

    Parameters
    ----------
    publish : callable
        Where previews go (``Stream.publish``).
    settings : AnalysisSettings
        The session's fit settings (the procedures use the same).
    rep_rate_hz : float
        Laser repetition rate, Hz (the g² window: ``n_side + 1`` periods each side).
    channels : (int, int)
        The APD channels correlated (start, stop).
    """

    def __init__(self, publish: Callable[[Any], None], settings: AnalysisSettings | None = None,
                 *, rep_rate_hz: float = 10e6, channels: tuple[int, int] = (1, 2)) -> None:
        self.publish = publish
        self.settings = settings or AnalysisSettings()
        self.rep_rate_hz = float(rep_rate_hz)
        self.channels = check_channel_pair(*channels)
        self._g2: dict[tuple[int, int], _Preview] = {}
        # Newest result records of the most recent run/QD pairs only, so memory stays
        # bounded (displays and storage get everything from the stream).
        self._latest: collections.OrderedDict[tuple[int, int], dict[tuple[type, str], Any]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    def latest(self, run_id: int, qd_id: int, record_type: type, kind: str) -> Any:
        """The newest record of a type and kind seen for a run/QD (None if none).

        Results (``SpectrumFit``, ``G2Histogram``, ``G2Result``, ``PeakTrainFit``,
        ``CwG2Fit``) the procedures emitted, and this core's previews (kind
        ``live``), of the :data:`RECENT_KEYS` most recent run/QD pairs.
        """
        with self._lock:
            return self._latest.get((run_id, qd_id), {}).get((record_type, kind))

    def preview_g2(self, run_id: int, qd_id: int) -> G2Result | None:
        """g²(0) (no background correction) of the preview histogram so far, or None.

        None before data, after :class:`G2Done`, or while g²(0) cannot be computed.
        """
        with self._lock:
            preview = self._g2.get((run_id, qd_id))
            if preview is None:
                return None
            histogram = preview.measurement.histogram()
        try:
            return preview.measurement.g2(histogram)
        except UserError:
            return None

    # ------------------------------------------------------------------ stream handler
    def handle(self, items: list[Any]) -> None:
        """Stream handler (batch mode): every record queued at this moment.

        An input the preview refuses (:class:`AnalysisInputError`: tags out of
        order, a window the analysis cannot use) stops that run/QD's preview and
        is logged (the procedure computes the same and reports it); any other
        error is re-raised after the rest of the batch, so the stream logs it as
        a fault.
        """
        failure: Exception | None = None
        for item in items:
            if not isinstance(item, Tagged):
                continue
            try:
                self._dispatch(item)
            except UserError as exc:
                with self._lock:
                    self._g2.pop((item.run_id, item.qd_id), None)
                log.warning("live g² preview of run %d QD %d stopped: %s", item.run_id,
                            item.qd_id, exc, extra=REPORTED_IN_RESULT)
            except Exception as exc:  # noqa: BLE001 - re-raised after the batch
                failure = exc
        if failure is not None:
            raise failure

    def _dispatch(self, item: Tagged) -> None:
        record = item.record
        key = (item.run_id, item.qd_id)
        if isinstance(record, TagChunk) and item.kind == "g2":
            self._add_tags(item)
        elif isinstance(record, G2Start):
            with self._lock:
                self._g2[key] = self._new_preview(record.window_fraction)
        elif isinstance(record, G2Done):
            with self._lock:
                self._g2.pop(key, None)
        elif isinstance(record, _RESULT_TYPES):
            self._remember(item)

    def _remember(self, item: Tagged) -> None:
        with self._lock:
            _recent(self._latest, (item.run_id, item.qd_id), dict)[
                (type(item.record), item.kind)] = item.record

    def _new_preview(self, window_fraction: float | None = None) -> _Preview:
        return _Preview(G2Measurement(self.settings, self.rep_rate_hz, self.channels,
                                      window_fraction))

    def _add_tags(self, item: Tagged) -> None:
        key = (item.run_id, item.qd_id)
        with self._lock:
            preview = self._g2.get(key)
            if preview is None:
                preview = self._g2[key] = self._new_preview()
            preview.measurement.add(item.record)
            now = time.monotonic()
            due = now - preview.last_update_wall_s >= self.settings.g2_update_interval_s
            if due:
                preview.last_update_wall_s = now
                histogram = preview.measurement.histogram()
        if due:
            self._publish_preview(item, preview.measurement, histogram)

    def _publish_preview(self, item: Tagged, measurement: G2Measurement,
                         histogram: G2Histogram) -> None:
        self._preview(item, histogram)
        try:
            result = measurement.g2(histogram)
        except UserError as exc:
            log.debug("live g² not yet computable: %s", exc)
            return
        self._preview(item, result)

    def _preview(self, source: Tagged, record: Any) -> None:
        tagged = Tagged(record, run_id=source.run_id, qd_id=source.qd_id, kind=PREVIEW_KIND)
        self._remember(tagged)
        self.publish(tagged)


def _recent(table: collections.OrderedDict, key: tuple[int, int], factory: Callable[[], Any]
            ) -> Any:
    """The entry of ``key`` (made with ``factory``), marked most recent; the oldest
    entries beyond :data:`RECENT_KEYS` are dropped."""
    entry = table.get(key)
    if entry is None:
        entry = table[key] = factory()
    table.move_to_end(key)
    while len(table) > RECENT_KEYS:
        table.popitem(last=False)
    return entry


@dataclass
class _Preview:
    measurement: G2Measurement
    last_update_wall_s: float = 0.0
