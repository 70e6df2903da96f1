"""The clock every wait in micropl goes through (DESIGN §4).

``real`` mode is wall time. In ``fast`` mode :meth:`VirtualClock.sleep` advances
virtual time instantly, so the simulators can return a 10 s exposure at once
with 10 s worth of photons.
"""

from __future__ import annotations

import threading
import time
from typing import Literal

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock in real or fast mode.

    Parameters
    ----------
    mode : {"real", "fast"}
        ``real`` follows wall time; ``fast`` advances only when slept on.

    Notes
    -----
    Thread-safe. In fast mode, sleeps from several threads add up on one time
    line, which is what a single acquisition thread needs.
    """

    def __init__(self, mode: Literal["real", "fast"] = "real") -> None:
        if mode not in ("real", "fast"):
            raise ValueError(f"clock.mode: {mode!r} is not one of 'real', 'fast'")
        self.mode: Literal["real", "fast"] = mode
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._virtual_s = 0.0

    def now(self) -> float:
        """Seconds since the clock started (virtual seconds in fast mode)."""
        if self.mode == "real":
            return time.monotonic() - self._t0
        with self._lock:
            return self._virtual_s

    def sleep(self, duration_s: float) -> None:
        """Wait ``duration_s`` seconds of clock time (returns at once in fast mode)."""
        if duration_s <= 0:
            return
        if self.mode == "real":
            time.sleep(duration_s)
            return
        with self._lock:
            self._virtual_s += duration_s

    def advance_to(self, t_s: float) -> None:
        """Sleep until clock time ``t_s`` (no-op if already past)."""
        self.sleep(t_s - self.now())
