"""Line shapes in photon energy: Lorentzian, Gaussian and Voigt (Faddeeva function).

Unit-area profiles (:func:`line_profile_per_ev`), the Voigt FWHM (:func:`voigt_fwhm`) and
the numba scalar kernels behind the fit: the cumulative distribution of a line at a
pixel edge (``_cdf_terms``) and the Voigt value with its derivatives (``_voigt_terms``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from micropl.errors import AnalysisInputError

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

    Examples
    --------
    >>> from micropl.analysis.spectra import voigt_fwhm
    >>> round(float(voigt_fwhm(1.0, 0.0)), 4), round(float(voigt_fwhm(0.0, 1.0)), 4), round(float(voigt_fwhm(1.0, 1.0)), 4)
    (1.0, 1.0, 1.6376)
    """
    fl = np.asarray(fwhm_lorentz, dtype=np.float64)
    fg = np.asarray(fwhm_gauss, dtype=np.float64)
    return 0.5346 * fl + np.sqrt(0.2166 * fl * fl + fg * fg)



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

    Examples
    --------
    >>> from micropl.analysis.spectra import faddeeva
    >>> w = faddeeva([0.0 + 0.0j, 1.0 + 1.0j])
    >>> w.real.round(6).tolist(), w.imag.round(6).tolist()
    ([1.0, 0.304744], [0.0, 0.208219])
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

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import line_profile_per_ev
    >>> e = np.linspace(2.0, 3.0, 200001)
    >>> for model in ("lorentzian", "gaussian", "voigt"):
    ...     prof = line_profile_per_ev(e, 2.5, 0.002, model, fwhm_gauss_ev=0.002)
    ...     print(model, round(float(prof.sum() * (e[1] - e[0])), 3))           # unit area
    lorentzian 0.999
    gaussian 1.0
    voigt 0.999
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


# Pixel-integral kernels of the fit.
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
