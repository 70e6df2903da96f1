"""Exact start–multi-stop cross-correlation of two sorted time-tag streams.

:func:`cross_correlate` (numba, one pass with two pointers) and the binning convention of
:func:`histogram_bins` (see :mod:`micropl.analysis.g2`).
"""

from __future__ import annotations

import numba
import numpy as np

from micropl.errors import AnalysisInputError

#: Most bins of a correlation histogram (:func:`histogram_bins`): 32 MB of counts.
MAX_HISTOGRAM_BINS = 4_194_304


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

    Examples
    --------
    >>> from micropl.analysis.g2 import check_channel_pair
    >>> check_channel_pair(1, 2)
    (1, 2)
    """
    a, b = int(channel_a), int(channel_b)
    if a == b:
        raise AnalysisInputError(
            f"channels {a} and {b}: the start and stop channels must be two different "
            "detectors (a channel correlated with itself gives no g²)")
    return a, b


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

    Examples
    --------
    >>> from micropl.analysis.g2 import histogram_bins
    >>> histogram_bins(100, 1000)
    (20, 2000)
    >>> histogram_bins(300, 1000)                          # the last bin is full width
    (7, 2100)
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
