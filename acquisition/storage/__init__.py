"""Crash-safe HDF5 session files (see :mod:`micropl.acquisition.storage.reader`)."""

from micropl.acquisition.storage.reader import (
    OutputExistsError,
    OutputPathError,
    QDData,
    QDInfo,
    RunInfo,
    SessionBusyError,
    SessionLock,
    SessionReader,
    SessionWriter,
    StoredRecord,
    SurveyState,
    place_new,
    prepare_output,
    write_new_file,
    writer_alive,
)

__all__ = [
    "SessionBusyError",
    "SessionLock",
    "OutputPathError",
    "OutputExistsError",
    "prepare_output",
    "place_new",
    "write_new_file",
    "writer_alive",
    "SessionWriter",
    "SessionReader",
    "StoredRecord",
    "RunInfo",
    "QDInfo",
    "QDData",
    "SurveyState",
]
