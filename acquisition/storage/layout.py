"""The structure of a new session file: its header and its empty tables."""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from micropl.acquisition.storage.codec import _json_default
from micropl.acquisition.storage.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    TableSpec,
    unit_from_name,
)

_ROW_CHUNK_BYTES = 1 << 16


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
                                      dtype=np.dtype(col.dtype), chunks=(col.chunk_elems,))
        values.attrs["unit"] = col.unit
        values.attrs["kind"] = col.kind
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
