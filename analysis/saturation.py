"""Power-saturation fit of a single emitter's count rate.

``counts(P) = A·(1 − exp(−P/P_sat)) + B·P + C``

``A`` is the saturated signal, ``P_sat`` the saturation power, ``B`` an optional linear
background (substrate or polymer PL, laser leakage) and ``C`` a constant (dark counts).
The excitation probability per pulse of a QD saturates as ``1 − exp(−P/P_sat)``
(``../shared/PHYSICS.md``). The counts may be counts per exposure or rates; their unit
carries through to ``A``, ``B·P`` and ``C``. The power may be in W or in the laser's
percent setting; ``P_sat`` comes out in the same unit (``SaturationFit.power_unit``).

The power-series procedure (:mod:`micropl.acquisition.procedures.power_series`) applies
:func:`fit_saturation` to its count rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from micropl.errors import AnalysisInputError

__all__ = ["SaturationFit", "fit_saturation", "saturation_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SaturationFit:
    """Result of :func:`fit_saturation`. Errors are 1σ.

    Attributes
    ----------
    amplitude, amplitude_err : float
        Saturated signal ``A`` (unit of the counts).
    p_sat, p_sat_err : float
        Saturation power, in ``power_unit``.
    slope, slope_err : float
        Linear background ``B`` (counts per ``power_unit``); 0 with error 0 when not
        fitted.
    offset, offset_err : float
        Constant ``C`` (unit of the counts).
    linear_background : bool
        Whether ``B`` was fitted.
    covariance : ndarray, shape (n_par, n_par)
        Covariance of ``(A, P_sat, [B,] C)``.
    red_chi2 : float
        Reduced χ² (with the given errors; with unit weights when none were given).
    dof : int
        Degrees of freedom.
    success : bool
        True when the fit converged, the covariance is finite and the data constrain
        ``P_sat`` (see ``reason``).
    reason : str
        ``"ok"`` or why the result should not be trusted.
    power_unit : str
        Unit of the powers fitted (``"W"``, ``"%"``).
    """

    amplitude: float
    amplitude_err: float
    p_sat: float
    p_sat_err: float
    slope: float
    slope_err: float
    offset: float
    offset_err: float
    linear_background: bool
    covariance: np.ndarray
    red_chi2: float
    dof: int
    success: bool
    reason: str
    power_unit: str = "W"


def saturation_model(power: np.ndarray, amplitude: float, p_sat: float,
                     slope: float = 0.0, offset: float = 0.0) -> np.ndarray:
    """``A·(1 − exp(−P/P_sat)) + B·P + C``.

    Parameters
    ----------
    power : ndarray, shape (n,)
        Excitation power (W, or any unit: ``P_sat`` and ``B`` use the same one).
    amplitude, p_sat, slope, offset : float
        ``A``, ``P_sat`` (power unit), ``B`` (per power unit) and ``C``.

    Returns
    -------
    ndarray, shape (n,)
        Expected counts.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.saturation import saturation_model
    >>> saturation_model(np.array([0.0, 1.0, 3.0]), 1000.0, 1.0).round(1).tolist()
    [0.0, 632.1, 950.2]
    """
    p = np.asarray(power, dtype=float)
    return amplitude * -np.expm1(-p / p_sat) + slope * p + offset


def _jac(p, theta, linear):
    a, ps = theta[0], theta[1]
    e = np.exp(-p / ps)
    cols = [-np.expm1(-p / ps), -a * p / ps**2 * e]
    if linear:
        cols.append(p)
    cols.append(np.ones_like(p))
    return np.column_stack(cols)


def fit_saturation(power: np.ndarray, counts: np.ndarray,
                   counts_err: np.ndarray | None = None, *,
                   linear_background: bool = True, power_unit: str = "W") -> SaturationFit:
    """Fit ``counts(P) = A·(1 − exp(−P/P_sat)) + B·P + C`` with 1σ errors.

    Weighted least squares (analytic Jacobian, trust-region reflective with ``A ≥ 0`` and
    ``P_sat > 0``), started from a grid of ``P_sat`` values spanning the measured powers
    (the best χ² is kept), so no user guess is needed.

    Error convention: with ``counts_err`` the errors are taken as absolute and the
    covariance is multiplied by ``max(1, χ²_red)`` (the data scatter more than stated is
    never hidden); without ``counts_err`` the points are weighted equally and the
    covariance is scaled by the residual variance (as :func:`scipy.optimize.curve_fit` with
    ``absolute_sigma=False``).

    Parameters
    ----------
    power : ndarray, shape (n,)
        Excitation power in ``power_unit`` (any order, ≥ 0).
    counts : ndarray, shape (n,)
        Measured counts or count rates at each power.
    counts_err : ndarray, shape (n,), optional
        1σ errors of ``counts`` (e.g. ``sqrt(counts)`` for raw Poisson counts).
    linear_background : bool
        Fit the linear term ``B`` (otherwise ``B = 0``).
    power_unit : str
        Unit of ``power`` (``"W"``, ``"%"`` of the laser setting); carried into the result.

    Returns
    -------
    SaturationFit
        Parameters with 1σ errors, χ², success and reason. ``success`` is False when
        ``P_sat`` exceeds twice the largest measured power (saturation not reached), lies
        below half the smallest non-zero power, or its relative error exceeds 100 %.

    Raises
    ------
    AnalysisInputError
        Shapes differ, non-finite or negative powers, non-positive errors, or fewer points
        than parameters + 1.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.saturation import fit_saturation, saturation_model
    >>> p = np.geomspace(0.05, 20.0, 15)
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.poisson(saturation_model(p, 5e4, 2.0, 300.0, 200.0)).astype(float)
    >>> fit = fit_saturation(p, counts, power_unit="uW")
    >>> bool(fit.success), round(fit.p_sat, 1), round(fit.amplitude / 1e4, 1)
    (True, 2.0, 5.0)
    """
    p = np.asarray(power, dtype=float)
    y = np.asarray(counts, dtype=float)
    if p.ndim != 1 or p.shape != y.shape:
        raise AnalysisInputError(f"power and counts must be 1D of equal length, got "
                                 f"{p.shape}, {y.shape}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(y))) or np.any(p < 0):
        raise AnalysisInputError("powers must be finite and >= 0, counts finite")
    if counts_err is not None:
        s = np.asarray(counts_err, dtype=float)
        if s.shape != y.shape or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise AnalysisInputError("counts_err must be finite, > 0 and one per point")
        absolute = True
    else:
        s = np.ones_like(y)
        absolute = False
    n_par = 4 if linear_background else 3
    if p.size < n_par + 1:
        raise AnalysisInputError(f"need at least {n_par + 1} powers for {n_par} parameters, "
                                 f"got {p.size}")
    p_max = float(p.max())
    if not p_max > 0:
        raise AnalysisInputError("all powers are zero")

    def resid(theta):
        a, ps = theta[0], theta[1]
        b = theta[2] if linear_background else 0.0
        c = theta[-1]
        return (saturation_model(p, a, ps, b, c) - y) / s

    def jac(theta):
        return _jac(p, theta, linear_background) / s[:, None]

    c0 = float(y[np.argmin(p)])
    lo = [0.0, 1e-6 * p_max] + ([-np.inf] if linear_background else []) + [-np.inf]
    hi = [np.inf, 1e3 * p_max] + ([np.inf] if linear_background else []) + [np.inf]
    best = None
    for ps0 in p_max * np.array([0.03, 0.1, 0.3, 1.0, 3.0]):
        a0 = max((float(y.max()) - c0) / max(-np.expm1(-p_max / ps0), 1e-12), 1e-12)
        theta0 = [a0, ps0] + ([0.0] if linear_background else []) + [c0]
        res = optimize.least_squares(resid, theta0, jac=jac, bounds=(lo, hi), method="trf",
                                     x_scale="jac", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                                     max_nfev=300)
        if best is None or res.cost < best.cost:
            best = res
    theta = best.x
    chi2 = 2.0 * best.cost
    dof = int(p.size - n_par)
    red = chi2 / dof if dof > 0 else float("nan")
    j = jac(theta)
    try:
        cov = np.linalg.inv(j.T @ j)
    except np.linalg.LinAlgError:
        cov = np.full((n_par, n_par), np.nan)
    cov = cov * (max(1.0, red) if absolute else red)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.diag(cov))
    reason = "ok"
    if not best.success:
        reason = f"optimiser did not converge: {best.message}"
    elif not np.all(np.isfinite(err)):
        reason = "covariance not finite (parameters not constrained by the data)"
    elif theta[1] > 2.0 * p_max:
        reason = (f"saturation not reached: P_sat {theta[1]:.3g} {power_unit} > 2 × the "
                  f"largest power {p_max:.3g} {power_unit}")
    elif theta[1] < 0.5 * float(np.min(p[p > 0])):
        reason = (f"P_sat {theta[1]:.3g} {power_unit} is below the smallest power: already "
                  "saturated, P_sat not constrained")
    elif not err[1] < theta[1]:
        reason = "P_sat not constrained (relative error > 100 %)"
    if reason != "ok":
        log.debug("fit_saturation: %s", reason)
    b, b_err = (theta[2], err[2]) if linear_background else (0.0, 0.0)
    return SaturationFit(
        amplitude=float(theta[0]), amplitude_err=float(err[0]), p_sat=float(theta[1]),
        p_sat_err=float(err[1]), slope=float(b), slope_err=float(b_err),
        offset=float(theta[-1]), offset_err=float(err[-1]),
        linear_background=linear_background, covariance=cov, red_chi2=float(red), dof=dof,
        success=reason == "ok", reason=reason, power_unit=str(power_unit))
