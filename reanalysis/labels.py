"""The sample label of a session: one attribute of the file, ``sample``.

Given at the survey (``micropl survey --sample NAME``) or later (``micropl label
SESSION NAME``); the sessions of one study are grouped by it (``micropl stats --by
sample``). Writing it takes the session's writer lock first
(:class:`~micropl.acquisition.storage.SessionLock`): it is refused while a survey or a
resume writes the file, and it changes that one attribute and nothing else.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py

from micropl.acquisition.storage import SessionLock, SessionReader
from micropl.errors import AnalysisInputError, FileFormatError

log = logging.getLogger(__name__)

__all__ = ["MAX_LABEL_CHARS", "check_label", "read_sample", "write_sample"]

#: Longest sample label, characters.
MAX_LABEL_CHARS = 200


def check_label(name: str) -> str:
    """``name`` as a sample label (surrounding spaces removed).

    Raises
    ------
    AnalysisInputError
        When it is empty, longer than :data:`MAX_LABEL_CHARS` or holds control
        characters (a newline, a tab).
    """
    label = str(name).strip()
    if not label:
        raise AnalysisInputError("sample label is empty: give a name, e.g. 'CsPbBr3-A'")
    if len(label) > MAX_LABEL_CHARS:
        raise AnalysisInputError(f"sample label has {len(label)} characters: at most "
                                 f"{MAX_LABEL_CHARS}")
    if any(not ch.isprintable() for ch in label):
        raise AnalysisInputError(f"sample label {label!r} holds control characters: use "
                                 "letters, digits, spaces and punctuation")
    return label


def read_sample(reader: SessionReader) -> str:
    """The sample label of an open session ("" when it has none)."""
    return reader.sample


def write_sample(path: str | os.PathLike[str], name: str) -> str:
    """Set the sample label of the session file ``path``; returns the label stored.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    SessionBusyError
        When a survey or a resume writes the file (an :class:`AnalysisInputError`).
    FileFormatError
        When ``path`` is not a micropl session file, or was left open by a writer that
        stopped (then resume it first).
    AnalysisInputError
        When ``name`` is not a valid label (:func:`check_label`).
    """
    label = check_label(name)
    path = Path(path)
    with SessionLock.acquire(path):
        with SessionReader(path, assume_no_writer=True):
            pass  # a micropl session file, readable
        try:
            # The lock is ours, so no micropl writer has the file; HDF5's own file
            # lock refuses it while another program has it open.
            with h5py.File(path, "r+") as h5:
                h5.attrs["sample"] = label
        except OSError as exc:
            raise FileFormatError(
                f"{path}: cannot write the sample label ({' '.join(str(exc).split())[:160]}); "
                "if a survey stopped without closing it, run 'micropl survey --resume' on "
                "it first; close other programs reading it") from None
    log.info("%s: sample label %r", path, label)
    return label
