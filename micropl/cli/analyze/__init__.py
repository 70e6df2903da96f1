"""``micropl analyze {g2,spectrum}``: offline analysis of data files."""

from __future__ import annotations

import argparse

from micropl.cli.analyze import g2, spectrum


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its sub-commands."""
    parser = subparsers.add_parser("analyze", help="analyse a g² or spectrum file")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True,
                                  parser_class=type(parser))
    g2.register(kinds)
    spectrum.register(kinds)
