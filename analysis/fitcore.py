"""The one linear-algebra and Levenberg–Marquardt core of the analysis fits.

Every fitter of micropl (the spectrum lines of :mod:`micropl.analysis.spectra`, the 2D
Gaussians of :mod:`micropl.analysis.maps`, the peak trains of :mod:`micropl.analysis.g2`)
keeps its own model kernels — the residuals, the Jacobian and the normal equations of its
model — and takes the rest from here:

* :func:`damped_step` — one Levenberg–Marquardt step: the normal matrix ``H`` with its
  diagonal damped to ``H_ii·(1 + λ)`` (``H_ii + λ`` for a zero diagonal), solved by
  :func:`solve_normal`;
* :func:`solve_spd` (Cholesky, refuses a matrix that is not positive definite) and
  :func:`solve_lu` (Gaussian elimination with partial pivoting), and
  :func:`solve_normal`: Cholesky, and elimination when Cholesky meets a pivot that is not
  positive (a matrix that is semi-definite to round-off);
* :func:`gn_decrement` — ``gᵀH⁻¹g``, the χ² decrease a full Gauss–Newton step promises
  (the convergence test of the spectrum fit);
* :func:`invert_spd` (scaled Cholesky inverse) and :func:`invert` (with the elimination
  fallback): the covariance ``(JᵀWJ)⁻¹``; :func:`covariance_from_jacobian` its
  pseudo-inverse form for models with undetermined parameters;
* the convergence flags :data:`OK`, :data:`MAX_ITER`, :data:`SINGULAR`,
  :data:`STALLED` and :data:`NONFINITE`;
* :func:`lm_fit` — a complete weighted least-squares Levenberg–Marquardt loop with box
  bounds and fixed parameters for a model written in Python (``fun(p) -> (model, jac)``).

All compiled functions work in place on small float64 arrays (a few to a few tens of
parameters) and allocate little; they are ``nogil`` so that batches run in threads.

Examples
--------
>>> import numpy as np
>>> from micropl.analysis.fitcore import solve_normal, invert, damped_step
>>> h = np.array([[4.0, 2.0], [2.0, 3.0]])
>>> x = np.empty(2)
>>> bool(solve_normal(h, np.array([2.0, 1.0]), x)), np.round(x, 6).tolist()
(True, [0.5, 0.0])
>>> cov = np.empty((2, 2))
>>> bool(invert(h, cov)), (np.round(cov @ h, 12) + 0.0).tolist()
(True, [[1.0, 0.0], [0.0, 1.0]])
>>> step = np.empty(2)
>>> bool(damped_step(h, np.array([2.0, 1.0]), 1.0, np.empty((2, 2)), step))
True
>>> np.round(step, 4).tolist()          # (H + λ·diag H) step = g: shorter than x
[0.2273, 0.0909]
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "MAX_ITER",
    "NONFINITE",
    "OK",
    "SINGULAR",
    "STALLED",
    "covariance_from_jacobian",
    "damped_step",
    "gn_decrement",
    "invert",
    "invert_spd",
    "lm_fit",
    "solve_lu",
    "solve_normal",
    "solve_spd",
]

#: Converged.
OK = 0
#: The iteration limit was reached first.
MAX_ITER = 1
#: The normal matrix is singular: some parameters are not determined by the data.
SINGULAR = 2
#: No step at any damping lowers the objective, away from a minimum (a bound?).
STALLED = 3
#: The model or the objective is not finite.
NONFINITE = 4

#: Starting damping of :func:`lm_fit`.
_LAM_START = 1e-3

_JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


@numba.njit(**_JIT)
def solve_spd(a, b, out):
    """Solve ``a x = b`` for a small symmetric positive-definite ``a`` by Cholesky.

    Parameters
    ----------
    a : ndarray, shape (n, n)
        Symmetric matrix (only its lower triangle is read); left unchanged.
    b : ndarray, shape (n,)
        Right-hand side.
    out : ndarray, shape (n,)
        Receives ``x``.

    Returns
    -------
    bool
        False (``out`` undefined) when a pivot is not positive: ``a`` is not positive
        definite, or is singular to round-off.
    """
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


@numba.njit(**_JIT)
def solve_lu(a_in, b_in, out):
    """Solve ``a x = b`` by Gaussian elimination with partial pivoting.

    Parameters
    ----------
    a_in : ndarray, shape (n, n)
        Any square matrix; left unchanged.
    b_in : ndarray, shape (n,)
        Right-hand side; left unchanged.
    out : ndarray, shape (n,)
        Receives ``x``.

    Returns
    -------
    bool
        False when a pivot column is zero or not finite (``a`` singular).
    """
    n = b_in.size
    a = a_in.copy()
    b = b_in.copy()
    for k in range(n):
        piv = k
        best = abs(a[k, k])
        for r in range(k + 1, n):
            if abs(a[r, k]) > best:
                best = abs(a[r, k])
                piv = r
        if not best > 0.0 or not math.isfinite(best):
            return False
        if piv != k:
            for c in range(n):
                tmp = a[k, c]
                a[k, c] = a[piv, c]
                a[piv, c] = tmp
            tmp = b[k]
            b[k] = b[piv]
            b[piv] = tmp
        for r in range(k + 1, n):
            f = a[r, k] / a[k, k]
            if f != 0.0:
                for c in range(k, n):
                    a[r, c] -= f * a[k, c]
                b[r] -= f * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for c in range(k + 1, n):
            s -= a[k, c] * out[c]
        out[k] = s / a[k, k]
    return True


@numba.njit(**_JIT)
def solve_normal(a, b, out):
    """Solve normal equations ``a x = b``: Cholesky, else elimination with pivoting.

    The fallback takes a matrix that is positive semi-definite to round-off, which
    Cholesky refuses; a matrix singular for elimination as well gives False.

    Parameters
    ----------
    a : ndarray, shape (n, n)
        Symmetric normal matrix ``JᵀWJ`` (possibly damped).
    b : ndarray, shape (n,)
        Right-hand side.
    out : ndarray, shape (n,)
        Receives ``x``.

    Returns
    -------
    bool
        Whether a solution was found.
    """
    if solve_spd(a, b, out):
        return True
    return solve_lu(a, b, out)


@numba.njit(**_JIT)
def damped_step(h, rhs, lam, work, step):
    """One Levenberg–Marquardt step: solve ``(H + λ·D) step = rhs``.

    ``D`` is the diagonal of ``H`` (Marquardt's scaling: the step is invariant to the
    parameters' units), with 1 where a diagonal element is not positive; the damped
    diagonal is ``H_ii·(1 + λ)``.

    Parameters
    ----------
    h : ndarray, shape (n, n)
        Normal matrix ``JᵀWJ`` (or Fisher matrix).
    rhs : ndarray, shape (n,)
        ``JᵀW r`` with ``r = data − model`` (or minus the objective's gradient).
    lam : float
        Damping λ ≥ 0.
    work : ndarray, shape (n, n)
        Scratch space for the damped matrix.
    step : ndarray, shape (n,)
        Receives the step.

    Returns
    -------
    bool
        False when the damped matrix is singular.
    """
    n = rhs.shape[0]
    for a in range(n):
        for b in range(n):
            work[a, b] = h[a, b]
        d = h[a, a]
        work[a, a] = d * (1.0 + lam) if d > 0.0 else d + lam
    return solve_normal(work, rhs, step)


@numba.njit(**_JIT)
def gn_decrement(h, g, work, step):
    """``gᵀH⁻¹g``: the χ² decrease of a full Gauss–Newton step, in units of σ².

    Parameters
    ----------
    h : ndarray, shape (n, n)
        Normal matrix ``JᵀWJ``.
    g : ndarray, shape (n,)
        ``JᵀW r``.
    work : ndarray, shape (n, n)
        Scratch space.
    step : ndarray, shape (n,)
        Receives the Gauss–Newton step ``H⁻¹g``.

    Returns
    -------
    float
        The decrement, or −1 when ``H`` is not positive definite (Cholesky fails).
    """
    n = g.shape[0]
    for a in range(n):
        for b in range(n):
            work[a, b] = h[a, b]
    if not solve_spd(work, g, step):
        return -1.0
    s = 0.0
    for a in range(n):
        s += step[a] * g[a]
    return s


@numba.njit(**_JIT)
def invert_spd(a, out):
    """Inverse of a symmetric positive-definite matrix (the covariance ``(JᵀWJ)⁻¹``).

    The matrix is scaled to unit diagonal before the column solves by Cholesky, so that
    parameters of very different units do not spoil the conditioning.

    Parameters
    ----------
    a : ndarray, shape (n, n)
        Symmetric positive-definite matrix.
    out : ndarray, shape (n, n)
        Receives the inverse.

    Returns
    -------
    bool
        False when ``a`` is not positive definite.
    """
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
        if not solve_spd(sa, e, col):
            return False
        for i in range(n):
            out[i, j] = col[i] * d[i] * d[j]
    return True


@numba.njit(**_JIT)
def invert(a, out):
    """Inverse of a normal matrix: :func:`invert_spd`, else column solves by elimination.

    Parameters
    ----------
    a : ndarray, shape (n, n)
        Symmetric normal matrix.
    out : ndarray, shape (n, n)
        Receives the inverse.

    Returns
    -------
    bool
        False when ``a`` is singular for both methods.
    """
    if invert_spd(a, out):
        return True
    n = a.shape[0]
    unit = np.zeros(n)
    col = np.empty(n)
    for j in range(n):
        unit[:] = 0.0
        unit[j] = 1.0
        if not solve_lu(a, unit, col):
            return False
        for i in range(n):
            out[i, j] = col[i]
    return True


def covariance_from_jacobian(jac_w: np.ndarray, free: np.ndarray | None = None) -> np.ndarray:
    """``(JᵀJ)⁺`` of a weighted Jacobian ``J = W^½·∂model/∂p``: the covariance.

    The pseudo-inverse (SVD, singular values below 1e-15 of the largest dropped) keeps
    the errors of determined parameters finite when another parameter is not determined
    (at a bound, or without influence on the model); the fixed parameters get zero rows
    and columns.

    Parameters
    ----------
    jac_w : ndarray, shape (m, n_par)
        Weighted Jacobian (rows divided by the data's σ).
    free : ndarray of bool, shape (n_par,), optional
        The fitted parameters (default all).

    Returns
    -------
    ndarray, shape (n_par, n_par)

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.fitcore import covariance_from_jacobian
    >>> jw = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0]])   # a straight line, σ = 1
    >>> np.round(covariance_from_jacobian(jw), 4).tolist()
    [[0.8333, -0.5], [-0.5, 0.5]]
    >>> np.round(covariance_from_jacobian(jw, np.array([True, False])), 4).tolist()
    [[0.3333, 0.0], [0.0, 0.0]]
    """
    jw = np.array(jac_w, dtype=np.float64)
    if free is not None:
        jw[:, ~np.asarray(free, dtype=bool)] = 0.0
    return np.linalg.pinv(jw.T @ jw)


def lm_fit(fun, p0, lower, upper, c: np.ndarray, sigma: np.ndarray, free: np.ndarray,
           max_iter: int = 200):
    """Weighted least squares ``min Σ((model − c)/σ)²`` by Levenberg–Marquardt.

    Parameters
    ----------
    fun : callable
        ``fun(p) -> (model, jac)``: the model, shape (m,), and its Jacobian, shape
        (m, n_par), at the parameters ``p``.
    p0 : array_like, shape (n_par,)
        Start values.
    lower, upper : array_like, shape (n_par,)
        Box bounds; each step is projected onto the box. With a bound active at the
        minimum the projected steps can end the loop short of it (up to 0.3 σ in
        ``tests/test_fitcore.py``), as in the g² fits' own solver before this core.
    c : ndarray, shape (m,)
        Data.
    sigma : ndarray, shape (m,)
        Their standard deviations (> 0).
    free : ndarray of bool, shape (n_par,)
        Which parameters are fitted; the others stay at ``p0``.
    max_iter : int
        Most accepted steps.

    Returns
    -------
    p : ndarray
        Best-fit parameters.
    model, jac : ndarray
        The model and Jacobian at ``p``.
    converged : bool
        True when a step changed every free parameter by less than 1e-2 of its
        statistical error, or χ² by less than 1e-12 relatively, or no step at any damping
        lowers χ²; False when ``max_iter`` steps were taken first. The step test does not
        look at the damping: from a start far from the minimum, a strongly damped short
        step can end the loop early (start from estimates, as the g² fits do).

    Examples
    --------
    An exponential decay, fitted from a poor start:

    >>> import numpy as np
    >>> from micropl.analysis.fitcore import lm_fit
    >>> t = np.linspace(0.0, 5.0, 40)
    >>> def fun(p):
    ...     e = np.exp(-t / p[1])
    ...     return p[0] * e, np.column_stack([e, p[0] * t * e / p[1] ** 2])
    >>> c = fun([10.0, 1.5])[0]
    >>> p, model, jac, ok = lm_fit(fun, [3.0, 0.5], [0.0, 0.01], [np.inf, np.inf], c,
    ...                            np.ones(t.size), np.array([True, True]))
    >>> bool(ok), np.round(p, 6).tolist()
    (True, [10.0, 1.5])
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    p = np.array(p0, dtype=np.float64)
    p[free] = np.clip(p[free], lower[free], upper[free])
    inv_s = 1.0 / sigma
    m, jac = fun(p)
    r = (m - c) * inv_s
    chi = float(r @ r)
    lam = _LAM_START
    n_free = int(np.count_nonzero(free))
    work = np.empty((n_free, n_free))
    step = np.empty(n_free)
    for _ in range(max_iter):
        jw = jac[:, free] * inv_s[:, None]
        a = jw.T @ jw
        g = jw.T @ r
        errs = np.sqrt(np.clip(np.diag(np.linalg.pinv(a)), 0.0, None))
        accepted = False
        while lam < 1e16:
            if not damped_step(a, -g, lam, work, step):
                lam *= 10.0
                continue
            pn = p.copy()
            pn[free] = np.clip(p[free] + step, lower[free], upper[free])
            mn, jn = fun(pn)
            rn = (mn - c) * inv_s
            chin = float(rn @ rn)
            if np.isfinite(chin) and chin <= chi:
                accepted = True
                break
            lam *= 10.0
        if not accepted:
            return p, m, jac, True  # no downhill step left: at the minimum
        moved = np.abs(pn[free] - p[free])
        drop = chi - chin
        p, m, jac, r, chi = pn, mn, jn, rn, chin
        lam = max(lam * 0.1, 1e-12)
        if np.all(moved <= 1e-2 * errs) or drop <= 1e-12 * max(chi, 1.0):
            return p, m, jac, True
    return p, m, jac, False
