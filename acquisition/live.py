"""The live analysis core: a stream subscriber that fits what acquisition produces.

It consumes raw records off the acquisition thread and publishes derived records
back onto the stream, where storage records them too (DESIGN §5):

* each processed :class:`~micropl.drivers.interfaces.Spectrum` (kinds ``frame``
  and ``accumulated``) → a :class:`~micropl.analysis.spectra.SpectrumFit` with
  the same run, QD and kind;
* :class:`~micropl.drivers.interfaces.TagChunk` records of kind ``g2`` are
  correlated incrementally; every ``g2_update_interval_s`` of wall time a
  ``live`` :class:`~micropl.acquisition.records.G2Histogram` and
  :class:`~micropl.analysis.g2.G2Result` are published (displays show them;
  storage skips ``live`` records), and on :class:`G2Done` the ``final`` ones
  plus a :class:`~micropl.analysis.g2.PeakTrainFit` (background-free g²(0),
  lifetime and delay from a fit of the whole peak train).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from micropl.acquisition.logs import REPORTED_IN_RESULT
from micropl.acquisition.records import G2Histogram, Tagged
from micropl.analysis.g2 import (
    G2Accumulator,
    G2Result,
    check_channel_pair,
    fit_peak_train,
    pulsed_g2,
    pulsed_window_ps,
)
from micropl.analysis.spectra import fit_spectra
from micropl.drivers.interfaces import Spectrum, TagChunk
from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)

__all__ = ["AnalysisSettings", "G2Done", "G2Start", "LiveAnalysis", "spectrum_noise"]


@dataclass(frozen=True)
class G2Start:
    """Marker: a g² measurement of this run/QD starts, with its window (not stored).

    Sent before the first tag chunk; without it the live core uses
    ``AnalysisSettings.g2_window_fraction``.
    """

    window_fraction: float
    transient = True


@dataclass(frozen=True)
class G2Done:
    """Marker: the g² measurement of this run/QD is complete (not stored).

    ``window_fraction``, when given, is the window of the final result (else the one
    of :class:`G2Start`, else the analysis setting).
    """

    integration_s: float
    window_fraction: float | None = None
    transient = True


class AnalysisSettings(BaseModel):
    """Fit settings of the live analysis core (also what replay may change)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spectrum_model: str = Field("lorentzian", pattern="^(lorentzian|gaussian|voigt)$",
                                description="line shape fitted in energy")
    g2_bin_ps: int = Field(128, ge=1, le=100_000, description="g² histogram bin width, ps")
    n_side: int = Field(5, ge=1, le=20, description="side peaks per side for g²(0)")
    g2_window_fraction: float = Field(
        1.0, gt=0, le=1, description="fraction of the period integrated around each g² peak "
                                     "when the measurement does not give one")
    g2_update_interval_s: float = Field(
        0.25, gt=0, description="wall time between live g² updates for displays, s")


class LiveAnalysis:
    """Fits spectra and accumulates g² for every run and QD.

    Parameters
    ----------
    publish : callable
        Where derived records go (``Stream.publish``).
    settings : AnalysisSettings
    rep_rate_hz : float
        Laser repetition rate (sets the g² window: ``n_side + 1`` periods each side).
    channels : (int, int)
        The APD channels correlated (start, stop).
    """

    def __init__(self, publish: Callable[[Any], None], settings: AnalysisSettings | None = None,
                 *, rep_rate_hz: float = 10e6, channels: tuple[int, int] = (1, 2)) -> None:
        self.publish = publish
        self.settings = settings or AnalysisSettings()
        self.rep_rate_hz = float(rep_rate_hz)
        self.channels = check_channel_pair(*channels)
        self._g2: dict[tuple[int, int], _G2State] = {}
        # Newest derived records and analysis errors of the most recent run/QD pairs
        # only (the procedures ask about the QD they are measuring; displays and
        # storage get everything from the stream), so memory stays bounded.
        self._latest: collections.OrderedDict[tuple[int, int], dict[tuple[type, str], Any]] = \
            collections.OrderedDict()
        self._errors: collections.OrderedDict[tuple[int, int], list[str]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    def errors_for(self, run_id: int, qd_id: int) -> list[str]:
        """Analysis errors met on this run/QD's records (most recent last)."""
        with self._lock:
            return list(self._errors.get((run_id, qd_id), ()))

    def latest(self, run_id: int, qd_id: int, record_type: type, kind: str) -> Any:
        """The newest derived record of a type and kind for a run/QD (None if none)."""
        with self._lock:
            return self._latest.get((run_id, qd_id), {}).get((record_type, kind))

    # ------------------------------------------------------------------ stream handler
    def handle(self, items: list[Any]) -> None:
        """Stream handler (batch mode): every record queued at this moment.

        Consecutive spectra that share an axis and a noise model are fitted in
        one batch call (the fitter's parallel path); everything else in order.
        An analysis error is remembered for the record's run/QD (the survey
        reports it as the QD's failure reason, a procedure as its own); an
        input the analysis refuses (:class:`AnalysisInputError`) is then logged
        for the log file only, any other error re-raised, so the stream logs it
        as a fault. The rest of the batch is still handled.
        """
        pending: list[Tagged] = []
        failure: Exception | None = None
        for item in items:
            if not isinstance(item, Tagged):
                continue
            if _fittable(item):
                if pending and not _same_batch(pending[0].record, item.record):
                    failure = self._guarded(self._fit_spectra, pending) or failure
                    pending = []
                pending.append(item)
                continue
            if pending:
                failure = self._guarded(self._fit_spectra, pending) or failure
                pending = []
            failure = self._guarded(self._dispatch, [item]) or failure
        if pending:
            failure = self._guarded(self._fit_spectra, pending) or failure
        if isinstance(failure, AnalysisInputError):
            # Data that cannot be analysed (an empty histogram at a spot without an
            # emitter): kept for its run/QD, whose result reports it; the log file has it.
            log.warning("live analysis: %s", failure, extra=REPORTED_IN_RESULT)
        elif failure is not None:
            raise failure

    def _guarded(self, action: Callable[[list[Tagged]], None],
                 items: list[Tagged]) -> Exception | None:
        try:
            action(items)
        except Exception as exc:  # noqa: BLE001 - kept per QD, then re-raised by handle
            with self._lock:
                for item in items:
                    _recent(self._errors, (item.run_id, item.qd_id), list).append(
                        f"{type(exc).__name__}: {exc}")
            return exc
        return None

    def _dispatch(self, items: list[Tagged]) -> None:
        item = items[0]
        record = item.record
        if isinstance(record, TagChunk) and item.kind == "g2":
            self._add_tags(item)
        elif isinstance(record, G2Start):
            with self._lock:
                self._state(item).window_fraction = _window_fraction(record.window_fraction)
        elif isinstance(record, G2Done):
            self._finish_g2(item)

    def _derived(self, source: Tagged, record: Any, kind: str) -> None:
        with self._lock:
            _recent(self._latest, (source.run_id, source.qd_id), dict)[(type(record), kind)] = \
                record
        self.publish(Tagged(record, run_id=source.run_id, qd_id=source.qd_id, kind=kind))

    # ------------------------------------------------------------------ spectra
    def _fit_spectra(self, items: list[Tagged]) -> None:
        first: Spectrum = items[0].record
        counts = np.stack([item.record.counts for item in items])
        saturated = [getattr(item.record, "saturated_pixels", 0) > 0 for item in items]
        fit = fit_spectra(first.wavelength_nm, counts, model=self.settings.spectrum_model,
                          saturated=saturated, **spectrum_noise(first))
        for i, item in enumerate(items):
            self._derived(item, fit.select(i), item.kind)

    # ------------------------------------------------------------------ g2
    def _state(self, item: Tagged) -> _G2State:
        key = (item.run_id, item.qd_id)
        state = self._g2.get(key)
        if state is None:
            bin_ps = self.settings.g2_bin_ps
            window_ps = pulsed_window_ps(self.rep_rate_hz, self.settings.n_side, bin_ps)
            state = _G2State(G2Accumulator(bin_ps, window_ps, channel_a=self.channels[0],
                                           channel_b=self.channels[1]),
                             window_fraction=self.settings.g2_window_fraction)
            self._g2[key] = state
        return state

    def _add_tags(self, item: Tagged) -> None:
        with self._lock:
            state = self._state(item)
            state.acc.add_chunk(item.record)
            # from the integer ps sum: the same however the tags are cut into chunks
            state.integration_s = state.acc.duration_ps * 1e-12
        now = time.monotonic()
        if now - state.last_update_wall_s >= self.settings.g2_update_interval_s:
            state.last_update_wall_s = now
            self._publish_g2(item, state, "live")

    def current_g2(self, run_id: int, qd_id: int) -> G2Result | None:
        """g²(0) of the histogram accumulated so far for a run/QD (None before data).

        Computed on demand, so a procedure that synced the stream first gets a
        result that depends only on the data (the same in every replay).
        """
        with self._lock:
            state = self._g2.get((run_id, qd_id))
            if state is None:
                return None
            tau_ps, counts = state.acc.result()
        try:
            return self._g2_of(tau_ps, counts, state.window_fraction,
                               background_correction=False)
        except AnalysisInputError:
            return None

    def _g2_of(self, tau_ps: np.ndarray, counts: np.ndarray, window_fraction: float, *,
               background_correction: bool) -> G2Result:
        """g²(0) of a histogram as every live path computes it (one call, one answer)."""
        return pulsed_g2(tau_ps, counts, rep_rate_hz=self.rep_rate_hz,
                         n_side=self.settings.n_side, window_fraction=window_fraction,
                         background_correction=background_correction)

    def _finish_g2(self, item: Tagged) -> None:
        with self._lock:
            state = self._g2.pop((item.run_id, item.qd_id), None)
        if state is None:
            raise AnalysisInputError(f"run {item.run_id} QD {item.qd_id}: g² finished with "
                                     "no tags recorded")
        if item.record.window_fraction is not None:
            state.window_fraction = _window_fraction(item.record.window_fraction)
        self._publish_g2(item, state, "final")

    def _publish_g2(self, item: Tagged, state: _G2State, kind: str) -> None:
        with self._lock:
            tau_ps, counts = state.acc.result()
        self._derived(item, G2Histogram(tau_ps=tau_ps, counts=counts,
                                        bin_ps=float(state.acc.bin_ps),
                                        integration_s=state.integration_s), kind)
        try:
            result = self._g2_of(tau_ps, counts, state.window_fraction,
                                 background_correction=kind == "final")
        except AnalysisInputError as exc:
            if kind == "final":
                raise
            log.debug("live g² not yet computable: %s", exc)
            return
        self._derived(item, result, kind)
        if kind == "final":
            fit = fit_peak_train(tau_ps, counts, period_ps=result.period_ps,
                                 delay_ps=result.delay_ps)
            self._derived(item, fit, kind)


#: How many run/QD pairs keep their latest results and errors in memory.
RECENT_KEYS = 32


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


def spectrum_noise(spectrum: Spectrum) -> dict[str, Any]:
    """The noise model of a processed spectrum, as :func:`fit_spectra` arguments.

    Photoelectron counts (``counts_unit == "e"``) have a known model: excess
    factor 2 with EM gain, 1 (Poisson) without, plus the stated
    signal-independent noise. ADU counts have none (``noise_factor=None``).
    The error bars then follow the one rule of
    :func:`micropl.analysis.spectra.error_scale`.
    """
    if spectrum.counts_unit == "e":
        return {"noise_factor": 2.0 if spectrum.em_gain > 1 else 1.0,
                "read_noise": float(spectrum.read_noise)}
    return {"noise_factor": None}


def _fittable(item: Tagged) -> bool:
    return isinstance(item.record, Spectrum) and item.kind in ("frame", "accumulated")


def _same_batch(a: Spectrum, b: Spectrum) -> bool:
    """Whether two spectra can share one batch fit (same axis and noise model)."""
    return (spectrum_noise(a) == spectrum_noise(b)
            and (a.wavelength_nm is b.wavelength_nm
                 or np.array_equal(a.wavelength_nm, b.wavelength_nm)))


def _window_fraction(value: float) -> float:
    """A g² window fraction, refused unless 0 < value <= 1."""
    value = float(value)
    if not 0 < value <= 1:
        raise AnalysisInputError(f"g² window_fraction must be in (0, 1], got {value}")
    return value


@dataclass
class _G2State:
    acc: G2Accumulator
    window_fraction: float = 1.0
    integration_s: float = 0.0
    last_update_wall_s: float = 0.0
