"""Spectrum axes, unit conversions, line models and the batch/live line fitter.

Everything here works on numpy arrays.

Axes
----
* the grating equation of a Czerny–Turner spectrograph is
  :func:`micropl.grating.wavelength_axis_nm` (shared with the drivers);
* :func:`polynomial_axis_nm` — a polynomial calibration in pixel index;
* :func:`energy_ev_from_wavelength_nm`, :func:`wavelength_nm_from_energy_ev`,
  :func:`pixel_edges_nm`, :func:`pixel_energy_width_ev` and
  :func:`density_per_ev` (counts per pixel → counts per eV).

Fitting
-------
:func:`fit_spectra` fits one spectrum (live) or a batch of spectra (a map or a
time series) that share one wavelength axis. The line is a Lorentzian (default),
Gaussian or Voigt profile **in photon energy**, possibly several lines
(``n_peaks``) on one shared constant background. The fit is done on the counts
per pixel, as they were measured::

    model_i = sum_k A_k * integral over pixel i of L_k(E) dE  +  B

where ``L_k`` has unit area in eV, ``A_k`` is the line area in counts and ``B``
the constant offset per pixel (a camera offset lives in pixel space). For the
Lorentzian and Gaussian the pixel integral is exact (difference of the line's
cumulative distribution at the pixel's energy edges), which matters for narrow
lines sampled by a few points; the Voigt is integrated over each pixel with
3-point Gauss–Legendre quadrature.

The minimiser is a Levenberg–Marquardt loop compiled with numba, with analytic
Jacobians, run in parallel over the batch. Weights come from the noise model
evaluated on the *model*, not on the noisy counts (iteratively re-weighted), so
the estimate has no Neyman-χ² bias at low counts; for ``noise_factor=1`` and no
read noise it is the Poisson maximum-likelihood estimate.

The rules (one place, every path)
---------------------------------
The CLI (``micropl analyze spectrum``), the live analysis (and through it the
spectrum procedure, the spectral series, the survey, replay and the GUI) and
a plain ``fit_spectra(wavelength_nm, counts)`` call the same function with the
same defaults, so the same data give the same numbers.

* **Fit range** (``roi_nm="auto"``, :func:`estimate_line`,
  :func:`main_line_roi_nm`): per spectrum, a robust first estimate of the
  strongest line (3-pixel running median against spikes, smoothing matched to
  the line's width) and the range centre ± 4 FWHM (at least ± 8 pixels),
  clipped to the data and cut at the valley before a neighbouring line.
* **Error bars** (:func:`error_scale`): with a known noise model (``variance``,
  or ``noise_factor`` for counts in photoelectrons) the noise model's errors,
  widened by ``sqrt(reduced_chi2)`` when it is above 1; with an unknown one
  (``noise_factor=None``, the default: counts in ADU, a file) Poisson-shaped
  weights and errors scaled by ``sqrt(reduced_chi2)``. ``errors_scaled`` says
  per spectrum whether a χ² factor was applied.
* **Verdict** (``quality``, ``message``): ``"saturated"`` when pixels reach the
  ceiling (a flat top of ≥ 3 pixels at the maximum, ``saturation_counts``, or
  raw pixels at the camera's ADC ceiling); ``"failed"`` when the fit did not
  converge, a FWHM is below the resolution (the larger of one pixel's energy
  width and ``resolution_mev``) or a line's area is below 3σ of its error;
  ``"poor fit"`` when the noise model is known and ``reduced_chi2 > 3``;
  otherwise ``"ok"``. ``success`` is True for ``"ok"`` and ``"poor fit"``.

Parts
-----
``axes`` (pixel wavelengths, energies, edges, densities) · ``profiles`` (line shapes,
Faddeeva function, scalar CDF/Voigt kernels) · ``kernels`` (numba passes: model,
weights, normal equations) · ``levmar`` (the per-spectrum LM loop and its batch runners,
on :mod:`micropl.analysis.fitcore`) · ``estimate`` (first estimate, automatic range,
start values) · ``rules`` (saturation, error scale, resolution) · ``results``
(:class:`SpectrumFit`, :func:`model_counts`) · ``fit`` (:func:`fit_spectra`). Import
the public names from the package.
"""

from micropl.analysis.spectra.axes import (
    HC_EV_NM,
    density_per_ev,
    energy_ev_from_wavelength_nm,
    pixel_edges_nm,
    pixel_energy_width_ev,
    polynomial_axis_nm,
    wavelength_nm_from_energy_ev,
)
from micropl.analysis.spectra.estimate import (
    ROI_FWHM_MULTIPLE,
    ROI_MIN_HALF_PX,  # noqa: F401  (public, not in __all__)
    LineEstimate,
    estimate_line,
    main_line_roi_nm,
)
from micropl.analysis.spectra.fit import (
    fit_spectra,
)
from micropl.analysis.spectra.profiles import (
    MODELS,
    faddeeva,
    line_profile_per_ev,
    voigt_fwhm,
)
from micropl.analysis.spectra.results import (
    SpectrumFit,
    model_counts,
)
from micropl.analysis.spectra.rules import (
    FLAT_TOP_PIXELS,
    POOR_FIT_CHI2,
    QUALITIES,
    SIGNIFICANCE_SIGMA,
    error_scale,
    resolution_ev,
    saturated_spectra,
)

__all__ = [
    "FLAT_TOP_PIXELS",
    "HC_EV_NM",
    "LineEstimate",
    "MODELS",
    "POOR_FIT_CHI2",
    "QUALITIES",
    "ROI_FWHM_MULTIPLE",
    "SIGNIFICANCE_SIGMA",
    "SpectrumFit",
    "density_per_ev",
    "energy_ev_from_wavelength_nm",
    "error_scale",
    "estimate_line",
    "faddeeva",
    "fit_spectra",
    "line_profile_per_ev",
    "main_line_roi_nm",
    "model_counts",
    "pixel_edges_nm",
    "pixel_energy_width_ev",
    "polynomial_axis_nm",
    "resolution_ev",
    "saturated_spectra",
    "voigt_fwhm",
    "wavelength_nm_from_energy_ev",
]

# Session files name the stored record types by their public path (the table's
# ``type_name``, e.g. ``micropl.analysis.spectra.SpectrumFit``): keep it.
for _cls in (SpectrumFit, LineEstimate):
    _cls.__module__ = __name__
del _cls
