"""PicoQuant ``.phu`` histogram files (HydraHarp, PicoHarp 330, MultiHarp...).

A PHU file is the magic ``PQHISTO\\0``, the tagged header of PTU files, then the
curves: ``HistoResult_NumberOfCurves`` histograms of 32-bit counts, curve ``k`` at
byte ``HistResDscr_DataOffset[k]`` with ``HistResDscr_HistogramBins[k]`` bins of
``HistResDscr_MDescResolution[k]`` s. ``ptufile`` parses the header (from at most
:data:`MAX_PHU_HEADER_BYTES`); every offset and bin count is checked against the file
before a curve is read. Delays are ``bin index × bin width`` from the start of the
histogram (the zero-delay peak is found in the data, as for any histogram).
"""

from __future__ import annotations

import io
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from micropl.errors import FileFormatError

__all__ = ["MAX_PHU_BINS", "PHU_MAGIC", "PhuCurve", "read_phu"]

PHU_MAGIC = b"PQHISTO\0"
#: Longest PHU header read, bytes.
MAX_PHU_HEADER_BYTES = 8 * 1024 * 1024
#: Most bins of one curve (PicoQuant histograms have at most 65 536).
MAX_PHU_BINS = 1 << 20


@dataclass(frozen=True, eq=False)
class PhuCurve:
    """One histogram of a PHU file.

    Attributes
    ----------
    tau_ps : ndarray of float64, shape (n_bins,)
        Bin delays from the start of the histogram, ps.
    counts : ndarray of float64, shape (n_bins,)
        Counts per bin.
    bin_ps : float
        Bin width, ps.
    curve : int
        Index of the curve in the file.
    n_curves : int
        Curves in the file.
    acquisition_time_s : float or None
        ``MeasDesc_AcquisitionTime``, s, when recorded.
    sync_rate_hz : float or None
        ``HistResDscr_SyncRate`` of the curve (else ``HW_SyncRate``), Hz.
    tags : dict
        All header tags.
    """

    tau_ps: np.ndarray
    counts: np.ndarray
    bin_ps: float
    curve: int
    n_curves: int
    acquisition_time_s: float | None
    sync_rate_hz: float | None
    tags: dict = field(default_factory=dict)


def _tags(path: Path, head: bytes) -> tuple[dict, int]:
    import ptufile

    logger = logging.getLogger("ptufile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        pq = ptufile.PqFile(io.BytesIO(head))
        tags, offset = dict(pq.tags), int(pq._data_offset)
        pq.close()
    except (ptufile.PqFileError, ValueError, OSError, MemoryError, OverflowError,
            UnicodeDecodeError, struct.error, KeyError,
            UnboundLocalError) as exc:  # ptufile 2026.2 on a header cut inside a tag
        raise FileFormatError(f"{path}: corrupt or truncated PHU header ({exc})") from None
    finally:
        logger.setLevel(level)
    return tags, offset


def _indexed(tags: dict, key: str, k: int):
    value = tags.get(key)
    if isinstance(value, list | tuple):
        return value[k] if k < len(value) else None
    return value


def read_phu(path: Path, curve: int | None = None) -> PhuCurve:
    """Read one curve of a PicoQuant PHU file.

    Parameters
    ----------
    path : Path
        The file.
    curve : int, optional
        Curve index (0-based); required when the file holds several.

    Returns
    -------
    PhuCurve

    Raises
    ------
    FileFormatError
        Not a PHU file, a truncated or corrupt header, a curve beyond the end of the
        file, more than :data:`MAX_PHU_BINS` bins, no bin width, several curves and no
        ``curve`` (the line lists them), a curve index the file does not hold.

    Examples
    --------
    A PHU file of one curve of 4 bins of 16 ps, built tag by tag (each tag: a 32-byte
    name, an int32 index, a uint32 type, an 8-byte value):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from micropl.analysis.formats.phu import read_phu
    >>> def entry(name, value, kind=0x10000008, index=-1):  # int8; float8 0x20000008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, index, kind, value)
    >>> offset = 16 + 48 * 7  # the magic, the version and 7 tags
    >>> head = b"PQHISTO" + bytes(1) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 0), entry("MeasDesc_AcquisitionTime", 30_000),
    ...     entry("HistoResult_NumberOfCurves", 1),
    ...     entry("HistResDscr_HistogramBins", 4, index=0),
    ...     entry("HistResDscr_DataOffset", offset, index=0),
    ...     entry("HistResDscr_MDescResolution", 16e-12, 0x20000008, index=0),
    ...     entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "g2.phu"
    >>> _ = path.write_bytes(head + np.array([5, 1, 6, 4], "<u4").tobytes())
    >>> curve = read_phu(path)
    >>> curve.tau_ps.tolist(), curve.counts.tolist()
    ([0.0, 16.0, 32.0, 48.0], [5.0, 1.0, 6.0, 4.0])
    >>> curve.n_curves, curve.acquisition_time_s
    (1, 30.0)
    >>> folder.cleanup()
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(MAX_PHU_HEADER_BYTES)
    if not head.startswith(PHU_MAGIC):
        raise FileFormatError(f"{path}: not a PicoQuant PHU file")
    if size < 16 + 48:
        raise FileFormatError(f"{path}: truncated PHU header ({size} bytes)")
    tags, _ = _tags(path, head)
    try:
        n_curves = int(tags.get("HistoResult_NumberOfCurves", 0))
    except (TypeError, ValueError):
        n_curves = 0
    if n_curves < 1:
        raise FileFormatError(f"{path}: PHU header gives no curves "
                              "(HistoResult_NumberOfCurves); the header is corrupt")
    if curve is None:
        if n_curves > 1:
            raise FileFormatError(f"{path}: PHU file with {n_curves} curves; choose one with "
                                  f"--curve 0..{n_curves - 1}")
        curve = 0
    if not 0 <= curve < n_curves:
        raise FileFormatError(f"{path}: curve {curve} does not exist; the file holds "
                              f"{n_curves}, 0 to {n_curves - 1}")
    try:
        offset = int(_indexed(tags, "HistResDscr_DataOffset", curve))
        n_bins = int(_indexed(tags, "HistResDscr_HistogramBins", curve))
        res = _indexed(tags, "HistResDscr_MDescResolution", curve)
        res_s = float(res if res is not None else tags.get("MeasDesc_Resolution", math.nan))
    except (TypeError, ValueError):
        raise FileFormatError(f"{path}: PHU header lacks the offset, bins or resolution of "
                              f"curve {curve}; the header is corrupt") from None
    if not 1 <= n_bins <= MAX_PHU_BINS:
        raise FileFormatError(f"{path}: curve {curve} claims {n_bins} bins (1 to "
                              f"{MAX_PHU_BINS} accepted); the header is corrupt")
    if not (math.isfinite(res_s) and 1e-14 <= res_s <= 1e-3):
        raise FileFormatError(f"{path}: curve {curve} bin width {res_s!r} s is outside "
                              "1e-14–1e-3 s; the header is corrupt")
    if offset < 16 or offset + 4 * n_bins > size:
        raise FileFormatError(f"{path}: truncated PHU file: curve {curve} needs bytes "
                              f"{offset}–{offset + 4 * n_bins}, the file has {size}")
    with open(path, "rb") as fh:
        fh.seek(offset)
        counts = np.fromfile(fh, dtype="<u4", count=n_bins).astype(np.float64)
    bin_ps = res_s * 1e12
    acq = tags.get("MeasDesc_AcquisitionTime")
    sync = _indexed(tags, "HistResDscr_SyncRate", curve) or tags.get("HW_SyncRate")
    return PhuCurve(tau_ps=np.arange(n_bins) * bin_ps, counts=counts, bin_ps=bin_ps,
                    curve=curve, n_curves=n_curves,
                    acquisition_time_s=float(acq) * 1e-3 if isinstance(acq, int | float)
                    and acq > 0 else None,
                    sync_rate_hz=float(sync) if isinstance(sync, int | float) and sync > 0
                    else None, tags=tags)
