"""The results table of a re-analysis: one row per QD, Parquet or CSV by the suffix.

Rows are sorted by session (as given) and QD number, so the table is the same, value
for value, whatever the scheduler and the number of workers. Every row carries the
micropl version that re-analysed it (``software_version``) and the settings used
(``settings``, JSON); a Parquet file also holds both in its schema metadata
(``micropl.software_version``, ``micropl.settings``).

Column names follow ``micropl info --json`` (:func:`micropl.acquisition.summary.
session_summary`): ``peak_energy_ev``, ``peak_energy_err_ev``, ``fwhm_mev``,
``fwhm_err_mev``, ``g2_0``, ``g2_0_err``, ``g2_0_bgcorr``, ``g2_0_bgcorr_err``...
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from micropl import __version__
from micropl.acquisition.storage import prepare_output, write_new_file
from micropl.errors import AnalysisInputError, FileFormatError

__all__ = ["COLUMNS", "SUFFIXES", "check_out", "read_table", "sorted_rows", "write_table"]

#: Column name → Arrow type name, in table order.
COLUMNS: dict[str, str] = {
    "session": "string", "sample": "string", "batch": "string", "core_shell": "bool_",
    "qd_id": "int64", "run_id": "int64", "x_um": "float64", "y_um": "float64",
    "status": "string", "reason": "string", "flags": "string",
    "stored_status": "string", "stored_reason": "string", "task_error": "bool_",
    "model": "string", "peak_energy_ev": "float64", "peak_energy_err_ev": "float64",
    "fwhm_mev": "float64", "fwhm_err_mev": "float64", "fit_success": "bool_",
    "reduced_chi2": "float64", "fit_quality": "string", "two_lines": "bool_",
    "spectral_jitter_mev": "float64", "spectral_jitter_err_mev": "float64",
    "frame_energy_std_mev": "float64", "n_frames": "int64",
    "g2_0": "float64", "g2_0_err": "float64", "g2_0_bgcorr": "float64",
    "g2_0_bgcorr_err": "float64", "g2_rule_source": "string", "g2_0_fit": "float64",
    "g2_0_fit_err": "float64", "lifetime_ns": "float64", "lifetime_ns_err": "float64",
    "window_fraction": "float64", "g2_bin_ps": "int64", "n_side": "int64",
    "rep_rate_hz": "float64", "n_tags": "int64",
    "software_version": "string", "settings": "string",
}
#: Suffixes of ``--out`` and their formats.
SUFFIXES: dict[str, str] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_HINT = "choose another --out (a results table is never overwritten)"


def check_out(path: str | os.PathLike[str]) -> str:
    """The format of the table ``path`` (by its suffix), checked before any work.

    Raises
    ------
    AnalysisInputError
        For a suffix other than ``.parquet``/``.pq``/``.csv``.
    OutputExistsError, OutputPathError
        When ``path`` exists or cannot be created.
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise AnalysisInputError(f"{path}: unknown table format {path.suffix or '(none)'!r}; "
                                 f"give --out a name ending in .parquet or .csv")
    prepare_output(path, hint=_HINT)
    return fmt


def sorted_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` by session and QD number (the table's order)."""
    return sorted(rows, key=lambda r: (str(r["session"]), int(r["qd_id"])))


def _arrow_table(rows: list[dict[str, Any]], settings_json: str) -> Any:
    import pyarrow as pa

    data = {name: [r.get(name) for r in rows] for name in COLUMNS}
    data["software_version"] = [__version__] * len(rows)
    data["settings"] = [settings_json] * len(rows)
    schema = pa.schema([pa.field(n, getattr(pa, t)()) for n, t in COLUMNS.items()],
                       metadata={"micropl.software_version": __version__,
                                 "micropl.settings": settings_json})
    return pa.Table.from_pydict(data, schema=schema)


def write_table(rows: Iterable[dict[str, Any]], out: str | os.PathLike[str],
                settings: dict[str, Any]) -> Path:
    """Write the results table (sorted rows) to ``out``: Parquet or CSV by its suffix.

    The file is written under a temporary name and placed only if no file has the name.

    Returns
    -------
    Path
        The table written.
    """
    out = Path(out)
    fmt = check_out(out)
    table = _arrow_table(sorted_rows(rows), json.dumps(settings, sort_keys=True))

    def write(tmp: Path) -> None:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            import pyarrow.csv as pcsv

            pcsv.write_csv(table, tmp)

    return write_new_file(out, write, hint=_HINT)


def read_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a results table (Parquet or CSV by its suffix).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FileFormatError
        When it is not a micropl results table (one line).
    AnalysisInputError
        For a suffix other than ``.parquet``/``.pq``/``.csv``.
    """
    import pyarrow as pa

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise AnalysisInputError(f"{path}: unknown table format {path.suffix or '(none)'!r}; "
                                 "give a .parquet or .csv results table")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            import pyarrow.csv as pcsv

            types = {n: getattr(pa, t)() for n, t in COLUMNS.items()}
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types=types, strings_can_be_null=True,
                quoted_strings_can_be_null=False))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: not a readable results table "
                              f"({' '.join(str(exc).split())[:160]})") from None
    missing = [c for c in ("session", "sample", "qd_id", "status", "peak_energy_ev",
                           "fwhm_mev") if c not in table.column_names]
    if missing:
        raise FileFormatError(f"{path}: not a micropl results table (no column "
                              f"{', '.join(missing)}); make one with 'micropl reanalyze'")
    return table.to_pylist()
