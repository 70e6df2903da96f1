"""The incremental correlator :class:`G2Accumulator`, fed time-tag chunks as they arrive.
"""

from __future__ import annotations

import numpy as np

from micropl.analysis.g2.correlate import (
    _as_tags,
    _bin_centres,
    _correlate_into,
    _is_sorted,
    check_channel_pair,
    histogram_bins,
)
from micropl.errors import AnalysisInputError


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

        Any object with these attributes works, e.g. ``micropl.records.TagChunk``;
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
