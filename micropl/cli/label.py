"""``micropl label SESSION NAME``: set a session's sample label later.

The label is one attribute of the file (``sample``); nothing else is changed. It is
refused while a survey or a resume writes the file (the session's writer lock).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from micropl.cli.output import print_json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``label`` command."""
    parser = subparsers.add_parser(
        "label", help="set a session's sample label",
        description="Set the sample label of a session file (micropl stats --by sample "
                    "groups sessions by it). Only that attribute of the file changes; "
                    "refused while a survey or a resume writes the file.")
    parser.add_argument("session", type=Path, help="session file (.h5)")
    parser.add_argument("name", help="sample label, e.g. 'CsPbBr3 batch A'")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the label; 0 on success."""
    from micropl.reanalysis.labels import write_sample

    label = write_sample(args.session, args.name)
    if args.json:
        print_json({"file": str(args.session), "sample": label})
    else:
        sys.stdout.write(f"{args.session}: sample label {label!r}\n")
    return 0
