"""Fit of the CW antibunching dip (:func:`fit_cw_g2`).
"""

from __future__ import annotations

import numpy as np

from micropl.analysis.g2.histogram import _check_histogram
from micropl.analysis.g2.refit import _poisson_refit
from micropl.analysis.g2.results import CwG2Fit
from micropl.analysis.g2.shapes import _binned, two_sided_exp_irf
from micropl.errors import AnalysisInputError


def fit_cw_g2(tau_ps: np.ndarray, counts: np.ndarray, *, rate1_hz: float | None = None,
              rate2_hz: float | None = None, duration_s: float | None = None,
              irf_sigma_ps: float | None = None, tau0_ns: float | None = None,
              delay_ps: float | None = None) -> CwG2Fit:
    """Fit ``N·[1 − (1 − g²(0))·exp(−|τ − τ_d|/τ₀) ⊛ IRF]`` to a CW histogram.

    Parameters
    ----------
    tau_ps, counts : ndarray, shape (n,)
        Uniform bin centres in ps and raw coincidence counts. The window should reach
        several τ₀ beyond the dip so that the long-delay level is defined.
    rate1_hz, rate2_hz, duration_s : float, optional
        When all three are given, the normalisation is fixed to
        ``rate1·rate2·bin·duration`` (uncorrelated coincidences per bin); otherwise it is
        fitted from the long-delay level.
    irf_sigma_ps : float, optional
        Gaussian IRF σ in ps; fixed when given, else fitted (start 300 ps).
    tau0_ns, delay_ps : float, optional
        Start values (default: 1 ns, and the position of the histogram minimum after
        smoothing).

    Returns
    -------
    CwG2Fit

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.g2 import fit_cw_g2
    >>> tau = np.arange(-20000.0, 20000.0, 100.0)
    >>> counts = np.random.default_rng(3).poisson(400.0 * (1.0 - 0.8 * np.exp(-np.abs(tau) / 1500.0)))
    >>> fit = fit_cw_g2(tau, counts.astype(float))
    >>> round(fit.g2_0, 1), round(fit.tau0_ns, 1)
    (0.2, 1.5)
    """
    tau, c, bin_ps = _check_histogram(tau_ps, counts)
    by_rates = None not in (rate1_hz, rate2_hz, duration_s)
    if by_rates:
        norm_fixed = float(rate1_hz) * float(rate2_hz) * bin_ps * 1e-12 * float(duration_s)
        if not norm_fixed > 0:
            raise AnalysisInputError("rates and duration must be > 0 for the normalisation")
    else:
        n_edge = max(3, c.size // 10)
        norm_fixed = None
    norm0 = norm_fixed if by_rates else float(np.mean(np.r_[c[:n_edge], c[-n_edge:]]))
    if norm0 <= 0:
        raise AnalysisInputError("histogram has no counts at long delay")
    if delay_ps is None:
        k = max(1, int(round(1000.0 / bin_ps)))
        smooth = np.convolve(c, np.ones(k) / k, mode="same")
        inner = slice(k, c.size - k) if c.size > 2 * k + 2 else slice(None)
        d0 = float(tau[inner][np.argmin(smooth[inner])])
    else:
        d0 = float(delay_ps)
    t0 = 1000.0 if tau0_ns is None else float(tau0_ns) * 1e3
    fix_sig = irf_sigma_ps is not None
    s0 = float(irf_sigma_ps) if fix_sig else 300.0
    span = tau[-1] - tau[0]

    def unpack(q):
        i = 0
        if by_rates:
            norm = norm_fixed
        else:
            norm = q[0]
            i = 1
        g0, t0_, d, *rest = q[i:]
        s = s0 if fix_sig else rest[0]
        return norm, g0, t0_, d, s

    def model(q):
        norm, g0, t0_, d, s = unpack(q)
        dip = _binned(lambda x: two_sided_exp_irf(x - d, t0_, s), tau, bin_ps)
        return norm * (1.0 - (1.0 - g0) * dip)

    smin = float(np.min(np.convolve(c, np.ones(3) / 3, mode="same")[1:-1]))
    g_start = float(np.clip(smin / norm0, 0.0, 0.95))
    p0 = ([] if by_rates else [norm0]) + [g_start, t0, d0] + ([] if fix_sig else [s0])
    lower = ([] if by_rates else [0.0]) + [0.0, 0.1 * bin_ps, tau[0], ] + \
        ([] if fix_sig else [1.0])
    upper = ([] if by_rates else [np.inf]) + [5.0, span, tau[-1]] + \
        ([] if fix_sig else [0.25 * span])
    res, cov, chi2_red, m = _poisson_refit(model, p0, lower, upper, c)
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    q = res.x
    i = 0 if by_rates else 1
    norm, g0, t0_, d, s = unpack(q)
    return CwG2Fit(
        g2_0=float(g0), g2_0_err=float(err[i]), tau0_ns=float(t0_) / 1e3,
        tau0_ns_err=float(err[i + 1]) / 1e3, delay_ps=float(d), delay_ps_err=float(err[i + 2]),
        irf_sigma_ps=float(s), irf_sigma_ps_err=0.0 if fix_sig else float(err[i + 3]),
        norm_counts_per_bin=float(norm), norm_counts_per_bin_err=0.0 if by_rates
        else float(err[0]), normalisation="rates" if by_rates else "fit",
        g2_tau=c / norm, model=m, chi2_red=chi2_red,
    )
