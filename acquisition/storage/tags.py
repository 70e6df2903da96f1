"""What a session stores of the raw time tags: the ``storage.raw_tags`` setting.

:class:`RawTagStore` sits between the data stream and the
:class:`~micropl.acquisition.storage.SessionWriter`. It

* gathers consecutive :class:`~micropl.records.TagChunk` records of
  one stream (same run, QD and kind) into records of :data:`TAG_CHUNK` tags, so that every
  compressed chunk of the tag columns is written once, full (a record still
  held when the session is killed is lost, at most ``TAG_CHUNK`` tags or
  ``max_hold_s`` of data, as if it had still been queued);
* applies the setting, one of :data:`RAW_TAG_MODES`:

  ``all`` (default)
      every tag is stored;
  ``none``
      no tag is stored;
  ``around-peaks``
      of the ``g2`` streams, only the APD tags that form at least one
      coincidence within the g² window (a pair of the two APDs with a delay
      ``t_b - t_a`` in ``[-window_ps, -window_ps + span_ps)``, the window of
      the histogram :class:`~micropl.analysis.g2.G2Accumulator` builds) are
      stored, and every tag of other channels and other kinds; the histogram
      of the stored tags is the histogram of all of them;

* and stores, when a stream ends, one :class:`RawTagsStored` record (table
  ``raw_tags_stored``, kind of the stream): the setting that applied, the
  window, and how many tags were received, stored and dropped.

A stream ends at the first stored record of another kind (the final histogram
follows the last g² chunk), at a chunk of another stream, and at the close of
the session.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from micropl.records import TagChunk, Tagged

log = logging.getLogger(__name__)

__all__ = ["RAW_TAG_MODES", "RawTagsStored", "RawTagStore", "coincidence_mask",
           "CoincidenceFilter", "raw_tag_store", "g2_window_ps"]

#: Values of the ``storage.raw_tags`` setting.
RAW_TAG_MODES = ("all", "none", "around-peaks")
#: Tags per stored record, and per chunk of the compressed tag columns (the schema's).
TAG_CHUNK = 1 << 16
#: Kinds of tag streams that ``around-peaks`` thins (the others are stored whole).
FILTERED_KINDS = ("g2",)


@dataclass(frozen=True)
class RawTagsStored:
    """What the session stored of one stream of raw tags.

    Attributes
    ----------
    mode : str
        The ``storage.raw_tags`` setting that applied (:data:`RAW_TAG_MODES`).
    window_ps, span_ps : int
        ``around-peaks``: coincidences with delays in ``[-window_ps, -window_ps +
        span_ps)`` ps were kept (0 for the other modes).
    channel_a, channel_b : int
        The two APD channels of the coincidences (0 when not used).
    n_tags : int
        Tags received.
    n_stored : int
        Tags stored.
    n_dropped : int
        Tags not stored (``n_tags - n_stored``).
    t_s : float
        Unix time when the stream ended, s.
    """

    mode: str
    window_ps: int
    span_ps: int
    channel_a: int
    channel_b: int
    n_tags: int
    n_stored: int
    n_dropped: int
    t_s: float


# =========================================================================== coincidences
def coincidence_mask(t_ps: np.ndarray, channel: np.ndarray, channel_a: int, channel_b: int,
                     window_ps: int, span_ps: int) -> np.ndarray:
    """Which tags form at least one coincidence of the two APDs within the window.

    An ``a`` tag at ``t`` pairs with a ``b`` tag at ``t'`` when ``-window_ps <= t' - t <
    -window_ps + span_ps``; both are marked. Tags of other channels are not marked.

    Parameters
    ----------
    t_ps : ndarray of int64
        Sorted arrival times, ps.
    channel : ndarray of uint8
        Channel of each tag.
    channel_a, channel_b : int
        Start and stop channels.
    window_ps, span_ps : int
        Delay window ``[-window_ps, -window_ps + span_ps)``, ps.

    Returns
    -------
    ndarray of bool
        True for each tag that pairs.
    """
    t_ps = np.asarray(t_ps, dtype=np.int64)
    channel = np.asarray(channel)
    is_a = channel == channel_a
    is_b = channel == channel_b
    ta, tb = t_ps[is_a], t_ps[is_b]
    lo, hi = np.int64(-window_ps), np.int64(span_ps - window_ps)
    mask = np.zeros(t_ps.shape[0], dtype=bool)
    # a at t pairs with some b in [t + lo, t + hi)
    mask[is_a] = np.searchsorted(tb, ta + hi, "left") > np.searchsorted(tb, ta + lo, "left")
    # b at t pairs with some a in (t - hi, t - lo]
    mask[is_b] = np.searchsorted(ta, tb - lo, "right") > np.searchsorted(ta, tb - hi, "right")
    return mask


class CoincidenceFilter:
    """Streaming :func:`coincidence_mask`: the same tags, chunk by chunk.

    A tag is decided once every tag that could pair with it is known: chunks tile
    time, so after a chunk ending at ``t_stop_ps`` every tag earlier than
    ``t_stop_ps - margin`` is decided (``margin`` = the longest delay); the rest
    wait for the next chunk, or for :meth:`finish`.
    """

    def __init__(self, channel_a: int, channel_b: int, window_ps: int, span_ps: int) -> None:
        if window_ps <= 0 or span_ps <= window_ps:
            raise ValueError(f"coincidence window [-{window_ps}, {span_ps - window_ps}) ps "
                             f"must contain 0")
        self.channel_a, self.channel_b = int(channel_a), int(channel_b)
        self.window_ps, self.span_ps = int(window_ps), int(span_ps)
        self.margin_ps = max(self.window_ps, self.span_ps - self.window_ps)
        self._t = np.zeros(0, np.int64)   # context (decided) + pending tags
        self._c = np.zeros(0, np.uint8)
        self._n_decided = 0               # of _t, the first ones are decided (context)
        self._start_ps: int | None = None
        self._overflow = False
        self._missed = 0

    def feed(self, chunk: TagChunk) -> TagChunk | None:
        """Add ``chunk``; the stored part of the tags decided now (None: none decided)."""
        if self._start_ps is None:
            self._start_ps = int(chunk.t_start_ps)
        self._overflow |= bool(chunk.overflow)
        self._missed += int(chunk.missed_events)
        self._t = np.concatenate((self._t, np.asarray(chunk.t_ps, np.int64)))
        self._c = np.concatenate((self._c, np.asarray(chunk.channel, np.uint8)))
        # every tag earlier than t_stop_ps is known: decided are those before stop
        stop = int(chunk.t_stop_ps) - self.margin_ps
        return self._decide(stop) if stop > self._start_ps else None

    def finish(self, t_stop_ps: int) -> TagChunk | None:
        """Decide the remaining tags (no tag follows); None when nothing was fed."""
        if self._start_ps is None:
            return None
        return self._decide(max(int(t_stop_ps), self._start_ps), final=True)

    def _decide(self, stop_ps: int, final: bool = False) -> TagChunk:
        """Decide the tags earlier than ``stop_ps`` (all when ``final``)."""
        n = self._t.shape[0]
        n_ready = n if final else int(np.searchsorted(self._t, stop_ps, "left"))
        mask = coincidence_mask(self._t, self._c, self.channel_a, self.channel_b,
                                self.window_ps, self.span_ps)
        sel = slice(self._n_decided, n_ready)
        c = self._c[sel]
        keep = mask[sel] | ((c != self.channel_a) & (c != self.channel_b))
        out = TagChunk(self._t[sel][keep], c[keep], self._start_ps, stop_ps,
                       self._overflow, self._missed)
        self._start_ps = stop_ps
        self._overflow, self._missed = False, 0
        # keep as context only what a later tag (at stop_ps or later) can pair with
        cut = min(int(np.searchsorted(self._t, stop_ps - self.margin_ps, "left")), n_ready)
        self._t, self._c = self._t[cut:], self._c[cut:]
        self._n_decided = n_ready - cut
        return out


# =========================================================================== the store
def _concat(parts: list[TagChunk]) -> TagChunk:
    if len(parts) == 1:
        return parts[0]
    return TagChunk(np.concatenate([p.t_ps for p in parts]),
                    np.concatenate([p.channel for p in parts]),
                    int(parts[0].t_start_ps), int(parts[-1].t_stop_ps),
                    any(p.overflow for p in parts), sum(int(p.missed_events) for p in parts))


def _split(chunk: TagChunk, n: int) -> tuple[TagChunk, TagChunk] | None:
    """The first ``n`` tags (fewer at equal timestamps) and the rest, tiling its interval.

    None when it cannot be cut (every tag shares one timestamp).
    """
    boundary = int(chunk.t_ps[n])
    k = int(np.searchsorted(chunk.t_ps, boundary, "left"))
    if k == 0:  # all of the first n share one timestamp: cut after them instead
        k = int(np.searchsorted(chunk.t_ps, boundary, "right"))
        if k >= chunk.t_ps.shape[0]:
            return None
        boundary = int(chunk.t_ps[k])
    head = TagChunk(chunk.t_ps[:k], chunk.channel[:k], int(chunk.t_start_ps), boundary,
                    chunk.overflow, chunk.missed_events)
    tail = TagChunk(chunk.t_ps[k:], chunk.channel[k:], boundary, int(chunk.t_stop_ps))
    return head, tail


class _Stream:
    """One stream of tag chunks being gathered (and filtered)."""

    def __init__(self, key: tuple[int, int, str], mode: str,
                 coincidences: CoincidenceFilter | None) -> None:
        self.key = key
        self.mode = mode
        self.filter = coincidences
        self.held: list[TagChunk] = []
        self.n_held = 0
        self.since = time.monotonic()
        self.n_tags = 0
        self.n_stored = 0
        self.t_stop_ps = 0


class RawTagStore:
    """Gathers, thins and summarises the raw tags on their way to the session file.

    Parameters
    ----------
    mode : str
        One of :data:`RAW_TAG_MODES`.
    channels : (int, int)
        The two APD channels (``around-peaks``).
    window_ps, span_ps : int
        The g² delay window ``[-window_ps, -window_ps + span_ps)`` (``around-peaks``).
    chunk_tags : int
        Tags per stored record (the chunk length of the tag columns).
    max_hold_s : float
        Longest time tags are held before being stored, wall-clock s.
    clock : callable
        Monotonic clock, s (tests).
    """

    def __init__(self, mode: str = "all", *, channels: tuple[int, int] = (1, 2),
                 window_ps: int = 0, span_ps: int = 0, chunk_tags: int | None = None,
                 max_hold_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in RAW_TAG_MODES:
            raise ValueError(f"raw_tags: {mode!r} is not one of {', '.join(RAW_TAG_MODES)}")
        if mode == "around-peaks" and not 0 < window_ps < span_ps:
            raise ValueError(f"around-peaks needs a window containing 0, got window_ps "
                             f"{window_ps}, span_ps {span_ps}")
        self.mode = mode
        self.channels = (int(channels[0]), int(channels[1]))
        self.window_ps, self.span_ps = int(window_ps), int(span_ps)
        self.chunk_tags = int(chunk_tags or TAG_CHUNK)
        self.max_hold_s = float(max_hold_s)
        self._clock = clock
        self._stream: _Stream | None = None

    def process(self, items: Iterable[Any]) -> list[Any]:
        """The records to store for ``items`` (stored records, in stream order)."""
        out: list[Any] = []
        for item in items:
            record = item.record if isinstance(item, Tagged) else None
            if isinstance(record, TagChunk):
                key = (int(item.run_id), int(item.qd_id), item.kind)
                if self._stream is not None and self._stream.key != key:
                    out.extend(self._end())
                if self._stream is None:
                    self._stream = self._open(key)
                out.extend(self._feed(self._stream, record))
            else:
                out.extend(self._end())
                out.append(item)
        stream = self._stream
        if stream is not None and stream.held and \
                self._clock() - stream.since >= self.max_hold_s:
            out.extend(self._release(stream, everything=True))
        return out

    def close(self) -> list[Any]:
        """Everything still held, and the summary of the open stream."""
        return self._end()

    # ----------------------------------------------------------------- internals
    def _open(self, key: tuple[int, int, str]) -> _Stream:
        mode = self.mode
        coincidences = None
        if mode == "around-peaks":
            if key[2] in FILTERED_KINDS:
                coincidences = CoincidenceFilter(*self.channels, self.window_ps, self.span_ps)
            else:
                mode = "all"
        return _Stream(key, mode, coincidences)

    def _feed(self, stream: _Stream, chunk: TagChunk) -> list[Any]:
        stream.n_tags += len(chunk)
        stream.t_stop_ps = int(chunk.t_stop_ps)
        if stream.mode == "none":
            return []
        kept = chunk if stream.filter is None else stream.filter.feed(chunk)
        return [] if kept is None else self._hold(stream, kept)

    def _hold(self, stream: _Stream, chunk: TagChunk) -> list[Any]:
        if not stream.held:
            stream.since = self._clock()
        stream.held.append(chunk)
        stream.n_held += len(chunk)
        return self._release(stream, everything=False) if stream.n_held >= self.chunk_tags \
            else []

    def _release(self, stream: _Stream, *, everything: bool) -> list[Any]:
        if not stream.held:
            return []
        merged = _concat(stream.held)
        stream.held, stream.n_held = [], 0
        out = []
        while len(merged) > self.chunk_tags:
            parts = _split(merged, self.chunk_tags)
            if parts is None:
                break
            out.append(parts[0])
            merged = parts[1]
        if everything or len(merged) >= self.chunk_tags:
            out.append(merged)
        else:
            stream.held, stream.n_held = [merged], len(merged)
        stream.n_stored += sum(len(c) for c in out)
        run_id, qd_id, kind = stream.key
        return [Tagged(c, run_id, qd_id, kind) for c in out]

    def _end(self) -> list[Any]:
        stream, self._stream = self._stream, None
        if stream is None:
            return []
        out: list[Any] = []
        if stream.filter is not None:
            rest = stream.filter.finish(stream.t_stop_ps)
            if rest is not None:
                stream.held.append(rest)
        out.extend(self._release(stream, everything=True))
        channels = self.channels if stream.filter is not None else (0, 0)
        summary = RawTagsStored(
            stream.mode, self.window_ps if stream.filter else 0,
            self.span_ps if stream.filter else 0, channels[0], channels[1], stream.n_tags,
            stream.n_stored, stream.n_tags - stream.n_stored, time.time())
        run_id, qd_id, kind = stream.key
        if stream.n_tags != stream.n_stored:
            log.info("run %d QD %d: %s tags: stored %d of %d (raw_tags %s)", run_id, qd_id,
                     kind, stream.n_stored, stream.n_tags, stream.mode)
        out.append(Tagged(summary, run_id, qd_id, kind))
        return out



def g2_window_ps(rep_rate_hz: float, n_side: int, bin_ps: int) -> tuple[int, int]:
    """``(window_ps, span_ps)`` of the live g² histogram: delays ``[-window_ps,
    -window_ps + span_ps)`` (:func:`~micropl.analysis.g2.pulsed_window_ps`,
    :func:`~micropl.analysis.g2.histogram_bins`)."""
    from micropl.analysis.g2 import histogram_bins, pulsed_window_ps

    window_ps = pulsed_window_ps(rep_rate_hz, n_side, bin_ps)
    return window_ps, histogram_bins(bin_ps, window_ps)[1]


def raw_tag_store(setup: Any, analysis: Any, mode: str | None = None) -> RawTagStore:
    """The store of a session on ``setup`` with the live ``analysis`` settings.

    ``mode`` overrides the setup's ``storage.raw_tags`` (the CLI's ``--raw-tags``).
    """
    storage = getattr(setup.config, "storage", None)
    mode = mode or (storage.raw_tags if storage is not None else "all")
    if mode != "around-peaks":
        return RawTagStore(mode)
    window_ps, span_ps = g2_window_ps(setup.laser.rep_rate_hz, analysis.n_side,
                                      analysis.g2_bin_ps)
    return RawTagStore(mode, channels=tuple(setup.apd_channels), window_ps=window_ps,
                       span_ps=span_ps)
