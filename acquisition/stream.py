"""Publish/subscribe data stream with one queue per subscriber (DESIGN §5).

* A **lossless** subscriber (storage, the live preview core) gets every
  record, in publication order. Publishing never blocks on it: a slow consumer
  costs memory, never data, and storage's queue has a memory budget whose
  overrun fails the run instead of growing without end (``max_bytes``).
* A **coalescing** subscriber (a display) keeps at most ``maxlen`` records and
  drops the oldest when it falls behind.

Records are delivered to a subscriber's handler on the subscriber's own thread
(:meth:`Stream.attach`), so a slow fit or disk never blocks acquisition.

>>> stream = Stream()
>>> seen = []
>>> worker = stream.attach("list", seen.append)
>>> stream.publish(1); stream.publish(2)
>>> stream.flush(); seen
[1, 2]
>>> stream.close()
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Stream", "Subscription", "Worker", "record_nbytes"]

_CLOSE = object()


class Subscription:
    """The queue of one subscriber.

    Parameters
    ----------
    name : str
        Shown in logs and errors.
    maxlen : int or None
        None for a lossless queue; otherwise keep only the newest ``maxlen``
        records (``dropped`` counts the others).
    max_bytes : int, optional
        Memory budget of a lossless queue: the array bytes of the records queued
        (:func:`record_nbytes`). Going over it loses nothing (``put`` never blocks
        and never drops) but calls ``on_overflow`` once with a one-line reason, so
        the owner can stop the producer (the session fails the run); it is armed
        again once the queue has drained below half the budget.
    on_overflow : callable, optional
        ``on_overflow(reason)``, called from the publishing thread.
    """

    def __init__(self, name: str, maxlen: int | None = None, *, max_bytes: int | None = None,
                 on_overflow: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.maxlen = maxlen
        self.dropped = 0
        self.max_bytes = None if max_bytes is None or maxlen is not None else int(max_bytes)
        self.on_overflow = on_overflow
        #: Array bytes queued now, and the most ever queued (bounded queues only).
        self.queued_bytes = 0
        self.peak_bytes = 0
        #: Why the subscriber's worker stopped handling records (None while it runs).
        self.dead: str | None = None
        self._items: collections.deque[Any] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._overflowed = False
        self._cond = threading.Condition()
        self._pending = 0  # items taken but not yet marked done

    @property
    def lossless(self) -> bool:
        """True when this subscriber never loses a record."""
        return self.maxlen is None

    def put(self, record: Any) -> None:
        """Queue ``record`` (the stream calls this); never blocks on the consumer."""
        overflow = None
        with self._cond:
            if self.maxlen is not None and len(self._items) >= self.maxlen:
                self._items.popleft()
                self.dropped += 1
            self._items.append(record)
            if self.max_bytes is not None:
                size = record_nbytes(record)
                self._sizes.append(size)
                self.queued_bytes += size
                self.peak_bytes = max(self.peak_bytes, self.queued_bytes)
                if self.queued_bytes > self.max_bytes and not self._overflowed:
                    self._overflowed = True
                    overflow = (f"subscriber {self.name!r} is {self.queued_bytes / 1e6:.0f} MB "
                                f"behind (limit {self.max_bytes / 1e6:.0f} MB)")
            self._cond.notify_all()
        if overflow is not None and self.on_overflow is not None:
            self.on_overflow(overflow)

    def _taken(self, n: int) -> None:
        """Account for ``n`` records taken off the front (lock held)."""
        self._pending += n
        if self.max_bytes is None:
            return
        for _ in range(n):
            self.queued_bytes -= self._sizes.popleft()
        if self._overflowed and self.queued_bytes <= self.max_bytes // 2:
            self._overflowed = False

    def get(self, timeout_s: float | None = None) -> Any:
        """Next record, waiting up to ``timeout_s``; raises ``TimeoutError`` if none came."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items, timeout=timeout_s):
                raise TimeoutError(f"subscriber {self.name!r}: no record within {timeout_s} s")
            self._taken(1)
            return self._items.popleft()

    def drain(self) -> list[Any]:
        """Every queued record, at once (for displays that coalesce)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._taken(len(items))
            return items

    def done(self, n: int = 1) -> None:
        """Mark ``n`` records taken with :meth:`get`/:meth:`drain` as handled."""
        with self._cond:
            self._pending -= n
            self._cond.notify_all()

    def stopped(self, reason: str) -> None:
        """Mark the subscriber's worker as stopped (its queue will not drain)."""
        with self._cond:
            self.dead = reason
            self._cond.notify_all()

    def wait_empty(self, timeout_s: float | None = None) -> bool:
        """Block until every queued record was handled; False on timeout or when the
        worker stopped with records left."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._items and self._pending == 0 or self.dead is not None,
                timeout=timeout_s) and not (self.dead is not None
                                            and (self._items or self._pending))

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def record_nbytes(item: Any) -> int:
    """Bytes of the arrays a record holds (its envelope's record), plus a small overhead.

    The measure of a lossless queue's memory budget: tag chunks, frames and
    spectra are nearly all array data.
    """
    record = getattr(item, "record", item)
    total = 64
    for value in getattr(record, "__dict__", {}).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
    return total


class Worker:
    """A thread feeding one subscription's records to a handler.

    With ``batch=True`` the handler receives a list of every record queued at
    that moment (storage appends and flushes them together); otherwise one
    record at a time.

    An exception in the handler is logged and kept in :attr:`errors`; the
    worker goes on with the next record (a failing fit must not stop storage).
    ``on_error`` is called with the record (or batch) and the exception, so the
    owner can decide (the session stops the run when storage fails). Should the
    thread itself end on anything else, the subscription is marked
    :attr:`~Subscription.dead` (a flush then returns False instead of waiting)
    and ``on_error`` is called with ``None`` and the exception.
    """

    def __init__(self, subscription: Subscription, handler: Callable[[Any], None],
                 on_error: Callable[[Any, BaseException], None] | None = None,
                 batch: bool = False) -> None:
        self.subscription = subscription
        self.handler = handler
        self.on_error = on_error
        self.batch = batch
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name=f"stream-{subscription.name}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported: flush fails, owner told
            sub = self.subscription
            log.critical("subscriber %r stopped: %s: %s", sub.name, type(exc).__name__, exc)
            sub.stopped(f"{type(exc).__name__}: {exc}")
            self.errors.append(exc)
            if self.on_error is not None:
                self.on_error(None, exc)

    def _loop(self) -> None:
        sub = self.subscription
        while True:
            taken = [sub.get()]
            if self.batch:
                taken += sub.drain()
            records = [r for r in taken if r is not _CLOSE]
            try:
                if records:
                    self.handler(records if self.batch else records[0])
            except Exception as exc:  # noqa: BLE001 - reported through on_error and errors
                # One line; the traceback only with debug logging (the CLI prints no
                # traceback unless --debug).
                log.error("subscriber %r failed: %s: %s", sub.name, type(exc).__name__, exc,
                          exc_info=log.isEnabledFor(logging.DEBUG))
                self.errors.append(exc)
                if self.on_error is not None:
                    self.on_error(records if self.batch else records[0], exc)
            finally:
                sub.done(len(taken))
            if len(records) < len(taken):
                return

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the thread to end (after the stream closed)."""
        self._thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class Stream:
    """Publish/subscribe hub. Thread-safe; ``publish`` never blocks on a subscriber."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._workers: list[Worker] = []
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(self, name: str, maxlen: int | None = None, *, max_bytes: int | None = None,
                  on_overflow: Callable[[str], None] | None = None) -> Subscription:
        """Add a subscriber queue (lossless when ``maxlen`` is None; see
        :class:`Subscription` for ``max_bytes`` and ``on_overflow``)."""
        sub = Subscription(name, maxlen, max_bytes=max_bytes, on_overflow=on_overflow)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``."""
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def attach(self, name: str, handler: Callable[[Any], None], *, maxlen: int | None = None,
               on_error: Callable[[Any, BaseException], None] | None = None,
               batch: bool = False, max_bytes: int | None = None,
               on_overflow: Callable[[str], None] | None = None) -> Worker:
        """Subscribe and run ``handler`` on each record (or each batch of queued
        records, with ``batch=True``) in a thread of its own."""
        sub = self.subscribe(name, maxlen, max_bytes=max_bytes, on_overflow=on_overflow)
        worker = Worker(sub, handler, on_error, batch)
        with self._lock:
            self._workers.append(worker)
        return worker

    def publish(self, record: Any) -> None:
        """Deliver ``record`` to every subscriber."""
        with self._lock:
            subs = list(self._subs)
            self.published += 1
        for sub in subs:
            sub.put(record)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every lossless subscriber handled everything published so far.

        Records published by handlers meanwhile are waited for too. Returns False
        on timeout, or at once when a lossless subscriber's worker stopped with
        records left (they will never be handled).
        """
        while True:
            with self._lock:
                subs = [s for s in self._subs if s.lossless]
                before = self.published
            for sub in subs:
                if not sub.wait_empty(timeout_s):
                    return False
            with self._lock:
                if self.published == before:
                    return True

    def behind(self) -> list[str]:
        """Names of the lossless subscribers with records not yet handled (or stopped)."""
        with self._lock:
            subs = [s for s in self._subs if s.lossless]
        return [s.name if s.dead is None else f"{s.name} (stopped: {s.dead})"
                for s in subs if len(s) or s._pending or s.dead is not None]

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Deliver what is queued, then stop every worker thread."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.subscription.put(_CLOSE)
        for worker in workers:
            worker.join(timeout_s)
            if worker.alive:
                log.error("subscriber %r did not finish within %s s",
                          worker.subscription.name, timeout_s)
        with self._lock:
            self._workers.clear()
            self._subs = [s for s in self._subs if all(s is not w.subscription for w in workers)]
