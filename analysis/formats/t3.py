"""PTU T3 files: photons referenced to the laser sync, for lifetime and g².

A T3 record holds the number of the sync pulse a photon follows and its delay after
that pulse (:func:`micropl.ptu.decode_t3_records`). So a T3 file gives

* the PL decay directly: the histogram of the delays over one sync period
  (:func:`t3_decay`), fitted by :func:`~micropl.analysis.lifetime.fit_decay`;
* the g² of two detector channels: each photon's absolute time is
  ``nsync × period + dtime × resolution`` (period ``MeasDesc_GlobalResolution``,
  resolution ``MeasDesc_Resolution``), and the channels are cross-correlated in
  bounded memory as T2 tags are (:func:`correlate_t3_stream`).

Records are decoded in blocks of :data:`~micropl.analysis.tags.PTU_BLOCK_RECORDS`; the
header's claims are checked first (:func:`~micropl.analysis.tags.read_ptu_header`
with ``allow_t3``), the delay resolution here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from micropl.analysis.g2 import G2Accumulator
from micropl.analysis.tags import (
    MAX_CHANNEL_DISORDER_PS,
    MAX_PTU_RECORDS_IN_MEMORY,
    MAX_PTU_SPAN_S,
    PTU_BLOCK_RECORDS,
    PtuHeader,
    TagData,
    read_ptu_header,
)
from micropl.errors import AnalysisInputError, FileFormatError
from micropl.ptu import T3_RECORD_TYPES, T3Decoded, T3StreamDecoder

__all__ = ["MAX_DECAY_BINS", "T3Timing", "correlate_t3_stream", "iter_ptu_t3",
           "read_ptu_t3_tags", "read_t3_header", "t3_decay", "t3_lifetime_info"]

#: Most bins of a T3 decay histogram (the delay bins are merged to stay below).
MAX_DECAY_BINS = 4096


@dataclass(frozen=True)
class T3Timing:
    """The time units of a T3 file.

    Attributes
    ----------
    period_ps : float
        Sync period (``MeasDesc_GlobalResolution``), ps.
    resolution_ps : float
        Delay unit (``MeasDesc_Resolution``), ps.
    sync_rate_hz : float
        ``1 / period``, Hz.
    """

    period_ps: float
    resolution_ps: float

    @property
    def sync_rate_hz(self) -> float:
        return 1e12 / self.period_ps


def read_t3_header(path) -> tuple[PtuHeader, T3Timing]:
    """The header of a PTU T3 file and its time units.

    Raises
    ------
    FileFormatError
        A T2 file, or a delay resolution outside 0.1 ps to the sync period (one line).

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import read_t3_header
    >>> header, timing = read_t3_header(path)
    >>> header.n_records, timing.period_ps, timing.resolution_ps, timing.sync_rate_hz
    (4000, 12500.0, 100.0, 80000000.0)
    >>> folder.cleanup()
    """
    header = read_ptu_header(path, allow_t3=True)
    if header.record_type not in T3_RECORD_TYPES:
        raise FileFormatError(f"{path}: T2 file, not T3")
    period_ps = header.resolution_s * 1e12
    res = header.tags.get("MeasDesc_Resolution")
    res_ps = float(res) * 1e12 if isinstance(res, int | float) else math.nan
    if not (math.isfinite(res_ps) and 0.1 <= res_ps <= period_ps):
        raise FileFormatError(f"{path}: T3 delay resolution {res!r} s in the header is "
                              f"outside 0.1 ps to the sync period ({period_ps:g} ps)")
    return header, T3Timing(period_ps=period_ps, resolution_ps=res_ps)


def iter_ptu_t3(header: PtuHeader, *, block_records: int = PTU_BLOCK_RECORDS
                ) -> Iterator[T3Decoded]:
    """Decode a T3 file's records block by block (bounded memory).

    Raises
    ------
    FileFormatError
        Missing records, or overflows that push the time beyond
        :data:`~micropl.analysis.tags.MAX_PTU_SPAN_S` (one line naming the record).

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import iter_ptu_t3, read_t3_header
    >>> header, _ = read_t3_header(path)
    >>> blocks = list(iter_ptu_t3(header, block_records=1500))
    >>> [b.nsync.size for b in blocks], blocks[-1].end_nsync
    ([1500, 1500, 1000], 999)
    >>> bool(np.array_equal(np.concatenate([b.dtime for b in blocks]), dtime))
    True
    >>> folder.cleanup()
    """
    decoder = T3StreamDecoder(header.record_type)
    max_sync = MAX_PTU_SPAN_S / header.resolution_s
    done = 0
    with open(header.path, "rb") as fh:
        fh.seek(header.offset)
        while done < header.n_records:
            want = min(int(block_records), header.n_records - done)
            records = np.fromfile(fh, dtype="<u4", count=want)
            if records.size != want:
                raise FileFormatError(f"{header.path}: truncated records "
                                      f"({done + records.size} of {header.n_records} read)")
            try:
                dec = decoder.decode(records)
            except AnalysisInputError as exc:
                raise FileFormatError(f"{header.path}: records {done}–{done + want}: "
                                      f"{exc}") from exc
            if dec.end_nsync > max_sync:
                raise FileFormatError(
                    f"{header.path}: time reaches {dec.end_nsync * header.resolution_s:.4g} s "
                    f"by record {done + want} (beyond {MAX_PTU_SPAN_S:g} s); the records "
                    "are corrupt")
            done += want
            yield dec


def t3_decay(header: PtuHeader, timing: T3Timing, channels: tuple[int, ...]
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """The histogram of photon delays after the sync, over one period.

    Parameters
    ----------
    header, timing : from :func:`read_t3_header`.
    channels : tuple of int
        Detector channels (1-based) whose photons are counted.

    Returns
    -------
    t_ps : ndarray, shape (n_bins,)
        Bin centres, ps (delay after the sync).
    counts : ndarray, shape (n_bins,)
        Photons per bin.
    bin_ps : float
        Bin width: the delay resolution times the smallest whole factor that keeps
        the period within :data:`MAX_DECAY_BINS` bins.

    Raises
    ------
    AnalysisInputError
        No photon on these channels.

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import read_t3_header, t3_decay
    >>> header, timing = read_t3_header(path)
    >>> t_ps, counts, bin_ps = t3_decay(header, timing, (1, 2))
    >>> t_ps.size, bin_ps, int(counts.sum()), float(t_ps[np.argmax(counts)])
    (125, 100.0, 4000, 2150.0)
    >>> int(t3_decay(header, timing, (1,))[1].sum()) == int(np.sum(chan == 1))
    True
    >>> folder.cleanup()
    """
    per_period = max(1, int(math.floor(timing.period_ps / timing.resolution_ps)))
    factor = max(1, -(-per_period // MAX_DECAY_BINS))
    n_bins = max(1, per_period // factor)
    counts = np.zeros(n_bins, dtype=np.int64)
    wanted = np.array(channels, dtype=np.uint8)
    for dec in iter_ptu_t3(header):
        sel = np.isin(dec.channel, wanted)
        idx = dec.dtime[sel] // factor
        counts += np.bincount(idx[idx < n_bins], minlength=n_bins)[:n_bins]
    if counts.sum() == 0:
        raise AnalysisInputError(f"{header.path}: no photons on channel(s) "
                                 f"{', '.join(map(str, channels))}")
    bin_ps = factor * timing.resolution_ps
    return (np.arange(n_bins) + 0.5) * bin_ps, counts.astype(np.float64), bin_ps


def correlate_t3_stream(header: PtuHeader, timing: T3Timing, ch_a: int, ch_b: int,
                        bin_ps: int, window_ps: int, *, max_pairs: int, max_tail: int
                        ) -> tuple[G2Accumulator, np.ndarray, float]:
    """Cross-correlate two channels of a T3 file on absolute times (bounded memory).

    Returns
    -------
    acc : G2Accumulator
        Histogram and tag counts.
    per_channel : ndarray of int64, shape (256,)
        Photons per channel.
    duration_s : float
        Time of the last record (sync number × period), s.

    Raises
    ------
    AnalysisInputError
        A channel without photons, or more pairs than ``max_pairs`` (one line).

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import correlate_t3_stream, read_t3_header
    >>> header, timing = read_t3_header(path)
    >>> acc, per_channel, duration_s = correlate_t3_stream(
    ...     header, timing, 1, 2, 100, 50_000, max_pairs=10**7, max_tail=10**6)
    >>> acc.n_tags_a, acc.n_tags_b, per_channel[1:3].tolist(), duration_s
    (1968, 2032, [1968, 2032], 1.24875e-05)
    >>> folder.cleanup()
    """
    acc = G2Accumulator(bin_ps, window_ps, channel_a=ch_a, channel_b=ch_b,
                        max_pairs=max_pairs, max_tail=max_tail)
    per_channel = np.zeros(256, dtype=np.int64)
    end_sync = 0
    slack = int(math.ceil(timing.period_ps)) + MAX_CHANNEL_DISORDER_PS
    for dec in iter_ptu_t3(header):
        end_sync = dec.end_nsync
        if not dec.nsync.size:
            continue
        per_channel += np.bincount(dec.channel, minlength=256)
        t_ps = _absolute_ps(dec, timing)
        t_a = np.sort(t_ps[dec.channel == ch_a])
        t_b = np.sort(t_ps[dec.channel == ch_b])
        try:
            acc.add_arrays(t_a, t_b, t_stop_ps=int(t_ps.max()) - slack)
        except AnalysisInputError as exc:
            raise FileFormatError(f"{header.path}: {exc}") from None
    present = ", ".join(str(c) for c in np.flatnonzero(per_channel)) or "none"
    for ch in (ch_a, ch_b):
        if not 0 <= ch < 256 or per_channel[ch] == 0:
            raise AnalysisInputError(
                f"channel {ch} has no photons in {header.path}; channels present: {present}")
    return acc, per_channel, end_sync * timing.period_ps * 1e-12


def _absolute_ps(dec: T3Decoded, timing: T3Timing) -> np.ndarray:
    """Photon times, ps: ``nsync × period + dtime × resolution`` (rounded to 1 ps; exact
    integer arithmetic for the sync part when the period is a whole number of ps)."""
    delay = np.rint(dec.dtime.astype(np.float64) * timing.resolution_ps).astype(np.int64)
    period = round(timing.period_ps)
    if abs(timing.period_ps - period) <= 1e-9 * timing.period_ps:
        return dec.nsync * np.int64(period) + delay
    return np.rint(dec.nsync.astype(np.float64) * timing.period_ps).astype(np.int64) + delay


def t3_lifetime_info(header: PtuHeader, timing: T3Timing, channels: tuple[int, int]) -> dict:
    """The PL decay of a T3 file's photons and its lifetime fit, JSON-ready.

    The one summary of a T3 file's decay that ``micropl analyze g2`` and ``micropl
    replay`` print: ``t3_resolution_ps``, ``decay_bin_ps``, ``lifetime_ns``,
    ``lifetime_err_ns`` (1σ, :func:`~micropl.analysis.lifetime.fit_decay`) and
    ``lifetime_fit_success``.

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import read_t3_header, t3_lifetime_info
    >>> header, timing = read_t3_header(path)
    >>> info = t3_lifetime_info(header, timing, (1, 2))
    >>> round(info["lifetime_ns"], 1), info["decay_bin_ps"], info["lifetime_fit_success"]
    (1.0, 100.0, True)
    >>> folder.cleanup()
    """
    from micropl.analysis.lifetime import fit_decay

    t_ps, decay, decay_bin_ps = t3_decay(header, timing, channels)
    fit = fit_decay(t_ps, decay, timing.period_ps)
    return {"t3_resolution_ps": timing.resolution_ps, "decay_bin_ps": decay_bin_ps,
            "lifetime_ns": float(fit.tau_ns[0]), "lifetime_err_ns": float(fit.tau_err_ns[0]),
            "lifetime_fit_success": bool(fit.success)}


def read_ptu_t3_tags(path, *, max_records: int = MAX_PTU_RECORDS_IN_MEMORY) -> TagData:
    """A T3 file's photons as time tags (absolute times, ps), as a T2 file gives them.

    Times are ``nsync × period + dtime × resolution``; the sync rate is ``1 / period``;
    the duration is the last record's sync number × period. The tags are sorted by time
    (within a sync period, photons of different channels may come in any order): each
    block is sorted, and the overlap where two blocks meet, so memory stays that of the
    tags (9 bytes per record, as :func:`~micropl.analysis.tags.read_ptu_t2`).

    Raises
    ------
    FileFormatError
        As :func:`read_t3_header` and :func:`iter_ptu_t3`; more than ``max_records``.

    Examples
    --------
    A T3 file built in the example (HydraHarp V2 records: 4000 photons on inputs 1
    and 2 over 1000 sync periods of 12.5 ns, delays in 100 ps units with a 1 ns decay
    2 ns after the sync):

    >>> import struct, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> def entry(name, value, kind=0x10000008):  # int8; float8 0x20000008; empty8 0xFFFF0008
    ...     fmt = "<iId" if kind == 0x20000008 else "<iIq"
    ...     return name.encode().ljust(32, b"\\0") + struct.pack(fmt, -1, kind, value)
    >>> rng = np.random.default_rng(7)
    >>> nsync = np.sort(rng.integers(0, 1000, 4000))
    >>> dtime = (20 + rng.normal(0, 1, 4000) + rng.exponential(10, 4000)).astype(int) % 125
    >>> chan = rng.integers(1, 3, 4000)
    >>> records = ((chan - 1) << 25 | dtime << 10 | nsync).astype("<u4")
    >>> head = b"PQTTTR" + bytes(2) + b"1.0.00" + bytes(2) + b"".join([
    ...     entry("Measurement_Mode", 3), entry("TTResultFormat_TTTRRecType", 0x01010304),
    ...     entry("MeasDesc_GlobalResolution", 12.5e-9, 0x20000008),
    ...     entry("MeasDesc_Resolution", 1e-10, 0x20000008),
    ...     entry("TTResult_NumberOfRecords", 4000), entry("Header_End", 0, 0xFFFF0008)])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "decay.ptu"
    >>> _ = path.write_bytes(head + records.tobytes())
    >>> from micropl.analysis.formats.t3 import read_ptu_t3_tags
    >>> tags = read_ptu_t3_tags(path)
    >>> tags.t_ps[:3].tolist(), tags.channel[:3].tolist(), tags.record_type
    ([2300, 4900, 5400], [2, 2, 1], 'HydraHarp2T3')
    >>> bool(np.all(np.diff(tags.t_ps) >= 0)), tags.sync_rate_hz
    (True, 80000000.0)
    >>> read_ptu_t3_tags(path, max_records=1000)
    Traceback (most recent call last):
    ...
    micropl.errors.FileFormatError: ...decay.ptu: 4000 records, more than the 1000 micropl reads into memory; `micropl analyze g2` streams files of any size
    >>> folder.cleanup()
    """
    from micropl.ptu import T3_RECORD_TYPES

    header, timing = read_t3_header(path)
    if header.n_records > max_records:
        raise FileFormatError(
            f"{header.path}: {header.n_records} records, more than the {max_records} micropl "
            "reads into memory; `micropl analyze g2` streams files of any size")
    t_ps = np.empty(header.n_records, dtype=np.int64)
    channel = np.empty(header.n_records, dtype=np.uint8)
    n = n_markers = end = 0
    for dec in iter_ptu_t3(header):
        t_blk = _absolute_ps(dec, timing)
        order = np.argsort(t_blk, kind="stable")
        k = t_blk.size
        t_ps[n:n + k], channel[n:n + k] = t_blk[order], dec.channel[order]
        if n and k:
            _merge_boundary(t_ps, channel, n, n + k)
        n += k
        n_markers += int(dec.marker_nsync.size)
        end = dec.end_nsync
    t_ps, channel = t_ps[:n], channel[:n]
    return TagData(t_ps=t_ps, channel=channel, sync_rate_hz=timing.sync_rate_hz,
                   resolution_ps=timing.resolution_ps,
                   duration_s=end * timing.period_ps * 1e-12,
                   header_duration_s=header.header_duration_s,
                   record_type=T3_RECORD_TYPES[header.record_type],
                   n_records=header.n_records, n_markers=n_markers, n_overflows=0,
                   path=header.path, tags=header.tags)


def _merge_boundary(t_ps: np.ndarray, channel: np.ndarray, b: int, stop: int) -> None:
    """Sort, in place, the few tags around ``b`` where two sorted blocks overlap.

    ``t_ps[:b]`` and ``t_ps[b:stop]`` are each sorted; photons of one sync period may
    straddle ``b`` out of order. The overlap — tags before ``b`` later than
    ``t_ps[b]`` and tags after it earlier than ``t_ps[b - 1]`` — is contiguous and,
    sorted, leaves the whole ``t_ps[:stop]`` sorted (it is one period long, so a few
    tags).
    """
    if t_ps[b - 1] <= t_ps[b]:
        return
    lo = int(np.searchsorted(t_ps[:b], t_ps[b], side="right"))
    hi = b + int(np.searchsorted(t_ps[b:stop], t_ps[b - 1], side="left"))
    order = np.argsort(t_ps[lo:hi], kind="stable")
    t_ps[lo:hi] = t_ps[lo:hi][order]
    channel[lo:hi] = channel[lo:hi][order]
