"""Checks of an HBT histogram, the pulsed correlation window and the repetition period.

:func:`pulsed_window_ps` (the window for ``n_side`` side peaks), :func:`detect_period_ps`
(the comb period from the data) and the limits :data:`MAX_ANALYSIS_BINS`,
:data:`MIN_BINS_PER_PERIOD` and :data:`MIN_SIDE_COUNTS`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from micropl.errors import AnalysisInputError

#: Fewest counts in all side peaks together for which :func:`pulsed_g2` reports g²(0)
#: (its relative error is then ≥ 1/√10 ≈ 0.3 from the side peaks alone).
MIN_SIDE_COUNTS = 10


#: Most bins of a histogram that the g² analyses (:func:`pulsed_g2`,
#: :func:`fit_peak_train`, :func:`fit_cw_g2`, :func:`detect_period_ps`) accept: their
#: temporaries take about 0.5 kB per bin (≈ 130 MB here) and their time grows faster
#: than the bin count. ±6 periods of 1 MHz in 64 ps bins need 187 500.
MAX_ANALYSIS_BINS = 262_144


#: Fewest bins per pulse period that a pulsed g² window may have.
MIN_BINS_PER_PERIOD = 4


def pulsed_window_ps(rep_rate_hz: float, n_side: int, bin_ps: int) -> int:
    """Half-window of the correlation for a pulsed g²: ``n_side + 1`` periods.

    ``n_side`` side peaks each side plus one period of margin for the channel
    delay, rounded up to a whole number of bins.

    Parameters
    ----------
    rep_rate_hz : float
        Laser repetition rate in Hz.
    n_side : int
        Side peaks used on each side.
    bin_ps : int
        Histogram bin width in ps.

    Returns
    -------
    int
        Half-window in ps (a multiple of ``bin_ps``).

    Raises
    ------
    AnalysisInputError
        A rate that is not finite and positive, a period shorter than
        :data:`MIN_BINS_PER_PERIOD` bins, or a window of more than
        :data:`MAX_ANALYSIS_BINS` bins; the message gives the bin width that would fit.

    Examples
    --------
    >>> from micropl.analysis.g2 import pulsed_window_ps
    >>> pulsed_window_ps(80e6, 5, 64)                      # 6 periods of 12.5 ns, in whole bins
    75008
    """
    rate = float(rep_rate_hz)
    if not (math.isfinite(rate) and rate > 0):
        raise AnalysisInputError(f"repetition rate {rep_rate_hz!r} Hz must be finite and > 0")
    if int(bin_ps) <= 0:
        raise AnalysisInputError(f"bin width must be > 0 ps, got {bin_ps} ps")
    period_ps = 1e12 / rate
    if period_ps < MIN_BINS_PER_PERIOD * bin_ps:
        raise AnalysisInputError(
            f"repetition rate {rate:.6g} Hz gives a pulse period of {period_ps:.4g} ps, "
            f"shorter than {MIN_BINS_PER_PERIOD} bins of {bin_ps} ps")
    bins = math.ceil((n_side + 1) * period_ps / bin_ps)
    if 2 * bins > MAX_ANALYSIS_BINS:
        fit_bin = math.ceil(2 * (n_side + 1) * period_ps / MAX_ANALYSIS_BINS)
        raise AnalysisInputError(
            f"repetition rate {rate:.6g} Hz gives a pulse period of {_fmt_ps(period_ps)}; "
            f"the g² window of ±{n_side + 1} periods would need {2 * bins} bins of {bin_ps} ps "
            f"(max {MAX_ANALYSIS_BINS}); use bins of at least {fit_bin} ps or fewer side peaks")
    return int(bins * bin_ps)


def _fmt_ps(t_ps: float) -> str:
    """A duration in ps as text in a readable unit (ps, ns, µs, ms, s)."""
    for unit, scale in (("s", 1e12), ("ms", 1e9), ("µs", 1e6), ("ns", 1e3)):
        if abs(t_ps) >= scale:
            return f"{t_ps / scale:.4g} {unit}"
    return f"{t_ps:.4g} ps"


def _check_histogram(tau_ps: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                        float]:
    tau = np.asarray(tau_ps, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if tau.ndim != 1 or c.shape != tau.shape:
        raise AnalysisInputError(
            f"tau_ps and counts must be 1-D arrays of equal length, got {tau.shape} and {c.shape}")
    if tau.size < 8:
        raise AnalysisInputError(f"histogram has only {tau.size} bins")
    if tau.size > MAX_ANALYSIS_BINS:
        raise AnalysisInputError(
            f"histogram has {tau.size} bins, more than the {MAX_ANALYSIS_BINS} the g² analysis "
            "takes; rebin it or narrow the window")
    if not (np.all(np.isfinite(tau)) and np.all(np.isfinite(c))):
        raise AnalysisInputError("histogram holds NaN or infinite values")
    if np.any(c < 0):
        raise AnalysisInputError("histogram holds negative counts")
    steps = np.diff(tau)
    bin_ps = float(np.median(steps))
    if bin_ps <= 0 or np.any(np.abs(steps - bin_ps) > 0.01 * bin_ps):
        raise AnalysisInputError("histogram delays must be increasing in uniform steps")
    if c.sum() <= 0:
        raise AnalysisInputError("histogram is empty (all counts are zero)")
    return tau, c, bin_ps


def _comb_amplitude(tau: np.ndarray, c: np.ndarray, period_ps: float) -> complex:
    return complex(np.sum(c * np.exp(2j * np.pi * tau / period_ps)))


def detect_period_ps(tau_ps: np.ndarray, counts: np.ndarray, *,
                     min_period_ps: float | None = None) -> float:
    """Repetition period of a peak comb in an HBT histogram.

    The fundamental is the first lobe of the histogram's autocorrelation (computed by
    FFT) that rises above half its strongest local maximum; the comb's Fourier amplitude
    ``|Σ c·exp(2πiτ/P)|`` is then scanned over the whole lobe (a grid finer than the
    amplitude's main-lobe width ``P²/span``) and its maximum refined. Scanning the whole
    lobe, not only its first local maximum, keeps sparse histograms (under one count
    per bin) from locking onto a noise bump on the lobe's flank.

    Parameters
    ----------
    tau_ps : ndarray of float, shape (n,)
        Uniform bin centres in ps.
    counts : ndarray, shape (n,)
        Counts per bin.
    min_period_ps : float, optional
        Smallest period considered; default 8 bins.

    Returns
    -------
    float
        Period in ps.

    Raises
    ------
    AnalysisInputError
        No periodic peaks stand out of the noise.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.g2 import detect_period_ps, two_sided_exp_irf
    >>> tau = np.arange(-60000.0, 60000.0, 100.0)
    >>> mean = 1.0 + sum(50.0 * two_sided_exp_irf(tau - k * 12500.0, 800.0, 100.0)
    ...              for k in range(-5, 6) if k != 0)
    >>> counts = np.random.default_rng(1).poisson(mean).astype(float)
    >>> round(detect_period_ps(tau, counts))
    12496
    """
    tau, c, bin_ps = _check_histogram(tau_ps, counts)
    n = c.size
    x = c - c.mean()
    nfft = 1 << int(math.ceil(math.log2(2 * n)))
    spec = np.fft.rfft(x, nfft)
    acf = np.fft.irfft(spec * np.conj(spec), nfft)[:n]
    # Normalise by the overlap length so that long lags are not suppressed.
    acf = acf / np.arange(n, 0, -1)
    min_lag = max(2, int(math.ceil((min_period_ps or 8 * bin_ps) / bin_ps)))
    # Skip the central lobe (the peaks' own width): start after the first negative value.
    below = np.flatnonzero(acf[1:] < 0)
    if below.size:
        min_lag = max(min_lag, int(below[0]) + 1)
    max_lag = n // 2
    if max_lag <= min_lag + 2:
        raise AnalysisInputError("histogram too short to detect a repetition period")
    seg = acf[min_lag:max_lag]
    # Local maxima above half the strongest one; the first is the fundamental.
    peak_idx = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if peak_idx.size == 0 or seg[peak_idx].max() <= 0:
        raise AnalysisInputError("no periodic peaks found in the histogram")
    threshold = 0.5 * seg[peak_idx].max()
    strong = peak_idx[seg[peak_idx] >= threshold]
    # On sparse data noise makes local maxima on the flanks of the fundamental's lobe,
    # so the whole lobe above the threshold is searched: the comb amplitude is scanned
    # over it on a grid finer than its main-lobe width (P²/span), then refined.
    lo_j = hi_j = int(strong[0])
    while lo_j > 0 and seg[lo_j - 1] >= threshold:
        lo_j -= 1
    while hi_j < seg.size - 1 and seg[hi_j + 1] >= threshold:
        hi_j += 1
    p_lo = (lo_j + min_lag - 1) * bin_ps
    p_hi = (hi_j + min_lag + 1) * bin_ps

    def neg_amp(p: float) -> float:
        return -abs(_comb_amplitude(tau, c, p))

    step = 0.25 * p_lo * p_lo / max(tau[-1] - tau[0], p_hi)
    n_grid = int(min(max(math.ceil((p_hi - p_lo) / step), 2), 400)) + 1
    grid = np.linspace(p_lo, p_hi, n_grid)
    best = int(np.argmin([neg_amp(p) for p in grid]))
    width = grid[1] - grid[0]
    res = optimize.minimize_scalar(neg_amp, bounds=(grid[best] - width, grid[best] + width),
                                   method="bounded", options={"xatol": 1e-4 * bin_ps})
    period = float(res.x)
    amp = -float(res.fun)
    noise = math.sqrt(float(c.sum()))
    if amp < 5 * noise:
        raise AnalysisInputError(
            f"no periodic peaks found in the histogram (comb amplitude {amp:.0f} counts, "
            f"noise {noise:.0f} counts)")
    return period


def _window_weights(tau: np.ndarray, bin_ps: float, lo: float, hi: float) -> np.ndarray:
    """Fraction of each bin ``[τ - b/2, τ + b/2)`` that lies inside ``[lo, hi)``."""
    left = np.maximum(tau - 0.5 * bin_ps, lo)
    right = np.minimum(tau + 0.5 * bin_ps, hi)
    return np.clip(right - left, 0.0, None) / bin_ps
