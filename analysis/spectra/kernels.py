"""Numba residual/Jacobian kernels of the pixel-integrated line model.

One pass over the pixels evaluates the model (``sum_k A_k ∫_pixel L_k(E) dE + B``), the
model-based weights and the normal equations ``H = JᵀWJ``, ``g = JᵀW r`` (``_pass``); a
vectorised fast path does the same for one Lorentzian or Gaussian line
(``_pass_single``). ``_model_batch`` evaluates fitted models on a pixel axis.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from micropl.analysis.spectra.profiles import _cdf_terms, _voigt_terms


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
