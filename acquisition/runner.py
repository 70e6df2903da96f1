"""The runner: one procedure at a time in a worker thread (DESIGN §5).

The runner owns pause, resume and abort, and its cleanup always runs, whatever
happened — laser off, camera and tagger stopped, scanner left in place. Every
run publishes a start document and a stop document carrying its exit status
(``completed``, ``aborted`` or ``failed``) and the reason; just before the stop
document, an instrument snapshot read back after the cleanup (the laser's
``emission_on`` as the instrument reports it).

:meth:`Runner.run` stops a run cleanly on SIGINT, SIGTERM and SIGHUP (see
:mod:`micropl.acquisition.signals`): laser off at once, run aborted with a
reason naming the signal, cleanup completed whatever else arrives.

Watchdogs run on the acquisition thread. Every tag chunk a run reads passes the
APD over-rate interlock (:mod:`micropl.acquisition.interlock`) inside the
tagger's ``read``: procedures see the setup through a
:class:`~micropl.acquisition.interlock.RunSetup` whose tagger is guarded, so a
read whose result is discarded (during a scanner move, before a dwell) is
checked too. More than ``safety.apd_max_rate_cps`` × 10 ms tags of one APD in
any 10 ms of data, a buffer overflow or an inconsistent chunk switch the laser
off before ``read`` returns; the run then stops at its next checkpoint,
``emit`` or ``guard`` (the chunk that showed the fault is still published when
the procedure emits it) and ends ``aborted`` with the reason. Until the run
ends the laser refuses to be switched on again. :meth:`RunContext.emit` runs
the watchdogs on other raw records before they are published: EM gain on a
warm sensor aborts too.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from micropl.acquisition import logs, signals
from micropl.acquisition.context import Aborted, Progress, RunContext, RunControl
from micropl.acquisition.interlock import (
    WINDOW_S,
    ApdRateInterlock,
    RunSetup,
    readback_over_rate,
)
from micropl.acquisition.logs import REPORTED_IN_RESULT
from micropl.acquisition.results import AnalysisSettings
from micropl.acquisition.setup import Setup
from micropl.acquisition.stream import Stream
from micropl.errors import InstrumentError
from micropl.records import (
    NO_ID,
    Frame,
    InstrumentSnapshot,
    QDStatus,
    QDTarget,
    RunStart,
    RunStop,
    TagChunk,
    Tagged,
)

log = logging.getLogger(__name__)

_BOOKKEEPING = (RunStart, RunStop, QDTarget, QDStatus, InstrumentSnapshot)

__all__ = ["Aborted", "Procedure", "Progress", "RunContext", "RunResult", "Runner", "RunState"]


class Procedure(Protocol):
    """A pydantic parameter model with a ``run(ctx)`` method."""

    name: str

    def run(self, ctx: RunContext) -> Any: ...


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"


@dataclass(frozen=True)
class RunResult:
    """How a run ended.

    Attributes
    ----------
    run_id : int
    procedure : str
    status : str
        ``completed``, ``aborted`` or ``failed``.
    reason : str
        Empty when completed.
    value : Any
        What the procedure's ``run`` returned (None unless completed).
    started_s, ended_s : float
        Clock times of the start and the end of the run, in s.
    """

    run_id: int
    procedure: str
    status: str
    reason: str
    value: Any
    started_s: float
    ended_s: float

    @property
    def ok(self) -> bool:
        return self.status == "completed"


class Runner:
    """Runs procedures on a setup, one at a time, in a worker thread.

    Parameters
    ----------
    setup : Setup
        The instruments.
    stream : Stream, optional
        Where records go; a new one by default.
    apd_max_rate_cps : float, optional
        Protection threshold; the setup's ``safety.apd_max_rate_cps`` by default.
    analysis : AnalysisSettings, optional
        The fit settings procedures compute their results with
        (:attr:`RunContext.analysis`); the defaults when None.
    """

    #: Width of the sliding window in which the APD over-rate interlock measures rates, s.
    RATE_WINDOW_S = WINDOW_S
    #: How often :meth:`run` looks for a stop signal, in s (the laser goes off within it).
    SIGNAL_POLL_S = 0.02
    #: How long the end of a run waits for storage to handle its records, in s.
    STORE_TIMEOUT_S = 60.0

    def __init__(self, setup: Setup, stream: Stream | None = None, *,
                 apd_max_rate_cps: float | None = None,
                 analysis: AnalysisSettings | None = None) -> None:
        self.setup = setup
        self.stream = stream or Stream()
        safety = setup.config.safety
        self.apd_max_rate_cps = float(apd_max_rate_cps or safety.apd_max_rate_cps)
        self.camera_max_temperature_c = float(safety.camera_max_temperature_c)
        self.analysis = analysis or AnalysisSettings()
        self._thread: threading.Thread | None = None
        self._control = RunControl()
        self._result: RunResult | None = None
        self._done = threading.Event()
        self._done.set()
        self._next_run_id = 1
        self._state = RunState.IDLE
        self._lock = threading.Lock()
        self.tripped: str | None = None
        #: Cleanup steps that failed at the end of the last run (empty: the setup is safe).
        self.cleanup_problems: list[str] = []

    # ------------------------------------------------------------------ wiring
    def publish(self, run_id: int, record: Any, tags: dict[str, Any]) -> None:
        """Publish an emitted record, in a :class:`Tagged` envelope naming its run and QD.

        Bookkeeping records (``RunStart``, ``QDStatus``...) carry their own ids
        and are published as they are.
        """
        if isinstance(record, _BOOKKEEPING):
            self.stream.publish(record)
            return
        self.stream.publish(Tagged(record, run_id=run_id, qd_id=int(tags.get("qd_id", NO_ID)),
                                   kind=str(tags.get("kind", ""))))

    def reserve_run_ids(self, first: int) -> None:
        """Number the next run ``first`` (a resumed session continues its numbering)."""
        self._next_run_id = max(self._next_run_id, int(first))

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> RunState:
        with self._lock:
            return self._state

    @property
    def busy(self) -> bool:
        """True while a run (or its cleanup) is in progress."""
        return not self._done.is_set()

    def start(self, procedure: Procedure, *, on_start: Callable[[int], None] | None = None,
              run_id: int | None = None) -> int:
        """Start ``procedure`` in the worker thread; returns its run id.

        Raises
        ------
        RuntimeError
            A run is in progress.
        ParameterError
            (a ``RuntimeError`` and a user error) The procedure's parameters are
            outside what the instruments accept (its ``check``): nothing ran, no
            run id was used, nothing is stored.
        """
        if self.busy:
            raise RuntimeError("a run is already in progress; abort it or wait")
        check = getattr(procedure, "check", None)
        if check is not None:  # pre-flight: before the laser goes on, before any move
            check(self.setup, analysis=self.analysis)
        with self._lock:
            rid = self._next_run_id if run_id is None else run_id
            self._next_run_id = rid + 1
            self._control = RunControl()
            self._state = RunState.RUNNING
            self._result = None
            self.tripped = None
        self._done.clear()
        self._thread = threading.Thread(target=self._work, args=(procedure, rid, on_start),
                                        name=f"run-{rid}", daemon=True)
        self._thread.start()
        return rid

    def pause(self) -> None:
        """Pause at the next checkpoint."""
        with self._control.cond:
            self._control.paused = True
        with self._lock:
            if self._state is RunState.RUNNING:
                self._state = RunState.PAUSED

    def resume(self) -> None:
        """Continue a paused run."""
        with self._control.cond:
            self._control.paused = False
            self._control.cond.notify_all()
        with self._lock:
            if self._state is RunState.PAUSED:
                self._state = RunState.RUNNING

    def abort(self, reason: str = "aborted by the user", *, failed: bool = False) -> None:
        """Stop the run at its next checkpoint; the cleanup runs.

        With ``failed=True`` (a fault outside the procedure, e.g. storage) the run
        ends with status ``failed`` instead of ``aborted``.
        """
        with self._control.cond:
            if self._control.abort_reason is None:
                self._control.abort_reason = reason
                self._control.abort_is_failure = failed
            self._control.cond.notify_all()
        with self._lock:
            if self._state is not RunState.IDLE:
                self._state = RunState.STOPPING

    def wait(self, timeout_s: float | None = None) -> RunResult | None:
        """Block until the current run ended; its result (None on timeout)."""
        if not self._done.wait(timeout_s):
            return None
        return self._result

    def run(self, procedure: Procedure) -> RunResult:
        """Start ``procedure`` and wait for it; a stop signal aborts it cleanly, then raises.

        SIGINT (Ctrl-C), SIGTERM and SIGHUP are handled through the active
        :class:`~micropl.acquisition.signals.SignalGuard` (the CLI's), or one
        installed for the call when it is made in the main thread. On a signal
        the laser is switched off at once from this thread (not at the
        procedure's next checkpoint), the run is aborted with a reason naming
        the signal, and once its cleanup is done (its stop record stored)
        :class:`~micropl.acquisition.signals.Interrupted` is raised. Signals
        received meanwhile are logged and ignored. No run starts once a signal
        was received.

        Raises
        ------
        Interrupted
            After the cleanup of a run stopped by a signal (a KeyboardInterrupt).
        """
        with signals.guarded() as guard:
            guard.raise_pending()
            logs.go_live()
            self.start(procedure)
            try:
                while True:
                    result = self.wait(self.SIGNAL_POLL_S)
                    if result is not None:
                        return result
                    guard.raise_pending()
            except KeyboardInterrupt as exc:
                reason = exc.reason if isinstance(exc, signals.Interrupted) \
                    else "interrupted (Ctrl-C)"
                try:
                    self._stop_now(reason)
                finally:
                    self.wait()
                if isinstance(exc, signals.Interrupted):
                    exc.problems = list(self.cleanup_problems)
                raise

    def _stop_now(self, reason: str) -> None:
        """Abort the run and switch the laser off from this thread, without waiting.

        The worker may be inside a long instrument call (an exposure); the
        laser must not stay on until its next checkpoint. A failure here is
        logged; the worker's cleanup switches the laser off again and reports.
        """
        self.abort(reason)
        try:
            self.setup.laser.off()
        except Exception as exc:  # noqa: BLE001 - the worker's cleanup retries and reports
            log.error("%s: laser off failed (the run's cleanup tries again): %s", reason, exc)

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """Laser off now (from any thread), and abort the run."""
        self.trip(reason)
        self.abort(reason)

    # ------------------------------------------------------------------ watchdogs
    def watchdog(self, record: Any) -> str | None:
        """Check a raw record against the interlocks; the reason to stop, or None."""
        if isinstance(record, TagChunk):
            return self._check_apd_rate(record)
        if isinstance(record, Frame) and record.em_gain > 1:
            temperature_c = self.setup.camera.temperature_c
            if temperature_c > self.camera_max_temperature_c:
                return (f"camera '{self.setup.camera.name}' at {temperature_c:.1f} °C with EM gain "
                        f"{record.em_gain}: warmer than {self.camera_max_temperature_c:.0f} °C")
        return None

    def check_rate_readback(self, rates_cps: dict[int, float], laser_on: bool) -> str | None:
        """Rate readbacks outside runs (the GUI's idle poll): over the threshold, laser off.

        Parameters
        ----------
        rates_cps : dict of int to float
            The tagger's ``count_rates_hz()``.
        laser_on : bool
            Whether the laser reported emission with that readback.

        Returns
        -------
        str or None
            The reason the laser was switched off (and a run aborted), or None.
        """
        if not laser_on:
            return None
        reason = readback_over_rate(rates_cps, self.setup.apd_channels, self.apd_max_rate_cps)
        if reason is not None:
            self.emergency_stop(reason)
        return reason

    def _check_apd_rate(self, chunk: TagChunk) -> str | None:
        """Feed ``chunk`` to the run's sliding-window APD interlock; the reason to stop, or None.

        Per APD channel (a sync input may count faster): more than
        ``apd_max_rate_cps × RATE_WINDOW_S`` tags in any half-open window of
        ``RATE_WINDOW_S``, across chunk boundaries, trips it; so do overflows,
        missed events and inconsistent chunks (the rate is then unknown). A
        chunk already checked is not counted again.
        """
        return self._apd_interlock().check(chunk)

    def _apd_interlock(self) -> ApdRateInterlock:
        """The current run's interlock (made with the threshold in force when it starts)."""
        control = self._control
        if control.interlock is None:
            control.interlock = ApdRateInterlock(
                self.setup.apd_channels, self.apd_max_rate_cps, window_s=self.RATE_WINDOW_S,
                source=f"tagger '{getattr(self.setup.tagger, 'name', 'tagger')}'")
        return control.interlock

    def run_setup_for(self, control: RunControl) -> RunSetup:
        """What a run's procedures see as the setup: the tagger guarded, the laser latched."""
        if control.run_setup is None:
            control.run_setup = RunSetup(self.setup, self._tags_read, self._tagger_started,
                                         self._tags_merged, self._refuse_laser_on)
        return control.run_setup

    def watch_paused(self, control: RunControl) -> None:
        """While a run is paused with the laser on: read and check its streaming tagger."""
        view = control.run_setup
        if view is None or self.tripped is not None:
            return
        try:
            laser_on = bool(self.setup.laser.emission_on)
        except InstrumentError as exc:  # not known: check as if on
            log.warning("paused run: laser state unknown (%s); APD rates checked", exc)
            laser_on = True
        if laser_on:
            view.watch()

    def _tags_merged(self, merged: TagChunk, parts: list[TagChunk]) -> None:
        interlock = self._apd_interlock()
        verdicts = [interlock.verdict_of(part) for part in parts]
        interlock.remember(merged, next((v for v in verdicts if v is not None), None))
        if self._control.evidence is not None and any(p is self._control.evidence
                                                      for p in parts):
            self._control.evidence = merged

    def _tags_read(self, chunk: Any) -> None:
        """Every chunk a procedure reads: checked before the read returns; a trip stops now."""
        reason = self._apd_interlock().check(chunk, read=True)
        if reason is not None and self.tripped is None:
            self._control.evidence = chunk if isinstance(chunk, TagChunk) else None
            self.emergency_stop(reason)

    def _tagger_started(self) -> None:
        self._apd_interlock().restart()

    def _refuse_laser_on(self) -> None:
        if self.tripped is not None:
            raise Aborted(f"laser stays off for the rest of the run: {self.tripped}")

    def trip(self, reason: str) -> None:
        """Switch the laser off immediately (safety interlock)."""
        if self.tripped is None:
            self.tripped = reason
        log.error("interlock: %s", reason)
        try:
            self.setup.laser.off()
        except InstrumentError as exc:
            log.critical("interlock could not switch the laser off: %s", exc)

    # ------------------------------------------------------------------ worker
    def _work(self, procedure: Procedure, run_id: int,
              on_start: Callable[[int], None] | None) -> None:
        name = getattr(procedure, "name", type(procedure).__name__)
        ctx = RunContext(self, run_id, self._control)
        started = self.setup.clock.now()
        status, reason, value = "failed", "", None
        try:
            params = procedure.model_dump_json() if hasattr(procedure, "model_dump_json") \
                else json.dumps({})
            self.publish(run_id, RunStart(run_id=run_id, procedure=name, parameters_json=params,
                                          t_s=time.time()), {})
            self.publish(run_id, InstrumentSnapshot(run_id=run_id,
                                                    settings_json=self.setup.snapshot_json(),
                                                    t_s=time.time()), {})
            if on_start is not None:
                on_start(run_id)
            value = procedure.run(ctx)
            if self._control.abort_reason is not None:
                # Asked while the procedure finished without a checkpoint (the laser may
                # have been switched off under it): the run did not complete as asked.
                raise Aborted(self._control.abort_reason)
            status = "completed"
        except Aborted as exc:
            status = "failed" if self._control.abort_is_failure else "aborted"
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - any bug must end the run as failed, loudly
            status, reason = self._failure(run_id, name, exc)
        finally:
            problems = self.setup.make_safe()
            self.cleanup_problems = list(problems)
            if problems and status == "completed":
                status = "failed"
            if problems:
                reason = "; ".join(filter(None, [reason, *problems]))
            if self.tripped and status != "failed":
                status, reason = "aborted", self.tripped
            ended = self.setup.clock.now()
            try:
                self._publish_final_snapshot(run_id)
                status, reason = self._stored(status, reason)
                self.publish(run_id, RunStop(run_id=run_id, status=status, reason=reason,
                                             t_s=time.time()), {})
                self.stream.flush(timeout_s=self.STORE_TIMEOUT_S)
            finally:
                self._result = RunResult(run_id, name, status, reason,
                                         value if status == "completed" else None, started, ended)
                with self._lock:
                    self._state = RunState.IDLE
                self._done.set()
                log.info("run %d (%s) %s%s", run_id, name, status, f": {reason}" if reason else "")

    def _stored(self, status: str, reason: str) -> tuple[str, str]:
        """Wait, once at the end of the run, until its records were handled.

        Procedures never wait for storage; the run's end does, so that a
        completed result means the data were stored. A subscriber that does not
        catch up within :attr:`STORE_TIMEOUT_S`, or whose worker stopped, fails
        the run (the stop record says so). A fault reported meanwhile (storage
        failed, or fell too far behind) fails it too.
        """
        if not self.stream.flush(timeout_s=self.STORE_TIMEOUT_S):
            names = ", ".join(self.stream.behind()) or "a subscriber"
            problem = (f"{names} did not handle the run's records within "
                       f"{self.STORE_TIMEOUT_S:g} s of its end: the session file may lack "
                       "its last records")
            log.error("%s", problem)
            return "failed", "; ".join(filter(None, [reason, problem]))
        control = self._control
        if control.abort_is_failure and control.abort_reason and status != "failed":
            return "failed", control.abort_reason
        return status, reason

    def _failure(self, run_id: int, name: str, exc: Exception) -> tuple[str, str]:
        """Status and reason of a run that ``exc`` ended, logged with its traceback.

        An error that follows an abort (a signal switched the laser off under a
        running measurement) keeps the abort's status and reason, with the error
        after it. The log record carries ``reported_in_result=True``: the reason
        is in the run's result and stop record, so a front end that shows those
        (the CLI) leaves it out of the console; the log file keeps the traceback.
        """
        text = str(exc) if isinstance(exc, InstrumentError) else f"{type(exc).__name__}: {exc}"
        abort_reason = self._control.abort_reason
        if abort_reason is not None:
            status = "failed" if self._control.abort_is_failure else "aborted"
            log.info("run %d (%s) %s: %s; then %s", run_id, name, status, abort_reason, text,
                     exc_info=exc, extra=REPORTED_IN_RESULT)
            return status, f"{abort_reason} (then {text})"
        log.error("run %d (%s) failed: %s", run_id, name, text, exc_info=exc,
                  extra=REPORTED_IN_RESULT)
        return "failed", text

    def _publish_final_snapshot(self, run_id: int) -> None:
        """Store the instruments' settings as read back after the cleanup.

        The run's last ``InstrumentSnapshot`` (just before its ``RunStop``)
        shows the state the run left the setup in, e.g. the laser's
        ``emission_on: false``. Instruments that cannot be read are recorded as
        ``{"error": ...}`` by :meth:`Setup.snapshot`; any other failure is
        logged and does not keep the stop record from being stored.
        """
        try:
            settings = self.setup.snapshot_json()
        except Exception as exc:  # noqa: BLE001 - the stop record must still be stored
            log.error("run %d: instrument snapshot after the cleanup failed: %s", run_id, exc)
            return
        self.publish(run_id, InstrumentSnapshot(run_id=run_id, settings_json=settings,
                                                t_s=time.time()), {})
