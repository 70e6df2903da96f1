"""Crash-safe HDF5 session files: :class:`SessionWriter` and :class:`SessionReader`.

One session = one HDF5 file, written in SWMR mode (single writer, multiple
readers) so that

* a ``kill -9`` of the writer at any moment leaves a file that opens, with
  every record whose ``append`` had returned intact; and
* other processes can read the file while it is written (``micropl info``,
  h5py with ``swmr=True``).

SWMR allows no new groups or datasets once it has started, so every table is
created with the file (see :mod:`micropl.acquisition.storage.schema` for the
layout). An append writes the values datasets, flushes them, then writes the
``rows`` entries and flushes those: a row is visible only once everything it
points to is on disk, and a reader takes the length of ``rows`` as the number
of complete records. Status changes are new rows (the latest ``seq`` wins),
never edits.

File layout::

    /                      attrs: format, format_version, software_version,
                                  created (ISO 8601), created_unix_s, simulated,
                                  resume_count
    /config_text           the setup YAML (str)
    /instruments_json      instrument settings snapshot (JSON str)
    /truth/<name>          simulated sessions: the virtual sample, equal-length arrays
    /tables/<table>/rows   one compound row per record (envelope + scalars + offsets)
    /tables/<table>/<col>  flat values of each variable-size column

A file left by a killed writer keeps SWMR-write flags that stop HDF5 from
opening it for writing (h5py has no ``h5clear``). :meth:`SessionWriter.resume`
copies every complete row into a new file beside it and atomically replaces
the original with it.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import io
import json
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from micropl import __version__
from micropl.acquisition.records import NO_ID, RunStop, Tagged
from micropl.acquisition.storage.schema import (
    FORMAT_NAME,
    FORMAT_VERSION,
    KIND_BYTES,
    SAME_LENGTH,
    Column,
    SchemaError,
    TableSpec,
    registered_tables,
    table_for,
    unit_from_name,
)
from micropl.analysis.errors import AnalysisInputError, FileFormatError

log = logging.getLogger(__name__)

__all__ = [
    "SessionBusyError",
    "SessionLock",
    "OutputPathError",
    "OutputExistsError",
    "prepare_output",
    "place_new",
    "write_new_file",
    "SessionWriter",
    "SessionReader",
    "StoredRecord",
    "RunInfo",
    "QDInfo",
    "QDData",
]

_ROW_CHUNK_BYTES = 1 << 16
# No chunk cache in the writer: an append to an uncompressed chunk then goes straight to
# its place in the file instead of rewriting the whole cached chunk at every flush
# (measured 1.5-3x faster for per-record flushes; benchmarks/bench_storage.py).
_WRITER_RDCC_BYTES = 0
_COPY_BLOCK_BYTES = 64 << 20
_READ_SPAN_BYTES = 256 << 20
_INTERRUPTED_REASON = ("interrupted: the session writer stopped without closing this run "
                       "(crash or kill); closed on resume")


class SessionBusyError(AnalysisInputError):
    """The session file is open for writing by another live process."""


class OutputPathError(AnalysisInputError):
    """An output file cannot be created where asked (the message is one line naming it)."""


class OutputExistsError(OutputPathError, FileExistsError):
    """The output file exists already: micropl never overwrites a file."""


# =========================================================================== new files
# Every file micropl writes is built under a temporary name in the target folder and
# then placed with os.link(tmp, path), which fails with EEXIST when ``path`` exists: of
# two writers racing for one name exactly one wins, and nobody ever sees a half-written
# file under the final name.
_NAME_MAX_BYTES = 255
_TMP_NAME_BYTES = 200  # room for a writer that adds its own temporary suffix (PTU)
_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a parent is not a folder",
    errno.ENOENT: "the folder does not exist",
    errno.EISDIR: "is a folder",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.ELOOP: "too many symbolic links",
}
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


def _output_error(path: Path, exc: OSError | str, hint: str) -> OutputPathError:
    if isinstance(exc, str):
        reason = exc
    else:
        reason = _REASONS.get(exc.errno or -1) or " ".join(str(exc.strerror or exc).split())
    return OutputPathError(f"{path}: cannot be written ({reason}); {hint}")


def _exists_error(path: Path, hint: str) -> OutputExistsError:
    return OutputExistsError(f"{path}: already exists; {hint}")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return _NAME_MAX_BYTES


def prepare_output(path: str | os.PathLike[str], *, hint: str = "choose another file name",
                   make_parents: bool = True) -> Path:
    """Check, before any work, that the new file ``path`` can be created.

    Missing parent folders are created (``make_parents``). This is an early,
    friendly check only; the creation itself (:func:`place_new`) is exclusive.

    Raises
    ------
    OutputExistsError
        When ``path`` exists (also a dangling symbolic link).
    OutputPathError
        When the folder cannot hold it: a parent is a file, no permission,
        read-only file system, name too long (one line, naming ``path``).
    """
    path = Path(path)
    if os.path.lexists(path):
        raise _exists_error(path, hint)
    parent = path.parent
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise _output_error(path, f"{parent} is not a folder", hint)
    if not os.path.exists(parent):
        if not make_parents:
            raise _output_error(path, f"folder {parent} does not exist", hint)
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _output_error(path, exc, hint) from None
    if len(os.fsencode(path.name)) > _name_max(parent):
        raise _output_error(path, "file name too long", hint)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _output_error(path, f"folder {parent} is not writable", hint)
    return path


def _tmp_path(path: Path, suffix: str) -> Path:
    """A unique temporary name beside ``path`` (within the name-length limit)."""
    tail = f".{os.getpid()}.{secrets.token_hex(4)}.{suffix}"
    room = _TMP_NAME_BYTES - len(tail) - 1
    stem = os.fsencode(path.name)[:max(1, room)].decode("utf-8", "ignore") or "out"
    return path.with_name(f".{stem}{tail}")


def place_new(tmp: str | os.PathLike[str], path: str | os.PathLike[str], *,
              hint: str = "choose another file name") -> Path:
    """Give the complete file ``tmp`` the name ``path``, only if ``path`` does not exist.

    Atomic and exclusive: a hard link fails when ``path`` exists, so two
    writers racing for one name cannot both succeed. ``tmp`` is removed on
    success. On file systems without hard links, ``path`` is first reserved
    with ``O_CREAT | O_EXCL`` and then replaced by ``tmp``.

    Raises
    ------
    OutputExistsError
        When ``path`` exists (``tmp`` is left for the caller to remove).
    OutputPathError
        For any other reason the name cannot be created.
    """
    tmp, path = Path(tmp), Path(path)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path, hint) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise _output_error(path, exc, hint) from None
        _reserve_then_replace(tmp, path, hint)
    else:
        tmp.unlink()
    return path


def _reserve_then_replace(tmp: Path, path: Path, hint: str) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise _exists_error(path, hint) from None
    except OSError as exc:
        raise _output_error(path, exc, hint) from None
    os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _output_error(path, exc, hint) from None


def write_new_file(path: str | os.PathLike[str], write: Any, *,
                   hint: str = "choose another file name") -> Path:
    """Create the new file ``path`` with ``write(tmp_path)``, never overwriting anything.

    ``write`` writes the whole file under a temporary name in the same folder
    (its suffix is that of ``path``); the file is then placed with
    :func:`place_new`. The temporary file is removed whatever happens.

    Raises
    ------
    OutputExistsError, OutputPathError
        As :func:`prepare_output` and :func:`place_new` (a write that fails
        with an OSError, e.g. a full disk, is an OutputPathError too).
    """
    path = Path(path)
    if os.path.lexists(path):
        raise _exists_error(path, hint)
    tmp = _tmp_path(path, f"partial{path.suffix}")
    try:
        try:
            write(tmp)
        except OSError as exc:
            raise _output_error(path, exc, hint) from None
        return place_new(tmp, path, hint=hint)
    finally:
        tmp.unlink(missing_ok=True)


# =========================================================================== locking
# The writer's lock is an open-file-description byte-range lock (Linux F_OFD_SETLK) on a
# byte far beyond any real file size. It belongs to the writer's own descriptor (closing
# other descriptors of the file, e.g. HDF5's, does not drop it), dies with the process,
# and is independent of the flock() locks HDF5 takes, so SWMR readers with default h5py
# settings are not blocked. Without OFD locks (non-Linux) flock() is used instead, which
# then requires SWMR readers to pass locking=False.
# On Windows, msvcrt locks the same far byte (exclusive only; a reader's liveness probe
# takes and releases it). That path is not exercised by the test suite (Linux CI).
_LOCK_BYTE = 1 << 62
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt
_OFD = fcntl is not None and hasattr(fcntl, "F_OFD_SETLK")


def _ofd_lock(fd: int, exclusive: bool) -> bool:
    lock_type = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    # struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len,
    # pid_t l_pid (0 for OFD locks), padded to 32 bytes.
    request = struct.pack("hh4xqqi4x", lock_type, os.SEEK_SET, _LOCK_BYTE, 1, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _try_lock(path: Path, exclusive: bool) -> int | None:
    """Open ``path`` and take a non-blocking lock; the fd, or None when it is held."""
    fd = os.open(path, os.O_RDWR if exclusive and _OFD else os.O_RDONLY)
    try:
        if _OFD:
            if _ofd_lock(fd, exclusive):
                return fd
        elif fcntl is None:
            os.lseek(fd, _LOCK_BYTE, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            except OSError:
                pass
            else:
                if not exclusive:  # a probe: release at once
                    os.lseek(fd, _LOCK_BYTE, os.SEEK_SET)
                    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
                return fd
        else:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def writer_alive(path: str | os.PathLike[str]) -> bool:
    """True when a live process holds ``path`` open for writing.

    A :class:`SessionWriter` holds an exclusive lock on its file for its
    whole life, so the lock is free exactly when no writer is running (a
    killed writer's lock goes with its process).
    """
    fd = _try_lock(Path(path), exclusive=False)
    if fd is None:
        return True
    os.close(fd)
    return False


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


class SessionLock:
    """The writer lock of an existing session file, held while it is resumed.

    Taken first (before the file is read or any instrument is opened), so of
    two resumes of one file exactly one proceeds; the other gets
    :class:`SessionBusyError`. :meth:`SessionWriter.resume` takes it over and
    releases it once the repaired file (locked in turn) has replaced the old one.
    """

    def __init__(self, path: Path, fd: int) -> None:
        # Use acquire().
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: str | os.PathLike[str]) -> SessionLock:
        """Lock ``path`` for writing, or raise at once.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        SessionBusyError
            When a live writer (or another resume) holds it.
        OutputPathError
            When the file cannot be opened for writing (e.g. no permission).
        """
        path = Path(path)
        for _ in range(3):
            if not path.exists():
                raise FileNotFoundError(2, "No such file or directory", str(path))
            if path.is_dir():
                raise IsADirectoryError(21, "Is a directory", str(path))
            try:
                fd = _try_lock(path, exclusive=True)
            except FileNotFoundError:
                continue  # replaced between the check and the open: look again
            except OSError as exc:
                raise _output_error(path, exc, "cannot resume it here") from None
            if fd is None:
                break
            if _same_file(fd, path):
                return cls(path, fd)
            os.close(fd)  # another resume replaced the file meanwhile: it is theirs now
        raise SessionBusyError(f"{path}: session file is being written by another process "
                               f"(a survey or a resume); wait until it ends")

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Release the lock. Safe twice."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SessionLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# =========================================================================== encoding
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


# =========================================================================== structure
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


def _fsync_path(path: Path, directory: bool = False) -> None:
    if directory and not hasattr(os, "O_DIRECTORY"):  # Windows: directories are not fsynced
        return
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# =========================================================================== writer
def _append(ds: h5py.Dataset, start: int, data: np.ndarray) -> None:
    """Grow 1-D ``ds`` to ``start + len(data)`` and write ``data`` at ``start``.

    The low-level calls skip h5py's selection machinery (about 2x less overhead per
    append, which matters at one flushed append per spectrum).
    """
    n = data.shape[0]
    ds.id.set_extent((start + n,))
    file_space = ds.id.get_space()
    file_space.select_hyperslab((start,), (n,))
    ds.id.write(h5py.h5s.create_simple((n,)), file_space, np.ascontiguousarray(data))


class _TableWriter:
    """Appends encoded rows to one table of an open file."""

    def __init__(self, spec: TableSpec, group: h5py.Group) -> None:
        self.spec = spec
        self.rows = group["rows"]
        if self.rows.dtype != spec.row_dtype():
            raise FileFormatError(f"table {spec.name!r}: rows dtype does not match its schema")
        self.values = {c.name: group[c.name] for c in spec.columns if c.variable}
        self.n_rows = int(self.rows.shape[0])
        self.lengths = {name: int(ds.shape[0]) for name, ds in self.values.items()}

    def build(self, items: Sequence[_Encoded]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Row array and concatenated values for ``items`` (offsets after the current end)."""
        rows = np.zeros(len(items), dtype=self.rows.dtype)
        for name in ("seq", "run_id", "qd_id", "kind"):
            rows[name] = [it.row[name] for it in items]
        chunks: dict[str, np.ndarray] = {}
        for col in self.spec.columns:
            if not col.variable:
                rows[col.name] = [it.row[col.name] for it in items]
                continue
            flats = [it.flats[col.name] for it in items]
            sizes = np.fromiter((a.size for a in flats), dtype=np.int64, count=len(flats))
            offsets = self.lengths[col.name] + np.concatenate(([0], np.cumsum(sizes)[:-1]))
            rows[f"{col.name}_offset"] = offsets
            rows[f"{col.name}_size"] = sizes
            if col.has_shape:
                shape_field = rows[f"{col.name}_shape"]
                shape_field[...] = -1
                for i, it in enumerate(items):
                    shape = it.shapes[col.name]
                    shape_field[i, : len(shape)] = shape
            chunks[col.name] = flats[0] if len(flats) == 1 else np.concatenate(flats)
        return rows, chunks

    def write_values(self, chunks: Mapping[str, np.ndarray]) -> list[h5py.Dataset]:
        """Append the values (not yet referenced by any row); the datasets touched."""
        touched = []
        for name, data in chunks.items():
            if data.size == 0:
                continue
            ds = self.values[name]
            start = self.lengths[name]
            _append(ds, start, data)
            self.lengths[name] = start + data.size
            touched.append(ds)
        return touched

    def write_rows(self, rows: np.ndarray) -> None:
        """Append and flush the rows (this makes the records visible)."""
        start = self.n_rows
        _append(self.rows, start, rows)
        self.rows.flush()
        self.n_rows = start + rows.shape[0]


class SessionWriter:
    """Appends records to a session file, flushing each batch before returning.

    Create one with :meth:`create` (new file) or :meth:`resume` (continue a
    file, also after a crash); use it as a context manager or call
    :meth:`close`. One writer per file: a second writer (or a resume) on the
    same file while this one lives raises :class:`SessionBusyError`.

    Examples
    --------
    >>> with SessionWriter.create("s.h5", config_text=yaml_text) as w:  # doctest: +SKIP
    ...     w.append(RunStart(0, "spectrum", "{}", time.time()))
    ...     w.append(Tagged(spectrum, run_id=0, qd_id=3, kind="accumulated"))
    ...     w.append(RunStop(0, "completed", "", time.time()))
    """

    def __init__(self, path: Path, h5: h5py.File, lock_fd: int) -> None:
        # Use create() or resume().
        self.path = path
        self._h5 = h5
        self._lock_fd: int | None = lock_fd
        self._broken: BaseException | None = None
        self._tables: dict[str, _TableWriter] = {}
        next_seq = 0
        next_run = 0
        for name in h5["tables"]:
            group = h5["tables"][name]
            spec = TableSpec.from_json(group.attrs["schema"])
            tw = _TableWriter(spec, group)
            self._tables[name] = tw
            if tw.n_rows:
                last = tw.rows[tw.n_rows - 1]
                next_seq = max(next_seq, int(last["seq"]) + 1)
                if name == "run_start":
                    next_run = max(next_run, int(tw.rows["run_id"].max()) + 1)
        self._next_seq = next_seq
        self._next_run = next_run

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, config_text: str = "",
               instruments: Mapping[str, Any] | str | None = None,
               truth: Mapping[str, Any] | None = None, overwrite: bool = False,
               tables: Iterable[TableSpec] | None = None,
               instruments_json: str | None = None) -> SessionWriter:
        """Create a new session file and return a writer on it.

        The file is built under a temporary name and then linked into place,
        which fails when ``path`` exists: ``path`` never holds a half-created
        session, and of two writers racing for one path exactly one wins.

        Parameters
        ----------
        path : path-like
            The session file to create.
        config_text : str
            The setup configuration (YAML text).
        instruments : mapping or str, optional
            Snapshot of the instrument settings, ``{name: settings dict}`` or
            JSON text.
        truth : mapping of str to array, optional
            For simulated sessions: the virtual sample as equal-length 1-D
            arrays (``x_um``, ``y_um``, ``energy_ev``, ``fwhm_mev``, ``g2_0``...).
            The session is marked ``simulated`` when given.
        overwrite : bool
            Replace an existing file instead of raising FileExistsError.
        tables : iterable of TableSpec, optional
            Tables to create; default every registered table.
        instruments_json : str, optional
            The instrument snapshot as JSON text (instead of ``instruments``).

        Raises
        ------
        OutputExistsError
            (a FileExistsError) When ``path`` exists and ``overwrite`` is false,
            also when another writer created it meanwhile.
        OutputPathError
            When the file cannot be created there (permission, read-only file
            system, name too long, missing folder).
        SessionBusyError
            When ``overwrite`` would replace a file that a live writer holds.
        ValueError
            For truth arrays that are not 1-D or not of equal length.
        """
        path = Path(path)
        hint = "choose another file name (or resume it)"
        if os.path.lexists(path):
            if not overwrite:
                raise _exists_error(path, hint)
            if path.is_file() and writer_alive(path):
                raise SessionBusyError(f"{path}: session file is being written by another "
                                       f"process")
        if instruments is not None and instruments_json is not None:
            raise ValueError("give instruments or instruments_json, not both")
        if instruments_json is not None:
            if not isinstance(json.loads(instruments_json), dict):  # must be a JSON object
                raise ValueError("instruments_json must be a JSON object")
            instruments = instruments_json
        specs = tuple(registered_tables() if tables is None else tables)
        tmp = _tmp_path(path, "creating")
        try:
            h5 = h5py.File(tmp, "w", libver="latest", rdcc_nbytes=_WRITER_RDCC_BYTES)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _output_error(path, exc, hint) from None
        fd: int | None = None
        try:
            # Locked before it has its name: no resume can slip in between.
            fd = _try_lock(tmp, exclusive=True)
            if fd is None:  # nobody else knows this name
                raise SessionBusyError(f"{tmp}: locked by another process")
            _write_header(h5, config_text=config_text, instruments=instruments or {},
                          truth=truth, created_unix_s=time.time(),
                          software_version=__version__)
            tables_group = h5.create_group("tables")
            for spec in specs:
                _create_table(tables_group, spec)
            h5.swmr_mode = True
            if overwrite:
                os.replace(tmp, path)
            else:
                place_new(tmp, path, hint=hint)
            return cls(path, h5, fd)
        except BaseException:
            h5.close()
            if fd is not None:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def resume(cls, path: str | os.PathLike[str], *, close_open_runs: bool = True,
               lock: SessionLock | None = None) -> SessionWriter:
        """Make a session file writable again (also after a crash) and append to it.

        Every complete row is copied into a new file beside ``path``, which is
        fsynced and atomically renamed over ``path``; the writer returned is
        positioned after the last complete row. Rows that a killed writer had
        only half written are dropped; no complete row is lost or duplicated.
        ``seq`` and run numbers continue where they stopped. The file stays
        locked from the first step to the writer's close, so two resumes of
        one file cannot both proceed.

        Parameters
        ----------
        path : path-like
            A session file, cleanly closed or left by a killed writer.
        close_open_runs : bool
            Append a ``RunStop(status="failed")`` with an "interrupted" reason
            for every run that has no stop record.
        lock : SessionLock, optional
            The file's lock, taken earlier by the caller (it is released here).

        Raises
        ------
        SessionBusyError
            When a live writer holds the file.
        FileFormatError
            When ``path`` is not a micropl session file.
        """
        path = Path(path)
        held = lock if lock is not None else SessionLock.acquire(path)
        try:
            if not held.held or held.path != path:
                raise ValueError(f"{path}: the lock given is not held on this file")
            return cls._resume_locked(path, close_open_runs)
        finally:
            held.release()

    @classmethod
    def _resume_locked(cls, path: Path, close_open_runs: bool) -> SessionWriter:
        hint = "free some space or copy the file to a writable folder and resume the copy"
        tmp = _tmp_path(path, "resuming")
        fd: int | None = None
        try:
            with SessionReader(path, assume_no_writer=True) as src:
                open_runs = [r.run_id for r in src.runs() if r.status in ("running",
                                                                          "interrupted")]
                try:
                    dst = h5py.File(tmp, "w", libver="latest")
                except OSError as exc:
                    raise _output_error(tmp, exc, hint) from None
                with dst:
                    src._copy_into(dst)
            _fsync_path(tmp)
            fd = _try_lock(tmp, exclusive=True)
            if fd is None:
                raise SessionBusyError(f"{tmp}: locked by another process")
            os.replace(tmp, path)
            _fsync_path(path.parent, directory=True)
        except BaseException:
            if fd is not None:
                os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        try:
            h5 = h5py.File(path, "r+", libver="latest", rdcc_nbytes=_WRITER_RDCC_BYTES)
        except BaseException:
            os.close(fd)
            raise
        try:
            h5.swmr_mode = True
            writer = cls(path, h5, fd)
        except BaseException:
            h5.close()
            os.close(fd)
            raise
        if close_open_runs and open_runs:
            now = time.time()
            writer.append_many([RunStop(run_id, "failed", _INTERRUPTED_REASON, now)
                                for run_id in open_runs])
        return writer

    # ----------------------------------------------------------------- writing
    def append(self, record: Any) -> int:
        """Store one record (bare or :class:`Tagged`) and flush it.

        Returns
        -------
        int
            The record's session-wide sequence number ``seq``.
        """
        return self.append_many([record])[0]

    def write(self, record: Any) -> int:
        """Same as :meth:`append` (the stream subscriber's name for it)."""
        return self.append(record)

    def append_many(self, records: Iterable[Any]) -> list[int]:
        """Store several records and flush them once (the efficient path).

        Every record is validated and encoded before anything is written, so
        a bad record raises without storing any record of the batch. When the
        call returns, every record of the batch is on disk (in the OS cache:
        safe against a killed process).

        Returns
        -------
        list of int
            The records' ``seq`` numbers, in order.

        Raises
        ------
        SchemaError
            For a record type without a table.
        TypeError, ValueError
            For a field value that its column cannot store.
        """
        self._check_open()
        encoded: dict[str, list[_Encoded]] = {}
        seqs: list[int] = []
        seq = self._next_seq
        next_run = self._next_run
        for item in records:
            record, spec, run_id, qd_id, kind = _unwrap(item)
            if spec.name not in self._tables:
                raise SchemaError(f"{self.path}: this session has no table {spec.name!r}")
            encoded.setdefault(spec.name, []).append(
                _encode(self._tables[spec.name].spec, record, seq, run_id, qd_id, kind))
            seqs.append(seq)
            seq += 1
            if spec.name == "run_start":
                next_run = max(next_run, run_id + 1)
        if not seqs:
            return seqs
        built = {name: self._tables[name].build(items) for name, items in encoded.items()}
        try:
            touched: list[h5py.Dataset] = []
            for name, (_, chunks) in built.items():
                touched.extend(self._tables[name].write_values(chunks))
            for ds in touched:
                ds.flush()
            for name, (rows, _) in built.items():
                self._tables[name].write_rows(rows)
        except OSError as exc:
            # HDF5's messages span lines (its error stack); callers report this on one.
            one_line = OSError(exc.errno, f"{self.path}: write failed: "
                                          f"{' '.join(str(exc).split())}")
            self._broken = one_line
            raise one_line from exc
        except BaseException as exc:
            self._broken = exc
            raise
        self._next_seq = seq
        self._next_run = next_run
        return seqs

    def next_run_id(self) -> int:
        """A run number not used by any stored :class:`RunStart`."""
        return self._next_run

    def n_rows(self, table: str) -> int:
        """Number of complete rows of ``table``."""
        return self._tables[table].n_rows

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._lock_fd is None

    def close(self) -> None:
        """Close the file (clears its SWMR state) and release the lock. Safe twice."""
        if self._lock_fd is None:
            return
        try:
            self._h5.close()
        except (OSError, RuntimeError) as exc:
            if self._broken is None:
                raise
            # An earlier write already failed (e.g. disk full) and was reported; the
            # flushed rows are on disk and ``resume`` repairs the rest.
            log.error("%s: closing after a failed write also failed: %s", self.path, exc)
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise ValueError(f"{self.path}: session writer is closed")
        if self._broken is not None:
            raise RuntimeError(f"{self.path}: an earlier write failed ({self._broken}); "
                               f"close and resume the session") from self._broken

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# =========================================================================== reading
@dataclass(frozen=True)
class StoredRecord:
    """A record read back with its envelope.

    Attributes
    ----------
    seq : int
        Session-wide sequence number (append order).
    table : str
        Table it was stored in.
    run_id, qd_id : int
        Run and QD (``-1``: none).
    kind : str
        Role of the data (``"accumulated"``, ``"tags"``...).
    record : object
        The rebuilt record (a dataclass instance).
    """

    seq: int
    table: str
    run_id: int
    qd_id: int
    kind: str
    record: Any


@dataclass(frozen=True)
class RunInfo:
    """A run as stored: start, latest stop and status.

    ``status`` is ``"completed"``, ``"aborted"`` or ``"failed"`` from the
    latest :class:`RunStop`; without one it is ``"running"`` while a writer
    holds the file and ``"interrupted"`` when none does (the writer died).
    ``start_s``/``end_s`` are Unix times (``end_s`` NaN while running).
    """

    run_id: int
    procedure: str
    parameters_json: str
    status: str
    reason: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class QDInfo:
    """A QD selected for measurement, with its latest status.

    ``status`` is ``"completed"``, ``"failed"`` (see ``reason``) or
    ``"pending"`` (no status stored yet). Position and amplitude come from
    the latest :class:`QDTarget` row for the QD.
    """

    qd_id: int
    run_id: int
    x_um: float
    y_um: float
    amplitude: float
    snr: float
    status: str
    reason: str


@dataclass(frozen=True)
class SurveyState:
    """A stored survey's progress, as :meth:`SessionReader.survey_state` reads it.

    Attributes
    ----------
    run_id : int
        The survey run that mapped the sample (or was killed mapping it).
    parameters : dict
        That run's parameters.
    spots : SpotList or None
        The spots found in its map; None when the map did not finish.
    map_lines : list of MapLine
        Its stored map lines (kind ``map``), in append order.
    qds : list of QDInfo
        Every stored selected QD with its latest status.
    open_runs : list of int
        Runs without a stop record (interrupted).
    film : Spectrum or None
        The newest stored film reference.
    """

    run_id: int
    parameters: dict[str, Any]
    spots: Any
    map_lines: list[Any]
    qds: list[QDInfo]
    open_runs: list[int]
    film: Any


@dataclass(frozen=True)
class QDData:
    """Everything stored for one QD (the logical per-QD group).

    Attributes
    ----------
    info : QDInfo or None
        Target and status (None when the QD has data but no target row).
    records : dict of str to list of StoredRecord
        Per table, that QD's records in append order (tables with none are
        absent). Shorthands below.
    """

    info: QDInfo | None
    records: dict[str, list[StoredRecord]] = field(default_factory=dict)

    def _get(self, table: str) -> list[StoredRecord]:
        return self.records.get(table, [])

    @property
    def spectra(self) -> list[StoredRecord]:
        """``Spectrum`` records (raw accumulations, sums, backgrounds; see ``kind``)."""
        return self._get("spectrum")

    @property
    def frames(self) -> list[StoredRecord]:
        """Raw camera ``Frame`` records."""
        return self._get("frame")

    @property
    def spectrum_fits(self) -> list[StoredRecord]:
        """``SpectrumFit`` records."""
        return self._get("spectrum_fit")

    @property
    def g2_histograms(self) -> list[StoredRecord]:
        """``G2Histogram`` records."""
        return self._get("g2_histogram")

    @property
    def g2_results(self) -> list[StoredRecord]:
        """``G2Result`` records (peak-area g²(0))."""
        return self._get("g2_result")

    @property
    def g2_fits(self) -> list[StoredRecord]:
        """``PeakTrainFit`` and ``CwG2Fit`` records."""
        return sorted(self._get("peak_train_fit") + self._get("cw_g2_fit"), key=lambda r: r.seq)

    @property
    def tag_chunks(self) -> list[StoredRecord]:
        """Raw ``TagChunk`` records."""
        return self._get("tag_chunk")

    @property
    def refocus(self) -> StoredRecord | None:
        """The latest ``RefocusResult``, or None."""
        found = self._get("refocus")
        return found[-1] if found else None


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _set_read_attempts(fapl: h5py.h5p.PropFAID, attempts: int) -> bool:
    """``H5Pset_metadata_read_attempts`` (not wrapped by h5py), through ctypes."""
    global _H5P_SET_ATTEMPTS
    if _H5P_SET_ATTEMPTS is None:
        _H5P_SET_ATTEMPTS = False
        try:
            with open("/proc/self/maps") as maps:
                libs = {line.split()[-1] for line in maps if "/libhdf5" in line
                        and "libhdf5_hl" not in line}
            if len(libs) == 1:
                func = ctypes.CDLL(libs.pop()).H5Pset_metadata_read_attempts
                func.argtypes = [ctypes.c_int64, ctypes.c_uint]
                func.restype = ctypes.c_int
                _H5P_SET_ATTEMPTS = func
        except (OSError, AttributeError) as exc:
            log.debug("cannot reach H5Pset_metadata_read_attempts: %s", exc)
    if not _H5P_SET_ATTEMPTS:
        return False
    return _H5P_SET_ATTEMPTS(fapl.id, attempts) >= 0


_H5P_SET_ATTEMPTS: Any = None


_UNDEFINED_ADDRESS = {2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}
_SUPERBLOCK_HEAD_BYTES = 12 + 4 * 8


def _stored_eof(head: bytes) -> int | None:
    """End-of-file address (bytes) recorded in a v2/v3 superblock at offset 0, or None.

    Layout after the 8-byte signature: version, size of offsets, size of lengths,
    file-consistency flags (1 byte each), then base address, superblock-extension
    address, end-of-file address and root-group object-header address (each
    "size of offsets" bytes, little-endian) and a checksum. The stored address is
    relative to the base address. None for other superblock versions, an
    undefined address or a header too short to hold it.
    """
    if len(head) < 12 or head[:8] != _HDF5_SIGNATURE or head[8] not in (2, 3):
        return None
    size_of_offsets = head[9]
    if size_of_offsets not in _UNDEFINED_ADDRESS or len(head) < 12 + 3 * size_of_offsets:
        return None
    code = {2: "H", 4: "I", 8: "Q"}[size_of_offsets]
    base, _, eof = struct.unpack_from(f"<3{code}", head, 12)
    if eof == _UNDEFINED_ADDRESS[size_of_offsets]:
        return None
    return base + eof


class _ZeroPaddedFile(io.RawIOBase):
    """Read-only view of a file extended with zeros to ``length_bytes``.

    A write that failed because the disk was full (ENOSPC, or EFBIG past a
    file-size limit) leaves HDF5's stored end-of-file beyond the file's real
    size, and HDF5 then refuses to open the file. Through this view HDF5 sees
    a file of the stored length (reading zeros past the real end, as it does
    for any read past EOF); the file itself is never modified. The reader
    checks separately that the data it returns lies within the real size.
    """

    def __init__(self, path: Path, length_bytes: int) -> None:
        super().__init__()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self.real_size_bytes = os.fstat(self._file.fileno()).st_size
        self._length = max(int(length_bytes), self.real_size_bytes)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._pos + offset
        elif whence == os.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._length - self._pos))
        got = 0
        if self._pos < self.real_size_bytes:
            self._file.seek(self._pos)
            want = min(n, self.real_size_bytes - self._pos)
            while got < want:
                k = self._file.readinto(view[got:want])
                if not k:
                    break
                got += k
        view[got:n] = bytes(n - got)
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _open_swmr_read(path: Path, *, retry: bool) -> h5py.File:
    """Open ``path`` for SWMR reading without chunk cache; one metadata attempt unless retry."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    # No chunk cache: a chunk read while it was being filled is never served stale.
    mdc_nelmts, rdcc_nslots, _, rdcc_w0 = fapl.get_cache()
    fapl.set_cache(mdc_nelmts, rdcc_nslots, 0, rdcc_w0)
    if not retry:
        _set_read_attempts(fapl, 1)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ,
                        fapl=fapl)
    return h5py.File(fid)


def _not_session(path: Path, why: str) -> FileFormatError:
    return FileFormatError(f"{path}: not a micropl session file ({' '.join(why.split())})")


class SessionReader:
    """Read-only access to a session file, also while it is being written.

    The file is opened in SWMR-read mode, which works for files being
    written, files closed cleanly and files left by a killed writer. Call
    :meth:`refresh` (or any reading method, which refreshes the table it
    reads) to see rows appended since. Only complete rows are ever returned.
    Reading never modifies the file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    FileFormatError
        When ``path`` is not a readable micropl session file (not HDF5,
        truncated, foreign, newer format).
    """

    def __init__(self, path: str | os.PathLike[str], *, assume_no_writer: bool = False) -> None:
        # assume_no_writer: the caller holds the file's writer lock itself (a resume).
        self.path = Path(path)
        self._no_writer = assume_no_writer
        if not self.path.exists():
            raise FileNotFoundError(2, "No such file or directory", str(self.path))
        if self.path.is_dir():
            raise IsADirectoryError(21, "Is a directory", str(self.path))
        self._fd: int | None = None
        self._padded: _ZeroPaddedFile | None = None
        self._complete_rows: dict[str, int] = {}
        self._h5 = self._open()
        try:
            if self._h5.swmr_mode:
                self._fd = os.open(self.path, os.O_RDONLY)
            if self._padded is not None:
                self._validate_padded()
            else:
                self._validate()
        except BaseException:
            self.close()
            raise

    def _open(self) -> h5py.File:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(_SUPERBLOCK_HEAD_BYTES)
                size_bytes = os.fstat(fh.fileno()).st_size
        except OSError as exc:
            raise _not_session(self.path, f"cannot read: {exc}") from None
        if head[:8] != _HDF5_SIGNATURE:
            raise _not_session(self.path, "not an HDF5 file" if head else "empty file")
        alive = not self._no_writer and writer_alive(self.path)
        # Superblock v2/v3: byte 11 holds the file-consistency flags, set while a
        # writer has (or had, if it was killed) the file open.
        open_for_write = len(head) >= 12 and head[8] >= 2 and head[11] != 0
        errors = []
        if alive or open_for_write:
            # A live writer may be mid-way through a metadata write: HDF5 retries
            # reads whose checksum fails. A dead writer's file will not change, so
            # one attempt is enough (and a damaged file fails at once, not after
            # minutes of retries).
            try:
                return _open_swmr_read(self.path, retry=alive)
            except OSError as exc:
                errors.append(str(exc))
        stored_eof = _stored_eof(head)
        if not open_for_write and stored_eof is not None and stored_eof > size_bytes:
            # Closed, but HDF5 recorded more bytes than the file has: a write past the
            # end failed (disk full) after the last complete row was flushed. Read it
            # through a zero-padded view; rows lying past the real end are left out
            # (see _n_complete), nothing is written to the file.
            try:
                return self._open_padded(stored_eof, size_bytes)
            except OSError as exc:
                errors.append(str(exc))
        try:
            return h5py.File(self.path, "r", rdcc_nbytes=0)
        except OSError as exc:
            errors.append(str(exc))
        raise _not_session(self.path, f"cannot open as HDF5: {errors[0]}")

    def _open_padded(self, stored_eof: int, size_bytes: int) -> h5py.File:
        padded = _ZeroPaddedFile(self.path, stored_eof)
        try:
            h5 = h5py.File(padded, "r", rdcc_nbytes=0)
        except BaseException:
            padded.close()
            raise
        self._padded = padded
        log.warning("%s: the file has %d bytes but HDF5 recorded %d (a write failed, e.g. "
                    "the disk was full); reading the rows complete before it. "
                    "'micropl survey --resume' (SessionWriter.resume) repairs the file",
                    self.path, size_bytes, stored_eof)
        return h5

    def _validate_padded(self) -> None:
        """Validate a file read through the zero-padded view, reading all its metadata now.

        Metadata past the real end reads as zeros there, which HDF5 reports in many
        ways (checksum errors, bad messages, missing links); any of them means the
        file is damaged beyond a failed append (e.g. a cut copy), not merely full.
        """
        try:
            self._validate()
            _ = (self.config_text, self.instruments, self.truth, self.created,
                 self.created_unix_s, self.software_version, self.resume_count)
            for name in self._specs:
                self.rows(name)
        except (OSError, RuntimeError, KeyError, IndexError, ValueError, TypeError) as exc:
            if isinstance(exc, FileFormatError):
                raise
            raise _not_session(self.path, f"damaged past its end: {exc}") from None

    def _validate(self) -> None:
        attrs = self._h5.attrs
        if attrs.get("format") != FORMAT_NAME:
            raise _not_session(self.path, f"no format={FORMAT_NAME!r} attribute")
        version = int(attrs.get("format_version", -1))
        if version < 1 or version > FORMAT_VERSION:
            raise _not_session(self.path, f"format version {version}, this micropl reads "
                                          f"1..{FORMAT_VERSION}")
        if "tables" not in self._h5:
            raise _not_session(self.path, "no /tables group")
        self._specs: dict[str, TableSpec] = {}
        for name, group in self._h5["tables"].items():
            try:
                spec = TableSpec.from_json(group.attrs["schema"])
                rows = group["rows"]
            except (KeyError, ValueError, TypeError) as exc:
                raise _not_session(self.path, f"table {name!r} is damaged: {exc}") from None
            if rows.dtype != spec.row_dtype():
                raise _not_session(self.path, f"table {name!r}: rows do not match the schema")
            for col in spec.columns:
                if col.variable and col.name not in group:
                    raise _not_session(self.path, f"table {name!r}: no values for {col.name!r}")
            self._specs[name] = spec

    # ----------------------------------------------------------------- metadata
    def _attr(self, name: str, convert: Any, default: Any = None) -> Any:
        try:
            value = self._h5.attrs[name] if default is None else \
                self._h5.attrs.get(name, default)
            return convert(value)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise _not_session(self.path, f"attribute {name!r} is missing or damaged: "
                                          f"{exc}") from None

    def _text(self, name: str) -> str:
        try:
            value = self._h5[name].asstr()[()]
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise _not_session(self.path, f"{name} is missing or damaged: {exc}") from None
        if not isinstance(value, str):
            raise _not_session(self.path, f"{name} is not a text")
        return value

    @property
    def software_version(self) -> str:
        """micropl version that created the file."""
        return self._attr("software_version", str)

    @property
    def created(self) -> str:
        """Creation time, ISO 8601 (UTC)."""
        return self._attr("created", str)

    @property
    def created_unix_s(self) -> float:
        """Creation time, Unix seconds."""
        return self._attr("created_unix_s", float)

    @property
    def simulated(self) -> bool:
        """True for a session recorded on simulated instruments (has ``/truth``)."""
        return self._attr("simulated", bool)

    @property
    def resume_count(self) -> int:
        """How many times the session was resumed."""
        return self._attr("resume_count", int, default=0)

    @property
    def config_text(self) -> str:
        """The setup configuration (YAML text)."""
        return self._text("config_text")

    @property
    def instruments(self) -> dict[str, Any]:
        """Instrument settings snapshot taken at creation.

        Raises
        ------
        FileFormatError
            When ``instruments_json`` is not a JSON object (one line).
        """
        return self.json_field(self._text("instruments_json"), "instruments_json", want=dict)

    @property
    def truth(self) -> dict[str, np.ndarray] | None:
        """The virtual sample of a simulated session (None otherwise).

        Raises
        ------
        FileFormatError
            When the arrays are not 1-D of one length, or claim more data
            than the file holds.
        """
        if "truth" not in self._h5:
            return None
        out = {}
        try:
            for name, ds in self._h5["truth"].items():
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1:
                    raise _not_session(self.path, f"truth/{name} is not a 1-D array")
                self._check_stored(f"truth/{name}", ds, int(ds.shape[0]))
                out[name] = ds[()]
        except (OSError, TypeError, ValueError) as exc:
            if isinstance(exc, FileFormatError):
                raise
            raise _not_session(self.path, f"truth is damaged: {exc}") from None
        lengths = {arr.shape[0] for arr in out.values()}
        if len(lengths) > 1:
            raise _not_session(self.path, f"truth arrays have different lengths "
                                          f"{sorted(lengths)}")
        return out

    def _check_stored(self, what: str, ds: h5py.Dataset, n_elements: int) -> None:
        """Refuse reading ``n_elements`` of ``ds`` when the file cannot hold them.

        A dataset's extent is only a claim: HDF5 returns fill values for what
        was never written. Reading is bounded by the bytes actually allocated
        to the dataset (x1000 for compressed ones), so memory and time stay
        bounded whatever the file claims.
        """
        need = n_elements * ds.dtype.itemsize
        if need <= 0:
            return
        try:
            stored = int(ds.id.get_storage_size())
            filtered = ds.id.get_create_plist().get_nfilters() > 0
        except (OSError, RuntimeError) as exc:
            raise _not_session(self.path, f"{what} is damaged: {exc}") from None
        if need > stored * (1000 if filtered else 1):
            raise _not_session(self.path, f"{what} claims {n_elements} elements "
                                          f"({need} bytes), more than the file holds "
                                          f"({stored} bytes)")

    @property
    def tables(self) -> tuple[str, ...]:
        """Names of the tables in the file."""
        return tuple(self._specs)

    def spec(self, table: str) -> TableSpec:
        """The stored schema of ``table``."""
        return self._specs[table]

    def writer_alive(self) -> bool:
        """True while a live writer holds the file."""
        return not self._no_writer and writer_alive(self.path)

    # ----------------------------------------------------------------- rows
    def _group(self, table: str) -> h5py.Group:
        if table not in self._specs:
            raise KeyError(f"{self.path}: no table {table!r} (have {', '.join(self._specs)})")
        return self._h5["tables"][table]

    def refresh(self) -> None:
        """See rows appended since the file was opened or last refreshed."""
        for name in self._specs:
            self._refresh_rows(name)

    def _refresh_rows(self, table: str) -> h5py.Dataset:
        rows = self._group(table)["rows"]
        if self._h5.swmr_mode:
            rows.refresh()
        return rows

    @property
    def short_by_bytes(self) -> int:
        """Bytes missing between the file's size and HDF5's stored end of file.

        Non-zero only for a file whose last write failed because the disk was
        full (read through a zero-padded view; see :meth:`SessionWriter.resume`).
        """
        if self._padded is None:
            return 0
        return int(self._h5.id.get_filesize()) - self._padded.real_size_bytes

    def n_rows(self, table: str) -> int:
        """Number of complete rows of ``table``."""
        rows_ds = self._refresh_rows(table)
        if self._padded is not None:
            return self._n_complete(table, rows_ds)
        return int(rows_ds.shape[0])

    def rows(self, table: str, *, run_id: int | None = None, qd_id: int | None = None,
             kind: str | None = None) -> np.ndarray:
        """The complete rows of ``table`` (structured array), optionally filtered.

        Fields: ``seq``, ``run_id``, ``qd_id``, ``kind`` (bytes), the scalar
        columns, and ``<col>_offset``/``<col>_size``(/``_shape``) of the
        variable-size ones (read those with :meth:`values`).
        """
        rows_ds = self._refresh_rows(table)
        try:
            if self._padded is not None:
                n = self._n_complete(table, rows_ds)
            else:
                n = rows_ds.shape[0]
                self._check_on_disk(table, rows_ds, 0, n)
            self._check_stored(f"table {table!r}: rows", rows_ds, int(n))
            rows = rows_ds[:n]
        except OSError as exc:
            raise _not_session(self.path, f"table {table!r} is damaged: {exc}") from None
        keep = np.ones(rows.shape[0], dtype=bool)
        if run_id is not None:
            keep &= rows["run_id"] == run_id
        if qd_id is not None:
            keep &= rows["qd_id"] == qd_id
        if kind is not None:
            keep &= rows["kind"] == kind.encode("utf-8")
        return rows if keep.all() else rows[keep]

    def _real_size_bytes(self) -> int:
        if self._padded is not None:
            return self._padded.real_size_bytes
        return os.fstat(self._fd).st_size if self._fd is not None else self.path.stat().st_size

    def _chunk_info(self, ds: h5py.Dataset, index: int) -> Any:
        try:
            return ds.id.get_chunk_info_by_coord((index,))
        except (OSError, RuntimeError) as exc:  # damaged chunk index
            raise _not_session(self.path, f"{ds.name} is damaged: {exc}") from None

    def _on_disk_prefix(self, ds: h5py.Dataset, lo: int, hi: int) -> int:
        """First index in ``[lo, hi)`` whose bytes in chunked 1-D ``ds`` lie past the real
        end of the file (``hi`` when all are on disk)."""
        chunk = ds.chunks[0]
        size = self._real_size_bytes()
        itemsize = ds.dtype.itemsize
        for k in range(lo // chunk, (hi - 1) // chunk + 1):
            info = self._chunk_info(ds, k * chunk)
            used = min(hi, (k + 1) * chunk) - k * chunk
            if info.byte_offset is None:
                return max(lo, k * chunk)
            if info.byte_offset + used * itemsize > size:
                fits = max(0, (size - info.byte_offset) // itemsize)
                return max(lo, k * chunk + fits)
        return hi

    def _check_on_disk(self, table: str, ds: h5py.Dataset, lo: int, hi: int) -> None:
        """Raise when elements ``[lo, hi)`` of ``ds`` lie beyond the end of the file.

        HDF5 returns zeros for raw data past the end of a file; a file opened in
        SWMR mode carries no trustworthy end-of-file mark (nor does one read
        through the zero-padded view), so a cut copy of a crashed session would
        otherwise read as zeros instead of failing.
        """
        if not (self._h5.swmr_mode or self._padded is not None) or hi <= lo:
            return
        if self._on_disk_prefix(ds, lo, hi) < hi:
            raise _not_session(self.path, f"table {table!r}: data of {ds.name} lies beyond "
                                          f"the end of the file (truncated copy?)")

    def _n_complete(self, table: str, rows_ds: h5py.Dataset) -> int:
        """Rows of ``table`` that lie within a file whose last write failed (disk full).

        The rows past the real end are the tail of the batch whose write failed:
        their ``append`` raised, so they were never complete. A row past the end
        followed by one within the file is damage, not a failed append, and raises.
        """
        if table in self._complete_rows:
            return self._complete_rows[table]
        n = int(rows_ds.shape[0])
        complete = self._on_disk_prefix(rows_ds, 0, n) if n else 0
        if complete < n:
            chunk = rows_ds.chunks[0]
            size = self._real_size_bytes()
            for k in range(complete // chunk + 1, (n - 1) // chunk + 1):
                info = self._chunk_info(rows_ds, k * chunk)
                if info.byte_offset is not None and \
                        info.byte_offset + rows_ds.dtype.itemsize <= size:
                    raise _not_session(self.path, f"table {table!r}: rows {complete}.. lie "
                                                  f"beyond the end of the file, later ones "
                                                  f"do not (damaged file)")
            log.warning("%s: table %r: %d row(s) past the end of the file were never "
                        "complete (failed write); left out", self.path, table, n - complete)
        self._complete_rows[table] = complete
        return complete

    def values(self, table: str, column: str, rows: np.ndarray) -> list[Any]:
        """Decoded values of ``column`` for each of ``rows`` (from :meth:`rows`)."""
        spec = self._specs[table]
        col = spec.column(column)
        if not col.variable:
            try:
                return [_python(col, v) for v in rows[col.name]]
            except UnicodeDecodeError as exc:
                raise _not_session(self.path, f"table {table!r}: column {column!r}: "
                                              f"{exc}") from None
        ds = self._group(table)[col.name]
        if self._h5.swmr_mode:
            ds.refresh()
        offsets = rows[f"{column}_offset"].astype(np.int64)
        sizes = rows[f"{column}_size"].astype(np.int64)
        if rows.shape[0] == 0:
            return []
        if column in SAME_LENGTH.get(table, ()):
            self._check_lengths(table, rows)
        self._check_extents(table, column, ds, rows, offsets, sizes)
        lo = int(offsets.min())
        hi = int((offsets + sizes).max())
        try:
            self._check_on_disk(table, ds, lo, hi)
            if (hi - lo) * ds.dtype.itemsize <= _READ_SPAN_BYTES:
                block = ds[lo:hi]
                flats = [block[o - lo: o - lo + s] for o, s in zip(offsets, sizes)]
            else:
                flats = [ds[o: o + s] for o, s in zip(offsets, sizes)]
        except OSError as exc:
            raise _not_session(self.path, f"table {table!r} is damaged: {exc}") from None
        try:
            return [self._decode(col, rows, i, flat) for i, flat in enumerate(flats)]
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON (incl. FileFormatError)
            if isinstance(exc, FileFormatError):
                raise
            raise _not_session(self.path, f"table {table!r}: column {column!r}: "
                                          f"{' '.join(str(exc).split())[:200]}") from None

    def _decode(self, col: Column, rows: np.ndarray, i: int, flat: np.ndarray) -> Any:
        if col.kind == "text":
            return flat.tobytes().decode("utf-8")
        if col.kind == "json":
            return _decode_json(col, flat.tobytes())
        if col.has_shape:
            dims = [int(d) for d in rows[f"{col.name}_shape"][i]]
            shape = tuple(d for d in dims if d >= 0)
            if len(shape) > col.max_ndim or int(np.prod(shape)) != flat.size or \
                    any(d < 0 for d in dims[: len(shape)]):
                raise FileFormatError(f"{self.path}: not a micropl session file (column "
                                      f"{col.name!r}: shape {dims} does not fit its "
                                      f"{flat.size} values (seq {int(rows['seq'][i])}))")
            return flat.reshape(shape)
        return flat.reshape((flat.size,))

    def _check_extents(self, table: str, column: str, ds: h5py.Dataset, rows: np.ndarray,
                       offsets: np.ndarray, sizes: np.ndarray) -> None:
        """Every row's values must lie inside the values dataset, apart, and be stored."""
        n = int(ds.shape[0])
        bad = (offsets < 0) | (sizes < 0) | (offsets > n) | (sizes > n - np.minimum(offsets, n))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise _not_session(self.path, f"table {table!r}: row seq {int(rows['seq'][k])} "
                                          f"points outside column {column!r} (offset "
                                          f"{int(offsets[k])}, size {int(sizes[k])}, the "
                                          f"column holds {n})")
        total = int(sizes.sum())
        if total > n:  # rows of one table never share values
            raise _not_session(self.path, f"table {table!r}: rows claim {total} values of "
                                          f"column {column!r}, which holds {n}")
        self._check_stored(f"table {table!r}: column {column!r}", ds, total)

    def records(self, table: str | type, *, run_id: int | None = None,
                qd_id: int | None = None, kind: str | None = None) -> list[StoredRecord]:
        """The records of a table (name or record class), rebuilt, in append order.

        Raises
        ------
        FileFormatError
            When the stored columns do not fit this micropl's record class.
        """
        name = table if isinstance(table, str) else table_for(table).name
        rows = self.rows(name, run_id=run_id, qd_id=qd_id, kind=kind)
        return self._rebuild(name, rows)

    def _rebuild(self, name: str, rows: np.ndarray) -> list[StoredRecord]:
        spec = self._specs[name]
        if spec.record_type is None:
            raise _not_session(self.path, f"table {name!r} holds {spec.type_name}, which this "
                                          f"micropl does not know")
        self._check_lengths(name, rows)
        columns = {c.name: self.values(name, c.name, rows) for c in spec.columns}
        out = []
        for i in range(rows.shape[0]):
            kwargs = {c: vals[i] for c, vals in columns.items()}
            if "run_id" in spec.own_ids:
                kwargs["run_id"] = int(rows["run_id"][i])
            if "qd_id" in spec.own_ids:
                kwargs["qd_id"] = int(rows["qd_id"][i])
            try:
                record = spec.record_type(**kwargs)
                kind = rows["kind"][i].decode("utf-8")
            except (TypeError, ValueError) as exc:
                raise _not_session(self.path, f"table {name!r} (seq {int(rows['seq'][i])}) "
                                              f"does not fit {spec.type_name}: {exc}") from None
            out.append(StoredRecord(int(rows["seq"][i]), name, int(rows["run_id"][i]),
                                    int(rows["qd_id"][i]), kind, record))
        return out

    def _check_lengths(self, name: str, rows: np.ndarray) -> None:
        """Refuse rows whose arrays that belong together have different lengths."""
        spec = self._specs[name]
        present = {c.name for c in spec.columns if c.variable}
        group = [c for c in SAME_LENGTH.get(name, ()) if c in present]
        if len(group) < 2 or rows.shape[0] == 0:
            return
        sizes = np.stack([rows[f"{c}_size"].astype(np.int64) for c in group])
        bad = (sizes != sizes[0]).any(axis=0)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            lengths = ", ".join(f"{c} {int(sizes[j, k])}" for j, c in enumerate(group))
            raise _not_session(self.path, f"table {name!r}: row seq {int(rows['seq'][k])} "
                                          f"has arrays of different lengths ({lengths})")

    # ----------------------------------------------------------------- views
    def runs(self) -> list[RunInfo]:
        """Every run, by run number, with its latest status."""
        starts = self.records("run_start")
        stops: dict[int, StoredRecord] = {}
        for stop in self.records("run_stop"):
            stops[stop.run_id] = stop  # append order: the latest wins
        alive = None
        out = []
        for start in sorted(starts, key=lambda r: r.run_id):
            stop = stops.get(start.run_id)
            if stop is not None:
                status, reason, end = stop.record.status, stop.record.reason, stop.record.t_s
            else:
                if alive is None:
                    alive = self.writer_alive()
                status, reason, end = ("running" if alive else "interrupted"), "", float("nan")
            out.append(RunInfo(start.run_id, start.record.procedure,
                               start.record.parameters_json, status, reason,
                               start.record.t_s, end))
        return out

    def qds(self) -> list[QDInfo]:
        """Every QD selected for measurement, by QD number, with its latest status."""
        targets: dict[int, StoredRecord] = {}
        for target in self.records("qd_target"):
            targets[target.qd_id] = target
        statuses: dict[int, StoredRecord] = {}
        for status in self.records("qd_status"):
            statuses[status.qd_id] = status
        out = []
        for qd_id in sorted(targets):
            t = targets[qd_id].record
            s = statuses.get(qd_id)
            out.append(QDInfo(qd_id, t.run_id, t.x_um, t.y_um, t.amplitude, t.snr,
                              s.record.status if s else "pending",
                              s.record.reason if s else ""))
        return out

    def qd(self, qd_id: int, *, run_id: int | None = None) -> QDData:
        """Everything stored for one QD (optionally from one run only)."""
        info = next((q for q in self.qds() if q.qd_id == qd_id), None)
        records: dict[str, list[StoredRecord]] = {}
        for name, spec in self._specs.items():
            if spec.own_ids:
                continue
            rows = self.rows(name, run_id=run_id, qd_id=qd_id)
            if rows.shape[0]:
                records[name] = self._rebuild(name, rows)
        return QDData(info, records)

    def resume_plan(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """What a resumed survey needs: its parameters and the QDs not yet measured.

        Returns
        -------
        (parameters, pending) or None
            ``parameters``: the parameters of the survey run that mapped the
            sample (see :meth:`survey_state`); ``pending``: ``{qd_id, x_um,
            y_um, amplitude, snr}`` of every stored selected QD without a
            stored status (neither completed nor failed), by QD number. None
            when the file holds no survey run.
        """
        state = self.survey_state()
        if state is None:
            return None
        pending = [{"qd_id": q.qd_id, "x_um": q.x_um, "y_um": q.y_um,
                    "amplitude": q.amplitude, "snr": q.snr}
                   for q in state.qds if q.status == "pending"]
        return state.parameters, pending

    def survey_state(self) -> SurveyState | None:
        """Where a survey stands: the facts a resume is planned from (None: no survey).

        The survey run is the latest ``survey`` run that was not itself a
        resume (whose parameters have no ``targets``), else the latest one.
        """
        surveys = [r for r in self.runs() if r.procedure == "survey"]
        if not surveys:
            return None
        decoded = [(r, self.json_field(r.parameters_json or "{}",
                                       f"run {r.run_id} parameters_json", want=dict))
                   for r in surveys]
        mapping = [(r, p) for r, p in decoded if p.get("targets") is None]
        run, parameters = (mapping or decoded)[-1]
        spots = self.records("spot_list", run_id=run.run_id) if "spot_list" in self._specs \
            else []
        lines = self.records("map_line", run_id=run.run_id, kind="map") \
            if "map_line" in self._specs else []
        return SurveyState(
            run_id=run.run_id, parameters=parameters,
            spots=spots[-1].record if spots else None,
            map_lines=[s.record for s in lines], qds=self.qds(),
            open_runs=[r.run_id for r in self.runs() if r.status in ("running", "interrupted")],
            film=self.film_reference())

    def json_field(self, text: str, field: str, *, want: type | None = None) -> Any:
        """Decode the stored JSON ``text`` of ``field``; one-line FileFormatError if bad."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FileFormatError(f"{self.path}: {field} is not valid JSON "
                                  f"({' '.join(str(exc).split())[:200]})") from None
        if want is not None and not isinstance(value, want):
            raise FileFormatError(f"{self.path}: {field} must be a JSON "
                                  f"{'object' if want is dict else want.__name__}, got "
                                  f"{type(value).__name__}")
        return value

    def film_reference(self) -> Any:
        """The newest stored film reference (kind ``film_accumulated``), a Spectrum, or None."""
        from micropl.drivers.interfaces import Spectrum

        stored = self.records(Spectrum, kind="film_accumulated")
        return stored[-1].record if stored else None

    def tags(self, *, qd_id: int | None = None, run_id: int | None = None,
             kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All tags of the selected ``tag_chunk`` rows, concatenated in append order.

        Returns
        -------
        t_ps : ndarray of int64
            Arrival times in ps.
        channel : ndarray of uint8
            Channel of each tag.
        """
        rows = self.rows("tag_chunk", qd_id=qd_id, run_id=run_id, kind=kind)
        self._check_lengths("tag_chunk", rows)
        t = self.values("tag_chunk", "t_ps", rows)
        c = self.values("tag_chunk", "channel", rows)
        if not t:
            return np.zeros(0, np.int64), np.zeros(0, np.uint8)
        return np.concatenate(t), np.concatenate(c)

    # ----------------------------------------------------------------- resume copy
    def _copy_into(self, dst: h5py.File) -> None:
        """Write a clean copy of this session (complete rows only) into ``dst``."""
        src = self._h5
        truth = self.truth
        _write_header(dst, config_text=self.config_text,
                      instruments=src["instruments_json"].asstr()[()], truth=truth,
                      created_unix_s=self.created_unix_s,
                      software_version=self.software_version,
                      resume_count=self.resume_count + 1)
        dst.attrs["resumed_by_version"] = __version__
        if truth is not None:
            for name, ds in src["truth"].items():
                for key, value in ds.attrs.items():
                    dst["truth"][name].attrs[key] = value
        tables = dst.create_group("tables")
        specs = dict(self._specs)
        for spec in registered_tables():  # tables added to micropl since the file was made
            specs.setdefault(spec.name, spec)
        for name, spec in specs.items():
            group = _create_table(tables, spec)
            if name not in self._specs:
                continue
            rows = self.rows(name)
            src_group = self._group(name)
            self._check_lengths(name, rows)
            for col in spec.columns:
                if not col.variable or rows.shape[0] == 0:
                    continue
                src_ds = src_group[col.name]
                if self._h5.swmr_mode:
                    src_ds.refresh()
                offsets = rows[f"{col.name}_offset"].astype(np.int64)
                sizes = rows[f"{col.name}_size"].astype(np.int64)
                self._check_extents(name, col.name, src_ds, rows, offsets, sizes)
                end = int((offsets + sizes).max())
                if end == 0:
                    continue
                self._check_on_disk(name, src_ds, 0, end)  # never copy zeros as data
                dst_ds = group[col.name]
                dst_ds.resize((end,))
                block = max(1, _COPY_BLOCK_BYTES // src_ds.dtype.itemsize)
                for start in range(0, end, block):
                    stop = min(end, start + block)
                    dst_ds[start:stop] = src_ds[start:stop]
            if rows.shape[0]:
                group["rows"].resize((rows.shape[0],))
                group["rows"][:] = rows

    # ----------------------------------------------------------------- context
    def close(self) -> None:
        """Close the file. Safe twice."""
        self._h5.close()
        if self._padded is not None:
            self._padded.close()
            self._padded = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _python(col: Column, value: Any) -> Any:
    if col.kind == "label":
        return bytes(value).decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value
