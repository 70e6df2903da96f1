"""A measurement session: setup, stream, runner, live previews and storage, wired.

The procedures compute and emit their own results (with the session's
:class:`~micropl.acquisition.results.AnalysisSettings`); storage writes every
record that is not transient or a ``live`` preview, on its own thread. Emitting
never waits for storage: the storage queue has a memory budget
(``storage_queue_mb``), and a writer that fails, stops or falls that far behind
fails the run (nothing is lost silently).

Scripts use it through :func:`run`::

    from micropl.acquisition import load_setup, run
    from micropl.acquisition.procedures import G2

    with load_setup(clock_mode="fast") as setup:
        result = run(G2(duration_s=10), setup, out="runs/g2.h5")
    print(result.status, result.value.g2_0)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from micropl.acquisition import logs
from micropl.acquisition.live import LiveAnalysis
from micropl.acquisition.results import AnalysisSettings
from micropl.acquisition.runner import Procedure, Runner, RunResult
from micropl.acquisition.setup import Setup, load_setup
from micropl.acquisition.signals import Interrupted, SignalGuard
from micropl.acquisition.storage.tags import raw_tag_store
from micropl.acquisition.stream import Stream
from micropl.records import Tagged

log = logging.getLogger(__name__)

__all__ = ["Session", "run"]


def is_stored(item: Any) -> bool:
    """Whether storage keeps ``item``: everything but transient and ``live`` records."""
    record = item.record if isinstance(item, Tagged) else item
    if getattr(record, "transient", False):
        return False
    return not (isinstance(item, Tagged) and item.kind == "live")


class Session:
    """Everything a measurement needs, wired together.

    Parameters
    ----------
    setup : Setup
        Open instruments.
    out : path, optional
        Session file to write (HDF5). None: nothing is stored.
    analysis : AnalysisSettings, optional
        Live fit settings.
    resume : bool
        Continue an existing session file instead of creating one.
    resume_lock : SessionLock, optional
        The file's lock, taken by the caller before it read the file (resume).
    storage_queue_mb : float
        Memory budget of the records waiting for the writer, MB: beyond it the
        run fails ("storage cannot keep up") rather than acquisition waiting.
    raw_tags : str, optional
        Which raw time tags are stored (``all``, ``none``, ``around-peaks``);
        default the setup's ``storage.raw_tags``.

    Raises
    ------
    OutputExistsError, OutputPathError
        When ``out`` exists or cannot be created (a new session never
        replaces a file, also when another process creates it meanwhile).
    SessionBusyError
        When resuming a file that another live process writes.
    """

    def __init__(self, setup: Setup, out: str | Path | None = None, *,
                 analysis: AnalysisSettings | None = None, resume: bool = False,
                 resume_lock: Any = None, storage_queue_mb: float = 1024.0,
                 raw_tags: str | None = None) -> None:
        self.setup = setup
        self.stream = Stream()
        self.analysis = analysis or AnalysisSettings()
        self.runner = Runner(setup, self.stream, analysis=self.analysis)
        self.live = LiveAnalysis(self.stream.publish, self.analysis,
                                 rep_rate_hz=setup.laser.rep_rate_hz,
                                 channels=setup.apd_channels)
        # Previews for displays only; a failing preview is logged, acquisition goes on.
        self.stream.attach("live-analysis", self.live.handle, batch=True)
        self.writer = None
        self._storage_error: BaseException | None = None
        self._tags = raw_tag_store(setup, self.live.settings, raw_tags)
        self.path = None if out is None else Path(out)
        if self.path is not None:
            try:
                self.writer = self._open_writer(self.path, resume, resume_lock)
            except BaseException:
                self.stream.close()  # no session: stop the subscriber threads again
                raise
            self.runner.reserve_run_ids(self.writer.next_run_id())
            self.stream.attach("storage", self._store, on_error=self._storage_failed,
                               batch=True, max_bytes=int(storage_queue_mb * 1e6),
                               on_overflow=self._storage_behind)

    def _open_writer(self, path: Path, resume: bool, lock: Any) -> Any:
        from micropl.acquisition.storage import SessionWriter, prepare_output

        if resume:
            return SessionWriter.resume(path, lock=lock)
        prepare_output(path, hint="choose another file name")
        return SessionWriter.create(path, config_text=self.setup.config_text,
                                    instruments_json=self.setup.snapshot_json(),
                                    truth=self.setup.truth())

    def _store(self, items: list[Any]) -> None:
        # Everything queued is appended and flushed together: one flush per batch.
        self.writer.append_many(self._tags.process(item for item in items if is_stored(item)))

    def _storage_failed(self, items: Any, exc: BaseException) -> None:
        # Nothing may be lost: stop the run rather than go on without storage.
        self._storage_error = exc
        self.runner.abort(f"storage failed: {exc}", failed=True)

    def _storage_behind(self, reason: str) -> None:
        # Acquisition never waits for the writer: past the budget, the run fails.
        self.runner.abort(f"storage cannot keep up: {reason}; the records queued are "
                          "still written", failed=True)

    def on(self, handler: Callable[[Any], None], *, maxlen: int | None = 1000) -> Any:
        """Attach a display subscriber (coalescing: keeps the newest ``maxlen``)."""
        return self.stream.attach(getattr(handler, "__name__", "display"), handler,
                                  maxlen=maxlen)

    def run(self, procedure: Procedure) -> RunResult:
        """Run ``procedure`` to its end; a stop signal aborts it cleanly (then raises).

        See :meth:`Runner.run`: SIGINT, SIGTERM and SIGHUP switch the laser off,
        abort the run naming the signal and raise
        :class:`~micropl.acquisition.signals.Interrupted` after its cleanup.
        The CLI's default log file goes beside the session file.
        """
        if self.path is not None:
            logs.note_session_file(self.path)
        return self.runner.run(procedure)

    def close(self) -> None:
        """Stop the run if any, drain the stream, close the file (instruments stay open)."""
        if self.runner.busy:
            self.runner.abort("session closed")
            self.runner.wait()
        self.stream.flush(timeout_s=60.0)
        self.stream.close()
        if self.writer is not None:
            try:
                # after a failed write (reported, the run failed) resume repairs the file
                if not self.writer.broken and self._storage_error is None:
                    self.writer.append_many(self._tags.close())
            finally:
                self.writer.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run(procedure: Procedure, setup: Setup | None = None, *, out: str | Path | None = None,
        analysis: AnalysisSettings | None = None) -> RunResult:
    """Run one procedure and return how it ended (the script entry point).

    Called in the main thread, SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the
    run as the CLI does: laser off at once, the run stored as ``aborted`` with
    the signal in the reason, the file closed (see
    :mod:`micropl.acquisition.signals`); signals during that cleanup are
    ignored. Then SIGINT raises ``KeyboardInterrupt`` (an
    :class:`~micropl.acquisition.signals.Interrupted`), and SIGTERM or SIGHUP
    raise ``SystemExit(128 + signal number)``, so an unhandled one ends the
    script with the shell's exit code (143, 129).

    Parameters
    ----------
    procedure : Procedure
        E.g. ``Survey(max_qds=5)``.
    setup : Setup, optional
        Open instruments; the simulated setup in fast mode when None (closed after).
    out : path, optional
        Session file to write.
    analysis : AnalysisSettings, optional
        Live fit settings.
    """
    guard = SignalGuard()
    with guard:
        try:
            result = _run_once(procedure, setup, out, analysis)
        except Interrupted as exc:
            interrupted: Interrupted | None = exc
        else:
            interrupted = guard.pending()  # arrived after the run, while closing
    if interrupted is None:
        return result
    log.warning("%s: the run was stopped and the instruments made safe", interrupted.reason)
    if interrupted.name == "SIGINT":
        raise interrupted
    raise SystemExit(interrupted.exit_code) from interrupted


def _run_once(procedure: Procedure, setup: Setup | None, out: str | Path | None,
              analysis: AnalysisSettings | None) -> RunResult:
    own = setup is None
    setup = setup or load_setup(clock_mode="fast")
    try:
        with Session(setup, out, analysis=analysis) as session:
            return session.run(procedure)
    finally:
        if own:
            setup.close()
