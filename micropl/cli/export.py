"""``micropl export FILE [--ptu DIR] [--csv DIR]``: tags to PTU; spectra, g², QDs to CSV.

What is written, and how (never overwriting a file), is
:mod:`micropl.acquisition.export`'s: this module parses the arguments, removes
the files already written when one fails, and prints what was written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from micropl.acquisition.export import export_csv, export_g2_csv, export_ptu, export_summary
from micropl.acquisition.storage import SessionReader
from micropl.cli import UsageError
from micropl.cli.output import print_json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` command."""
    parser = subparsers.add_parser(
        "export", help="export raw tags to PTU; spectra, g2 histograms and the QD table to CSV",
        description="Export a session's raw time tags as PicoQuant PTU (T2) files, and its "
                    "spectra, g2 histograms and QD summary (CSV and JSON, the columns of "
                    "`micropl info --json`) as CSV files. The session file is not modified.")
    parser.add_argument("file", help="session file (.h5)")
    parser.add_argument("--ptu", metavar="DIR", type=Path,
                        help="write the raw tags of each QD/run as PTU T2 files into DIR")
    parser.add_argument("--csv", metavar="DIR", type=Path,
                        help="write each spectrum (wavelength_nm,counts), each g2 histogram "
                             "(delay_ns,counts) and the QD summary (qd_summary.csv, "
                             "qd_summary.json) into DIR")
    parser.add_argument("--json", action="store_true", help="list the files written as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export what ``args`` asks for; 0 on success."""
    if args.ptu is None and args.csv is None:
        raise UsageError("export: give --ptu DIR and/or --csv DIR")
    written: dict[str, list[str]] = {"ptu": [], "csv": [], "g2_csv": [], "summary": []}
    with SessionReader(args.file) as reader:
        done: list[Path] = []
        try:
            if args.ptu is not None:
                written["ptu"] = [str(p) for p in export_ptu(reader, args.ptu, done)]
            if args.csv is not None:
                written["csv"] = [str(p) for p in export_csv(reader, args.csv, done)]
                written["g2_csv"] = [str(p) for p in export_g2_csv(reader, args.csv, done)]
                written["summary"] = [str(p) for p in export_summary(reader, args.csv, done)]
        except BaseException:
            _remove(done)  # all or nothing: no partial export is left behind
            raise
    if args.json:
        print_json(written, indent=2)
    else:
        labels = {"ptu": "PTU file(s)", "csv": "spectrum CSV file(s)",
                  "g2_csv": "g2 histogram CSV file(s)", "summary": "QD summary file(s)"}
        for kind, paths in written.items():
            target = args.ptu if kind == "ptu" else args.csv
            if target is not None:
                sys.stdout.write(f"{len(paths)} {labels[kind]} written to {target}\n")
    return 0


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
