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
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numba
import numpy as np
from numba import njit, prange
from scipy.ndimage import gaussian_filter1d, median_filter

from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)

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

#: Planck constant × speed of light in eV·nm: E[eV] = HC_EV_NM / λ[nm].
HC_EV_NM = 1239.84198

#: Line models understood by :func:`fit_spectra`.
MODELS = ("lorentzian", "gaussian", "voigt")

_MODEL_CODE = {"lorentzian": 0, "gaussian": 1, "voigt": 2}
_PEAK_PARAMS = {
    "lorentzian": ("peak_energy_ev", "fwhm_ev", "area"),
    "gaussian": ("peak_energy_ev", "fwhm_ev", "area"),
    "voigt": ("peak_energy_ev", "fwhm_lorentz_ev", "fwhm_gauss_ev", "area"),
}
_SIGMA_PER_FWHM = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
_SQRT_PI = math.sqrt(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)

_STATUS_MESSAGES = {
    0: "",
    1: "did not converge within the iteration limit",
    2: "singular curvature matrix: parameters are not determined by the data",
    3: "stalled: no step lowers chi-square (parameter at a bound?)",
    4: "non-finite model or chi-square",
    5: "peak energy outside the fitted range",
    6: "no line found: area not positive",
    7: "linewidth at its bound (narrower than a thousandth of a pixel or wider than the range)",
}


# =========================================================================== axes
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
    """
    c = np.asarray(coeffs, dtype=np.float64).ravel()
    if c.size == 0 or not np.all(np.isfinite(c)):
        raise AnalysisInputError("polynomial axis: coefficients must be finite and non-empty")
    if int(n_px) < 1:
        raise AnalysisInputError(f"polynomial axis: need at least 1 pixel, got {n_px}")
    return np.polynomial.polynomial.polyval(np.arange(int(n_px), dtype=np.float64), c)


def energy_ev_from_wavelength_nm(wavelength_nm):
    """Photon energy in eV of a vacuum wavelength in nm: ``E = 1239.84198 / λ``.

    Parameters
    ----------
    wavelength_nm : float or array_like
        Wavelength in nm.

    Returns
    -------
    float or ndarray
        Energy in eV, same shape.
    """
    return HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)


def wavelength_nm_from_energy_ev(energy_ev):
    """Vacuum wavelength in nm of a photon energy in eV (``λ = 1239.84198 / E``)."""
    return HC_EV_NM / np.asarray(energy_ev, dtype=np.float64)


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
    """
    wl = _check_axis(wavelength_nm)
    mid = 0.5 * (wl[1:] + wl[:-1])
    return np.concatenate(([wl[0] - (mid[0] - wl[0])], mid, [wl[-1] + (wl[-1] - mid[-1])]))


def pixel_energy_width_ev(wavelength_nm) -> np.ndarray:
    """Energy width ``|ΔE_i|`` of each pixel, in eV, shape (n_px,)."""
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
    """
    counts = np.asarray(counts, dtype=np.float64)
    width = pixel_energy_width_ev(wavelength_nm)
    if counts.shape[-1] != width.shape[0]:
        raise AnalysisInputError(
            f"counts have {counts.shape[-1]} pixels but the axis has {width.shape[0]}")
    return counts / width


def voigt_fwhm(fwhm_lorentz, fwhm_gauss):
    """FWHM of a Voigt profile (Olivero & Longbothum 1977, accurate to 0.02 %).

    Parameters
    ----------
    fwhm_lorentz, fwhm_gauss : float or ndarray
        FWHM of the Lorentzian and the Gaussian components (any one unit).

    Returns
    -------
    float or ndarray
        FWHM of their convolution, same unit.
    """
    fl = np.asarray(fwhm_lorentz, dtype=np.float64)
    fg = np.asarray(fwhm_gauss, dtype=np.float64)
    return 0.5346 * fl + np.sqrt(0.2166 * fl * fl + fg * fg)


# =========================================================================== line shapes
def _weideman_coefficients(n_terms: int = 40) -> tuple[np.ndarray, float]:
    """Coefficients of Weideman's (1994) rational approximation of w(z)."""
    m = 2 * n_terms
    k = np.arange(-m + 1, m)
    length = math.sqrt(n_terms / math.sqrt(2.0))
    t = length * np.tan(k * math.pi / m / 2.0)
    f = np.concatenate(([0.0], np.exp(-t * t) * (length * length + t * t)))
    a = np.real(np.fft.fft(np.fft.fftshift(f))) / (2 * m)
    return np.ascontiguousarray(a[1:n_terms + 1][::-1]), length


_W_COEFFS, _W_LENGTH = _weideman_coefficients()


@njit(cache=True, nogil=True, error_model="numpy")
def _faddeeva_upper(z, coeffs, length):
    """w(z) = exp(-z²) erfc(-iz) for Im z ≥ 0 (relative error ≲ 1e-10)."""
    if abs(z) > 25.0:
        r = z
        for k in range(12, 0, -1):
            r = z - (0.5 * k) / r
        return 1j / (_SQRT_PI * r)
    lz = length - 1j * z
    zz = (length + 1j * z) / lz
    p = coeffs[0] + 0j
    for k in range(1, coeffs.shape[0]):
        p = p * zz + coeffs[k]
    return 2.0 * p / (lz * lz) + 1.0 / (_SQRT_PI * lz)


@njit(cache=True, nogil=True, error_model="numpy")
def _faddeeva_array(z, coeffs, length, out):
    for i in range(z.shape[0]):
        out[i] = _faddeeva_upper(z[i], coeffs, length)


def faddeeva(z) -> np.ndarray:
    """Faddeeva function ``w(z) = exp(−z²) erfc(−iz)`` for ``Im z ≥ 0``.

    The numba kernel behind the Voigt model: Weideman's 40-term rational
    approximation, and a continued fraction for ``|z| > 25``.

    Parameters
    ----------
    z : array_like of complex
        Arguments with non-negative imaginary part.

    Returns
    -------
    ndarray of complex128, same shape as ``z``.
    """
    z = np.asarray(z, dtype=np.complex128)
    if np.any(z.imag < 0):
        raise AnalysisInputError("faddeeva: only Im z >= 0 is supported")
    flat = np.ascontiguousarray(z.ravel())
    out = np.empty_like(flat)
    _faddeeva_array(flat, _W_COEFFS, _W_LENGTH, out)
    return out.reshape(z.shape)


def line_profile_per_ev(energy_ev, peak_energy_ev, fwhm_ev, model="lorentzian",
                        fwhm_gauss_ev=None) -> np.ndarray:
    """Unit-area line profile in 1/eV.

    Parameters
    ----------
    energy_ev : array_like
        Photon energies in eV.
    peak_energy_ev : float
        Line centre in eV.
    fwhm_ev : float
        FWHM in eV (for ``"voigt"``: the Lorentzian component's FWHM).
    model : {"lorentzian", "gaussian", "voigt"}
        Line shape.
    fwhm_gauss_ev : float, optional
        Gaussian component's FWHM in eV, required for ``"voigt"``.

    Returns
    -------
    ndarray
        Profile values in 1/eV, same shape as ``energy_ev``.
    """
    x = np.asarray(energy_ev, dtype=np.float64) - peak_energy_ev
    if model == "lorentzian":
        g = 0.5 * fwhm_ev
        return g / (np.pi * (x * x + g * g))
    if model == "gaussian":
        s = fwhm_ev * _SIGMA_PER_FWHM
        return np.exp(-0.5 * (x / s) ** 2) / (s * _SQRT_2PI)
    if model == "voigt":
        if fwhm_gauss_ev is None:
            raise AnalysisInputError("voigt profile needs fwhm_gauss_ev")
        s = fwhm_gauss_ev * _SIGMA_PER_FWHM
        z = (x + 0.5j * fwhm_ev) / (s * math.sqrt(2.0))
        return faddeeva(z).real / (s * _SQRT_2PI)
    raise AnalysisInputError(f"unknown line model {model!r}; choose one of {', '.join(MODELS)}")


# =========================================================================== numba core
# Gauss–Legendre nodes and weights on [-1, 1] for the Voigt pixel integral.
_GL_X = np.array([-math.sqrt(0.6), 0.0, math.sqrt(0.6)])
_GL_W = np.array([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0])


@njit(cache=True, nogil=True, error_model="numpy")
def _cdf_terms(code, e, e0, fwhm):
    """CDF, pdf and d(CDF)/d(fwhm) of a unit-area line at energy e."""
    x = e - e0
    if code == 0:
        u = 2.0 * x / fwhm
        q = 1.0 / (1.0 + u * u)
        cdf = 0.5 + math.atan(u) / math.pi
        pdf = 2.0 * q / (math.pi * fwhm)
    else:
        s = fwhm * 0.42466090014400953
        t = x / (s * 1.4142135623730951)
        cdf = 0.5 * (1.0 + math.erf(t))
        pdf = math.exp(-t * t) / (s * 2.5066282746310002)
    return cdf, pdf, -pdf * x / fwhm


@njit(cache=True, nogil=True, error_model="numpy")
def _voigt_terms(x, fl, fg, coeffs, length):
    """Voigt value and its derivatives d/dx, d/dfl, d/dfg at offset x from the centre."""
    s = fg * 0.42466090014400953
    g = 0.5 * fl
    c = s * 1.4142135623730951
    z = complex(x, g) / c
    w = _faddeeva_upper(z, coeffs, length)
    dw = -2.0 * z * w + 2j / _SQRT_PI
    norm = 1.0 / (s * 2.5066282746310002)
    v = w.real * norm
    dv_dx = dw.real / c * norm
    dv_dg = -dw.imag / c * norm
    dv_ds = (dw * (-z / s)).real * norm - v / s
    return v, dv_dx, 0.5 * dv_dg, dv_ds * 0.42466090014400953


@njit(cache=True, nogil=True, error_model="numpy")
def _pass(code, npk, npp, edges, sgn, p, y, var_in, has_var, nf, rn2, w_old,
          w_new, m_out, jrow, hmat, gvec, cprev, fprev, dprev, coeffs, length, glx, glw,
          want_jac):
    """Evaluate model (and Jacobian products) at parameters p.

    Returns (chi2 with the weights w_old, chi2 with the new weights w_new).
    Fills m_out, w_new and (if want_jac) H = JᵀWJ and g = JᵀW r with W = w_new.
    """
    n_px = y.shape[0]
    npar = p.shape[0]
    if want_jac:
        for a in range(npar):
            gvec[a] = 0.0
            for b in range(npar):
                hmat[a, b] = 0.0
    bkg = p[npar - 1]
    if code != 2:
        for k in range(npk):
            c0, f0, d0 = _cdf_terms(code, edges[0], p[k * npp], p[k * npp + 1])
            cprev[k] = c0
            fprev[k] = f0
            dprev[k] = d0
    chi_old = 0.0
    chi_new = 0.0
    for i in range(n_px):
        m = bkg
        jrow[npar - 1] = 1.0
        if code != 2:
            e = edges[i + 1]
            for k in range(npk):
                o = k * npp
                c1, f1, d1 = _cdf_terms(code, e, p[o], p[o + 1])
                integ = sgn * (c1 - cprev[k])
                area = p[o + 2]
                m += area * integ
                jrow[o] = -sgn * (f1 - fprev[k]) * area
                jrow[o + 1] = sgn * (d1 - dprev[k]) * area
                jrow[o + 2] = integ
                cprev[k] = c1
                fprev[k] = f1
                dprev[k] = d1
        else:
            mid = 0.5 * (edges[i] + edges[i + 1])
            half = 0.5 * abs(edges[i + 1] - edges[i])
            for k in range(npk):
                o = k * npp
                e0 = p[o]
                fl = p[o + 1]
                fg = p[o + 2]
                area = p[o + 3]
                iv = 0.0
                ix = 0.0
                il = 0.0
                ig = 0.0
                for q in range(glx.shape[0]):
                    v, dx, dl, dg = _voigt_terms(mid + half * glx[q] - e0, fl, fg, coeffs, length)
                    iv += glw[q] * v
                    ix += glw[q] * dx
                    il += glw[q] * dl
                    ig += glw[q] * dg
                iv *= half
                m += area * iv
                jrow[o] = -ix * half * area
                jrow[o + 1] = il * half * area
                jrow[o + 2] = ig * half * area
                jrow[o + 3] = iv
        m_out[i] = m
        if has_var:
            var = var_in[i]
        else:
            var = nf * max(m, 0.0) + rn2
            floor = 1e-3 * nf + rn2
            if var < floor:
                var = floor
        wi = 1.0 / var
        w_new[i] = wi
        r = y[i] - m
        chi_old += r * r * w_old[i]
        chi_new += r * r * wi
        if want_jac:
            for a in range(npar):
                wa = wi * jrow[a]
                gvec[a] += wa * r
                for b in range(a + 1):
                    hmat[a, b] += wa * jrow[b]
    if want_jac:
        for a in range(npar):
            for b in range(a):
                hmat[b, a] = hmat[a, b]
    return chi_old, chi_new


_FASTMATH = {"reassoc", "contract", "arcp", "nsz"}  # vectorise; keep NaN/inf semantics


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH, inline="always")
def _atan(x):
    """Branch-free arctangent (rational minimax on a reduced range, ~1 ulp) that vectorises."""
    a = abs(x)
    big = a > 2.414213562373095
    mid = a > 0.66
    num = -1.0 if big else (a - 1.0 if mid else a)
    den = a if big else (a + 1.0 if mid else 1.0)
    xr = num / den
    y0 = 1.5707963267948966 if big else (0.7853981633974483 if mid else 0.0)
    corr = 6.123233995736766e-17 if big else (3.061616997868383e-17 if mid else 0.0)
    z = xr * xr
    pz = ((((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z
            - 7.500855792314704667340e1) * z - 1.228866684490136173410e2) * z
          - 6.485021904942025371773e1)
    qz = (((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z
            + 4.328810604912902668951e2) * z + 4.853903996359136964868e2) * z
          + 1.945506571482613964425e2)
    r = y0 + (xr * z * pz / qz + xr + corr)
    return r if x >= 0 else -r


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _edge_terms(code, edges, e0, fwhm, c_arr, f_arr, d_arr):
    """CDF, pdf and d(CDF)/d(fwhm) of one unit-area line at every pixel edge."""
    if code == 0:
        k = 2.0 / fwhm
        fk = k / math.pi
        dk = -1.0 / (math.pi * fwhm)
        for j in range(edges.shape[0]):
            u = (edges[j] - e0) * k
            q = 1.0 / (1.0 + u * u)
            c_arr[j] = _atan(u) * (1.0 / math.pi)
            f_arr[j] = fk * q
            d_arr[j] = dk * q * u
    else:
        for j in range(edges.shape[0]):
            c, f, d = _cdf_terms(code, edges[j], e0, fwhm)
            c_arr[j] = c
            f_arr[j] = f
            d_arr[j] = d


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _accumulate_single(sgn, area, bkg, c_arr, f_arr, d_arr, y, var_in, has_var, nf, rn2,
                       w_old, w_new, out):
    """Sums of the 4-parameter normal equations over pixels; see :func:`_pass_single`."""
    n_px = y.shape[0]
    floor = 1e-3 * nf + rn2
    sa = sgn * area
    h00 = h01 = h02 = h03 = h11 = h12 = h13 = h22 = h23 = h33 = 0.0
    g0 = g1 = g2 = g3 = 0.0
    chi_old = 0.0
    chi_new = 0.0
    for i in range(n_px):
        integ = sgn * (c_arr[i + 1] - c_arr[i])
        j0 = -sa * (f_arr[i + 1] - f_arr[i])
        j1 = sa * (d_arr[i + 1] - d_arr[i])
        m = bkg + area * integ
        if has_var:
            var = var_in[i]
        else:
            var = max(nf * max(m, 0.0) + rn2, floor)
        wi = 1.0 / var
        w_new[i] = wi
        r = y[i] - m
        wr = wi * r
        chi_old += r * r * w_old[i]
        chi_new += r * wr
        a0 = wi * j0
        a1 = wi * j1
        a2 = wi * integ
        h00 += a0 * j0
        h01 += a0 * j1
        h02 += a0 * integ
        h03 += a0
        h11 += a1 * j1
        h12 += a1 * integ
        h13 += a1
        h22 += a2 * integ
        h23 += a2
        h33 += wi
        g0 += a0 * r
        g1 += a1 * r
        g2 += a2 * r
        g3 += wr
    out[0] = h00
    out[1] = h01
    out[2] = h02
    out[3] = h03
    out[4] = h11
    out[5] = h12
    out[6] = h13
    out[7] = h22
    out[8] = h23
    out[9] = h33
    out[10] = g0
    out[11] = g1
    out[12] = g2
    out[13] = g3
    out[14] = chi_old
    out[15] = chi_new


@njit(cache=True, nogil=True, error_model="numpy")
def _pass_single(code, edges, sgn, p, y, var_in, has_var, nf, rn2, w_old, w_new, hmat, gvec,
                 c_arr, f_arr, d_arr, sums):
    """Fast path of :func:`_pass` for one Lorentzian or Gaussian line (4 parameters)."""
    _edge_terms(code, edges, p[0], p[1], c_arr, f_arr, d_arr)
    _accumulate_single(sgn, p[2], p[3], c_arr, f_arr, d_arr, y, var_in, has_var, nf, rn2,
                       w_old, w_new, sums)
    k = 0
    for a in range(4):
        for b in range(a, 4):
            hmat[a, b] = sums[k]
            hmat[b, a] = sums[k]
            k += 1
    for a in range(4):
        gvec[a] = sums[10 + a]
    return sums[14], sums[15]


@njit(cache=True, nogil=True, error_model="numpy")
def _evaluate(code, npk, npp, edges, sgn, p, y, var_in, has_var, nf, rn2, w_old, w_new, m_buf,
              jrow, hmat, gvec, cprev, fprev, dprev, coeffs, length, glx, glw):
    if code != 2 and npk == 1:
        return _pass_single(code, edges, sgn, p, y, var_in, has_var, nf, rn2, w_old, w_new,
                            hmat, gvec, cprev, fprev, dprev, m_buf)
    return _pass(code, npk, npp, edges, sgn, p, y, var_in, has_var, nf, rn2, w_old, w_new,
                 m_buf, jrow, hmat, gvec, cprev, fprev, dprev, coeffs, length, glx, glw, True)


@njit(cache=True, nogil=True, error_model="numpy")
def _gn_decrement(hmat, gvec, a_mat, step):
    """g·H⁻¹g: the squared size of the Gauss–Newton step in σ units (-1 if H is singular)."""
    n = gvec.shape[0]
    for a in range(n):
        for b in range(n):
            a_mat[a, b] = hmat[a, b]
    if not _solve(a_mat, gvec, step):
        return -1.0
    s = 0.0
    for a in range(n):
        s += step[a] * gvec[a]
    return s


@njit(cache=True, nogil=True, error_model="numpy")
def _solve(a, b, out):
    """Solve a x = b for a small symmetric positive-definite a (Cholesky). False if singular."""
    n = b.shape[0]
    lo = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= lo[i, k] * lo[j, k]
            if i == j:
                if not s > 0.0:
                    return False
                lo[i, i] = math.sqrt(s)
            else:
                lo[i, j] = s / lo[j, j]
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= lo[i, k] * out[k]
        out[i] = s / lo[i, i]
    for i in range(n - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, n):
            s -= lo[k, i] * out[k]
        out[i] = s / lo[i, i]
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _invert(a, out):
    """Inverse of a symmetric positive-definite matrix via column solves (scaled for conditioning)."""
    n = a.shape[0]
    d = np.empty(n)
    for i in range(n):
        if not a[i, i] > 0.0:
            return False
        d[i] = 1.0 / math.sqrt(a[i, i])
    sa = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            sa[i, j] = a[i, j] * d[i] * d[j]
    e = np.zeros(n)
    col = np.empty(n)
    for j in range(n):
        for i in range(n):
            e[i] = 0.0
        e[j] = 1.0
        if not _solve(sa, e, col):
            return False
        for i in range(n):
            out[i, j] = col[i] * d[i] * d[j]
    return True


@njit(cache=True, nogil=True, error_model="numpy")
def _smooth5(y, out):
    n = y.shape[0]
    for i in range(n):
        acc = 0.0
        wsum = 0.0
        for k, wk in ((-2, 1.0), (-1, 4.0), (0, 6.0), (1, 4.0), (2, 1.0)):
            j = i + k
            if 0 <= j < n:
                acc += wk * y[j]
                wsum += wk
        out[i] = acc / wsum


@njit(cache=True, nogil=True, error_model="numpy")
def _initial_guess(code, npk, npp, edges, y, p0):
    """Greedy peel: strongest peak of the smoothed density, half-maximum width, subtract, repeat."""
    n = y.shape[0]
    ys = np.empty(n)
    _smooth5(y, ys)
    bkg = ys.min()
    ctr = np.empty(n)
    wid = np.empty(n)
    dens = np.empty(n)
    for i in range(n):
        ctr[i] = 0.5 * (edges[i] + edges[i + 1])
        wid[i] = abs(edges[i + 1] - edges[i])
        dens[i] = (ys[i] - bkg) / wid[i]
    span = abs(edges[n] - edges[0])
    for k in range(npk):
        j = np.argmax(dens)
        h = dens[j]
        if not h > 0.0:
            h = 1.0 / span
        half = 0.5 * h
        left = -1.0
        for i in range(j - 1, -1, -1):
            if dens[i] < half:
                step = dens[i + 1] - dens[i]
                f = (dens[i + 1] - half) / step if step != 0.0 else 0.0
                left = abs(ctr[j] - (ctr[i + 1] + f * (ctr[i] - ctr[i + 1])))
                break
        right = -1.0
        for i in range(j + 1, n):
            if dens[i] < half:
                step = dens[i - 1] - dens[i]
                f = (dens[i - 1] - half) / step if step != 0.0 else 0.0
                right = abs(ctr[j] - (ctr[i - 1] + f * (ctr[i] - ctr[i - 1])))
                break
        if left < 0 and right < 0:
            fwhm = 0.5 * span
        elif left < 0:
            fwhm = 2.0 * right
        elif right < 0:
            fwhm = 2.0 * left
        else:
            fwhm = left + right
        fwhm = max(fwhm, 0.5 * wid[j])
        e0 = ctr[j]
        o = k * npp
        p0[o] = e0
        if code == 0:
            p0[o + 1] = fwhm
            p0[o + 2] = h * fwhm * 0.5 * math.pi
        elif code == 1:
            p0[o + 1] = fwhm
            p0[o + 2] = h * fwhm * 1.0644670194312262
        else:
            p0[o + 1] = fwhm / 1.637
            p0[o + 2] = fwhm / 1.637
            p0[o + 3] = h * fwhm * 1.3
        g = 0.5 * fwhm
        for i in range(n):
            x = ctr[i] - e0
            dens[i] -= h * g * g / (x * x + g * g)
    p0[npk * npp] = bkg


@njit(cache=True, nogil=True, error_model="numpy")
def _fit_one(code, npk, npp, edges, y, var_in, has_var, nf, rn2, p_init, use_init,
             max_iter, wmin, wmax, emin, emax, coeffs, length, glx, glw, p_out, cov_out):
    """Levenberg–Marquardt with model-based (iteratively re-weighted) weights.

    Returns (status, chi2, n_iter).
    """
    n_px = y.shape[0]
    npar = npk * npp + 1
    p = np.empty(npar)
    if use_init:
        for a in range(npar):
            p[a] = p_init[a]
    else:
        _initial_guess(code, npk, npp, edges, y, p)
    sgn = 1.0 if edges[n_px] > edges[0] else -1.0
    w_cur = np.ones(n_px)
    w_try = np.empty(n_px)
    m_buf = np.empty(n_px)
    jrow = np.empty(npar)
    h_cur = np.empty((npar, npar))
    g_cur = np.empty(npar)
    h_try = np.empty((npar, npar))
    g_try = np.empty(npar)
    n_buf = n_px + 1 if (code != 2 and npk == 1) else npk
    cprev = np.empty(n_buf)  # per-line carries, or per-edge terms on the fast path
    fprev = np.empty(n_buf)
    dprev = np.empty(n_buf)
    if code != 2 and npk == 1:
        m_buf = np.empty(16)  # the fast path's sums
    a_mat = np.empty((npar, npar))
    step = np.empty(npar)
    p_try = np.empty(npar)
    # weights from the starting model
    _, chi = _evaluate(code, npk, npp, edges, sgn, p, y, var_in, has_var, nf, rn2, w_cur, w_cur,
                       m_buf, jrow, h_cur, g_cur, cprev, fprev, dprev, coeffs, length, glx, glw)
    lam = 1e-3
    status = 1
    it = 0
    n_width = npp - 2 if code == 2 else 1
    while it < max_iter:
        if not math.isfinite(chi):
            status = 4
            break
        dec = _gn_decrement(h_cur, g_cur, a_mat, step)
        if dec < 0.0:
            status = 2
            break
        # converged: the next step lowers χ² by < 1e-9 (in units of the reduced χ², so that
        # a model that does not fit the line — a large χ² — converges as well)
        tol = max(1.0, chi / max(n_px - npar, 1))
        if dec < 1e-9 * tol:
            status = 0
            break
        it += 1
        accepted = False
        while lam < 1e12:
            for a in range(npar):
                for b in range(npar):
                    a_mat[a, b] = h_cur[a, b]
                a_mat[a, a] = h_cur[a, a] * (1.0 + lam)
            if not _solve(a_mat, g_cur, step):
                lam *= 10.0
                continue
            valid = True
            for a in range(npar):
                p_try[a] = p[a] + step[a]
            for k in range(npk):
                o = k * npp
                if not (emin <= p_try[o] <= emax):
                    valid = False
                for q in range(n_width):
                    if not (wmin < p_try[o + 1 + q] < wmax):
                        valid = False
            if not valid:
                lam *= 10.0
                continue
            chi_old_w, chi_new = _evaluate(code, npk, npp, edges, sgn, p_try, y, var_in, has_var,
                                           nf, rn2, w_cur, w_try, m_buf, jrow, h_try, g_try,
                                           cprev, fprev, dprev, coeffs, length, glx, glw)
            if math.isfinite(chi_old_w) and chi_old_w <= chi:
                for a in range(npar):
                    p[a] = p_try[a]
                    g_cur[a] = g_try[a]
                    for b in range(npar):
                        h_cur[a, b] = h_try[a, b]
                for i in range(n_px):
                    w_cur[i] = w_try[i]
                chi = chi_new
                lam = max(lam * 0.1, 1e-9)
                accepted = True
                break
            lam *= 10.0
        if not accepted:
            # No step lowers chi2: at the minimum to round-off, or stuck at a bound.
            status = 0 if _gn_decrement(h_cur, g_cur, a_mat, step) < 1e-6 * tol else 3
            break
    for a in range(npar):
        p_out[a] = p[a]
    if status == 0 or status == 1:
        if not _invert(h_cur, cov_out):
            status = 2
    if status == 0:
        for k in range(npk):
            o = k * npp
            if not (edges.min() <= p[o] <= edges.max()):
                status = 5
            if not p[o + npp - 1] > 0.0:
                status = 6
            for q in range(n_width):
                if p[o + 1 + q] < 1.001 * wmin or p[o + 1 + q] > 0.999 * wmax:
                    status = 7
    if status != 0 and status != 1:
        for a in range(npar):
            for b in range(npar):
                cov_out[a, b] = np.nan
    return status, chi, it


@njit(cache=True, nogil=True, error_model="numpy")
def _fit_range(code, npk, npp, edges, y, var, has_var, nf, rn2, p_init, use_init, max_iter,
               lo, hi, coeffs, length, glx, glw, p_out, cov_out):
    """Fit pixels ``lo … hi − 1`` of one spectrum; the parameter bounds follow that range."""
    e = edges[lo:hi + 1]
    span = abs(e[-1] - e[0])
    wmin = 1e-3 * np.min(np.abs(e[1:] - e[:-1]))
    wmax = 10.0 * span
    emin = e.min() - span
    emax = e.max() + span
    v = var[lo:hi] if has_var else var
    return _fit_one(code, npk, npp, e, y[lo:hi], v, has_var, nf, rn2, p_init, use_init,
                    max_iter, wmin, wmax, emin, emax, coeffs, length, glx, glw, p_out, cov_out)


@njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _fit_batch_parallel(code, npk, npp, edges, y, var, has_var, nf, rn2, p_init, use_init,
                        max_iter, lo, hi, coeffs, length, glx, glw,
                        p_out, cov_out, status, chi2, n_iter):
    for s in prange(y.shape[0]):
        st, c, it = _fit_range(code, npk, npp, edges, y[s], var[s], has_var, nf, rn2, p_init[s],
                               use_init, max_iter, lo[s], hi[s], coeffs, length, glx, glw,
                               p_out[s], cov_out[s])
        status[s] = st
        chi2[s] = c
        n_iter[s] = it


@njit(cache=True, nogil=True, error_model="numpy")
def _fit_batch_serial(code, npk, npp, edges, y, var, has_var, nf, rn2, p_init, use_init,
                      max_iter, lo, hi, coeffs, length, glx, glw,
                      p_out, cov_out, status, chi2, n_iter):
    for s in range(y.shape[0]):
        st, c, it = _fit_range(code, npk, npp, edges, y[s], var[s], has_var, nf, rn2, p_init[s],
                               use_init, max_iter, lo[s], hi[s], coeffs, length, glx, glw,
                               p_out[s], cov_out[s])
        status[s] = st
        chi2[s] = c
        n_iter[s] = it


@njit(cache=True, nogil=True, error_model="numpy")
def _model_batch(code, npk, npp, edges, params, coeffs, length, glx, glw, out):
    n_px = out.shape[1]
    npar = params.shape[1]
    sgn = 1.0 if edges[n_px] > edges[0] else -1.0
    dummy_y = np.zeros(n_px)
    ones = np.ones(n_px)
    w_new = np.empty(n_px)
    jrow = np.empty(npar)
    hm = np.empty((npar, npar))
    gv = np.empty(npar)
    cprev = np.empty(npk)
    fprev = np.empty(npk)
    dprev = np.empty(npk)
    for s in range(params.shape[0]):
        _pass(code, npk, npp, edges, sgn, params[s], dummy_y, ones, True, 1.0, 0.0, ones, w_new,
              out[s], jrow, hm, gv, cprev, fprev, dprev, coeffs, length, glx, glw, False)


# =========================================================================== results
def _param_names(model: str, n_peaks: int) -> tuple[str, ...]:
    names: list[str] = []
    for k in range(n_peaks):
        suffix = "" if n_peaks == 1 else f"_{k}"
        names.extend(f"{n}{suffix}" for n in _PEAK_PARAMS[model])
    names.append("background")
    return tuple(names)


@dataclass(frozen=True)
class SpectrumFit:
    """Result of :func:`fit_spectra`.

    Shapes: every per-spectrum field has the batch shape — ``(n_spectra,)``
    for 2-D ``counts`` and ``()`` (0-d arrays; use ``float(...)`` or
    ``.item()``) for 1-D ``counts``. Per-line fields (peak energy, FWHM, area
    and their errors) get a trailing axis of length ``n_peaks`` when
    ``n_peaks > 1``; lines are sorted by increasing peak energy.

    Attributes
    ----------
    model : str
        ``"lorentzian"``, ``"gaussian"`` or ``"voigt"``.
    n_peaks : int
        Number of lines in the model.
    wavelength_nm : ndarray, shape (n_px,)
        The pixel axis of the spectra, in nm (the fitted part is ``roi_nm``).
    peak_energy_ev, peak_energy_err_ev : ndarray
        Line centre and its 1σ error, in eV.
    peak_wavelength_nm, peak_wavelength_err_nm : ndarray
        The same in nm (``λ = hc/E``).
    fwhm_mev, fwhm_err_mev : ndarray
        Full width at half maximum in energy and its 1σ error, in meV (for a
        Voigt: the FWHM of the whole profile).
    area, area_err : ndarray
        Line area (integrated counts of the line over all energies) and error.
    background, background_err : ndarray
        Constant offset in counts per pixel and its error.
    reduced_chi2 : ndarray
        χ² per degree of freedom with the final weights.
    dof : ndarray of int
        Per spectrum, the degrees of freedom ``n_px_fit − n_params``.
    success : ndarray of bool
        True when the fit converged to a valid line.
    message : ndarray of str
        Empty on success, otherwise why the fit failed.
    n_iter : ndarray of int
        Levenberg–Marquardt iterations used.
    errors_scaled : ndarray of bool
        Per spectrum, whether the errors were multiplied by a factor from the
        χ² (see :func:`error_scale`: ``sqrt(reduced_chi2)`` for an unknown
        noise model, ``sqrt(reduced_chi2)`` only when above 1 for a known one).
    param_names : tuple of str
        Names of the fitted parameters (energies and widths in eV).
    params : ndarray, shape (..., n_params)
        Best-fit parameters in that order.
    covariance : ndarray, shape (..., n_params, n_params)
        Their covariance (scaled like the errors).
    saturated : ndarray of bool
        Per spectrum, whether pixels at the detector's ceiling were found
        (see :func:`saturated_spectra`); such a fit has ``quality`` ``"saturated"``.
    quality : ndarray of str
        Per spectrum, one of :data:`QUALITIES`: ``"ok"``, ``"poor fit"`` (a
        known noise model and ``reduced_chi2 >`` :data:`POOR_FIT_CHI2`: the line
        is not the model; errors inflated), ``"failed"`` (no valid line; see
        ``message``) or ``"saturated"``. ``success`` is True for ``"ok"`` and
        ``"poor fit"``.
    roi_nm : ndarray, shape (..., 2)
        Per spectrum, the wavelength range fitted (first and last pixel
        centre, nm).
    """

    model: str
    n_peaks: int
    wavelength_nm: np.ndarray = field(repr=False)
    peak_energy_ev: np.ndarray
    peak_energy_err_ev: np.ndarray
    peak_wavelength_nm: np.ndarray
    peak_wavelength_err_nm: np.ndarray
    fwhm_mev: np.ndarray
    fwhm_err_mev: np.ndarray
    area: np.ndarray
    area_err: np.ndarray
    background: np.ndarray
    background_err: np.ndarray
    reduced_chi2: np.ndarray
    dof: int | np.ndarray
    success: np.ndarray
    message: np.ndarray
    n_iter: np.ndarray
    errors_scaled: bool
    param_names: tuple[str, ...]
    params: np.ndarray
    covariance: np.ndarray = field(repr=False)
    # Defaults for records stored before these fields existed.
    saturated: np.ndarray | None = None
    quality: np.ndarray | None = None
    roi_nm: np.ndarray | None = None

    def __post_init__(self) -> None:
        ok = np.asarray(self.success, dtype=bool)
        if self.saturated is None:
            object.__setattr__(self, "saturated", np.zeros(ok.shape, dtype=bool))
        if self.quality is None:
            object.__setattr__(self, "quality",
                               np.asarray(np.where(ok, "ok", "failed"), dtype=object))
        if self.roi_nm is None:
            wl = np.asarray(self.wavelength_nm, dtype=np.float64)
            span = [float(wl.min()), float(wl.max())] if wl.size else [np.nan, np.nan]
            object.__setattr__(self, "roi_nm", np.broadcast_to(np.asarray(span), ok.shape + (2,)
                                                               ).copy())
        if not isinstance(self.errors_scaled, np.ndarray):  # one flag for the batch
            object.__setattr__(self, "errors_scaled",
                               np.full(ok.shape, bool(self.errors_scaled)))

    def select(self, index: int) -> SpectrumFit:
        """The fit of spectrum ``index`` of a batch, as a single-spectrum result.

        Every per-spectrum field loses its leading batch axis (0-d arrays, or
        ``(n_peaks,)`` per-line fields); the fitted axis and settings are shared.
        """
        if np.asarray(self.success).ndim == 0:
            raise IndexError("select() needs a batch fit (2-D counts)")
        picked = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "wavelength_nm" and isinstance(value, np.ndarray):
                picked[f.name] = np.asarray(value[index], dtype=value.dtype)
        return dataclasses.replace(self, **picked)

    def model_counts(self, wavelength_nm=None, index=None) -> np.ndarray:
        """Evaluate the fitted model as counts per pixel on a pixel axis.

        Parameters
        ----------
        wavelength_nm : array_like, shape (n_px,), optional
            Pixel-centre wavelengths in nm; default the fitted axis. Pixel
            widths come from the spacing, so pass the real pixel axis (a finer
            axis gives counts per finer "pixel").
        index : int, optional
            Which spectrum of a batch; default all.

        Returns
        -------
        ndarray
            Shape ``(n_px,)`` for a 1-D fit or when ``index`` is given,
            otherwise ``(n_spectra, n_px)``; counts per pixel.
        """
        return model_counts(self, self.wavelength_nm if wavelength_nm is None else wavelength_nm,
                            index=index)

    def to_dict(self, index=None) -> dict:
        """Plain-python summary of one spectrum's fit (for JSON), NaN as None."""
        def pick(a):
            a = np.asarray(a)
            if index is not None and a.ndim > 0:
                a = a[index]
            v = a.tolist()
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [None if isinstance(x, float) and not math.isfinite(x) else x for x in v]
            return v

        out = {"model": self.model, "n_peaks": self.n_peaks}
        for name in ("peak_energy_ev", "peak_energy_err_ev", "peak_wavelength_nm",
                     "peak_wavelength_err_nm", "fwhm_mev", "fwhm_err_mev", "area", "area_err",
                     "background", "background_err", "reduced_chi2", "success", "message",
                     "n_iter", "dof", "errors_scaled", "saturated", "quality", "roi_nm"):
            out[name] = pick(getattr(self, name))
        return out


def _energy_edges(wavelength_nm: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(HC_EV_NM / pixel_edges_nm(wavelength_nm))


def model_counts(fit: SpectrumFit, wavelength_nm, index=None) -> np.ndarray:
    """Counts per pixel of a fitted model on a pixel axis; see :meth:`SpectrumFit.model_counts`."""
    edges = _energy_edges(wavelength_nm)
    params = np.asarray(fit.params, dtype=np.float64)
    one_d = params.ndim == 1
    params2 = params.reshape(-1, params.shape[-1])
    if index is not None:
        params2 = params2[[index]]
    npp = len(_PEAK_PARAMS[fit.model])
    out = np.empty((params2.shape[0], edges.shape[0] - 1))
    _model_batch(_MODEL_CODE[fit.model], fit.n_peaks, npp, edges,
                 np.ascontiguousarray(params2), _W_COEFFS, _W_LENGTH, _GL_X, _GL_W, out)
    return out[0] if (one_d or index is not None) else out


# =========================================================================== rules
#: Half-width of the automatic fit range, in FWHM of the line's first estimate.
ROI_FWHM_MULTIPLE = 4.0
#: Fewest pixels on each side of the line's centre in the automatic fit range.
ROI_MIN_HALF_PX = 8
#: A line is significant when its area is at least this many standard errors.
SIGNIFICANCE_SIGMA = 3.0
#: With a known noise model, a reduced χ² above this marks the fit ``"poor fit"``.
POOR_FIT_CHI2 = 3.0
#: Adjacent pixels exactly at the spectrum's maximum that make a clipped (flat) top.
FLAT_TOP_PIXELS = 3
#: Values of :attr:`SpectrumFit.quality`.
QUALITIES = ("ok", "poor fit", "failed", "saturated")

_SMOOTHING_PASSES = 6

@dataclass(frozen=True)
class LineEstimate:
    """Robust first estimate of the strongest line of one spectrum (see :func:`estimate_line`).

    Attributes
    ----------
    index : int
        Pixel of the line's maximum.
    fwhm_px : float
        Estimated FWHM in pixels.
    height : float
        Peak height above the background, counts per pixel (smoothed).
    background : float
        Background level, counts per pixel.
    lo, hi : int
        The automatic fit range: pixels ``lo … hi`` (inclusive).
    """

    index: int
    fwhm_px: float
    height: float
    background: float
    lo: int
    hi: int


def _half_width_px(g: np.ndarray, j: int, half: float, step: int) -> tuple[float, bool]:
    """Distance in pixels from ``j`` to where ``g`` falls below ``half`` for two pixels."""
    n = g.size
    i = j
    while 0 <= i + step < n:
        nxt = i + step
        if g[nxt] < half and not (0 <= nxt + step < n and g[nxt + step] >= half):
            drop = g[i] - g[nxt]
            frac = (g[i] - half) / drop if drop > 0 else 0.0
            return abs(i - j) + float(frac), True
        i = nxt
    return abs(i - j) + 0.5, False


def _line_signal(y: np.ndarray, width_ev: np.ndarray, background: float,
                 sigma_px: float) -> np.ndarray:
    """The 3-pixel running median, background removed, as a density per eV (scaled to
    counts per typical pixel), smoothed by a Gaussian of ``sigma_px`` (none below 1)."""
    med = median_filter(y, size=3, mode="nearest") if y.size >= 3 else y
    sig = (med - background) * (float(np.median(width_ev)) / width_ev)
    return gaussian_filter1d(sig, sigma_px, mode="nearest") if sigma_px >= 1.0 else sig


def estimate_line(wavelength_nm, counts) -> LineEstimate:
    """Robust first estimate of the strongest line and the automatic fit range.

    The spectrum is cleared of single-pixel spikes by a 3-pixel running
    median (a cosmic ray or a noise spike narrower than the resolution does
    not move the estimate), converted to a density per eV, smoothed with a
    Gaussian of FWHM/6 (none for lines narrower than 6 pixels; the width is
    iterated from 1 pixel until it settles), and its maximum above the
    background (the 10th percentile) taken. The FWHM is where the smoothed density stays below
    half maximum for two pixels on each side. The fit range is the centre
    ± :data:`ROI_FWHM_MULTIPLE` × FWHM (at least :data:`ROI_MIN_HALF_PX`
    pixels), clipped to the data, and cut at the valley before a neighbouring
    line (a rise of more than a quarter of the line's height and 5σ of the
    smoothed noise).

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel wavelengths in nm.
    counts : array_like, shape (n_px,)
        Counts per pixel.

    Returns
    -------
    LineEstimate
    """
    wl = _check_axis(wavelength_nm)
    y = np.asarray(counts, dtype=np.float64)
    if y.shape != wl.shape:
        raise AnalysisInputError(f"counts shape {y.shape} does not match the axis {wl.shape}")
    if not np.all(np.isfinite(y)):
        raise AnalysisInputError("counts contain NaN or infinite values")
    return _estimate(y, pixel_energy_width_ev(wl))


def _estimate(y: np.ndarray, width_ev: np.ndarray) -> LineEstimate:
    n = y.size
    med = median_filter(y, size=3, mode="nearest") if n >= 3 else y
    background = float(np.percentile(gaussian_filter1d(med, 2.0, mode="nearest"), 10))
    # Smoothing matched to the line's width (FWHM/6), iterated from 1 pixel: noise makes
    # the first width too small, and the smoother curve then shows more of the line.
    sigma = 1.0
    for _ in range(_SMOOTHING_PASSES):
        g = _line_signal(y, width_ev, background, sigma)
        fwhm_px = _fwhm_px(g, int(np.argmax(g)))
        new = fwhm_px / 6.0
        if abs(new - sigma) <= 0.1 * sigma or (new < 1.0 and sigma <= 1.0):
            break
        sigma = new
    g = _line_signal(y, width_ev, background, sigma)
    j = int(np.argmax(g))
    height = float(g[j])
    if not height > 0:
        return LineEstimate(j, max(n / 4.0, 1.0), 0.0, background, 0, n - 1)
    fwhm_px = _fwhm_px(g, j)
    noise_px = 1.4826 * float(np.median(np.abs(np.diff(y)))) / math.sqrt(2.0)
    rise = max(0.25 * height, 5.0 * noise_px / math.sqrt(2.0 * _SQRT_PI * max(sigma, 0.5)))
    half_range = max(ROI_FWHM_MULTIPLE * fwhm_px, float(ROI_MIN_HALF_PX))
    lo = _range_end(g, j, -1, half_range, height, rise)
    hi = _range_end(g, j, +1, half_range, height, rise)
    return LineEstimate(j, fwhm_px, height, background, lo, hi)


def _fwhm_px(g: np.ndarray, j: int) -> float:
    half = 0.5 * g[j]
    left, left_ok = _half_width_px(g, j, half, -1)
    right, right_ok = _half_width_px(g, j, half, +1)
    if left_ok and not right_ok:
        right = left
    elif right_ok and not left_ok:
        left = right
    return max(left + right, 1.0)


def _range_end(g: np.ndarray, j: int, step: int, half_range: float, height: float,
               rise: float) -> int:
    """Last pixel of the range on one side: the reach, the data's end or a valley."""
    n = g.size
    reach = int(math.ceil(half_range))
    end = min(max(j + step * reach, 0), n - 1)
    i = j
    while i != end and g[i] >= 0.5 * height:  # the line itself
        i += step
    low_i, low = i, g[i]
    while i != end:
        i += step
        if g[i] < low:
            low_i, low = i, g[i]
        elif g[i] > low + rise:
            return low_i  # a neighbouring line rises beyond this valley
    return end


def main_line_roi_nm(wavelength_nm, counts) -> tuple[float, float]:
    """Wavelength range that the automatic fit of the strongest line uses.

    The one rule of every path (``fit_spectra(roi_nm="auto")``, the CLI, the
    live analysis): see :func:`estimate_line`.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel wavelengths in nm.
    counts : array_like, shape (n_px,)
        Counts per pixel.

    Returns
    -------
    (float, float)
        ``(low_nm, high_nm)``: the wavelengths of the first and last pixel fitted.
    """
    wl = _check_axis(wavelength_nm)
    est = estimate_line(wl, counts)
    a, b = wl[est.lo], wl[est.hi]
    return float(min(a, b)), float(max(a, b))


def _start_params(model: str, est: LineEstimate, centres_ev: np.ndarray,
                  width_ev: np.ndarray) -> np.ndarray:
    """Starting parameters of a one-line fit from a :class:`LineEstimate`."""
    j = est.index
    fwhm = est.fwhm_px * float(width_ev[j])
    height = max(est.height, 1e-12) / float(np.median(width_ev))  # counts per eV
    e0 = float(centres_ev[j])
    if model == "lorentzian":
        return np.array([e0, fwhm, height * fwhm * 0.5 * math.pi, est.background])
    if model == "gaussian":
        return np.array([e0, fwhm, height * fwhm * 1.0644670194312262, est.background])
    return np.array([e0, fwhm / 1.637, fwhm / 1.637, height * fwhm * 1.3, est.background])


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
    """
    wl = _check_axis(wavelength_nm)
    centres = energy_ev_from_wavelength_nm(wl)
    width = pixel_energy_width_ev(wl)
    order = np.argsort(centres)
    e = np.asarray(peak_energy_ev, dtype=np.float64)
    px = np.interp(np.nan_to_num(e, nan=float(centres.mean())), centres[order], width[order])
    floor = 0.0 if resolution_mev is None else float(resolution_mev) * 1e-3
    return np.maximum(px, floor)


def fit_spectra(
    wavelength_nm,
    counts,
    model: str = "lorentzian",
    *,
    variance=None,
    noise_factor: float | None = None,
    read_noise: float = 0.0,
    n_peaks: int = 1,
    roi_nm="auto",
    p0=None,
    scale_errors: str = "auto",
    max_iter: int = 200,
    resolution_mev: float | None = None,
    saturation_counts: float | None = None,
    saturated=None,
) -> SpectrumFit:
    """Fit emission lines in energy to counts per pixel, for one spectrum or a batch.

    The model of pixel ``i`` is ``B + Σ_k A_k ∫_pixel L_k(E) dE`` with ``L_k`` a
    unit-area Lorentzian, Gaussian or Voigt profile in photon energy, ``A_k``
    the line area in counts and ``B`` a constant offset per pixel. Pixel
    energy edges come from the wavelength axis (``E = 1239.84198/λ``).

    Every path (the CLI, the live analysis, the procedures, replay) calls this
    function with these defaults, so the same data give the same numbers.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel-centre wavelengths in nm, strictly monotonic, shared by all
        spectra.
    counts : array_like, shape (n_px,) or (n_spectra, n_px)
        Counts per pixel, offset (bias) subtracted.
    model : {"lorentzian", "gaussian", "voigt"}
        Line shape in energy. ``"voigt"`` fits separate Lorentzian and Gaussian
        widths and reports the Voigt FWHM.
    variance : array_like, shape like ``counts``, optional
        Known per-pixel variance in counts². Overrides the noise model.
    noise_factor : float or None
        The noise model, when the counts are photoelectrons: variance per
        count of signal, 2 for an EMCCD at high EM gain (excess noise factor
        F² = 2), 1 for Poisson. ``None`` (default): the noise is unknown
        (counts in ADU, a file), Poisson-shaped weights are used and the
        errors are scaled by ``sqrt(reduced_chi2)``; see :func:`error_scale`.
    read_noise : float
        Signal-independent noise in counts rms, added in quadrature
        (variance += read_noise²).
    n_peaks : int
        Number of lines sharing the background (e.g. exciton, trion, phonon
        replicas). Starting values are found by peeling the strongest peaks.
    roi_nm : "auto", None or (float, float)
        The pixels fitted. ``"auto"`` (default): for one line, the range of
        :func:`estimate_line` for each spectrum (± 4 FWHM around the strongest
        line, cut before a neighbouring line); for several lines, the whole
        axis. ``None``: the whole axis. A pair: that wavelength range (nm).
    p0 : array_like, shape (n_params,) or (n_spectra, n_params), optional
        Starting parameters in the order of :attr:`SpectrumFit.param_names`
        (energies and widths in eV), e.g. the previous live fit. Default: the
        robust estimate of :func:`estimate_line` (one line).
    scale_errors : {"auto", "chi2", "inflate", "none"}
        ``"auto"`` applies the one rule of :func:`error_scale`; the other
        values force one behaviour (tests and comparisons only).
    max_iter : int
        Iteration limit of the Levenberg–Marquardt loop.
    resolution_mev : float, optional
        The spectrograph's resolution in meV; a fitted FWHM below
        :func:`resolution_ev` (at least one pixel's energy width) fails.
    saturation_counts : float, optional
        Detector ceiling in the counts' units; see :func:`saturated_spectra`.
    saturated : bool or array_like of bool, shape (n_spectra,), optional
        Spectra known to hold pixels at the ceiling (the camera's ADC ceiling,
        seen on the raw frames).

    Returns
    -------
    SpectrumFit
        Values with 1σ errors; arrays of shape ``(n_spectra,)`` for 2-D
        ``counts``, 0-d arrays for 1-D ``counts`` (a trailing ``(n_peaks,)``
        axis on per-line fields when ``n_peaks > 1``). A failed fit has
        ``success`` False and a reason in ``message``; it does not raise.
        ``quality`` says ``"ok"``, ``"poor fit"``, ``"failed"`` or
        ``"saturated"``.

    Raises
    ------
    AnalysisInputError
        Bad shapes, non-finite values, unknown model, too few pixels, or a
        non-positive explicit variance.

    Notes
    -----
    Weights are ``1 / (noise_factor · max(model, 0) + read_noise²)``
    evaluated on the current model at each iteration (iteratively
    re-weighted least squares), so the result is a stationary point of χ²
    with the final weights — exactly what ``scipy.optimize.curve_fit`` with
    ``sigma = sqrt(variance)`` finds for those weights. Errors are the square
    roots of the diagonal of ``(JᵀWJ)⁻¹``, scaled by :func:`error_scale`.

    A converged fit is still judged (in this order): ``"saturated"`` when
    pixels reach the ceiling; ``"failed"`` when a FWHM is below the
    resolution (a spike, not a line) or an area is below
    :data:`SIGNIFICANCE_SIGMA` (3) times its error (a line consistent with
    zero); ``"poor fit"`` when the noise model is known and
    ``reduced_chi2 >`` :data:`POOR_FIT_CHI2` (3).

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import (
    ...     fit_spectra, polynomial_axis_nm, energy_ev_from_wavelength_nm)
    >>> wl = polynomial_axis_nm(1000, [470.0, 0.09])
    >>> e = energy_ev_from_wavelength_nm(wl)
    >>> de = np.abs(np.gradient(e))
    >>> clean = 20.0 + 5e4 * de * (0.035 / np.pi) / ((e - 2.44) ** 2 + 0.035 ** 2)
    >>> rng = np.random.default_rng(1)
    >>> counts = rng.normal(clean, np.sqrt(2 * clean))
    >>> fit = fit_spectra(wl, counts)             # one live spectrum: 0-d arrays
    >>> bool(fit.success), str(fit.quality), round(float(fit.peak_energy_ev), 2)
    (True, 'ok', 2.44)
    >>> round(float(fit.fwhm_mev) / 10)
    7
    >>> batch = fit_spectra(wl, np.stack([counts, counts]))   # a batch: shape (2,)
    >>> batch.fwhm_mev.shape
    (2,)
    >>> curve = fit.model_counts()                # counts per pixel, shape (1000,)
    """
    if model not in _MODEL_CODE:
        raise AnalysisInputError(f"unknown line model {model!r}; choose one of {', '.join(MODELS)}")
    error_scale(np.ones(1), False, scale_errors)  # validates scale_errors
    n_peaks = int(n_peaks)
    if n_peaks < 1:
        raise AnalysisInputError(f"n_peaks must be >= 1, got {n_peaks}")
    wl = _check_axis(wavelength_nm)
    y = np.asarray(counts, dtype=np.float64)
    one_d = y.ndim == 1
    if y.ndim not in (1, 2) or y.shape[-1] != wl.size:
        raise AnalysisInputError(
            f"counts must have shape ({wl.size},) or (n_spectra, {wl.size}), got {y.shape}")
    y = np.ascontiguousarray(y.reshape(-1, wl.size))
    if not np.all(np.isfinite(y)):
        raise AnalysisInputError("counts contain NaN or infinite values")
    has_var = variance is not None
    if has_var:
        var = np.broadcast_to(np.asarray(variance, dtype=np.float64), y.shape)
        if not np.all(np.isfinite(var)) or np.any(var <= 0):
            raise AnalysisInputError("variance must be finite and > 0 everywhere")
        var = np.ascontiguousarray(var)
    else:  # the kernel reads var[s] only when has_var; pass a small placeholder
        var = np.ones((y.shape[0], 1))
    if noise_factor is not None and not (np.isfinite(noise_factor) and noise_factor > 0):
        raise AnalysisInputError(f"noise_factor must be > 0 or None, got {noise_factor}")
    if not (np.isfinite(read_noise) and read_noise >= 0):
        raise AnalysisInputError(f"read_noise must be >= 0, got {read_noise}")
    for name, value in (("resolution_mev", resolution_mev),
                        ("saturation_counts", saturation_counts)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise AnalysisInputError(f"{name} must be > 0, got {value}")

    npp = len(_PEAK_PARAMS[model])
    n_par = n_peaks * npp + 1
    n_spec = y.shape[0]
    lo, hi, p_init, use_init = _ranges_and_start(model, n_peaks, wl, y, roi_nm, p0, n_par)
    n_fit = hi - lo
    if np.any(n_fit <= n_par):
        raise AnalysisInputError(
            f"{int(n_fit.min())} pixels cannot determine {n_par} parameters of a "
            f"{n_peaks}-line {model} fit")

    nf = 1.0 if noise_factor is None else float(noise_factor)
    rn2 = float(read_noise) ** 2
    p_out = np.empty((n_spec, n_par))
    cov = np.empty((n_spec, n_par, n_par))
    status = np.empty(n_spec, dtype=np.int64)
    chi2 = np.empty(n_spec)
    n_iter = np.empty(n_spec, dtype=np.int64)
    runner = _fit_batch_parallel if n_spec > 1 and numba.get_num_threads() > 1 else \
        _fit_batch_serial
    runner(_MODEL_CODE[model], n_peaks, npp, _energy_edges(wl), y, var, has_var, nf, rn2,
           p_init, use_init, int(max_iter), lo, hi, _W_COEFFS, _W_LENGTH, _GL_X, _GL_W,
           p_out, cov, status, chi2, n_iter)

    dof = n_fit - n_par
    red = chi2 / dof
    noise_known = has_var or noise_factor is not None
    factor, scaled = error_scale(red, noise_known, scale_errors)
    cov = cov * (factor ** 2)[:, None, None]
    sat = _saturation(y, lo, hi, saturation_counts, saturated, n_spec)
    fit = _assemble(model, n_peaks, npp, wl, p_out, cov, status, red, dof, n_iter, scaled,
                    lo, hi)
    total = np.array([np.abs(y[s, lo[s]:hi[s]]).sum() for s in range(n_spec)])
    fit = _judge(fit, wl, sat, noise_known, resolution_mev, total)
    return fit if not one_d else fit.select(0)


def _ranges_and_start(model, n_peaks, wl, y, roi_nm, p0, n_par):
    """Per spectrum: the fitted pixels ``lo … hi − 1`` and the starting parameters."""
    n_spec, n_px = y.shape
    lo = np.zeros(n_spec, dtype=np.int64)
    hi = np.full(n_spec, n_px, dtype=np.int64)
    if isinstance(roi_nm, str):
        if roi_nm != "auto":
            raise AnalysisInputError(f"roi_nm must be 'auto', None or (low, high), "
                                     f"not {roi_nm!r}")
        auto = n_peaks == 1
    elif roi_nm is not None:
        try:
            a, b = sorted(float(v) for v in roi_nm)
        except (TypeError, ValueError):
            raise AnalysisInputError(f"roi_nm must be 'auto', None or (low, high), "
                                     f"not {roi_nm!r}") from None
        keep = np.flatnonzero((wl >= a) & (wl <= b))
        if keep.size == 0:
            raise AnalysisInputError(f"no pixel inside the fit range {a}-{b} nm")
        lo[:], hi[:] = keep[0], keep[-1] + 1
        auto = False
    else:
        auto = False
    width = pixel_energy_width_ev(wl)
    centres = energy_ev_from_wavelength_nm(wl)
    p_init = np.zeros((n_spec, n_par))
    use_init = False
    if p0 is not None:
        p_init = np.array(np.broadcast_to(np.asarray(p0, dtype=np.float64), (n_spec, n_par)))
        if not np.all(np.isfinite(p_init)):
            raise AnalysisInputError("p0 must be finite")
        use_init = True
    if not (auto or (n_peaks == 1 and not use_init)):
        return lo, hi, p_init, use_init
    for s in range(n_spec):
        a, b = int(lo[s]), int(hi[s])
        est = _estimate(y[s, a:b], width[a:b])
        if auto:
            lo[s], hi[s] = a + est.lo, a + est.hi + 1
        if n_peaks == 1 and p0 is None:
            p_init[s] = _start_params(model, est, centres[a:b], width[a:b])
    return lo, hi, p_init, n_peaks == 1 or use_init


def _saturation(y, lo, hi, saturation_counts, saturated, n_spec) -> list[str | None]:
    """Per spectrum, why it is saturated (None when it is not)."""
    known = np.zeros(n_spec, dtype=bool) if saturated is None else \
        np.broadcast_to(np.asarray(saturated, dtype=bool), (n_spec,))
    out: list[str | None] = []
    for s in range(n_spec):
        reason = _saturated_one(y[s, lo[s]:hi[s]], saturation_counts)
        if reason is None and known[s]:
            reason = "pixels at the camera's ADC ceiling"
        out.append(reason)
    return out


def _judge(fit: SpectrumFit, wl, sat: list[str | None], noise_known: bool,
           resolution_mev: float | None, total: np.ndarray) -> SpectrumFit:
    """Quality and reason of each converged fit: saturation, resolution, significance, χ²."""
    ok = np.array(fit.success, dtype=bool)
    msg = np.array(fit.message, dtype=object)
    quality = np.where(ok, "ok", "failed").astype(object)
    n_spec = ok.shape[0]
    e0 = np.asarray(fit.peak_energy_ev, dtype=np.float64).reshape(n_spec, -1)
    fw = np.asarray(fit.fwhm_mev, dtype=np.float64).reshape(n_spec, -1)
    area = np.asarray(fit.area, dtype=np.float64).reshape(n_spec, -1)
    area_err = np.asarray(fit.area_err, dtype=np.float64).reshape(n_spec, -1)
    res_mev = resolution_ev(wl, e0, resolution_mev) * 1e3
    red = np.asarray(fit.reduced_chi2, dtype=np.float64)
    for s in range(n_spec):
        if sat[s] is not None:
            ok[s], quality[s], msg[s] = False, "saturated", f"saturated: {sat[s]}"
            continue
        if not ok[s]:
            continue
        narrow = np.flatnonzero(fw[s] < res_mev[s])
        weak = np.flatnonzero(~((area[s] >= SIGNIFICANCE_SIGMA * area_err[s])
                                & (area[s] > 1e-9 * total[s])))  # or numerically nothing
        if narrow.size:
            k = int(narrow[0])
            ok[s], quality[s] = False, "failed"
            msg[s] = (f"not a line: FWHM {fw[s, k]:.3g} meV is below the resolution "
                      f"{res_mev[s, k]:.3g} meV (a spike or noise)")
        elif weak.size:
            k = int(weak[0])
            ok[s], quality[s] = False, "failed"
            msg[s] = (f"no significant line: area {area[s, k]:.3g} is below "
                      f"{SIGNIFICANCE_SIGMA:g} sigma ({area_err[s, k]:.3g})")
        elif noise_known and red[s] > POOR_FIT_CHI2:
            quality[s] = "poor fit"
            msg[s] = (f"poor fit: reduced chi2 {red[s]:.3g} > {POOR_FIT_CHI2:g} with the stated "
                      f"noise model (the line is not a {fit.model}); errors scaled by "
                      f"sqrt(chi2)")
    if np.any(quality != "ok"):
        log.debug("spectrum fits: %s", dict(zip(*np.unique(quality.astype(str),
                                                           return_counts=True))))
    return dataclasses.replace(fit, success=ok, message=msg, quality=quality,
                               saturated=np.array([r is not None for r in sat]))


def _assemble(model, n_peaks, npp, wl, p, cov, status, red, dof, n_iter, scaled, lo, hi):
    n_spec = p.shape[0]
    if n_peaks > 1:  # sort the lines by energy so that index k means the same line everywhere
        order = np.argsort(p[:, 0:n_peaks * npp:npp], axis=1)
        perm = np.empty((n_spec, n_peaks * npp + 1), dtype=np.int64)
        for k in range(npp):
            perm[:, k:n_peaks * npp:npp] = order * npp + k
        perm[:, -1] = n_peaks * npp
        rows = np.arange(n_spec)[:, None]
        p = p[rows, perm]
        cov = cov[rows[:, :, None], perm[:, :, None], perm[:, None, :]]
    err = np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
    idx = np.arange(n_peaks) * npp
    e0 = p[:, idx]
    e0_err = err[:, idx]
    if model == "voigt":
        fl, fg = p[:, idx + 1], p[:, idx + 2]
        root = np.sqrt(0.2166 * fl * fl + fg * fg)
        d_fl = 0.5346 + 0.2166 * fl / root
        d_fg = fg / root
        c_ll = cov[:, idx + 1, idx + 1]
        c_gg = cov[:, idx + 2, idx + 2]
        c_lg = cov[:, idx + 1, idx + 2]
        fwhm = voigt_fwhm(fl, fg)
        fwhm_err = np.sqrt(np.abs(d_fl ** 2 * c_ll + d_fg ** 2 * c_gg + 2 * d_fl * d_fg * c_lg))
        a_idx = idx + 3
    else:
        fwhm = p[:, idx + 1]
        fwhm_err = err[:, idx + 1]
        a_idx = idx + 2
    area, area_err = p[:, a_idx], err[:, a_idx]
    bkg, bkg_err = p[:, -1], err[:, -1]
    ok = status == 0
    msg = np.array([_STATUS_MESSAGES.get(int(s), f"status {s}") for s in status], dtype=object)
    if np.any(~ok):
        log.debug("spectrum fits failed: %d of %d", int((~ok).sum()), n_spec)

    def arr(a):
        return np.asarray(a[:, 0] if n_peaks == 1 and a.ndim == 2 else a)

    roi = np.stack([np.minimum(wl[lo], wl[hi - 1]), np.maximum(wl[lo], wl[hi - 1])], axis=1)
    return SpectrumFit(
        model=model,
        n_peaks=n_peaks,
        wavelength_nm=np.asarray(wl),
        peak_energy_ev=arr(e0),
        peak_energy_err_ev=arr(e0_err),
        peak_wavelength_nm=arr(HC_EV_NM / e0),
        peak_wavelength_err_nm=arr(HC_EV_NM * e0_err / e0 ** 2),
        fwhm_mev=arr(fwhm * 1e3),
        fwhm_err_mev=arr(fwhm_err * 1e3),
        area=arr(area),
        area_err=arr(area_err),
        background=bkg,
        background_err=bkg_err,
        reduced_chi2=red,
        dof=np.asarray(dof, dtype=np.int64),
        success=ok,
        message=msg,
        n_iter=n_iter,
        errors_scaled=np.asarray(scaled, dtype=bool),
        param_names=_param_names(model, n_peaks),
        params=p,
        covariance=cov,
        roi_nm=roi,
    )
