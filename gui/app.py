"""Starting the GUI: setup, session, main window, and the scripted screenshot run.

``micropl gui`` calls :func:`run_gui`. With ``screenshot`` it runs a procedure
(``run``), waits until it ended (or ``exit_after`` seconds passed), saves a
picture of the main window and quits — this works offscreen
(``QT_QPA_PLATFORM=offscreen``).
"""

from __future__ import annotations

import logging
import sys
import time
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

__all__ = ["application", "demo_survey", "ScriptedRun", "run_gui"]

#: Python thread switch interval set by the GUI, s.
GIL_SWITCH_INTERVAL_S = 0.001


def application() -> QtWidgets.QApplication:
    """The QApplication (created once)."""
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(sys.argv[:1])
        app.setApplicationName("micropl")
        app.setOrganizationName("micropl")
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
        Save a PNG of the window when the scripted run ended, then quit.
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
        Exit code: 0, or 1 when the screenshot could not be saved or the run failed.
    """
    app = application()
    setup = load_setup(config, clock_mode="fast" if fast else None)
    try:
        session = Session(setup, out)
        try:
            window = MainWindow(session)
            window.resize(*size)
            window.show()
            script = None
            if run is not None or screenshot is not None or exit_after_s is not None:
                procedure = None
                if run == "survey":
                    procedure = demo_survey()
                elif run is not None:
                    procedure = window.procedures_panel.procedure(run)
                script = ScriptedRun(window, procedure,
                                     screenshot=None if screenshot is None else Path(screenshot),
                                     exit_after_s=exit_after_s)
                QtCore.QTimer.singleShot(200, script.start)
            app.exec_()
            result = session.runner.wait(0)
        finally:
            session.close()
    finally:
        setup.close()
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
    from micropl.acquisition.cli_replay import open_replay, replay_source_of
    from micropl.acquisition.live import AnalysisSettings

    app = application()
    analysis = analysis or AnalysisSettings()
    # Real clock: the speed (and a pause) can change while playing.
    setup = open_replay(path, speed=1.0, config=None if config is None else Path(config))
    try:
        source = replay_source_of(setup)
        source.set_speed(speed)
        session = Session(setup, out, analysis=analysis)
        try:
            window = MainWindow(session)
            window.add_replay_controls(source, analysis)
            window.resize(*size)
            window.show()
            app.exec_()
        finally:
            session.close()
    finally:
        setup.close()
    return 0
