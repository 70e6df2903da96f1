"""Appending to a session file: :class:`SessionWriter` (create, append, resume)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from micropl import __version__
from micropl.acquisition.storage.codec import _encode, _Encoded, _unwrap
from micropl.acquisition.storage.layout import _create_table, _write_header, pack_values
from micropl.acquisition.storage.locking import SessionLock, _try_lock, writer_alive
from micropl.acquisition.storage.output import _exists_error, _output_error, _tmp_path, place_new
from micropl.acquisition.storage.reader import SessionReader
from micropl.acquisition.storage.schema import SchemaError, TableSpec, registered_tables
from micropl.errors import FileFormatError, SessionBusyError
from micropl.records import RunStop

log = logging.getLogger(__name__)

__all__ = ["SessionWriter"]

# No chunk cache in the writer: an append to an uncompressed chunk then goes straight to
# its place in the file instead of rewriting the whole cached chunk at every flush
# (measured 1.5-3x faster for per-record flushes; benchmarks/bench_storage.py).
_WRITER_RDCC_BYTES = 0
_INTERRUPTED_REASON = ("interrupted: the session writer stopped without closing this run "
                       "(crash or kill); closed on resume")


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


class _Values(NamedTuple):
    """Values to append to one values dataset: its new data from index ``start``."""

    start: int
    data: np.ndarray


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

    def build(self, items: Sequence[_Encoded]) -> tuple[np.ndarray, dict[str, _Values]]:
        """Row array and the values to append for ``items`` (offsets after the current end).

        Compressed columns get each record on a chunk boundary, zeros between
        (see :func:`~micropl.acquisition.storage.layout.pack_values`).
        """
        rows = np.zeros(len(items), dtype=self.rows.dtype)
        for name in ("seq", "run_id", "qd_id", "kind"):
            rows[name] = [it.row[name] for it in items]
        chunks: dict[str, _Values] = {}
        for col in self.spec.columns:
            if not col.variable:
                rows[col.name] = [it.row[col.name] for it in items]
                continue
            flats = [it.flats[col.name] for it in items]
            start, offsets, data = pack_values(col, flats, self.lengths[col.name],
                                               self.values[col.name].chunks[0])
            rows[f"{col.name}_offset"] = offsets
            rows[f"{col.name}_size"] = [a.size for a in flats]
            if col.has_shape:
                shape_field = rows[f"{col.name}_shape"]
                shape_field[...] = -1
                for i, it in enumerate(items):
                    shape = it.shapes[col.name]
                    shape_field[i, : len(shape)] = shape
            chunks[col.name] = _Values(start, data)
        return rows, chunks

    def write_values(self, chunks: Mapping[str, _Values]) -> list[h5py.Dataset]:
        """Append the values (not yet referenced by any row); the datasets touched."""
        touched = []
        for name, values in chunks.items():
            if values.data.size == 0:
                continue
            ds = self.values[name]
            _append(ds, values.start, values.data)
            self.lengths[name] = values.start + values.data.size
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
    def broken(self) -> bool:
        """True after a write failed (nothing more is written; close and resume)."""
        return self._broken is not None

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
