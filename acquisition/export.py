"""Export of a session file (``micropl export``): raw tags to PTU, spectra to CSV.

* ``--ptu DIR``: the time tags of each QD and run (every ``tag_chunk`` row of
  that QD in that run, in order) become one PicoQuant PTU file with HydraHarp
  V2 T2 records, ``qd<id>_run<run>.ptu`` (``run<run>.ptu`` for tags that
  belong to no QD). When the tagger's time base restarted inside a
  measurement (a retried QD), each stretch of increasing times becomes its own
  file, ``qd<id>_run<run>_part<k>.ptu``. The sync rate written is the
  repetition rate of that measurement's g² result, else the laser's in the
  instrument snapshot.
* ``--csv DIR``: each stored spectrum becomes ``wavelength_nm,counts`` CSV,
  ``qd<id>_run<run>_<kind>_seq<seq>.csv``.

The session file is only read. Every output is written under a temporary name
and placed under its final name only if no file has that name (exclusively, so
a file created meanwhile by another process is not replaced either): export
never overwrites a file. When one output exists, the export stops with one
line naming it, and the files it had written are removed again.
"""

from __future__ import annotations

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

__all__ = ["export_ptu", "export_csv"]


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
        t_ps, channel = reader.tags(qd_id=qd_id, run_id=run_id)
        if t_ps.size == 0:
            continue
        rate = rates.get((qd_id, run_id), laser_rate)
        if rate is None:
            raise AnalysisInputError(f"{reader.path}: no repetition rate known for "
                                     f"{_name(qd_id, run_id)} (no g² result, no laser "
                                     f"snapshot)")
        parts = _increasing_runs(t_ps)
        for k, part in enumerate(parts):
            suffix = "" if len(parts) == 1 else f"_part{k}"
            path = out / f"{_name(qd_id, run_id)}{suffix}.ptu"
            comment = f"micropl export of {reader.path.name}: {_name(qd_id, run_id)}{suffix}"
            write_new_file(path, lambda tmp, t=t_ps[part], ch=channel[part], r=rate,
                           c=comment: write_ptu_t2(tmp, t, ch, sync_rate_hz=r,
                                                   header_extra={"File_Comment": c}),
                           hint=_HINT)
            written.append(path)
            if done is not None:
                done.append(path)
    return written


# --------------------------------------------------------------------------- CSV
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def export_csv(reader: SessionReader, out_dir: str | os.PathLike[str],
               done: list[Path] | None = None) -> list[Path]:
    """Write each stored spectrum as ``wavelength_nm,counts`` CSV; the paths written.

    Numbers are written with 17 significant digits, so reading the CSV back
    gives the stored float64 values exactly. Each file is created exclusively
    (never overwriting; see :func:`export_ptu` for ``done``).
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
            data = np.column_stack([wl, c])
            write_new_file(path, lambda tmp, d=data: np.savetxt(
                tmp, d, delimiter=",", fmt="%.17g", header="wavelength_nm,counts",
                comments=""), hint=_HINT)
            written.append(path)
            if done is not None:
                done.append(path)
    return written
