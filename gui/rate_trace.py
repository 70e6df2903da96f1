"""The live count-rate trace: both APDs and their sum over the last minutes, bounded.

:class:`RateTrace` bins the time tags already in the stream (every
:class:`~micropl.records.TagChunk`, whatever the run) into bins of
``bin_s`` of counting time and keeps the newest ``span_s`` of them in a ring
buffer of fixed size, so memory never grows. The time axis is counting time:
the chunks' own durations laid end to end (the same as wall time while a
measurement runs in real time; a fast-mode or replayed run fills it at its own
pace). Rates between runs, read back from the idle tagger, are added as bins
of their poll interval (:meth:`RateTrace.add_rates`).

Thread-safe: the stream's subscriber thread adds, the GUI thread reads
(:meth:`RateTrace.arrays`).
"""

from __future__ import annotations

import threading

import numpy as np

from micropl.records import TagChunk

__all__ = ["RateTrace", "TRACE_BIN_S", "TRACE_SPAN_S"]

#: Width of one trace bin, s of counting time (blinking on 100 ms scales stays visible).
TRACE_BIN_S = 0.1
#: How much of the past the trace keeps and shows, s.
TRACE_SPAN_S = 300.0


class RateTrace:
    """Ring buffer of (time, APD A rate, APD B rate) bins.

    Parameters
    ----------
    channels : (int, int)
        The two APD channels (the setup's ``apd_channels``).
    bin_s : float
        Bin width of the tag chunks, s.
    span_s : float
        Time kept, s; the buffer holds ``ceil(span_s / bin_s)`` bins.
    """

    def __init__(self, channels: tuple[int, int] = (1, 2), *, bin_s: float = TRACE_BIN_S,
                 span_s: float = TRACE_SPAN_S) -> None:
        if not bin_s > 0 or not span_s >= bin_s:
            raise ValueError(f"rate trace: need 0 < bin_s ≤ span_s, got {bin_s}, {span_s}")
        self.channels = (int(channels[0]), int(channels[1]))
        self.bin_s = float(bin_s)
        self.span_s = float(span_s)
        self.size = int(np.ceil(span_s / bin_s))
        self._t = np.zeros(self.size)  # bin end, s of counting time
        self._rates = np.zeros((self.size, 2))  # counts/s per APD
        self._n = 0  # bins ever added (the next one goes to index _n % size)
        self._now_s = 0.0  # counting time at the end of the newest bin
        self._partial = np.zeros(2)  # counts of chunks shorter than a bin, not yet a bin
        self._partial_s = 0.0
        self._lock = threading.Lock()
        #: Incremented on every change (the display redraws when it moved).
        self.version = 0

    def add_chunk(self, chunk: TagChunk) -> None:
        """Bin a chunk's tags of the two APD channels into bins of about ``bin_s``.

        A chunk of at least ``bin_s`` is cut into ``floor(duration / bin_s)`` equal
        bins; shorter chunks (a tagger read every 20 ms) are summed until they
        cover ``bin_s``. Each bin's rate is its counts over its width.
        """
        duration_s = chunk.duration_s
        if duration_s <= 0:
            return
        if duration_s < self.bin_s:
            counts = [int(np.count_nonzero(np.asarray(chunk.channel) == c))
                      for c in self.channels]
            with self._lock:
                self._partial += counts
                self._partial_s += duration_s
                full = self._partial_s >= self.bin_s * (1 - 1e-9)
                if full:
                    rates = self._partial / self._partial_s
                    width = self._partial_s
                    self._partial, self._partial_s = np.zeros(2), 0.0
            if full:
                self._append(rates[None, :], width)
            return
        n_bins = int(np.floor(duration_s / self.bin_s + 1e-9))
        width_ps = (chunk.t_stop_ps - chunk.t_start_ps) / n_bins
        t = np.asarray(chunk.t_ps)
        ch = np.asarray(chunk.channel)
        counts = np.zeros((n_bins, 2))
        for j, channel in enumerate(self.channels):
            times = t[ch == channel]
            if times.size:
                index = np.clip(((times - chunk.t_start_ps) // width_ps).astype(np.int64), 0,
                                n_bins - 1)
                counts[:, j] = np.bincount(index, minlength=n_bins)
        self._append(counts / (width_ps * 1e-12), width_ps * 1e-12)

    def add_rates(self, rates_cps: dict[int, float], duration_s: float) -> None:
        """One bin of rates measured over ``duration_s`` (e.g. an idle tagger's readback)."""
        if not duration_s > 0:
            return
        values = np.array([[float(rates_cps.get(c, np.nan)) for c in self.channels]])
        self._append(values, float(duration_s))

    def _append(self, rates: np.ndarray, width_s: float) -> None:
        with self._lock:
            for row in rates[-self.size:]:
                self._now_s += width_s
                i = self._n % self.size
                self._t[i] = self._now_s
                self._rates[i] = row
                self._n += 1
            self.version += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(t, rate A, rate B, sum) of the bins within ``span_s`` of the newest, oldest first.

        ``t`` is in s relative to the newest bin's end (≤ 0); rates in counts/s.
        """
        with self._lock:
            n = min(self._n, self.size)
            order = (np.arange(self._n - n, self._n)) % self.size
            t = self._t[order] - self._now_s
            rates = self._rates[order].copy()
        keep = t > -self.span_s - 1e-9
        t, rates = t[keep], rates[keep]
        return t, rates[:, 0], rates[:, 1], rates.sum(axis=1)

    def __len__(self) -> int:
        with self._lock:
            return min(self._n, self.size)
