"""The APD over-rate interlock: a sliding 10 ms window over every tag a run reads.

What "too fast" means
---------------------
An APD channel is over its rate when **more than** ``max_rate_cps × 10 ms``
tags of that one channel (rounded down to whole tags: 20 000 at 2 Mcps) fall in
some half-open interval ``[a, a + 10 ms)`` of tag time, wherever ``a`` lies.
The limit is per APD channel, not for their sum; a sync channel is not
protected. Windows span chunk boundaries: the last 10 ms of tags of each APD
channel are kept from one chunk to the next. A chunk shorter than 10 ms is
still judged over 10 ms windows, with the tags of the chunks before it; the
first chunk of a run has no past and is judged on the tags it has.

When the rate is not known
--------------------------
A chunk that cannot be trusted to hold every tag counts as an over-rate: a
buffer overflow (``overflow=True`` or ``missed_events > 0``), an interval that
runs backwards, tags outside ``[t_start_ps, t_stop_ps)``, unsorted or
non-integer times, arrays of different lengths, or a chunk that does not start
where the previous one stopped (a gap or an overlap), unless the tagger was
started again in between (which may restart its time base).

Where it runs
-------------
The runner hands procedures a :class:`RunSetup`, whose tagger is a
:class:`GuardedTagger`: its ``read`` runs the interlock on every chunk before
returning it, so a read whose result is discarded is checked too. The
interlock remembers the verdict of the last chunks it saw, so a chunk that is
read and then emitted is counted once.

>>> import numpy as np
>>> from micropl.drivers.interfaces import TagChunk
>>> lock = ApdRateInterlock((1, 2), max_rate_cps=2e6)
>>> burst = np.arange(20_001, dtype=np.int64) * 400_000  # 2.5 Mcps for 8 ms
>>> chunk = TagChunk(burst, np.ones(burst.size, np.uint8), 0, 10_000_000_000)
>>> "exceeds the protection threshold" in lock.check(chunk)
True
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from micropl.records import TagChunk

log = logging.getLogger(__name__)

__all__ = ["ApdRateInterlock", "GuardedTagger", "RunSetup", "WINDOW_S", "allowed_tags",
           "merge_chunks", "readback_over_rate",
           "unknown_rate_problem"]

#: Width of the sliding window in which an APD's rate is measured, s.
WINDOW_S = 0.010
#: Largest tag time accepted, ps (about 53 days; keeps ``t + window`` within int64).
_T_MAX_PS = 2**62
#: Chunks whose verdict is remembered (a chunk read and then emitted is counted once).
_REMEMBERED = 8


def allowed_tags(max_rate_cps: float, window_ps: int) -> int:
    """Most tags of one channel allowed in a window: ``floor(max_rate_cps × window)``.

    Parameters
    ----------
    max_rate_cps : float
        Protection threshold, counts/s.
    window_ps : int
        Window width, ps.

    Returns
    -------
    int
        One more tag than this in a window trips the interlock.
    """
    exact = float(max_rate_cps) * int(window_ps) / 1e12
    nearest = round(exact)
    return int(nearest) if abs(exact - nearest) <= 1e-9 * max(1.0, exact) else math.floor(exact)


@numba.njit(cache=True, nogil=True)
def _channel_window(tail_ps, t_ps, channel, c, allowed, window_ps, keep_from_ps):  # pragma: no cover
    """One channel's pass of :meth:`ApdRateInterlock.check`, in one call.

    The channel's tags (``tail_ps`` carried from earlier chunks, then those of
    ``channel == c`` in ``t_ps``) are scanned with two pointers for the densest
    half-open window of ``window_ps`` (the first one of the largest count). Returns the tags to carry (those at or after
    ``keep_from_ps``), and the count and start of the densest window when it holds
    more than ``allowed`` tags (count -1 otherwise). The densest window can always
    start at a tag, so the scan tries each tag as a start.
    """
    n_mine = 0
    for i in range(t_ps.size):
        if channel[i] == c:
            n_mine += 1
    n = tail_ps.size + n_mine
    t = np.empty(n, np.int64)
    t[:tail_ps.size] = tail_ps
    k = tail_ps.size
    for i in range(t_ps.size):
        if channel[i] == c:
            t[k] = t_ps[i]
            k += 1
    best, best_start = -1, np.int64(0)
    if n > allowed:
        j = 0
        for i in range(n):
            if j < i:
                j = i
            while j < n and t[j] < t[i] + window_ps:
                j += 1
            if j - i > best:
                best, best_start = j - i, t[i]
        if best <= allowed:
            best = -1
    keep = np.searchsorted(t, keep_from_ps, side="left")
    return t[keep:].copy(), best, best_start


def readback_over_rate(rates_cps: dict[int, float], channels: tuple[int, ...],
                       max_rate_cps: float) -> str | None:
    """Why a count-rate readback (no tags: e.g. the idle GUI's) must switch the laser off.

    Parameters
    ----------
    rates_cps : dict of int to float
        The tagger's ``count_rates_hz()``: channel → counts/s.
    channels : tuple of int
        The APD channels (each protected on its own).
    max_rate_cps : float
        Protection threshold per APD, counts/s.

    Returns
    -------
    str or None
        The reason, for an APD above the threshold or a rate that is not a
        finite number; None otherwise.
    """
    for c in channels:
        rate = rates_cps.get(c, 0.0)
        try:
            rate = float(rate)
        except (TypeError, ValueError):
            rate = float("nan")
        if not rate <= max_rate_cps:
            return (f"APD channel {c} reads {rate / 1e6:.2f} Mcps, above the protection "
                    f"threshold {max_rate_cps / 1e6:.2f} Mcps per APD "
                    "(safety.apd_max_rate_cps): laser switched off")
    return None


def unknown_rate_problem(chunk: Any) -> str | None:
    """Why ``chunk`` cannot tell the APD rate (None when it can).

    Parameters
    ----------
    chunk : TagChunk
        What a tagger read returned.

    Returns
    -------
    str or None
        What is wrong with it: overflow, missed events, or an inconsistent interval.
    """
    if not isinstance(chunk, TagChunk):
        return f"the tagger returned {type(chunk).__name__}, not tag data"
    start, stop = chunk.t_start_ps, chunk.t_stop_ps
    where = f"in [{_s(start)}, {_s(stop)}) s"
    missed = chunk.missed_events
    if chunk.overflow or missed:
        lost = f"{missed} missed events" if missed else "an unknown number of tags lost"
        return f"buffer overflow ({lost}) {where}" if chunk.overflow \
            else f"{lost} reported {where}"
    t, channel = np.asarray(chunk.t_ps), np.asarray(chunk.channel)
    if t.ndim != 1 or channel.shape != t.shape:
        return (f"inconsistent tag chunk {where}: {t.shape} times but {channel.shape} "
                "channels")
    if t.dtype.kind not in "iu" or channel.dtype.kind not in "iu":
        return f"inconsistent tag chunk {where}: times of type {t.dtype}, channels {channel.dtype}"
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool)
               for v in (start, stop)):
        return f"inconsistent tag chunk: interval bounds {start!r}, {stop!r} are not integer ps"
    if stop < start:
        return f"inconsistent tag chunk: it stops at {_s(stop)} s, before its start {_s(start)} s"
    if not -_T_MAX_PS < start <= stop < _T_MAX_PS:
        return f"inconsistent tag chunk: interval [{start}, {stop}) ps out of range"
    if t.size and (t[0] < start or t[-1] >= stop):
        return f"inconsistent tag chunk: tags outside its interval [{_s(start)}, {_s(stop)}) s"
    if t.size > 1 and bool(np.any(t[1:] < t[:-1])):
        return f"inconsistent tag chunk {where}: tag times not sorted"
    return None


def _s(t_ps: Any) -> str:
    """A tag time in s, for messages."""
    try:
        return f"{int(t_ps) * 1e-12:.6f}"
    except (TypeError, ValueError, OverflowError):
        return repr(t_ps)


class ApdRateInterlock:
    """The sliding-window over-rate check of one run (see the module docstring).

    Parameters
    ----------
    channels : tuple of int
        The APD channels, each protected on its own.
    max_rate_cps : float
        Protection threshold per APD channel, counts/s (``safety.apd_max_rate_cps``).
    window_s : float
        Window width, s.
    source : str
        The tagger, as messages name it.
    """

    def __init__(self, channels: tuple[int, ...], max_rate_cps: float, *,
                 window_s: float = WINDOW_S, source: str = "tagger") -> None:
        self.channels = tuple(int(c) for c in channels)
        self.max_rate_cps = float(max_rate_cps)
        self.window_ps = int(round(window_s * 1e12))
        self.allowed = allowed_tags(self.max_rate_cps, self.window_ps)
        self.source = source
        self._tail: dict[int, np.ndarray] = {c: np.zeros(0, np.int64) for c in self.channels}
        self._last_stop_ps: int | None = None
        self._restarted = False
        self._seen: collections.deque[tuple[Any, str | None]] = collections.deque(
            maxlen=_REMEMBERED)

    def remember(self, chunk: Any, verdict: str | None) -> None:
        """Take ``verdict`` for ``chunk`` without counting its tags (they were checked)."""
        self._seen.append((chunk, verdict))

    def verdict_of(self, chunk: Any) -> str | None:
        """The verdict given to ``chunk`` (None when it passed or was never checked)."""
        return next((v for seen, v in self._seen if seen is chunk), None)

    def restart(self) -> None:
        """The tagger was started again: its time base may restart at the next chunk."""
        self._restarted = True

    def check(self, chunk: Any, *, read: bool = False) -> str | None:
        """Feed one chunk; the reason to switch the laser off, or None.

        Parameters
        ----------
        chunk : TagChunk
            Tags to check.
        read : bool
            True when ``chunk`` is what a tagger read just returned: it is judged
            even if it is the same object as an earlier chunk (a tagger that
            returns the same chunk twice fails the tiling check). Otherwise
            (``emit``), a chunk already checked gets its first verdict again and
            is not counted twice.
        """
        if not read:
            for seen, verdict in self._seen:
                if seen is chunk:
                    return verdict
        verdict = self._judge(chunk)
        self._seen.append((chunk, verdict))
        return verdict

    def _judge(self, chunk: Any) -> str | None:
        problem = unknown_rate_problem(chunk)
        if problem is None:
            problem = self._continuity(chunk)
        if problem is not None:
            return (f"{self.source}: {problem}: the APD count rate is unknown, treated as "
                    f"above the protection threshold; laser switched off")
        worst: tuple[int, int, int] | None = None  # count, channel, start ps
        t_all = np.ascontiguousarray(chunk.t_ps, np.int64)
        channel_all = np.ascontiguousarray(chunk.channel)
        keep_from = int(chunk.t_stop_ps) - self.window_ps + 1
        for c in self.channels:
            self._tail[c], count, start_ps = _channel_window(
                self._tail[c], t_all, channel_all, c, self.allowed, self.window_ps, keep_from)
            if count >= 0 and (worst is None or count > worst[0]):
                worst = (int(count), c, int(start_ps))
        self._last_stop_ps = int(chunk.t_stop_ps)
        self._restarted = False
        if worst is None:
            return None
        count, c, start_ps = worst
        window_s = self.window_ps * 1e-12
        return (f"APD channel {c} at {count / window_s / 1e6:.2f} Mcps ({count} tags in "
                f"{window_s * 1e3:g} ms from t = {_s(start_ps)} s) exceeds the protection "
                f"threshold {self.max_rate_cps / 1e6:.2f} Mcps per APD "
                f"(safety.apd_max_rate_cps): laser switched off")

    def _continuity(self, chunk: TagChunk) -> str | None:
        """Chunks of one stream tile time: an overlap or a gap without a restart between.

        After :meth:`restart` a chunk may start anywhere; one that starts before
        the previous chunk stopped means the time base restarted, and the past
        is dropped instead of being mixed with the new times.
        """
        last = self._last_stop_ps
        if last is None or chunk.t_start_ps == last:
            return None
        if self._restarted:
            if chunk.t_start_ps < last:
                log.debug("%s: time base restarted (%s s after %s s)", self.source,
                          _s(chunk.t_start_ps), _s(last))
                self._tail = {c: np.zeros(0, np.int64) for c in self.channels}
            return None
        if chunk.t_start_ps < last:
            return (f"tag chunk starts at {_s(chunk.t_start_ps)} s, before the previous one "
                    f"stopped ({_s(last)} s)")
        return (f"tag chunk starts at {_s(chunk.t_start_ps)} s, after a gap since the "
                f"previous one stopped ({_s(last)} s): the tags between are missing")


def merge_chunks(parts: list[TagChunk], max_tags: int | None = None) -> TagChunk:
    """Consecutive chunks (tiling time) as one; beyond ``max_tags`` the oldest tags are lost.

    Parameters
    ----------
    parts : list of TagChunk
        In time order, each starting where the one before stopped.
    max_tags : int, optional
        Most tags kept; the oldest beyond it are dropped and counted in
        ``missed_events`` (with ``overflow=True``), as a full device buffer would.

    Returns
    -------
    TagChunk
        Covering ``[parts[0].t_start_ps, parts[-1].t_stop_ps)``.
    """
    t = np.concatenate([np.asarray(c.t_ps, np.int64) for c in parts])
    channel = np.concatenate([np.asarray(c.channel, np.uint8) for c in parts])
    overflow = any(bool(c.overflow) for c in parts)
    missed = sum(int(c.missed_events) for c in parts)
    if max_tags is not None and t.size > max_tags:
        drop = t.size - max_tags
        t, channel = t[drop:], channel[drop:]
        overflow, missed = True, missed + drop
    return TagChunk(t, channel, int(parts[0].t_start_ps), int(parts[-1].t_stop_ps),
                    overflow=overflow, missed_events=missed)


class GuardedTagger:
    """A tagger whose every ``read`` runs the over-rate interlock before returning.

    Everything else is the tagger's own (attributes and methods are looked up
    on it at each use). While the procedure does not read (a paused run),
    :meth:`watch` reads and checks the tags and holds them; the procedure's
    next ``read`` returns them together with the new ones, so its data still
    tile time.

    Parameters
    ----------
    tagger : TimeTagger
        The instrument.
    on_read : callable
        ``on_read(chunk)``, called with every chunk read, before it is returned
        (the runner checks it and, when it trips, switches the laser off).
    on_start : callable
        ``on_start()``, called before every ``start`` (the time base may restart).
    on_merge : callable
        ``on_merge(merged, parts)``: held chunks and a new one are handed over
        as ``merged`` (already checked, as ``parts``).
    max_held_tags : int
        Most tags held for the procedure; older ones are dropped and the chunk
        handed over says so (``overflow``, ``missed_events``).
    """

    def __init__(self, tagger: Any, on_read: Callable[[Any], None],
                 on_start: Callable[[], None],
                 on_merge: Callable[[TagChunk, list[TagChunk]], None], *,
                 max_held_tags: int = 4_000_000) -> None:
        self._tagger = tagger
        self._on_read = on_read
        self._on_start = on_start
        self._on_merge = on_merge
        self._max_held = int(max_held_tags)
        self._held: list[TagChunk] = []
        self.running = False

    @property
    def instrument(self) -> Any:
        """The tagger itself."""
        return self._tagger

    def start(self, channels: tuple[int, ...], *args: Any, **kwargs: Any) -> None:
        """Start streaming ``channels`` (see the tagger's ``start``)."""
        self._on_start()
        self._held = []
        self._tagger.start(channels, *args, **kwargs)
        self.running = True

    def stop(self) -> None:
        """Stop streaming (tags held for the procedure are dropped)."""
        self.running = False
        self._held = []
        self._tagger.stop()

    def read(self) -> TagChunk:
        """Tags since the previous read, after the interlock has checked them."""
        chunk = self._tagger.read()
        self._on_read(chunk)
        if not self._held or not isinstance(chunk, TagChunk):
            return chunk
        parts, self._held = [*self._held, chunk], []
        merged = merge_chunks(parts, self._max_held)
        self._on_merge(merged, parts)
        return merged

    def watch(self) -> None:
        """Read and check the tags now, for a procedure that is not reading (paused).

        They are held and handed over with the procedure's next :meth:`read`.
        Nothing happens while the tagger is not streaming.
        """
        if not self.running:
            return
        chunk = self._tagger.read()
        self._on_read(chunk)
        if isinstance(chunk, TagChunk):
            self._held.append(chunk)
            if sum(len(c) for c in self._held) > self._max_held and len(self._held) > 1:
                self._held = [merge_chunks(self._held, self._max_held)]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._tagger, name)

    def __repr__(self) -> str:
        return f"GuardedTagger({self._tagger!r})"


class LatchedLaser:
    """A laser that cannot be switched on again in a run whose interlock has tripped.

    Parameters
    ----------
    laser : Laser
        The instrument.
    refuse : callable
        ``refuse()`` raises when emission may not be switched on (the runner
        raises :class:`~micropl.acquisition.runner.Aborted` after a trip).
    """

    def __init__(self, laser: Any, refuse: Callable[[], None]) -> None:
        object.__setattr__(self, "_laser", laser)
        object.__setattr__(self, "_refuse", refuse)

    @property
    def instrument(self) -> Any:
        """The laser itself."""
        return self._laser

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._laser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "emission_on" and value:
            self._refuse()
        setattr(self._laser, name, value)

    def __repr__(self) -> str:
        return f"LatchedLaser({self._laser!r})"


class RunSetup:
    """The setup as a run's procedures see it: the tagger guarded, the laser latched.

    Every other attribute is the setup's own. The wrappers follow the setup: if
    its tagger or laser object is replaced, the new one is wrapped.

    Parameters
    ----------
    setup : Setup
        The instruments.
    on_read, on_start, on_merge : callable
        See :class:`GuardedTagger`.
    refuse_laser_on : callable
        See :class:`LatchedLaser`.
    """

    def __init__(self, setup: Any, on_read: Callable[[Any], None],
                 on_start: Callable[[], None],
                 on_merge: Callable[[TagChunk, list[TagChunk]], None],
                 refuse_laser_on: Callable[[], None]) -> None:
        self._setup = setup
        self._hooks = (on_read, on_start, on_merge, refuse_laser_on)
        self._tagger: GuardedTagger | None = None
        self._laser: LatchedLaser | None = None

    @property
    def tagger(self) -> GuardedTagger:
        """The tagger; ``read`` runs the interlock."""
        raw = self._setup.tagger
        if self._tagger is None or self._tagger.instrument is not raw:
            self._tagger = GuardedTagger(raw, *self._hooks[:3])
        return self._tagger

    @property
    def laser(self) -> LatchedLaser:
        """The laser; refuses emission on after a trip."""
        raw = self._setup.laser
        if self._laser is None or self._laser.instrument is not raw:
            self._laser = LatchedLaser(raw, self._hooks[3])
        return self._laser

    def watch(self) -> None:
        """Check the tags of a streaming tagger nobody reads (see :meth:`GuardedTagger.watch`)."""
        if self._tagger is not None and self._tagger.instrument is self._setup.tagger:
            self._tagger.watch()

    @property
    def instruments(self) -> dict[str, Any]:
        """Role → instrument, as procedures see them."""
        return {role: getattr(self, role) for role in self._setup.instruments}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._setup, name)

    def __repr__(self) -> str:
        return f"RunSetup({self._setup!r})"
