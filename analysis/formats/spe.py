"""Princeton Instruments ``.spe`` spectra: WinSpec 2.x and LightField 3.0.

Both share a 4100-byte binary header, then the frames. Header fields read (byte
offset, type):

====  =======  ================================================================
10    float32  exposure, s (2.x)
42    uint16   ``xdim``, pixels per row (2.x)
108   int16    data type: 0 float32, 1 int32, 2 int16, 3 uint16, 6 uint8, 8 uint32
656   uint16   ``ydim``, rows per frame (2.x)
678   uint64   offset of the XML footer (3.0)
1446  int32    frames (2.x)
1992  float32  header version (3.0 for LightField files)
3101  uint8    order of the wavelength polynomial (2.x ``xcalibration``)
3263  6×f64    its coefficients, lowest first, of the pixel number counted from 1
====  =======  ================================================================

A 3.0 file describes its frames, regions, pixel format, wavelength calibration
(``Calibrations/WavelengthMapping/Wavelength``, one wavelength per sensor column) and
exposure (``ExposureTime``, ms) in the XML footer; the header fields above are not
used for it. Every size the header or footer claims is checked against the file
before anything is allocated.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
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

__all__ = ["SPE_HEADER_BYTES", "looks_like_spe", "read_spe"]

#: Size of the binary header of every SPE file, bytes.
SPE_HEADER_BYTES = 4100
_TYPES_2X = {0: "<f4", 1: "<i4", 2: "<i2", 3: "<u2", 6: "<u1", 8: "<u4"}
_PIXEL_FORMATS = {"MonochromeUnsigned16": "<u2", "MonochromeUnsigned32": "<u4",
                  "MonochromeFloating32": "<f4"}
#: Longest XML footer read, bytes.
MAX_SPE_FOOTER_BYTES = 16 * 1024 * 1024
_HINT = "give --wavelength-nm-range LOW HIGH (nm)"


def looks_like_spe(head: bytes, size: int) -> bool:
    """Whether the first :data:`SPE_HEADER_BYTES` bytes look like an SPE header.

    Examples
    --------
    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> head = bytearray(4100)  # a WinSpec 2.x header: 1 frame of 4 px, uint16
    >>> struct.pack_into("<f", head, 10, 0.5)  # exposure, s
    >>> struct.pack_into("<H", head, 42, 4)  # xdim
    >>> struct.pack_into("<h", head, 108, 3)  # data type 3: uint16
    >>> struct.pack_into("<H", head, 656, 1)  # ydim
    >>> struct.pack_into("<i", head, 1446, 1)  # frames
    >>> struct.pack_into("<f", head, 1992, 2.5)  # header version
    >>> head[3101] = 1  # a linear calibration: 899.5 + 0.5 × pixel (pixels from 1)
    >>> struct.pack_into("<6d", head, 3263, 899.5, 0.5, 0, 0, 0, 0)
    >>> data = bytes(head) + np.array([10, 40, 12, 11], "<u2").tobytes()
    >>> from micropl.analysis.formats.spe import looks_like_spe
    >>> looks_like_spe(data[:4100], len(data)), looks_like_spe(bytes(4100), 4108)
    (True, False)
    """
    if size <= SPE_HEADER_BYTES or len(head) < SPE_HEADER_BYTES:
        return False
    version = struct.unpack_from("<f", head, 1992)[0]
    dtype = struct.unpack_from("<h", head, 108)[0]
    xdim = struct.unpack_from("<H", head, 42)[0]
    return 0.5 <= version <= 3.5 and dtype in _TYPES_2X and (version >= 3 or xdim > 0)


def read_spe(path: Path, wavelength_nm_range: tuple[float, float] | None = None
             ) -> SpectralSeries:
    """Read a WinSpec 2.x or LightField 3.0 ``.spe`` file: one spectrum per frame.

    Parameters
    ----------
    path : Path
        The file.
    wavelength_nm_range : (float, float), optional
        First and last pixel wavelength, nm: used instead of the file's calibration
        (needed when the file has none).

    Returns
    -------
    SpectralSeries
        ``format`` ``"spe3"`` or ``"spe2"``, with the exposure (s) the file records.

    Raises
    ------
    FileFormatError
        Truncated or corrupt header or footer, frames beyond the end of the file, an
        image or several regions of interest instead of one spectrum per frame, no
        wavelength calibration and no ``wavelength_nm_range``.

    Examples
    --------
    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> head = bytearray(4100)  # a WinSpec 2.x header: 1 frame of 4 px, uint16
    >>> struct.pack_into("<f", head, 10, 0.5)  # exposure, s
    >>> struct.pack_into("<H", head, 42, 4)  # xdim
    >>> struct.pack_into("<h", head, 108, 3)  # data type 3: uint16
    >>> struct.pack_into("<H", head, 656, 1)  # ydim
    >>> struct.pack_into("<i", head, 1446, 1)  # frames
    >>> struct.pack_into("<f", head, 1992, 2.5)  # header version
    >>> head[3101] = 1  # a linear calibration: 899.5 + 0.5 × pixel (pixels from 1)
    >>> struct.pack_into("<6d", head, 3263, 899.5, 0.5, 0, 0, 0, 0)
    >>> data = bytes(head) + np.array([10, 40, 12, 11], "<u2").tobytes()
    >>> from micropl.analysis.formats.spe import read_spe
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "line.spe"
    >>> _ = path.write_bytes(data)
    >>> series = read_spe(path)
    >>> series.format, series.exposure_s, series.calibration
    ('spe2', 0.5, 'file')
    >>> series.wavelength_nm.tolist(), series.counts.tolist()
    ([900.0, 900.5, 901.0, 901.5], [[10.0, 40.0, 12.0, 11.0]])
    >>> read_spe(path, (800.0, 803.0)).wavelength_nm.tolist()  # the user's range instead
    [800.0, 801.0, 802.0, 803.0]
    >>> folder.cleanup()
    """
    size = check_binary_size(path, "SPE")
    raw = path.read_bytes()
    if len(raw) < SPE_HEADER_BYTES:
        raise FileFormatError(f"{path}: truncated SPE header ({len(raw)} of "
                              f"{SPE_HEADER_BYTES} bytes)")
    version = struct.unpack_from("<f", raw, 1992)[0]
    if version >= 3.0:
        return _read_3(path, raw, size, wavelength_nm_range)
    return _read_2(path, raw, size, wavelength_nm_range)


def _read_2(path: Path, raw: bytes, size: int, wl_range) -> SpectralSeries:
    exposure, = struct.unpack_from("<f", raw, 10)
    xdim, = struct.unpack_from("<H", raw, 42)
    code, = struct.unpack_from("<h", raw, 108)
    ydim, = struct.unpack_from("<H", raw, 656)
    frames, = struct.unpack_from("<i", raw, 1446)
    if code not in _TYPES_2X:
        raise FileFormatError(f"{path}: SPE 2.x data type {code} is not one of "
                              f"{sorted(_TYPES_2X)}; the header is corrupt")
    check_values(path, "SPE 2.x", frames, xdim * max(ydim, 1))
    if ydim != 1:
        raise FileFormatError(f"{path}: SPE 2.x frames are images of {ydim} rows × {xdim} "
                              "px, not spectra; bin them vertically when acquiring")
    dtype = np.dtype(_TYPES_2X[code])
    need = SPE_HEADER_BYTES + frames * xdim * dtype.itemsize
    if need > size:
        raise FileFormatError(f"{path}: truncated SPE 2.x file: {frames} frame(s) of {xdim} "
                              f"px need {need} bytes, the file has {size}")
    counts = np.frombuffer(raw, dtype, frames * xdim, SPE_HEADER_BYTES).reshape(frames, xdim)
    if wl_range is not None:
        wl, source = wavelength_from_range(path, xdim, wl_range), "user"
    else:
        order = raw[3101]
        coeffs = np.array(struct.unpack_from("<6d", raw, 3263))
        if not 1 <= order <= 5 or not np.all(np.isfinite(coeffs)) or not np.any(coeffs[1:]):
            raise FileFormatError(f"{path}: SPE 2.x without a wavelength calibration: {_HINT}")
        pixel = np.arange(1, xdim + 1, dtype=np.float64)
        wl = np.polynomial.polynomial.polyval(pixel, coeffs[:order + 1])
        source = "file"
    exp = float(exposure) if np.isfinite(exposure) and exposure > 0 else None
    return finish_series(path, wl, counts, "spe2", exposure_s=exp, calibration=source)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root: ET.Element, name: str) -> ET.Element | None:
    for el in root.iter():
        if _local(el.tag) == name:
            return el
    return None


def _footer(path: Path, raw: bytes, size: int) -> ET.Element:
    offset, = struct.unpack_from("<Q", raw, 678)
    if not SPE_HEADER_BYTES <= offset < size:
        raise FileFormatError(f"{path}: SPE 3.0 footer offset {offset} lies outside the "
                              f"file ({size} bytes); the file is truncated or corrupt")
    if size - offset > MAX_SPE_FOOTER_BYTES:
        raise FileFormatError(f"{path}: SPE 3.0 footer of {size - offset} bytes (max "
                              f"{MAX_SPE_FOOTER_BYTES}); the file is corrupt")
    try:
        return ET.fromstring(raw[offset:])
    except ET.ParseError as exc:
        raise FileFormatError(f"{path}: SPE 3.0 footer is not valid XML ({exc}); the file "
                              "is truncated or corrupt") from None


def _int(path: Path, el: ET.Element, key: str, default: int | None = None) -> int:
    text = el.get(key)
    if text is None and default is not None:
        return default
    try:
        return int(text)
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: SPE 3.0 footer: {_local(el.tag)} {key}={text!r} is "
                              "not a whole number") from None


def _read_3(path: Path, raw: bytes, size: int, wl_range) -> SpectralSeries:
    root = _footer(path, raw, size)
    frame = next((el for el in root.iter() if _local(el.tag) == "DataBlock"
                  and el.get("type") == "Frame"), None)
    if frame is None:
        raise FileFormatError(f"{path}: SPE 3.0 footer has no frame description")
    regions = [el for el in frame if _local(el.tag) == "DataBlock"
               and el.get("type") == "Region"]
    if len(regions) != 1:
        raise FileFormatError(f"{path}: SPE 3.0 with {len(regions)} regions of interest; "
                              "micropl reads files with one")
    fmt = frame.get("pixelFormat", "")
    if fmt not in _PIXEL_FORMATS:
        raise FileFormatError(f"{path}: SPE 3.0 pixel format {fmt!r} is not one of "
                              f"{', '.join(_PIXEL_FORMATS)}")
    dtype = np.dtype(_PIXEL_FORMATS[fmt])
    n_frames = _int(path, frame, "count")
    width, height = _int(path, regions[0], "width"), _int(path, regions[0], "height")
    check_values(path, "SPE 3.0", n_frames, width * max(height, 1))
    if height != 1:
        raise FileFormatError(f"{path}: SPE 3.0 frames are images of {height} rows × {width} "
                              "px, not spectra; bin them vertically when acquiring")
    frame_bytes = width * dtype.itemsize
    stride = _int(path, frame, "stride", frame_bytes)
    if stride < frame_bytes:
        raise FileFormatError(f"{path}: SPE 3.0 frame stride {stride} bytes is less than "
                              f"its {frame_bytes} bytes of pixels; the footer is corrupt")
    need = SPE_HEADER_BYTES + (n_frames - 1) * stride + frame_bytes
    footer_at, = struct.unpack_from("<Q", raw, 678)
    if need > footer_at:
        raise FileFormatError(f"{path}: truncated SPE 3.0 file: {n_frames} frame(s) need "
                              f"{need} bytes before the footer at byte {footer_at}")
    counts = np.stack([np.frombuffer(raw, dtype, width, SPE_HEADER_BYTES + k * stride)
                       for k in range(n_frames)])
    if wl_range is not None:
        wl, source = wavelength_from_range(path, width, wl_range), "user"
    else:
        wl, source = _wavelengths_3(path, root, width), "file"
    exposure = _find(root, "ExposureTime")
    exp_s = None
    if exposure is not None and exposure.text:
        try:
            value = float(exposure.text) * 1e-3  # LightField records ms
            exp_s = value if np.isfinite(value) and value > 0 else None
        except ValueError:
            exp_s = None
    return finish_series(path, wl, counts, "spe3", exposure_s=exp_s, calibration=source)


def _wavelengths_3(path: Path, root: ET.Element, width: int) -> np.ndarray:
    mapping = _find(root, "WavelengthMapping")
    element = None
    if mapping is not None:
        element = next((el for el in mapping if _local(el.tag) == "Wavelength"), None)
    if element is None or not (element.text or "").strip():
        raise FileFormatError(f"{path}: SPE 3.0 without a wavelength calibration: {_HINT}")
    try:
        wl = np.array([float(v) for v in element.text.split(",") if v.strip()])
    except ValueError:
        raise FileFormatError(f"{path}: SPE 3.0 wavelength calibration is not a list of "
                              f"numbers: {_HINT}") from None
    if wl.size == width:
        return wl
    roi = _find(root, "RegionOfInterest")
    if roi is not None:  # calibration of the whole sensor, region of part of it
        x, xbin = _int(path, roi, "x", 0), max(_int(path, roi, "xBinning", 1), 1)
        if x + width * xbin <= wl.size:
            return wl[x:x + width * xbin].reshape(width, xbin).mean(axis=1)
    raise FileFormatError(f"{path}: SPE 3.0 calibration has {wl.size} wavelengths for "
                          f"{width} pixels: {_HINT}")
