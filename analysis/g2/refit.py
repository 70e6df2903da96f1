"""Poisson-weighted least squares of histogram models, iterated on the model's weights.

``_fast_poisson_refit`` runs the shared Levenberg–Marquardt core
(:func:`micropl.analysis.fitcore.lm_fit`) on an analytic model and Jacobian;
``_poisson_refit`` runs :func:`scipy.optimize.least_squares` on a model without one.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from micropl.analysis.fitcore import covariance_from_jacobian, lm_fit


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
        p, m, jac, ok = lm_fit(fun, p, lower, upper, c, sigma, free)
        last_sigma = sigma
        sigma = np.sqrt(np.maximum(m, 0.1))
    r = (m - c) / np.sqrt(np.maximum(m, 0.1))
    dof = max(c.size - p.size, 1)
    chi2_red = float(r @ r) / dof
    cov = covariance_from_jacobian(jac / last_sigma[:, None], free) * max(1.0, chi2_red)
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
