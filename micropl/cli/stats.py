"""``micropl stats RESULTS --by sample|batch|label``: the statistics of a results table.

Per group: the FWHM histogram, the mean FWHM with its standard error, FWHM against
peak energy with the fitted slope and its 1σ error, the g²(0) distribution, and
core-only against core/shell where the table records it
(:mod:`micropl.reanalysis.stats`). Printed (``--json``: one object) and drawn into a
PNG (``--report``, default beside RESULTS; never overwritten).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from micropl.cli.output import print_json

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stats`` command."""
    from micropl.reanalysis.stats import GROUP_KEYS

    parser = subparsers.add_parser(
        "stats", help="statistics and figures of a results table (micropl reanalyze)",
        description="FWHM histograms, FWHM against peak energy with the fitted slope, and "
                    "core-only against core/shell, per group of a results table, with "
                    "errors. QDs flagged multiple_emitters are left out and counted.")
    parser.add_argument("results", type=Path, help="results table (.parquet or .csv)")
    parser.add_argument("--by", choices=tuple(GROUP_KEYS), default="sample",
                        help="group by the sample label (sample, or label), the emitter "
                             "batch, or the session file (default sample)")
    parser.add_argument("--bin-mev", type=float, default=5.0, metavar="W",
                        help="FWHM histogram bin width, meV (default 5)")
    parser.add_argument("--report", type=Path, metavar="FILE.png",
                        help="figure to write (default RESULTS-stats-BY.png beside RESULTS)")
    parser.add_argument("--no-report", action="store_true", help="write no figure")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Compute, print and draw the statistics; 0 on success."""
    from micropl.acquisition.storage import prepare_output, write_new_file
    from micropl.cli import UsageError
    from micropl.reanalysis.report import write_stats_report
    from micropl.reanalysis.stats import group_statistics, statistics_json
    from micropl.reanalysis.table import read_table

    if not (math.isfinite(args.bin_mev) and args.bin_mev > 0):
        raise UsageError(f"--bin-mev must be > 0, got {args.bin_mev}")
    report = None
    if not args.no_report:
        report = args.report or args.results.with_name(
            f"{args.results.stem}-stats-{args.by}.png")
        prepare_output(report, hint="choose another --report (or --no-report)")
    rows = read_table(args.results)
    groups = group_statistics(rows, args.by, fwhm_bin_mev=args.bin_mev)
    if report is not None:
        write_new_file(report, lambda tmp: write_stats_report(
            groups, tmp, by=args.by, title=args.results.name),
            hint="choose another --report (or --no-report)")
    out = statistics_json(groups, args.by)
    out["report"] = None if report is None else str(report)
    if args.json:
        print_json(out)
    else:
        sys.stdout.write(_human(out) + "\n")
    return 0


def _pm(value: Any, err: Any, fmt: str = ".1f") -> str:
    if value is None:
        return "—"
    return f"{value:{fmt}}" + ("" if err is None else f" ± {err:{fmt}}")


def _human(out: dict[str, Any]) -> str:
    lines = [f"statistics by {out['by']}:"]
    for g in out["groups"]:
        counts = ", ".join(f"{n} {s}" for s, n in g["status_counts"].items() if n)
        lines.append(f"  {g['name']}: {g['n_qds']} QDs ({counts})")
        if g.get("problem"):
            lines.append(f"    no statistics: {g['problem']}")
            continue
        lines.append(f"    FWHM mean {_pm(g['fwhm_mean_mev'], g['fwhm_mean_err_mev'])} meV "
                     f"(n = {g['n_valid']}), median {_pm(g['fwhm_median_mev'], None)} meV")
        if g.get("slope_mev_per_ev") is not None:
            lines.append(f"    FWHM against energy: slope "
                         f"{_pm(g['slope_mev_per_ev'], g['slope_err_mev_per_ev'], '.0f')} "
                         f"meV/eV, r = {g['pearson_r']:.2f}")
        cs = g.get("core_only_vs_core_shell")
        if cs:
            f = cs["fwhm_mev"]
            lines.append(f"    core-only {_pm(f['mean_a'], f['sem_a'])} meV (n = {f['n_a']}) "
                         f"vs core/shell {_pm(f['mean_b'], f['sem_b'])} meV (n = {f['n_b']}): "
                         f"difference {_pm(f['difference'], f['difference_err'])} meV")
    if out.get("report"):
        lines.append(f"report: {out['report']}")
    return "\n".join(lines)
