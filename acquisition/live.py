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

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from micropl.acquisition.records import G2Histogram, Tagged
from micropl.analysis.errors import AnalysisInputError
from micropl.analysis.g2 import G2Accumulator, G2Result, fit_peak_train, pulsed_g2
from micropl.analysis.spectra import SpectrumFit, fit_spectra
from micropl.drivers.interfaces import Spectrum, TagChunk

log = logging.getLogger(__name__)

__all__ = ["AnalysisSettings", "G2Done", "LiveAnalysis"]


@dataclass(frozen=True)
class G2Done:
    """Marker: the g² measurement of this run/QD is complete (not stored)."""

    integration_s: float
    transient = True


class AnalysisSettings(BaseModel):
    """Fit settings of the live analysis core (also what replay may change)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spectrum_model: str = Field("lorentzian", pattern="^(lorentzian|gaussian|voigt)$",
                                description="line shape fitted in energy")
    g2_bin_ps: int = Field(128, ge=1, le=100_000, description="g² histogram bin width, ps")
    n_side: int = Field(5, ge=1, le=20, description="side peaks per side for g²(0)")
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
        self.channels = channels
        self._g2: dict[tuple[int, int], _G2State] = {}
        self._latest: dict[tuple[int, int, type, str], Any] = {}
        self._errors: dict[tuple[int, int], list[str]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ queries
    def errors_for(self, run_id: int, qd_id: int) -> list[str]:
        """Analysis errors met on this run/QD's records (most recent last)."""
        with self._lock:
            return list(self._errors.get((run_id, qd_id), []))

    def latest(self, run_id: int, qd_id: int, record_type: type, kind: str) -> Any:
        """The newest derived record of a type and kind for a run/QD (None if none)."""
        with self._lock:
            return self._latest.get((run_id, qd_id, record_type, kind))

    # ------------------------------------------------------------------ stream handler
    def handle(self, item: Any) -> None:
        """Stream handler: dispatch on the record type.

        An analysis error is remembered for the record's run/QD (the survey
        reports it as the QD's failure reason), then re-raised so the stream
        logs it.
        """
        if not isinstance(item, Tagged):
            return
        try:
            self._dispatch(item)
        except Exception as exc:
            with self._lock:
                self._errors.setdefault((item.run_id, item.qd_id), []).append(
                    f"{type(exc).__name__}: {exc}")
            raise

    def _dispatch(self, item: Tagged) -> None:
        record = item.record
        if isinstance(record, Spectrum) and item.kind in ("frame", "accumulated"):
            self._fit_spectrum(item)
        elif isinstance(record, TagChunk) and item.kind == "g2":
            self._add_tags(item)
        elif isinstance(record, G2Done):
            self._finish_g2(item)

    def _derived(self, source: Tagged, record: Any, kind: str) -> None:
        with self._lock:
            self._latest[(source.run_id, source.qd_id, type(record), kind)] = record
        self.publish(Tagged(record, run_id=source.run_id, qd_id=source.qd_id, kind=kind))

    # ------------------------------------------------------------------ spectra
    def _fit_spectrum(self, item: Tagged) -> None:
        spectrum: Spectrum = item.record
        if spectrum.counts_unit == "e":
            noise = {"noise_factor": 2.0 if spectrum.em_gain > 1 else 1.0,
                     "read_noise": float(spectrum.read_noise)}
        else:
            noise = {"noise_factor": None}
        fit = fit_spectra(spectrum.wavelength_nm, spectrum.counts,
                          model=self.settings.spectrum_model, **noise)
        if noise["noise_factor"] is not None and bool(np.all(fit.success)) \
                and float(fit.reduced_chi2) > 1.0:
            # The line is not exactly the model (spectral diffusion, background slope):
            # scale the errors by √χ² so they stay honest.
            fit = fit_spectra(spectrum.wavelength_nm, spectrum.counts,
                              model=self.settings.spectrum_model, scale_errors="chi2",
                              p0=fit.params, **noise)
        self._derived(item, fit, item.kind)

    # ------------------------------------------------------------------ g2
    def _state(self, item: Tagged) -> _G2State:
        key = (item.run_id, item.qd_id)
        state = self._g2.get(key)
        if state is None:
            period_ps = 1e12 / self.rep_rate_hz
            # n_side peaks each side, plus one period of margin for the channel delay.
            window_ps = int(round((self.settings.n_side + 1) * period_ps))
            bin_ps = self.settings.g2_bin_ps
            window_ps -= window_ps % bin_ps
            state = _G2State(G2Accumulator(bin_ps, window_ps, channel_a=self.channels[0],
                                           channel_b=self.channels[1]))
            self._g2[key] = state
        return state

    def _add_tags(self, item: Tagged) -> None:
        with self._lock:
            state = self._state(item)
            state.acc.add_chunk(item.record)
            state.integration_s += item.record.duration_s
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
            return pulsed_g2(tau_ps, counts, rep_rate_hz=self.rep_rate_hz,
                             n_side=self.settings.n_side, background_correction=False)
        except AnalysisInputError:
            return None

    def _finish_g2(self, item: Tagged) -> None:
        with self._lock:
            state = self._g2.pop((item.run_id, item.qd_id), None)
        if state is None:
            raise AnalysisInputError(f"run {item.run_id} QD {item.qd_id}: g² finished with "
                                     "no tags recorded")
        self._publish_g2(item, state, "final")

    def _publish_g2(self, item: Tagged, state: _G2State, kind: str) -> None:
        with self._lock:
            tau_ps, counts = state.acc.result()
        self._derived(item, G2Histogram(tau_ps=tau_ps, counts=counts,
                                        bin_ps=float(state.acc.bin_ps),
                                        integration_s=state.integration_s), kind)
        try:
            result = pulsed_g2(tau_ps, counts, rep_rate_hz=self.rep_rate_hz,
                               n_side=self.settings.n_side,
                               background_correction=kind == "final")
        except AnalysisInputError as exc:
            if kind == "final":
                raise
            log.debug("live g² not yet computable: %s", exc)
            return
        self._derived(item, result, kind)
        if kind == "final":
            fit = fit_peak_train(tau_ps, counts, period_ps=result.period_ps)
            self._derived(item, fit, kind)


@dataclass
class _G2State:
    acc: G2Accumulator
    integration_s: float = 0.0
    last_update_wall_s: float = 0.0


def spectrum_summary(fit: SpectrumFit) -> dict[str, float]:
    """Scalar peak energy, FWHM and errors of a single-spectrum fit (for tables)."""
    return {key: float(np.asarray(getattr(fit, key)).ravel()[0]) for key in
            ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev")}


def g2_summary(result: G2Result) -> dict[str, float]:
    """Scalar g²(0) and its error."""
    return {"g2_0": float(result.g2_0), "g2_0_err": float(result.g2_0_err)}
