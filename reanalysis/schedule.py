"""Running the re-analysis tasks on Dask: here, or on a cluster.

* ``"processes"`` (the default): Dask's local process pool on this machine (nothing
  to start), ``workers`` processes;
* ``"threads"``: Dask's local thread pool (the fits release the GIL, HDF5 reads do not);
* ``"sync"``: Dask's synchronous scheduler, one task after the other (debugging);
* ``"tcp://HOST:PORT"`` (or ``tls://``, ``ws://``...): the scheduler of a Dask
  distributed cluster (``dask scheduler`` and ``dask worker`` on the nodes, the session
  files on a file system every node mounts at the same path).

Each task is one chunk of one session's QDs (:func:`~micropl.reanalysis.tasks.
analyze_chunk`); it opens the file where it lies and sends back only its rows (a few kB).
The rows are sorted by session and QD, so the table is the same whatever the scheduler
and the number of workers. A QD whose analysis fails is a row with status ``failed``
and ``task_error`` true; a task whose worker is lost gives such a row for each of its
QDs. The others go on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from micropl.errors import AnalysisInputError
from micropl.reanalysis.settings import STATUS_FAILED, ReanalysisSettings
from micropl.reanalysis.table import sorted_rows
from micropl.reanalysis.tasks import (
    DEFAULT_CHUNK_QDS,
    QDChunk,
    analyze_chunk,
    sessions_chunks,
)

log = logging.getLogger(__name__)

__all__ = ["LOCAL_SCHEDULERS", "Reanalysis", "check_scheduler", "reanalyze", "run_chunks"]

#: The local schedulers (Dask's names) and what they mean.
LOCAL_SCHEDULERS: dict[str, str] = {"processes": "processes", "threads": "threads",
                                    "sync": "synchronous", "synchronous": "synchronous"}
#: How long to wait for a distributed scheduler to answer, s.
CONNECT_TIMEOUT_S = 10.0
_ADDRESS = re.compile(r"^(tcp|tls|ws|wss|inproc|ucx)://[^\s/:]+(:\d{1,5})?/?$")

#: ``progress(done, total)``: called after each task.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Reanalysis:
    """What a re-analysis gave.

    Attributes
    ----------
    rows : list of dict
        One row per QD, sorted by session and QD (:data:`~micropl.reanalysis.table.COLUMNS`).
    n_tasks : int
        Tasks run.
    scheduler : str
        Where they ran (``processes``, ``threads``, ``synchronous`` or the address).
    workers : int or None
        Local workers (None: the cluster's).
    """

    rows: list[dict[str, Any]]
    n_tasks: int
    scheduler: str
    workers: int | None

    @property
    def failed_tasks(self) -> list[dict[str, Any]]:
        """The rows of QDs whose analysis raised (``task_error``), named by session and QD."""
        return [r for r in self.rows if r.get("task_error")]


def check_scheduler(scheduler: str) -> str:
    """``scheduler`` as Dask's name of a local scheduler, or a cluster address.

    Raises
    ------
    AnalysisInputError
        For anything else (one line, naming the choices).
    """
    name = str(scheduler).strip()
    if name.lower() in LOCAL_SCHEDULERS:
        return LOCAL_SCHEDULERS[name.lower()]
    if _ADDRESS.match(name):
        port = name.rstrip("/").rsplit(":", 1)[-1]
        if port.isdigit() and not 0 < int(port) < 65536:
            raise AnalysisInputError(f"--scheduler {name}: port {port} is not in 1-65535")
        return name.rstrip("/")
    raise AnalysisInputError(f"--scheduler {name!r}: give processes, threads, sync, or a Dask "
                             "scheduler address tcp://HOST:PORT")


def reanalyze(sessions: Sequence[str | os.PathLike[str]],
              settings: ReanalysisSettings | None = None, *, scheduler: str = "processes",
              workers: int | None = None, chunk_qds: int = DEFAULT_CHUNK_QDS,
              progress: ProgressCallback | None = None) -> Reanalysis:
    """Re-analyse every QD of ``sessions`` with ``settings``.

    Parameters
    ----------
    sessions : sequence of path
        Session files (each is opened once here to list its QDs).
    settings : ReanalysisSettings, optional
        Default: the sessions' own settings.
    scheduler : str
        ``processes``, ``threads``, ``sync`` or ``tcp://HOST:PORT`` (see the module).
    workers : int, optional
        Local workers (default: the CPUs); ignored on a cluster.
    chunk_qds : int
        QDs per task.
    progress : callable, optional
        ``progress(done, total)`` after each task.

    Raises
    ------
    FileNotFoundError, FileFormatError
        When a session is missing or not a session file (before any task runs).
    AnalysisInputError
        For a bad scheduler, worker count or unreachable cluster.
    """
    settings = settings or ReanalysisSettings()
    where = check_scheduler(scheduler)
    if workers is not None and workers < 1:
        raise AnalysisInputError(f"--workers must be >= 1, got {workers}")
    if not sessions:
        raise AnalysisInputError("no session files given")
    seen: dict[str, str] = {}
    for session in sessions:
        key = os.path.realpath(os.fspath(session))
        if key in seen:
            raise AnalysisInputError(f"{session}: given twice (also as {seen[key]}); give "
                                     "each session once")
        seen[key] = str(session)
    chunks = sessions_chunks(sessions, chunk_qds)
    rows = run_chunks(chunks, settings, scheduler=where, workers=workers, progress=progress)
    local = where in LOCAL_SCHEDULERS.values()
    n_workers = None if not local else 1 if where == "synchronous" \
        else workers or os.cpu_count() or 1
    return Reanalysis(sorted_rows(rows), len(chunks), where, n_workers)


def run_chunks(chunks: Sequence[QDChunk], settings: ReanalysisSettings, *,
               scheduler: str = "processes", workers: int | None = None,
               progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
    """The rows of every chunk, computed on ``scheduler`` (checked by :func:`check_scheduler`)."""
    if not chunks:
        return []
    if scheduler in LOCAL_SCHEDULERS.values():
        return _run_local(chunks, settings, scheduler, workers, progress)
    return _run_distributed(chunks, settings, scheduler, progress)


def _run_local(chunks: Sequence[QDChunk], settings: ReanalysisSettings, scheduler: str,
               workers: int | None, progress: ProgressCallback | None
               ) -> list[dict[str, Any]]:
    import dask
    from dask.callbacks import Callback

    tasks = [dask.delayed(analyze_chunk, pure=True)(chunk, settings) for chunk in chunks]
    keys = {t.key for t in tasks}
    total, done = len(tasks), [0]

    def finished(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if key in keys:
            done[0] += 1
            if progress is not None:
                progress(done[0], total)

    options: dict[str, Any] = {"scheduler": scheduler}
    if scheduler != "synchronous":
        options["num_workers"] = workers or os.cpu_count() or 1
    with Callback(posttask=finished):
        results = dask.compute(*tasks, **options)
    return [row for rows in results for row in rows]


def _run_distributed(chunks: Sequence[QDChunk], settings: ReanalysisSettings, address: str,
                     progress: ProgressCallback | None) -> list[dict[str, Any]]:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise AnalysisInputError(f"--scheduler {address}: cannot reach the Dask scheduler "
                                 f"({' '.join(str(exc).split())[:160]}); start it with "
                                 "'dask scheduler' or check the address") from None
    rows: list[dict[str, Any]] = []
    try:
        futures = client.map(analyze_chunk, list(chunks), settings=settings, pure=False)
        chunk_of = {f.key: c for f, c in zip(futures, chunks)}
        for i, future in enumerate(as_completed(futures, loop=client.loop), 1):
            try:
                rows.extend(future.result())
            except Exception as exc:  # noqa: BLE001 - a lost worker: each QD's row says so
                rows.extend(_lost(chunk_of[future.key], exc))
            if progress is not None:
                progress(i, len(futures))
    finally:
        client.close()
    return rows


def _lost(chunk: QDChunk, exc: BaseException) -> Iterable[dict[str, Any]]:
    log.error("%s QDs %s: task failed: %s", chunk.session, list(chunk.qd_ids), exc)
    reason = f"task failed: {type(exc).__name__}: {' '.join(str(exc).split())}"
    return [{"session": chunk.session, "qd_id": q, "status": STATUS_FAILED, "reason": reason,
             "task_error": True} for q in chunk.qd_ids]
