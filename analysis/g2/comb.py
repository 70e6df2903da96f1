"""The comb model of a pulsed histogram (amplitude, g²(0), lifetime, IRF σ, delay,
background) with its analytic Jacobian, and the lifetime and IRF width from the folded
side-peak profile.
"""

from __future__ import annotations

import math

import numpy as np

from micropl.analysis.g2.refit import _fast_poisson_refit
from micropl.analysis.g2.shapes import _comb_kernel


def _comb_fun(tau: np.ndarray, bin_ps: float, period: float, k_lo: int, n_peaks: int,
              i0: int | None, fixed_sigma: float | None = None, n_sub: int = 3):
    """Model ``bg + amp·Σ_k w_k·h(τ − d − k·P)`` of parameters ``(amp, g2, τ, σ, d, bg)``.

    ``w_k = 1`` except ``w_{i0} = g2`` (no zero peak when ``i0`` is None). Returns a
    function ``q -> (model, jac)`` for :func:`~micropl.analysis.fitcore.lm_fit`.
    """
    out = np.empty((5, tau.size))
    w = np.ones(n_peaks)
    i0_k = -1 if i0 is None else int(i0)

    def fun(q: np.ndarray):
        amp, g2v, tl, sig, d, bg = q
        if fixed_sigma is not None:
            sig = fixed_sigma
        if i0_k >= 0:
            w[i0_k] = g2v
        _comb_kernel(tau, float(bin_ps), n_sub, float(d + k_lo * period), float(period), w,
                     i0_k, float(tl), float(sig), out)
        model = bg + amp * out[0]
        jac = np.empty((tau.size, 6))
        jac[:, 0] = out[0]
        jac[:, 1] = amp * out[4] if i0_k >= 0 else 0.0
        jac[:, 2] = amp * out[1]
        jac[:, 3] = amp * out[2] if fixed_sigma is None else 0.0
        jac[:, 4] = -amp * out[3]
        jac[:, 5] = 1.0
        return model, jac

    return fun


def _tail_shape(tau: np.ndarray, c: np.ndarray, bin_ps: float, period: float,
                centres: np.ndarray) -> tuple[float, float, float] | None:
    """Lifetime, IRF σ (ps) and height per peak from the folded side-peak profile.

    The windows ``[c − P/2, c + P/2)`` around the given peak centres are summed on a
    common grid (offsets rounded to whole bins) and fitted with a periodic train of
    equal :func:`two_sided_exp_irf` peaks on a flat background (Poisson weights). Returns
    None when no window fits inside the histogram or the fit does not converge.
    """
    half = int(math.floor(0.5 * period / bin_ps))
    if half < 2:
        return None
    idx = np.rint((centres - tau[0]) / bin_ps).astype(np.int64)
    ok = (idx - half >= 0) & (idx + half <= tau.size)
    if not np.any(ok):
        return None
    offs = np.arange(-half, half)
    prof = c[idx[ok][:, None] + offs[None, :]].sum(axis=0)
    n_fold = int(ok.sum())
    x = offs * bin_ps
    gap = np.abs(np.abs(x) - 0.5 * period) <= 0.1 * period
    bg0 = float(prof[gap].mean()) if np.any(gap) else float(prof.min())
    height0 = max(float(prof.max()) - bg0, 1.0)
    area0 = max(float((prof - bg0).sum()), height0)
    tl0 = float(np.clip(area0 * bin_ps / (2 * height0), 0.3 * bin_ps, 0.3 * period))
    sig0 = float(np.clip(300.0, 0.5 * bin_ps, 0.05 * period))
    n_img = 40  # periodic images: exp(-40·P/τ) is negligible for τ <= P
    fun = _comb_fun(x, bin_ps, period, -n_img, 2 * n_img + 1, None)
    p0 = [height0, 1.0, tl0, sig0, 0.0, max(bg0, 1e-3)]
    lower = [0.0, 0.0, 0.2 * bin_ps, 1.0, -0.25 * period, 0.0]
    upper = [np.inf, 5.0, period, 0.25 * period, 0.25 * period, np.inf]
    free = np.array([True, False, True, True, True, True])
    p, _cov, _chi, _m, success = _fast_poisson_refit(fun, p0, lower, upper, prof, free,
                                                     n_iter=2)
    if not (success and np.all(np.isfinite(p))):
        return None
    return float(p[2]), float(p[3]), float(p[0]) / n_fold
