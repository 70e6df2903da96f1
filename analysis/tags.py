"""Readers for photon time tags (PicoQuant T2) and for HBT histogram files.

Channel numbering
-----------------
micropl numbers detector inputs from 1, as the hardware front panels do, and keeps 0
for the sync input:

* HydraHarp (v1, v2), TimeHarp 260 and Generic T2 (MultiHarp, PicoHarp 330) records
  carry a 6-bit channel field ``c`` counted from 0 for input 1; micropl channel is
  ``c + 1``. A special record with channel field 0 is a sync event (T2 mode time-tags
  the sync input too); it becomes micropl channel 0.
* PicoHarp 300 T2 records carry a 4-bit channel ``c`` (0 and 1 on the two inputs,
  which the PicoHarp software calls "channel 0" (the sync input) and "channel 1");
  micropl channel is ``c + 1``, so the sync/ch0 input is channel 1 and ch1 is channel 2.

``ptufile`` decodes the same records with channels counted from 0 (``c``), and for
HydraHarp-type T2 it also gives sync events channel 0, indistinguishable from input 1.
micropl therefore decodes the records itself (:func:`decode_t2_records`) and uses
``ptufile`` for the tag header only.

Overflow and marker records are consumed: overflows advance the time base, markers are
returned separately and never appear as photons.

One decoder
-----------
:func:`decode_t2_records` is the only T2 record decoder of micropl: the PTU reader
(:func:`read_ptu_t2`) and the PicoQuant driver (``micropl.drivers.picoquant``, which
reads the same records from the device FIFO) both use it. A live stream is decoded
block by block with :class:`T2StreamDecoder`, which carries the overflow-corrected
time base from one FIFO read to the next.

Bounded reading
---------------
A PTU file is decoded in blocks of :data:`PTU_BLOCK_RECORDS` records
(:func:`iter_ptu_t2`), so memory does not grow with the file; :func:`read_ptu_t2`
holds at most :data:`MAX_PTU_RECORDS_IN_MEMORY` records' tags. Header values and
records that would drive an allocation or a loop without bound are refused with one
line naming the file: a header beyond :data:`MAX_PTU_HEADER_BYTES`, more than
:data:`MAX_PTU_RECORDS` records, a resolution
outside :data:`PTU_RESOLUTION_RANGE_S`, a record count above what the file holds,
overflow records that push the time beyond :data:`MAX_PTU_SPAN_S` (or 64-bit ps), a
channel whose time goes backwards, or a tag more than :data:`MAX_CHANNEL_DISORDER_PS`
before another channel's. Histogram text files are capped at
:data:`~micropl.analysis.spectrum_files.MAX_TEXT_FILE_BYTES`.
"""

from __future__ import annotations

import io
import itertools
import logging
import math
import os
import re
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from micropl.analysis.errors import AnalysisInputError, FileFormatError
from micropl.analysis.spectrum_files import read_text_limited, text_lines

log = logging.getLogger(__name__)

__all__ = [
    "HistogramData",
    "MAX_CHANNEL_DISORDER_PS",
    "MAX_PTU_RECORDS",
    "MAX_PTU_RECORDS_IN_MEMORY",
    "MAX_PTU_SPAN_S",
    "PtuHeader",
    "SYNC_CHANNEL",
    "T2Decoded",
    "T2StreamDecoder",
    "T2_RECORD_TYPES",
    "TagData",
    "decode_t2_records",
    "iter_ptu_t2",
    "read_ptu_header",
    "read_histogram_file",
    "read_ptu_t2",
]

PTU_MAGIC = b"PQTTTR\0\0"

#: micropl channel of sync-input events (HydraHarp/TimeHarp 260/Generic T2 records).
SYNC_CHANNEL = 0

#: T2 record types (``TTResultFormat_TTTRRecType``) and their names.
T2_RECORD_TYPES: dict[int, str] = {
    0x00010203: "PicoHarpT2",
    0x00010204: "HydraHarpT2",
    0x01010204: "HydraHarp2T2",
    0x00010205: "TimeHarp260NT2",
    0x00010206: "TimeHarp260PT2",
    0x00010207: "GenericT2",
}
_T3_RECORD_TYPES = {0x00010303, 0x00010304, 0x01010304, 0x00010305, 0x00010306, 0x00010307}

#: Largest time tag the decoder produces, ps (2**62 ps ≈ 53 days; int64 holds 2**63).
MAX_T2_TIME_PS = float(2**62)
#: Records decoded at a time when reading a file (4 MiB of records; the decoding
#: temporaries of one block take about 60 MB).
PTU_BLOCK_RECORDS = 1 << 20
#: Most records :func:`read_ptu_t2` holds in memory (100 MB of records; the tags take
#: 9 bytes each, 225 MB). Longer files are streamed with :func:`iter_ptu_t2`.
MAX_PTU_RECORDS_IN_MEMORY = 25_000_000
#: Most records read from one PTU file (2 GiB of records, about 30 s of decoding and
#: correlation), so that reading ends in bounded time.
MAX_PTU_RECORDS = 1 << 29
#: Longest time span of a PTU file, s (PicoQuant acquisitions last at most 100 h; an
#: overflow count that goes beyond this is corruption).
MAX_PTU_SPAN_S = 1e6
#: How much earlier than the latest tag of another channel a tag may come, ps (1 ms):
#: T2 records are in time order to within far less; more is corruption.
MAX_CHANNEL_DISORDER_PS = 1_000_000_000
#: Longest PTU header read, bytes (PicoQuant headers take a few kB).
MAX_PTU_HEADER_BYTES = 8 * 1024 * 1024
#: Range of ``MeasDesc_GlobalResolution`` accepted, s (0.1 ps to 1 µs).
PTU_RESOLUTION_RANGE_S = (1e-13, 1e-6)

_PH_WRAP = 210_698_240  # PicoHarp 300 T2 overflow period, in time units
_HH1_WRAP = 33_552_000  # HydraHarp v1 T2
_HH2_WRAP = 33_554_432  # HydraHarp v2, TimeHarp 260, Generic T2 (2**25)


@dataclass(frozen=True, eq=False)
class T2Decoded:
    """Photons and markers decoded from a block of T2 records.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Photon and sync arrival times in ps, in record order.
    channel : ndarray of uint8, shape (n,)
        micropl channel: 0 for sync, 1..64 for detector inputs (see module docstring).
    marker_t_ps : ndarray of int64, shape (k,)
        Times of external marker records in ps.
    marker_bits : ndarray of uint8, shape (k,)
        Marker bit masks.
    n_overflows : int
        Overflow (time wrap) periods consumed in this block.
    time_offset_units : int
        Overflow-corrected time base after the block, in resolution units: pass it as
        ``time_offset_units`` when decoding the next block of the same stream.
    end_units : int
        Time of the last record of the block (or of the last overflow), in resolution
        units, including ``time_offset_units``.
    n_unknown : int
        Special records of no known kind (skipped).
    """

    t_ps: np.ndarray
    channel: np.ndarray
    marker_t_ps: np.ndarray
    marker_bits: np.ndarray
    n_overflows: int
    time_offset_units: int
    end_units: int
    n_unknown: int = 0


def _resolution_ps(resolution_s: float) -> tuple[int | None, float]:
    res_ps = float(resolution_s) * 1e12
    if not (math.isfinite(res_ps) and res_ps > 0):
        raise AnalysisInputError(f"invalid time resolution {resolution_s!r} s")
    rounded = round(res_ps)
    if rounded >= 1 and abs(res_ps - rounded) <= 1e-6 * res_ps:
        return int(rounded), res_ps
    return None, res_ps


def decode_t2_records(records_uint32: np.ndarray, record_type: int, resolution_s: float, *,
                      time_offset_units: int = 0) -> T2Decoded:
    """Decode PicoQuant T2 records into picosecond time tags.

    The same decoder serves PTU files and FIFO buffers read from the PicoQuant
    libraries (phlib, hhlib, th260lib, mhlib): records are the raw 32-bit words.

    Parameters
    ----------
    records_uint32 : ndarray of uint32, shape (n,)
        Raw T2 records, in acquisition order.
    record_type : int
        ``TTResultFormat_TTTRRecType`` of the records: one of :data:`T2_RECORD_TYPES`
        (PicoHarp 300 T2, HydraHarp v1/v2 T2, TimeHarp 260 N/P T2, Generic T2 for
        MultiHarp and PicoHarp 330).
    resolution_s : float
        Time-tag resolution in s (``MeasDesc_GlobalResolution``; e.g. 4e-12 for
        PicoHarp 300, 1e-12 for HydraHarp, 5e-12 or 80e-12 for MultiHarp).
    time_offset_units : int
        Overflow-corrected time base at the start of the block, in resolution units
        (0 for the first block; then the previous block's ``time_offset_units``).

    Returns
    -------
    T2Decoded
        Photons (including sync events as channel 0) and markers. When the resolution is
        an integer number of ps the times are exact; otherwise they are rounded to 1 ps.

    Raises
    ------
    AnalysisInputError
        Unknown or T3 record type, or records that are not a 1-D integer array.

    Notes
    -----
    Record layouts (PicoQuant spec):

    * PicoHarp T2: bits 28–31 channel, 0–27 time. Channel 15 is special: low 4 bits 0
      means an overflow of 210 698 240 units, otherwise those bits are markers.
    * HydraHarp/TimeHarp 260/Generic T2: bit 31 special, bits 25–30 channel, 0–24 time.
      Special with channel 63 is an overflow: v1 adds 33 552 000 units per record; the
      others add ``time × 2²⁵`` units (a time field of 0 counts as one). Special with
      channel 0 is a sync event, 1–15 are markers.
    """
    rec = np.asarray(records_uint32)
    if rec.ndim != 1 or (rec.size and rec.dtype.kind not in "iu"):
        raise AnalysisInputError("T2 records must be a 1-D array of uint32 words")
    rec = rec.astype(np.uint32, copy=False)
    rtype = int(record_type)
    if rtype in _T3_RECORD_TYPES:
        raise AnalysisInputError(f"record type 0x{rtype:08x} is T3, not T2")
    if rtype not in T2_RECORD_TYPES:
        raise AnalysisInputError(f"unknown T2 record type 0x{rtype:08x}")
    res_int, res_ps = _resolution_ps(resolution_s)

    if rtype == 0x00010203:  # PicoHarp 300 T2
        chan = (rec >> np.uint32(28)).astype(np.int64)
        time = (rec & np.uint32(0x0FFFFFFF)).astype(np.int64)
        special = chan == 15
        low = (rec & np.uint32(0xF)).astype(np.int64)
        is_ovf = special & (low == 0)
        is_marker = special & (low != 0)
        is_photon = ~special
        is_sync = np.zeros(rec.size, dtype=bool)
        increment = np.where(is_ovf, _PH_WRAP, 0)
        marker_bits = low
        # Markers carry their bits in the low time bits; PicoQuant subtracts them.
        time = np.where(is_marker, time - low, time)
        out_chan = chan + 1
        is_unknown = np.zeros(rec.size, dtype=bool)
    else:
        spec = (rec >> np.uint32(31)).astype(bool)
        chan = ((rec >> np.uint32(25)) & np.uint32(0x3F)).astype(np.int64)
        time = (rec & np.uint32(0x01FFFFFF)).astype(np.int64)
        is_ovf = spec & (chan == 63)
        is_sync = spec & (chan == 0)
        is_marker = spec & (chan >= 1) & (chan <= 15)
        is_unknown = spec & ~(is_ovf | is_sync | is_marker)
        is_photon = ~spec | is_sync
        if rtype == 0x00010204:  # HydraHarp v1
            increment = np.where(is_ovf, _HH1_WRAP, 0)
        else:
            increment = np.where(is_ovf, np.maximum(time, 1) * _HH2_WRAP, 0)
        marker_bits = chan
        out_chan = np.where(is_sync, SYNC_CHANNEL, chan + 1)
        # Overflow records carry a count, not a time.
        time = np.where(is_ovf, 0, time)

    _check_time_range(time_offset_units, increment, res_ps)
    base = int(time_offset_units) + np.cumsum(increment, dtype=np.int64)
    abs_units = base + time
    if res_int is not None:
        t_all = abs_units * res_int
    else:
        t_all = np.rint(abs_units.astype(np.float64) * res_ps).astype(np.int64)
    wrap = _PH_WRAP if rtype == 0x00010203 else _HH1_WRAP if rtype == 0x00010204 else _HH2_WRAP
    n_ovf = int(increment.sum()) // wrap
    end_units = int(abs_units[-1]) if rec.size else int(time_offset_units)
    return T2Decoded(
        t_ps=t_all[is_photon],
        channel=out_chan[is_photon].astype(np.uint8),
        marker_t_ps=t_all[is_marker],
        marker_bits=marker_bits[is_marker].astype(np.uint8),
        n_overflows=n_ovf,
        time_offset_units=int(base[-1]) if rec.size else int(time_offset_units),
        end_units=end_units,
        n_unknown=int(np.count_nonzero(is_unknown)),
    )


def _check_time_range(time_offset_units: int, increment: np.ndarray, res_ps: float) -> None:
    """Refuse overflow records that would push times past :data:`MAX_T2_TIME_PS`.

    The sum is taken in float64 (exact enough for a bound), so it cannot wrap as the
    int64 running sum would.
    """
    top_units = float(time_offset_units) + float(increment.sum(dtype=np.float64)) + 2.0**28
    if top_units * max(res_ps, 1.0) > MAX_T2_TIME_PS:
        raise AnalysisInputError(
            f"overflow records push the time to {top_units * res_ps * 1e-12:.3g} s, beyond "
            f"the {MAX_T2_TIME_PS * 1e-12:.3g} s that 64-bit ps time tags hold")


class T2StreamDecoder:
    """Decode a stream of T2 records block by block, carrying the time base.

    The record time field is short (25 or 28 bits) and wraps; overflow records
    advance a running offset that must survive from one block (one FIFO read) to the
    next. Decoding the blocks of a stream one after the other gives exactly what
    :func:`decode_t2_records` gives for the whole stream at once.

    Parameters
    ----------
    record_type : int
        ``TTResultFormat_TTTRRecType`` code, one of :data:`T2_RECORD_TYPES`.
    resolution_s : float
        Time-tag resolution in s.

    Attributes
    ----------
    time_offset_units : int
        Overflow-corrected time base reached so far, in resolution units.
    n_overflows : int
        Overflow periods consumed since the last :meth:`reset`.

    Raises
    ------
    AnalysisInputError
        Unknown or T3 record type, or a non-positive resolution.

    Examples
    --------
    >>> dec = T2StreamDecoder(0x01010204, 1e-12)  # HydraHarp v2 T2, 1 ps
    >>> overflow, photon = (1 << 31) | (63 << 25) | 1, (0 << 25) | 5
    >>> out = dec.decode(np.array([overflow, photon], dtype=np.uint32))
    >>> int(out.t_ps[0]), int(out.channel[0]), dec.time_ps
    (33554437, 1, 33554432)
    """

    def __init__(self, record_type: int, resolution_s: float) -> None:
        rtype = int(record_type)
        if rtype in _T3_RECORD_TYPES:
            raise AnalysisInputError(f"record type 0x{rtype:08x} is T3, not T2")
        if rtype not in T2_RECORD_TYPES:
            raise AnalysisInputError(f"unknown T2 record type 0x{rtype:08x}")
        self.record_type = rtype
        self.resolution_s = float(resolution_s)
        self._res_int, self._res_ps = _resolution_ps(self.resolution_s)
        self.time_offset_units = 0
        self.n_overflows = 0

    def reset(self) -> None:
        """Start again at time zero (a new measurement)."""
        self.time_offset_units = 0
        self.n_overflows = 0

    @property
    def time_ps(self) -> int:
        """Time reached by the overflow records so far, in ps."""
        if self._res_int is not None:
            return self.time_offset_units * self._res_int
        return round(self.time_offset_units * self._res_ps)

    def decode(self, records_uint32: np.ndarray) -> T2Decoded:
        """Decode the next block of records, continuing the time base.

        Parameters
        ----------
        records_uint32 : ndarray of uint32, shape (n,)
            The next raw records of the stream (may be empty).

        Returns
        -------
        T2Decoded
            As :func:`decode_t2_records`, with times on the stream's time base.
        """
        out = decode_t2_records(records_uint32, self.record_type, self.resolution_s,
                                time_offset_units=self.time_offset_units)
        self.time_offset_units = out.time_offset_units
        self.n_overflows += out.n_overflows
        return out


# ---------------------------------------------------------------------------
# PTU files
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TagData:
    """Time tags read from a T2 file.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Arrival times in ps, in file order (ascending).
    channel : ndarray of uint8, shape (n,)
        micropl channel of each tag: 0 = sync, 1.. = detector inputs.
    sync_rate_hz : float
        ``TTResult_SyncRate`` of the header (0 when absent).
    resolution_ps : float
        Time-tag resolution in ps.
    duration_s : float
        Acquisition time covered by the records (time of the last record including
        overflows), in s.
    header_duration_s : float
        ``MeasDesc_AcquisitionTime`` of the header in s (NaN when absent).
    record_type : str
        Name of the record format, e.g. ``"HydraHarp2T2"``.
    n_records : int
        Records read.
    n_markers, n_overflows : int
        Marker records and overflow periods in the file.
    path : str
        File read.
    tags : dict
        All header tags as ``ptufile`` parsed them.
    """

    t_ps: np.ndarray
    channel: np.ndarray
    sync_rate_hz: float
    resolution_ps: float
    duration_s: float
    header_duration_s: float
    record_type: str
    n_records: int
    n_markers: int
    n_overflows: int
    path: str
    tags: dict = field(default_factory=dict)

    @property
    def channels_present(self) -> tuple[int, ...]:
        """Sorted channel numbers that hold at least one tag."""
        return tuple(int(c) for c in np.unique(self.channel))

    def channel_tags(self, channel: int) -> np.ndarray:
        """Sorted int64 ps tags of one channel.

        Raises
        ------
        AnalysisInputError
            The channel holds no tags; the message lists the channels present.
        """
        sel = self.t_ps[self.channel == int(channel)]
        if sel.size == 0:
            present = ", ".join(str(c) for c in self.channels_present) or "none"
            raise AnalysisInputError(
                f"channel {channel} has no tags in {self.path}; channels present: {present}")
        if np.any(np.diff(sel) < 0):
            log.warning("%s: channel %d tags out of order; sorting", self.path, channel)
            sel = np.sort(sel, kind="stable")
        return sel


@dataclass(frozen=True, eq=False)
class PtuHeader:
    """The validated header of a PTU T2 file (no record read yet).

    Attributes
    ----------
    path : str
        File.
    record_type : int
        ``TTResultFormat_TTTRRecType``, one of :data:`T2_RECORD_TYPES`.
    resolution_s : float
        Time-tag resolution in s, within :data:`PTU_RESOLUTION_RANGE_S`.
    n_records : int
        Records to read: the header's count, or all whole records in the file when
        the header gives none (or a count of 0 or below).
    offset : int
        Byte offset of the first record.
    sync_rate_hz : float
        ``TTResult_SyncRate``; 0 when absent, negative or not finite.
    header_duration_s : float
        ``MeasDesc_AcquisitionTime`` in s (NaN when absent).
    tags : dict
        All header tags as ``ptufile`` parsed them.
    """

    path: str
    record_type: int
    resolution_s: float
    n_records: int
    offset: int
    sync_rate_hz: float
    header_duration_s: float
    tags: dict = field(default_factory=dict)


def read_ptu_header(path: str | os.PathLike[str]) -> PtuHeader:
    """Read and check the header of a PTU T2 file.

    Parameters
    ----------
    path : str or path-like
        PTU file.

    Returns
    -------
    PtuHeader

    Raises
    ------
    FileFormatError
        Missing, empty, truncated, foreign, T3 or image file, a resolution outside
        :data:`PTU_RESOLUTION_RANGE_S`, a header that promises more records than the
        file holds, or more than :data:`MAX_PTU_RECORDS` records. The message is one line naming the file.
    """
    p = Path(path)
    name = str(p)
    if not p.exists():
        raise FileFormatError(f"{name}: no such file")
    if not p.is_file():
        raise FileFormatError(f"{name}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise FileFormatError(f"{name}: file is empty")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic != PTU_MAGIC:
        if magic.startswith(b"PQ"):
            raise FileFormatError(
                f"{name}: PicoQuant file of type {magic.rstrip(bytes(1)).decode('ascii', 'replace')}"
                ", not a PTU time-tag file")
        raise FileFormatError(f"{name}: not a PTU file (magic {magic[:8]!r})")
    if size < 16 + 48:
        raise FileFormatError(f"{name}: truncated header ({size} bytes)")

    import ptufile  # deferred: only file reading needs it

    with open(p, "rb") as fh:
        head = fh.read(MAX_PTU_HEADER_BYTES)
    try:
        with _quiet_ptufile():
            # header only, from at most MAX_PTU_HEADER_BYTES: never touches the records
            ptu = ptufile.PqFile(io.BytesIO(head))
        tags = dict(ptu.tags)
        offset = int(ptu._data_offset)
        ptu.close()
    except (ptufile.PqFileError, ValueError, OSError, MemoryError, OverflowError,
            UnicodeDecodeError, struct.error) as exc:
        if size > MAX_PTU_HEADER_BYTES:
            raise FileFormatError(
                f"{name}: corrupt PTU header (no Header_End within the first "
                f"{MAX_PTU_HEADER_BYTES} bytes)") from exc
        raise FileFormatError(f"{name}: corrupt or truncated PTU header") from exc
    del head
    if "TTResultFormat_TTTRRecType" not in tags:
        raise FileFormatError(f"{name}: PTU header has no record type (truncated header?)")
    try:
        rtype = int(tags["TTResultFormat_TTTRRecType"])
        bits = int(tags.get("TTResultFormat_BitsPerRecord", 32))
        resolution_s = float(tags.get("MeasDesc_GlobalResolution", float("nan")))
        n_header = int(tags.get("TTResult_NumberOfRecords", -1))
        sync_rate = float(tags.get("TTResult_SyncRate", 0) or 0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise FileFormatError(f"{name}: PTU header tags have invalid values") from exc
    if rtype in _T3_RECORD_TYPES:
        kind = "image" if int(tags.get("Measurement_SubMode", 0) or 0) > 0 else "T3"
        raise FileFormatError(
            f"{name}: {kind} file (T3 records, type 0x{rtype:08x}); only T2 time tags can be "
            "correlated")
    if rtype not in T2_RECORD_TYPES:
        raise FileFormatError(f"{name}: unknown record type 0x{rtype:08x}")
    if bits not in (0, 32):
        raise FileFormatError(f"{name}: {bits} bits per record; T2 records have 32")
    lo_res, hi_res = PTU_RESOLUTION_RANGE_S
    if not (math.isfinite(resolution_s) and lo_res <= resolution_s < hi_res):
        raise FileFormatError(
            f"{name}: time resolution {resolution_s!r} s in the header is outside "
            f"{lo_res:g}–{hi_res:g} s")
    if offset < 16 or offset > size:
        raise FileFormatError(f"{name}: corrupt PTU header (records start at byte {offset})")
    payload = size - offset
    available = payload // 4
    if n_header > available:
        raise FileFormatError(
            f"{name}: truncated records: header says {n_header} records, file holds {available}")
    if max(n_header, available if n_header <= 0 else 0) > MAX_PTU_RECORDS:
        raise FileFormatError(
            f"{name}: {max(n_header, available)} records, more than the {MAX_PTU_RECORDS} "
            f"({MAX_PTU_RECORDS * 4 / 2**30:.0f} GiB) micropl reads from one PTU file")
    if n_header <= 0:
        if payload % 4:
            raise FileFormatError(f"{name}: truncated record ({payload % 4} trailing bytes)")
        if n_header < 0 and "TTResult_NumberOfRecords" in tags:
            log.warning("%s: header gives %d records; reading the %d in the file",
                        name, n_header, available)
        count = available
    else:
        if n_header < available:
            log.warning("%s: header says %d records, the file holds %d; reading %d",
                        name, n_header, available, n_header)
        count = n_header
    if not (math.isfinite(sync_rate) and sync_rate >= 0):
        log.info("%s: sync rate %r Hz in the header ignored", name, sync_rate)
        sync_rate = 0.0
    acq_ms = tags.get("MeasDesc_AcquisitionTime")
    header_duration = float(acq_ms) * 1e-3 if isinstance(acq_ms, int | float) else float("nan")
    return PtuHeader(path=name, record_type=rtype, resolution_s=resolution_s, n_records=count,
                     offset=offset, sync_rate_hz=sync_rate, header_duration_s=header_duration,
                     tags=tags)


def iter_ptu_t2(header: PtuHeader, *, block_records: int = PTU_BLOCK_RECORDS
                ) -> Iterator[T2Decoded]:
    """Decode a PTU file's records block by block, in bounded memory.

    Each block holds at most ``block_records`` records; the time base runs on from
    block to block (:class:`T2StreamDecoder`). Every channel's tags are checked to be
    in time order, across blocks too, no tag to be more than
    :data:`MAX_CHANNEL_DISORDER_PS` earlier than one of another channel before it, and
    the time span to stay below :data:`MAX_PTU_SPAN_S`.

    Parameters
    ----------
    header : PtuHeader
        From :func:`read_ptu_header`.
    block_records : int
        Records per block.

    Yields
    ------
    T2Decoded
        One block's photons and markers, times in ps on the file's time base.

    Raises
    ------
    FileFormatError
        Records missing from the file, time that goes backwards, or overflow
        records that push the time beyond :data:`MAX_PTU_SPAN_S`. One line naming the
        file and the record.
    """
    name = header.path
    decoder = T2StreamDecoder(header.record_type, header.resolution_s)
    res_ps = decoder._res_ps
    max_units = MAX_PTU_SPAN_S * 1e12 / res_ps
    last = np.full(257, np.iinfo(np.int64).min // 2, dtype=np.int64)
    done = 0
    with open(header.path, "rb") as fh:
        fh.seek(header.offset)
        while done < header.n_records:
            want = min(int(block_records), header.n_records - done)
            records = np.fromfile(fh, dtype="<u4", count=want)
            if records.size != want:
                raise FileFormatError(
                    f"{name}: truncated records ({done + records.size} of {header.n_records} "
                    "read)")
            try:
                dec = decoder.decode(records)
            except AnalysisInputError as exc:
                raise FileFormatError(f"{name}: records {done}–{done + want}: {exc}") from exc
            if dec.end_units > max_units:
                raise FileFormatError(
                    f"{name}: time reaches {dec.end_units * res_ps * 1e-12:.4g} s by record "
                    f"{done + want} (overflow records push it beyond {MAX_PTU_SPAN_S:g} s); "
                    "the records are corrupt")
            _check_channel_order(name, dec, last, done)
            done += want
            yield dec


def _check_channel_order(name: str, dec: T2Decoded, last: np.ndarray, first_record: int
                         ) -> None:
    """Refuse tags that go backwards; ``last`` (per channel, then the latest of all) is
    updated."""
    k = _first_backwards(dec.t_ps, dec.channel, last, np.int64(MAX_CHANNEL_DISORDER_PS))
    if k >= 0:
        c = int(dec.channel[k])
        where = f"photon {k} of the block starting at record {first_record}"
        if dec.t_ps[k] < last[c]:
            raise FileFormatError(
                f"{name}: time goes backwards on channel {c} by {int(last[c] - dec.t_ps[k])} "
                f"ps ({where}); the records are corrupt and would give a wrong g²")
        raise FileFormatError(
            f"{name}: time goes backwards by {int(last[-1] - dec.t_ps[k])} ps from another "
            f"channel to channel {c} ({where}; at most {MAX_CHANNEL_DISORDER_PS} ps is "
            "accepted); the records are corrupt")


@numba.njit(cache=True, nogil=True)
def _first_backwards(t: np.ndarray, channel: np.ndarray, last: np.ndarray,
                     slack: np.int64) -> int:
    """Index of the first tag earlier than the previous tag of its channel, or more than
    ``slack`` earlier than the latest tag of any channel; else -1.

    ``last[c]`` holds channel ``c``'s latest time and ``last[-1]`` the latest of all; they
    are updated up to that index.
    """
    top = last.shape[0] - 1
    for i in range(t.shape[0]):
        c = channel[i]
        if t[i] < last[c] or t[i] < last[top] - slack:
            return i
        last[c] = t[i]
        if t[i] > last[top]:
            last[top] = t[i]
    return -1


def read_ptu_t2(path: str | os.PathLike[str], *,
                max_records: int = MAX_PTU_RECORDS_IN_MEMORY) -> TagData:
    """Read a PicoQuant PTU file of T2 records into memory.

    Parameters
    ----------
    path : str or path-like
        PTU file (PicoHarp 300 T2, HydraHarp v1/v2 T2, TimeHarp 260 T2, Generic T2).
    max_records : int
        Most records read into memory (:data:`MAX_PTU_RECORDS_IN_MEMORY`); a longer
        file is refused (stream it with :func:`iter_ptu_t2` instead).

    Returns
    -------
    TagData
        Time tags in ps with 1-based input channels (0 = sync), the header's sync rate
        and resolution, and the acquisition duration. Tags are in time order; when
        the channels interleave out of order (each in order) they are sorted.

    Raises
    ------
    FileFormatError
        Missing, empty, truncated, foreign, T3 or image file, a header whose record
        count does not match the file, more than ``max_records`` records, a channel whose
        time goes backwards, or a time span beyond :data:`MAX_PTU_SPAN_S`. The message is
        one line naming the file.
    """
    header = read_ptu_header(path)
    name = header.path
    count = header.n_records
    if count > max_records:
        raise FileFormatError(
            f"{name}: {count} records, more than the {max_records} micropl reads into memory "
            f"({count * 4 / 1e6:.0f} MB of records); `micropl analyze g2` streams files of any "
            "size")
    t_ps = np.empty(count, dtype=np.int64)
    channel = np.empty(count, dtype=np.uint8)
    n = n_markers = n_overflows = 0
    end_units = 0
    for dec in iter_ptu_t2(header):
        k = dec.t_ps.size
        t_ps[n:n + k] = dec.t_ps
        channel[n:n + k] = dec.channel
        n += k
        n_markers += int(dec.marker_t_ps.size)
        n_overflows += dec.n_overflows
        end_units = dec.end_units
    t_ps, channel = t_ps[:n], channel[:n]
    if n > 1 and not _is_sorted(t_ps):
        order = np.argsort(t_ps, kind="stable")
        log.warning("%s: %d tags of different channels out of time order; sorted", name,
                    int(np.count_nonzero(np.diff(t_ps) < 0)))
        t_ps, channel = t_ps[order], channel[order]
    res_ps = _resolution_ps(header.resolution_s)[1]
    return TagData(
        t_ps=t_ps, channel=channel, sync_rate_hz=header.sync_rate_hz,
        resolution_ps=res_ps, duration_s=end_units * res_ps * 1e-12,
        header_duration_s=header.header_duration_s,
        record_type=T2_RECORD_TYPES[header.record_type],
        n_records=count, n_markers=n_markers, n_overflows=n_overflows, path=name,
        tags=header.tags,
    )


def _is_sorted(t: np.ndarray) -> bool:
    """Whether ``t`` is ascending, checked in blocks (no n-sized temporary)."""
    step = PTU_BLOCK_RECORDS
    for i in range(0, t.size - 1, step):
        block = t[i:i + step + 1]
        if np.any(block[1:] < block[:-1]):
            return False
    return True


class _quiet_ptufile:
    """Silence ptufile's logger while it parses a header we validate ourselves."""

    def __enter__(self):
        self._logger = logging.getLogger("ptufile")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        return False


# ---------------------------------------------------------------------------
# Histogram files
# ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HistogramData:
    """An HBT histogram read from a text file.

    Attributes
    ----------
    tau_ps : ndarray of float64, shape (n,)
        Bin delays in ps (as written in the file, converted to ps).
    counts : ndarray of float64, shape (n,)
        Counts per bin; with several count columns (snapshots), their sum.
    delay_unit : str
        ``"ns"`` or ``"ps"``: the unit of the file's delay column.
    unit_source : str
        ``"header"``, ``"user"`` or ``"inferred"``.
    n_snapshots : int
        Number of count columns summed.
    path : str
        File read.
    """

    tau_ps: np.ndarray
    counts: np.ndarray
    delay_unit: str
    unit_source: str
    n_snapshots: int
    path: str


_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _split(line: str, delim: str | None) -> list[str]:
    if delim == ",":
        return [s.strip() for s in line.split(",")]
    return line.split()


def read_histogram_file(path: str | os.PathLike[str], *,
                        delay_unit: str | None = None) -> HistogramData:
    """Read a histogram text file: a delay column and one or more count columns.

    Parameters
    ----------
    path : str or path-like
        Text file. Columns are separated by commas, tabs or spaces. Lines starting with
        ``#`` are comments. An optional first line of column names may give the delay
        unit: a name containing ``ns`` (``delay_ns``, ``tau (ns)``) or ``ps``. With more
        than one count column (e.g. 10 s snapshots), the columns are summed.
    delay_unit : {"ns", "ps"}, optional
        Unit of the delay column; overrides the header. Without either, the unit is
        inferred: non-integer delays or a bin spacing below 1 mean ns (ps delays are
        integers ≥ 1 apart), as does a total span below 2000 (a g² histogram spans
        more than 2 ns); otherwise ps.

    Returns
    -------
    HistogramData

    Raises
    ------
    FileFormatError
        Missing, empty, binary or malformed file; non-increasing delays; negative or
        non-finite counts.
    """
    p = Path(path)
    name = str(p)
    if delay_unit is not None and delay_unit not in ("ns", "ps"):
        raise AnalysisInputError(f"delay unit must be 'ns' or 'ps', got {delay_unit!r}")
    if not p.is_file():
        raise FileFormatError(f"{name}: no such file" if not p.exists()
                              else f"{name}: not a regular file")
    raw = read_text_limited(p, "histogram")
    if not raw.strip():
        raise FileFormatError(f"{name}: file is empty")
    if b"\0" in raw[:4096]:
        raise FileFormatError(f"{name}: binary file, not a text histogram")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # decodes any byte
    del raw
    content = ((n, ln) for n, ln in text_lines(p, text) if ln and not ln.startswith("#"))
    head = [ln for _, ln in itertools.islice(content, 2)]
    if not head:
        raise FileFormatError(f"{name}: no data lines")
    delim = "," if "," in head[-1] or "," in head[0] else None
    header_unit = None
    first = _split(head[0], delim)
    if not all(_NUM.match(tok) for tok in first):
        head_low = head[0].lower()
        first_name = first[0].lower() if first else ""
        if re.search(r"(^|[^a-z])ns([^a-z]|$)", first_name) or "delay_ns" in head_low:
            header_unit = "ns"
        elif re.search(r"(^|[^a-z])ps([^a-z]|$)", first_name) or "delay_ps" in head_low:
            header_unit = "ps"
        head = head[1:]
    values = array("d")
    ncol = 0
    n_rows = 0
    for row_text in itertools.chain(head, (ln for _, ln in content)):
        row = _split(row_text, delim)
        n_rows += 1
        if n_rows == 1:
            ncol = len(row)
            if ncol < 2:
                raise FileFormatError(
                    f"{name}: need a delay column and a counts column, found 1 column")
        elif len(row) != ncol:
            raise FileFormatError(
                f"{name}: data row {n_rows} has {len(row)} columns, expected {ncol}")
        try:
            values.extend([float(tok) for tok in row])
        except ValueError as exc:
            raise FileFormatError(f"{name}: non-numeric value in data row {n_rows}") from exc
    if n_rows < 3:
        raise FileFormatError(f"{name}: fewer than 3 data rows")
    data = np.frombuffer(values, dtype=np.float64).reshape(n_rows, ncol)
    if not np.all(np.isfinite(data)):
        raise FileFormatError(f"{name}: NaN or infinite values in the data")
    delay = data[:, 0]
    counts = data[:, 1:].sum(axis=1)
    if np.any(np.diff(delay) <= 0):
        raise FileFormatError(f"{name}: delays are not strictly increasing")
    if np.any(data[:, 1:] < 0):
        raise FileFormatError(f"{name}: negative counts")
    if delay_unit is not None:
        unit, source = delay_unit, "user"
    elif header_unit is not None:
        unit, source = header_unit, "header"
    else:
        spacing = float(np.median(np.diff(delay)))
        integer = bool(np.all(np.abs(delay - np.round(delay)) < 1e-9))
        span = float(delay[-1] - delay[0])
        unit = "ns" if (not integer or spacing < 1 or span < 2000) else "ps"
        source = "inferred"
        log.info("%s: delay unit inferred as %s (bin %.4g, span %.4g)", name, unit, spacing, span)
    tau_ps = delay * (1000.0 if unit == "ns" else 1.0)
    return HistogramData(tau_ps=tau_ps, counts=counts, delay_unit=unit, unit_source=source,
                         n_snapshots=ncol - 1, path=name)
