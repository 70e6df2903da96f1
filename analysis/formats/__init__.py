"""Readers for the files a lab already has, each picked by the file's content.

Spectra (:func:`read_spectra`, a :class:`SpectralSeries` of one or more frames):

* Andor Solis ``.sif`` (``sif_parser``) — :mod:`.sif`;
* Princeton Instruments ``.spe`` 2.x and 3.0 — :mod:`.spe`;
* Andor ``.asc`` with or without its footer, and text with any header — :mod:`.text`.

Histograms and time tags (:mod:`.phu`, :mod:`.rows`, :mod:`.t3`, :mod:`.legacy`):
PicoQuant ``.phu``, text histograms in rows, PTU T3, and one line naming the
converter for legacy ``.ht2``/``.ht3``/``.pt2``/``.pt3`` and Swabian ``.ttbin``.

The format is decided by magic bytes or the header (:func:`spectrum_format`), not the
suffix alone; every reader caps what a header may claim before allocating, and a
refusal is one :class:`~micropl.errors.FileFormatError` line naming the file.
"""

from __future__ import annotations

from pathlib import Path

from micropl.analysis.formats.base import SpectralSeries
from micropl.analysis.formats.legacy import refuse_known_binary
from micropl.analysis.formats.sif import SIF_MAGIC, read_sif
from micropl.analysis.formats.spe import SPE_HEADER_BYTES, looks_like_spe, read_spe
from micropl.analysis.formats.text import read_text_spectra
from micropl.errors import FileFormatError

__all__ = ["SpectralSeries", "read_spectra", "spectrum_format"]


def _head(path: Path) -> tuple[bytes, int]:
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    if path.is_dir():
        raise FileFormatError(f"{path}: is a directory, not a spectrum file")
    with open(path, "rb") as fh:
        head = fh.read(SPE_HEADER_BYTES)
    return head, path.stat().st_size


def spectrum_format(path: str | Path) -> str:
    """``"sif"``, ``"spe"`` or ``"text"``: how :func:`read_spectra` reads ``path``.

    Raises
    ------
    FileNotFoundError
        No such file.
    FileFormatError
        A directory, or a known format that is not a spectrum (a PicoQuant file, a
        legacy time-tag file): one line naming it and what to do.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats import spectrum_format
    >>> from micropl.errors import FileFormatError
    >>> folder = tempfile.TemporaryDirectory()
    >>> text = Path(folder.name) / "spectrum.txt"
    >>> _ = text.write_text("900.0 10\\n900.5 12\\n901.0 11\\n")
    >>> ptu = Path(folder.name) / "tags.dat"
    >>> _ = ptu.write_bytes(b"PQTTTR" + bytes(58))
    >>> spectrum_format(text)
    'text'
    >>> try:
    ...     spectrum_format(ptu)
    ... except FileFormatError as exc:
    ...     print(str(exc).replace(folder.name, "DIR"))
    DIR/tags.dat: PicoQuant PTU time-tag file, not a spectrum; analyse it with `micropl analyze g2`
    >>> folder.cleanup()
    """
    p = Path(path)
    head, size = _head(p)
    if head.startswith(SIF_MAGIC):
        return "sif"
    refuse_known_binary(p, head, what="spectrum")
    if looks_like_spe(head, size) or (p.suffix.lower() == ".spe" and size > 0):
        return "spe"
    return "text"


def read_spectra(path: str | Path, *,
                 wavelength_nm_range: tuple[float, float] | None = None) -> SpectralSeries:
    """Read a spectrum file of any supported format as a spectral series.

    Parameters
    ----------
    path : str or Path
        SIF, SPE (2.x or 3.0), Andor ASC or text file.
    wavelength_nm_range : (float, float), optional
        First and last pixel wavelengths, nm, for binary files without a calibration
        (``--wavelength-nm-range``); refused for text files, whose first column is the
        wavelength.

    Returns
    -------
    SpectralSeries
        Ascending wavelengths, ``counts`` of shape ``(n_frames, n_points)``, ``format``
        and the exposure, accumulations and gain where recorded.

    Raises
    ------
    FileNotFoundError
        No such file.
    FileFormatError
        The file cannot be read (one line naming it, the format and what is missing).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats import read_spectra
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "spectrum.csv"
    >>> _ = path.write_text("wavelength_nm,counts\\n900.0,10\\n900.5,40\\n901.0,12\\n")
    >>> series = read_spectra(path)
    >>> series.format, series.n_frames, series.wavelength_nm.tolist()
    ('text', 1, [900.0, 900.5, 901.0])
    >>> series.counts.tolist()
    [[10.0, 40.0, 12.0]]
    >>> folder.cleanup()
    """
    p = Path(path)
    kind = spectrum_format(p)
    if kind == "sif":
        return read_sif(p, wavelength_nm_range)
    if kind == "spe":
        return read_spe(p, wavelength_nm_range)
    if wavelength_nm_range is not None:
        raise FileFormatError(f"{p}: --wavelength-nm-range is for binary files without a "
                              "calibration; a text file's first column is the wavelength")
    return read_text_spectra(p)
