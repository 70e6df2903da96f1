"""Where the CLI's log goes: one line per record on the terminal, tracebacks in a file.

On the terminal (stderr) records of level WARNING and up are shown one line
each, without traceback; with ``--debug``, DEBUG and up with tracebacks.
Records flagged :data:`REPORTED_IN_RESULT` (a run's failure, which the CLI
prints as its last line) are left out there. Until a run starts, the terminal's
records are held back: a command refused for bad input prints only its one
error line, a command that succeeds prints them at its end.

The log file gets INFO and up with tracebacks:

* ``--log FILE``: appended from the first record on;
* by default, for a command that writes a session file, ``OUT.log`` beside it
  (``runs/g2.h5`` → ``runs/g2.log``): the records are kept in memory and
  written from the first warning or error logged once the session file exists,
  so a run without trouble, or a command refused before it created anything,
  leaves no log file.

A log file that cannot be written never fails the command: it is given up and
:func:`hint` says to use ``--debug`` instead.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["REPORTED_IN_RESULT", "configured", "current_log_file", "finish", "go_live", "hint",
           "note_session_file"]

#: ``extra=`` of a log record whose message is also the command's last line.
REPORTED_IN_RESULT: dict[str, Any] = {"reported_in_result": True}

#: Records kept in memory before the log file is started (the oldest go first).
BUFFER_RECORDS = 5000

_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"

#: The log file and terminal handler of the command running now, or None.
_current: LogFile | None = None
_console: Console | None = None


class OneLineFormatter(logging.Formatter):
    """``LEVEL logger: message`` on one line: whitespace collapsed, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        return " ".join(text.split())


def _not_reported(record: logging.LogRecord) -> bool:
    return not getattr(record, "reported_in_result", False)


def _detached(record: logging.LogRecord, formatter: logging.Formatter) -> logging.LogRecord:
    """A copy of ``record`` to keep: message and traceback as text, no reference to the
    arguments or the frames (which may hold large arrays)."""
    kept = copy.copy(record)
    kept.msg, kept.args = record.getMessage(), None
    if record.exc_info:
        kept.exc_text = record.exc_text or formatter.formatException(record.exc_info)
    kept.exc_info = None
    kept.stack_info = None
    return kept


class Console(logging.StreamHandler):
    """The terminal's handler: records are held back until the command gets going.

    Until :meth:`go_live` (a run starts) records are kept; :meth:`finish`
    prints them when the command succeeded and drops them when it ended with
    its one-line error (the log file keeps them). From :meth:`go_live` on,
    records are printed as they come.

    Parameters
    ----------
    hold : bool
        False: print every record at once (``--debug``).
    """

    def __init__(self, *, hold: bool) -> None:
        super().__init__(sys.stderr)
        self._held: list[logging.LogRecord] | None = [] if hold else None

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is None:
            super().emit(record)
        elif len(self._held) < BUFFER_RECORDS:
            self._held.append(_detached(record, self.formatter or logging.Formatter()))

    def go_live(self) -> None:
        """Print what was held and every later record at once."""
        self.acquire()
        try:
            held, self._held = self._held or [], None
        finally:
            self.release()
        for record in held:
            super().emit(record)

    def finish(self, *, succeeded: bool) -> None:
        """End of the command: print the held records if it succeeded, else drop them."""
        if succeeded:
            self.go_live()
        else:
            self._held = None


class LogFile(logging.Handler):
    """The command's log file (see the module docstring).

    Parameters
    ----------
    explicit : Path, optional
        ``--log FILE``: written from the first record. Without it the log is
        the session file's path with the suffix ``.log``.

    Attributes
    ----------
    path : Path or None
        The file once it was opened.
    tracebacks : int
        Records with a traceback written to it.
    failure : str or None
        Why the file could not be written (it is then given up).
    """

    def __init__(self, explicit: Path | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.explicit = explicit
        #: The session file a run writes (see :func:`note_session_file`).
        self.session: Path | None = None
        self.path: Path | None = None
        self.tracebacks = 0
        self.failure: str | None = None
        self._stream: TextIO | None = None
        self._buffer: collections.deque[logging.LogRecord] = collections.deque(
            maxlen=BUFFER_RECORDS)
        self.setFormatter(logging.Formatter(_FILE_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is not None:
            return
        if self._stream is None:
            self._buffer.append(_detached(record, self.formatter))
            if self.explicit is None and record.levelno < logging.WARNING:
                return
            if not self._open():
                return
            pending = list(self._buffer)
            self._buffer.clear()
        else:
            pending = [record]
        try:
            for item in pending:
                self._stream.write(self.format(item) + "\n")
                self.tracebacks += bool(item.exc_info or item.exc_text)
            self._stream.flush()
        except (OSError, ValueError) as exc:
            self._give_up(exc)

    def _target(self) -> Path | None:
        if self.explicit is not None:
            return self.explicit
        session = self.session
        if session is None:
            return None
        try:
            if not session.is_file():
                return None  # nothing written yet: keep the records in memory
        except OSError:
            return None
        if session.suffix == ".log":
            return session.with_name(session.name + ".log")
        return session.with_suffix(".log")

    def _open(self) -> bool:
        path = self._target()
        if path is None:
            return False
        try:
            self._stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            self._give_up(exc)
            return False
        self.path = path
        return True

    def _give_up(self, exc: BaseException) -> None:
        self.failure = f"log file not written: {exc}"
        self._buffer.clear()
        if self._stream is not None:
            with contextlib.suppress(OSError, ValueError):
                self._stream.close()
            self._stream = None
        sys.stderr.write(f"micropl: {' '.join(self.failure.split())}\n")

    def close(self) -> None:
        self.acquire()
        try:
            self._buffer.clear()
            if self._stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._stream.close()
                self._stream = None
        finally:
            self.release()
        super().close()


def note_session_file(path: str | Path) -> None:
    """A run writes ``path``: the default log file goes beside it (no-op outside the CLI)."""
    if _current is not None:
        _current.session = Path(path)


def go_live() -> None:
    """A run starts: the terminal shows log records as they come (no-op outside the CLI)."""
    if _console is not None:
        _console.go_live()


def finish(*, succeeded: bool) -> None:
    """The command ended: held terminal records are printed if it succeeded, else dropped."""
    if _console is not None:
        _console.finish(succeeded=succeeded)


def current_log_file() -> LogFile | None:
    """The log file of the command running now (None outside :func:`configured`)."""
    return _current


def hint(*, always: bool = False) -> str:
    """`` (traceback in FILE)`` when the log file holds one, for a one-line error.

    With ``always=True`` and no such file: `` (run with --debug for the
    traceback)``; else an empty string.
    """
    log_file = _current
    if log_file is not None and log_file.path is not None and log_file.tracebacks:
        return f" (traceback in {log_file.path})"
    return " (run with --debug for the traceback)" if always else ""


@contextlib.contextmanager
def configured(*, debug: bool = False, log_file: Path | None = None,
               hold: bool = True) -> Iterator[LogFile]:
    """Log to the terminal and the log file while the block runs; undo it after.

    Parameters
    ----------
    debug : bool
        DEBUG records and tracebacks on the terminal too (nothing held back).
    hold : bool
        Hold the terminal's records back until a run starts (see :class:`Console`);
        False for the GUI, whose runs do not go through ``Runner.run``.
    log_file : Path, optional
        ``--log FILE``.
    """
    global _current, _console
    root = logging.getLogger()
    console = Console(hold=hold and not debug)
    if debug:
        console.setLevel(logging.DEBUG)
        console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        console.setLevel(logging.WARNING)
        console.setFormatter(OneLineFormatter())
        console.addFilter(_not_reported)
    file_handler = LogFile(log_file)
    file_handler.setLevel(logging.DEBUG if debug else logging.INFO)
    old_level, old_hook, outer = root.level, threading.excepthook, (_current, _console)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.addHandler(console)
    root.addHandler(file_handler)
    threading.excepthook = _log_thread_exception
    _current, _console = file_handler, console
    try:
        yield file_handler
    finally:
        _current, _console = outer
        threading.excepthook = old_hook
        root.removeHandler(file_handler)
        root.removeHandler(console)
        root.setLevel(old_level)
        file_handler.close()


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """An exception no code caught in a thread: one line on the terminal, traceback logged."""
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("micropl").error(
        "uncaught error in thread %s: %s: %s", name, args.exc_type.__name__, args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
