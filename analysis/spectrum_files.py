"""Reader for two-column spectrum text files (wavelength in nm, counts).

Accepted: comma, semicolon, tab or whitespace delimiters; an optional header
line (any first line that is not numbers) and ``#`` comment lines; extra
columns are ignored. The wavelength must be strictly monotonic (a descending
file is returned ascending).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from micropl.analysis.errors import FileFormatError

__all__ = ["read_spectrum_file"]

_SPLIT = re.compile(r"[,;\s]+")


def _numbers(line: str) -> list[float] | None:
    fields = [f for f in _SPLIT.split(line.strip()) if f]
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def read_spectrum_file(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a two-column spectrum file.

    Parameters
    ----------
    path : str or os.PathLike
        Text file with wavelength (nm) in the first column and counts in the
        second.

    Returns
    -------
    wavelength_nm : ndarray of float64, shape (n_px,)
        Strictly increasing wavelengths in nm.
    counts : ndarray of float64, shape (n_px,)
        Counts per pixel, in the same order.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    FileFormatError
        Empty, one column, non-numeric rows, non-finite values, all-zero
        counts, fewer than 3 points or non-monotonic wavelength; the message
        names the file and the problem (and the line number where it helps).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file", str(p))
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, not a spectrum file")
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{p}: not a text file ({exc.reason} at byte {exc.start})") from exc
    rows: list[list[float]] = []
    first_content = True
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        values = _numbers(stripped)
        if values is None:
            if first_content:  # a header line
                first_content = False
                continue
            raise FileFormatError(f"{p}: line {number} is not numeric: {stripped[:40]!r}")
        first_content = False
        if len(values) < 2:
            raise FileFormatError(
                f"{p}: line {number} has one column; need wavelength (nm) and counts")
        rows.append(values[:2])
    if not rows:
        raise FileFormatError(f"{p}: no data rows (empty file or header only)")
    data = np.asarray(rows, dtype=np.float64)
    wavelength_nm, counts = data[:, 0], data[:, 1]
    if not np.all(np.isfinite(data)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(data), axis=1))[0]) + 1
        raise FileFormatError(f"{p}: non-finite value (nan/inf) in data row {bad}")
    if wavelength_nm.size < 3:
        raise FileFormatError(f"{p}: only {wavelength_nm.size} data rows; need at least 3")
    if np.all(counts == 0):
        raise FileFormatError(f"{p}: all counts are zero")
    if np.any(wavelength_nm <= 0):
        raise FileFormatError(f"{p}: wavelengths must be positive (nm)")
    step = np.diff(wavelength_nm)
    if np.all(step < 0):
        wavelength_nm, counts = wavelength_nm[::-1].copy(), counts[::-1].copy()
    elif not np.all(step > 0):
        bad = int(np.flatnonzero(step * np.sign(step.sum()) <= 0)[0]) + 2
        raise FileFormatError(f"{p}: wavelength is not strictly monotonic (data row {bad})")
    return wavelength_nm, counts
