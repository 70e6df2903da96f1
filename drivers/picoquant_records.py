"""Decoding of PicoQuant T2 time-tag records (PicoHarp, HydraHarp, MultiHarp).

PicoQuant TCSPC units stream 32-bit records from their FIFO, and PTU files store
the same records. This module turns them into int64 picosecond time tags with a
uint8 channel number, in pure numpy.

Channel convention
------------------
* ``0`` is the sync input (HydraHarp/MultiHarp "SYNC", PicoHarp "Channel 0").
* ``1..N`` are the detector inputs as the front panel labels them (the raw
  HydraHarp/MultiHarp records count inputs from 0, so raw channel ``c`` becomes
  ``c + 1``; PicoHarp raw channels 1–4 are Channel 1 and its router lines).
* Marker (external TTL) events are returned separately.

Overflow (time wrap-around) state
---------------------------------
The time field of a record is short (25 or 28 bits) and wraps; the device
inserts overflow records that advance a running offset. That offset must be
carried from one FIFO read to the next, so :func:`decode_t2_records` takes the
offset at the start of the block and returns it at the end, and
:class:`T2Decoder` keeps it for you.

Record layouts (bit 31 first)
-----------------------------
* PicoHarp T2 (``0x00010203``): 4-bit channel | 28-bit time. Channel 15 is
  special: low 4 time bits are marker bits, or 0 for an overflow of
  210 698 240 time units.
* HydraHarp V1 T2 (``0x00010204``): 1-bit special | 6-bit channel | 25-bit
  time. Special channel 63 is an overflow of 33 552 000 units; special channel
  0 is a sync event; special channels 1–15 are markers.
* HydraHarp V2 T2 (``0x01010204``), TimeHarp 260 N/P T2 (``0x00010205``,
  ``0x00010206``) and Generic T2 (``0x00010207``: MultiHarp, PicoHarp 330): as
  V1, but an overflow record carries the number of wraps of 33 554 432 units in
  its time field (0 meaning 1 on old firmware).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "RECORD_TYPES",
    "SYNC_CHANNEL",
    "T2Records",
    "T2Decoder",
    "decode_t2_records",
    "record_type_code",
]

#: Record type names and their PTU ``TTResultFormat_TTTRRecType`` codes.
RECORD_TYPES: dict[str, int] = {
    "picoharp_t2": 0x00010203,
    "hydraharp_v1_t2": 0x00010204,
    "hydraharp_v2_t2": 0x01010204,
    "timeharp260n_t2": 0x00010205,
    "timeharp260p_t2": 0x00010206,
    "generic_t2": 0x00010207,
}

#: Channel number given to sync-input events.
SYNC_CHANNEL = 0

_PH_WRAP = 210_698_240
_HH_V1_WRAP = 33_552_000
_HH_V2_WRAP = 33_554_432
_HH_FORMATS_V2 = {0x01010204, 0x00010205, 0x00010206, 0x00010207}


def record_type_code(record_type: int | str) -> int:
    """Return the numeric PTU record-type code for a name or a code.

    Parameters
    ----------
    record_type : int or str
        A key of :data:`RECORD_TYPES` or one of its values.

    Raises
    ------
    ValueError
        For a T3 or unknown record type.
    """
    if isinstance(record_type, str):
        try:
            return RECORD_TYPES[record_type]
        except KeyError:
            raise ValueError(
                f"unknown T2 record type {record_type!r}; known: {sorted(RECORD_TYPES)}"
            ) from None
    code = int(record_type)
    if code not in RECORD_TYPES.values():
        raise ValueError(f"record type 0x{code:08x} is not a supported T2 record type")
    return code


@dataclass(frozen=True)
class T2Records:
    """Decoded block of T2 records.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Arrival time of each photon or sync event in ps, in record order
        (non-decreasing within a block of one device).
    channel : ndarray of uint8, shape (n,)
        Channel of each event: 0 = sync, 1..N = inputs as labelled.
    marker_t_ps : ndarray of int64, shape (m,)
        Time of each marker record in ps.
    marker_bits : ndarray of uint8, shape (m,)
        Marker bit pattern (1..15) of each marker record.
    overflow_units : int
        Running wrap-around offset after the block, in device time units; pass
        it as ``overflow_units`` when decoding the next block.
    n_overflow_records : int
        Number of overflow records in the block.
    """

    t_ps: np.ndarray
    channel: np.ndarray
    marker_t_ps: np.ndarray
    marker_bits: np.ndarray
    overflow_units: int
    n_overflow_records: int


def _units_to_ps(units: np.ndarray, resolution_s: float) -> np.ndarray:
    """Convert device time units (int64) to int64 ps."""
    resolution_ps = resolution_s * 1e12
    rounded = round(resolution_ps)
    if rounded >= 1 and abs(resolution_ps - rounded) < 1e-6:
        return units * np.int64(rounded)
    return np.rint(units.astype(np.float64) * resolution_ps).astype(np.int64)


def decode_t2_records(
    records: np.ndarray,
    record_type: int | str,
    resolution_s: float,
    overflow_units: int = 0,
) -> T2Records:
    """Decode T2 records into int64 ps time tags and uint8 channels.

    Parameters
    ----------
    records : array_like of uint32, shape (n,)
        Raw records as read from the FIFO or from a PTU file.
    record_type : int or str
        PTU record-type code or name (see :data:`RECORD_TYPES`).
    resolution_s : float
        Duration of one time unit in s (1e-12 for HydraHarp T2, 4e-12 for
        PicoHarp T2, the base resolution for MultiHarp).
    overflow_units : int, optional
        Wrap-around offset at the start of the block, in time units (the
        ``overflow_units`` of the previous block; 0 for the first).

    Returns
    -------
    T2Records
        Events, markers and the offset to carry into the next block.
    """
    code = record_type_code(record_type)
    if not resolution_s > 0:
        raise ValueError(f"resolution_s must be > 0, got {resolution_s}")
    rec = np.ascontiguousarray(records, dtype=np.uint32)
    offset = np.int64(overflow_units)
    if code == RECORD_TYPES["picoharp_t2"]:
        raw_channel = (rec >> np.uint32(28)).astype(np.uint8)
        time_field = (rec & np.uint32(0x0FFFFFFF)).astype(np.int64)
        special = raw_channel == 15
        low_bits = (time_field & 0xF).astype(np.uint8)
        is_overflow = special & (low_bits == 0)
        is_marker = special & (low_bits != 0)
        wraps = is_overflow.astype(np.int64) * _PH_WRAP
        is_event = ~special
        event_channel = raw_channel
        # The marker bits occupy the low 4 time bits; PicoQuant's demos drop them.
        marker_time = time_field - low_bits.astype(np.int64)
        marker_bits = low_bits
    else:
        special = (rec >> np.uint32(31)).astype(bool)
        raw_channel = ((rec >> np.uint32(25)) & np.uint32(0x3F)).astype(np.uint8)
        time_field = (rec & np.uint32(0x01FFFFFF)).astype(np.int64)
        is_overflow = special & (raw_channel == 0x3F)
        if code in _HH_FORMATS_V2:
            n_wraps = np.where(time_field == 0, 1, time_field)
            wraps = np.where(is_overflow, n_wraps * _HH_V2_WRAP, 0)
        else:
            wraps = is_overflow.astype(np.int64) * _HH_V1_WRAP
        is_sync = special & (raw_channel == 0)
        is_marker = special & (raw_channel >= 1) & (raw_channel <= 15)
        is_event = ~special | is_sync
        event_channel = np.where(is_sync, SYNC_CHANNEL, raw_channel + 1).astype(np.uint8)
        marker_time = time_field
        marker_bits = raw_channel
    running = offset + np.cumsum(wraps, dtype=np.int64)
    event_units = running[is_event] + time_field[is_event]
    marker_units = running[is_marker] + marker_time[is_marker]
    end_offset = int(running[-1]) if running.size else int(offset)
    return T2Records(
        t_ps=_units_to_ps(event_units, resolution_s),
        channel=event_channel[is_event].astype(np.uint8),
        marker_t_ps=_units_to_ps(marker_units, resolution_s),
        marker_bits=marker_bits[is_marker].astype(np.uint8),
        overflow_units=end_offset,
        n_overflow_records=int(np.count_nonzero(is_overflow)),
    )


class T2Decoder:
    """Stateful T2 decoder that carries the wrap-around offset across blocks.

    Parameters
    ----------
    record_type : int or str
        PTU record-type code or name (see :data:`RECORD_TYPES`).
    resolution_s : float
        Duration of one time unit in s.

    Examples
    --------
    >>> dec = T2Decoder("hydraharp_v2_t2", 1e-12)
    >>> out = dec.decode(np.array([0x80000000 | (63 << 25) | 1, 5], dtype=np.uint32))
    >>> int(out.t_ps[0]), int(out.channel[0])
    (33554437, 1)
    """

    def __init__(self, record_type: int | str, resolution_s: float) -> None:
        self.record_type = record_type_code(record_type)
        self.resolution_s = float(resolution_s)
        self.overflow_units = 0

    def reset(self) -> None:
        """Start again at time zero (a new measurement)."""
        self.overflow_units = 0

    @property
    def time_ps(self) -> int:
        """Time reached by the overflow records so far, in ps."""
        return int(_units_to_ps(np.array([self.overflow_units], np.int64), self.resolution_s)[0])

    def decode(self, records: np.ndarray) -> T2Records:
        """Decode the next block of records, continuing the time base."""
        out = decode_t2_records(records, self.record_type, self.resolution_s, self.overflow_units)
        self.overflow_units = out.overflow_units
        return out
