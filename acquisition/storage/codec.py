"""Record ↔ row encoding of the session tables: envelopes, scalars, labels, JSON fields.

:func:`_encode` turns a record into a row dict and the flat values of its
variable-size columns (checked against its :class:`~.schema.Column` kinds);
:func:`_decode_json` and :func:`_python` turn stored values back into Python ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from micropl.acquisition.storage.schema import KIND_BYTES, SAME_LENGTH, Column, TableSpec, table_for
from micropl.records import NO_ID, Tagged


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_json(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, default=_json_default, allow_nan=True).encode("utf-8")


def _decode_json(col: Column, raw: bytes) -> Any:
    value = json.loads(raw.decode("utf-8"))
    if col.decode == "tuple":
        return tuple(value)
    if col.decode == "str_array":
        return np.array(value, dtype=str)
    return value


def _scalar(table: str, col: Column, value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if col.dtype == "|b1":
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{table}.{col.name}: expected a bool, got {value!r}")
        return bool(value)
    if col.dtype == "<i8":
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise TypeError(f"{table}.{col.name}: expected an int, got {value!r}")
        return int(value)
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise TypeError(f"{table}.{col.name}: expected a number, got {value!r}")
    if isinstance(value, complex | np.complexfloating):
        raise TypeError(f"{table}.{col.name}: complex values are not stored")
    return float(value)


@dataclass
class _Encoded:
    """One record turned into a row dict and the flat values of its variable columns."""

    spec: TableSpec
    seq: int
    row: dict[str, Any]
    flats: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]


def _encode(spec: TableSpec, record: Any, seq: int, run_id: int, qd_id: int,
            kind: str) -> _Encoded:
    kind_bytes = (kind or spec.default_kind).encode("utf-8")
    if len(kind_bytes) > KIND_BYTES:
        raise ValueError(f"kind {kind!r} is longer than {KIND_BYTES} bytes")
    row: dict[str, Any] = {"seq": seq, "run_id": run_id, "qd_id": qd_id, "kind": kind_bytes}
    flats: dict[str, np.ndarray] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for col in spec.columns:
        value = getattr(record, col.name)
        if col.kind == "scalar":
            row[col.name] = _scalar(spec.name, col, value)
        elif col.kind == "label":
            if not isinstance(value, str):
                raise TypeError(f"{spec.name}.{col.name}: expected a str, got {value!r}")
            raw = value.encode("utf-8")
            if len(raw) > np.dtype(col.dtype).itemsize:
                raise ValueError(f"{spec.name}.{col.name}: {value!r} is longer than "
                                 f"{np.dtype(col.dtype).itemsize} bytes")
            row[col.name] = raw
        elif col.kind == "text":
            if not isinstance(value, str):
                raise TypeError(f"{spec.name}.{col.name}: expected a str, got {value!r}")
            flats[col.name] = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
        elif col.kind == "json":
            flats[col.name] = np.frombuffer(_encode_json(value), dtype=np.uint8)
        else:  # array
            arr = np.asarray(value)
            if arr.ndim > col.max_ndim:
                raise ValueError(f"{spec.name}.{col.name}: {arr.ndim}-d array, at most "
                                 f"{col.max_ndim}-d is stored")
            target = np.dtype(col.dtype)
            if arr.dtype != target and not np.can_cast(arr.dtype, target, casting="safe"):
                raise TypeError(f"{spec.name}.{col.name}: cannot store {arr.dtype} as "
                                f"{target} without loss")
            flats[col.name] = np.ascontiguousarray(arr, dtype=target).reshape(-1)
            shapes[col.name] = arr.shape
    group = [c for c in SAME_LENGTH.get(spec.name, ()) if c in flats]
    if len({flats[c].size for c in group}) > 1:
        raise ValueError(f"{spec.name}: {', '.join(group)} must have equally many values, "
                         f"got {[flats[c].size for c in group]}")
    return _Encoded(spec, seq, row, flats, shapes)


def _unwrap(item: Any) -> tuple[Any, TableSpec, int, int, str]:
    """(record, spec, run_id, qd_id, kind) of a bare or :class:`Tagged` record."""
    if isinstance(item, Tagged):
        record, run_id, qd_id, kind = item.record, item.run_id, item.qd_id, item.kind
        spec = table_for(type(record))
        if spec.own_ids:
            raise TypeError(f"{type(record).__name__} carries its own ids; "
                            f"append it without a Tagged envelope")
        return record, spec, int(run_id), int(qd_id), kind
    spec = table_for(type(item))
    run_id = int(item.run_id) if "run_id" in spec.own_ids else NO_ID
    qd_id = int(item.qd_id) if "qd_id" in spec.own_ids else NO_ID
    return item, spec, run_id, qd_id, ""


def _python(col: Column, value: Any) -> Any:
    if col.kind == "label":
        return bytes(value).decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value
