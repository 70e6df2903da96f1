"""``micropl analyze {g2,spectrum}``: offline analysis of data files."""

from __future__ import annotations

import argparse
import importlib

_KINDS = ("micropl.acquisition.cli_analyze_g2", "micropl.acquisition.cli_analyze_spectrum")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its sub-commands."""
    parser = subparsers.add_parser("analyze", help="analyse a g² or spectrum file")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True,
                                  parser_class=type(parser))
    for name in _KINDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(kinds)
