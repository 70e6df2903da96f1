"""Write time tags to a PicoQuant PTU file in T2 mode (HydraHarp V2 record format).

PTU is the "unified TTTR" file format of PicoQuant: an 8-byte magic
``PQTTTR\\0\\0``, an 8-byte version, a list of tagged header entries ending with
``Header_End``, then 32-bit little-endian TTTR records. This module writes T2
records of the HydraHarp V2 format (record type ``0x01010204``), which
PicoQuant software, ``ptufile`` and ``tttrlib`` read:

=====  ======  ================================================================
bits   field   meaning
=====  ======  ================================================================
31     special 0: photon on an input; 1: sync, overflow or marker
30–25  channel photon: input number − 1 (0-based); special: 0 = sync,
               63 = overflow, 1–15 = marker bits
24–0   time    time tag in units of ``resolution_ps`` (modulo 2²⁵); for an
               overflow record, the number of 2²⁵ wraps it stands for
=====  ======  ================================================================

So micropl input 1 (APD1) is written with channel field 0 and input 2 (APD2)
with channel field 1: readers that report the raw field (``ptufile``'s
``decode_records`` ``channel`` column, ``tttrlib``'s routing channel) show 0 and
1 for inputs 1 and 2; PicoQuant's own demo readers show ``field + 1``, i.e. 1
and 2. Laser sync tags (``sync_channel``) become special records with channel
field 0, which PicoQuant software reads as the sync input; note that ``ptufile``
2026.2 reports them as channel 0 too, i.e. mixed with input 1, so write a sync
only for readers that handle it (FLID, lifetime) and leave it out for g². An overflow record is written before every tag whose
time has wrapped since the previous record. The format lets one record stand
for up to 2²⁵ − 1 wraps, but ``ptufile`` 2026.2 decodes only the low 7 bits of
that count, so the writer puts at most 127 wraps (4.3 ms at 1 ps resolution) in
one record and uses several records for longer gaps: acquisitions of any
length are exact for every reader. The time of a record is ``(number of wraps so far) · 2²⁵ + time field``.

The file is written to a temporary name next to the target and renamed at the
end, so an interrupted write never leaves a file that looks complete.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numba import njit

from micropl.errors import AnalysisInputError

__all__ = [
    "write_ptu_t2", "RECORD_TYPE_HYDRAHARP2_T2", "T2_WRAP", "MAX_WRAPS_PER_RECORD",
    "encode_t2_records",
]

#: ``TTResultFormat_TTTRRecType`` of HydraHarp V2 T2 records.
RECORD_TYPE_HYDRAHARP2_T2: int = 0x01010204
#: Time units per overflow of the 25-bit T2 time field.
T2_WRAP: int = 1 << 25
#: Wraps one overflow record stands for. The format allows 2²⁵ − 1, but ptufile
#: (2026.2) decodes only the low 7 bits of the count, so longer gaps get several records.
MAX_WRAPS_PER_RECORD: int = 127
_OVERFLOW_CHANNEL = 63

_TYPE_EMPTY8 = 0xFFFF0008
_TYPE_BOOL8 = 0x00000008
_TYPE_INT8 = 0x10000008
_TYPE_FLOAT8 = 0x20000008
_TYPE_DATETIME = 0x21000008
_TYPE_ANSISTRING = 0x4001FFFF

#: Header entries the writer owns; ``header_extra`` may not set them.
_CRITICAL_TAGS = frozenset({
    "Measurement_Mode", "Measurement_SubMode", "MeasDesc_GlobalResolution",
    "MeasDesc_Resolution", "TTResult_SyncRate", "TTResult_NumberOfRecords",
    "TTResultFormat_TTTRRecType", "TTResultFormat_BitsPerRecord", "Header_End",
})


@njit(cache=True, nogil=True)
def encode_t2_records(units, field, special):
    """Encode time tags as HydraHarp V2 T2 records, inserting overflow records.

    Parameters
    ----------
    units : ndarray of int64, shape (n,)
        Non-negative, non-decreasing tag times in units of the resolution.
    field : ndarray of uint8, shape (n,)
        Channel field of each record (input − 1 for photons, 0 for sync).
    special : ndarray of bool, shape (n,)
        True for sync records.

    Returns
    -------
    ndarray of uint32, shape (n_records,)
        The records, overflow records included.
    """
    n = units.shape[0]
    n_extra = 0
    prev_wrap = 0
    for i in range(n):
        w = units[i] >> 25
        gap = w - prev_wrap
        if gap > 0:
            n_extra += (gap + MAX_WRAPS_PER_RECORD - 1) // MAX_WRAPS_PER_RECORD
        prev_wrap = w
    out = np.empty(n + n_extra, np.uint32)
    o = 0
    prev_wrap = 0
    for i in range(n):
        w = units[i] >> 25
        gap = w - prev_wrap
        while gap > 0:
            step = min(gap, MAX_WRAPS_PER_RECORD)
            out[o] = np.uint32((1 << 31) | (_OVERFLOW_CHANNEL << 25) | step)
            o += 1
            gap -= step
        prev_wrap = w
        word = (np.int64(field[i]) << 25) | (units[i] & (T2_WRAP - 1))
        if special[i]:
            word |= np.int64(1) << 31
        out[o] = np.uint32(word)
        o += 1
    return out


def _tag(ident: str, value: object, index: int = -1) -> bytes:
    """One header entry: 32-byte name, int32 index, uint32 type, 8-byte value (+ data)."""
    name = ident.encode("ascii")
    if len(name) > 31:
        raise AnalysisInputError(f"PTU header tag name {ident!r} is longer than 31 characters")
    head = name.ljust(32, b"\0") + struct.pack("<i", index)
    if value is None:
        return head + struct.pack("<I", _TYPE_EMPTY8) + bytes(8)
    if isinstance(value, bool | np.bool_):
        return head + struct.pack("<Iq", _TYPE_BOOL8, int(bool(value)))
    if isinstance(value, int | np.integer):
        return head + struct.pack("<Iq", _TYPE_INT8, int(value))
    if isinstance(value, float | np.floating):
        return head + struct.pack("<Id", _TYPE_FLOAT8, float(value))
    if isinstance(value, _dt.datetime):
        days = (value - _dt.datetime(1899, 12, 30)) / _dt.timedelta(days=1)
        return head + struct.pack("<Id", _TYPE_DATETIME, days)
    if isinstance(value, str):
        data = value.encode("windows-1252", errors="replace") + b"\0"
        data = data.ljust(-(-len(data) // 8) * 8, b"\0")
        return head + struct.pack("<Iq", _TYPE_ANSISTRING, len(data)) + data
    raise AnalysisInputError(
        f"PTU header tag {ident!r}: value of type {type(value).__name__} is not supported "
        "(use bool, int, float, str or datetime)")


def write_ptu_t2(
    path: str | os.PathLike[str],
    t_ps: np.ndarray,
    channel: np.ndarray,
    *,
    sync_rate_hz: float,
    resolution_ps: int = 1,
    header_extra: Mapping[str, object] | None = None,
    sync_channel: int | None = None,
    acquisition_time_s: float | None = None,
) -> int:
    """Write time tags to a PTU file with HydraHarp V2 T2 records.

    Parameters
    ----------
    path : str or path-like
        Output file (conventionally ``*.ptu``). Written to a temporary file in the
        same folder and renamed when complete.
    t_ps : array_like of int, shape (n,)
        Tag times in ps, non-negative and non-decreasing.
    channel : array_like of int, shape (n,)
        Input of each tag, 1-based as the hardware labels them (1–64). Input ``k``
        is stored with channel field ``k − 1``.
    sync_rate_hz : float
        Laser repetition (sync) rate, Hz; stored as ``TTResult_SyncRate``.
    resolution_ps : int, optional
        Time unit of the records, ps (default 1, the HydraHarp T2 resolution).
        Times are floored to it.
    header_extra : mapping, optional
        Further header entries (name → bool, int, float, str or datetime), e.g.
        ``{"File_Comment": "…"}``. The entries that define the record format
        cannot be overridden.
    sync_channel : int, optional
        Input whose tags are laser sync pulses; they are written as sync records.
    acquisition_time_s : float, optional
        How long the measurement lasted, s (``MeasDesc_AcquisitionTime``, in ms);
        default: the time of the last tag. It may not end before the last tag.

    Returns
    -------
    int
        Number of records written (tags plus overflow records).

    Raises
    ------
    AnalysisInputError
        Unsorted or negative times, bad channels, mismatched shapes, a non-positive
        sync rate or resolution, or a header entry that cannot be written.
    OSError
        The file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import read_ptu_t2
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> write_ptu_t2(path, [1000, 2500, 7000], [1, 2, 1], sync_rate_hz=80e6)
    3
    >>> tags = read_ptu_t2(path)
    >>> tags.t_ps.tolist(), tags.channel.tolist()
    ([1000, 2500, 7000], [1, 2, 1])
    >>> folder.cleanup()
    """
    t = np.asarray(t_ps)
    ch = np.asarray(channel)
    if t.ndim != 1 or ch.shape != t.shape:
        raise AnalysisInputError(
            f"t_ps and channel must be 1-D of equal length, got {t.shape} and {ch.shape}")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise AnalysisInputError(f"t_ps must be integer picoseconds, got dtype {t.dtype}")
    if not (np.isfinite(sync_rate_hz) and sync_rate_hz > 0):
        raise AnalysisInputError(f"sync_rate_hz: {sync_rate_hz} must be > 0")
    resolution_ps = int(resolution_ps)
    if resolution_ps < 1:
        raise AnalysisInputError(f"resolution_ps: {resolution_ps} must be ≥ 1")
    t = t.astype(np.int64, copy=False)
    if t.size:
        if t[0] < 0:
            raise AnalysisInputError(f"t_ps must be ≥ 0, first tag is at {t[0]} ps")
        if np.any(np.diff(t) < 0):
            raise AnalysisInputError("t_ps must be sorted in ascending order")
        if ch.min() < 1 or ch.max() > 64:
            raise AnalysisInputError(
                f"channel must be inputs 1–64, got {int(ch.min())}–{int(ch.max())}")
    extra = dict(header_extra or {})
    bad = sorted(_CRITICAL_TAGS.intersection(extra))
    if bad:
        raise AnalysisInputError(f"header_extra cannot set {', '.join(bad)}")

    special = np.zeros(t.size, np.bool_)
    if sync_channel is not None:
        special = ch == int(sync_channel)
    field = np.where(special, 0, ch.astype(np.int64) - 1).astype(np.uint8)
    records = encode_t2_records(t // resolution_ps, field, special)

    inputs = np.unique(ch[~special]) if t.size else np.zeros(0, np.int64)
    duration_ms = float(t[-1]) * 1e-9 if t.size else 0.0
    if acquisition_time_s is not None:
        acq_ms = float(acquisition_time_s) * 1e3
        if not (np.isfinite(acq_ms) and acq_ms >= 0):
            raise AnalysisInputError(f"acquisition_time_s: {acquisition_time_s} must be >= 0")
        if acq_ms < duration_ms - 1e-9:
            raise AnalysisInputError(
                f"acquisition_time_s: {acquisition_time_s} s ends before the last tag "
                f"({duration_ms * 1e-3} s)")
        duration_ms = acq_ms
    tags: dict[str, object] = {
        "File_GUID": f"{{{uuid.uuid4()}}}",
        "File_CreatingTime": _dt.datetime.now(),
        "File_Comment": "written by micropl",
        "CreatorSW_Name": "micropl",
        "CreatorSW_Version": "0.1",
        "Measurement_Mode": 2,
        "Measurement_SubMode": 0,
        "HW_Type": "HydraHarp",
        "HW_Version": "2.0",
        "HW_InpChannels": int(max(2, int(inputs.max()) if inputs.size else 2)) + 1,
        "MeasDesc_BinningFactor": 1,
        "MeasDesc_Resolution": resolution_ps * 1e-12,
        "MeasDesc_GlobalResolution": resolution_ps * 1e-12,
        "MeasDesc_AcquisitionTime": int(round(duration_ms)),
        "TTResult_SyncRate": int(round(sync_rate_hz)),
        "TTResult_StopAfter": int(round(duration_ms)),
        "TTResult_StopReason": 0,
        "TTResult_NumberOfRecords": int(records.size),
        "TTResultFormat_TTTRRecType": RECORD_TYPE_HYDRAHARP2_T2,
        "TTResultFormat_BitsPerRecord": 32,
    }
    tags.update(extra)
    header = [b"PQTTTR\0\0", b"1.0.00\0\0"]
    header += [_tag(name, value) for name, value in tags.items()]
    header.append(_tag("Header_End", None))

    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as fh:
            fh.write(b"".join(header))
            fh.write(records.astype("<u4", copy=False).tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return int(records.size)
