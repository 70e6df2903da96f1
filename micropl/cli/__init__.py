"""The ``micropl`` command line.

Each command lives in its own module that exposes ``register(subparsers)``; the
registered parser sets ``func=run`` where ``run(args) -> int`` returns the exit
code. This module owns the one place where errors become exit codes:

* 0 — success;
* 2 — bad input (config, file, argument): one line on stderr, no traceback;
* 1 — instrument or runtime failure: one line on stderr (``--debug`` shows the
  traceback);
* 128 + N — stopped by signal N after the cleanup ran: 130 for Ctrl-C (SIGINT),
  143 for SIGTERM, 129 for SIGHUP (see :mod:`micropl.acquisition.signals`).

No traceback reaches the terminal without ``--debug``: log records are one line
each there, and the traceback goes to the log file (:mod:`micropl.acquisition.logs`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from micropl import __version__
from micropl.acquisition import logs
from micropl.acquisition.signals import Interrupted, SignalGuard

log = logging.getLogger("micropl")

#: Modules that register sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "micropl.cli.run",
    "micropl.cli.hyperspectral",
    "micropl.cli.config",
    "micropl.cli.info",
    "micropl.cli.export",
    "micropl.cli.analyze",
    "micropl.cli.simulate",
    "micropl.cli.replay",
    "micropl.cli.gui",
    "micropl.cli.reanalyze",
    "micropl.cli.stats",
    "micropl.cli.label",
)


class UsageError(Exception):
    """Bad command-line input; reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse parser whose errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"micropl: error: {message}\n")


#: Commands that run instruments: stop signals end them cleanly (see :mod:`micropl.acquisition.signals`).
INSTRUMENT_COMMANDS: frozenset[str] = frozenset(
    {"survey", "scan", "spectrum", "g2", "demo", "replay", "hyperspectral"})

_LOG_HELP = ("append the log (INFO and up, with tracebacks) to FILE; default: OUT.log beside "
             "the session file, written from the first warning or error on")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = _Parser(
        prog="micropl",
        description="Acquisition and live analysis for single-QD micro-photoluminescence.",
        epilog="Exit codes: 0 success, 2 bad input, 1 instrument or run failure, 128 + N "
               "stopped by signal N after the cleanup (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP).")
    parser.add_argument("--version", action="version", version=f"micropl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--log", type=Path, metavar="FILE",
                        help="append the log (with tracebacks) to FILE; commands that write a "
                             "session file keep it beside that file by default (see their "
                             "--help)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name, command in sub.choices.items():
        if name in INSTRUMENT_COMMANDS:
            # SUPPRESS: a value given before the command is not reset by the sub-parser.
            command.add_argument("--log", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                                 help=_LOG_HELP)
            command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show tracebacks and debug logs on the terminal")
            command.epilog = ("SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the run cleanly: laser "
                              "off, run stored as aborted naming the signal, file closed; exit "
                              "code 128 + the signal number (130, 143, 129).")
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from micropl.errors import UserError

    return (UsageError, UserError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code.

    Stop signals are held from the start (a Ctrl-C while the commands load is
    one line, not a traceback). A command that runs instruments keeps them held
    to its end (see :mod:`micropl.acquisition.signals`); the others get the
    previous handlers back before they run.
    """
    guard = SignalGuard()
    with guard:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) and _runs_instruments(args):
            return _run(args, guard)
    if guard.received is not None:
        return _report_interrupted(Interrupted(guard.received), instruments=False)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _run(args, None)


def _run(args: argparse.Namespace, guard: SignalGuard | None) -> int:
    """The command with its logging; under ``guard`` for a command that runs instruments."""
    with logs.configured(debug=args.debug, log_file=args.log, hold=not _is_gui(args)):
        if guard is None:
            code = _dispatch(args)
            logs.finish(succeeded=code == 0)
            return code
        try:
            guard.raise_pending()  # arrived while the commands loaded: nothing is opened
            code = _dispatch(args)
            guard.raise_pending()  # arrived after the run: the command still ends as asked
            logs.finish(succeeded=code == 0)
        except Interrupted as exc:
            logs.finish(succeeded=False)
            code = _report_interrupted(exc)
        _flush_or_silence()
        return code


def _is_gui(args: argparse.Namespace) -> bool:
    return args.command == "gui" or bool(getattr(args, "gui", False))


def _runs_instruments(args: argparse.Namespace) -> bool:
    # The GUI (``gui``, ``replay --gui``) handles signals in its event loop.
    return args.command in INSTRUMENT_COMMANDS and not _is_gui(args)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the command; every exception but a signal's becomes one line and an exit code."""
    try:
        return int(args.func(args) or 0)
    except Interrupted:
        raise
    except KeyboardInterrupt:
        # Only where no SignalGuard is installed (commands that run no instrument).
        _say("micropl: interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - each becomes one line (see _report_error)
        interrupted = _interrupted_cause(exc)
        if interrupted is not None:
            # The cleanup after a signal failed on its way out (e.g. the terminal closed
            # by SIGHUP refused the progress bar's last write): the signal still decides.
            log.info("after %s: %s: %s", interrupted.name, type(exc).__name__, exc,
                     exc_info=exc)
            raise interrupted from None
        return _report_error(args, exc)


def _interrupted_cause(exc: BaseException) -> Interrupted | None:
    """The :class:`Interrupted` that ``exc`` was raised while handling, if any."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        if isinstance(node, Interrupted):
            return node
        seen.add(id(node))
        node = node.__cause__ or node.__context__
    return None


def _report_error(args: argparse.Namespace, exc: Exception) -> int:
    """One line for ``exc`` and its exit code (``--debug``: raise it, with its traceback)."""
    from micropl.errors import InstrumentError

    if args.debug:
        raise exc
    if isinstance(exc, InstrumentError):  # before OSError: InstrumentTimeout is a TimeoutError
        log.error("instrument error: %s", exc, exc_info=exc, extra=logs.REPORTED_IN_RESULT)
        _say(f"micropl: instrument error: {_one_line(exc)}{logs.hint()}")
        return 1
    if isinstance(exc, OSError):
        log.error("file error: %s", exc, exc_info=exc, extra=logs.REPORTED_IN_RESULT)
        _say(f"micropl: error: {_one_line(_naming_the_output(exc, args))}")
        return 2 if is_user_os_error(exc) else 1
    if isinstance(exc, _user_error_types()):
        _say(f"micropl: error: {_one_line(exc)}")
        return 2
    # A bug: one line here, the traceback in the log file.
    log.error("unexpected error: %s: %s", type(exc).__name__, exc, exc_info=exc,
              extra=logs.REPORTED_IN_RESULT)
    _say(f"micropl: internal error: {type(exc).__name__}: {_one_line(exc)}"
         f"{logs.hint(always=True)}")
    return 1


def _say(line: str) -> None:
    """``line`` on stderr; a terminal that is gone (SIGHUP) must not change the exit code."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _silence_dead_terminal()


def _flush_or_silence() -> None:
    """Flush stdout and stderr now: if the terminal is gone, the interpreter's own last
    flush would fail and turn the exit code into 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            _silence_dead_terminal()
            return


def _silence_dead_terminal() -> None:
    """Point file descriptors 1 and 2 at the null device (their terminal is gone)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)
    os.close(devnull)


def _report_interrupted(exc: Interrupted, *, instruments: bool = True) -> int:
    """The one line for a command a signal stopped; its exit code (128 + the signal number)."""
    if not instruments:
        _say(f"micropl: {exc.summary}")
    elif exc.problems:
        _say(f"micropl: {exc.summary}; cleanup incomplete: "
             f"{' '.join('; '.join(exc.problems).split())}: check the instruments by hand")
    else:
        _say(f"micropl: {exc.summary}; instruments were made safe")
    return exc.exit_code


#: What to do about an OSError on a path the user chose, by errno.
_OS_HINTS: dict[int, str] = {
    errno.EACCES: "no permission: choose a folder you can write to, or change its permissions",
    errno.EPERM: "not permitted: choose another path, or change its permissions",
    errno.EROFS: "the file system is read-only: choose a folder on a writable disk",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter file or folder name",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "that is a folder: give a file name",
    errno.ENOENT: "check the path",
    errno.EEXIST: "it already exists: choose another name",
    errno.ENOSPC: "the disk is full: free some space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another disk",
    errno.EFBIG: "the file is too large for this file system: choose another disk",
    errno.ELOOP: "too many symbolic links: check the path",
    errno.ETXTBSY: "the file is in use: close the program using it or choose another name",
    errno.EBUSY: "the file is in use: close the program using it or choose another name",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
}

#: errnos that mean the user's path or disk, not a broken machine (exit code 2).
USER_ERRNOS: frozenset[int] = frozenset(_OS_HINTS) - {errno.EMFILE}


def is_user_os_error(exc: OSError) -> bool:
    """Whether ``exc`` is about the user's path or file (exit 2), not the machine (exit 1).

    OSErrors without an errno are h5py's and similar libraries' "cannot read
    this file" errors: bad input too.
    """
    return exc.errno is None or exc.errno in USER_ERRNOS


def _naming_the_output(exc: OSError, args: argparse.Namespace) -> OSError:
    """``exc`` as the user should read it: naming ``--out`` when it names no file (h5py's
    create errors name only its temporary file, in the message), and a file where
    ``--out``'s folder should be as "not a directory" rather than "file exists"."""
    out = getattr(args, "out", None)
    if exc.errno is None or out is None:
        return exc
    if exc.filename is None:
        return OSError(exc.errno, os.strerror(exc.errno), str(out))
    name = Path(os.fsdecode(exc.filename))
    if exc.errno == errno.EEXIST and name in Path(out).parents and not name.is_dir():
        # mkdir of --out's folder found a file there: "exists" would mislead.
        return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(name))
    return exc


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        name = str(exc.filename)
        if exc.filename2 is not None:
            name = f"{name} -> {exc.filename2}"
        text = f"{name}: {exc.strerror or exc}"
        hint = _OS_HINTS.get(exc.errno) if exc.errno is not None else None
        if hint:
            text = f"{text}; {hint}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
