"""The ``micropl`` command line.

Each command lives in its own module that exposes ``register(subparsers)``; the
registered parser sets ``func=run`` where ``run(args) -> int`` returns the exit
code. This module owns the one place where errors become exit codes:

* 0 — success;
* 2 — bad input (config, file, argument): one line on stderr, no traceback;
* 1 — instrument or runtime failure: one line on stderr (``--debug`` shows the
  traceback);
* 130 — interrupted with Ctrl-C, after the cleanup ran.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from micropl import __version__

log = logging.getLogger("micropl")

#: Modules that register sub-commands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "micropl.acquisition.cli_run",
    "micropl.acquisition.cli_config",
    "micropl.acquisition.cli_info",
    "micropl.acquisition.cli_export",
    "micropl.acquisition.cli_analyze",
    "micropl.acquisition.cli_simulate",
    "micropl.acquisition.cli_replay",
    "micropl.acquisition.cli_gui",
)


class UsageError(Exception):
    """Bad command-line input; reported as one line with exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse parser whose errors are one line and exit code 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"micropl: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = _Parser(
        prog="micropl",
        description="Acquisition and live analysis for single-QD micro-photoluminescence.",
    )
    parser.add_argument("--version", action="version", version=f"micropl {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _user_error_types() -> tuple[type[BaseException], ...]:
    from micropl.acquisition.config import ConfigError
    from micropl.analysis.errors import AnalysisInputError

    return (UsageError, AnalysisInputError, ConfigError, FileNotFoundError, IsADirectoryError,
            NotADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from micropl.drivers.interfaces import InstrumentError

    user_errors = _user_error_types()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        sys.stderr.write("micropl: interrupted; instruments were made safe\n")
        return 130
    except user_errors as exc:
        if args.debug:
            raise
        sys.stderr.write(f"micropl: error: {_one_line(exc)}\n")
        return 2
    except InstrumentError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"micropl: instrument error: {_one_line(exc)}\n")
        return 1


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.strerror or exc}: {exc.filename}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
