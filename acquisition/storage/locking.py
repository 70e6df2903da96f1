"""The session writer's lock: one live writer (or resume) per session file.

:class:`SessionLock` takes the lock of an existing file, :func:`writer_alive`
probes it; :class:`~micropl.acquisition.storage.writer.SessionWriter` holds it
for its whole life.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

from micropl.acquisition.storage.output import _output_error
from micropl.errors import SessionBusyError

__all__ = ["SessionBusyError", "SessionLock", "writer_alive"]


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
