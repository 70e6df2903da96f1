"""An independent PTU T2 writer for tests (HydraHarp V2 T2 records).

Written from PicoQuant's "unified tag" file description, separately from
``micropl.analysis.ptu_write``, so that micropl's reader is not only tested
against micropl's own writer. ``tests/analysis/test_tags_ptu.py`` builds its headers
with :func:`tag` too.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

TY_EMPTY8 = 0xFFFF0008
TY_BOOL8 = 0x00000008
TY_INT8 = 0x10000008
TY_FLOAT8 = 0x20000008
TY_ANSI = 0x4001FFFF
HH2T2 = 0x01010204
WRAP = 1 << 25


def tag(ident: str, value: object, typ: int | None = None, index: int = -1) -> bytes:
    """One tagged-header entry: 32-byte name, index, type code, 8-byte value (or text)."""
    head = ident.encode("ascii").ljust(32, b"\0") + struct.pack("<i", index)
    if typ is None:
        typ = (TY_BOOL8 if isinstance(value, bool) else TY_INT8 if isinstance(value, int)
               else TY_FLOAT8 if isinstance(value, float) else TY_ANSI)
    head += struct.pack("<I", typ)
    if typ == TY_ANSI:
        raw = str(value).encode("ascii") + b"\0"
        raw += b"\0" * (-len(raw) % 8)
        return head + struct.pack("<q", len(raw)) + raw
    if typ == TY_FLOAT8:
        return head + struct.pack("<d", value)
    if typ == TY_EMPTY8:
        return head + bytes(8)
    return head + struct.pack("<q", int(value))


def encode_photons(t_ps: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """HydraHarp V2 T2 records (1 ps units) of photons on inputs 1.., with overflows."""
    out: list[int] = []
    wraps = 0
    for t, c in zip(np.asarray(t_ps, np.int64).tolist(), np.asarray(channel).tolist()):
        need = t // WRAP - wraps
        while need > 0:
            n = min(need, 127)  # ptufile decodes only 7 bits of the count
            out.append((1 << 31) | (63 << 25) | n)
            wraps += n
            need -= n
        out.append(((int(c) - 1) << 25) | (t - wraps * WRAP))
    return np.asarray(out, dtype="<u4")


def write_t2(path: str | Path, t_ps: np.ndarray, channel: np.ndarray, *,
             sync_rate_hz: int = 10_000_000, acquisition_ms: int = 1000) -> Path:
    """Write photons (times in ps, sorted; inputs 1..) to a PTU T2 file."""
    records = encode_photons(t_ps, channel)
    head = b"PQTTTR\0\0" + b"1.0.00\0\0"
    head += tag("File_Comment", "micropl test writer")
    head += tag("Measurement_Mode", 2)
    head += tag("Measurement_SubMode", 0)
    head += tag("TTResult_SyncRate", int(sync_rate_hz))
    head += tag("MeasDesc_GlobalResolution", 1e-12)
    head += tag("MeasDesc_Resolution", 1e-12)
    head += tag("MeasDesc_AcquisitionTime", int(acquisition_ms))
    head += tag("TTResultFormat_TTTRRecType", HH2T2)
    head += tag("TTResultFormat_BitsPerRecord", 32)
    head += tag("TTResult_NumberOfRecords", int(records.size))
    head += tag("Header_End", None, TY_EMPTY8)
    path = Path(path)
    path.write_bytes(head + records.tobytes())
    return path


def header(*, sync_rate: object = 10_000_000, resolution_s: object = 1e-12,
           n_records: int | None = 0, record_type: int = HH2T2,
           acquisition_ms: object = 1000, extra: bytes = b"") -> bytes:
    """A PTU header with any (also absurd) values: floats, NaN, negative counts.

    ``n_records=None`` leaves ``TTResult_NumberOfRecords`` out.
    """
    head = b"PQTTTR\0\0" + b"1.0.00\0\0"
    head += tag("File_Comment", "micropl adversarial test file")
    head += tag("Measurement_Mode", 2)
    head += tag("Measurement_SubMode", 0)
    head += tag("TTResult_SyncRate", sync_rate)
    head += tag("MeasDesc_GlobalResolution", resolution_s)
    head += tag("MeasDesc_Resolution", resolution_s)
    head += tag("MeasDesc_AcquisitionTime", acquisition_ms)
    head += tag("TTResultFormat_TTTRRecType", record_type)
    head += tag("TTResultFormat_BitsPerRecord", 32)
    if n_records is not None:
        head += tag("TTResult_NumberOfRecords", int(n_records))
    head += extra
    head += tag("Header_End", None, TY_EMPTY8)
    return head


def write_records(path: str | Path, records: np.ndarray, *, n_records: int | None = -1,
                  **header_kw: object) -> Path:
    """Write raw 32-bit records after :func:`header` (``n_records=-1``: the true count)."""
    records = np.asarray(records, dtype="<u4")
    count = records.size if n_records == -1 else n_records
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(header(n_records=count, **header_kw))
        records.tofile(fh)
    return path


def hbt_block(rng: np.random.Generator, n_photons: int = 4000, period_units: int = 12_500,
              jitter_units: int = 300, wraps: int = 8) -> np.ndarray:
    """One position-independent block of HydraHarp V2 records: photons on inputs 1 and 2
    at pulse times (``period_units`` apart, jittered) within ``wraps`` overflow periods,
    each period closed by a one-wrap overflow record.

    Tiling the block gives an arbitrarily long, valid, time-ordered stream.
    """
    span = wraps * WRAP
    n_pulses = span // period_units
    pulses = np.sort(rng.integers(0, n_pulses, n_photons)) * period_units
    t = np.clip(pulses + rng.integers(0, jitter_units, n_photons), 0, span - 1)
    t.sort()
    ch = rng.integers(0, 2, n_photons)
    out = []
    for w in range(wraps):
        sel = (t >= w * WRAP) & (t < (w + 1) * WRAP)
        out.append((ch[sel].astype(np.uint32) << 25) | (t[sel] - w * WRAP).astype(np.uint32))
        out.append(np.array([(1 << 31) | (63 << 25) | 1], dtype=np.uint32))
    return np.concatenate(out).astype("<u4")
