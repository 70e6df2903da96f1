"""The per-spectrum Levenberg–Marquardt loop (numba), run over a batch in parallel.

Start values (a greedy peel of the smoothed density, ``_initial_guess``), the damped
iteration with model-based (iteratively re-weighted) weights on the kernels of
:mod:`micropl.analysis.spectra.kernels`, and the covariance; the linear algebra is the
shared core :mod:`micropl.analysis.fitcore`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from micropl.analysis.fitcore import (
    MAX_ITER,
    NONFINITE,
    OK,
    SINGULAR,
    STALLED,
    damped_step,
    gn_decrement,
    invert_spd,
)
from micropl.analysis.spectra.kernels import _evaluate

#: Status codes of a spectrum fit beyond the shared flags of :mod:`micropl.analysis.fitcore`
#: (messages: ``micropl.analysis.spectra.results._STATUS_MESSAGES``).
_OUTSIDE_RANGE, _NO_LINE, _WIDTH_AT_BOUND = 5, 6, 7


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
    status = MAX_ITER
    it = 0
    n_width = npp - 2 if code == 2 else 1
    while it < max_iter:
        if not math.isfinite(chi):
            status = NONFINITE
            break
        dec = gn_decrement(h_cur, g_cur, a_mat, step)
        if dec < 0.0:
            status = SINGULAR
            break
        # converged: the next step lowers χ² by < 1e-9 (in units of the reduced χ², so that
        # a model that does not fit the line — a large χ² — converges as well)
        tol = max(1.0, chi / max(n_px - npar, 1))
        if dec < 1e-9 * tol:
            status = OK
            break
        it += 1
        accepted = False
        while lam < 1e12:
            if not damped_step(h_cur, g_cur, lam, a_mat, step):
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
            status = OK if gn_decrement(h_cur, g_cur, a_mat, step) < 1e-6 * tol else STALLED
            break
    for a in range(npar):
        p_out[a] = p[a]
    if status == OK or status == MAX_ITER:
        if not invert_spd(h_cur, cov_out):
            status = SINGULAR
    if status == OK:
        for k in range(npk):
            o = k * npp
            if not (edges.min() <= p[o] <= edges.max()):
                status = _OUTSIDE_RANGE
            if not p[o + npp - 1] > 0.0:
                status = _NO_LINE
            for q in range(n_width):
                if p[o + 1 + q] < 1.001 * wmin or p[o + 1 + q] > 0.999 * wmax:
                    status = _WIDTH_AT_BOUND
    if status != OK and status != MAX_ITER:
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
