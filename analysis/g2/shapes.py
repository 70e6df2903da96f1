"""Peak shapes of a pulsed HBT histogram: a two-sided exponential convolved with a
Gaussian instrument response, its cumulative fraction, and the numba comb kernel with
analytic derivatives used by the fits.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import special


def two_sided_exp_irf(x_ps: np.ndarray, lifetime_ps: float, sigma_ps: float) -> np.ndarray:
    """Two-sided exponential ``exp(-|x|/τ)`` convolved with a unit-area Gaussian.

    Parameters
    ----------
    x_ps : ndarray of float
        Delay from the peak centre in ps.
    lifetime_ps : float
        Decay constant τ in ps (> 0).
    sigma_ps : float
        Standard deviation of the Gaussian instrument response in ps (>= 0).

    Returns
    -------
    ndarray of float
        Peak shape; it tends to ``exp(-|x|/τ)`` when ``sigma_ps -> 0`` (height 1 at 0)
        and has area ``2τ`` for any ``sigma_ps``.

    Notes
    -----
    Each side is ``½·exp(σ²/2τ² ∓ x/τ)·erfc((σ²/τ ∓ x)/(σ√2))``; where the erfc argument
    is positive the product is evaluated as ``½·exp(-x²/2σ²)·erfcx(z)`` to avoid overflow.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.g2 import two_sided_exp_irf
    >>> x = np.arange(-20000.0, 20000.0, 1.0)
    >>> round(float(two_sided_exp_irf(np.array([0.0]), 1000.0, 1e-3)[0]), 6)       # peak height 1
    0.999999
    >>> round(float(two_sided_exp_irf(x, 1000.0, 200.0).sum()), 1)               # area 2τ
    2000.0
    """
    x = np.asarray(x_ps, dtype=np.float64)
    tau = float(lifetime_ps)
    sigma = float(sigma_ps)
    if sigma <= 1e-9 * tau:
        return np.exp(-np.abs(x) / tau)
    return _one_side(x, tau, sigma) + _one_side(-x, tau, sigma)


def _one_side(x: np.ndarray, tau: float, sigma: float) -> np.ndarray:
    # ½·exp(σ²/2τ² − x/τ)·erfc(z),  z = (σ²/τ − x)/(σ√2)
    z = (sigma * sigma / tau - x) / (sigma * math.sqrt(2.0))
    out = np.empty_like(x)
    pos = z >= 0
    xp = x[pos]
    out[pos] = 0.5 * np.exp(-xp * xp / (2 * sigma * sigma)) * special.erfcx(z[pos])
    neg = ~pos
    out[neg] = 0.5 * np.exp(sigma * sigma / (2 * tau * tau) - x[neg] / tau) * special.erfc(z[neg])
    return out


_SQRT2 = math.sqrt(2.0)


_SQRTPI = math.sqrt(math.pi)


_SQRT2PI = math.sqrt(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _erfcx_nonneg(z: float) -> float:
    """Scaled complementary error function ``exp(z²)·erfc(z)`` for ``z >= 0``."""
    if z < 25.0:
        return math.exp(z * z) * math.erfc(z)
    a = 0.5 / (z * z)  # asymptotic series, relative error < 1e-12 for z >= 25
    return (1.0 - a * (1.0 - 3.0 * a * (1.0 - 5.0 * a * (1.0 - 7.0 * a)))) / (z * _SQRTPI)


@numba.njit(cache=True, nogil=True)
def _side_nb(x: float, tau: float, sig: float, s: float) -> float:
    """One side of :func:`two_sided_exp_irf`: ``½·exp(s − x/τ)·erfc(z)``, ``s = σ²/2τ²``."""
    z = (sig * sig / tau - x) / (sig * _SQRT2)
    if z >= 0.0:
        return 0.5 * math.exp(-x * x / (2.0 * sig * sig)) * _erfcx_nonneg(z)
    return 0.5 * math.exp(s - x / tau) * math.erfc(z)


@numba.njit(cache=True, nogil=True)
def _comb_kernel(tau: np.ndarray, bin_ps: float, n_sub: int, c_first: float, period: float,
                 w: np.ndarray, i0: int, tl: float, sig: float, out: np.ndarray) -> None:
    """Bin-averaged comb ``S = Σ_k w_k·h(t − c_k)`` and its derivatives.

    ``c_k = c_first + k·period`` (k = 0..K−1) and ``h`` is :func:`two_sided_exp_irf`.
    ``out`` (shape (5, n)) receives, averaged over ``n_sub`` points per bin: ``S``,
    ``∂S/∂τ``, ``∂S/∂σ``, ``∂S/∂t`` and ``h(t − c_{i0})``.

    Within ``R = σ²/τ + 9σ`` of a peak ``h`` is evaluated exactly (erfc); beyond it
    ``h = exp(σ²/2τ² − |x|/τ)`` to double precision, and the far peaks on each side are
    summed as geometric series (two exponentials per point whatever the number of peaks).
    The derivatives of the exact form are
    ``∂h/∂x = −(f₊ − f₋)/τ``, ``∂h/∂τ = x(f₊ − f₋)/τ² − σ²h/τ³ + 2σ²N/τ²`` and
    ``∂h/∂σ = σh/τ² − 2σN/τ`` with ``f±`` the two sides and ``N`` the Gaussian density.
    """
    n = tau.shape[0]
    K = w.shape[0]
    s = sig * sig / (2.0 * tl * tl)
    inv_tl = 1.0 / tl
    r = math.exp(-period * inv_tl)
    lw = np.empty(K)
    l1 = np.empty(K)
    rw = np.empty(K)
    r1 = np.empty(K)
    lw[0] = w[0]
    l1[0] = 0.0
    for k in range(1, K):
        lw[k] = w[k] + r * lw[k - 1]
        l1[k] = r * (l1[k - 1] + period * lw[k - 1])
    rw[K - 1] = w[K - 1]
    r1[K - 1] = 0.0
    for k in range(K - 2, -1, -1):
        rw[k] = w[k] + r * rw[k + 1]
        r1[k] = r * (r1[k + 1] + period * rw[k + 1])
    reach = sig * sig * inv_tl + 9.0 * sig
    gnorm = 1.0 / (sig * _SQRT2PI)
    c_zero = c_first + i0 * period
    inv_sub = 1.0 / n_sub
    for i in range(n):
        a_s = 0.0
        a_t = 0.0
        a_g = 0.0
        a_x = 0.0
        a_h = 0.0
        for j in range(n_sub):
            t = tau[i] + ((j + 0.5) * inv_sub - 0.5) * bin_ps
            jl = int(math.floor((t - reach - c_first) / period))
            if jl > K - 1:
                jl = K - 1
            jr = int(math.ceil((t + reach - c_first) / period))
            if jr < 0:
                jr = 0
            if jl >= 0:
                dist = t - (c_first + jl * period)
                e = math.exp(s - dist * inv_tl)
                fs = e * lw[jl]
                fd = e * (dist * lw[jl] + l1[jl])
                a_s += fs
                a_t += -2.0 * s * inv_tl * fs + fd * inv_tl * inv_tl
                a_g += fs * sig * inv_tl * inv_tl
                a_x -= fs * inv_tl
            if jr <= K - 1:
                dist = (c_first + jr * period) - t
                e = math.exp(s - dist * inv_tl)
                fs = e * rw[jr]
                fd = e * (dist * rw[jr] + r1[jr])
                a_s += fs
                a_t += -2.0 * s * inv_tl * fs + fd * inv_tl * inv_tl
                a_g += fs * sig * inv_tl * inv_tl
                a_x += fs * inv_tl
            k_lo = jl + 1 if jl + 1 > 0 else 0
            k_hi = jr if jr < K else K
            zero_near = False
            for k in range(k_lo, k_hi):
                x = t - (c_first + k * period)
                fp = _side_nb(x, tl, sig, s)
                fm = _side_nb(-x, tl, sig, s)
                h = fp + fm
                gn = gnorm * math.exp(-x * x / (2.0 * sig * sig))
                wk = w[k]
                a_s += wk * h
                a_t += wk * (x * (fp - fm) * inv_tl * inv_tl - 2.0 * s * inv_tl * h
                             + 2.0 * sig * sig * gn * inv_tl * inv_tl)
                a_g += wk * (sig * h * inv_tl * inv_tl - 2.0 * sig * gn * inv_tl)
                a_x -= wk * (fp - fm) * inv_tl
                if k == i0:
                    a_h += h
                    zero_near = True
            if not zero_near and 0 <= i0 < K:
                a_h += math.exp(s - abs(t - c_zero) * inv_tl)
        out[0, i] = a_s * inv_sub
        out[1, i] = a_t * inv_sub
        out[2, i] = a_g * inv_sub
        out[3, i] = a_x * inv_sub
        out[4, i] = a_h * inv_sub


def _peak_cdf(x: np.ndarray, tau: float, sigma: float) -> np.ndarray:
    """Cumulative fraction of a unit-area peak ``h/(2τ)`` (:func:`two_sided_exp_irf`) below x.

    ``F(x) = Φ(x/σ) + ½·[f(−x) − f(x)]`` with ``f`` one side of the peak shape; far from
    the peak (beyond ``σ²/τ + 9σ``) the exact ``½·exp(σ²/2τ² − |x|/τ)`` tails are used.
    """
    x = np.asarray(x, dtype=np.float64)
    s = sigma * sigma / (2 * tau * tau)
    reach = sigma * sigma / tau + 9 * sigma
    far = 0.5 * np.exp(s - np.abs(x) / tau)
    out = np.where(x > 0, 1.0 - far, far)
    near = np.abs(x) < reach
    if np.any(near) and sigma > 0:
        xn = x[near]
        out[near] = (special.ndtr(xn / sigma)
                     + 0.5 * (_one_side(-xn, tau, sigma) - _one_side(xn, tau, sigma)))
    return out


def _binned(shape_fn, tau: np.ndarray, bin_ps: float, n_sub: int = 3) -> np.ndarray:
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    return np.mean([shape_fn(tau + o * bin_ps) for o in offs], axis=0)
