"""Blinking analysis: intensity traces, on/off levels and durations, and FLID.

* :func:`intensity_trace` — photons per time bin (typically 1–10 ms).
* :func:`intensity_histogram` — how often each count value occurs.
* :func:`two_level_threshold` — automatic on/off threshold from a two-level Poisson mixture
  fitted to the trace by expectation–maximisation.
* :func:`on_off_durations` — lengths of the on and off periods.
* :func:`fit_durations` — exponential or power-law maximum-likelihood fit of those lengths.
* :func:`flid` — fluorescence lifetime–intensity distribution: per time bin, the photon
  count and the mean delay after the laser sync, histogrammed in 2D.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special

from micropl.errors import AnalysisInputError

__all__ = [
    "DurationFit",
    "FlidResult",
    "TwoLevelFit",
    "delays_after_sync_ps",
    "fit_durations",
    "flid",
    "intensity_histogram",
    "intensity_trace",
    "on_off_durations",
    "two_level_threshold",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class TwoLevelFit:
    """Two-level Poisson mixture fitted to an intensity trace.

    Attributes
    ----------
    threshold_counts : float
        Counts per bin at which both levels are equally probable; a bin is "on" when its
        count is strictly above it.
    off_level_counts, on_level_counts : float
        Mean counts per bin of the off and on levels.
    on_fraction : float
        Mixture weight of the on level (fraction of time bins).
    n_iter : int
        EM iterations.
    success : bool
        True when EM converged to two separated levels.
    reason : str
        ``"ok"`` or why the threshold should not be trusted.
    """

    threshold_counts: float
    off_level_counts: float
    on_level_counts: float
    on_fraction: float
    n_iter: int
    success: bool
    reason: str


@dataclass(frozen=True)
class DurationFit:
    """Maximum-likelihood fit of on or off durations.

    Attributes
    ----------
    model : str
        ``"exponential"`` or ``"power_law"``.
    tau_s, tau_err_s : float
        Exponential mean duration in s (``nan`` for a power law).
    alpha, alpha_err : float
        Power-law exponent of ``P(t) ∝ t^−α`` (``nan`` for an exponential).
    t_min_s : float
        Shortest duration included in the fit, s.
    n_used : int
        Durations used.
    success : bool
        True when the fit converged with a finite error.
    reason : str
        ``"ok"`` or why not.
    """

    model: str
    tau_s: float
    tau_err_s: float
    alpha: float
    alpha_err: float
    t_min_s: float
    n_used: int
    success: bool
    reason: str


@dataclass(frozen=True)
class FlidResult:
    """Fluorescence lifetime–intensity distribution.

    Attributes
    ----------
    t_s : ndarray, shape (n_time,)
        Time-bin centres in s.
    counts : ndarray of int64, shape (n_time,)
        Photons per time bin.
    mean_delay_ns : ndarray, shape (n_time,)
        Mean over the photons of each bin of the delay after ``t0``, taken in
        ``[−0.05·period, 0.95·period)``, in ns (``nan`` for empty bins). For a single exponential well inside the period and a negligible
        background it approaches the lifetime (a lifetime proxy).
    intensity_edges_counts : ndarray, shape (n_intensity + 1,)
        Bin edges of the intensity axis, counts per time bin.
    delay_edges_ns : ndarray, shape (n_delay + 1,)
        Bin edges of the lifetime axis, ns.
    histogram : ndarray of int64, shape (n_intensity, n_delay)
        Number of time bins in each (intensity, mean delay) cell.
    t0_ps : float
        Delay origin used, ps.
    bin_s : float
        Time-bin width in s.
    """

    t_s: np.ndarray
    counts: np.ndarray
    mean_delay_ns: np.ndarray
    intensity_edges_counts: np.ndarray
    delay_edges_ns: np.ndarray
    histogram: np.ndarray
    t0_ps: float
    bin_s: float


# --------------------------------------------------------------------------- traces
def _time_range(t: np.ndarray, t_start_ps, t_stop_ps) -> tuple[int, int]:
    start = int(t[0]) if t_start_ps is None else int(t_start_ps)
    stop = int(t[-1]) + 1 if t_stop_ps is None else int(t_stop_ps)
    return start, stop


def intensity_trace(t_ps: np.ndarray, bin_s: float, t_start_ps: int | None = None,
                    t_stop_ps: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Photons per time bin.

    Parameters
    ----------
    t_ps : ndarray of int64, shape (n_photons,)
        Photon arrival times in ps, sorted ascending (all detectors merged, or one).
    bin_s : float
        Bin width in s (typically 1e-3 to 1e-2).
    t_start_ps, t_stop_ps : int, optional
        Interval ``[t_start_ps, t_stop_ps)`` to bin; defaults to the first photon and one ps
        after the last. Only whole bins are returned: a partial last bin is dropped.

    Returns
    -------
    t_s : ndarray of float, shape (n_bins,)
        Bin centres in s on the tagger's time base.
    counts : ndarray of int64, shape (n_bins,)
        Photons per bin.

    Raises
    ------
    AnalysisInputError
        No photons and no interval given, unsorted times, non-positive ``bin_s``, or an
        interval shorter than one bin.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import intensity_trace
    >>> t_s, counts = intensity_trace(np.array([0, 5, 12, 13, 14, 31]) * 10**9, 0.01)  # 10 ms bins
    >>> t_s.round(3).tolist(), counts.tolist()
    ([0.005, 0.015, 0.025], [2, 3, 0])
    """
    t = np.asarray(t_ps, dtype=np.int64)
    if t.ndim != 1:
        raise AnalysisInputError("t_ps must be a 1D array")
    if not bin_s > 0:
        raise AnalysisInputError(f"bin_s must be > 0, got {bin_s}")
    if t.size == 0 and (t_start_ps is None or t_stop_ps is None):
        raise AnalysisInputError("no photons: give t_start_ps and t_stop_ps for an empty trace")
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise AnalysisInputError("t_ps must be sorted ascending")
    start, stop = _time_range(t, t_start_ps, t_stop_ps)
    bin_ps = bin_s * 1e12
    n_bins = int((stop - start) // bin_ps)
    if n_bins < 1:
        raise AnalysisInputError(
            f"interval of {(stop - start) * 1e-12:.3g} s is shorter than one {bin_s} s bin")
    lo = np.searchsorted(t, start, side="left")
    hi = np.searchsorted(t, start + n_bins * bin_ps, side="left")
    idx = np.floor((t[lo:hi] - start) / bin_ps).astype(np.int64)
    idx = np.clip(idx, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins).astype(np.int64)
    t_s = (start + (np.arange(n_bins) + 0.5) * bin_ps) * 1e-12
    return t_s, counts


def intensity_histogram(counts: np.ndarray, bin_counts: int = 1) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """Histogram of an intensity trace.

    Parameters
    ----------
    counts : ndarray of int, shape (n_bins,)
        Photons per time bin.
    bin_counts : int
        Width of a histogram bin in counts.

    Returns
    -------
    counts_centre : ndarray of float, shape (n_levels,)
        Centre of each histogram bin, in counts per time bin.
    occurrences : ndarray of int64, shape (n_levels,)
        Number of time bins in each histogram bin.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import intensity_histogram
    >>> values, n_bins = intensity_histogram(np.array([0, 1, 1, 3, 3, 3]))
    >>> values.tolist(), n_bins.tolist()
    ([0.0, 1.0, 2.0, 3.0], [1, 2, 0, 3])
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0 or np.any(c < 0):
        raise AnalysisInputError("counts must be a non-empty 1D array of non-negative values")
    if bin_counts < 1:
        raise AnalysisInputError(f"bin_counts must be >= 1, got {bin_counts}")
    k = np.floor(c / bin_counts).astype(np.int64)
    occ = np.bincount(k).astype(np.int64)
    centre = (np.arange(occ.size) + 0.5) * bin_counts - 0.5
    return centre, occ


def two_level_threshold(counts: np.ndarray, *, max_iter: int = 500,
                        tol: float = 1e-10) -> TwoLevelFit:
    """On/off threshold from a two-level Poisson mixture (expectation–maximisation).

    The trace is modelled as a mixture ``w·Pois(λ_on) + (1−w)·Pois(λ_off)``. EM starts from
    the 10th and 90th percentiles and works on the histogram of count values, so its cost
    does not grow with the trace length. The threshold is where the two weighted
    components are equal, ``k* = (λ_on − λ_off + ln((1−w)/w)) / ln(λ_on/λ_off)``.
    Real "on" levels are often broader than Poisson (flickering, grey states): the levels
    are then only approximate, but the threshold still separates them while they are
    well apart.

    Parameters
    ----------
    counts : ndarray of int, shape (n_bins,)
        Photons per time bin.
    max_iter : int
        EM iteration limit.
    tol : float
        Convergence tolerance on the mean log-likelihood per bin.

    Returns
    -------
    TwoLevelFit
        Threshold and levels in counts per bin. ``success`` is False (with a reason) when
        EM did not converge, a level holds fewer than 1 % of the bins, or the levels are
        closer than 3 combined standard deviations.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import two_level_threshold
    >>> rng = np.random.default_rng(0)
    >>> on = rng.random(5000) < 0.6
    >>> counts = np.where(on, rng.poisson(40.0, 5000), rng.poisson(5.0, 5000))
    >>> fit = two_level_threshold(counts)
    >>> bool(fit.success), round(fit.off_level_counts), round(fit.on_level_counts), round(fit.on_fraction, 2)
    (True, 5, 40, 0.6)
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size < 10:
        raise AnalysisInputError("need an intensity trace of at least 10 bins")
    if np.any(c < 0) or not np.all(np.isfinite(c)):
        raise AnalysisInputError("counts must be finite and non-negative")
    c = np.round(c).astype(np.int64)
    occ = np.bincount(c)
    k = np.flatnonzero(occ)
    m = occ[k].astype(float)
    lf = special.gammaln(k + 1.0)
    lam_off = max(float(np.percentile(c, 10)), 0.05)
    lam_on = max(float(np.percentile(c, 90)), lam_off + 1.0)
    w = 0.5
    prev = -np.inf
    it = 0
    converged = False
    for it in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        l_on = math.log(w) + k * math.log(lam_on) - lam_on - lf
        l_off = math.log(1 - w) + k * math.log(lam_off) - lam_off - lf
        top = np.maximum(l_on, l_off)
        log_norm = top + np.log(np.exp(l_on - top) + np.exp(l_off - top))
        ll = float(np.sum(m * log_norm) / m.sum())
        r = np.exp(l_on - log_norm)  # responsibility of "on" per count value
        n_on = float(np.sum(m * r))
        n_off = float(np.sum(m * (1 - r)))
        w = min(max(n_on / m.sum(), 1e-12), 1 - 1e-12)
        lam_on = max(float(np.sum(m * r * k)) / max(n_on, 1e-300), 1e-9)
        lam_off = max(float(np.sum(m * (1 - r) * k)) / max(n_off, 1e-300), 1e-9)
        if abs(ll - prev) < tol:
            converged = True
            break
        prev = ll
    if lam_on < lam_off:
        lam_on, lam_off, w = lam_off, lam_on, 1 - w
    if lam_on > lam_off:
        thr = (lam_on - lam_off + math.log((1 - w) / w)) / math.log(lam_on / lam_off)
    else:
        thr = float("nan")
    reason = "ok"
    if not converged:
        reason = "EM did not converge"
    elif min(w, 1 - w) < 0.01:
        reason = f"one level holds only {100 * min(w, 1 - w):.2g} % of the bins"
    elif lam_on - lam_off < 3 * math.sqrt(lam_on + lam_off):
        reason = (f"levels not separated: {lam_off:.3g} and {lam_on:.3g} counts per bin "
                  "(bin longer, or no blinking)")
    return TwoLevelFit(threshold_counts=float(thr), off_level_counts=float(lam_off),
                       on_level_counts=float(lam_on), on_fraction=float(w), n_iter=it,
                       success=reason == "ok", reason=reason)


def on_off_durations(trace: tuple[np.ndarray, np.ndarray],
                     threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Durations of the on and off periods of an intensity trace.

    A bin is on when its count is strictly above ``threshold``. Consecutive bins of the
    same state form one period. The first and the last period are truncated by the start
    and end of the recording, so they are NOT returned (their true lengths are unknown).

    Parameters
    ----------
    trace : (t_s, counts)
        As returned by :func:`intensity_trace`: bin centres in s (equally spaced, at least
        two bins) and photons per bin.
    threshold : float
        Counts per bin (e.g. ``two_level_threshold(counts).threshold_counts``).

    Returns
    -------
    on_s : ndarray of float, shape (n_on,)
        Durations of complete on periods in s (multiples of the bin width).
    off_s : ndarray of float, shape (n_off,)
        Durations of complete off periods in s.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import on_off_durations
    >>> t_s = np.arange(10) * 0.01
    >>> counts = np.array([9, 9, 1, 1, 1, 9, 1, 9, 9, 9])
    >>> on_s, off_s = on_off_durations((t_s, counts), threshold=5.0)
    >>> on_s.round(3).tolist(), off_s.round(3).tolist()           # the first and last periods are cut
    ([0.01], [0.03, 0.01])
    """
    try:
        t_s, counts = trace
    except (TypeError, ValueError) as exc:
        raise AnalysisInputError("trace must be the (t_s, counts) pair of intensity_trace") \
            from exc
    t_s = np.asarray(t_s, dtype=float)
    counts = np.asarray(counts)
    if t_s.shape != counts.shape or t_s.ndim != 1 or t_s.size < 2:
        raise AnalysisInputError("trace needs t_s and counts of equal length (>= 2 bins)")
    if not np.isfinite(threshold):
        raise AnalysisInputError(f"threshold must be finite, got {threshold}")
    bin_s = float(t_s[1] - t_s[0])
    if not bin_s > 0:
        raise AnalysisInputError("t_s must be ascending")
    state = counts > threshold
    change = np.flatnonzero(state[1:] != state[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [state.size]])
    lengths = (ends - starts)[1:-1]  # drop the truncated first and last periods
    run_state = state[starts][1:-1]
    return lengths[run_state] * bin_s, lengths[~run_state] * bin_s


def fit_durations(durations_s: np.ndarray, bin_s: float, *,
                  model: Literal["exponential", "power_law"] = "exponential",
                  t_min_s: float | None = None) -> DurationFit:
    """Maximum-likelihood fit of on or off durations (discrete, in units of the bin).

    Durations are ``k·bin_s`` with integer ``k >= k_min`` (``k_min`` from ``t_min_s``,
    default one bin). The exponential model is the geometric distribution
    ``P(k) ∝ exp(−k·bin_s/τ)``; its MLE is closed-form and the error follows from the
    variance of the mean. The power law is the discrete ``P(k) = k^−α / ζ(α, k_min)``; α is
    found by a bounded 1D maximisation and its error from the observed information
    (second derivative of the log-likelihood).

    Parameters
    ----------
    durations_s : ndarray, shape (n,)
        Durations in s, from :func:`on_off_durations`.
    bin_s : float
        Bin width of the trace in s.
    model : {"exponential", "power_law"}
        Distribution to fit.
    t_min_s : float, optional
        Shortest duration used, in s.

    Returns
    -------
    DurationFit
        ``tau_s`` or ``alpha`` with 1σ error.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import fit_durations
    >>> rng = np.random.default_rng(1)
    >>> k = rng.geometric(1.0 - np.exp(-0.01 / 0.05), 4000)      # τ = 50 ms in 10 ms bins
    >>> fit = fit_durations(k * 0.01, 0.01)
    >>> round(fit.tau_s, 3), fit.tau_err_s < 0.002
    (0.05, True)
    """
    d = np.asarray(durations_s, dtype=float)
    if not bin_s > 0:
        raise AnalysisInputError(f"bin_s must be > 0, got {bin_s}")
    if model not in ("exponential", "power_law"):
        raise AnalysisInputError(f"model must be 'exponential' or 'power_law', got {model!r}")
    k = np.round(d / bin_s).astype(np.int64)
    k_min = 1 if t_min_s is None else max(1, int(round(t_min_s / bin_s)))
    k = k[k >= k_min]
    n = int(k.size)
    nan = float("nan")
    if n < 5:
        return DurationFit(model, nan, nan, nan, nan, k_min * bin_s, n, False,
                           f"only {n} durations (need >= 5)")
    if model == "exponential":
        mean_k = float(np.mean(k - k_min + 1))
        if mean_k <= 1.0:
            return DurationFit(model, nan, nan, nan, nan, k_min * bin_s, n, False,
                               "all durations are one bin: lifetime below the bin width")
        q = 1.0 - 1.0 / mean_k
        tau = -bin_s / math.log(q)
        var_mean = q / (1 - q) ** 2 / n
        dtau_dm = bin_s / (q * math.log(q) ** 2) / mean_k**2
        return DurationFit(model, tau, abs(dtau_dm) * math.sqrt(var_mean), nan, nan,
                           k_min * bin_s, n, True, "ok")
    sum_log = float(np.sum(np.log(k)))

    def nll(alpha):
        return alpha * sum_log + n * math.log(special.zeta(alpha, k_min))

    res = optimize.minimize_scalar(nll, bounds=(1.0001, 8.0), method="bounded",
                                   options={"xatol": 1e-8})
    alpha = float(res.x)
    h = 1e-4
    curv = (nll(alpha + h) - 2 * nll(alpha) + nll(alpha - h)) / h**2 if alpha - h > 1 else nan
    err = 1.0 / math.sqrt(curv) if curv > 0 else nan
    on_bound = alpha < 1.001 or alpha > 7.99
    ok = bool(res.success) and math.isfinite(err) and not on_bound
    reason = "ok" if ok else ("alpha at its bound (1–8)" if on_bound else "fit failed")
    return DurationFit(model, nan, nan, alpha, err, k_min * bin_s, n, ok, reason)


# --------------------------------------------------------------------------- FLID
def delays_after_sync_ps(t_sync_ps: np.ndarray, t_photon_ps: np.ndarray) -> np.ndarray:
    """Delay of each photon after the preceding sync pulse.

    Parameters
    ----------
    t_sync_ps : ndarray of int64, shape (n_sync,)
        Sync times in ps, sorted.
    t_photon_ps : ndarray of int64, shape (n_photons,)
        Photon times in ps, sorted.

    Returns
    -------
    ndarray of int64, shape (n_photons,)
        Delay in ps, or −1 for photons before the first sync.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import delays_after_sync_ps
    >>> delays_after_sync_ps(np.array([0, 12500, 25000]), np.array([-5, 300, 12600, 30000])).tolist()
    [-1, 300, 100, 5000]
    """
    sync = np.asarray(t_sync_ps, dtype=np.int64)
    phot = np.asarray(t_photon_ps, dtype=np.int64)
    if sync.size == 0:
        raise AnalysisInputError("no sync pulses")
    if np.any(np.diff(sync) < 0) or np.any(np.diff(phot) < 0):
        raise AnalysisInputError("time tags must be sorted ascending")
    idx = np.searchsorted(sync, phot, side="right") - 1
    out = np.full(phot.shape, -1, dtype=np.int64)
    ok = idx >= 0
    out[ok] = phot[ok] - sync[idx[ok]]
    return out


def _rising_edge_ps(hist: np.ndarray, edges: np.ndarray) -> float:
    """Half-height crossing on the rising edge of a decay histogram, ps."""
    centres = 0.5 * (edges[1:] + edges[:-1])
    ip = int(np.argmax(hist))
    bg = float(np.median(hist))
    half = bg + 0.5 * (hist[ip] - bg)
    j = ip
    while j > 0 and hist[j - 1] >= half:
        j -= 1
    if j == 0:
        return float(centres[ip])
    # linear interpolation between bin j-1 (below half) and bin j (above)
    frac = (half - hist[j - 1]) / max(hist[j] - hist[j - 1], 1e-300)
    return float(centres[j - 1] + frac * (centres[j] - centres[j - 1]))


def flid(t_photon_ps: np.ndarray, bin_s: float, period_ps: float, *,
         t_sync_ps: np.ndarray | None = None, delay_ps: np.ndarray | None = None,
         t0_ps: float | None = None, n_intensity_bins: int = 50, n_delay_bins: int = 50,
         delay_max_ns: float | None = None, t_start_ps: int | None = None,
         t_stop_ps: int | None = None) -> FlidResult:
    """Fluorescence lifetime–intensity distribution (FLID).

    The photons are binned in time as in :func:`intensity_trace`. For every time bin the
    mean delay of its photons after ``t0`` (wrapped into ``[−0.05·T, 0.95·T)`` so that the
    IRF's early side does not wrap to the end of the period) is the lifetime proxy. The 2D
    histogram counts time bins per (photon count, mean delay) cell.

    Parameters
    ----------
    t_photon_ps : ndarray of int64, shape (n_photons,)
        Photon arrival times in ps, sorted.
    bin_s : float
        Time-bin width in s (typically 1e-3 to 1e-2).
    period_ps : float
        Laser repetition period in ps.
    t_sync_ps : ndarray of int64, shape (n_sync,), optional
        Sync times in ps (T2 data). Either this or ``delay_ps`` is required.
    delay_ps : ndarray, shape (n_photons,), optional
        Delay of each photon after its sync in ps (T3 data); negative = unknown.
    t0_ps : float, optional
        Delay origin (the pulse arrival) in ps. Default: where the decay histogram of all
        photons (100 ps bins) rises through half its peak height above the background —
        the pulse arrival time for lifetimes longer than the IRF.
    n_intensity_bins, n_delay_bins : int
        Size of the 2D histogram.
    delay_max_ns : float, optional
        Upper edge of the lifetime axis in ns; default the largest finite mean delay.
    t_start_ps, t_stop_ps : int, optional
        Time interval, as in :func:`intensity_trace`.

    Returns
    -------
    FlidResult
        Per-bin counts and mean delays, and the 2D histogram with its axes. Photons
        without a preceding sync count in the intensity but not in the mean delay.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.blinking import flid
    >>> rng = np.random.default_rng(2)
    >>> sync = np.arange(0, 2 * 10**10, 12_500, dtype=np.int64)           # 20 ms at 80 MHz
    >>> emit = np.sort(rng.choice(sync.size, 20_000, replace=False))
    >>> photons = sync[emit] + 1000 + rng.exponential(1500.0, emit.size).astype(np.int64)
    >>> res = flid(np.sort(photons), 1e-3, 12_500.0, t_sync_ps=sync, t0_ps=1000.0)
    >>> res.counts.size, round(float(np.nanmean(res.mean_delay_ns)), 1)   # τ ≈ 1.5 ns
    (19, 1.5)
    """
    phot = np.asarray(t_photon_ps, dtype=np.int64)
    if (t_sync_ps is None) == (delay_ps is None):
        raise AnalysisInputError("give exactly one of t_sync_ps and delay_ps for FLID")
    if not period_ps > 0:
        raise AnalysisInputError(f"period_ps must be > 0, got {period_ps}")
    if delay_ps is None:
        delay = delays_after_sync_ps(t_sync_ps, phot).astype(float)
    else:
        delay = np.asarray(delay_ps, dtype=float)
        if delay.shape != phot.shape:
            raise AnalysisInputError("delay_ps must have one value per photon")
    t_s, counts = intensity_trace(phot, bin_s, t_start_ps, t_stop_ps)
    start, _ = _time_range(phot, t_start_ps, t_stop_ps)
    bin_ps = bin_s * 1e12
    n_bins = counts.size
    valid = (delay >= 0) & (delay < 10 * period_ps)
    if not np.any(valid):
        raise AnalysisInputError("no photon has a delay after a sync pulse")
    if t0_ps is None:
        hist, edges = np.histogram(np.mod(delay[valid], period_ps),
                                   bins=max(1, int(period_ps // 100.0)), range=(0, period_ps))
        t0_ps = _rising_edge_ps(hist.astype(float), edges)
    # delays relative to t0 in [−5 % T, 95 % T): photons that the IRF puts just before t0
    # stay slightly negative instead of wrapping to the end of the period
    pre_ps = 0.05 * period_ps
    rel_ns = (np.mod(delay - t0_ps + pre_ps, period_ps) - pre_ps) * 1e-3
    idx = np.floor((phot - start) / bin_ps).astype(np.int64)
    sel = valid & (idx >= 0) & (idx < n_bins)
    n_valid = np.bincount(idx[sel], minlength=n_bins)
    sums = np.bincount(idx[sel], weights=rel_ns[sel], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_delay = np.where(n_valid > 0, sums / np.maximum(n_valid, 1), np.nan)
    finite = np.isfinite(mean_delay)
    top = delay_max_ns if delay_max_ns is not None else (
        float(np.max(mean_delay[finite])) * 1.0001 if finite.any() else 1.0)
    int_edges = np.linspace(0.0, float(counts.max()) + 1.0, n_intensity_bins + 1)
    delay_edges = np.linspace(0.0, max(top, 1e-6), n_delay_bins + 1)
    histogram, _, _ = np.histogram2d(counts[finite], mean_delay[finite],
                                     bins=(int_edges, delay_edges))
    return FlidResult(t_s=t_s, counts=counts, mean_delay_ns=mean_delay,
                      intensity_edges_counts=int_edges, delay_edges_ns=delay_edges,
                      histogram=histogram.astype(np.int64), t0_ps=float(t0_ps),
                      bin_s=float(bin_s))
