"""The PicoQuant T2 and T3 time-tag codecs: 32-bit records to time tags.

T2 records carry absolute times (:func:`decode_t2_records`); T3 records carry the
number of the sync (laser) pulse and the delay after it (:func:`decode_t3_records`).

The one decoder of T2 records (PicoHarp 300, HydraHarp v1/v2, TimeHarp 260, Generic
T2), shared by the PTU file reader (:mod:`micropl.analysis.tags`) and the PicoQuant
driver (:mod:`micropl.drivers.picoquant`), which streams the same records from the
device's FIFO. A leaf module: it imports nothing of micropl but the shared errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from micropl.errors import AnalysisInputError

__all__ = ["MAX_T2_TIME_PS", "SYNC_CHANNEL", "T2Decoded", "T2StreamDecoder", "T2_RECORD_TYPES",
           "T3Decoded", "T3StreamDecoder", "T3_RECORD_TYPES", "decode_t2_records",
           "decode_t3_records"]

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
#: T3 record types and their names.
T3_RECORD_TYPES: dict[int, str] = {
    0x00010303: "PicoHarpT3",
    0x00010304: "HydraHarpT3",
    0x01010304: "HydraHarp2T3",
    0x00010305: "TimeHarp260NT3",
    0x00010306: "TimeHarp260PT3",
    0x00010307: "GenericT3",
}
_T3_RECORD_TYPES = set(T3_RECORD_TYPES)

#: Largest time tag the decoder produces, ps (2**62 ps ≈ 53 days; int64 holds 2**63).
MAX_T2_TIME_PS = float(2**62)

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


# --------------------------------------------------------------------------- T3
_PH_T3_WRAP = 65_536  # PicoHarp 300 T3: 16-bit sync counter
_HH_T3_WRAP = 1_024  # HydraHarp, TimeHarp 260, Generic T3: 10-bit sync counter


@dataclass(frozen=True, eq=False)
class T3Decoded:
    """Photons and markers decoded from a block of T3 records.

    Attributes
    ----------
    nsync : ndarray of int64, shape (n,)
        Number of the sync pulse each photon follows, counted from the start of the
        stream (overflows included).
    dtime : ndarray of int64, shape (n,)
        Delay of each photon after that sync pulse, in units of the TCSPC resolution
        (``MeasDesc_Resolution``).
    channel : ndarray of uint8, shape (n,)
        micropl input channel, 1-based (the record's channel field + 1; PicoHarp T3:
        the field, 1–4).
    marker_nsync : ndarray of int64, shape (k,)
        Sync numbers of marker records.
    marker_bits : ndarray of uint8, shape (k,)
        Marker bit masks.
    nsync_offset : int
        Overflow-corrected sync count after the block: pass it as ``nsync_offset`` for
        the next block of the same stream.
    end_nsync : int
        Sync number of the last record of the block.
    n_unknown : int
        Special records of no known kind (skipped).
    """

    nsync: np.ndarray
    dtime: np.ndarray
    channel: np.ndarray
    marker_nsync: np.ndarray
    marker_bits: np.ndarray
    nsync_offset: int
    end_nsync: int
    n_unknown: int = 0


def decode_t3_records(records_uint32: np.ndarray, record_type: int, *,
                      nsync_offset: int = 0) -> T3Decoded:
    """Decode PicoQuant T3 records into (sync number, delay, channel).

    Parameters
    ----------
    records_uint32 : ndarray of uint32, shape (n,)
        Raw T3 records, in acquisition order.
    record_type : int
        ``TTResultFormat_TTTRRecType``: one of :data:`T3_RECORD_TYPES`.
    nsync_offset : int
        Overflow-corrected sync count at the start of the block (0 for the first).

    Returns
    -------
    T3Decoded
        The photon at sync ``nsync`` and delay ``dtime`` arrived at
        ``nsync × sync period + dtime × resolution`` (``MeasDesc_GlobalResolution`` is
        the sync period, ``MeasDesc_Resolution`` the delay unit).

    Raises
    ------
    AnalysisInputError
        A T2 or unknown record type, or records that are not a 1-D integer array.

    Notes
    -----
    Record layouts (PicoQuant spec):

    * PicoHarp T3: bits 28–31 channel, 16–27 dtime, 0–15 nsync. Photons have channel
      1–4 (the router inputs; micropl channel = field, unlike T2's field + 1). Channel
      15 is special: dtime 0 is an overflow of 65 536 syncs, otherwise the low 4 dtime
      bits are markers. Other channel values are skipped as unknown.
    * HydraHarp/TimeHarp 260/Generic T3: bit 31 special, 25–30 channel, 10–24 dtime,
      0–9 nsync. Special with channel 63 is an overflow: HydraHarp v1 adds 1024 syncs
      per record, the others ``nsync × 1024`` (a field of 0 counts as one). Special
      with channel 1–15 is a marker.
    """
    rec = np.asarray(records_uint32)
    if rec.ndim != 1 or (rec.size and rec.dtype.kind not in "iu"):
        raise AnalysisInputError("T3 records must be a 1-D array of uint32 words")
    rec = rec.astype(np.uint32, copy=False)
    rtype = int(record_type)
    if rtype in T2_RECORD_TYPES:
        raise AnalysisInputError(f"record type 0x{rtype:08x} is T2, not T3")
    if rtype not in T3_RECORD_TYPES:
        raise AnalysisInputError(f"unknown T3 record type 0x{rtype:08x}")
    if rtype == 0x00010303:  # PicoHarp 300 T3
        chan = (rec >> np.uint32(28)).astype(np.int64)
        dtime = ((rec >> np.uint32(16)) & np.uint32(0x0FFF)).astype(np.int64)
        nsync = (rec & np.uint32(0xFFFF)).astype(np.int64)
        # photons on router channels 1–4 (micropl channel = field), 15 special
        special = (chan == 0) | (chan > 4)
        is_ovf = (chan == 15) & (dtime == 0)
        is_marker = (chan == 15) & (dtime != 0)
        increment = np.where(is_ovf, _PH_T3_WRAP, 0)
        marker_bits = dtime & 0xF
        is_unknown = special & (chan != 15)
        out_chan = chan
    else:
        spec = (rec >> np.uint32(31)).astype(bool)
        chan = ((rec >> np.uint32(25)) & np.uint32(0x3F)).astype(np.int64)
        dtime = ((rec >> np.uint32(10)) & np.uint32(0x7FFF)).astype(np.int64)
        nsync = (rec & np.uint32(0x3FF)).astype(np.int64)
        is_ovf = spec & (chan == 63)
        is_marker = spec & (chan >= 1) & (chan <= 15)
        is_unknown = spec & ~(is_ovf | is_marker)
        special = spec
        if rtype == 0x00010304:  # HydraHarp v1
            increment = np.where(is_ovf, _HH_T3_WRAP, 0)
        else:
            increment = np.where(is_ovf, np.maximum(nsync, 1) * _HH_T3_WRAP, 0)
        marker_bits = chan
        out_chan = chan + 1
    nsync = np.where(is_ovf, 0, nsync)
    base = int(nsync_offset) + np.cumsum(increment, dtype=np.int64)
    abs_sync = base + nsync
    is_photon = ~special
    return T3Decoded(
        nsync=abs_sync[is_photon], dtime=dtime[is_photon],
        channel=out_chan[is_photon].astype(np.uint8),
        marker_nsync=abs_sync[is_marker], marker_bits=marker_bits[is_marker].astype(np.uint8),
        nsync_offset=int(base[-1]) if rec.size else int(nsync_offset),
        end_nsync=int(abs_sync[-1]) if rec.size else int(nsync_offset),
        n_unknown=int(np.count_nonzero(is_unknown)))


class T3StreamDecoder:
    """Decode a stream of T3 records block by block, carrying the sync count.

    Decoding the blocks one after the other gives what :func:`decode_t3_records`
    gives for the whole stream at once.

    Parameters
    ----------
    record_type : int
        One of :data:`T3_RECORD_TYPES`.

    Raises
    ------
    AnalysisInputError
        A T2 or unknown record type.
    """

    def __init__(self, record_type: int) -> None:
        rtype = int(record_type)
        if rtype not in T3_RECORD_TYPES:
            kind = "T2, not T3" if rtype in T2_RECORD_TYPES else "unknown"
            raise AnalysisInputError(f"record type 0x{rtype:08x} is {kind}")
        self.record_type = rtype
        self.nsync_offset = 0

    def decode(self, records_uint32: np.ndarray) -> T3Decoded:
        """Decode the next block of records, continuing the sync count."""
        out = decode_t3_records(records_uint32, self.record_type,
                                nsync_offset=self.nsync_offset)
        self.nsync_offset = out.nsync_offset
        return out
