"""SIGINT, SIGTERM and SIGHUP: one clean stop, and a cleanup that no signal cuts short.

A PC shutting down sends SIGTERM, a dropped SSH session SIGHUP, Ctrl-C SIGINT.
While a :class:`SignalGuard` is active, none of them raises at an arbitrary
point of the main thread: the handler only records the first signal (logged at
INFO), and every later one is logged as a warning and ignored. The code that
waits for a run (:meth:`~micropl.acquisition.runner.Runner.run`) polls the
guard: on a signal it switches the laser off at once, aborts the run with a
reason naming the signal (``terminated by SIGTERM``), waits for the cleanup
(camera and tagger stopped, stop record stored) and then raises
:class:`Interrupted`, which the file-closing ``with`` blocks let through. The
CLI turns it into exit code 128 + the signal number (130, 143, 129).

A signal its process was started with ignored (``nohup`` ignores SIGHUP; a
background job of a non-interactive shell ignores SIGINT) stays ignored, as
Python itself does for SIGINT.

Handlers can only be installed from the main thread; elsewhere the guard does
nothing and the previous behaviour stays.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Interrupted", "SignalGuard", "active_guard", "guarded"]

#: The signals that stop a run cleanly (SIGHUP where the platform has it).
STOP_SIGNALS: tuple[int, ...] = tuple(
    int(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name))

_DESCRIPTIONS = {
    "SIGINT": "interrupted by SIGINT (Ctrl-C)",
    "SIGTERM": "terminated by SIGTERM",
    "SIGHUP": "terminated by SIGHUP (hang-up: terminal or SSH session closed)",
}

#: The guard that owns the handlers now (main thread only), or None.
_active: SignalGuard | None = None


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15 (the number as text when the platform does not name it)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A stop signal was received; raised once the run's cleanup is done.

    A :class:`KeyboardInterrupt`, so ``except Exception`` does not swallow it
    and code written for Ctrl-C handles it.

    Attributes
    ----------
    signum : int
        The signal number.
    name : str
        ``SIGINT``, ``SIGTERM``, ``SIGHUP``.
    reason : str
        What the stored run's stop record says, e.g. ``terminated by SIGTERM``.
    exit_code : int
        128 + ``signum``: the shell's convention for a process a signal stopped.
    problems : list of str
        Cleanup steps that failed (e.g. ``laser off failed: …``); empty when
        the instruments were made safe.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.name = signal_name(self.signum)
        self.reason = _DESCRIPTIONS.get(self.name, f"terminated by {self.name}")
        self.exit_code = 128 + self.signum
        self.problems: list[str] = []
        super().__init__(self.reason)

    @property
    def summary(self) -> str:
        """``interrupted`` for Ctrl-C, else ``terminated by SIGTERM`` (the CLI's message)."""
        return "interrupted" if self.name == "SIGINT" else f"terminated by {self.name}"


class SignalGuard:
    """Context manager: stop signals are recorded, not raised; the old handlers come back.

    Parameters
    ----------
    signums : tuple of int, optional
        The signals to handle; :data:`STOP_SIGNALS` by default.

    Attributes
    ----------
    received : int or None
        The first signal received, None until then.
    ignored : list of int
        The signals received after it (logged and ignored).
    installed : bool
        False outside the main thread, where nothing is installed.
    """

    def __init__(self, signums: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signums = tuple(signums)
        self.received: int | None = None
        self.ignored: list[int] = []
        self.installed = False
        self._previous: dict[int, Any] = {}
        self._outer: SignalGuard | None = None

    # ------------------------------------------------------------------ context
    def __enter__(self) -> SignalGuard:
        global _active
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signums:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue  # nohup or a background job asked for it to be ignored
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        self.installed = True
        self._outer, _active = _active, self
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _active
        if not self.installed:
            return
        for signum, previous in self._previous.items():
            # None: the handler was not installed from Python; the default is the closest.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        _active, outer = self._outer, self._outer
        self.installed = False
        if outer is not None and outer.received is None and self.received is not None:
            outer.received = self.received  # a nested guard's signal is the outer one's too

    # ------------------------------------------------------------------ handler
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: record, log, never raise.
        if self.received is None:
            self.received = signum
            log.info("%s received: stopping the run and making the instruments safe",
                     signal_name(signum))
            return
        self.ignored.append(signum)
        log.warning("%s ignored: the cleanup after %s is still running (laser off, stop "
                    "record, file close)", signal_name(signum), signal_name(self.received))

    # ------------------------------------------------------------------ polling
    def pending(self) -> Interrupted | None:
        """The :class:`Interrupted` to raise for the signal received, or None."""
        return None if self.received is None else Interrupted(self.received)

    def raise_pending(self) -> None:
        """Raise :class:`Interrupted` when a signal was received."""
        interrupted = self.pending()
        if interrupted is not None:
            raise interrupted


def active_guard() -> SignalGuard | None:
    """The guard installed now (in the main thread), or None."""
    return _active


def guarded() -> contextlib.AbstractContextManager[SignalGuard]:
    """A context manager for code that waits on a run.

    The active guard when there is one (entering it again changes nothing),
    else a new :class:`SignalGuard` (which installs handlers only in the main
    thread).
    """
    return contextlib.nullcontext(_active) if _active is not None else SignalGuard()
