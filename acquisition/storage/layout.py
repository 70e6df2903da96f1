"""The structure of a new session file: its header, its empty tables, compressed columns.

Compressed array columns (:attr:`~micropl.acquisition.storage.schema.Column.codec`)
use the Blosc2 filter with Zstd (byte shuffle for multi-byte dtypes, bit shuffle
for single bytes) from
``hdf5plugin``: any h5py reader opens them after ``import hdf5plugin``. Each
record's values start on a chunk boundary, so every chunk is written once, when
its record is appended, and never rewritten: a killed writer cannot damage a
record that was complete, and a SWMR reader never sees a chunk change. A
``delta-zstd`` column stores each record as its first value and then the
differences between successive values (int64 arithmetic, modulo 2**64, so any
int64 sequence comes back bit-identical with ``np.cumsum``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from micropl.acquisition.storage.codec import _json_default
from micropl.acquisition.storage.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Column,
    TableSpec,
    unit_from_name,
)

_ROW_CHUNK_BYTES = 1 << 16
#: Blosc2 compression level of compressed columns (3, i.e. Zstd level 5: on the demo's
#: tags within 1 % of the smallest size, and several times faster to write than 5).
_CLEVEL = 3
_CODEC_DESCRIPTION = {
    "zstd": "Blosc2/Zstd-compressed (hdf5plugin); each row's values start on a chunk "
            "boundary",
    "delta-zstd": "each row's values are stored as its first value, then the differences "
                  "of successive values (int64, modulo 2**64): a row's values are "
                  "numpy.cumsum(stored[offset:offset + size]); Blosc2/Zstd-compressed "
                  "(hdf5plugin); each row's values start on a chunk boundary",
}


def compression(col: Column) -> dict[str, Any]:
    """h5py ``create_dataset`` keywords of the values dataset of ``col`` ({} when plain)."""
    if not col.codec:
        return {}
    # byte shuffle for multi-byte values; bit shuffle for bytes (channels: 0.25 B/tag,
    # decompressed about 5x faster than the 0.17 B/tag of unshuffled bytes)
    shuffle = hdf5plugin.Blosc2.SHUFFLE if np.dtype(col.dtype).itemsize > 1 \
        else hdf5plugin.Blosc2.BITSHUFFLE
    return dict(hdf5plugin.Blosc2(cname="zstd", clevel=_CLEVEL, filters=shuffle))


def delta_encode(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """First value, then successive differences (int64, modulo 2**64; empty stays empty)."""
    out = np.empty_like(values) if out is None else out
    if values.size:
        out[0] = values[0]
        np.subtract(values[1:], values[:-1], out=out[1:])
    return out


def delta_decode(stored: np.ndarray) -> np.ndarray:
    """Inverse of :func:`delta_encode` (in place when ``stored`` is writeable int64)."""
    return np.cumsum(stored, dtype=np.int64, out=stored if stored.flags.writeable else None)


def pack_values(col: Column, flats: Sequence[np.ndarray], length: int,
                chunk: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Lay out the values of a batch of records after the ``length`` stored ones.

    Parameters
    ----------
    col : Column
        The column (its ``codec`` decides the layout).
    flats : sequence of ndarray
        Each record's flat values, in the column dtype.
    length : int
        Current length of the values dataset, elements.
    chunk : int
        Chunk length of the values dataset, elements.

    Returns
    -------
    start : int
        Index where ``data`` is written.
    offsets : ndarray of int64
        Each record's offset into the values dataset.
    data : ndarray
        What to write at ``start``: the records back to back (plain columns), or
        each on a chunk boundary with zeros between them, delta-encoded for
        ``delta-zstd`` (compressed columns).
    """
    sizes = np.fromiter((a.size for a in flats), dtype=np.int64, count=len(flats))
    if not col.codec:
        offsets = length + np.concatenate(([0], np.cumsum(sizes)[:-1]))
        data = flats[0] if len(flats) == 1 else np.concatenate(flats)
        return length, offsets.astype(np.int64), data
    start = -(-length // chunk) * chunk
    spans = -(-sizes // chunk) * chunk
    offsets = start + np.concatenate(([0], np.cumsum(spans)[:-1])).astype(np.int64)
    total = int(offsets[-1] - start + sizes[-1]) if len(flats) else 0
    data = np.zeros(total, dtype=np.dtype(col.dtype))
    for offset, flat in zip(offsets, flats):
        lo = int(offset) - start
        part = data[lo: lo + flat.size]
        if col.codec == "delta-zstd":
            delta_encode(flat, out=part)
        else:
            part[...] = flat
    offsets[sizes == 0] = length  # nothing stored: any offset within the dataset
    return start, offsets, data


def _create_table(tables: h5py.Group, spec: TableSpec) -> h5py.Group:
    group = tables.create_group(spec.name)
    group.attrs["schema"] = spec.to_json()
    group.attrs["record_type"] = spec.type_name
    group.attrs["default_kind"] = spec.default_kind
    row_dtype = spec.row_dtype()
    row_chunk = max(16, _ROW_CHUNK_BYTES // row_dtype.itemsize)
    rows = group.create_dataset("rows", shape=(0,), maxshape=(None,), dtype=row_dtype,
                                chunks=(row_chunk,))
    units = {c.name: c.unit for c in spec.columns if c.unit}
    rows.attrs["units"] = json.dumps(units)
    rows.attrs["description"] = (
        "one row per record; variable-size columns are <col>_offset/<col>_size(/_shape) "
        "into the dataset <col> of this group")
    for col in spec.columns:
        if not col.variable:
            continue
        values = group.create_dataset(col.name, shape=(0,), maxshape=(None,),
                                      dtype=np.dtype(col.dtype), chunks=(col.chunk_elems,),
                                      **compression(col))
        values.attrs["unit"] = col.unit
        values.attrs["kind"] = col.kind
        if col.codec:
            values.attrs["codec"] = col.codec
            values.attrs["description"] = _CODEC_DESCRIPTION[col.codec]
        if col.kind in ("text", "json"):
            values.attrs["encoding"] = "utf-8"
    return group


def _write_header(f: h5py.File, *, config_text: str, instruments: Mapping[str, Any] | str,
                  truth: Mapping[str, Any] | None, created_unix_s: float,
                  software_version: str, resume_count: int = 0) -> None:
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["software_version"] = software_version
    f.attrs["created_unix_s"] = float(created_unix_s)
    f.attrs["created"] = _dt.datetime.fromtimestamp(created_unix_s, _dt.UTC).isoformat()
    f.attrs["simulated"] = truth is not None
    f.attrs["resume_count"] = int(resume_count)
    f.create_dataset("config_text", data=config_text, dtype=h5py.string_dtype())
    if not isinstance(instruments, str):
        instruments = json.dumps(dict(instruments), default=_json_default, allow_nan=True)
    f.create_dataset("instruments_json", data=instruments, dtype=h5py.string_dtype())
    if truth is not None:
        group = f.create_group("truth")
        lengths = set()
        for name, values in truth.items():
            arr = np.asarray(values)
            if arr.ndim != 1:
                raise ValueError(f"truth[{name!r}] must be 1-D, got shape {arr.shape}")
            if arr.dtype.kind in "OU":
                arr = arr.astype(h5py.string_dtype()) if arr.dtype.kind == "O" else \
                    np.char.encode(arr, "utf-8")
            lengths.add(arr.shape[0])
            ds = group.create_dataset(name, data=arr)
            ds.attrs["unit"] = unit_from_name(name)
        if len(lengths) > 1:
            raise ValueError(f"truth arrays must have equal lengths, got {sorted(lengths)}")
