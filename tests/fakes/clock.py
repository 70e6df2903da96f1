"""A fast-mode clock for driver tests: ``sleep`` advances time at once and is recorded."""

from __future__ import annotations


class FakeClock:
    """Satisfies :class:`micropl.drivers.interfaces.Clock` in fast mode.

    Attributes
    ----------
    t : float
        Clock time, s.
    sleeps : list of float
        Every sleep asked for, s, in order.
    """

    mode = "fast"

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Clock time, s."""
        return self.t

    def sleep(self, duration_s: float) -> None:
        """Advance the clock by ``duration_s`` at once (and record it)."""
        self.sleeps.append(duration_s)
        self.t += duration_s
