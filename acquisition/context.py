"""What a procedure sees of a run: :class:`RunContext` (DESIGN §5).

A procedure's ``run(ctx)`` gets a :class:`RunContext`. Its surface is small and
the same for every procedure:

========================  ==========================================================
``setup``                 the instruments (the tagger guarded by the APD interlock,
                          the laser latched off after a trip)
``emit(record, **tags)``  publish a record (storage, displays, the live previews)
``checkpoint()``          pause here when asked; raise :class:`Aborted` on an abort
``sleep(duration_s)``     wait clock time, checkpointing
``progress(stage, ...)``  report progress (CLI bar, GUI)
``log``                   the run's logger (messages prefixed with the run id)
``run_id``, ``qd_id``     where the records belong (bookkeeping records carry them)
``scoped(**tags)``        a child context whose records carry more tags (a QD)
``guard(record)``         the interlocks on a raw record that is not stored
``clock``                 the run's clock (virtual in fast mode), for time stamps
``analysis``              the session's fit settings: a procedure fits its own data
========================  ==========================================================

A procedure computes what it returns from its own data (with the functions of
:mod:`micropl.acquisition.results`) and emits it as the final record(s) of its
stage; it never waits for storage or reads results back from the stream.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from micropl.acquisition.results import AnalysisSettings
from micropl.records import TagChunk

if TYPE_CHECKING:  # the runner makes contexts; this module does not import it
    from micropl.acquisition.interlock import ApdRateInterlock, RunSetup
    from micropl.acquisition.runner import Runner

__all__ = ["Aborted", "Progress", "RunContext", "RunControl"]


class Aborted(Exception):
    """Raised by :meth:`RunContext.checkpoint` (and ``emit``) when the run is to stop.

    Attributes
    ----------
    reason : str
        Why (an abort asked by the user, a signal, an interlock, a storage failure).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Progress:
    """Progress of the current run (published on the stream; not stored).

    Attributes
    ----------
    run_id : int
    stage : str
    done, total : float
        Work done and to do in the stage's own unit (s of data, frames, QDs);
        ``total`` None when unknown.
    t_s : float
        Clock time, s.
    """

    run_id: int
    stage: str
    done: float
    total: float | None
    t_s: float
    transient = True


class RunControl:
    """Pause/abort flags of one run, shared by the runner and the worker thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.paused = False
        self.abort_reason: str | None = None
        self.abort_is_failure = False
        self.interlock: ApdRateInterlock | None = None  # made at the first tag chunk
        self.evidence: TagChunk | None = None  # the chunk that tripped, until published
        self.run_setup: RunSetup | None = None  # what the run's procedures see as the setup


class _RunLog(logging.LoggerAdapter):
    """Log records of one run, prefixed with its id (one logger for all runs)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"run {self.extra['run_id']}: {msg}", kwargs


class RunContext:
    """What a procedure sees: the setup, emit, checkpoint, sleep, progress and log.

    Made by the :class:`~micropl.acquisition.runner.Runner` for each run; child
    contexts made with :meth:`scoped` share the run's control flags and tag the
    records they emit (e.g. with the QD they belong to).

    Attributes
    ----------
    setup : Setup
        The instruments as the run sees them: ``setup.tagger.read`` runs the APD
        over-rate interlock, ``setup.laser`` refuses emission after a trip.
    run_id : int
        The run's number in its session.
    log : logging.LoggerAdapter
        The run's logger (``micropl.run``; messages start with ``run N:``).
    """

    def __init__(self, runner: Runner, run_id: int, control: RunControl,
                 tags: dict[str, Any] | None = None) -> None:
        self._runner = runner
        self._control = control
        self._tags: dict[str, Any] = dict(tags or {})
        self.run_id = run_id
        self.setup = runner.run_setup_for(control)  # tagger guarded, laser latched
        self.log = _RunLog(logging.getLogger("micropl.run"), {"run_id": run_id})

    # ------------------------------------------------------------------ where records belong
    @property
    def qd_id(self) -> int:
        """The QD this context's records belong to (-1: none)."""
        return int(self._tags.get("qd_id", -1))

    @property
    def clock(self) -> Any:
        """The run's clock (``now()`` and ``sleep()`` in s; virtual in fast mode)."""
        return self._runner.setup.clock

    @property
    def analysis(self) -> AnalysisSettings:
        """The session's fit settings: spectrum model, g² bin (ps) and side peaks."""
        return self._runner.analysis

    def scoped(self, **tags: Any) -> RunContext:
        """A context whose records also carry ``tags`` (e.g. ``qd_id=3``).

        Parameters
        ----------
        **tags
            ``qd_id`` (int) and ``kind`` (str) are stored with every record.
        """
        return RunContext(self._runner, self.run_id, self._control, {**self._tags, **tags})

    # ------------------------------------------------------------------ records
    def emit(self, record: Any, **tags: Any) -> None:
        """Publish ``record``, tagged with this context's tags and ``tags``; never blocks.

        Watchdogs check raw data first; a tripped watchdog makes the setup safe
        and raises :class:`Aborted` — the record is still published, so the
        data that showed the fault is kept. A tag chunk the guarded tagger
        already checked is not counted again. After a trip (here, in a tagger
        read, or an emergency stop) every emit raises :class:`Aborted`; so does
        every emit after a fault outside the procedure failed the run (storage
        failed or cannot keep up), so that it stops at once.

        Parameters
        ----------
        record : object
            A record (a ``Frame``, ``Spectrum``, ``TagChunk``, a fit...).
        **tags
            ``kind`` (str; e.g. ``"accumulated"``) and ``qd_id`` (int).

        Raises
        ------
        Aborted
            After publishing, when the run is to stop.
        """
        reason = self._runner.watchdog(record)
        all_tags = {**self._tags, **tags}
        if record is self._control.evidence:
            self._control.evidence = None  # published here, with the procedure's tags
        self._runner.publish(self.run_id, record, all_tags)
        self._stop_if_tripped(reason)
        control = self._control
        if control.abort_is_failure and control.abort_reason is not None:
            raise Aborted(control.abort_reason)

    def guard(self, record: Any) -> None:
        """Run the watchdogs on a raw record that is not stored (e.g. map pixels).

        Raises
        ------
        Aborted
            When a watchdog tripped (the laser is then off).
        """
        self._stop_if_tripped(self._runner.watchdog(record))

    def _stop_if_tripped(self, reason: str | None) -> None:
        if reason is not None and self._runner.tripped is None:
            self._runner.trip(reason)
        reason = reason or self._runner.tripped
        if reason is not None:
            self._keep_evidence()
            raise Aborted(reason)

    def _keep_evidence(self) -> None:
        """Publish the tag chunk that tripped the interlock when the procedure did not.

        A read whose result a procedure discards (e.g. the tags of a scanner move)
        can trip the interlock; that chunk is stored with kind ``interlock``.
        """
        chunk, self._control.evidence = self._control.evidence, None
        if chunk is not None:
            self._runner.publish(self.run_id, chunk, {**self._tags, "kind": "interlock"})

    # ------------------------------------------------------------------ control
    def checkpoint(self) -> None:
        """Block while paused; raise :class:`Aborted` when an abort was asked.

        While paused with the laser on, the streaming tagger is read and checked
        by the APD interlock.
        """
        control = self._control
        while True:
            with control.cond:
                reason = control.abort_reason
                if not control.paused or reason is not None:
                    break
                control.cond.wait(0.1)
            self._runner.watch_paused(control)  # paused, the laser may be on: watch the APDs
        if reason is not None:
            self._keep_evidence()
            raise Aborted(reason)

    def sleep(self, duration_s: float, slice_s: float = 0.05) -> None:
        """Wait ``duration_s`` of clock time, checkpointing at least every ``slice_s``.

        Parameters
        ----------
        duration_s : float
            Clock time to wait, s (virtual on the fast clock: no wall time).
        slice_s : float
            Longest wait between checkpoints on the real clock, s.
        """
        clock = self.clock
        end = clock.now() + duration_s
        while True:
            self.checkpoint()
            left = end - clock.now()
            if left <= 0:
                return
            clock.sleep(min(left, slice_s) if clock.mode == "real" else left)

    def progress(self, stage: str, done: float = 0.0, total: float | None = None) -> None:
        """Report progress of the current stage (shown by the CLI and GUI; not stored).

        Parameters
        ----------
        stage : str
            What is being done (``"g2"``, ``"QD 3/10"``).
        done, total : float
            Work done and to do, in the stage's unit; ``total`` None when unknown.
        """
        self._runner.stream.publish(Progress(self.run_id, stage, float(done),
                                             None if total is None else float(total),
                                             self.clock.now()))
