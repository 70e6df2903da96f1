"""Second-order correlation g²(τ) from photon time tags and from HBT histograms.

The module holds four things:

* :func:`cross_correlate` — the exact start–multi-stop cross-correlation of two
  sorted time-tag streams (numba, one pass with two pointers), and
  :class:`G2Accumulator`, its incremental form that is fed chunks as they arrive;
* :func:`pulsed_g2` — g²(0) of a pulsed source as the ratio of the central peak area
  to the mean side-peak area, with the repetition period and the zero-delay peak
  found from the data when they are not given (:class:`G2Result`);
* :func:`fit_peak_train` — a fit of the whole pulsed histogram as a comb of
  two-sided exponential peaks convolved with a Gaussian instrument response
  (:class:`PeakTrainFit`);
* :func:`fit_cw_g2` — a fit of the CW antibunching dip
  g²(τ) = 1 − (1 − g²(0))·exp(−|τ − τ_d|/τ₀) convolved with a Gaussian IRF
  (:class:`CwG2Fit`).

Binning convention
------------------
A histogram with window ``W`` and bin width ``b`` has ``n = ceil(2W / b)`` half-open
bins ``[-W + i·b, -W + (i+1)·b)``. When ``2W`` is a multiple of ``b`` the bins cover
exactly ``[-W, W)``; otherwise the last bin is full width and the histogram covers
``[-W, -W + n·b)``, slightly more than ``W`` on the positive side. Every pair delay
``-W <= d < W`` is always counted, and no bin is ever narrower than ``b``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numba
import numpy as np
from scipy import optimize, special

from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_ANALYSIS_BINS",
    "MAX_HISTOGRAM_BINS",
    "check_channel_pair",
    "poisson_interval",
    "poisson_ratio_interval",
    "pulsed_window_ps",
    "CwG2Fit",
    "G2Accumulator",
    "G2Result",
    "PeakTrainFit",
    "cross_correlate",
    "detect_period_ps",
    "fit_cw_g2",
    "fit_peak_train",
    "histogram_bins",
    "pulsed_g2",
    "two_sided_exp_irf",
]


# ---------------------------------------------------------------------------
# Cross-correlation
# ---------------------------------------------------------------------------


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

#: Most bins of a correlation histogram (:func:`histogram_bins`): 32 MB of counts.
MAX_HISTOGRAM_BINS = 4_194_304


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


def check_channel_pair(channel_a: int, channel_b: int) -> tuple[int, int]:
    """Refuse a start/stop channel pair that is not two different channels.

    A channel correlated with itself pairs every tag with itself: the zero-delay peak
    then holds one count per tag and g²(0) comes out near the number of tags per
    period, which looks like a result but measures nothing. Every g² path (the CLI, the
    live core, replay) correlates through :class:`G2Accumulator`, which calls this.

    Parameters
    ----------
    channel_a, channel_b : int
        Start and stop channel numbers.

    Returns
    -------
    tuple of int
        ``(channel_a, channel_b)`` as ints.

    Raises
    ------
    AnalysisInputError
        When the two channels are the same.
    """
    a, b = int(channel_a), int(channel_b)
    if a == b:
        raise AnalysisInputError(
            f"channels {a} and {b}: the start and stop channels must be two different "
            "detectors (a channel correlated with itself gives no g²)")
    return a, b


def poisson_interval(count: float, z: float = 1.0) -> tuple[float, float]:
    """Score interval of the mean of a Poisson count.

    The set of means ``μ`` with ``(count − μ)²/μ <= z²``:
    ``count + z²/2 ± z·√(count + z²/4)``. For ``z = 1`` it is the 68.27 % interval; its
    coverage averaged over means of 1–20 counts is 68 %, and it stays sensible at a
    count of 0 (``[0, z²]``).

    Parameters
    ----------
    count : float
        Observed count (>= 0; a window area with fractional edge bins is accepted).
    z : float
        Half-width in standard deviations (1 for 68.27 %).

    Returns
    -------
    (low, high) : tuple of float
        Interval of the mean, in counts.
    """
    c = max(float(count), 0.0)
    half = z * math.sqrt(c + 0.25 * z * z)
    centre = c + 0.5 * z * z
    return max(centre - half, 0.0), centre + half


def poisson_ratio_interval(count_a: float, count_b: float, z: float = 1.0
                           ) -> tuple[float, float]:
    """Interval of the ratio ``μ_a/μ_b`` of the means of two independent Poisson counts.

    Given their sum ``N``, ``count_a`` is binomial with ``p = μ_a/(μ_a + μ_b)``; the
    Wilson score interval of ``p`` is mapped to the ratio ``p/(1 − p)``. This is the
    standard conditional interval for a ratio of Poisson means; it stays calibrated down
    to a handful of counts in ``count_a`` (and tends to :func:`poisson_interval` divided
    by ``count_b`` when ``count_b`` is large).

    Parameters
    ----------
    count_a, count_b : float
        Observed counts (>= 0, ``count_b > 0``).
    z : float
        Half-width in standard deviations (1 for 68.27 %).

    Returns
    -------
    (low, high) : tuple of float
        Interval of ``μ_a/μ_b`` (dimensionless).

    Raises
    ------
    AnalysisInputError
        When ``count_b`` is not positive.
    """
    a = max(float(count_a), 0.0)
    b = float(count_b)
    if not b > 0:
        raise AnalysisInputError(f"ratio interval needs a positive denominator count, got {b}")
    n = a + b
    p = a / n
    z2n = z * z / n
    centre = (p + 0.5 * z2n) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + 0.25 * z2n / n) / (1.0 + z2n)
    lo = max(centre - half, 0.0)
    hi = min(centre + half, 1.0)
    return lo / (1.0 - lo), (hi / (1.0 - hi) if hi < 1.0 else math.inf)


def histogram_bins(bin_ps: int, window_ps: int) -> tuple[int, int]:
    """Number of bins and covered span of a ``±window_ps`` histogram.

    Parameters
    ----------
    bin_ps : int
        Bin width in ps, > 0.
    window_ps : int
        Half-width of the delay window in ps, > 0.

    Returns
    -------
    n_bins : int
        ``ceil(2·window_ps / bin_ps)``.
    span_ps : int
        ``n_bins · bin_ps`` (>= ``2·window_ps``); the bins cover
        ``[-window_ps, -window_ps + span_ps)``.
    """
    bin_ps = int(bin_ps)
    window_ps = int(window_ps)
    if bin_ps <= 0:
        raise AnalysisInputError(f"bin width must be > 0 ps, got {bin_ps} ps")
    if window_ps <= 0:
        raise AnalysisInputError(f"window must be > 0 ps, got {window_ps} ps")
    n_bins = -(-2 * window_ps // bin_ps)
    if n_bins > MAX_HISTOGRAM_BINS:
        raise AnalysisInputError(
            f"window ±{window_ps} ps with {bin_ps} ps bins needs {n_bins} bins "
            f"(max {MAX_HISTOGRAM_BINS})")
    return n_bins, n_bins * bin_ps


@numba.njit(cache=True, nogil=True)
def _is_sorted(t: np.ndarray) -> bool:
    for i in range(1, t.shape[0]):
        if t[i] < t[i - 1]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _correlate_into_i64(t1: np.ndarray, t2: np.ndarray, lo_ps: np.int64, span_ps: np.int64,
                        bin_ps: np.int64, counts: np.ndarray) -> None:
    """Add to ``counts`` every pair with ``lo <= t2[j] - t1[i] < lo + span``.

    Two pointers: ``j0`` is the first ``t2`` not below ``t1[i] + lo``; it only moves
    forward because ``t1`` is sorted. The inner loop visits exactly the counted pairs.
    """
    n2 = t2.shape[0]
    j0 = 0
    for i in range(t1.shape[0]):
        start = t1[i] + lo_ps
        while j0 < n2 and t2[j0] < start:
            j0 += 1
        j = j0
        while j < n2:
            offset = t2[j] - start  # in [0, ...)
            if offset >= span_ps:
                break
            counts[offset // bin_ps] += 1
            j += 1


@numba.njit(cache=True, nogil=True)
def _correlate_into_u32(t1: np.ndarray, t2: np.ndarray, lo_ps: np.int64, span_ps: np.int64,
                        bin_ps: np.int64, counts: np.ndarray) -> None:
    """As :func:`_correlate_into_i64` with a 32-bit division (span below 2**32 ps)."""
    n2 = t2.shape[0]
    b32 = np.uint32(bin_ps)
    j0 = 0
    for i in range(t1.shape[0]):
        start = t1[i] + lo_ps
        while j0 < n2 and t2[j0] < start:
            j0 += 1
        j = j0
        while j < n2:
            offset = t2[j] - start
            if offset >= span_ps:
                break
            counts[np.uint32(offset) // b32] += 1
            j += 1


def _correlate_into(t1: np.ndarray, t2: np.ndarray, lo_ps: np.int64, span_ps: np.int64,
                    bin_ps: np.int64, counts: np.ndarray) -> None:
    if span_ps < 2**32:
        _correlate_into_u32(t1, t2, lo_ps, span_ps, bin_ps, counts)
    else:
        _correlate_into_i64(t1, t2, lo_ps, span_ps, bin_ps, counts)


def _as_tags(t: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(t)
    if arr.ndim != 1:
        raise AnalysisInputError(f"{name} must be a 1-D array of time tags, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise AnalysisInputError(f"{name} must hold integer ps time tags, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def cross_correlate(t1_ps: np.ndarray, t2_ps: np.ndarray, bin_ps: int, window_ps: int,
                    *, check_sorted: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of all pair delays ``t2 - t1`` within ``±window_ps``.

    Every pair ``(i, j)`` with ``-window_ps <= t2_ps[j] - t1_ps[i] < -window_ps + span``
    is counted once, in the half-open bin ``[-W + k·b, -W + (k+1)·b)`` (see the module
    docstring for ``span`` when ``2W`` is not a multiple of ``b``). Equal time stamps in
    the two streams give delay 0 and are counted. Positive delay means that the channel-2
    photon came after the channel-1 photon.

    Parameters
    ----------
    t1_ps, t2_ps : ndarray of int64, shape (n,) and (m,)
        Arrival times in ps, each sorted ascending (duplicates allowed). Either may be
        empty.
    bin_ps : int
        Bin width in ps.
    window_ps : int
        Half-width of the delay window in ps.
    check_sorted : bool
        Verify the sort order (one cheap pass); unsorted input raises
        :class:`~micropl.errors.AnalysisInputError`.

    Returns
    -------
    tau_ps : ndarray of float64, shape (n_bins,)
        Bin centres in ps, ``-W + (k + 0.5)·b``.
    counts : ndarray of int64, shape (n_bins,)
        Number of pairs per bin.

    Notes
    -----
    The cost is O(n + m + number of counted pairs): one pass over both streams.

    Examples
    --------
    >>> tau, c = cross_correlate(np.array([0, 100]), np.array([50, 120]), 10, 100)
    >>> int(c.sum())
    3
    """
    n_bins, span_ps = histogram_bins(bin_ps, window_ps)
    t1 = _as_tags(t1_ps, "t1_ps")
    t2 = _as_tags(t2_ps, "t2_ps")
    if check_sorted and not (_is_sorted(t1) and _is_sorted(t2)):
        raise AnalysisInputError("time tags must be sorted ascending")
    counts = np.zeros(n_bins, dtype=np.int64)
    _correlate_into(t1, t2, np.int64(-int(window_ps)), np.int64(span_ps), np.int64(int(bin_ps)),
                    counts)
    return _bin_centres(int(bin_ps), int(window_ps), n_bins), counts


def _bin_centres(bin_ps: int, window_ps: int, n_bins: int) -> np.ndarray:
    return -float(window_ps) + (np.arange(n_bins, dtype=np.float64) + 0.5) * float(bin_ps)


class G2Accumulator:
    """Incremental cross-correlation of two channels, fed chunk by chunk.

    The histogram after any sequence of chunks is identical, bin for bin, to
    :func:`cross_correlate` on the concatenated tags: each new tag is correlated with the
    retained tail of the other channel, so no pair that straddles a chunk boundary is lost.
    The tails hold only the tags that a future tag can still pair with (about one window
    of each channel), so memory stays bounded on long acquisitions.

    Parameters
    ----------
    bin_ps : int
        Bin width in ps.
    window_ps : int
        Half-width of the delay window in ps.
    channel_a, channel_b : int
        Channel numbers of the start (``t1``) and stop (``t2``) streams for
        :meth:`add_chunk`. Default 1 and 2. The delay is ``t_b - t_a``.
    max_pairs : int, optional
        Refuse (:class:`~micropl.errors.AnalysisInputError`, before counting
        them) tags that would bring the pairs counted beyond this. The correlation's time
        grows with the pairs, so this bounds it when tags are implausibly dense (e.g. a
        corrupt resolution that puts many tags on one time). Default: no limit.
    max_tail : int, optional
        Refuse tags that leave more than this many tags of one channel retained (tags a
        future tag could still pair with): memory then stays bounded even when tags pile
        up on one time in one channel. Default: no limit.

    Notes
    -----
    Tags of each channel must arrive in ascending order across calls. Tags of the two
    channels may interleave freely between calls. When a call promises, through
    ``t_stop_ps`` (or the chunk's ``t_stop_ps``), that no later tag will be earlier, the
    tails are trimmed even when one channel is silent.
    """

    def __init__(self, bin_ps: int, window_ps: int, *, channel_a: int = 1,
                 channel_b: int = 2, max_pairs: int | None = None,
                 max_tail: int | None = None) -> None:
        self.max_pairs = None if max_pairs is None else int(max_pairs)
        self.max_tail = None if max_tail is None else int(max_tail)
        self.bin_ps = int(bin_ps)
        self.window_ps = int(window_ps)
        self.n_bins, self.span_ps = histogram_bins(self.bin_ps, self.window_ps)
        self.channel_a, self.channel_b = check_channel_pair(channel_a, channel_b)
        self.tau_ps = _bin_centres(self.bin_ps, self.window_ps, self.n_bins)
        self.reset()

    def reset(self) -> None:
        """Clear the histogram, the tails and the counters."""
        self._counts = np.zeros(self.n_bins, dtype=np.int64)
        self._tail_a = np.zeros(0, dtype=np.int64)
        self._tail_b = np.zeros(0, dtype=np.int64)
        self._last_a: int | None = None
        self._last_b: int | None = None
        self._floor_ps: int | None = None
        self.n_tags_a = 0
        self.n_tags_b = 0
        self.n_chunks = 0
        self.n_overflow_chunks = 0
        self.missed_events = 0
        self.duration_ps = 0

    @property
    def counts(self) -> np.ndarray:
        """Histogram so far, int64, shape (n_bins,) (a copy)."""
        return self._counts.copy()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tau_ps, counts)`` as :func:`cross_correlate` returns them (copies)."""
        return self.tau_ps.copy(), self._counts.copy()

    def add_chunk(self, chunk: object) -> None:
        """Add a record with ``t_ps`` (int64) and ``channel`` (uint8) arrays.

        Any object with these attributes works, e.g. ``micropl.drivers.interfaces.TagChunk``;
        its optional ``t_stop_ps``, ``overflow`` and ``missed_events`` are used when
        present.
        """
        try:
            t_ps = np.asarray(chunk.t_ps)  # type: ignore[attr-defined]
            channel = np.asarray(chunk.channel)  # type: ignore[attr-defined]
        except AttributeError as exc:
            raise AnalysisInputError(
                f"chunk of type {type(chunk).__name__} has no t_ps/channel arrays") from exc
        if t_ps.shape != channel.shape:
            raise AnalysisInputError(
                f"chunk t_ps shape {t_ps.shape} differs from channel shape {channel.shape}")
        t_stop = getattr(chunk, "t_stop_ps", None)
        t_start = getattr(chunk, "t_start_ps", None)
        if getattr(chunk, "overflow", False):
            self.n_overflow_chunks += 1
        self.missed_events += int(getattr(chunk, "missed_events", 0) or 0)
        if t_stop is not None and t_start is not None:
            self.duration_ps += int(t_stop) - int(t_start)
        self.add_arrays(t_ps[channel == self.channel_a], t_ps[channel == self.channel_b],
                        t_stop_ps=t_stop)

    def add_arrays(self, ta_ps: np.ndarray, tb_ps: np.ndarray, *,
                   t_stop_ps: int | None = None) -> None:
        """Add new tags of channel a (start) and channel b (stop).

        Parameters
        ----------
        ta_ps, tb_ps : ndarray of int64
            New sorted tags in ps of each channel, none earlier than the last tag of
            the same channel given before.
        t_stop_ps : int, optional
            Promise that no tag given later, in either channel, is earlier than this time.
        """
        ta = _as_tags(ta_ps, "ta_ps")
        tb = _as_tags(tb_ps, "tb_ps")
        if not (_is_sorted(ta) and _is_sorted(tb)):
            raise AnalysisInputError("time tags in a chunk must be sorted ascending")
        for new, last, name in ((ta, self._last_a, "a"), (tb, self._last_b, "b")):
            if new.size and last is not None and new[0] < last:
                raise AnalysisInputError(
                    f"channel {name} tag {int(new[0])} ps is earlier than the previous chunk's "
                    f"last tag {last} ps")
            floor = self._floor_ps
            if new.size and floor is not None and new[0] < floor:
                raise AnalysisInputError(
                    f"channel {name} tag {int(new[0])} ps is earlier than the promised "
                    f"t_stop_ps {floor} ps")
        lo = np.int64(-self.window_ps)
        span = np.int64(self.span_ps)
        binw = np.int64(self.bin_ps)
        # new a × (old b tail + new b), then old a tail × new b: every new pair once.
        b_all = np.concatenate((self._tail_b, tb)) if self._tail_b.size and ta.size else tb
        if self.max_pairs is not None:
            self._check_pairs(ta, b_all, tb)
        if ta.size:
            _correlate_into(ta, b_all, lo, span, binw, self._counts)
        if tb.size and self._tail_a.size:
            _correlate_into(self._tail_a, tb, lo, span, binw, self._counts)
        self.n_tags_a += int(ta.size)
        self.n_tags_b += int(tb.size)
        self.n_chunks += 1
        if ta.size:
            self._last_a = int(ta[-1])
        if tb.size:
            self._last_b = int(tb[-1])
        if t_stop_ps is not None:
            self._floor_ps = max(int(t_stop_ps), self._floor_ps or int(t_stop_ps))
        self._tail_a = self._trim(np.concatenate((self._tail_a, ta)) if ta.size else self._tail_a,
                                  self._future_min(self._last_b),
                                  keep_after=self.window_ps - self.span_ps)
        self._tail_b = self._trim(np.concatenate((self._tail_b, tb)) if tb.size else self._tail_b,
                                  self._future_min(self._last_a), keep_after=-self.window_ps - 1)
        if self.max_tail is not None:
            for tail, name in ((self._tail_a, "a"), (self._tail_b, "b")):
                if tail.size > self.max_tail:
                    raise AnalysisInputError(
                        f"{tail.size} tags of channel {name} between {int(tail[0])} and "
                        f"{int(tail[-1])} ps could still pair with later tags (max "
                        f"{self.max_tail}): the tags are implausibly dense; give a narrower "
                        "window")

    def _check_pairs(self, ta: np.ndarray, b_all: np.ndarray, tb: np.ndarray) -> None:
        """Refuse tags whose pairs would exceed ``max_pairs`` (counted by bisection)."""
        lo = -self.window_ps
        hi = lo + self.span_ps
        new = 0
        if ta.size and b_all.size:
            new += int(np.sum(np.searchsorted(b_all, ta + hi) - np.searchsorted(b_all, ta + lo)))
        if tb.size and self._tail_a.size:
            new += int(np.sum(np.searchsorted(tb, self._tail_a + hi)
                              - np.searchsorted(tb, self._tail_a + lo)))
        total = int(self._counts.sum()) + new
        if total > self.max_pairs:
            raise AnalysisInputError(
                f"more than {self.max_pairs} coincidence pairs within ±{self.window_ps} ps "
                f"after {self.n_tags_a + ta.size} + {self.n_tags_b + tb.size} tags: the tags are "
                "implausibly dense for this window; give a narrower window")

    def _future_min(self, last_other: int | None) -> int | None:
        """Lower bound on any future tag of the other channel, or None if unknown."""
        bounds = [b for b in (last_other, self._floor_ps) if b is not None]
        return max(bounds) if bounds else None

    @staticmethod
    def _trim(tail: np.ndarray, future_min: int | None, keep_after: int) -> np.ndarray:
        # A retained tag t of this channel can pair with a future tag u >= future_min of
        # the other channel only if the delay condition allows it:
        # (the delay d = t_b - t_a must satisfy -W <= d < -W + span):
        #   tail a: u - t < span - W  -> keep t > future_min - (span - W)
        #   tail b: t - u >= -W       -> keep t >= future_min - W  (t > future_min - W - 1)
        if future_min is None or not tail.size:
            return tail
        cut = np.searchsorted(tail, future_min + keep_after, side="right")
        return tail[cut:].copy() if cut else tail


# ---------------------------------------------------------------------------
# Peak shape
# ---------------------------------------------------------------------------


def two_sided_exp_irf(x_ps: np.ndarray, lifetime_ps: float, sigma_ps: float) -> np.ndarray:
    """Two-sided exponential ``exp(-|x|/τ)`` convolved with a unit-area Gaussian.

    Parameters
    ----------
    x_ps : ndarray of float
        Delay from the peak centre in ps.
    lifetime_ps : float
        Decay constant τ in ps (> 0).
    sigma_ps : float
        Standard deviation of the Gaussian instrument response in ps (>= 0).

    Returns
    -------
    ndarray of float
        Peak shape; it tends to ``exp(-|x|/τ)`` when ``sigma_ps -> 0`` (height 1 at 0)
        and has area ``2τ`` for any ``sigma_ps``.

    Notes
    -----
    Each side is ``½·exp(σ²/2τ² ∓ x/τ)·erfc((σ²/τ ∓ x)/(σ√2))``; where the erfc argument
    is positive the product is evaluated as ``½·exp(-x²/2σ²)·erfcx(z)`` to avoid overflow.
    """
    x = np.asarray(x_ps, dtype=np.float64)
    tau = float(lifetime_ps)
    sigma = float(sigma_ps)
    if sigma <= 1e-9 * tau:
        return np.exp(-np.abs(x) / tau)
    return _one_side(x, tau, sigma) + _one_side(-x, tau, sigma)


def _one_side(x: np.ndarray, tau: float, sigma: float) -> np.ndarray:
    # ½·exp(σ²/2τ² − x/τ)·erfc(z),  z = (σ²/τ − x)/(σ√2)
    z = (sigma * sigma / tau - x) / (sigma * math.sqrt(2.0))
    out = np.empty_like(x)
    pos = z >= 0
    xp = x[pos]
    out[pos] = 0.5 * np.exp(-xp * xp / (2 * sigma * sigma)) * special.erfcx(z[pos])
    neg = ~pos
    out[neg] = 0.5 * np.exp(sigma * sigma / (2 * tau * tau) - x[neg] / tau) * special.erfc(z[neg])
    return out


# ---------------------------------------------------------------------------
# Fast comb model: value and analytic derivatives (numba)
# ---------------------------------------------------------------------------

_SQRT2 = math.sqrt(2.0)
_SQRTPI = math.sqrt(math.pi)
_SQRT2PI = math.sqrt(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _erfcx_nonneg(z: float) -> float:
    """Scaled complementary error function ``exp(z²)·erfc(z)`` for ``z >= 0``."""
    if z < 25.0:
        return math.exp(z * z) * math.erfc(z)
    a = 0.5 / (z * z)  # asymptotic series, relative error < 1e-12 for z >= 25
    return (1.0 - a * (1.0 - 3.0 * a * (1.0 - 5.0 * a * (1.0 - 7.0 * a)))) / (z * _SQRTPI)


@numba.njit(cache=True, nogil=True)
def _side_nb(x: float, tau: float, sig: float, s: float) -> float:
    """One side of :func:`two_sided_exp_irf`: ``½·exp(s − x/τ)·erfc(z)``, ``s = σ²/2τ²``."""
    z = (sig * sig / tau - x) / (sig * _SQRT2)
    if z >= 0.0:
        return 0.5 * math.exp(-x * x / (2.0 * sig * sig)) * _erfcx_nonneg(z)
    return 0.5 * math.exp(s - x / tau) * math.erfc(z)


@numba.njit(cache=True, nogil=True)
def _comb_kernel(tau: np.ndarray, bin_ps: float, n_sub: int, c_first: float, period: float,
                 w: np.ndarray, i0: int, tl: float, sig: float, out: np.ndarray) -> None:
    """Bin-averaged comb ``S = Σ_k w_k·h(t − c_k)`` and its derivatives.

    ``c_k = c_first + k·period`` (k = 0..K−1) and ``h`` is :func:`two_sided_exp_irf`.
    ``out`` (shape (5, n)) receives, averaged over ``n_sub`` points per bin: ``S``,
    ``∂S/∂τ``, ``∂S/∂σ``, ``∂S/∂t`` and ``h(t − c_{i0})``.

    Within ``R = σ²/τ + 9σ`` of a peak ``h`` is evaluated exactly (erfc); beyond it
    ``h = exp(σ²/2τ² − |x|/τ)`` to double precision, and the far peaks on each side are
    summed as geometric series (two exponentials per point whatever the number of peaks).
    The derivatives of the exact form are
    ``∂h/∂x = −(f₊ − f₋)/τ``, ``∂h/∂τ = x(f₊ − f₋)/τ² − σ²h/τ³ + 2σ²N/τ²`` and
    ``∂h/∂σ = σh/τ² − 2σN/τ`` with ``f±`` the two sides and ``N`` the Gaussian density.
    """
    n = tau.shape[0]
    K = w.shape[0]
    s = sig * sig / (2.0 * tl * tl)
    inv_tl = 1.0 / tl
    r = math.exp(-period * inv_tl)
    lw = np.empty(K)
    l1 = np.empty(K)
    rw = np.empty(K)
    r1 = np.empty(K)
    lw[0] = w[0]
    l1[0] = 0.0
    for k in range(1, K):
        lw[k] = w[k] + r * lw[k - 1]
        l1[k] = r * (l1[k - 1] + period * lw[k - 1])
    rw[K - 1] = w[K - 1]
    r1[K - 1] = 0.0
    for k in range(K - 2, -1, -1):
        rw[k] = w[k] + r * rw[k + 1]
        r1[k] = r * (r1[k + 1] + period * rw[k + 1])
    reach = sig * sig * inv_tl + 9.0 * sig
    gnorm = 1.0 / (sig * _SQRT2PI)
    c_zero = c_first + i0 * period
    inv_sub = 1.0 / n_sub
    for i in range(n):
        a_s = 0.0
        a_t = 0.0
        a_g = 0.0
        a_x = 0.0
        a_h = 0.0
        for j in range(n_sub):
            t = tau[i] + ((j + 0.5) * inv_sub - 0.5) * bin_ps
            jl = int(math.floor((t - reach - c_first) / period))
            if jl > K - 1:
                jl = K - 1
            jr = int(math.ceil((t + reach - c_first) / period))
            if jr < 0:
                jr = 0
            if jl >= 0:
                dist = t - (c_first + jl * period)
                e = math.exp(s - dist * inv_tl)
                fs = e * lw[jl]
                fd = e * (dist * lw[jl] + l1[jl])
                a_s += fs
                a_t += -2.0 * s * inv_tl * fs + fd * inv_tl * inv_tl
                a_g += fs * sig * inv_tl * inv_tl
                a_x -= fs * inv_tl
            if jr <= K - 1:
                dist = (c_first + jr * period) - t
                e = math.exp(s - dist * inv_tl)
                fs = e * rw[jr]
                fd = e * (dist * rw[jr] + r1[jr])
                a_s += fs
                a_t += -2.0 * s * inv_tl * fs + fd * inv_tl * inv_tl
                a_g += fs * sig * inv_tl * inv_tl
                a_x += fs * inv_tl
            k_lo = jl + 1 if jl + 1 > 0 else 0
            k_hi = jr if jr < K else K
            zero_near = False
            for k in range(k_lo, k_hi):
                x = t - (c_first + k * period)
                fp = _side_nb(x, tl, sig, s)
                fm = _side_nb(-x, tl, sig, s)
                h = fp + fm
                gn = gnorm * math.exp(-x * x / (2.0 * sig * sig))
                wk = w[k]
                a_s += wk * h
                a_t += wk * (x * (fp - fm) * inv_tl * inv_tl - 2.0 * s * inv_tl * h
                             + 2.0 * sig * sig * gn * inv_tl * inv_tl)
                a_g += wk * (sig * h * inv_tl * inv_tl - 2.0 * sig * gn * inv_tl)
                a_x -= wk * (fp - fm) * inv_tl
                if k == i0:
                    a_h += h
                    zero_near = True
            if not zero_near and 0 <= i0 < K:
                a_h += math.exp(s - abs(t - c_zero) * inv_tl)
        out[0, i] = a_s * inv_sub
        out[1, i] = a_t * inv_sub
        out[2, i] = a_g * inv_sub
        out[3, i] = a_x * inv_sub
        out[4, i] = a_h * inv_sub


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


def _comb_fun(tau: np.ndarray, bin_ps: float, period: float, k_lo: int, n_peaks: int,
              i0: int | None, fixed_sigma: float | None = None, n_sub: int = 3):
    """Model ``bg + amp·Σ_k w_k·h(τ − d − k·P)`` of parameters ``(amp, g2, τ, σ, d, bg)``.

    ``w_k = 1`` except ``w_{i0} = g2`` (no zero peak when ``i0`` is None). Returns a
    function ``q -> (model, jac)`` for :func:`_lm_solve`.
    """
    out = np.empty((5, tau.size))
    w = np.ones(n_peaks)
    i0_k = -1 if i0 is None else int(i0)

    def fun(q: np.ndarray):
        amp, g2v, tl, sig, d, bg = q
        if fixed_sigma is not None:
            sig = fixed_sigma
        if i0_k >= 0:
            w[i0_k] = g2v
        _comb_kernel(tau, float(bin_ps), n_sub, float(d + k_lo * period), float(period), w,
                     i0_k, float(tl), float(sig), out)
        model = bg + amp * out[0]
        jac = np.empty((tau.size, 6))
        jac[:, 0] = out[0]
        jac[:, 1] = amp * out[4] if i0_k >= 0 else 0.0
        jac[:, 2] = amp * out[1]
        jac[:, 3] = amp * out[2] if fixed_sigma is None else 0.0
        jac[:, 4] = -amp * out[3]
        jac[:, 5] = 1.0
        return model, jac

    return fun


def _peak_cdf(x: np.ndarray, tau: float, sigma: float) -> np.ndarray:
    """Cumulative fraction of a unit-area peak ``h/(2τ)`` (:func:`two_sided_exp_irf`) below x.

    ``F(x) = Φ(x/σ) + ½·[f(−x) − f(x)]`` with ``f`` one side of the peak shape; far from
    the peak (beyond ``σ²/τ + 9σ``) the exact ``½·exp(σ²/2τ² − |x|/τ)`` tails are used.
    """
    x = np.asarray(x, dtype=np.float64)
    s = sigma * sigma / (2 * tau * tau)
    reach = sigma * sigma / tau + 9 * sigma
    far = 0.5 * np.exp(s - np.abs(x) / tau)
    out = np.where(x > 0, 1.0 - far, far)
    near = np.abs(x) < reach
    if np.any(near) and sigma > 0:
        xn = x[near]
        out[near] = (special.ndtr(xn / sigma)
                     + 0.5 * (_one_side(-xn, tau, sigma) - _one_side(xn, tau, sigma)))
    return out


def _tail_shape(tau: np.ndarray, c: np.ndarray, bin_ps: float, period: float,
                centres: np.ndarray) -> tuple[float, float, float] | None:
    """Lifetime, IRF σ (ps) and height per peak from the folded side-peak profile.

    The windows ``[c − P/2, c + P/2)`` around the given peak centres are summed on a
    common grid (offsets rounded to whole bins) and fitted with a periodic train of
    equal :func:`two_sided_exp_irf` peaks on a flat background (Poisson weights). Returns
    None when no window fits inside the histogram or the fit does not converge.
    """
    half = int(math.floor(0.5 * period / bin_ps))
    if half < 2:
        return None
    idx = np.rint((centres - tau[0]) / bin_ps).astype(np.int64)
    ok = (idx - half >= 0) & (idx + half <= tau.size)
    if not np.any(ok):
        return None
    offs = np.arange(-half, half)
    prof = c[idx[ok][:, None] + offs[None, :]].sum(axis=0)
    n_fold = int(ok.sum())
    x = offs * bin_ps
    gap = np.abs(np.abs(x) - 0.5 * period) <= 0.1 * period
    bg0 = float(prof[gap].mean()) if np.any(gap) else float(prof.min())
    height0 = max(float(prof.max()) - bg0, 1.0)
    area0 = max(float((prof - bg0).sum()), height0)
    tl0 = float(np.clip(area0 * bin_ps / (2 * height0), 0.3 * bin_ps, 0.3 * period))
    sig0 = float(np.clip(300.0, 0.5 * bin_ps, 0.05 * period))
    n_img = 40  # periodic images: exp(-40·P/τ) is negligible for τ <= P
    fun = _comb_fun(x, bin_ps, period, -n_img, 2 * n_img + 1, None)
    p0 = [height0, 1.0, tl0, sig0, 0.0, max(bg0, 1e-3)]
    lower = [0.0, 0.0, 0.2 * bin_ps, 1.0, -0.25 * period, 0.0]
    upper = [np.inf, 5.0, period, 0.25 * period, 0.25 * period, np.inf]
    free = np.array([True, False, True, True, True, True])
    p, _cov, _chi, _m, success = _fast_poisson_refit(fun, p0, lower, upper, prof, free,
                                                     n_iter=2)
    if not (success and np.all(np.isfinite(p))):
        return None
    return float(p[2]), float(p[3]), float(p[0]) / n_fold


# ---------------------------------------------------------------------------
# Pulsed g²(0)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class G2Result:
    """Pulsed g²(0) from peak areas of an HBT histogram.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Raw area ratio central / mean side, and its symmetric 1σ error: half the width of
        ``g2_0_ci68``.
    g2_0_bgcorr, g2_0_bgcorr_err : float
        Ratio of the central to the mean side-peak area after removing the flat
        background and the decay tails that spill between windows (method in
        :func:`pulsed_g2`), clipped at 0, and half the width of its unclipped 68 %
        interval. NaN when no gap bins were available or the peak-shape fit failed.
        It estimates the same intrinsic g²(0) for every ``window_fraction``.
    rep_rate_hz, period_ps : float
        Repetition rate and period used.
    period_source : str
        ``"user"``, ``"header"`` or ``"detected"``.
    delay_ps : float
        Position of the zero-delay (central) peak in ps.
    zero_delay_source : str
        ``"user"``, ``"nearest-zero"`` (comb peak nearest τ = 0) or ``"lowest-peak"``
        (the anomalously low peak of the comb).
    n_side : int
        Side peaks per side asked for.
    n_side_left, n_side_right : int
        Side peaks actually used on each side (fewer when the histogram ends).
    central_counts : float
        Counts ``C`` in the central window.
    side_mean_counts : float
        Mean counts per side window, ``ΣS / (n_left + n_right)``.
    side_counts : ndarray of float, shape (n_left + n_right,)
        Counts of each side window, ordered by delay.
    side_delays_ps : ndarray of float, shape (n_left + n_right,)
        Centre of each side peak in ps.
    background_per_bin, background_per_bin_err : float
        Flat background counts per histogram bin from the gaps between peaks, corrected
        for the peak tails, and its 1σ error (NaN without gap bins).
    central_window_ps : tuple of float
        ``(start, stop)`` of the central window in ps.
    side_windows_ps : ndarray of float, shape (n_left + n_right, 2)
        ``(start, stop)`` of each side window in ps.
    window_fraction : float
        Window width as a fraction of the period.
    bin_ps : float
        Histogram bin width in ps.
    g2_0_ci68 : tuple of float
        ``(low, high)`` 68.27 % interval of g²(0): the Wilson score interval of the
        ratio of the central to the summed side-peak Poisson means
        (:func:`poisson_ratio_interval`), calibrated down to a few central counts and
        ``[0, ·]`` when the central window is empty.
    g2_0_bgcorr_ci68 : tuple of float
        ``(low, high)`` 68 % interval of the background-corrected value (the central
        count's part from :func:`poisson_interval`, the background's and side peaks'
        in quadrature), both ends clipped at 0. NaN when ``g2_0_bgcorr`` is.
    g2_0_bgcorr_clipped : bool
        The background-corrected estimate came out negative (more background than
        counts in the central window) and ``g2_0_bgcorr`` is reported as 0.
    """

    g2_0: float
    g2_0_err: float
    g2_0_bgcorr: float
    g2_0_bgcorr_err: float
    rep_rate_hz: float
    period_ps: float
    period_source: str
    delay_ps: float
    zero_delay_source: str
    n_side: int
    n_side_left: int
    n_side_right: int
    central_counts: float
    side_mean_counts: float
    side_counts: np.ndarray
    side_delays_ps: np.ndarray
    background_per_bin: float
    background_per_bin_err: float
    central_window_ps: tuple[float, float]
    side_windows_ps: np.ndarray
    window_fraction: float
    bin_ps: float
    # Defaults: session files written before these fields existed still load.
    g2_0_ci68: tuple[float, float] = (float("nan"), float("nan"))
    g2_0_bgcorr_ci68: tuple[float, float] = (float("nan"), float("nan"))
    g2_0_bgcorr_clipped: bool = False

    def as_dict(self) -> dict:
        """JSON-ready dictionary (arrays become lists)."""
        out = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out


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


def pulsed_g2(tau_ps: np.ndarray, counts: np.ndarray, *, period_ps: float | None = None,
              rep_rate_hz: float | None = None, n_side: int = 5,
              zero_delay_ps: float | None = None, window_fraction: float = 1.0,
              gap_fraction: float = 0.2, period_source: str | None = None,
              min_significance: float = 3.0, background_correction: bool = True) -> G2Result:
    """g²(0) of a pulsed source from the peak areas of an HBT histogram.

    Parameters
    ----------
    tau_ps : ndarray of float, shape (n,)
        Uniform bin centres in ps. A symmetric cross-correlation (``-W..W``) or a
        start–stop histogram (``0..T``) both work.
    counts : ndarray, shape (n,)
        Raw coincidence counts per bin (Poisson statistics are assumed for the errors).
    period_ps, rep_rate_hz : float, optional
        Repetition period or rate (give at most one). When neither is given the period
        is detected from the histogram (:func:`detect_period_ps`).
    n_side : int
        Side peaks per side averaged for the normalisation (default 5; 4–6 recommended
        because blinking bunches the nearest ones). Fewer are used on a side where the
        histogram ends; at least one side peak in total is required.
    zero_delay_ps : float, optional
        Approximate position of the zero-delay peak; the comb peak nearest it is used.
        By default the peak nearest τ = 0 when the histogram extends at least one period
        to both sides of 0, else the anomalously low peak of the comb.
    window_fraction : float
        Width of each peak window as a fraction of the period (0 < f <= 1, at least one
        bin; default 1, so the windows tile the histogram). Bins cut by a window edge
        count in proportion to their overlap. Narrow windows (e.g. 0.16) leave out more
        background from the raw ratio; the background-corrected value estimates the same
        intrinsic g²(0) for every width.
    gap_fraction : float
        Background bins are those within ``±gap_fraction·P/2`` of the mid-point between
        two peaks (default 0.2, i.e. the central 20 % of each gap). See Notes for how the
        decay tails that reach into the gaps are accounted for.
    period_source : str, optional
        Label stored in the result for a given period (default ``"user"``; pass
        ``"header"`` when the rate came from a file header).
    min_significance : float
        When the zero-delay peak is searched as the lowest peak, it must lie this many σ
        below the median side peak, else the result would be a noise pick.
    background_correction : bool
        Compute ``g2_0_bgcorr`` (a peak-shape fit and a linear solve, ≈10 ms for 10⁴
        bins). False skips it (the fields are NaN), e.g. for frequent live updates.

    Returns
    -------
    G2Result

    Raises
    ------
    AnalysisInputError
        Empty or non-uniform histogram, no periodic peaks, no complete side peak, or no
        significantly low peak to take as zero delay.

    Notes
    -----
    Errors: ``g2_0_ci68`` is the 68.27 % score interval of the ratio of the central and
    the summed side-peak Poisson means (:func:`poisson_ratio_interval`), which stays
    calibrated down to a handful of central counts (and is ``[0, ·]`` at none);
    ``g2_0_err`` is half its width, close to ``g2·√(1/C + 1/ΣS)`` at high counts. The
    background-corrected interval takes the central window's and the gaps' counts
    through the same score interval and the rest by linear propagation
    (``g2_0_bgcorr_ci68``); a negative corrected estimate is reported as 0 with
    ``g2_0_bgcorr_clipped``.

    Background-corrected value (``g2_0_bgcorr``): when the lifetime is a sizeable fraction
    of the period, the exponential tails of the peaks raise the gap level and spill from
    window to window, so the plain "gap mean × window width" subtraction comes out biased
    low. Here the shape of the peaks is first measured: the side-peak windows are folded
    onto one period and fitted with a periodic train of two-sided exponentials convolved
    with a Gaussian IRF on a flat background (lifetime τ and σ; Poisson weights). With this
    shape, the counts of every complete window ``j`` and of the gap bins are written as
    ``Σ_k a_k·F_jk + b·n_j``, where ``a_k`` is the full area of peak ``k``, ``F_jk`` the
    exact fraction of its unit-area shape that falls in the region (bin-integrated),
    ``n_j`` the number of (weighted) bins and ``b`` the flat background per bin; the gap
    bins are those between the used peaks, inside or outside the windows, so a narrow
    window changes only ``F`` and ``n_j``; peaks beyond the
    complete windows are given the mean side-peak area. The square linear system gives
    ``a_k`` and ``b`` as fixed linear combinations of the bin counts, so
    ``g2_0_bgcorr = a_0 / mean(a_side)`` and its error follow by exact linear propagation
    of the Poisson variances (the uncertainty of the fitted shape, a second-order effect,
    is not propagated). For short lifetimes ``F`` is the identity and this reduces to the
    plain gap-mean subtraction. If the shape fit does not converge, ``g2_0_bgcorr`` and the
    background are NaN (a warning is logged).
    """
    return _pulsed_g2_impl(tau_ps, counts, period_ps=period_ps, rep_rate_hz=rep_rate_hz,
                           n_side=n_side, zero_delay_ps=zero_delay_ps,
                           window_fraction=window_fraction, gap_fraction=gap_fraction,
                           period_source=period_source,
                           min_significance=min_significance,
                           background_correction=background_correction)[0]


def _pulsed_g2_impl(tau_ps, counts, *, period_ps, rep_rate_hz, n_side, zero_delay_ps,
                    window_fraction, gap_fraction, period_source, min_significance,
                    background_correction=True) -> tuple[G2Result, tuple[float, float, float] | None]:
    """:func:`pulsed_g2`, also returning the side-peak shape ``(τ, σ, height)`` or None."""
    tau, c, bin_ps = _check_histogram(tau_ps, counts)
    if period_ps is not None and rep_rate_hz is not None:
        raise AnalysisInputError("give period_ps or rep_rate_hz, not both")
    if not 0 < window_fraction <= 1:
        raise AnalysisInputError(f"window_fraction must be in (0, 1], got {window_fraction}")
    if not 0 < gap_fraction < 1:
        raise AnalysisInputError(f"gap_fraction must be in (0, 1), got {gap_fraction}")
    if int(n_side) < 1:
        raise AnalysisInputError(f"n_side must be >= 1, got {n_side}")
    n_side = int(n_side)
    if rep_rate_hz is not None:
        if not rep_rate_hz > 0:
            raise AnalysisInputError(f"repetition rate must be > 0 Hz, got {rep_rate_hz}")
        period_ps = 1e12 / float(rep_rate_hz)
    if period_ps is not None:
        period = float(period_ps)
        if not period > 2 * bin_ps:
            raise AnalysisInputError(
                f"period {period:.1f} ps is not longer than two bins ({bin_ps:.1f} ps each)")
        source = period_source or "user"
    else:
        period = detect_period_ps(tau, c)
        source = "detected"
    if window_fraction * period < bin_ps:
        raise AnalysisInputError(
            f"window fraction {window_fraction:g} of the {period / 1e3:.4g} ns period is "
            f"narrower than one {bin_ps:.4g} ps bin; give a larger window fraction")
    if period > 0.5 * (tau[-1] - tau[0]):
        raise AnalysisInputError(
            f"histogram ({(tau[-1] - tau[0]) / 1e3:.1f} ns) holds fewer than two periods of "
            f"{period / 1e3:.2f} ns")

    # Comb offset from the phase of the fundamental Fourier component.
    phase = np.angle(_comb_amplitude(tau, c, period))
    offset = (phase / (2 * np.pi) * period) % period
    edge_lo = tau[0] - 0.5 * bin_ps
    edge_hi = tau[-1] + 0.5 * bin_ps
    half = 0.5 * window_fraction * period
    k_min = math.ceil((edge_lo + half - offset) / period)
    k_max = math.floor((edge_hi - half - offset) / period)
    ks = np.arange(k_min, k_max + 1)
    if ks.size < 2:
        raise AnalysisInputError("histogram holds fewer than two complete peaks")
    centres = offset + ks * period
    weights = np.array([_window_weights(tau, bin_ps, p - half, p + half) for p in centres])
    areas = weights @ c

    if zero_delay_ps is not None:
        i0 = int(np.argmin(np.abs(centres - float(zero_delay_ps))))
        if abs(centres[i0] - float(zero_delay_ps)) > period:
            raise AnalysisInputError(
                f"zero delay {zero_delay_ps:.0f} ps is outside the histogram's complete peaks")
        zsource = "user"
    elif centres[0] < -0.5 * period and centres[-1] > 0.5 * period:
        i0 = int(np.argmin(np.abs(centres)))
        zsource = "nearest-zero"
    else:
        i0 = int(np.argmin(areas))
        others = np.delete(areas, i0)
        med = float(np.median(others))
        sig = (med - areas[i0]) / math.sqrt(max(med + areas[i0], 1.0))
        if sig < min_significance:
            raise AnalysisInputError(
                f"no antibunched peak found: the lowest peak is only {sig:.1f} sigma below the "
                "others; give the zero delay explicitly")
        zsource = "lowest-peak"

    left = list(range(max(0, i0 - n_side), i0))
    right = list(range(i0 + 1, min(ks.size, i0 + 1 + n_side)))
    side = left + right
    if not side:
        raise AnalysisInputError("no complete side peak next to the zero-delay peak")
    if len(left) < n_side or len(right) < n_side:
        log.info("pulsed_g2: using %d side peaks left and %d right (asked %d per side)",
                 len(left), len(right), n_side)
    C = float(areas[i0])
    S = areas[side]
    sum_s = float(S.sum())
    mean_s = sum_s / len(side)
    if sum_s < MIN_SIDE_COUNTS:
        raise AnalysisInputError(
            f"too few coincidences for g²(0): the {len(side)} side peaks hold {sum_s:.0f} counts "
            f"in all (at least {MIN_SIDE_COUNTS} are needed); is there an emitter under the "
            "spot, and was the acquisition long enough?")
    g2 = C / mean_s
    # Interval of the ratio of the two Poisson means (central, all side peaks), scaled
    # to the mean side peak; the symmetric 1σ is half its width.
    r_lo, r_hi = poisson_ratio_interval(C, sum_s)
    g2_ci = (r_lo * len(side), r_hi * len(side))
    g2_err = 0.5 * (g2_ci[1] - g2_ci[0])

    # Background from the central part of the gaps between the used peaks, corrected for
    # the exponential tails that every peak (near or far) leaves in the gaps and windows.
    used = [i0, *side]
    gap_mask = np.zeros(tau.size, dtype=bool)
    for i in used:
        for mid in (centres[i] - 0.5 * period, centres[i] + 0.5 * period):
            gap_mask |= np.abs(tau - mid) <= 0.5 * gap_fraction * period
    # Only gaps between the used peaks (inside the span of their full periods), whatever
    # the window width: with narrow windows the gaps lie outside every window.
    span_lo = centres[min(used)] - 0.5 * period
    span_hi = centres[max(used)] + 0.5 * period
    gap_mask &= (tau - 0.5 * bin_ps >= span_lo - 1e-9) & (tau + 0.5 * bin_ps <= span_hi + 1e-9)
    n_gap = int(gap_mask.sum()) if background_correction else 0
    shape = _tail_shape(tau, c, bin_ps, period, centres[side]) if n_gap else None
    if n_gap and shape is None:
        log.warning("pulsed_g2: the side-peak shape fit did not converge; no "
                    "background-corrected g²(0)")
    g2_bg_ci = (float("nan"), float("nan"))
    bg_clipped = False
    if n_gap and shape is not None:
        # Linear model of the window and gap counts: every complete window j holds
        # Σ_k a_k·F_jk + b·n_j, the gaps Σ_k a_k·F_gk + b·n_g, with a_k the area of peak k,
        # F the fraction of its unit-area shape (lifetime and IRF from the side-peak
        # profile) falling in the region, and b the flat background per bin. Peaks outside
        # the complete windows get the mean side area. Solving gives a_k and b as exact
        # linear combinations of the bin counts.
        tl, sg, _height = shape
        n_w = ks.size
        rows = np.vstack([weights, gap_mask[None, :].astype(np.float64)])
        side_all = [i for i in range(n_w) if i != i0]
        n_ext = int(min(math.ceil(40.0 * tl / period) + 1, 1000))
        edges = np.append(tau - 0.5 * bin_ps, tau[-1] + 0.5 * bin_ps)
        design = np.zeros((n_w + 1, n_w + 1))
        for k in range(int(ks[0]) - n_ext, int(ks[-1]) + n_ext + 1):
            col = rows @ np.diff(_peak_cdf(edges - (offset + k * period), tl, sg))
            j = k - int(ks[0])
            if 0 <= j < n_w:
                design[:, j] += col
            else:
                design[:, side_all] += col[:, None] / len(side_all)
        design[:, n_w] = rows.sum(axis=1)
        lin = np.linalg.solve(design, rows)  # (n_w + 1, n): areas a_k, then b
        var_c = np.maximum(c, 0.0)
        bg = float(lin[n_w] @ c)
        bg_err = math.sqrt(max(float(lin[n_w] ** 2 @ var_c), 1.0 / (n_gap * n_gap)))
        # Exact linear error propagation over independent Poisson bins.
        a = lin[i0]
        d = lin[side].mean(axis=0)
        num = float(a @ c)
        den = float(d @ c)
        if den > 0:
            g2_bg = num / den
            gap_w = gap_mask.astype(np.float64)
            central_w = np.where(gap_mask, 0.0, weights[i0])
            g2_bg_ci = _bgcorr_interval(g2_bg, (a - g2_bg * d) / den, [central_w, gap_w], c)
            g2_bg_err = 0.5 * (g2_bg_ci[1] - g2_bg_ci[0])
            if g2_bg < 0:
                log.info("pulsed_g2: background-corrected g²(0) %.4g clipped at 0", g2_bg)
                g2_bg, bg_clipped = 0.0, True
            g2_bg_ci = (max(g2_bg_ci[0], 0.0), max(g2_bg_ci[1], 0.0))
        else:
            g2_bg = g2_bg_err = float("nan")
    else:
        bg = bg_err = g2_bg = g2_bg_err = float("nan")

    side_windows = np.column_stack((centres[side] - half, centres[side] + half))
    return G2Result(
        g2_0=float(g2), g2_0_err=float(g2_err), g2_0_bgcorr=float(g2_bg),
        g2_0_bgcorr_err=float(g2_bg_err), rep_rate_hz=1e12 / period, period_ps=period,
        period_source=source, delay_ps=float(centres[i0]), zero_delay_source=zsource,
        n_side=n_side, n_side_left=len(left), n_side_right=len(right), central_counts=C,
        side_mean_counts=float(mean_s), side_counts=np.asarray(S, dtype=np.float64),
        side_delays_ps=np.asarray(centres[side], dtype=np.float64),
        background_per_bin=bg, background_per_bin_err=bg_err,
        central_window_ps=(float(centres[i0] - half), float(centres[i0] + half)),
        side_windows_ps=side_windows, window_fraction=float(window_fraction), bin_ps=bin_ps,
        g2_0_ci68=(float(g2_ci[0]), float(g2_ci[1])),
        g2_0_bgcorr_ci68=(float(g2_bg_ci[0]), float(g2_bg_ci[1])),
        g2_0_bgcorr_clipped=bool(bg_clipped),
    ), shape


def _bgcorr_interval(value: float, grad: np.ndarray, regions: list[np.ndarray],
                     c: np.ndarray) -> tuple[float, float]:
    """68 % interval of the background-corrected g²(0), unclipped.

    ``value`` is a ratio of linear combinations of the bin counts ``c`` and ``grad`` its
    gradient with respect to them. The regions whose counts may be low — the central
    window and the background gaps, each given by its bin weights (disjoint) — enter
    through the Poisson score interval of their summed count (:func:`poisson_interval`),
    scaled by the gradient per count of the region; the other bins (side peaks) through
    the linear propagation of their Poisson variances. The parts add in quadrature, on
    each side separately.
    """
    var_c = np.maximum(c, 0.0)
    var_other = float(grad * grad @ var_c)
    down2 = up2 = 0.0
    for w in regions:
        inside = w > 0
        if not np.any(inside):
            continue
        wi = w[inside]
        var_other -= float(grad[inside] ** 2 @ var_c[inside])
        beta = float(grad[inside] @ wi) / float(wi @ wi)  # g²(0) per count of the region
        count = float(wi @ c[inside])
        mu_lo, mu_hi = poisson_interval(count)
        shifts = (beta * (mu_lo - count), beta * (mu_hi - count))
        down2 += min(shifts) ** 2
        up2 += max(shifts) ** 2
    var_other = max(var_other, 0.0)
    return value - math.sqrt(down2 + var_other), value + math.sqrt(up2 + var_other)


# ---------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------


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


@dataclass(frozen=True, eq=False)
class PeakTrainFit:
    """Fit of a pulsed HBT histogram by a comb of exponential peaks with a Gaussian IRF.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Central amplitude / side amplitude, and 1σ error.
    lifetime_ns, lifetime_ns_err : float
        Shared decay constant of the peaks in ns, and 1σ error.
    delay_ps, delay_ps_err : float
        Position of the zero-delay peak in ps, and 1σ error.
    irf_sigma_ps, irf_sigma_ps_err : float
        Gaussian instrument-response σ in ps, and 1σ error.
    side_amplitude, side_amplitude_err : float
        Height of the (unconvolved) side peaks in counts per bin.
    background_per_bin, background_per_bin_err : float
        Flat background in counts per bin.
    period_ps : float
        Comb period used (fixed).
    chi2_red : float
        Reduced χ² with Poisson weights; errors are scaled by √χ²_red when it exceeds 1.
    model : ndarray of float, shape (n,)
        Best-fit model per bin.
    success : bool
        Whether the optimiser converged.
    """

    g2_0: float
    g2_0_err: float
    lifetime_ns: float
    lifetime_ns_err: float
    delay_ps: float
    delay_ps_err: float
    irf_sigma_ps: float
    irf_sigma_ps_err: float
    side_amplitude: float
    side_amplitude_err: float
    background_per_bin: float
    background_per_bin_err: float
    period_ps: float
    chi2_red: float
    model: np.ndarray
    success: bool


def _binned(shape_fn, tau: np.ndarray, bin_ps: float, n_sub: int = 3) -> np.ndarray:
    offs = (np.arange(n_sub) + 0.5) / n_sub - 0.5
    return np.mean([shape_fn(tau + o * bin_ps) for o in offs], axis=0)


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


@dataclass(frozen=True, eq=False)
class CwG2Fit:
    """Fit of a CW antibunching histogram.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Deconvolved g²(0) and its 1σ error.
    tau0_ns, tau0_ns_err : float
        Antibunching time constant τ₀ in ns.
    delay_ps, delay_ps_err : float
        Position τ_d of the dip in ps.
    irf_sigma_ps, irf_sigma_ps_err : float
        Gaussian IRF σ in ps (error 0 when fixed).
    norm_counts_per_bin, norm_counts_per_bin_err : float
        Coincidences per bin for uncorrelated light (g² = 1); error 0 when it was
        computed from rates × bin × duration.
    normalisation : str
        ``"fit"`` (long-delay level) or ``"rates"``.
    g2_tau : ndarray of float, shape (n,)
        The histogram divided by the normalisation.
    model : ndarray of float, shape (n,)
        Best-fit counts per bin.
    chi2_red : float
        Reduced χ² (errors scaled by √χ²_red when it exceeds 1).
    """

    g2_0: float
    g2_0_err: float
    tau0_ns: float
    tau0_ns_err: float
    delay_ps: float
    delay_ps_err: float
    irf_sigma_ps: float
    irf_sigma_ps_err: float
    norm_counts_per_bin: float
    norm_counts_per_bin_err: float
    normalisation: str
    g2_tau: np.ndarray
    model: np.ndarray
    chi2_red: float


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
