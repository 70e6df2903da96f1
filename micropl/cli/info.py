"""``micropl info FILE [--json]``: summarise a session file (also while it is written).

The summary itself is :func:`micropl.acquisition.summary.session_summary`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from micropl.acquisition.storage import SessionReader
from micropl.acquisition.summary import session_summary, truth_agreement_line
from micropl.analysis.emitters import exclusion_text
from micropl.cli.output import print_json

__all__ = ["register", "run", "print_summary"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` command."""
    parser = subparsers.add_parser(
        "info", help="summarise a session file (runs, QDs, fits)",
        description="Summarise a micropl session file: runs with their status, and each "
                    "selected QD with its fitted peak energy, FWHM and g²(0). Works on a file "
                    "that is still being written.")
    parser.add_argument("file", nargs="?", help="session file (.h5)")
    parser.add_argument("--instruments", action="store_true",
                        help="list every driver and whether its library can be imported here")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.file`` (or the driver table); 0 on success."""
    if args.instruments:
        return _instruments(args.json)
    if args.file is None:
        from micropl.cli import UsageError

        raise UsageError("info: give a session FILE, or --instruments")
    with SessionReader(args.file) as reader:
        summary = session_summary(reader)
    if args.json:
        print_json(summary, indent=2)
    else:
        print_summary(summary)
    return 0


def _instruments(as_json: bool) -> int:
    from micropl.acquisition.instruments_report import driver_table, skipped_table

    rows = driver_table()
    if as_json:
        print_json(rows, indent=2)
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Instrument drivers")
    for col in ("role", "driver", "module", "needs", "ready"):
        table.add_column(col)
    for row in rows:
        state = {True: "found", False: "missing", None: "not for this OS"}
        needs = [f"{name} ({state[ok]})" for name, ok in
                 {**row["requires_available"], **row["vendor_libraries_available"]}.items()]
        hint = f"; {row['install']}" if row["install"] and not row["ready"] else ""
        table.add_row(row["role"], row["driver"], row["module"],
                      escape((", ".join(needs) or "—") + hint), "yes" if row["ready"] else "no")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    for skipped in skipped_table():
        print(f"not loaded: {skipped['entry_point']} ({skipped['module']}): {skipped['reason']}")
    return 0


# --------------------------------------------------------------------------- rich output
def _fmt(value: float | None, err: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if err is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def print_summary(summary: dict[str, Any]) -> None:
    """Rich tables of a :func:`~micropl.acquisition.summary.session_summary` on stdout."""
    from rich.console import Console
    from rich.table import Table

    # Rich falls back to 80 columns when piped; the QD table needs more.
    console = Console(width=None if sys.stdout.isatty() else 200)
    state = "being written" if summary["being_written"] else "closed"
    kind = "simulated" if summary["simulated"] else "real setup"
    console.print(f"[bold]{summary['file']}[/bold]  micropl {summary['software_version']}, "
                  f"created {summary['created']}, {kind}, {state}")
    runs = Table(title="Runs")
    for col in ("run", "procedure", "status", "start", "end", "reason"):
        runs.add_column(col)
    for r in summary["runs"]:
        runs.add_row(str(r["run_id"]), r["procedure"], r["status"], r["start"] or "—",
                     r["end"] or "—", r["reason"] or "")
    console.print(runs)
    qds = Table(title=f"QDs ({len(summary['qds'])})")
    columns = ("QD", "x (µm)", "y (µm)", "status", "E (eV)", "jitter (meV)", "FWHM (meV)",
               "g²(0)", "g²(0) bg-corr.")
    for col in columns:
        qds.add_column(col, justify="right" if col != "status" else "left",
                       no_wrap=col not in ("QD", "x (µm)", "y (µm)"))
    if summary["simulated"]:
        qds.add_column("truth E / FWHM / g²(0) raw / intrinsic", justify="right")
    for q in summary["qds"]:
        status = q["status"] if not q["reason"] else f"{q['status']}: {q['reason']}"
        if q.get("flags"):
            status += f" [{', '.join(q['flags'])}]"
        row = [str(q["id"]), _fmt(q["x_um"], None, 2), _fmt(q["y_um"], None, 2), status,
               _fmt(q["peak_energy_ev"], q["peak_energy_err_ev"], 4),
               _fmt(q.get("spectral_jitter_mev"), q.get("spectral_jitter_err_mev"), 1),
               _fmt(q["fwhm_mev"], q["fwhm_err_mev"], 1), _fmt(q["g2_0"], q["g2_0_err"], 3),
               _fmt(q["g2_0_bgcorr"], q["g2_0_bgcorr_err"], 3)]
        if summary["simulated"]:
            t = q.get("truth")
            row.append("—" if t is None else
                       f"{_fmt(t.get('energy_ev'), None, 4)} / {_fmt(t.get('fwhm_mev'), None, 1)}"
                       f" / {_fmt(t.get('g2_0'), None, 3)} / "
                       f"{_fmt(t.get('g2_0_intrinsic'), None, 3)}")
        qds.add_row(*row)
    console.print(qds)
    completed = sum(q["status"] == "completed" for q in summary["qds"])
    if completed:
        console.print(f"{completed} QDs completed; "
                      f"{exclusion_text(summary.get('excluded') or {})}")
    agreement = summary.get("truth_agreement")
    if agreement:
        console.print(truth_agreement_line(agreement))
