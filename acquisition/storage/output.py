"""New output files: checked before any work, built under a temporary name, placed exclusively.

:func:`prepare_output` checks early that a new file can be created,
:func:`place_new` gives a complete temporary file its final name only if that
name is free, and :func:`write_new_file` does both around a writer callback.
micropl never overwrites a file.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

from micropl.errors import UserError

__all__ = [
    "OutputPathError",
    "OutputExistsError",
    "prepare_output",
    "place_new",
    "write_new_file",
]


class OutputPathError(UserError):
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
