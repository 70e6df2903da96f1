"""``micropl info FILE [--json]``: summarise a session file (also while it is written)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from typing import Any

import numpy as np

from micropl.acquisition.storage import SessionReader

__all__ = ["register", "run", "session_summary", "print_summary", "TRUTH_MATCH_UM"]

#: Largest distance between a QD's position and a truth emitter matched to it, µm.
TRUTH_MATCH_UM = 1.0
_TRUTH_KEYS = ("x_um", "y_um", "energy_ev", "fwhm_mev", "g2_0")


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
        from micropl.acquisition.cli import UsageError

        raise UsageError("info: give a session FILE, or --instruments")
    with SessionReader(args.file) as reader:
        summary = session_summary(reader)
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    else:
        print_summary(summary)
    return 0


def _instruments(as_json: bool) -> int:
    from micropl.acquisition.instruments_report import driver_table

    rows = driver_table()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
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
    return 0


# --------------------------------------------------------------------------- summary
def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON output cannot hold) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(t_s: float) -> str | None:
    if not math.isfinite(t_s):
        return None
    return _dt.datetime.fromtimestamp(t_s, _dt.UTC).isoformat(timespec="seconds")


def _latest_per_qd(rows: np.ndarray, prefer_kind: str) -> dict[int, int]:
    """Row index of the latest row per QD, preferring rows of ``prefer_kind``."""
    best: dict[int, tuple[bool, int, int]] = {}
    preferred = prefer_kind.encode()
    for i, (qd_id, seq, kind) in enumerate(zip(rows["qd_id"], rows["seq"], rows["kind"])):
        key = (kind == preferred, int(seq), i)
        if qd_id >= 0 and (int(qd_id) not in best or key > best[int(qd_id)]):
            best[int(qd_id)] = key
    return {qd: key[2] for qd, key in best.items()}


def _main_line(values: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The strongest line of a (possibly multi-peak) fit, as floats."""
    flat = {k: np.asarray(v, dtype=float).ravel() for k, v in values.items()}
    area = flat.pop("area")
    k = 0
    if area.size > 1 and np.isfinite(area).any():
        k = int(np.nanargmax(area))
    return {name: _num(v[k]) if v.size > k else None for name, v in flat.items()}


def _fits(reader: SessionReader) -> dict[int, dict[str, Any]]:
    if "spectrum_fit" not in reader.tables:
        return {}
    rows = reader.rows("spectrum_fit")
    pick = _latest_per_qd(rows, "accumulated")
    if not pick:
        return {}
    qd_ids = list(pick)
    chosen = rows[[pick[q] for q in qd_ids]]
    names = ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "area",
             "success")
    columns = {n: reader.values("spectrum_fit", n, chosen) for n in names}
    out = {}
    for i, qd_id in enumerate(qd_ids):
        line = _main_line({n: columns[n][i] for n in names if n != "success"})
        line["fit_success"] = bool(np.all(columns["success"][i]))
        out[qd_id] = line
    return out


def _g2(reader: SessionReader) -> dict[int, dict[str, Any]]:
    """Peak-area g²(0) (raw and background-corrected), and the peak-train fit's
    background-free g²(0) and lifetime, per QD."""
    out: dict[int, dict[str, Any]] = {}
    if "g2_result" in reader.tables:
        rows = reader.rows("g2_result")
        for qd, i in _latest_per_qd(rows, "final").items():
            out[qd] = {"g2_0": _num(rows["g2_0"][i]), "g2_0_err": _num(rows["g2_0_err"][i]),
                       "g2_0_bgcorr": _num(rows["g2_0_bgcorr"][i]),
                       "g2_0_bgcorr_err": _num(rows["g2_0_bgcorr_err"][i])}
    if "peak_train_fit" in reader.tables:
        rows = reader.rows("peak_train_fit")
        for qd, i in _latest_per_qd(rows, "final").items():
            out.setdefault(qd, dict(_NO_G2)).update({
                "g2_0_fit": _num(rows["g2_0"][i]), "g2_0_fit_err": _num(rows["g2_0_err"][i]),
                "lifetime_ns": _num(rows["lifetime_ns"][i]),
                "lifetime_ns_err": _num(rows["lifetime_ns_err"][i])})
    return out


_NO_G2: dict[str, None] = dict.fromkeys(
    ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_fit", "g2_0_fit_err",
     "lifetime_ns", "lifetime_ns_err"))


def _truth_match(truth: dict[str, np.ndarray] | None, x_um: float,
                 y_um: float) -> dict[str, Any] | None:
    if not truth or "x_um" not in truth or "y_um" not in truth or truth["x_um"].size == 0:
        return None
    distance = np.hypot(truth["x_um"] - x_um, truth["y_um"] - y_um)
    k = int(np.argmin(distance))
    if not distance[k] <= TRUTH_MATCH_UM:
        return None
    match: dict[str, Any] = {key: _num(truth[key][k]) for key in _TRUTH_KEYS if key in truth}
    match["index"] = k
    match["distance_um"] = _num(distance[k])
    return match


def session_summary(reader: SessionReader) -> dict[str, Any]:
    """JSON-ready summary of a session: metadata, runs and QDs with their results.

    Returns
    -------
    dict
        ``file``, ``software_version``, ``created``, ``simulated``,
        ``being_written``, ``resume_count``, ``n_rows`` (per table), ``runs``
        (``run_id``, ``procedure``, ``status``, ``reason``, ``start``, ``end``
        as ISO 8601 UTC or null) and ``qds`` (``id``, ``run_id``, ``x_um``,
        ``y_um``, ``status``, ``reason``, ``peak_energy_ev``,
        ``peak_energy_err_ev``, ``fwhm_mev``, ``fwhm_err_mev``, ``fit_success``,
        ``g2_0``, ``g2_0_err`` (peak-area ratio), ``g2_0_bgcorr``,
        ``g2_0_bgcorr_err``, ``g2_0_fit``, ``g2_0_fit_err``, ``lifetime_ns``,
        ``lifetime_ns_err`` (peak-train fit) — null when not measured — and, for simulated
        sessions, ``truth``: the nearest emitter within :data:`TRUTH_MATCH_UM`
        with ``x_um, y_um, energy_ev, fwhm_mev, g2_0``, or null).
    """
    reader.refresh()
    runs = [{
        "run_id": r.run_id,
        "procedure": r.procedure,
        "status": r.status,
        "reason": r.reason or None,
        "start": _iso(r.start_s),
        "end": _iso(r.end_s),
        "parameters": _finite(reader.json_field(r.parameters_json,
                                                f"run {r.run_id} parameters_json"))
        if r.parameters_json else None,
    } for r in reader.runs()]
    fits = _fits(reader)
    g2 = _g2(reader)
    truth = reader.truth if reader.simulated else None
    empty_fit = {"peak_energy_ev": None, "peak_energy_err_ev": None, "fwhm_mev": None,
                 "fwhm_err_mev": None, "fit_success": None}
    qds = []
    for q in reader.qds():
        entry: dict[str, Any] = {
            "id": q.qd_id, "run_id": q.run_id, "x_um": _num(q.x_um), "y_um": _num(q.y_um),
            "status": q.status, "reason": q.reason or None,
        }
        entry.update(fits.get(q.qd_id, empty_fit))
        entry.update(_NO_G2)
        entry.update(g2.get(q.qd_id, {}))
        if reader.simulated:
            entry["truth"] = _truth_match(truth, q.x_um, q.y_um)
        qds.append(entry)
    return {
        "file": str(reader.path),
        "software_version": reader.software_version,
        "created": reader.created,
        "simulated": reader.simulated,
        "being_written": reader.writer_alive(),
        "resume_count": reader.resume_count,
        "n_rows": {t: reader.n_rows(t) for t in reader.tables if reader.n_rows(t)},
        "runs": runs,
        "qds": qds,
    }


# --------------------------------------------------------------------------- rich output
def _fmt(value: float | None, err: float | None, digits: int) -> str:
    if value is None:
        return "—"
    if err is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ± {err:.{digits}f}"


def print_summary(summary: dict[str, Any]) -> None:
    """Rich tables of a :func:`session_summary` on stdout."""
    from rich.console import Console
    from rich.table import Table

    # Rich falls back to 80 columns when piped; the QD table needs more.
    console = Console(width=None if sys.stdout.isatty() else 140)
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
    for col in ("QD", "x (µm)", "y (µm)", "status", "E (eV)", "FWHM (meV)", "g²(0)"):
        qds.add_column(col, justify="right" if col != "status" else "left",
                       no_wrap=col in ("status", "E (eV)", "FWHM (meV)", "g²(0)"))
    if summary["simulated"]:
        qds.add_column("truth E / FWHM / g²(0)", justify="right")
    for q in summary["qds"]:
        status = q["status"] if not q["reason"] else f"{q['status']}: {q['reason']}"
        row = [str(q["id"]), _fmt(q["x_um"], None, 2), _fmt(q["y_um"], None, 2), status,
               _fmt(q["peak_energy_ev"], q["peak_energy_err_ev"], 4),
               _fmt(q["fwhm_mev"], q["fwhm_err_mev"], 1), _fmt(q["g2_0"], q["g2_0_err"], 3)]
        if summary["simulated"]:
            t = q.get("truth")
            row.append("—" if t is None else
                       f"{_fmt(t.get('energy_ev'), None, 4)} / {_fmt(t.get('fwhm_mev'), None, 1)}"
                       f" / {_fmt(t.get('g2_0'), None, 3)}")
        qds.add_row(*row)
    console.print(qds)
