"""Second-order correlation g²(τ) from photon time tags and from HBT histograms.

The package holds four things:

* :func:`cross_correlate` — the exact start–multi-stop cross-correlation of two
  sorted time-tag streams (numba, one pass with two pointers), and
  :class:`G2Accumulator`, its incremental form that is fed chunks as they arrive;
* :func:`pulsed_g2` — g²(0) of a pulsed source as the ratio of the central peak area
  to the mean side-peak area, with the repetition period and the zero-delay peak
  found from the data when they are not given (:class:`G2Result`);
* :func:`fit_peak_train` — a fit of the whole pulsed histogram as a comb of
  two-sided exponential peaks convolved with a Gaussian instrument response
  (:class:`PeakTrainFit`);
* :func:`fit_cw_g2` — a fit of the CW antibunching dip
  g²(τ) = 1 − (1 − g²(0))·exp(−|τ − τ_d|/τ₀) convolved with a Gaussian IRF
  (:class:`CwG2Fit`).

Binning convention
------------------
A histogram with window ``W`` and bin width ``b`` has ``n = ceil(2W / b)`` half-open
bins ``[-W + i·b, -W + (i+1)·b)``. When ``2W`` is a multiple of ``b`` the bins cover
exactly ``[-W, W)``; otherwise the last bin is full width and the histogram covers
``[-W, -W + n·b)``, slightly more than ``W`` on the positive side. Every pair delay
``-W <= d < W`` is always counted, and no bin is ever narrower than ``b``.

Parts
-----
``correlate`` (:func:`cross_correlate`, :func:`histogram_bins`) · ``accumulator``
(:class:`G2Accumulator`) · ``histogram`` (checks, windows, :func:`detect_period_ps`) ·
``intervals`` (Poisson intervals) · ``shapes`` (peak shape, comb kernel) · ``comb`` (the
comb model and the folded side-peak shape) · ``refit`` (Poisson-weighted refits on
:mod:`micropl.analysis.fitcore`) · ``pulsed`` (:func:`pulsed_g2`) · ``peak_train``
(:func:`fit_peak_train`) · ``cw`` (:func:`fit_cw_g2`) · ``results`` (the result
classes). Import the public names from the package.
"""

from micropl.analysis.g2.accumulator import (
    G2Accumulator,
)
from micropl.analysis.g2.correlate import (
    MAX_HISTOGRAM_BINS,
    check_channel_pair,
    cross_correlate,
    histogram_bins,
)
from micropl.analysis.g2.cw import (
    fit_cw_g2,
)
from micropl.analysis.g2.histogram import (
    MAX_ANALYSIS_BINS,
    MIN_BINS_PER_PERIOD,  # noqa: F401  (public, not in __all__)
    MIN_SIDE_COUNTS,  # noqa: F401  (public, not in __all__)
    detect_period_ps,
    pulsed_window_ps,
)
from micropl.analysis.g2.intervals import (
    poisson_interval,
    poisson_ratio_interval,
)
from micropl.analysis.g2.peak_train import (
    fit_peak_train,
)
from micropl.analysis.g2.pulsed import (
    pulsed_g2,
)
from micropl.analysis.g2.results import (
    CwG2Fit,
    G2Result,
    PeakTrainFit,
)
from micropl.analysis.g2.shapes import (
    two_sided_exp_irf,
)

__all__ = [
    "MAX_ANALYSIS_BINS",
    "MAX_HISTOGRAM_BINS",
    "check_channel_pair",
    "poisson_interval",
    "poisson_ratio_interval",
    "pulsed_window_ps",
    "CwG2Fit",
    "G2Accumulator",
    "G2Result",
    "PeakTrainFit",
    "cross_correlate",
    "detect_period_ps",
    "fit_cw_g2",
    "fit_peak_train",
    "histogram_bins",
    "pulsed_g2",
    "two_sided_exp_irf",
]

# Session files name the stored record types by their public path (the table's
# ``type_name``, e.g. ``micropl.analysis.spectra.SpectrumFit``): keep it.
for _cls in (G2Accumulator, G2Result, PeakTrainFit, CwG2Fit):
    _cls.__module__ = __name__
del _cls
