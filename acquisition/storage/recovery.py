"""Opening session files that a writer left behind: SWMR reads, a full disk's short file.

:func:`_open_swmr_read` opens a file being written (or left by a killed
writer; one metadata read attempt unless a writer lives); :func:`_stored_eof`
reads HDF5's recorded end of file and :class:`_ZeroPaddedFile` lets HDF5 open a
file shorter than that (a write failed on a full disk) without modifying it.
"""

from __future__ import annotations

import ctypes
import errno
import io
import logging
import os
import struct
from pathlib import Path
from typing import Any

import h5py

log = logging.getLogger(__name__)


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
