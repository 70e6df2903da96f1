"""``micropl check-config FILE``: validate a setup file and show what it would build."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from micropl.acquisition.config import load_config
from micropl.acquisition.setup import describe_config
from micropl.cli.output import print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``check-config``."""
    parser = subparsers.add_parser(
        "check-config", help="validate a setup file and print what it would build",
        description="Validate a setup YAML without opening any instrument.",
    )
    parser.add_argument("file", nargs="?", default=None,
                        help="setup YAML (default: the packaged simulated setup)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config, _ = load_config(args.file)
    rows = describe_config(config)
    if args.json:
        print_json({"file": args.file or "simulated.yaml", "valid": True,
                    "clock_mode": config.clock.mode, "instruments": rows})
        return 0
    table = Table(title=f"{args.file or 'simulated.yaml'}: valid (clock: {config.clock.mode})")
    table.add_column("role")
    table.add_column("driver")
    table.add_column("name")
    table.add_column("settings", overflow="fold")
    for row in rows:
        text = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        table.add_row(row["role"], row["driver"], row["name"], text)
    Console().print(table)
    return 0
