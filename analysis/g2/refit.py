"""Poisson-weighted least squares of histogram models, iterated on the model's weights.

``_fast_poisson_refit`` runs the shared Levenberg–Marquardt core
(:func:`micropl.analysis.fitcore.lm_fit`) on an analytic model and Jacobian;
``_poisson_refit`` runs :func:`scipy.optimize.least_squares` on a model without one.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize


def _lm_solve(fun, p0: np.ndarray, lower: np.ndarray, upper: np.ndarray, c: np.ndarray,
              sigma: np.ndarray, free: np.ndarray, max_iter: int = 200):
    """Weighted least squares ``min Σ((model − c)/σ)²`` by Levenberg–Marquardt.

    ``fun(p) -> (model, jac)`` with ``jac`` of shape (n, n_par). Steps are projected onto
    the box ``[lower, upper]``. Converged when a step changes every free parameter by less
    than 1e-2 of its statistical error, or χ² by less than 1e-12 relatively.

    Returns ``(p, model, jac, converged)``.
    """
    p = np.array(p0, dtype=np.float64)
    p[free] = np.clip(p[free], lower[free], upper[free])
    inv_s = 1.0 / sigma
    m, jac = fun(p)
    r = (m - c) * inv_s
    chi = float(r @ r)
    lam = 1e-3
    for _ in range(max_iter):
        jw = jac[:, free] * inv_s[:, None]
        a = jw.T @ jw
        g = jw.T @ r
        d = np.diag(a).copy()
        d[d <= 0] = 1.0
        try:
            errs = np.sqrt(np.clip(np.diag(np.linalg.pinv(a)), 0.0, None))
        except np.linalg.LinAlgError:
            errs = np.full(d.size, np.inf)
        accepted = False
        while lam < 1e16:
            try:
                step = np.linalg.solve(a + lam * np.diag(d), -g)
            except np.linalg.LinAlgError:
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


def _fast_poisson_refit(fun, p0, lower, upper, c: np.ndarray, free: np.ndarray,
                        n_iter: int = 3):
    """As :func:`_poisson_refit`, with the analytic model/Jacobian ``fun`` and LM.

    Weights ``1/√max(c, 1)`` first, then ``1/√max(model, 0.1)`` of the previous
    iteration; the covariance ``(JᵀWJ)⁻¹`` uses the weights of the last iteration and is
    scaled by the reduced χ² (weighted by the final model) when it exceeds 1.

    Returns ``(p, cov, chi2_red, model, success)``.
    """
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    sigma = np.sqrt(np.maximum(c, 1.0))
    p = np.asarray(p0, dtype=np.float64)
    ok = True
    for _ in range(n_iter):
        p, m, jac, ok = _lm_solve(fun, p, lower, upper, c, sigma, free)
        last_sigma = sigma
        sigma = np.sqrt(np.maximum(m, 0.1))
    r = (m - c) / np.sqrt(np.maximum(m, 0.1))
    dof = max(c.size - p.size, 1)
    chi2_red = float(r @ r) / dof
    jw = jac / last_sigma[:, None]
    jw[:, ~free] = 0.0
    cov = np.linalg.pinv(jw.T @ jw) * max(1.0, chi2_red)
    return p, cov, chi2_red, m, ok


def _poisson_refit(fun, p0, lower, upper, c: np.ndarray, n_iter: int = 3):
    """Least squares with Poisson weights ``1/√model``, iterated from ``1/√max(c,1)``.

    Returns the scipy result, the covariance (scaled by the reduced χ² when above 1),
    the reduced χ² and the final model.
    """
    sigma = np.sqrt(np.maximum(c, 1.0))
    p = np.asarray(p0, dtype=np.float64)
    res = None
    for _ in range(n_iter):
        def resid(q, sigma=sigma):
            return (fun(q) - c) / sigma
        res = optimize.least_squares(resid, p, bounds=(lower, upper), x_scale="jac",
                                     method="trf")
        p = res.x
        sigma = np.sqrt(np.maximum(fun(p), 0.1))
    model = fun(p)
    r = (model - c) / np.sqrt(np.maximum(model, 0.1))
    dof = max(c.size - p.size, 1)
    chi2_red = float(r @ r) / dof
    J = res.jac  # weighted by the model of the previous (converged) iteration
    try:
        cov = np.linalg.pinv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.full((p.size, p.size), np.nan)
    cov = cov * max(1.0, chi2_red)
    return res, cov, chi2_red, model
