"""The compiled 2D Gaussian fitter: a sum of Gaussians plus offset, its Jacobian, the
Poisson or Gaussian objective, and damped Fisher scoring on the shared core
:mod:`micropl.analysis.fitcore`.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from micropl.analysis.fitcore import MAX_ITER, NONFINITE, OK, SINGULAR, damped_step, invert


@numba.njit(cache=True, nogil=True)
def _model_jac(p, x, y, circular, mu, jac):
    """Sum of k Gaussians plus offset. Layout: k × [A, x0, y0, sx(, sy)], then offset."""
    npc = 4 if circular else 5
    npar = p.size
    k = (npar - 1) // npc
    c = p[npar - 1]
    for i in range(x.size):
        mu[i] = c
        jac[i, npar - 1] = 1.0
    for j in range(k):
        o = j * npc
        amp = p[o]
        x0 = p[o + 1]
        y0 = p[o + 2]
        sx = p[o + 3]
        sy = p[o + 3] if circular else p[o + 4]
        for i in range(x.size):
            dx = x[i] - x0
            dy = y[i] - y0
            e = math.exp(-0.5 * (dx * dx / (sx * sx) + dy * dy / (sy * sy)))
            ae = amp * e
            mu[i] += ae
            jac[i, o] = e
            jac[i, o + 1] = ae * dx / (sx * sx)
            jac[i, o + 2] = ae * dy / (sy * sy)
            if circular:
                jac[i, o + 3] = ae * (dx * dx + dy * dy) / (sx * sx * sx)
            else:
                jac[i, o + 3] = ae * dx * dx / (sx * sx * sx)
                jac[i, o + 4] = ae * dy * dy / (sy * sy * sy)


@numba.njit(cache=True, nogil=True)
def _objective(z, mu, poisson):
    s = 0.0
    for i in range(z.size):
        if poisson:
            m = max(mu[i], 1e-12)
            s += m - z[i] * math.log(m)
        else:
            r = z[i] - mu[i]
            s += 0.5 * r * r
    return s


@numba.njit(cache=True, nogil=True)
def _grad_hess(z, mu, jac, poisson, g, h):
    npar = g.size
    g[:] = 0.0
    h[:, :] = 0.0
    for i in range(z.size):
        if poisson:
            m = max(mu[i], 1e-12)
            w = 1.0 / m
            gi = 1.0 - z[i] / m
        else:
            w = 1.0
            gi = mu[i] - z[i]
        for a in range(npar):
            g[a] += gi * jac[i, a]
            for b in range(a, npar):
                h[a, b] += w * jac[i, a] * jac[i, b]
    for a in range(npar):
        for b in range(a):
            h[a, b] = h[b, a]


@numba.njit(cache=True, nogil=True)
def _fit_one(z, x, y, p0, lo, hi, circular, poisson, max_iter, p_out, cov_out):
    """Damped Fisher scoring / Gauss–Newton. Returns (status, red_chi2, n_iter)."""
    npar = p0.size
    n = z.size
    mu = np.empty(n)
    jac = np.empty((n, npar))
    g = np.empty(npar)
    h = np.empty((npar, npar))
    step = np.empty(npar)
    p = np.empty(npar)
    pn = np.empty(npar)
    for a in range(npar):
        p[a] = min(max(p0[a], lo[a]), hi[a])
    _model_jac(p, x, y, circular, mu, jac)
    obj = _objective(z, mu, poisson)
    if not math.isfinite(obj):
        p_out[:] = p
        cov_out[:, :] = np.nan
        return NONFINITE, np.nan, 0
    _grad_hess(z, mu, jac, poisson, g, h)
    lam = 1e-3
    status = MAX_ITER
    it = 0
    damped = np.empty((npar, npar))
    neg_g = np.empty(npar)
    while it < max_iter:
        it += 1
        for a in range(npar):
            neg_g[a] = -g[a]
        if not damped_step(h, neg_g, lam, damped, step):
            status = SINGULAR
            break
        for a in range(npar):
            pn[a] = min(max(p[a] + step[a], lo[a]), hi[a])
        _model_jac(pn, x, y, circular, mu, jac)
        obj_new = _objective(z, mu, poisson)
        if math.isfinite(obj_new) and obj_new <= obj:
            decrease = obj - obj_new
            small_step = True
            for a in range(npar):
                if abs(pn[a] - p[a]) > 1e-7 * (abs(p[a]) + 1e-6):
                    small_step = False
            p[:] = pn
            obj = obj_new
            _grad_hess(z, mu, jac, poisson, g, h)
            lam = max(lam * 0.2, 1e-9)
            if decrease <= 1e-10 * (abs(obj) + 1e-3) or small_step:
                status = OK
                break
        else:
            lam *= 10.0
            if lam > 1e10:
                # no downhill step exists at any damping: p is a (bounded) minimum
                status = OK
                break
    # final model, Fisher matrix and covariance
    _model_jac(p, x, y, circular, mu, jac)
    _grad_hess(z, mu, jac, poisson, g, h)
    p_out[:] = p
    chi2 = 0.0
    for i in range(n):
        r = z[i] - mu[i]
        if poisson:
            chi2 += r * r / max(mu[i], 1e-12)
        else:
            chi2 += r * r
    dof = n - npar
    red = chi2 / dof if dof > 0 else np.nan
    if not invert(h, cov_out):
        cov_out[:, :] = np.nan
        return SINGULAR, red, it
    if poisson:
        scale = max(1.0, red) if math.isfinite(red) else 1.0
    else:
        scale = red if math.isfinite(red) else np.nan
    for a in range(npar):
        for b in range(npar):
            cov_out[a, b] *= scale
    if not math.isfinite(obj):
        return NONFINITE, red, it
    return status, red, it


@numba.njit(cache=True, nogil=True)
def _fit_batch(z_flat, x_flat, y_flat, starts, p0s, los, his, circular, poisson, max_iter):
    n_fit = starts.size - 1
    npar = p0s.shape[1]
    p_out = np.empty((n_fit, npar))
    cov_out = np.empty((n_fit, npar, npar))
    status = np.empty(n_fit, dtype=np.int64)
    red = np.empty(n_fit)
    n_iter = np.empty(n_fit, dtype=np.int64)
    for k in range(n_fit):
        a = starts[k]
        b = starts[k + 1]
        st, rc, ni = _fit_one(z_flat[a:b], x_flat[a:b], y_flat[a:b], p0s[k], los[k], his[k],
                              circular, poisson, max_iter, p_out[k], cov_out[k])
        status[k] = st
        red[k] = rc
        n_iter[k] = ni
    return p_out, cov_out, status, red, n_iter
