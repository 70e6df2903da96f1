"""``micropl analyze {g2,spectrum}``: offline analysis of data files."""

from __future__ import annotations

import argparse

from micropl.acquisition import cli_analyze_g2, cli_analyze_spectrum


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and its sub-commands."""
    parser = subparsers.add_parser("analyze", help="analyse a g² or spectrum file")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True,
                                  parser_class=type(parser))
    cli_analyze_g2.register(kinds)
    cli_analyze_spectrum.register(kinds)
