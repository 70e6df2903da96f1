"""Histogram text laid out in rows: the delays on one line, the counts on the next.

FitMyData and some spreadsheets write a g² histogram as two rows, optionally with a
label as the first field of each (``tau_ns, -50, -49.9, ...`` / ``counts, 12, 9,
...``). :func:`looks_like_rows` recognises the layout (the file's data lines are two,
or three with more count rows, each with at least 3 numbers); :func:`read_rows`
reads it. The delay unit follows the rules of columns files
(:func:`~micropl.analysis.tags.read_histogram_file`): the delay row's label (``ns``
or ``ps``), else inferred the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from micropl.analysis.spectrum_files import read_text_limited, text_lines
from micropl.errors import FileFormatError

__all__ = ["looks_like_rows", "read_rows"]

_SPLIT = re.compile(r"[,;\s]+")
#: Most count rows (snapshots) of a rows file.
MAX_ROWS = 64


def _fields(line: str) -> list[str]:
    if "\t" in line or ";" in line:  # tab/semicolon rows: a comma is a decimal comma
        return [f.replace(",", ".", 1) if f.count(",") == 1 else f
                for f in re.split(r"[;\s]+", line) if f]
    return [f for f in _SPLIT.split(line) if f]


def _numeric(fields: list[str]) -> tuple[str | None, list[float]] | None:
    """(label, numbers) of a row whose fields after an optional label are numbers."""
    label = None
    if fields:
        try:
            float(fields[0])
        except ValueError:
            label, fields = fields[0], fields[1:]
    try:
        return label, [float(f) for f in fields]
    except ValueError:
        return None


def _data_lines(path: Path) -> list[str]:
    text = read_text_limited(path, "histogram").decode("utf-8", errors="replace")
    lines = []
    for _, line in text_lines(path, text):
        if line and not line.startswith("#"):
            lines.append(line)
            if len(lines) > MAX_ROWS + 1:
                break
    return lines


def looks_like_rows(path: Path) -> bool:
    """Whether ``path`` is a histogram in rows: 2 to ``MAX_ROWS + 1`` data lines of the
    same length, at least 3 numbers and more numbers than lines each, the first line
    increasing (the delays).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.rows import looks_like_rows
    >>> folder = tempfile.TemporaryDirectory()
    >>> rows = Path(folder.name) / "rows.csv"
    >>> _ = rows.write_text("tau_ns,-1,0,1,2\\ncounts,10,2,11,9\\n")
    >>> columns = Path(folder.name) / "columns.txt"
    >>> _ = columns.write_text("-1 10\\n0 2\\n1 11\\n2 9\\n")
    >>> looks_like_rows(rows), looks_like_rows(columns)
    (True, False)
    >>> folder.cleanup()
    """
    lines = _data_lines(path)
    if not 2 <= len(lines) <= MAX_ROWS + 1:
        return False
    rows = [_numeric(_fields(line)) for line in lines]
    if any(r is None or len(r[1]) < 3 for r in rows):
        return False
    if len({len(r[1]) for r in rows}) != 1 or len(rows[0][1]) <= len(rows):
        return False  # a square block of numbers is read as columns
    return bool(np.all(np.diff(rows[0][1]) > 0))  # the first row: increasing delays


def _unit(label: str | None, delay: np.ndarray) -> tuple[str, str]:
    if label is not None:
        low = label.lower()
        if re.search(r"(^|[^a-z])ns([^a-z]|$)", low):
            return "ns", "header"
        if re.search(r"(^|[^a-z])ps([^a-z]|$)", low):
            return "ps", "header"
    spacing = float(np.median(np.diff(delay)))
    integer = bool(np.all(np.abs(delay - np.round(delay)) < 1e-9))
    span = float(delay[-1] - delay[0])
    return ("ns" if (not integer or spacing < 1 or span < 2000) else "ps"), "inferred"


def read_rows(path: Path, delay_unit: str | None = None):
    """Read a histogram in rows.

    Parameters
    ----------
    path : Path
        The file.
    delay_unit : {"ns", "ps"}, optional
        Unit of the delay row (default: its label, else inferred).

    Returns
    -------
    HistogramData
        As :func:`~micropl.analysis.tags.read_histogram_file` (the count rows summed).

    Raises
    ------
    FileFormatError
        Not two or more rows of numbers of equal length, non-increasing delays,
        negative or non-finite counts.

    Examples
    --------
    Two count rows (snapshots) are summed; the ``ns`` in the label sets the unit:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.rows import read_rows
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "rows.csv"
    >>> _ = path.write_text("tau_ns,-1,0,1,2\\ncounts,10,2,11,9\\ncounts,8,1,9,10\\n")
    >>> hist = read_rows(path)
    >>> hist.tau_ps.tolist(), hist.counts.tolist()
    ([-1000.0, 0.0, 1000.0, 2000.0], [18.0, 3.0, 20.0, 19.0])
    >>> hist.delay_unit, hist.unit_source, hist.n_snapshots
    ('ns', 'header', 2)
    >>> folder.cleanup()
    """
    from micropl.analysis.tags import HistogramData

    lines = _data_lines(path)
    rows = [_numeric(_fields(line)) for line in lines]
    if len(rows) < 2 or any(r is None for r in rows):
        raise FileFormatError(f"{path}: not a histogram in rows (a row of delays, then rows "
                              "of counts, numbers only after an optional label)")
    if len(rows) > MAX_ROWS + 1:
        raise FileFormatError(f"{path}: more than {MAX_ROWS} count rows")
    lengths = {len(r[1]) for r in rows}
    if len(lengths) != 1:
        raise FileFormatError(f"{path}: rows of {sorted(lengths)} numbers; the delay row and "
                              "the count rows need the same length")
    delay = np.array(rows[0][1])
    counts = np.array([r[1] for r in rows[1:]])
    if delay.size < 3:
        raise FileFormatError(f"{path}: fewer than 3 bins")
    if not (np.all(np.isfinite(delay)) and np.all(np.isfinite(counts))):
        raise FileFormatError(f"{path}: NaN or infinite values in the data")
    if np.any(np.diff(delay) <= 0):
        raise FileFormatError(f"{path}: delays are not strictly increasing")
    if np.any(counts < 0):
        raise FileFormatError(f"{path}: negative counts")
    if delay_unit is not None:
        unit, source = delay_unit, "user"
    else:
        unit, source = _unit(rows[0][0], delay)
    tau_ps = delay * (1000.0 if unit == "ns" else 1.0)
    return HistogramData(tau_ps=tau_ps, counts=counts.sum(axis=0), delay_unit=unit,
                         unit_source=source, n_snapshots=counts.shape[0], path=str(path))
