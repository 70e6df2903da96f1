"""What a measurement computes from its own data: one function per result, every path.

The procedures (``spectrum``, ``g2``, the survey's stages), replay and the live
preview core (:mod:`micropl.acquisition.live`) call these, so that the same data
give the same numbers wherever they are analysed:

* :func:`fit_spectrum_records` — the line fit of processed spectra
  (:func:`~micropl.analysis.spectra.fit_spectra` with the session's model and the
  spectra's own noise model, :func:`spectrum_noise`);
* :class:`G2Measurement` — the HBT histogram built chunk by chunk
  (:class:`~micropl.analysis.g2.G2Accumulator`), its g²(0) without background
  correction for the precision check and the previews (:meth:`G2Measurement.g2`), and
  the final :class:`G2Outcome`: the histogram, g²(0) with the background correction
  (:func:`~micropl.analysis.g2.pulsed_g2`) and the peak-train fit
  (:func:`~micropl.analysis.g2.fit_peak_train`).

:class:`AnalysisSettings` holds the session's fit settings (what replay may change).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from micropl.analysis.g2 import (
    G2Accumulator,
    G2Result,
    PeakTrainFit,
    check_channel_pair,
    fit_peak_train,
    pulsed_g2,
    pulsed_window_ps,
)
from micropl.analysis.spectra import SpectrumFit, fit_spectra
from micropl.errors import AnalysisInputError, UserError
from micropl.records import G2Histogram, Spectrum, TagChunk

log = logging.getLogger(__name__)

__all__ = ["AnalysisSettings", "G2Measurement", "G2Outcome", "check_window_fraction",
           "fit_spectrum_records", "spectrum_noise"]


class AnalysisSettings(BaseModel):
    """Fit settings of a session: the procedures' results, replay and the live previews."""

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


# --------------------------------------------------------------------------- spectra
def spectrum_noise(spectrum: Spectrum) -> dict[str, Any]:
    """The noise model of a processed spectrum, as :func:`fit_spectra` arguments.

    Photoelectron counts (``counts_unit == "e"``) have a known model: excess
    factor 2 with EM gain, 1 (Poisson) without, plus the stated
    signal-independent noise (e⁻ rms per pixel). ADU counts have none
    (``noise_factor=None``). The error bars then follow the one rule of
    :func:`micropl.analysis.spectra.error_scale`.

    Parameters
    ----------
    spectrum : Spectrum
        A processed spectrum.

    Returns
    -------
    dict
        ``noise_factor`` (and ``read_noise`` in e⁻ rms for photoelectrons).
    """
    if spectrum.counts_unit == "e":
        return {"noise_factor": 2.0 if spectrum.em_gain > 1 else 1.0,
                "read_noise": float(spectrum.read_noise)}
    return {"noise_factor": None}


def fit_spectrum_records(spectra: Sequence[Spectrum], model: str = "lorentzian"
                         ) -> list[SpectrumFit]:
    """The line fit of each processed spectrum (one :func:`fit_spectra` call per group).

    Consecutive spectra that share a wavelength axis and a noise model are fitted
    in one batch call (the fitter's parallel path; a spectrum's fit does not
    depend on its batch).

    Parameters
    ----------
    spectra : sequence of Spectrum
        Processed spectra (counts per pixel, bias subtracted), wavelengths in nm.
    model : {"lorentzian", "gaussian", "voigt"}
        Line shape in energy (:attr:`AnalysisSettings.spectrum_model`).

    Returns
    -------
    list of SpectrumFit
        One per spectrum, in order (peak energies in eV, widths in meV, 1σ errors).

    Raises
    ------
    AnalysisInputError
        A spectrum the fitter refuses (the whole call: fit one at a time to keep
        the others).
    """
    fits: list[SpectrumFit] = []
    group: list[Spectrum] = []
    for spectrum in spectra:
        if group and not _same_batch(group[0], spectrum):
            fits += _fit_group(group, model)
            group = []
        group.append(spectrum)
    if group:
        fits += _fit_group(group, model)
    return fits


def _fit_group(group: list[Spectrum], model: str) -> list[SpectrumFit]:
    first = group[0]
    counts = np.stack([s.counts for s in group])
    saturated = [getattr(s, "saturated_pixels", 0) > 0 for s in group]
    fit = fit_spectra(first.wavelength_nm, counts, model=model, saturated=saturated,
                      **spectrum_noise(first))
    return [fit.select(i) for i in range(len(group))]


def _same_batch(a: Spectrum, b: Spectrum) -> bool:
    """Whether two spectra can share one batch fit (same axis and noise model)."""
    return (spectrum_noise(a) == spectrum_noise(b)
            and (a.wavelength_nm is b.wavelength_nm
                 or np.array_equal(a.wavelength_nm, b.wavelength_nm)))


# --------------------------------------------------------------------------- g2
def check_window_fraction(value: float) -> float:
    """A g² window fraction (of the period), refused unless 0 < value <= 1.

    Raises
    ------
    AnalysisInputError
        Outside (0, 1].
    """
    value = float(value)
    if not 0 < value <= 1:
        raise AnalysisInputError(f"g² window_fraction must be in (0, 1], got {value}")
    return value


@dataclass(frozen=True)
class G2Outcome:
    """The final result of a g² measurement (all records of kind ``final``).

    Attributes
    ----------
    histogram : G2Histogram
        The coincidence histogram (delays in ps, its integration time in s).
    result : G2Result
        g²(0) with the background correction (:func:`~micropl.analysis.g2.pulsed_g2`).
    peak_train : PeakTrainFit or None
        The fit of the whole peak train (background-free g²(0), lifetime in ns,
        delay in ps); None when the fitter refused the histogram (``peak_train_error``).
    peak_train_error : str
        Why there is no peak-train fit ("" when there is one).
    """

    histogram: G2Histogram
    result: G2Result
    peak_train: PeakTrainFit | None
    peak_train_error: str = ""

    def records(self) -> list[Any]:
        """The records to emit, in order: histogram, result, peak-train fit (when made)."""
        return [r for r in (self.histogram, self.result, self.peak_train) if r is not None]


class G2Measurement:
    """One pulsed HBT measurement: its histogram, chunk by chunk, and its g²(0).

    Parameters
    ----------
    settings : AnalysisSettings
        Bin width (ps) and side peaks used.
    rep_rate_hz : float
        Laser repetition rate, Hz (the window spans ``n_side + 1`` periods each side).
    channels : (int, int)
        The APD channels correlated (start, stop).
    window_fraction : float, optional
        Fraction of the period integrated around each peak
        (:attr:`AnalysisSettings.g2_window_fraction` by default).

    Raises
    ------
    AnalysisInputError
        A repetition rate, bin width or window the analysis cannot use.
    """

    def __init__(self, settings: AnalysisSettings, rep_rate_hz: float,
                 channels: tuple[int, int], window_fraction: float | None = None) -> None:
        self.settings = settings
        self.rep_rate_hz = float(rep_rate_hz)
        channel_a, channel_b = check_channel_pair(*channels)
        window_ps = pulsed_window_ps(self.rep_rate_hz, settings.n_side, settings.g2_bin_ps)
        self.accumulator = G2Accumulator(settings.g2_bin_ps, window_ps, channel_a=channel_a,
                                         channel_b=channel_b)
        self.window_fraction = check_window_fraction(
            settings.g2_window_fraction if window_fraction is None else window_fraction)

    @property
    def n_chunks(self) -> int:
        """Tag chunks added so far."""
        return self.accumulator.n_chunks

    def add(self, chunk: TagChunk) -> None:
        """Correlate one tag chunk into the histogram (tags in ps, ascending per channel)."""
        self.accumulator.add_chunk(chunk)

    @property
    def integration_s(self) -> float:
        """Data time the histogram covers, s: from the integer ps sum of the chunks'
        intervals, the same however the tags are cut into chunks."""
        return self.accumulator.duration_ps * 1e-12

    def histogram(self) -> G2Histogram:
        """The histogram so far (copies): bin centres and width in ps, integration in s."""
        tau_ps, counts = self.accumulator.result()
        return G2Histogram(tau_ps=tau_ps, counts=counts, bin_ps=float(self.accumulator.bin_ps),
                           integration_s=self.integration_s)

    def g2(self, histogram: G2Histogram | None = None, *,
           background_correction: bool = False) -> G2Result:
        """g²(0) of the histogram (so far, or the one given), as every path computes it.

        Without background correction (the default) this is the precision check of
        the ``g2`` procedure and the live preview; the final result has it.

        Raises
        ------
        AnalysisInputError
            A histogram g²(0) cannot be computed from (e.g. no side-peak counts yet).
        """
        histogram = self.histogram() if histogram is None else histogram
        return pulsed_g2(histogram.tau_ps, histogram.counts, rep_rate_hz=self.rep_rate_hz,
                         n_side=self.settings.n_side, window_fraction=self.window_fraction,
                         background_correction=background_correction)

    def finish(self, histogram: G2Histogram | None = None) -> G2Outcome:
        """The final histogram, g²(0) with background correction and the peak-train fit.

        Parameters
        ----------
        histogram : G2Histogram, optional
            :meth:`histogram` taken already (a procedure emits it before the result,
            so that it is stored also when g²(0) cannot be computed).

        Raises
        ------
        AnalysisInputError
            No tag chunk was added, or g²(0) cannot be computed; the message says
            why. A peak-train fit the fitter refuses does not raise: it is left out
            (:attr:`G2Outcome.peak_train_error`).
        """
        if self.n_chunks == 0:
            raise AnalysisInputError("g² finished with no tags recorded")
        histogram = self.histogram() if histogram is None else histogram
        result = self.g2(histogram, background_correction=True)
        try:
            peak_train = fit_peak_train(histogram.tau_ps, histogram.counts,
                                        period_ps=result.period_ps, delay_ps=result.delay_ps)
        except UserError as exc:
            log.warning("peak-train fit not made: %s", exc)
            return G2Outcome(histogram, result, None, f"{type(exc).__name__}: {exc}")
        return G2Outcome(histogram, result, peak_train)
