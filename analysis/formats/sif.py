"""Andor Solis ``.sif`` spectra, read through ``sif_parser``.

``sif_parser`` parses the header (wavelength calibration, exposure, EM gain,
accumulations, frames); the pixel values are read here from the offsets it gives,
with every size checked against the file first, so a truncated or lying file ends in
one line and bounded memory (the header parser is fed a file object that refuses to
read past the end, where it would otherwise loop).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

from micropl.analysis.formats.base import (
    SpectralSeries,
    check_binary_size,
    check_values,
    finish_series,
    wavelength_from_range,
)
from micropl.errors import FileFormatError

__all__ = ["SIF_MAGIC", "read_sif"]

#: First bytes of every SIF file.
SIF_MAGIC = b"Andor Technology Multi-Channel File"


class _NoReadPastEnd(io.BytesIO):
    """A file in memory whose reads at the end raise instead of returning nothing."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size > 0 and not data:
            raise EOFError("read past the end of the file")
        return data


def read_sif(path: Path, wavelength_nm_range: tuple[float, float] | None = None
             ) -> SpectralSeries:
    """Read an Andor ``.sif`` file: one spectrum per frame (kinetic series: several).

    Parameters
    ----------
    path : Path
        The file.
    wavelength_nm_range : (float, float), optional
        First and last pixel wavelength, nm, for a file without a calibration (a
        calibration in the file takes precedence only when this is not given).

    Returns
    -------
    SpectralSeries
        ``format="sif"``, the exposure (s), ``accumulations`` and ``gain``
        (``GainDAC``) from the header.

    Raises
    ------
    FileFormatError
        Not a SIF file, a truncated or corrupt header, frames beyond the end of the
        file, an image rather than spectra (more than one row per frame), no
        wavelength calibration and no ``wavelength_nm_range``.

    Examples
    --------
    A file that starts as a SIF file but ends inside its header is refused in one
    line (the files under ``tests/data`` are read in ``tests/test_lab_spectra.py``):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.sif import SIF_MAGIC, read_sif
    >>> from micropl.errors import FileFormatError
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "cut.sif"
    >>> _ = path.write_bytes(SIF_MAGIC + b"\\n65538 1\\n")
    >>> try:
    ...     read_sif(path)
    ... except FileFormatError as exc:
    ...     print(str(exc).replace(folder.name, "DIR").split(" (")[0])
    DIR/cut.sif: truncated or corrupt SIF header
    >>> _ = path.write_bytes(b"Andor Solis text export\\n")
    >>> try:
    ...     read_sif(path)
    ... except FileFormatError as exc:
    ...     print(str(exc).replace(folder.name, "DIR"))
    DIR/cut.sif: not an Andor SIF file
    >>> folder.cleanup()
    """
    from sif_parser import _sif_open, utils  # the vendor-format parser

    check_binary_size(path, "SIF")
    raw = path.read_bytes()
    if not raw.startswith(SIF_MAGIC):
        raise FileFormatError(f"{path}: not an Andor SIF file")
    try:
        tile, size, n_images, info = _sif_open._open(_NoReadPastEnd(raw))
        width, height = (int(v) for v in size)
        offsets = [int(t[2]) for t in tile]
    except (EOFError, ValueError, SyntaxError, IndexError, KeyError, TypeError,
            OverflowError, UnicodeDecodeError, struct.error) as exc:
        raise FileFormatError(f"{path}: truncated or corrupt SIF header ({exc})") from None
    check_values(path, "SIF", len(offsets), width * height)
    if height != 1:
        raise FileFormatError(
            f"{path}: SIF frames are images of {height} rows × {width} px, not spectra; "
            "acquire or export them with full vertical binning")
    n_bytes = 4 * width
    end = max(offsets) + n_bytes if offsets else 0
    if not offsets or min(offsets) < 0 or end > len(raw):
        raise FileFormatError(
            f"{path}: truncated SIF file: {len(offsets)} frame(s) of {width} px need "
            f"{end} bytes, the file has {len(raw)}")
    counts = np.stack([np.frombuffer(raw, "<f4", width, off) for off in offsets])
    if wavelength_nm_range is not None:
        wl, source = wavelength_from_range(path, width, wavelength_nm_range), "user"
    else:
        try:
            wl = utils.extract_calibration(info)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise FileFormatError(f"{path}: corrupt SIF calibration ({exc})") from None
        if wl is None or not np.any(np.diff(np.asarray(wl, dtype=float).ravel())):
            raise FileFormatError(f"{path}: SIF without a wavelength calibration: give "
                                  "--wavelength-nm-range LOW HIGH (nm)")
        wl = np.asarray(wl, dtype=np.float64)
        if wl.ndim == 2:  # one calibration per frame
            if not np.allclose(wl, wl[0]):
                raise FileFormatError(f"{path}: SIF frames have different calibrations; "
                                      "micropl reads series on one wavelength axis")
            wl = wl[0]
        source = "file"
    if wl.size != width:
        raise FileFormatError(f"{path}: SIF calibration has {wl.size} points, frames {width}")
    acc = info.get("AccumulatedCycles")
    return finish_series(
        path, wl, counts, "sif",
        exposure_s=_positive(info.get("ExposureTime")),
        accumulations=int(acc) if isinstance(acc, int | float) and acc > 0 else None,
        gain=_nonneg(info.get("GainDAC")), calibration=source,
        metadata={k: info[k] for k in ("DetectorType", "DetectorTemperature", "CycleTime",
                                       "NumberOfFrames", "ExperimentTime") if k in info})


def _positive(value) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _nonneg(value) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None
