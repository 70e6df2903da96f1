"""Starting the GUI: setup, session, main window, and the scripted screenshot run.

``micropl gui`` calls :func:`run_gui`. With ``screenshot`` it runs a procedure
(``run``), waits until it ended (or ``exit_after`` seconds passed), saves a
picture of the main window and quits — this works offscreen
(``QT_QPA_PLATFORM=offscreen``).

SIGTERM, SIGHUP and SIGINT (Ctrl-C in the terminal) end the GUI safely
(:class:`SignalShutdown`): laser off, the run aborted with a reason naming the
signal, the window closed, the session file closed, exit code 128 + the
signal's number. Qt's event loop waits in C++, where Python runs no signal
handler; the handler's wake-up byte on a socket pair
(:func:`signal.set_wakeup_fd`) wakes it through a
:class:`~PyQt5.QtCore.QSocketNotifier`, so the handler runs at once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.acquisition.procedures import (
    G2,
    PROCEDURES,
    RasterScan,
    Refocus,
    SpectrumAcquisition,
    Survey,
)
from micropl.acquisition.session import Session
from micropl.acquisition.setup import load_setup
from micropl.gui.main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["application", "demo_survey", "ErrorStop", "ScriptedRun", "SignalShutdown", "run_gui",
           "signal_shutdown", "SHUTDOWN_SIGNALS"]

#: Python thread switch interval set by the GUI, s.
GIL_SWITCH_INTERVAL_S = 0.001
#: Signals that end the GUI safely, and what each one means.
SHUTDOWN_SIGNALS = {getattr(signal, name): what for name, what in (
    ("SIGTERM", "termination request"), ("SIGHUP", "terminal closed"), ("SIGINT", "Ctrl-C"))
    if hasattr(signal, name)}


def signal_reason(signum: int) -> str:
    """The stored reason of a run ended by signal ``signum``, e.g. ``SIGTERM (...)``."""
    sig = signal.Signals(signum)
    what = SHUTDOWN_SIGNALS.get(sig)
    return f"{sig.name} received" + (f" ({what})" if what else "") + ": GUI closed"


class SignalShutdown(QtCore.QObject):
    """Ends the GUI safely on SIGTERM, SIGHUP or SIGINT (install once, main thread).

    The first signal calls :meth:`MainWindow.shutdown` of :attr:`window`
    (laser off, run aborted with :func:`signal_reason`, dialogs closed, window
    closed) from the event loop, then quits the loop; :attr:`exit_code` is then
    128 + the signal's number. Later signals are logged and ignored: the
    cleanup in progress (the run's stop record, the file's close) is never
    cut short. The previous handlers and wake-up fd are restored by
    :meth:`uninstall`.

    Parameters
    ----------
    signals : iterable of signal.Signals
        The signals handled.
    parent : QObject, optional
    """

    def __init__(self, signals: Any = tuple(SHUTDOWN_SIGNALS),
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.signals = tuple(signal.Signals(s) for s in signals)
        self.window: MainWindow | None = None
        #: True while ``app.exec_()`` runs (set by :func:`run_gui`): the loop is quit after
        #: the window closed. (Quitting outside ``exec_`` would end every later event loop.)
        self.loop_running = False
        self.signum: int | None = None
        self.ignored: list[int] = []
        self._previous: dict[signal.Signals, Any] = {}
        self._old_wakeup_fd: int | None = None
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._notifier: QtCore.QSocketNotifier | None = None

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number once a signal arrived, else None."""
        return None if self.signum is None else 128 + int(self.signum)

    def install(self) -> None:
        """Set the handlers and the wake-up socket (main thread only)."""
        read, write = socket.socketpair()
        for sock in (read, write):
            sock.setblocking(False)
        self._sockets = (read, write)
        self._notifier = QtCore.QSocketNotifier(read.fileno(), QtCore.QSocketNotifier.Read, self)
        self._notifier.activated.connect(self._wake)
        self._old_wakeup_fd = signal.set_wakeup_fd(write.fileno(), warn_on_full_buffer=False)
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Restore the previous handlers and wake-up fd; close the sockets."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        if self._notifier is not None:
            self._notifier.setEnabled(False)
            self._notifier = None
        if self._sockets is not None:
            for sock in self._sockets:
                sock.close()
            self._sockets = None

    def _wake(self, _fd: int) -> None:
        """The loop woke on the socket: Python has run the handler by now; empty it."""
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._sockets is not None and self._sockets[0].recv(64):
                pass

    def _handle(self, signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            self.ignored.append(signum)
            log.warning("%s during the shutdown (%s): ignored, the cleanup goes on", name,
                        signal.Signals(self.signum).name)
            return
        self.signum = signum
        log.warning("%s received: laser off, run aborted, closing", name)
        # Not here: the handler may interrupt any Python line of the GUI thread.
        QtCore.QTimer.singleShot(0, self._shut_down)

    def _shut_down(self) -> None:
        reason = signal_reason(self.signum)
        if self.window is not None:
            self.window.shutdown(reason)
        if self.loop_running:
            QtWidgets.QApplication.instance().quit()


@contextlib.contextmanager
def signal_shutdown(signals: Any = tuple(SHUTDOWN_SIGNALS)) -> Iterator[SignalShutdown]:
    """A :class:`SignalShutdown` installed for the ``with`` block (handlers restored after)."""
    guard = SignalShutdown(signals)
    guard.install()
    try:
        yield guard
    finally:
        guard.uninstall()


class ErrorStop:
    """Laser off and run aborted on an error no code handled (install once, main thread).

    Without a ``sys.excepthook`` of its own, PyQt ends the process at once on an
    exception raised in a slot or a Qt virtual method: no cleanup, the laser
    left as it was. Installed for :func:`run_gui`, this hook logs the error with
    its traceback (the log file and the log panel), switches the laser off and
    aborts the run through :attr:`window`'s emergency stop, and shows the error
    on one line in the status bar. The GUI stays open, so the session can be
    closed normally. The previous hook is restored by :meth:`uninstall`.
    """

    def __init__(self) -> None:
        self.window: MainWindow | None = None
        self.errors: list[str] = []
        self._previous: Any = None

    def install(self) -> None:
        self._previous = sys.excepthook
        sys.excepthook = self.handle

    def uninstall(self) -> None:
        if self._previous is not None:
            sys.excepthook = self._previous
            self._previous = None

    def handle(self, kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        """The hook: log, make safe, report; never raises."""
        text = f"{kind.__name__}: {' '.join(str(exc).split())}"
        self.errors.append(text)
        log.critical("unhandled error in the GUI: %s", text, exc_info=(kind, exc, tb))
        window = self.window
        if window is None or window.read_only:
            return
        try:
            window.worker.emergency_stop(f"GUI error: {text}")
            window.report_error(f"GUI error: {text}: laser off, run aborted (see the log)")
        except Exception:  # noqa: BLE001 - the hook must not raise; the error is logged
            log.exception("could not stop after a GUI error")


@contextlib.contextmanager
def error_stop() -> Iterator[ErrorStop]:
    """An :class:`ErrorStop` installed for the ``with`` block (the old hook restored)."""
    hook = ErrorStop()
    hook.install()
    try:
        yield hook
    finally:
        hook.uninstall()


def application() -> QtWidgets.QApplication:
    """The QApplication (created once)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setApplicationName("micropl")
        app.setOrganizationName("micropl")
    # Qt's own dialogs only: the emergency-stop keys must reach Qt (see main_window).
    QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_DontUseNativeDialogs, True)
    # No antialiasing: curves of 10⁴ points redraw several times faster.
    pg.setConfigOptions(antialias=False)
    # Hand the GIL back to the GUI thread sooner while acquisition and fit threads
    # compute (default 5 ms): keeps the event loop's latency low under load.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    return app  # type: ignore[return-value]


def demo_survey() -> Survey:
    """A small but realistic survey: a 20 µm × 20 µm map, then up to 6 QDs."""
    return Survey(scan=RasterScan(x_min_um=0.0, x_max_um=20.0, y_min_um=0.0, y_max_um=20.0,
                                  step_um=0.2, dwell_s=0.005),
                  max_qds=6, refocus=Refocus(),
                  spectrum=SpectrumAcquisition(exposure_s=1.0, accumulations=3),
                  g2=G2(duration_s=10.0), drift_every_n_qds=0)


class ScriptedRun(QtCore.QObject):
    """Runs one procedure in a window, then saves a screenshot and/or closes it.

    Parameters
    ----------
    window : MainWindow
    procedure : procedure or None
        What to run (None: nothing, only wait ``exit_after_s``).
    screenshot : Path, optional
        PNG to save when done.
    exit_after_s : float, optional
        Longest wall time before the run is aborted and the window closed.
    settle_s : float
        Wall time left after the run ended for the last records and fits to show.
    """

    finished = QtCore.pyqtSignal()

    def __init__(self, window: MainWindow, procedure: Any, *, screenshot: Path | None = None,
                 exit_after_s: float | None = None, settle_s: float = 1.5) -> None:
        super().__init__(window)
        self.window = window
        self.procedure = procedure
        self.screenshot = screenshot
        self.deadline = None if exit_after_s is None else time.monotonic() + exit_after_s
        self.settle_s = settle_s
        self.ended_at: float | None = None
        self.saved = False
        self._started = procedure is None
        self._timer = QtCore.QTimer(self)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        """Start the procedure (once the event loop runs) and watch it."""
        if self.procedure is not None:
            self.window.start_procedure(self.procedure)
        self._timer.start(100)

    def _tick(self) -> None:
        window = self.window
        runner = window.runner
        now = time.monotonic()
        if not self._started:
            self._started = runner.busy or runner.wait(0) is not None
        if self.deadline is not None and now >= self.deadline and runner.busy:
            log.warning("time is up: aborting the run")
            window.stop_run_and_wait()
        running = runner.busy or window._pending_start or not self._started
        if self.ended_at is None and (not running or (self.deadline is not None
                                                      and now >= self.deadline)):
            self.ended_at = now
        if self.ended_at is not None and now - self.ended_at >= self.settle_s:
            self._timer.stop()
            self._finish()

    def _finish(self) -> None:
        window = self.window
        window.drain()
        table = window.survey_panel.table
        if table.rowCount():
            table.selectRow(table.rowCount() - 1)
        if self.screenshot is not None:
            self.screenshot.parent.mkdir(parents=True, exist_ok=True)
            self.saved = window.grab().save(str(self.screenshot))
            if self.saved:
                log.info("screenshot saved to %s", self.screenshot)
            else:
                log.error("could not save the screenshot to %s", self.screenshot)
        self.finished.emit()
        window.close()


def _exec(app: QtWidgets.QApplication, guard: SignalShutdown) -> None:
    """Run the event loop, unless a signal arrived before it could start."""
    if guard.signum is None:
        guard.loop_running = True
        try:
            app.exec_()
        finally:
            guard.loop_running = False
    if guard.signum is not None and guard.window is not None:
        # A signal after the loop ended (or before it started): the same safe end.
        guard.window.shutdown(signal_reason(guard.signum))


@contextlib.contextmanager
def _settings_for(screenshot: str | Path | None) -> Iterator[QtCore.QSettings | None]:
    """The settings of a run: the user's (None), or for a screenshot a fresh, empty set.

    A screenshot shows the defaults (or the ``--config`` setup), never the layout and
    parameters kept on this machine, so that it can be reproduced anywhere.
    """
    if screenshot is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="micropl-gui-") as folder:
        log.info("screenshot run: default settings (the kept ones are not used)")
        settings = QtCore.QSettings(str(Path(folder) / "settings.ini"), QtCore.QSettings.IniFormat)
        yield settings
        settings.sync()


def run_gui(config: str | Path | None = None, *, fast: bool = False,
            out: str | Path | None = None, screenshot: str | Path | None = None,
            run: str | None = None, exit_after_s: float | None = None,
            size: tuple[int, int] = (1600, 1000)) -> int:
    """Open the setup and show the main window until it is closed.

    Parameters
    ----------
    config : path, optional
        Setup YAML (the simulated setup by default).
    fast : bool
        Fast clock (simulated instruments only).
    out : path, optional
        Session file written; None stores nothing.
    screenshot : path, optional
        Save a PNG of the window when the scripted run ended, then quit. Such a run
        uses the default settings, not the ones kept on this machine.
    run : str, optional
        Procedure to start at once (``survey`` runs :func:`demo_survey`; other names
        their last-used form parameters).
    exit_after_s : float, optional
        Quit (aborting a run) after this many seconds of wall time.
    size : (int, int)
        Window width and height in pixels.

    Returns
    -------
    int
        Exit code: 0, or 1 when the screenshot could not be saved or the run failed;
        128 + N after signal N (SIGTERM, SIGHUP, SIGINT) ended the GUI.
    """
    app = application()
    with signal_shutdown() as guard, error_stop() as on_error, \
            _settings_for(screenshot) as settings:
        setup = load_setup(config, clock_mode="fast" if fast else None)
        try:
            session = Session(setup, out)
            try:
                window = MainWindow(session, settings=settings)
                guard.window = on_error.window = window
                window.resize(*size)
                window.show()
                script = None
                if run is not None or screenshot is not None or exit_after_s is not None:
                    procedure = None
                    if run == "survey":
                        procedure = demo_survey()
                    elif run is not None:
                        procedure = window.procedures_panel.procedure(run)
                    script = ScriptedRun(window, procedure, screenshot=None if screenshot is None
                                         else Path(screenshot), exit_after_s=exit_after_s)
                    QtCore.QTimer.singleShot(200, script.start)
                _exec(app, guard)
                result = session.runner.wait(0)
            finally:
                session.close()
        finally:
            setup.close()
    if guard.exit_code is not None:
        return guard.exit_code
    if script is not None and script.screenshot is not None and not script.saved:
        return 1
    if run is not None and (result is None or not result.ok):
        return 1
    return 0


def known_procedures() -> tuple[str, ...]:
    """Names accepted by ``run``."""
    return tuple(PROCEDURES)


def run_replay_gui(path: str | Path, *, out: str | Path | None, speed: float = 1.0,
                   analysis: Any = None, config: str | Path | None = None,
                   size: tuple[int, int] = (1600, 1000)) -> int:
    """Replay mode: the main window on a replay session of ``path``, with replay controls.

    Parameters
    ----------
    path : path
        Recorded session file or PTU T2 file.
    out : path, optional
        New session file (records the source); None stores nothing.
    speed : float
        Initial speed, recorded seconds per second (``inf``: as fast as possible).
    analysis : AnalysisSettings, optional
        Fit settings of the replay.
    config : path, optional
        Replay setup YAML (``configs/replay.yaml`` by default).
    """
    from micropl.acquisition.live import AnalysisSettings
    from micropl.acquisition.replay import open_replay, replay_source_of

    app = application()
    analysis = analysis or AnalysisSettings()
    with signal_shutdown() as guard, error_stop() as on_error:
        # Real clock: the speed (and a pause) can change while playing.
        setup = open_replay(path, speed=1.0, config=None if config is None else Path(config))
        try:
            source = replay_source_of(setup)
            source.set_speed(speed)
            session = Session(setup, out, analysis=analysis)
            try:
                window = MainWindow(session)
                guard.window = on_error.window = window
                window.add_replay_controls(source, analysis)
                window.resize(*size)
                window.show()
                _exec(app, guard)
            finally:
                session.close()
        finally:
            setup.close()
    return 0 if guard.exit_code is None else guard.exit_code
