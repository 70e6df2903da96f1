"""Reader for two-column spectrum text files (wavelength in nm, counts).

Accepted: comma, semicolon, tab or whitespace delimiters; an optional header
line (any first line that is not numbers) and ``#`` comment lines; extra
columns are ignored. The wavelength must be strictly monotonic (a descending
file is returned ascending).
"""

from __future__ import annotations

import io
import re
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from micropl.errors import FileFormatError

__all__ = ["MAX_TEXT_FILE_BYTES", "MAX_TEXT_LINE_CHARS", "read_spectrum_file",
           "read_text_limited", "text_lines"]

#: Largest spectrum or histogram text file read, bytes (16 MiB: a 2000-pixel spectrum
#: takes 30 kB, a 262 144-bin histogram about 5 MB). Parsing holds at most 8 bytes per
#: number besides the text, so memory stays about 5× this.
MAX_TEXT_FILE_BYTES = 16 * 1024 * 1024
#: Longest line of a text data file, characters (1 MiB).
MAX_TEXT_LINE_CHARS = 1024 * 1024

_SPLIT = re.compile(r"[,;\s]+")


def _numbers(line: str) -> list[float] | None:
    fields = [f for f in _SPLIT.split(line.strip()) if f]
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def read_text_limited(path: Path, what: str) -> bytes:
    """The bytes of a text data file of at most :data:`MAX_TEXT_FILE_BYTES`.

    Raises
    ------
    FileFormatError
        The file is larger (one line naming it and its size).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.spectrum_files import read_text_limited
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "spectrum.txt"
    >>> _ = path.write_text("500 12\\n")
    >>> read_text_limited(path, "spectrum")
    b'500 12\\n'
    >>> folder.cleanup()
    """
    size = path.stat().st_size
    if size > MAX_TEXT_FILE_BYTES:
        raise FileFormatError(
            f"{path}: {size} bytes is too large for a {what} text file (max "
            f"{MAX_TEXT_FILE_BYTES} bytes); is it the right file?")
    with open(path, "rb") as fh:
        raw = fh.read(MAX_TEXT_FILE_BYTES + 1)
    if len(raw) > MAX_TEXT_FILE_BYTES:  # grew while being read
        raise FileFormatError(f"{path}: more than {MAX_TEXT_FILE_BYTES} bytes")
    return raw


def text_lines(path: Path, text: str) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of ``text``, one at a time (no list of lines).

    Raises
    ------
    FileFormatError
        A line longer than :data:`MAX_TEXT_LINE_CHARS` characters.

    Examples
    --------
    >>> from pathlib import Path
    >>> from micropl.analysis.spectrum_files import text_lines
    >>> list(text_lines(Path("spectrum.txt"), "500 12\\r\\n  501 13 \\n"))
    [(1, '500 12'), (2, '501 13')]
    """
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        if len(line) > MAX_TEXT_LINE_CHARS:
            raise FileFormatError(
                f"{path}: line {number} has {len(line)} characters (max {MAX_TEXT_LINE_CHARS})")
        yield number, line.strip()


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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.spectrum_files import read_spectrum_file
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "spectrum.csv"
    >>> _ = path.write_text("wavelength_nm;counts\\n# a comment\\n500.2;12\\n500.1;30\\n500.0;11\\n")
    >>> wl, counts = read_spectrum_file(path)
    >>> wl.tolist(), counts.tolist()                                  # returned ascending
    ([500.0, 500.1, 500.2], [11.0, 30.0, 12.0])
    >>> folder.cleanup()
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file", str(p))
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, not a spectrum file")
    raw = read_text_limited(p, "spectrum")
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise FileFormatError(f"{p}: not a text file ({exc.reason} at byte {exc.start})") from exc
    del raw
    values_out = array("d")
    first_content = True
    for number, stripped in text_lines(p, text):
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
        values_out.extend(values[:2])
    if not values_out:
        raise FileFormatError(f"{p}: no data rows (empty file or header only)")
    data = np.frombuffer(values_out, dtype=np.float64).reshape(-1, 2)
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
