"""Fit of a whole pulsed HBT histogram as a comb of peaks (:func:`fit_peak_train`).
"""

from __future__ import annotations

import math

import numpy as np

from micropl.analysis.g2.comb import _comb_fun
from micropl.analysis.g2.histogram import _check_histogram
from micropl.analysis.g2.pulsed import _pulsed_g2_impl
from micropl.analysis.g2.refit import _fast_poisson_refit
from micropl.analysis.g2.results import PeakTrainFit
from micropl.errors import AnalysisInputError


def fit_peak_train(tau_ps: np.ndarray, counts: np.ndarray, *, period_ps: float | None = None,
                   rep_rate_hz: float | None = None, delay_ps: float | None = None,
                   lifetime_ns: float | None = None, irf_sigma_ps: float | None = None,
                   fix_irf: bool = False) -> PeakTrainFit:
    """Fit a pulsed HBT histogram as a comb of two-sided exponential peaks.

    Model per bin: ``bg + Σ_k A_k·h(τ − τ₀ − k·P)`` with ``h`` from
    :func:`two_sided_exp_irf` (shared lifetime and IRF σ), ``A_k = A`` for side peaks and
    ``A_0 = g²(0)·A`` for the zero-delay peak. The model is averaged over each bin (three
    points per bin). The comb covers every peak within one period beyond the histogram.

    Parameters
    ----------
    tau_ps, counts : ndarray, shape (n,)
        Uniform bin centres in ps and raw counts.
    period_ps, rep_rate_hz : float, optional
        Period (fixed in the fit); detected when not given.
    delay_ps : float, optional
        Start value of the zero-delay position; by default from :func:`pulsed_g2`.
    lifetime_ns, irf_sigma_ps : float, optional
        Start values (default: from a fit of the folded side-peak profile made by
        :func:`pulsed_g2`; else from the peak width and 300 ps).
    fix_irf : bool
        Keep the IRF σ fixed at ``irf_sigma_ps`` (300 ps when not given).

    Returns
    -------
    PeakTrainFit
        Parameters with 1σ errors from the Poisson-weighted Jacobian, scaled by √χ²_red
        when it exceeds 1.

    Notes
    -----
    Poisson-weighted least squares, iterated three times: weights ``1/√max(counts, 1)``,
    then ``1/√model`` of the previous solution. Each solution is a Levenberg–Marquardt
    minimisation with the analytic Jacobian of the comb (numba): the peak shape is
    evaluated exactly (erfc) only within ``σ²/τ + 9σ`` of each peak, where the Gaussian
    IRF matters, and beyond it as pure exponential tails summed over all peaks as two
    geometric series, which is exact to double precision. A 9375-bin histogram takes a
    few ms.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.g2 import fit_peak_train, two_sided_exp_irf
    >>> tau = np.arange(-75000.0, 75000.0, 250.0)
    >>> mean = 0.5 + sum((0.1 if k == 0 else 1.0) * 100.0 * two_sided_exp_irf(tau - k * 12500.0, 800.0, 150.0)
    ...              for k in range(-6, 7))
    >>> counts = np.random.default_rng(2).poisson(mean).astype(float)
    >>> fit = fit_peak_train(tau, counts, rep_rate_hz=80e6)
    >>> bool(fit.success), round(fit.g2_0, 1), round(fit.lifetime_ns, 1)
    (True, 0.1, 0.8)
    """
    tau, c, bin_ps = _check_histogram(tau_ps, counts)
    if period_ps is not None and rep_rate_hz is not None:
        raise AnalysisInputError("give period_ps or rep_rate_hz, not both")
    if rep_rate_hz is not None:
        if not rep_rate_hz > 0:
            raise AnalysisInputError(f"repetition rate must be > 0 Hz, got {rep_rate_hz}")
        period_ps = 1e12 / float(rep_rate_hz)
    pg, shape = _pulsed_g2_impl(tau, c, period_ps=period_ps, rep_rate_hz=None, n_side=3,
                                zero_delay_ps=delay_ps, window_fraction=1.0,
                                gap_fraction=0.2, period_source=None, min_significance=3.0)
    period = pg.period_ps
    d0 = pg.delay_ps
    bg0 = pg.background_per_bin if np.isfinite(pg.background_per_bin) else float(c.min())
    bg0 = max(bg0, 0.0)
    if lifetime_ns is not None:
        tau_l0 = float(lifetime_ns) * 1e3
    elif shape is not None:
        tau_l0 = shape[0]
    else:
        # Area of a side peak above background ≈ 2·A·τ, with A the peak height.
        side = pg.side_mean_counts - bg0 * period * pg.window_fraction / bin_ps
        k_near = np.argmin(np.abs(tau - pg.side_delays_ps[0]))
        height = max(float(c[max(k_near - 1, 0):k_near + 2].max()) - bg0, 1.0)
        tau_l0 = float(np.clip(side / (2 * height / bin_ps), bin_ps, 0.3 * period))
    tau_l0 = float(np.clip(tau_l0, 0.2 * bin_ps, period))
    if irf_sigma_ps is not None or fix_irf:
        sig0 = 300.0 if irf_sigma_ps is None else float(irf_sigma_ps)
    else:
        sig0 = float(np.clip(shape[1], 1.0, 0.25 * period)) if shape is not None else 300.0
    amp0 = max((pg.side_mean_counts - bg0 * period / bin_ps) * bin_ps / (2 * tau_l0), 1.0)
    g0 = float(np.clip(pg.g2_0_bgcorr if np.isfinite(pg.g2_0_bgcorr) else pg.g2_0, 0.0, 1.5))
    k_lo = math.floor((tau[0] - d0) / period) - 1
    k_hi = math.ceil((tau[-1] - d0) / period) + 1
    n_peaks = k_hi - k_lo + 1
    fun = _comb_fun(tau, bin_ps, period, k_lo, n_peaks, -k_lo,
                    fixed_sigma=max(sig0, 1e-6 * tau_l0) if fix_irf else None)

    p0 = [amp0, g0, tau_l0, sig0, d0, max(bg0, 1e-3)]
    lower = [0.0, 0.0, 0.2 * bin_ps, 1.0, d0 - 0.25 * period, 0.0]
    upper = [np.inf, 5.0, period, 0.25 * period, d0 + 0.25 * period, np.inf]
    free = np.ones(6, dtype=bool)
    if fix_irf:
        free[3] = False
    q, cov, chi2_red, m, ok = _fast_poisson_refit(fun, p0, lower, upper, c, free)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    if fix_irf:
        err[3] = 0.0
    return PeakTrainFit(
        g2_0=float(q[1]), g2_0_err=float(err[1]), lifetime_ns=float(q[2]) / 1e3,
        lifetime_ns_err=float(err[2]) / 1e3, delay_ps=float(q[4]), delay_ps_err=float(err[4]),
        irf_sigma_ps=float(q[3] if not fix_irf else sig0), irf_sigma_ps_err=float(err[3]),
        side_amplitude=float(q[0]), side_amplitude_err=float(err[0]),
        background_per_bin=float(q[5]), background_per_bin_err=float(err[5]),
        period_ps=float(period), chi2_red=chi2_red, model=m, success=bool(ok),
    )
