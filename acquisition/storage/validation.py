"""Validation of a stored session: its structure, and stored sizes, extents and lengths.

A file's claims (dataset extents, row offsets and sizes, chunk addresses) are
checked against what it actually holds before anything is read, so a damaged
or cut file fails with one :class:`~micropl.errors.FileFormatError`
line instead of returning fill values. :class:`_StoredChecks` holds the checks;
:class:`~micropl.acquisition.storage.reader.SessionReader` inherits them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from micropl.acquisition.storage.schema import FORMAT_NAME, FORMAT_VERSION, SAME_LENGTH, TableSpec
from micropl.errors import FileFormatError

log = logging.getLogger(__name__)


def _not_session(path: Path, why: str) -> FileFormatError:
    return FileFormatError(f"{path}: not a micropl session file ({' '.join(why.split())})")



class _StoredChecks:
    """The reader's checks of a file's structure and of the data it claims to hold."""

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


    def _check_stored(self, what: str, ds: h5py.Dataset, n_elements: int) -> None:
        """Refuse reading ``n_elements`` of ``ds`` when the file cannot hold them.

        A dataset's extent is only a claim: HDF5 returns fill values for what
        was never written. Reading is bounded by the bytes actually allocated
        to the dataset (for compressed ones: by its stored chunks, uncompressed),
        so memory and time stay bounded whatever the file claims.
        """
        need = n_elements * ds.dtype.itemsize
        if need <= 0:
            return
        try:
            filtered = ds.id.get_create_plist().get_nfilters() > 0
            if filtered:  # compressed: bounded by the chunks actually stored
                stored = int(ds.id.get_num_chunks()) * int(np.prod(ds.chunks)) * \
                    ds.dtype.itemsize
            else:
                stored = int(ds.id.get_storage_size())
        except (OSError, RuntimeError) as exc:
            raise _not_session(self.path, f"{what} is damaged: {exc}") from None
        if need > stored:
            raise _not_session(self.path, f"{what} claims {n_elements} elements "
                                          f"({need} bytes), more than the file holds "
                                          f"({stored} bytes{' uncompressed' if filtered else ''})")

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
        filtered = ds.id.get_create_plist().get_nfilters() > 0
        for k in range(lo // chunk, (hi - 1) // chunk + 1):
            info = self._chunk_info(ds, k * chunk)
            used = min(hi, (k + 1) * chunk) - k * chunk
            if info.byte_offset is None:
                return max(lo, k * chunk)
            if filtered:  # a compressed chunk is usable whole or not at all
                if info.byte_offset + info.size > size:
                    return max(lo, k * chunk)
                continue
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
