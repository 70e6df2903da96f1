"""One spectrum from a file, and the bounded text reading every text reader shares.

:func:`read_spectrum_file` reads any format :mod:`micropl.analysis.formats` knows (text
with any header, Andor ``.asc``, ``.sif``, Princeton ``.spe``). Text: comma,
semicolon, tab or whitespace delimiters; header lines before the data and ``#``
comment lines; extra columns are ignored. The wavelength must be strictly monotonic
(a descending file is returned ascending).
"""

from __future__ import annotations

import io
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


def read_spectrum_file(path, *, frame: int | None = None,
                       wavelength_nm_range: tuple[float, float] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Read one spectrum from a file of any supported format.

    Parameters
    ----------
    path : str or os.PathLike
        Text file with wavelength (nm) in the first column and counts in the
        second (any number of header lines, an Andor footer), or an Andor ``.sif``,
        Princeton ``.spe`` or Andor ``.asc`` file
        (:func:`micropl.analysis.formats.read_spectra`).
    frame : int, optional
        Frame of a kinetic series (0-based); required when the file holds several.
    wavelength_nm_range : (float, float), optional
        First and last pixel wavelength (nm) for a binary file without calibration.

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
        counts, fewer than 3 points or non-monotonic wavelength, several frames
        without ``frame``; the message names the file and the problem (and the line
        number where it helps).

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
    from micropl.analysis.formats import read_spectra  # the formats use this module

    series = read_spectra(path, wavelength_nm_range=wavelength_nm_range)
    if frame is None:
        if series.n_frames != 1:
            raise FileFormatError(
                f"{path}: {series.format} file with {series.n_frames} frames (a kinetic "
                f"series); choose one with --frame 0..{series.n_frames - 1} (API: frame=K, "
                "or read_spectra for the whole series)")
        frame = 0
    wl, counts = series.frame(frame)
    return wl.copy(), counts.copy()
