"""Spectrum axes and unit conversions: pixel wavelengths, photon energies, pixel edges.

* :func:`polynomial_axis_nm` — a polynomial calibration in pixel index (the grating
  equation is :func:`micropl.grating.wavelength_axis_nm`, shared with the drivers);
* the photon-energy conversions of :mod:`micropl.units` (re-exported here);
* :func:`pixel_edges_nm`, :func:`pixel_energy_width_ev` and :func:`density_per_ev`
  (counts per pixel → counts per eV).
"""

from __future__ import annotations

import numpy as np

from micropl.errors import AnalysisInputError
from micropl.units import HC_EV_NM, energy_ev_from_wavelength_nm, wavelength_nm_from_energy_ev

__all__ = ["HC_EV_NM", "energy_ev_from_wavelength_nm", "wavelength_nm_from_energy_ev",
           "polynomial_axis_nm", "pixel_edges_nm", "pixel_energy_width_ev", "density_per_ev"]


def polynomial_axis_nm(n_px: int, coeffs) -> np.ndarray:
    """Wavelength axis from a polynomial calibration in pixel index.

    Parameters
    ----------
    n_px : int
        Number of pixels.
    coeffs : sequence of float
        Coefficients in **ascending** order: ``λ(i) = c0 + c1·i + c2·i² + …``
        with ``i = 0 … n_px − 1`` the pixel index, in nm.

    Returns
    -------
    ndarray of float64, shape (n_px,)
        Wavelength in nm of each pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import polynomial_axis_nm
    >>> polynomial_axis_nm(4, [500.0, 0.1, 1e-3]).round(3).tolist()
    [500.0, 500.101, 500.204, 500.309]
    """
    c = np.asarray(coeffs, dtype=np.float64).ravel()
    if c.size == 0 or not np.all(np.isfinite(c)):
        raise AnalysisInputError("polynomial axis: coefficients must be finite and non-empty")
    if int(n_px) < 1:
        raise AnalysisInputError(f"polynomial axis: need at least 1 pixel, got {n_px}")
    return np.polynomial.polynomial.polyval(np.arange(int(n_px), dtype=np.float64), c)


def _check_axis(wavelength_nm) -> np.ndarray:
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    if wl.ndim != 1 or wl.size < 2:
        raise AnalysisInputError(
            f"wavelength axis must be 1-D with at least 2 pixels, got shape {wl.shape}")
    if not np.all(np.isfinite(wl)) or np.any(wl <= 0):
        raise AnalysisInputError("wavelength axis must be finite and positive")
    d = np.diff(wl)
    if not (np.all(d > 0) or np.all(d < 0)):
        raise AnalysisInputError("wavelength axis must be strictly monotonic")
    return wl


def pixel_edges_nm(wavelength_nm) -> np.ndarray:
    """Wavelength of the pixel boundaries, half-way between pixel centres.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel-centre wavelengths in nm, strictly monotonic.

    Returns
    -------
    ndarray, shape (n_px + 1,)
        Edge wavelengths in nm; the outer edges are extrapolated by half a
        pixel.

    Examples
    --------
    >>> from micropl.analysis.spectra import pixel_edges_nm
    >>> pixel_edges_nm([500.0, 500.1, 500.3]).round(3).tolist()
    [499.95, 500.05, 500.2, 500.4]
    """
    wl = _check_axis(wavelength_nm)
    mid = 0.5 * (wl[1:] + wl[:-1])
    return np.concatenate(([wl[0] - (mid[0] - wl[0])], mid, [wl[-1] + (wl[-1] - mid[-1])]))


def pixel_energy_width_ev(wavelength_nm) -> np.ndarray:
    """Energy width ``|ΔE_i|`` of each pixel, in eV, shape (n_px,).

    Examples
    --------
    >>> from micropl.analysis.spectra import pixel_energy_width_ev
    >>> (pixel_energy_width_ev([500.0, 500.1, 500.2]) * 1e3).round(4).tolist()   # meV
    [0.4959, 0.4957, 0.4955]
    """
    return np.abs(np.diff(HC_EV_NM / pixel_edges_nm(wavelength_nm)))


def density_per_ev(wavelength_nm, counts) -> np.ndarray:
    """Convert counts per pixel to a spectral density in counts per eV.

    Each pixel's counts are divided by its energy width ``|ΔE_i|`` (from its
    wavelength edges), which to first order is ``Δλ_i · hc/λ²``, i.e. the
    Jacobian ``|dλ/dE| = λ²/hc`` applied to counts per nm. The sum of
    ``density · |ΔE|`` equals the sum of the counts.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel-centre wavelengths in nm.
    counts : array_like, shape (..., n_px)
        Counts per pixel.

    Returns
    -------
    ndarray, shape (..., n_px)
        Counts per eV.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import density_per_ev, pixel_energy_width_ev
    >>> wl = np.array([500.0, 500.1, 500.2])
    >>> d = density_per_ev(wl, [10.0, 20.0, 10.0])
    >>> round(float(d @ pixel_energy_width_ev(wl)), 9)                          # the counts, summed
    40.0
    """
    counts = np.asarray(counts, dtype=np.float64)
    width = pixel_energy_width_ev(wavelength_nm)
    if counts.shape[-1] != width.shape[0]:
        raise AnalysisInputError(
            f"counts have {counts.shape[-1]} pixels but the axis has {width.shape[0]}")
    return counts / width


def _energy_edges(wavelength_nm: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(HC_EV_NM / pixel_edges_nm(wavelength_nm))
