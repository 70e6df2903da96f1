"""Read-only access to a session file: :class:`SessionReader`.

Works on files being written, cleanly closed files, files left by a killed
writer and files whose last write failed on a full disk; only complete rows
are returned and the file is never modified.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from micropl import __version__
from micropl.acquisition.storage.codec import _decode_json, _python
from micropl.acquisition.storage.layout import _create_table, _write_header, delta_decode
from micropl.acquisition.storage.locking import writer_alive
from micropl.acquisition.storage.recovery import (
    _HDF5_SIGNATURE,
    _SUPERBLOCK_HEAD_BYTES,
    _open_swmr_read,
    _stored_eof,
    _ZeroPaddedFile,
)
from micropl.acquisition.storage.schema import (
    SAME_LENGTH,
    Column,
    TableSpec,
    registered_tables,
    table_for,
)
from micropl.acquisition.storage.validation import _not_session, _StoredChecks
from micropl.acquisition.storage.views import StoredRecord, _SessionViews
from micropl.errors import FileFormatError

log = logging.getLogger(__name__)

__all__ = ["SessionReader"]

_COPY_BLOCK_BYTES = 64 << 20
_READ_SPAN_BYTES = 256 << 20


class SessionReader(_StoredChecks, _SessionViews):
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
    def sample(self) -> str:
        """The session's sample label (``micropl label``, ``survey --sample``); "" if none."""
        value = self._h5.attrs.get("sample", "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

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

    def concatenated(self, table: str, column: str, rows: np.ndarray) -> np.ndarray:
        """The values of the 1-D array ``column`` of ``rows``, end to end, in one array.

        The same values as ``np.concatenate(values(table, column, rows))``, read
        straight into the result (no copy per record): the fast path for tags.
        """
        col = self._specs[table].column(column)
        if col.kind != "array" or col.has_shape:
            raise ValueError(f"table {table!r}: column {column!r} is not a 1-D array column")
        ds = self._group(table)[col.name]
        if self._h5.swmr_mode:
            ds.refresh()
        if rows.shape[0] == 0:
            return np.zeros(0, dtype=ds.dtype)
        offsets = rows[f"{column}_offset"].astype(np.int64)
        sizes = rows[f"{column}_size"].astype(np.int64)
        if column in SAME_LENGTH.get(table, ()):
            self._check_lengths(table, rows)
        self._check_extents(table, column, ds, rows, offsets, sizes)
        out = np.empty(int(sizes.sum()), dtype=ds.dtype)
        ends = np.cumsum(sizes)
        starts = ends - sizes
        # records that follow each other in the file are read in one go
        joined = np.flatnonzero(offsets[1:] != offsets[:-1] + sizes[:-1]) + 1
        first = np.concatenate(([0], joined))
        last = np.concatenate((joined, [rows.shape[0]])) - 1
        try:
            self._check_on_disk(table, ds, int(offsets.min()), int((offsets + sizes).max()))
            for i, j in zip(first, last):
                n = int(ends[j] - starts[i])
                if n:
                    o, p = int(offsets[i]), int(starts[i])
                    ds.read_direct(out, np.s_[o:o + n], np.s_[p:p + n])
        except OSError as exc:
            raise _not_session(self.path, f"table {table!r} is damaged: {exc}") from None
        if col.codec == "delta-zstd":
            for p, n in zip(starts, sizes):
                if n:
                    delta_decode(out[p:p + n])
        return out

    def _decode(self, col: Column, rows: np.ndarray, i: int, flat: np.ndarray) -> Any:
        if col.kind == "text":
            return flat.tobytes().decode("utf-8")
        if col.kind == "json":
            return _decode_json(col, flat.tobytes())
        if col.codec == "delta-zstd":
            flat = delta_decode(flat)
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
        if "sample" in src.attrs:  # the sample label (micropl label) survives a resume
            dst.attrs["sample"] = src.attrs["sample"]
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
