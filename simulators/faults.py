"""Fault injection shared by every simulated instrument.

A :class:`FaultInjector` is owned by one simulated instrument. The instrument
calls :meth:`FaultInjector.check` at the start of every public call that would
talk to the device; the injector then raises, according to its
:class:`~micropl.simulators.settings.FaultSettings`:

* :class:`~micropl.drivers.interfaces.InstrumentTimeout` on every
  ``timeout_every_n_calls``-th call (after waiting ``timeout_s`` of clock time,
  as a real VISA timeout would);
* :class:`~micropl.drivers.interfaces.InstrumentError` ("not responding") for
  every call made after ``disconnect_after_s`` of clock time since the
  instrument was created, until ``reconnect_after_s`` more seconds have passed
  (never, when ``reconnect_after_s`` is unset);
* :class:`~micropl.drivers.interfaces.InstrumentError` naming a garbled reply on
  every ``garble_every_n_calls``-th call.

Cameras ask :meth:`FaultInjector.drop_frame` for each streamed frame and taggers
ask :meth:`FaultInjector.overflow` for each read.

Calls are counted from 1, so with ``timeout_every_n_calls=3`` calls 3, 6, 9 …
time out. A call that fails because of a disconnect is counted too.
"""

from __future__ import annotations

import logging
import threading

from micropl.drivers.interfaces import Clock
from micropl.errors import InstrumentError, InstrumentTimeout
from micropl.simulators.settings import FaultSettings

__all__ = ["FaultInjector"]

log = logging.getLogger(__name__)

#: Bytes a garbled reply is made of (a framing error on a serial line).
_GARBAGE = "\x00\xff?#\x1b~"


class FaultInjector:
    """Decides when a simulated instrument fails.

    Parameters
    ----------
    settings : FaultSettings
        Which faults to inject (all off by default).
    clock : Clock
        The virtual clock; disconnect times are clock times.
    kind : str
        Instrument kind used in messages, e.g. ``"camera"``.
    name : str
        Instrument name used in messages.
    timeout_s : float, optional
        Clock time a timed-out call waits before raising, in s (default 1).
    """

    def __init__(self, settings: FaultSettings, clock: Clock, kind: str, name: str,
                 timeout_s: float = 1.0) -> None:
        self.settings = settings
        self.clock = clock
        self.kind = kind
        self.name = name
        self.timeout_s = float(timeout_s)
        self._t0_s = clock.now()
        self._calls = 0
        self._frames = 0
        self._reads = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ state
    @property
    def calls(self) -> int:
        """Number of checked calls so far."""
        return self._calls

    def disconnected(self) -> bool:
        """True while the instrument is in its simulated disconnect window."""
        s = self.settings
        if s.disconnect_after_s is None:
            return False
        elapsed_s = self.clock.now() - self._t0_s
        if elapsed_s < s.disconnect_after_s:
            return False
        if s.reconnect_after_s is None:
            return True
        return elapsed_s < s.disconnect_after_s + s.reconnect_after_s

    def _prefix(self, action: str) -> str:
        return f"{self.kind} '{self.name}': {action}"

    # ------------------------------------------------------------------ hooks
    def check(self, action: str) -> None:
        """Count one call and raise if a fault is due.

        Parameters
        ----------
        action : str
            What the call does, used in the message (e.g. ``"acquire"``).

        Raises
        ------
        InstrumentError
            While disconnected, or for a garbled reply.
        InstrumentTimeout
            On every ``timeout_every_n_calls``-th call.
        """
        s = self.settings
        with self._lock:
            self._calls += 1
            n = self._calls
        if self.disconnected():
            raise InstrumentError(f"{self._prefix(action)}: not responding (disconnected)")
        if s.timeout_every_n_calls and n % s.timeout_every_n_calls == 0:
            log.debug("%s: injected timeout on call %d", self._prefix(action), n)
            self.clock.sleep(self.timeout_s)
            raise InstrumentTimeout(
                f"{self._prefix(action)}: timed out after {self.timeout_s:g} s")
        if s.garble_every_n_calls and n % s.garble_every_n_calls == 0:
            log.debug("%s: injected garbled reply on call %d", self._prefix(action), n)
            raise InstrumentError(f"{self._prefix(action)}: garbled reply {_GARBAGE!r}")

    def drop_frame(self) -> bool:
        """Camera hook: True when the next frame is to be lost (every Nth frame)."""
        n_every = self.settings.drop_frame_every_n
        with self._lock:
            self._frames += 1
            n = self._frames
        return bool(n_every) and n % n_every == 0

    def overflow(self) -> bool:
        """Tagger hook: True when the next read overflows (every Nth read)."""
        n_every = self.settings.overflow_every_n_reads
        with self._lock:
            self._reads += 1
            n = self._reads
        return bool(n_every) and n % n_every == 0
