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

from micropl.acquisition.storage.locking import SessionLock, writer_alive
from micropl.acquisition.storage.output import (
    OutputExistsError,
    OutputPathError,
    place_new,
    prepare_output,
    write_new_file,
)
from micropl.acquisition.storage.reader import SessionReader
from micropl.acquisition.storage.views import QDData, QDInfo, RunInfo, StoredRecord, SurveyState
from micropl.acquisition.storage.writer import SessionWriter

__all__ = [
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
