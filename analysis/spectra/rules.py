"""The verdict rules of a spectrum fit: saturation, error scaling and resolution.

:func:`saturated_spectra`, :func:`error_scale` (the one rule of the error bars) and
:func:`resolution_ev` (the narrowest width the data can show), with the thresholds
:data:`SIGNIFICANCE_SIGMA`, :data:`POOR_FIT_CHI2` and :data:`FLAT_TOP_PIXELS`.
"""

from __future__ import annotations

import math

import numpy as np

from micropl.analysis.spectra.axes import (
    _check_axis,
    energy_ev_from_wavelength_nm,
    pixel_energy_width_ev,
)
from micropl.errors import AnalysisInputError

#: A line is significant when its area is at least this many standard errors.
SIGNIFICANCE_SIGMA = 3.0


#: With a known noise model, a reduced χ² above this marks the fit ``"poor fit"``.
POOR_FIT_CHI2 = 3.0


#: Adjacent pixels exactly at the spectrum's maximum that make a clipped (flat) top.
FLAT_TOP_PIXELS = 3


#: Values of :attr:`SpectrumFit.quality`.
QUALITIES = ("ok", "poor fit", "failed", "saturated")


def saturated_spectra(counts, saturation_counts: float | None = None) -> np.ndarray:
    """Which spectra have pixels at the detector's ceiling.

    A spectrum is saturated when a pixel reaches ``saturation_counts`` (the
    ADC ceiling or full well in the counts' units, when known), or when it
    has a flat top: at least :data:`FLAT_TOP_PIXELS` adjacent pixels exactly
    equal to its maximum, the maximum standing more than
    ``10·sqrt(max(median, 1))`` above the median (ties of a weak, noisy
    maximum are not a clipped line).

    Parameters
    ----------
    counts : array_like, shape (n_px,) or (n_spectra, n_px)
        Counts per pixel.
    saturation_counts : float, optional
        Ceiling in the counts' units.

    Returns
    -------
    ndarray of bool
        Shape ``()`` or ``(n_spectra,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import saturated_spectra
    >>> y = 100.0 + 1000.0 * np.exp(-0.5 * ((np.arange(100) - 50) / 3.0) ** 2)
    >>> clipped = np.minimum(y, 800.0)                                    # a flat top at the ceiling
    >>> saturated_spectra(np.stack([y, clipped])).tolist()
    [False, True]
    >>> bool(saturated_spectra(y, saturation_counts=1000.0))
    True
    """
    y = np.asarray(counts, dtype=np.float64)
    y2 = y.reshape(-1, y.shape[-1])
    out = np.array([_saturated_one(row, saturation_counts) is not None for row in y2])
    return out[0] if y.ndim == 1 else out


def _saturated_one(y: np.ndarray, saturation_counts: float | None) -> str | None:
    """Why one spectrum (or its fitted range) is saturated, or None."""
    top = float(y.max())
    if saturation_counts is not None and top >= saturation_counts:
        n = int(np.count_nonzero(y >= saturation_counts))
        return f"{n} pixel(s) at or above the saturation level {saturation_counts:g}"
    at_top = np.concatenate(([False], y == top, [False])).astype(np.int8)
    starts = np.flatnonzero(np.diff(at_top) == 1)
    stops = np.flatnonzero(np.diff(at_top) == -1)
    run = int((stops - starts).max())
    median = float(np.median(y))
    if run >= FLAT_TOP_PIXELS and top - median > 10.0 * math.sqrt(max(median, 1.0)):
        return f"flat top: {run} adjacent pixels at the maximum {top:g} (clipped)"
    return None


def error_scale(reduced_chi2, noise_known: bool, scale_errors: str = "auto"
                ) -> tuple[np.ndarray, np.ndarray]:
    """The factor applied to the noise model's errors, and whether it scaled them.

    **The rule** (``scale_errors="auto"``, every path): with a *known* noise
    model (``variance`` given, or ``noise_factor`` given: counts in
    photoelectrons, 2 for an EMCCD with EM gain, 1 for Poisson) the errors
    are the noise model's, multiplied by ``sqrt(reduced_chi2)`` when that is
    above 1 (data scattering more than the model says widen the errors; they
    never shrink below the noise model's). With an *unknown* noise model
    (``noise_factor=None``, e.g. a file in ADU) the weights are Poisson-shaped
    and the errors are multiplied by ``sqrt(reduced_chi2)`` whatever its value:
    the data's own scatter sets the noise scale.

    Parameters
    ----------
    reduced_chi2 : array_like
        Reduced χ² per spectrum.
    noise_known : bool
        Whether the noise model is known.
    scale_errors : {"auto", "chi2", "inflate", "none"}
        ``"auto"`` is the rule above; the others force one behaviour
        (``"chi2"``: always ``sqrt(reduced_chi2)``; ``"inflate"``: only above
        1; ``"none"``: the noise model's errors as they are), for tests.

    Returns
    -------
    factor : ndarray
        Multiplier of the errors (the covariance takes its square).
    scaled : ndarray of bool
        Whether the factor differs from 1 by the rule.

    Examples
    --------
    >>> from micropl.analysis.spectra import error_scale
    >>> factor, scaled = error_scale([0.25, 4.0], noise_known=True)      # widened above 1 only
    >>> factor.tolist(), scaled.tolist()
    ([1.0, 2.0], [False, True])
    >>> factor, scaled = error_scale([0.25, 4.0], noise_known=False)     # the data's own scatter
    >>> factor.tolist(), scaled.tolist()
    ([0.5, 2.0], [True, True])
    """
    if scale_errors not in ("auto", "chi2", "inflate", "none"):
        raise AnalysisInputError(
            f"scale_errors must be 'auto', 'chi2', 'inflate' or 'none', not {scale_errors!r}")
    red = np.asarray(reduced_chi2, dtype=np.float64)
    mode = scale_errors if scale_errors != "auto" else ("inflate" if noise_known else "chi2")
    if mode == "none":
        return np.ones_like(red), np.zeros(red.shape, dtype=bool)
    if mode == "chi2":
        return np.sqrt(red), np.ones(red.shape, dtype=bool)
    big = np.nan_to_num(red, nan=1.0) > 1.0
    return np.sqrt(np.where(big, red, 1.0)), big


def resolution_ev(wavelength_nm, peak_energy_ev, resolution_mev: float | None = None):
    """Narrowest line width the data can show, in eV, at each peak energy.

    The larger of the energy width of the pixel under the peak (from the
    wavelength axis' spacing; known on every path) and the spectrograph's
    instrument resolution ``resolution_mev`` when given.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel wavelengths in nm.
    peak_energy_ev : array_like
        Fitted peak energies in eV.
    resolution_mev : float, optional
        Instrument resolution (FWHM of its line spread function) in meV.

    Returns
    -------
    ndarray
        Same shape as ``peak_energy_ev``.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import resolution_ev
    >>> wl = np.linspace(500.0, 510.0, 101)                               # 0.1 nm pixels
    >>> (resolution_ev(wl, [2.46, 2.45]) * 1e3).round(3).tolist()          # one pixel, meV
    [0.488, 0.484]
    >>> (resolution_ev(wl, 2.46, resolution_mev=1.0) * 1e3).round(3).tolist()
    1.0
    """
    wl = _check_axis(wavelength_nm)
    centres = energy_ev_from_wavelength_nm(wl)
    width = pixel_energy_width_ev(wl)
    order = np.argsort(centres)
    e = np.asarray(peak_energy_ev, dtype=np.float64)
    px = np.interp(np.nan_to_num(e, nan=float(centres.mean())), centres[order], width[order])
    floor = 0.0 if resolution_mev is None else float(resolution_mev) * 1e-3
    return np.maximum(px, floor)
