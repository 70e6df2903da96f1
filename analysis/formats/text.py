"""Spectra in text: two or more columns, any header, and Andor Solis ``.asc`` files.

Rules (one line naming the file and the line for every refusal):

* lines before the first row of numbers are a header, however many there are;
  ``#`` lines are comments anywhere;
* columns are separated by commas, semicolons, tabs or spaces: wavelength (nm)
  first, counts second; in rows separated by tabs or semicolons a comma is a decimal
  comma (``405,23318<TAB>280099``, as Andor Solis writes in a German locale);
* after the data, lines that are not numbers are a footer (Andor Solis writes its
  acquisition settings there: ``Exposure Time (secs): 0.1``); a row of numbers after
  such a line is refused, naming the first line that is not numeric;
* an Andor ``.asc`` file (the suffix, or an Andor footer) is a kinetic series when it
  has more than two columns: each count column is one frame. In other text files
  columns beyond the second are ignored.

``Key: value`` lines of the header or footer become metadata; the exposure, the
accumulations and the EM gain are taken from Andor's keys.
"""

from __future__ import annotations

import re
from array import array
from pathlib import Path

import numpy as np

from micropl.analysis.formats.base import SpectralSeries, finish_series
from micropl.analysis.spectrum_files import read_text_limited, text_lines
from micropl.errors import FileFormatError

__all__ = ["ANDOR_KEYS", "read_text_spectra"]

_SPLIT = re.compile(r"[,;\s]+")
_SPLIT_NO_COMMA = re.compile(r"[;\s]+")
_KEY = re.compile(r"^([^:]{1,80}):\s*(.*)$")
#: Footer keys that mark an Andor Solis export.
ANDOR_KEYS = ("Exposure Time (secs)", "Acquisition Mode", "Software Version",
              "Number of Accumulations")


def _numbers(line: str) -> list[float] | None:
    if "\t" in line or ";" in line:  # tab/semicolon columns: a comma is a decimal comma
        fields = [f.replace(",", ".", 1) if f.count(",") == 1 else f
                  for f in _SPLIT_NO_COMMA.split(line) if f]
    else:
        fields = [f for f in _SPLIT.split(line) if f]
    try:
        return [float(f) for f in fields]
    except ValueError:
        return None


def _decode(path: Path, raw: bytes) -> str:
    if b"\0" in raw[:4096]:
        raise FileFormatError(f"{path}: not a text file (NUL bytes: a binary file of an "
                              "unknown format)")
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        if sum(b < 9 or 13 < b < 32 for b in raw[:4096]) > 8:  # control bytes: binary
            raise FileFormatError(
                f"{path}: not a text file ({exc.reason} at byte {exc.start})") from exc
        return raw.decode("cp1252", errors="replace")  # Andor writes Windows text


def _value(meta: dict, key: str) -> float | None:
    text = meta.get(key)
    if text is None:
        return None
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def read_text_spectra(path: Path) -> SpectralSeries:
    """Read a text spectrum or an Andor ``.asc`` export (see the module rules).

    Parameters
    ----------
    path : Path
        The file, at most :data:`~micropl.analysis.spectrum_files.MAX_TEXT_FILE_BYTES`.

    Returns
    -------
    SpectralSeries
        ``format`` ``"asc"`` or ``"text"``.

    Raises
    ------
    FileFormatError
        Binary, empty, header only, one column, a row of numbers after the footer,
        rows of different widths in a kinetic series, or the checks of
        :func:`~micropl.analysis.formats.base.finish_series`.

    Examples
    --------
    An Andor export with two frames (kinetic series) and its settings in the footer:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.text import read_text_spectra
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "series.asc"
    >>> _ = path.write_text("900.0,10,11\\n900.5,40,42\\n901.0,12,13\\n\\n"
    ...                     "Exposure Time (secs): 0.5\\nNumber of Accumulations: 2\\n")
    >>> series = read_text_spectra(path)
    >>> series.format, series.n_frames, series.exposure_s, series.accumulations
    ('asc', 2, 0.5, 2)
    >>> series.counts.tolist()
    [[10.0, 40.0, 12.0], [11.0, 42.0, 13.0]]
    >>> folder.cleanup()
    """
    text = _decode(path, read_text_limited(path, "spectrum"))
    values = array("d")
    meta: dict[str, str] = {}
    ncol = 0
    n_rows = 0
    first_header = first_footer = None  # (line number, text)
    short = None  # (line number, columns) of the first row narrower than the first
    for number, line in text_lines(path, text):
        if not line or line.startswith("#"):
            continue
        row = _numbers(line)
        if row is None:
            if n_rows and first_footer is None:
                first_footer = (number, line)
            elif not n_rows and first_header is None:
                first_header = (number, line)
            match = _KEY.match(line)
            if match and len(meta) < 1000:
                meta[match.group(1).strip()] = match.group(2).strip()[:200]
            continue
        if first_footer is not None:
            num, bad = first_footer
            raise FileFormatError(f"{path}: line {num} is not numeric: {bad[:40]!r}")
        if len(row) < 2:
            raise FileFormatError(
                f"{path}: line {number} has one column; need wavelength (nm) and counts")
        if not n_rows:
            ncol = len(row)
        elif len(row) < ncol:
            short = short or (number, len(row))
            row = row + [float("nan")] * (ncol - len(row))
        values.extend(row[:ncol])
        n_rows += 1
    if not n_rows:
        where = (f"; line {first_header[0]} is not numeric: {first_header[1][:40]!r}"
                 if first_header else "")
        raise FileFormatError(f"{path}: no data rows (empty file or header only{where})")
    data = np.frombuffer(values, dtype=np.float64).reshape(n_rows, ncol)
    andor = path.suffix.lower() == ".asc" or any(k in meta for k in ANDOR_KEYS)
    fmt = "asc" if andor else "text"
    if andor and ncol > 2 and short is not None:
        raise FileFormatError(f"{path}: line {short[0]} has {short[1]} columns, the first "
                              f"data row {ncol}; a kinetic series needs one count column "
                              "per frame on every row")
    frames = data[:, 1:].T if andor else data[:, 1:2].T
    accum = _value(meta, "Number of Accumulations")
    return finish_series(
        path, data[:, 0], frames, fmt,
        exposure_s=_value(meta, "Exposure Time (secs)"),
        accumulations=int(accum) if accum is not None else None,
        gain=_value(meta, "EM Gain level"),
        metadata={k: meta[k] for k in list(meta)[:60]})
