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

from micropl.analysis.spectrum_files import read_text_limited, text_lines
from micropl.errors import AnalysisInputError, FileFormatError
from micropl.ptu import (
    _T3_RECORD_TYPES,
    T2_RECORD_TYPES,
    T2Decoded,
    T2StreamDecoder,
    _resolution_ps,
)

log = logging.getLogger(__name__)

__all__ = [
    "HistogramData",
    "MAX_CHANNEL_DISORDER_PS",
    "MAX_PTU_RECORDS",
    "MAX_PTU_RECORDS_IN_MEMORY",
    "MAX_PTU_SPAN_S",
    "PtuHeader",
    "TagData",
    "iter_ptu_t2",
    "read_ptu_header",
    "read_histogram_file",
    "read_ptu_t2",
]

PTU_MAGIC = b"PQTTTR\0\0"


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


def read_ptu_header(path: str | os.PathLike[str], *, allow_t3: bool = False) -> PtuHeader:
    """Read and check the header of a PTU T2 file.

    Parameters
    ----------
    path : str or path-like
        PTU file.
    allow_t3 : bool
        Accept T3 files too (their resolution is the sync period, up to 1 ms); read
        their records with :mod:`micropl.analysis.formats.t3`.

    Returns
    -------
    PtuHeader

    Raises
    ------
    FileFormatError
        Missing, empty, truncated, foreign, T3 or image file, a resolution outside
        :data:`PTU_RESOLUTION_RANGE_S`, a header that promises more records than the
        file holds, or more than :data:`MAX_PTU_RECORDS` records. The message is one line naming the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import read_ptu_header
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(path, [1000, 2000], [1, 2], sync_rate_hz=40e6)
    >>> header = read_ptu_header(path)
    >>> header.n_records, header.sync_rate_hz, header.resolution_s
    (2, 40000000.0, 1e-12)
    >>> folder.cleanup()
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
                f"{name}: PicoQuant file of type "
                f"{magic.rstrip(bytes(1)).decode('ascii', 'replace').encode('unicode_escape').decode()}"
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
    is_t3 = allow_t3 and rtype in _T3_RECORD_TYPES
    if rtype in _T3_RECORD_TYPES and not is_t3:
        kind = "image" if int(tags.get("Measurement_SubMode", 0) or 0) > 0 else "T3"
        raise FileFormatError(
            f"{name}: {kind} file (T3 records, type 0x{rtype:08x}); only T2 time tags can be "
            "correlated")
    if is_t3 and int(tags.get("Measurement_SubMode", 0) or 0) > 0:
        raise FileFormatError(f"{name}: T3 image (FLIM) file; micropl reads T3 point "
                              "measurements")
    if rtype not in T2_RECORD_TYPES and not is_t3:
        raise FileFormatError(f"{name}: unknown record type 0x{rtype:08x}")
    if bits not in (0, 32):
        raise FileFormatError(f"{name}: {bits} bits per record; T2 records have 32")
    lo_res, hi_res = (PTU_RESOLUTION_RANGE_S[0], 1e-3) if is_t3 else PTU_RESOLUTION_RANGE_S
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import iter_ptu_t2, read_ptu_header
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(path, np.arange(10) * 1000, [1, 2] * 5, sync_rate_hz=80e6)
    >>> blocks = list(iter_ptu_t2(read_ptu_header(path), block_records=4))
    >>> [b.t_ps.tolist() for b in blocks]
    [[0, 1000, 2000, 3000], [4000, 5000, 6000, 7000], [8000, 9000]]
    >>> folder.cleanup()
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import read_ptu_t2
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(path, [0, 12500, 13000, 25000], [3, 3, 1, 3], sync_rate_hz=80e6, sync_channel=3)
    >>> tags = read_ptu_t2(path)
    >>> tags.t_ps.tolist(), tags.channel.tolist(), tags.sync_rate_hz, tags.record_type
    ([0, 12500, 13000, 25000], [0, 0, 1, 0], 80000000.0, 'HydraHarp2T2')
    >>> folder.cleanup()
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

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.tags import read_histogram_file
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "g2.txt"
    >>> _ = path.write_text("tau (ns), counts\\n-1.0, 10\\n-0.5, 12\\n0.0, 3\\n0.5, 11\\n1.0, 9\\n")
    >>> hist = read_histogram_file(path)
    >>> hist.tau_ps.tolist(), hist.counts.tolist(), hist.delay_unit, hist.unit_source
    ([-1000.0, -500.0, 0.0, 500.0, 1000.0], [10.0, 12.0, 3.0, 11.0, 9.0], 'ns', 'header')
    >>> folder.cleanup()
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
