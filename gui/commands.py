"""Instrument commands and readbacks, off the GUI thread.

The GUI thread never calls a driver. :class:`CommandWorker` owns one thread
that executes instrument actions (``fn(setup)``) one at a time and polls the
readbacks while no run is active. It serialises with the runner through the
runner's public API: runs are started from the same thread (so a command can
never overlap the start of a run), and an instrument command that arrives
while a run is active is refused with a clear message instead of touching an
instrument the run is using. During a run, readbacks come from the data
stream instead (see :mod:`micropl.gui.bridge`).

The emergency stop does not queue behind other commands: it drops the queued
ones and calls :meth:`Runner.emergency_stop` on a thread of its own at once.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PyQt5 import QtCore

from micropl.acquisition.procedures.preflight import Limits
from micropl.acquisition.runner import Runner
from micropl.acquisition.setup import Setup
from micropl.errors import InstrumentError

log = logging.getLogger(__name__)

__all__ = ["CommandWorker", "Readback", "read_instruments"]

_STOP = object()


@dataclass(frozen=True)
class Readback:
    """Instrument state read on the command thread.

    Units are in the names; ``rates_cps`` maps APD channel → counts/s.
    """

    laser_on: bool
    power_percent: float
    rep_rate_hz: float
    center_wavelength_nm: float
    grating: int
    gratings: tuple[str, ...]
    exposure_s: float
    em_gain: int
    temperature_c: float
    read_mode: str
    position_um: tuple[float, float, float]
    limits_um: tuple[tuple[float, float], ...]
    rates_cps: dict[int, float]
    #: What the instruments accept (procedure forms stop at it); None when unknown.
    limits: Any = None


def read_instruments(setup: Setup) -> Readback:
    """Read every readback the instrument panel shows (a driver call: command thread only)."""
    laser, spec, cam, scanner = setup.laser, setup.spectrograph, setup.camera, setup.scanner
    gratings = tuple(f"{g.slot}: {g.grooves_per_mm:g} l/mm" for g in spec.gratings)
    return Readback(
        laser_on=bool(laser.emission_on), power_percent=float(laser.power_percent),
        rep_rate_hz=float(laser.rep_rate_hz),
        center_wavelength_nm=float(spec.center_wavelength_nm), grating=int(spec.grating),
        gratings=gratings, exposure_s=float(cam.exposure_s), em_gain=int(cam.em_gain),
        temperature_c=float(cam.temperature_c), read_mode=str(cam.read_mode),
        position_um=tuple(float(v) for v in scanner.position_um),
        limits_um=tuple(tuple(float(v) for v in lim) for lim in scanner.limits_um),
        rates_cps={int(k): float(v) for k, v in setup.tagger.count_rates_hz().items()},
        limits=Limits.of(setup))


class CommandWorker(QtCore.QObject):
    """Runs instrument commands and starts runs on one thread; polls readbacks when idle.

    Parameters
    ----------
    runner : Runner
        The session's runner (its setup is what commands act on).
    poll_interval_s : float
        Readback period while no run is active, s (wall time).

    Signals
    -------
    done(str)
        A command finished; its description.
    failed(str)
        A command failed or was refused; the one-line reason (the receiver logs it).
    readback(object)
        A fresh :class:`Readback`.
    run_started(int)
        A run was started; its id.
    """

    done = QtCore.pyqtSignal(str)
    failed = QtCore.pyqtSignal(str)
    readback = QtCore.pyqtSignal(object)
    run_started = QtCore.pyqtSignal(int)

    def __init__(self, runner: Runner, *, poll_interval_s: float = 0.5) -> None:
        super().__init__()
        self.runner = runner
        self.setup = runner.setup
        self.poll_interval_s = float(poll_interval_s)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="gui-commands", daemon=True)
        self._idle = threading.Event()
        self._idle.set()
        self._thread.start()

    # ------------------------------------------------------------------ API (GUI thread)
    def submit(self, description: str, action: Callable[[Setup], Any]) -> None:
        """Queue the instrument action ``action(setup)``; refused while a run is active."""
        self._idle.clear()
        self._queue.put(("command", description, action))

    def start_run(self, procedure: Any) -> None:
        """Start ``procedure`` on the runner, after the commands queued before it."""
        self._idle.clear()
        self._queue.put(("run", getattr(procedure, "name", "procedure"), procedure))

    def poll_now(self) -> None:
        """Ask for a readback as soon as the queue is empty."""
        self._queue.put(("poll", "readback", None))

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """Drop queued commands, then laser off and abort the run — at once, on a new thread."""
        dropped = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            dropped += 1
        if dropped:
            log.warning("emergency stop: %d queued command(s) dropped", dropped)
        threading.Thread(target=self._emergency, args=(reason,), name="gui-estop",
                         daemon=True).start()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Block until every queued command ran (tests and shutdown)."""
        return self._idle.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the thread (after the command in progress)."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    # ------------------------------------------------------------------ thread
    def _emergency(self, reason: str) -> None:
        self.runner.emergency_stop(reason)
        laser_on = self.setup.laser.emission_on
        if laser_on:
            self.failed.emit(f"{reason}: the laser still reports emission on")
        else:
            self.done.emit(f"{reason}: laser off")
        self.poll_now()

    def _loop(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.poll_interval_s)
            except queue.Empty:
                self._idle.set()
                self._poll()
                continue
            if item is _STOP:
                self._idle.set()
                return
            what, description, payload = item
            if what == "command":
                self._command(description, payload)
            elif what == "run":
                self._run(description, payload)
            else:
                self._poll()
            if self._queue.empty():
                self._idle.set()

    def _command(self, description: str, action: Callable[[Setup], Any]) -> None:
        if self.runner.busy:
            self.failed.emit(f"{description} refused: a run is in progress; wait for it "
                             "or abort it")
            return
        try:
            action(self.setup)
        except InstrumentError as exc:  # LimitError included: the driver's own message
            self.failed.emit(str(exc))
        except (ValueError, TypeError) as exc:
            self.failed.emit(f"{description}: {exc}")
        else:
            log.info("%s", description)
            self.done.emit(description)
        self._poll()

    def _run(self, name: str, procedure: Any) -> None:
        try:
            run_id = self.runner.start(procedure)
        except RuntimeError as exc:
            self.failed.emit(f"{name} not started: {exc}")
            return
        self.run_started.emit(run_id)

    def _poll(self) -> None:
        if self.runner.busy:
            return
        try:
            value = read_instruments(self.setup)
        except InstrumentError as exc:
            log.warning("instrument readback failed: %s", exc)
            return
        tripped = self.runner.check_rate_readback(value.rates_cps, value.laser_on)
        if tripped is not None:  # APD over-rate with the laser on outside a run
            self.failed.emit(tripped)
            value = dataclasses.replace(value, laser_on=bool(self.setup.laser.emission_on))
        self.readback.emit(value)
