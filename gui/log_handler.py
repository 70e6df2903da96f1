"""A logging handler that forwards log records to the GUI thread (bounded)."""

from __future__ import annotations

import collections
import logging
import threading

__all__ = ["GuiLogHandler"]


class GuiLogHandler(logging.Handler):
    """Keeps formatted log lines in a bounded deque; the GUI drains it from a timer.

    ``emit`` may be called from any thread; it never touches Qt.

    Parameters
    ----------
    maxlen : int
        Lines kept between two drains (the oldest are dropped, and counted).
    level : int
        Lowest level forwarded.
    """

    def __init__(self, maxlen: int = 2000, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=maxlen)
        self._guard = threading.Lock()
        self.dropped = 0
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except (TypeError, ValueError):  # a bad format string in a log call
            self.handleError(record)
            return
        with self._guard:
            if len(self._lines) == self._lines.maxlen:
                self.dropped += 1
            self._lines.append((record.levelno, line))

    def drain(self) -> list[tuple[int, str]]:
        """(level, text) of every line since the previous drain."""
        with self._guard:
            lines = list(self._lines)
            self._lines.clear()
        return lines
