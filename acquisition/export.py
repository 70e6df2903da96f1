"""Export of a session file (``micropl export``): tags to PTU; spectra, g², QDs to CSV.

* ``--ptu DIR``: the time tags of each QD and run (every ``tag_chunk`` row of
  that QD in that run, in order) become one PicoQuant PTU file with HydraHarp
  V2 T2 records, ``qd<id>_run<run>.ptu`` (``run<run>.ptu`` for tags that
  belong to no QD). When the tagger's time base restarted inside a
  measurement (a retried QD), each stretch of chunks with increasing times becomes
  its own file, ``qd<id>_run<run>_part<k>.ptu``. Times start at 0 at the start of
  the measurement (its first chunk's start; the offset on the session's tagger time
  base is the header entry ``micropl_TimeOffset_ps``), and
  ``MeasDesc_AcquisitionTime`` is the time the chunks cover, so the rates read back
  are the measurement's. The sync rate written is the repetition rate of that
  measurement's g² result, else the laser's in the instrument snapshot.
* ``--csv DIR``: each stored spectrum becomes ``wavelength_nm,counts`` CSV,
  ``qd<id>_run<run>_<kind>_seq<seq>.csv``; each stored g² histogram
  ``delay_ns,counts`` CSV, ``qd<id>_run<run>_g2_<kind>_seq<seq>.csv``; and the QD
  summary (``micropl info --json``'s ``qds``: one row per QD with every fitted
  quantity, its error, the flags and the status) ``qd_summary.csv`` and
  ``qd_summary.json``. In the CSV, lists are joined with ``;`` and nested values
  (``truth``) become ``truth_<key>`` columns. Numbers are written at the precision
  they carry: the shortest text that reads back as the same float64 (Python's
  ``repr``), whole numbers without a decimal point.

The session file is only read. Every output is written under a temporary name
and placed under its final name only if no file has that name (exclusively, so
a file created meanwhile by another process is not replaced either): export
never overwrites a file. When one output exists, the export stops with one
line naming it, and the files it had written are removed again.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from micropl.acquisition.storage import (
    OutputPathError,
    SessionReader,
    prepare_output,
    write_new_file,
)
from micropl.errors import AnalysisInputError

__all__ = ["export_csv", "export_g2_csv", "export_ptu", "export_summary", "number_text"]


_HINT = "choose another folder, or move the existing file away (export never overwrites)"


def _out_dir(path: Path) -> Path:
    if os.path.lexists(path) and not os.path.isdir(path):
        raise OutputPathError(f"{path}: not a directory")
    if not os.path.exists(path):
        prepare_output(path, hint="choose another folder")
        try:
            path.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputPathError(f"{path}: cannot create the folder "
                                  f"({exc.strerror or exc}); choose another folder") from None
    elif not os.access(path, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: folder is not writable; choose another folder")
    return path


def _name(qd_id: int, run_id: int) -> str:
    return f"run{run_id}" if qd_id < 0 else f"qd{qd_id}_run{run_id}"


# --------------------------------------------------------------------------- PTU
def _find_key(tree: Any, key: str) -> Any:
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _sync_rates(reader: SessionReader) -> tuple[dict[tuple[int, int], float], float | None]:
    """Rep rate per (qd, run) from g² results, and the laser's from the snapshot."""
    per: dict[tuple[int, int], float] = {}
    if "g2_result" in reader.tables:
        rows = reader.rows("g2_result")
        for qd_id, run_id, rate in zip(rows["qd_id"], rows["run_id"], rows["rep_rate_hz"]):
            if np.isfinite(rate) and rate > 0:
                per[(int(qd_id), int(run_id))] = float(rate)
    instruments = reader.instruments
    laser = _find_key(instruments.get("laser", {}), "rep_rate_hz")
    if laser is None:
        laser = _find_key(instruments, "rep_rate_hz")
    return per, (float(laser) if laser else None)


def _increasing_runs(t_ps: np.ndarray) -> list[slice]:
    """Slices of ``t_ps`` over which times never decrease."""
    breaks = np.flatnonzero(np.diff(t_ps) < 0) + 1
    edges = [0, *breaks.tolist(), t_ps.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def export_ptu(reader: SessionReader, out_dir: str | os.PathLike[str],
               done: list[Path] | None = None) -> list[Path]:
    """Write the raw tags of each (QD, run) as PTU T2 files; the paths written.

    Each file is created exclusively (never overwriting); ``done``, when given,
    gets every path as soon as it is written (for the caller's clean-up).

    Raises
    ------
    OutputExistsError
        When an output file exists already.
    AnalysisInputError
        When no sync rate is known for a measurement, or the tags cannot be
        encoded (negative times, channels outside 1–64).
    """
    from micropl.analysis.ptu_write import write_ptu_t2

    out = _out_dir(Path(out_dir))
    rows = reader.rows("tag_chunk")
    if rows.shape[0] == 0:
        return []
    rates, laser_rate = _sync_rates(reader)
    written = []
    groups = sorted({(int(q), int(r)) for q, r in zip(rows["qd_id"], rows["run_id"])},
                    key=lambda g: (g[1], g[0]))
    for qd_id, run_id in groups:
        parts = _measurements(reader, qd_id, run_id)
        if not parts:
            continue
        rate = rates.get((qd_id, run_id), laser_rate)
        if rate is None:
            raise AnalysisInputError(f"{reader.path}: no repetition rate known for "
                                     f"{_name(qd_id, run_id)} (no g² result, no laser "
                                     f"snapshot)")
        for k, (t_ps, channel, t0, t1) in enumerate(parts):
            suffix = "" if len(parts) == 1 else f"_part{k}"
            path = out / f"{_name(qd_id, run_id)}{suffix}.ptu"
            extra = {"File_Comment": f"micropl export of {reader.path.name}: "
                                     f"{_name(qd_id, run_id)}{suffix}",
                     "micropl_TimeOffset_ps": int(t0)}
            write_new_file(path, lambda tmp, t=t_ps - t0, ch=channel, r=rate, e=extra,
                           acq=(t1 - t0) * 1e-12: write_ptu_t2(
                               tmp, t, ch, sync_rate_hz=r, header_extra=e,
                               acquisition_time_s=acq), hint=_HINT)
            written.append(path)
            if done is not None:
                done.append(path)
    return written


def _measurements(reader: SessionReader, qd_id: int, run_id: int
                  ) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """The tags of one QD and run as measurements: ``(t_ps, channel, start, stop)``.

    Chunks follow each other on one time base; a chunk that starts before the
    previous one stopped (or tags that go back) begins a new measurement (the
    tagger's time base restarted). ``start``/``stop`` are the first chunk's start and
    the last chunk's stop, ps (widened to the tags if they lie outside).
    """
    rows = reader.rows("tag_chunk", qd_id=qd_id, run_id=run_id)
    if rows.shape[0] == 0:
        return []
    times = reader.values("tag_chunk", "t_ps", rows)
    channels = reader.values("tag_chunk", "channel", rows)
    parts: list[list[int]] = []
    prev_stop = prev_tag = None
    for i, (row, t) in enumerate(zip(rows, times)):
        start = int(row["t_start_ps"])
        restart = prev_stop is not None and (
            start < prev_stop or (t.size and prev_tag is not None and t[0] < prev_tag))
        if not parts or restart:
            parts.append([])
        parts[-1].append(i)
        prev_stop = int(row["t_stop_ps"])
        if t.size:
            prev_tag = int(t[-1])
    out = []
    for idx in parts:
        t_ps = np.concatenate([times[i] for i in idx]).astype(np.int64)
        ch = np.concatenate([channels[i] for i in idx])
        if t_ps.size == 0:
            continue
        for run in _increasing_runs(t_ps):  # tags out of order inside chunks: split too
            t_run = t_ps[run]
            first = int(rows[idx[0]]["t_start_ps"]) if run.start == 0 else int(t_run[0])
            last = int(rows[idx[-1]]["t_stop_ps"]) if run.stop == t_ps.size else int(t_run[-1])
            start = min(first, int(t_run[0]))
            out.append((t_run, ch[run], start, max(last, int(t_run[-1]))))
    return out


# --------------------------------------------------------------------------- CSV
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def number_text(value) -> str:
    """A number at the precision it carries: the shortest text that reads back as the
    same float64 (``repr``), whole numbers as integers, ``nan``/``inf`` as such.

    Examples
    --------
    >>> number_text(18.1), number_text(3.0), number_text(0.1 + 0.2)
    ('18.1', '3', '0.30000000000000004')
    """
    x = float(value)
    if x == 0 and math.copysign(1.0, x) < 0:
        return "-0"
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:  # repr: "123.0"
        return str(int(x))
    return repr(x)


def _write_columns(path: Path, header: str, columns: list[np.ndarray]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header + "\n")
        for row in zip(*columns):
            fh.write(",".join(number_text(v) for v in row) + "\n")


def export_csv(reader: SessionReader, out_dir: str | os.PathLike[str],
               done: list[Path] | None = None) -> list[Path]:
    """Write each stored spectrum as ``wavelength_nm,counts`` CSV; the paths written.

    Numbers are written at the precision they carry (:func:`number_text`), so
    reading the CSV back gives the stored float64 values exactly. Each file is
    created exclusively (never overwriting; see :func:`export_ptu` for ``done``).
    """
    out = _out_dir(Path(out_dir))
    rows = reader.rows("spectrum")
    written = []
    for start in range(0, rows.shape[0], 256):  # bounded memory for long sessions
        block = rows[start: start + 256]
        wavelengths = reader.values("spectrum", "wavelength_nm", block)
        counts = reader.values("spectrum", "counts", block)
        for row, wl, c in zip(block, wavelengths, counts):
            kind = _SAFE.sub("_", row["kind"].decode("utf-8")) or "spectrum"
            name = f"{_name(int(row['qd_id']), int(row['run_id']))}_{kind}_seq{int(row['seq'])}"
            path = out / f"{name}.csv"
            write_new_file(path, lambda tmp, w=wl, n=c: _write_columns(
                tmp, "wavelength_nm,counts", [w, n]), hint=_HINT)
            written.append(path)
            if done is not None:
                done.append(path)
    return written


def export_g2_csv(reader: SessionReader, out_dir: str | os.PathLike[str],
                  done: list[Path] | None = None) -> list[Path]:
    """Write each stored g² histogram as ``delay_ns,counts`` CSV; the paths written.

    ``micropl analyze g2`` reads the files back (the header names the unit).
    """
    out = _out_dir(Path(out_dir))
    if "g2_histogram" not in reader.tables:
        return []
    rows = reader.rows("g2_histogram")
    written = []
    for start in range(0, rows.shape[0], 256):
        block = rows[start: start + 256]
        taus = reader.values("g2_histogram", "tau_ps", block)
        counts = reader.values("g2_histogram", "counts", block)
        for row, tau, c in zip(block, taus, counts):
            kind = _SAFE.sub("_", row["kind"].decode("utf-8")) or "g2"
            name = (f"{_name(int(row['qd_id']), int(row['run_id']))}_g2_{kind}"
                    f"_seq{int(row['seq'])}")
            path = out / f"{name}.csv"
            delay_ns = np.asarray(tau) / 1e3
            write_new_file(path, lambda tmp, d=delay_ns, n=c: _write_columns(
                tmp, "delay_ns,counts", [d, n]), hint=_HINT)
            written.append(path)
            if done is not None:
                done.append(path)
    return written


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | np.integer | np.floating):
        return number_text(value)
    if isinstance(value, list | tuple):
        return ";".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, allow_nan=False, default=str)
    text = str(value)
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""').replace("\n", " ").replace("\r", " ") + '"'
    return text


def _flat(qd: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a QD: nested dicts of values (``truth``) as ``key_sub`` columns."""
    row: dict[str, Any] = {}
    for key, value in qd.items():
        if key == "truth":
            for sub, v in (value or {}).items():
                row[f"truth_{sub}"] = v
        else:
            row[key] = value
    return row


def export_summary(reader: SessionReader, out_dir: str | os.PathLike[str],
                   done: list[Path] | None = None) -> list[Path]:
    """Write the QD summary as ``qd_summary.csv`` and ``qd_summary.json``.

    The rows are ``micropl info --json``'s ``qds``
    (:func:`~micropl.acquisition.summary.session_summary`), one per QD, with its
    column names; the JSON file holds that list as it is.
    """
    from micropl.acquisition.summary import session_summary

    out = _out_dir(Path(out_dir))
    qds = _plain(session_summary(reader)["qds"])
    rows = [_flat(q) for q in qds]
    columns: list[str] = [] if rows else ["id", "run_id", "x_um", "y_um", "status", "reason"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    written = []
    csv_path, json_path = out / "qd_summary.csv", out / "qd_summary.json"

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(",".join(columns) + "\n")
            for row in rows:
                fh.write(",".join(_cell(row.get(c)) for c in columns) + "\n")

    def write_json(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(qds, fh, indent=1, allow_nan=False)
            fh.write("\n")

    for path, writer in ((csv_path, write_csv), (json_path, write_json)):
        write_new_file(path, writer, hint=_HINT)
        written.append(path)
        if done is not None:
            done.append(path)
    return written


def _plain(value: Any) -> Any:
    """JSON types: numpy values as Python numbers, NaN/inf as None, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
