"""PL decay histograms and lifetime fits for pulsed excitation.

* :func:`decay_histogram` — the delay of every photon after the preceding laser sync pulse,
  histogrammed over one repetition period.
* :func:`fit_decay` — mono- or bi-exponential decay convolved with a Gaussian
  instrument response (IRF), for a periodic pulse train.

The time-resolved PL procedure (:mod:`micropl.acquisition.procedures.trpl`) uses both.

Model
-----
For one component of lifetime τ, IRF standard deviation σ and arrival time ``t0`` of the
pulse (all in ns), the response to a single pulse is

``h(u) = ½·exp(σ²/(2τ²) − u/τ)·erfc((σ²/τ − u)/(√2·σ))``,  ``u = t − t0``,

i.e. ``exp(−u/τ)·Θ(u)`` convolved with a unit-area Gaussian, which tends to ``exp(−u/τ)``
once ``u ≫ σ``. It is evaluated in a form that neither overflows nor underflows (with
``erfcx`` where the exponent is large). With a pulse every period ``T``, the delay histogram
also holds the tails of all earlier pulses and the rising edge of the next one:

``f(t) = h(u − T) + h(u) + h(u + T) + exp(σ²/(2τ²) − (u + 2T)/τ) / (1 − exp(−T/τ))``,

where the last term is the exact geometric sum of the pulses two or more periods back
(for which the Gaussian is entirely in the past). So lifetimes comparable to the period are
fitted without bias. The expected counts per bin are
``μ(t) = Σ_j A_j·f(t; τ_j) + background``, evaluated at the bin centres (the bin integral
of an exponential is proportional to its value at the centre, so no lifetime bias arises).

Fitting is Poisson maximum likelihood: a bounded trust-region least-squares minimisation
of the signed deviance residuals (their sum of squares is the Poisson deviance, minimal at
the maximum-likelihood estimate), so empty and low-count bins are handled correctly. The 1σ errors are the square roots of the diagonal of
the inverse Fisher information ``(Jᵀ·diag(1/μ)·J)⁻¹``, multiplied by
``sqrt(max(1, χ²_red))`` with Pearson's reduced χ² (≈1 for pure Poisson data).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from micropl.errors import AnalysisInputError

__all__ = [
    "LifetimeFit",
    "decay_histogram",
    "decay_model",
    "fit_decay",
]

log = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class LifetimeFit:
    """Result of a decay fit. Errors are 1σ; components are sorted by lifetime.

    Attributes
    ----------
    tau_ns, tau_err_ns : ndarray, shape (n_components,)
        Lifetimes in ns.
    amplitude, amplitude_err : ndarray, shape (n_components,)
        Counts per bin of each component extrapolated to ``t0`` (un-convolved decay).
    intensity_fraction : ndarray, shape (n_components,)
        ``A_j·τ_j / Σ A·τ``: share of the photons from each component.
    t0_ps, t0_err_ps : float
        Arrival time of the excitation pulse after the sync, in ps.
    irf_sigma_ps, irf_sigma_err_ps : float
        Gaussian IRF standard deviation in ps (error ``nan`` when it was held fixed).
    irf_fixed : bool
        True when the IRF width was given, not fitted.
    background, background_err : float
        Constant background in counts per bin.
    red_chi2 : float
        Pearson's reduced χ².
    dof : int
        Degrees of freedom (bins minus free parameters).
    period_ps : float
        Repetition period used by the model, in ps.
    t_ps : ndarray, shape (n_bins,)
        Bin centres used by the fit.
    model_counts : ndarray, shape (n_bins,)
        Best-fit expected counts per bin.
    success : bool
        True when the fit converged, the covariance is finite and no lifetime or amplitude
        sits on a bound.
    reason : str
        ``"ok"`` or why the fit is not trusted.
    """

    tau_ns: np.ndarray
    tau_err_ns: np.ndarray
    amplitude: np.ndarray
    amplitude_err: np.ndarray
    intensity_fraction: np.ndarray
    t0_ps: float
    t0_err_ps: float
    irf_sigma_ps: float
    irf_sigma_err_ps: float
    irf_fixed: bool
    background: float
    background_err: float
    red_chi2: float
    dof: int
    period_ps: float
    t_ps: np.ndarray
    model_counts: np.ndarray
    success: bool
    reason: str

    @property
    def n_components(self) -> int:
        """Number of exponential components."""
        return int(self.tau_ns.size)

    @property
    def mean_tau_ns(self) -> float:
        """Intensity-weighted mean lifetime ``Σ A·τ² / Σ A·τ`` in ns."""
        w = self.amplitude * self.tau_ns
        return float(np.sum(w * self.tau_ns) / np.sum(w)) if np.sum(w) > 0 else float("nan")


# --------------------------------------------------------------------------- histogram
def decay_histogram(t_sync_ps: np.ndarray, t_photon_ps: np.ndarray, bin_ps: float,
                    period_ps: float, *,
                    pulses_per_sync: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of photon delays after the preceding sync pulse.

    Parameters
    ----------
    t_sync_ps : ndarray of int64, shape (n_sync,)
        Sync (laser pulse) times in ps, sorted ascending.
    t_photon_ps : ndarray of int64, shape (n_photons,)
        Photon arrival times in ps, sorted ascending, same time base.
    bin_ps : float
        Bin width in ps.
    period_ps : float
        Repetition period in ps. The histogram covers ``[0, n_bins·bin_ps)`` with
        ``n_bins = floor(period_ps / bin_ps)``; delays beyond it (a remainder of less than a
        bin, or a missing sync pulse) and photons before the first sync are not counted.
    pulses_per_sync : int
        Laser pulses per sync tag (the tagger's sync divider; a HydraHarp-like input
        divides a 10 MHz sync by 16). Pulses follow each sync at whole periods, so the
        delay after the preceding *pulse* is the sync delay modulo ``period_ps``; delays
        of ``pulses_per_sync·period_ps`` or more (a missing sync tag) are not counted.

    Returns
    -------
    t_ps : ndarray of float, shape (n_bins,)
        Bin centres in ps.
    counts : ndarray of int64, shape (n_bins,)
        Photons per bin.

    Raises
    ------
    AnalysisInputError
        Unsorted inputs, no sync pulses, non-positive ``bin_ps``/``period_ps``, or a
        ``pulses_per_sync`` that is not a whole number >= 1.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.lifetime import decay_histogram
    >>> sync = np.arange(4) * 12_500
    >>> photons = sync[[0, 1, 3]] + np.array([100, 600, 3000])
    >>> t, counts = decay_histogram(sync, photons, 500.0, 12_500.0)
    >>> t[:3].tolist(), counts[:7].tolist()
    ([250.0, 750.0, 1250.0], [1, 1, 0, 0, 0, 0, 1])
    """
    sync = np.asarray(t_sync_ps, dtype=np.int64)
    phot = np.asarray(t_photon_ps, dtype=np.int64)
    if sync.ndim != 1 or phot.ndim != 1:
        raise AnalysisInputError("time tags must be 1D arrays")
    if not (bin_ps > 0 and period_ps > 0):
        raise AnalysisInputError(f"bin_ps and period_ps must be > 0, got {bin_ps}, {period_ps}")
    n_bins = int(period_ps // bin_ps)
    if n_bins < 1:
        raise AnalysisInputError(f"bin_ps {bin_ps} is longer than the period {period_ps} ps")
    if isinstance(pulses_per_sync, bool) or int(pulses_per_sync) != pulses_per_sync \
            or pulses_per_sync < 1:
        raise AnalysisInputError(f"pulses_per_sync must be a whole number >= 1, got "
                                 f"{pulses_per_sync}")
    if sync.size == 0:
        raise AnalysisInputError("no sync pulses: a decay histogram needs the laser sync")
    if np.any(np.diff(sync) < 0) or np.any(np.diff(phot) < 0):
        raise AnalysisInputError("time tags must be sorted ascending")
    idx = np.searchsorted(sync, phot, side="right") - 1
    valid = idx >= 0
    delay = phot[valid] - sync[idx[valid]]
    if pulses_per_sync > 1:
        delay = delay[delay < int(pulses_per_sync) * float(period_ps)] % float(period_ps)
    k = np.floor(delay / float(bin_ps)).astype(np.int64)
    k = k[(k >= 0) & (k < n_bins)]
    counts = np.bincount(k, minlength=n_bins).astype(np.int64)
    t_ps = (np.arange(n_bins) + 0.5) * float(bin_ps)
    return t_ps, counts


# --------------------------------------------------------------------------- model
def _exp_gauss(u_ns: np.ndarray, tau_ns: float, sigma_ns: float) -> np.ndarray:
    """``exp(−u/τ)Θ(u)`` convolved with a unit-area Gaussian of σ, overflow-safe."""
    u = np.asarray(u_ns, dtype=float)
    z = (sigma_ns * sigma_ns / tau_ns - u) / (_SQRT2 * sigma_ns)
    out = np.empty_like(u)
    pos = z > 0
    # z > 0: exponent combines to −u²/(2σ²); erfcx(z) = exp(z²)·erfc(z) is bounded
    out[pos] = 0.5 * np.exp(-0.5 * (u[pos] / sigma_ns) ** 2) * special.erfcx(z[pos])
    neg = ~pos
    out[neg] = 0.5 * np.exp(0.5 * (sigma_ns / tau_ns) ** 2 - u[neg] / tau_ns) * special.erfc(
        z[neg])
    return out


def decay_model(t_ps: np.ndarray, tau_ns, amplitude, t0_ps: float, irf_sigma_ps: float,
                background: float, period_ps: float) -> np.ndarray:
    """Expected counts per bin of a periodic multi-exponential decay with Gaussian IRF.

    Parameters
    ----------
    t_ps : ndarray, shape (n_bins,)
        Delay after the sync in ps (bin centres).
    tau_ns, amplitude : float or array_like, shape (n_components,)
        Lifetimes in ns and amplitudes in counts per bin (see :class:`LifetimeFit`).
    t0_ps : float
        Pulse arrival time after the sync in ps.
    irf_sigma_ps : float
        Gaussian IRF standard deviation in ps.
    background : float
        Constant background in counts per bin.
    period_ps : float
        Repetition period in ps.

    Returns
    -------
    ndarray, shape (n_bins,)
        Expected counts per bin.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.lifetime import decay_model
    >>> t = np.arange(0.0, 12500.0, 2500.0)
    >>> decay_model(t, 1.0, 1000.0, 0.0, 1e-3, 0.0, 12500.0).round(1).tolist()
    [500.0, 82.1, 6.7, 0.6, 0.0]
    """
    t_ns = np.asarray(t_ps, dtype=float) * 1e-3
    return _model_ns(t_ns, np.atleast_1d(np.asarray(tau_ns, float)),
                     np.atleast_1d(np.asarray(amplitude, float)), t0_ps * 1e-3,
                     irf_sigma_ps * 1e-3, background, period_ps * 1e-3)


def _model_ns(t_ns, taus, amps, t0, sigma, bg, period):
    u = t_ns - t0
    mu = np.full(t_ns.shape, float(bg))
    for tau, amp in zip(taus, amps):
        f = _exp_gauss(u, tau, sigma) + _exp_gauss(u + period, tau, sigma)
        f += _exp_gauss(u - period, tau, sigma)
        expo = 0.5 * (sigma / tau) ** 2 - (u + 2.0 * period) / tau
        f += np.exp(np.minimum(expo, 700.0)) / (-np.expm1(-period / tau))
        mu += amp * f
    return mu


# --------------------------------------------------------------------------- fitting
def _initial_guess(t_ns, counts, bin_ns, period_ns, sigma_fixed):
    c = counts.astype(float)
    k = max(1, int(round(0.2 / bin_ns)))
    smooth = np.convolve(c, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    bg0 = float(np.percentile(smooth, 5))
    ip = int(np.argmax(smooth))
    peak = float(smooth[ip]) - bg0
    if not peak > 0:
        raise AnalysisInputError("decay histogram has no peak above its background")
    # rising edge: last bin before the peak below half height
    below = np.flatnonzero(smooth[:ip] - bg0 < 0.5 * peak)
    rise_ns = (ip - below[-1]) * bin_ns if below.size else 2 * bin_ns
    sigma0 = sigma_fixed if sigma_fixed is not None else float(
        np.clip(rise_ns / 1.2, bin_ns, 0.1 * period_ns))
    # lifetime: area over height after the peak (wrapping around the period)
    tail = np.roll(c - bg0, -ip)
    tau0 = float(np.clip(np.sum(np.clip(tail, 0, None)) * bin_ns / peak, 2 * bin_ns,
                         5 * period_ns))
    t0 = float(t_ns[ip]) - min(sigma0, 0.5 * tau0)
    return peak, tau0, t0, sigma0, max(bg0, 1e-3)


def _pack(n_comp, amps, taus, t0, sigma, bg, fit_sigma):
    theta = []
    for a, tau in zip(amps, taus):
        theta += [a, tau]
    theta.append(t0)
    if fit_sigma:
        theta.append(sigma)
    theta.append(bg)
    return np.array(theta, float)


def _unpack(theta, n_comp, fit_sigma, sigma_fixed):
    amps = theta[0:2 * n_comp:2]
    taus = theta[1:2 * n_comp:2]
    t0 = theta[2 * n_comp]
    sigma = theta[2 * n_comp + 1] if fit_sigma else sigma_fixed
    bg = theta[-1]
    return amps, taus, t0, sigma, bg


def _deviance_residuals(counts: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Signed Poisson deviance residuals; their sum of squares is the deviance."""
    mu = np.maximum(mu, 1e-300)
    pos = counts > 0
    term = mu.copy()  # n = 0: n·ln(n/μ) − (n − μ) = μ
    n_pos = counts[pos]
    x = (mu[pos] - n_pos) / n_pos
    term[pos] = n_pos * (x - np.log1p(x))  # = n·ln(n/μ) − (n − μ), without cancellation
    return np.sign(counts - mu) * np.sqrt(2.0 * np.maximum(term, 0.0))


def _poisson_fit(t_ns, counts, theta0, lo, hi, n_comp, fit_sigma, sigma_fixed, period_ns):
    """Poisson MLE: least squares on the deviance residuals (minimum deviance = MLE)."""
    def mu_of(theta):
        amps, taus, t0, sigma, bg = _unpack(theta, n_comp, fit_sigma, sigma_fixed)
        return _model_ns(t_ns, taus, amps, t0, sigma, bg, period_ns)

    theta = np.clip(theta0, lo + 1e-12 * np.abs(lo), hi)
    res = optimize.least_squares(lambda th: _deviance_residuals(counts, mu_of(th)), theta,
                                 bounds=(lo, hi), x_scale="jac", method="trf",
                                 xtol=1e-10, ftol=1e-10, max_nfev=1000)
    mu = np.maximum(mu_of(res.x), 1e-300)
    nll = float(np.sum(mu - counts * np.log(mu)))
    return res.x, res, nll, mu_of


def _fisher_cov(theta, mu_of, lo, hi):
    """Inverse Fisher information with a central-difference Jacobian of μ."""
    n_par = theta.size
    mu = np.maximum(mu_of(theta), 1e-12)
    jac = np.empty((mu.size, n_par))
    for j in range(n_par):
        h = 1e-6 * max(abs(theta[j]), 1e-3)
        tp, tm = theta.copy(), theta.copy()
        tp[j] = min(theta[j] + h, hi[j])
        tm[j] = max(theta[j] - h, lo[j])
        jac[:, j] = (mu_of(tp) - mu_of(tm)) / (tp[j] - tm[j])
    fisher = jac.T @ (jac / mu[:, None])
    try:
        return np.linalg.inv(fisher)
    except np.linalg.LinAlgError:
        return np.full((n_par, n_par), np.nan)


def fit_decay(t_ps: np.ndarray, counts: np.ndarray, period_ps: float, *,
              n_components: int = 1, irf_sigma_ps: float | None = None,
              fit_range_ps: tuple[float, float] | None = None,
              tau_guess_ns: tuple[float, ...] | None = None) -> LifetimeFit:
    """Fit a periodic mono- or bi-exponential decay with a Gaussian IRF.

    Parameters
    ----------
    t_ps : ndarray, shape (n_bins,)
        Bin centres in ps (delay after the sync), equally spaced, as from
        :func:`decay_histogram`.
    counts : ndarray, shape (n_bins,)
        Photons per bin (raw counts).
    period_ps : float
        Repetition period in ps (100 000 ps at 10 MHz).
    n_components : {1, 2}
        Number of exponential components.
    irf_sigma_ps : float, optional
        Hold the Gaussian IRF σ fixed at this value (ps); fitted when None.
    fit_range_ps : (float, float), optional
        Only bins with centres in ``[lo, hi]`` enter the fit (the model still includes the
        wrap-around of earlier pulses).
    tau_guess_ns : tuple of float, optional
        Starting lifetimes; by default estimated from the data (and, for two components,
        several starts around the mono-exponential result, keeping the best likelihood).

    Returns
    -------
    LifetimeFit
        Lifetimes with 1σ errors, amplitudes, IRF σ, t0, background, χ², success, reason.

    Raises
    ------
    AnalysisInputError
        Shapes differ, too few bins, negative or non-finite counts, no photons, or a
        component count other than 1 or 2.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.lifetime import decay_model, fit_decay
    >>> t = np.arange(0.0, 12500.0, 50.0)
    >>> mean = decay_model(t, 1.5, 2e4, 2000.0, 80.0, 2.0, 12500.0)
    >>> counts = np.random.default_rng(0).poisson(mean).astype(float)
    >>> fit = fit_decay(t, counts, 12500.0)
    >>> round(float(fit.tau_ns[0]), 1), round(fit.t0_ps, -1)
    (1.5, 2000.0)
    """
    t = np.asarray(t_ps, dtype=float)
    n = np.asarray(counts, dtype=float)
    if t.ndim != 1 or t.shape != n.shape:
        raise AnalysisInputError(f"t_ps and counts must be 1D of equal length, got {t.shape}, "
                                 f"{n.shape}")
    if n_components not in (1, 2):
        raise AnalysisInputError(f"n_components must be 1 or 2, got {n_components}")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(t))) or np.any(n < 0):
        raise AnalysisInputError("counts must be finite and non-negative")
    if not period_ps > 0:
        raise AnalysisInputError(f"period_ps must be > 0, got {period_ps}")
    if irf_sigma_ps is not None and not irf_sigma_ps > 0:
        raise AnalysisInputError(f"irf_sigma_ps must be > 0, got {irf_sigma_ps}")
    if t.size < 3:
        raise AnalysisInputError("decay histogram has fewer than 3 bins")
    bin_ns = float(np.median(np.diff(t))) * 1e-3
    if not bin_ns > 0:
        raise AnalysisInputError("t_ps must be ascending")
    if fit_range_ps is not None:
        sel = (t >= fit_range_ps[0]) & (t <= fit_range_ps[1])
        t, n = t[sel], n[sel]
    n_par = 2 * n_components + 2 + (irf_sigma_ps is None)
    if t.size <= n_par + 1:
        raise AnalysisInputError(f"only {t.size} bins in the fit range for {n_par} parameters")
    if n.sum() <= 0:
        raise AnalysisInputError("decay histogram is empty")
    t_ns = t * 1e-3
    period_ns = period_ps * 1e-3
    fit_sigma = irf_sigma_ps is None
    sigma_fixed = None if fit_sigma else irf_sigma_ps * 1e-3
    amp0, tau0, t00, sigma0, bg0 = _initial_guess(t_ns, n, bin_ns, period_ns, sigma_fixed)

    tau_lo, tau_hi = 0.05 * bin_ns, 50.0 * period_ns
    lo_c, hi_c = [], []
    for _ in range(n_components):
        lo_c += [0.0, tau_lo]
        hi_c += [np.inf, tau_hi]
    lo = lo_c + [float(t_ns.min()) - 0.5 * period_ns]
    hi = hi_c + [float(t_ns.max())]
    if fit_sigma:
        lo.append(0.02 * bin_ns)
        hi.append(0.25 * period_ns)
    lo.append(0.0)
    hi.append(np.inf)
    lo, hi = np.array(lo), np.array(hi)

    if n_components == 1:
        taus_list = [(tau_guess_ns[0],)] if tau_guess_ns else [(tau0,)]
        amps_list = [(amp0,)]
    else:
        if tau_guess_ns:
            taus_list = [tuple(tau_guess_ns)]
        else:
            mono = fit_decay(t, n, period_ps, n_components=1, irf_sigma_ps=irf_sigma_ps)
            tm = float(mono.tau_ns[0]) if np.isfinite(mono.tau_ns[0]) else tau0
            taus_list = [(tm / 4, tm * 1.5), (tm / 2, tm * 1.2), (tm / 10, tm * 1.1)]
        amps_list = [(0.5 * amp0, 0.5 * amp0)] * len(taus_list)

    best = None
    for taus, amps in zip(taus_list, amps_list):
        theta0 = _pack(n_components, amps, taus, t00, sigma0, bg0, fit_sigma)
        theta, res, nll, mu_of = _poisson_fit(t_ns, n, theta0, lo, hi, n_components, fit_sigma,
                                           sigma_fixed, period_ns)
        if best is None or nll < best[2]:
            best = (theta, res, nll, mu_of)
    theta, res, nll, mu_of = best

    cov = _fisher_cov(theta, mu_of, lo, hi)
    amps, taus, t0, sigma, bg = _unpack(theta, n_components, fit_sigma, sigma_fixed)
    mu = decay_model(t, taus, amps, t0 * 1e3, sigma * 1e3, bg, period_ps)
    dof = int(t.size - theta.size)
    red = float(np.sum((n - mu) ** 2 / np.maximum(mu, 1e-12)) / dof)
    cov = cov * max(1.0, red)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.diag(cov))
    e_amps, e_taus, e_t0, e_sigma, e_bg = _unpack(err, n_components, fit_sigma, np.nan)
    order = np.argsort(taus)
    amps, taus = np.asarray(amps)[order], np.asarray(taus)[order]
    e_amps, e_taus = np.asarray(e_amps)[order], np.asarray(e_taus)[order]
    weight = amps * taus
    frac = weight / weight.sum() if weight.sum() > 0 else np.full(n_components, np.nan)

    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    on_bound = (np.abs(theta - lo) <= 1e-6 * span) | (np.abs(theta - hi) <= 1e-6 * span)
    reason = "ok"
    if not res.success:
        reason = f"optimiser did not converge: {res.message}"
    elif not np.all(np.isfinite(err)):
        reason = "covariance not finite (parameters not constrained by the data)"
    elif np.any(on_bound[: 2 * n_components]):
        reason = "a lifetime or amplitude is at its bound"
    elif np.any(amps < 2 * e_amps):
        reason = "a component amplitude is not significant (< 2σ)"
    if reason != "ok":
        log.debug("fit_decay: %s", reason)
    return LifetimeFit(
        tau_ns=taus, tau_err_ns=e_taus, amplitude=amps, amplitude_err=e_amps,
        intensity_fraction=frac, t0_ps=float(t0) * 1e3, t0_err_ps=float(e_t0) * 1e3,
        irf_sigma_ps=float(sigma) * 1e3,
        irf_sigma_err_ps=float(e_sigma) * 1e3 if fit_sigma else float("nan"),
        irf_fixed=not fit_sigma, background=float(bg), background_err=float(e_bg),
        red_chi2=red, dof=dof, period_ps=float(period_ps), t_ps=t, model_counts=mu,
        success=reason == "ok", reason=reason)

