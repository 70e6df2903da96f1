"""The main window: dock panels, run controls, the emergency stop, File → Open.

Panels: procedures, instruments (readouts with their age, focus control),
points of interest, the scan map, spectrum, g² and the count-rate trace, the
survey table with its statistics, the log. View → Reset layout puts every dock
back; the layout, the spectrum's axis unit and the g² display are kept across
restarts (QSettings, checked when restored). File → Export saves a plot (PNG or
SVG) or the survey table (CSV). The lifetime shown is the stream's (or the
file's) peak-train fit record: the window fits nothing of its own.

A live window is given a :class:`~micropl.acquisition.session.Session`; a
read-only window (File → Open) is given a
:class:`~micropl.acquisition.storage.SessionReader` and shows the same panels
without the instrument and procedure controls.

Threads: the GUI thread never calls a driver. Instrument commands go to a
:class:`~micropl.gui.commands.CommandWorker`; data arrive through a
:class:`~micropl.gui.bridge.DisplayBuffer` drained by a 40 Hz timer, each tick
updating at most one group of plots (each group at ≥ 10 Hz while data flow); log
records through a :class:`~micropl.gui.log_handler.GuiLogHandler`.

The emergency stop (F12, Ctrl+Space) is an application-wide event filter
(:class:`EmergencyStopFilter`), not only a shortcut: Qt delivers no main-window
shortcut to a window blocked by a modal dialog, but every key press of every
window (dialogs, file dialogs, menus) passes the application's event filters.
Every dialog is Qt's own (``AA_DontUseNativeDialogs``; a native file dialog
would keep the keys from Qt), and the close confirmation has a "Laser off now"
button. :meth:`MainWindow.shutdown` ends the window without asking (used on
SIGTERM, SIGHUP, SIGINT; see :mod:`micropl.gui.app`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PyQt5 import QtCore, QtGui, QtWidgets

from micropl.acquisition.procedures import RasterScan, Refocus, Survey
from micropl.acquisition.procedures.survey import Target
from micropl.acquisition.runner import RunState
from micropl.errors import UserError
from micropl.gui.bridge import DisplayBuffer, QDCurves, Update
from micropl.gui.commands import CommandWorker, Readback
from micropl.gui.log_handler import GuiLogHandler
from micropl.gui.panels.g2_panel import MAX_BIN_FACTOR, MAX_WINDOW_NS, G2Panel
from micropl.gui.panels.instruments_panel import READOUT_STALE_S, InstrumentsPanel
from micropl.gui.panels.log_panel import LogPanel
from micropl.gui.panels.map_panel import MapPanel
from micropl.gui.panels.points_panel import PointsPanel
from micropl.gui.panels.procedures_panel import ProceduresPanel
from micropl.gui.panels.rate_panel import RatePanel
from micropl.gui.panels.spectral_map_panel import SpectralMapPanel
from micropl.gui.panels.spectrum_panel import SpectrumPanel
from micropl.gui.panels.survey_panel import SurveyPanel
from micropl.gui.settings import make_settings
from micropl.records import RunStart, RunStop, Tagged
from micropl.records.points import POI_KIND

log = logging.getLogger(__name__)

__all__ = ["MainWindow", "EmergencyStopFilter", "ESTOP_SHORTCUTS",
           "DRAIN_INTERVAL_MS", "close_dialogs"]

#: Keyboard shortcuts of the laser-off / emergency-stop action.
ESTOP_SHORTCUTS = ("F12", "Ctrl+Space")
#: Text of the emergency-stop button that micropl's dialogs carry.
LASER_OFF_BUTTON = "■ Laser off now"
#: A key press that follows its shortcut-override event within this time (s) is the
#: same press (Qt sends both for one press; the stop runs once).
SAME_PRESS_S = 1.0
#: Period of the display timer, ms: each tick takes the buffer and updates one panel group.
DRAIN_INTERVAL_MS = 25
#: Panel groups; one tick never repaints more than one (a repaint costs 5–20 ms per plot).
PANEL_GROUPS = ("spectrum", "map", "g2", "survey", "rates")
#: Shortest interval between two updates of one group, s (every other tick at most, 20 Hz).
#: A group with new data and no recent update goes at the next tick; with every group
#: busy, each is updated every fourth tick (10 Hz).
GROUP_INTERVAL_S = 0.045
#: Groups updated less often than GROUP_INTERVAL_S, s (the rate trace is a slow chart).
GROUP_MIN_INTERVAL_S = {"rates": 0.5}
#: The fields of a held :class:`~micropl.gui.bridge.Update` that each panel group shows.
GROUP_FIELDS = {
    "map": ("map_reset", "map_lines", "position_um"),
    "spectrum": ("frame", "frame_fit", "accumulated", "accumulated_fit", "spectrum_source"),
    "g2": ("histogram", "g2", "lifetime", "g2_source"),
    "survey": ("qd_rows",),
    "rates": ("trace",),
}
#: Longest trace bin made of an idle readback, s (a longer gap is not counted as one bin).
MAX_READBACK_BIN_S = 1.0
#: Shortest interval between two refreshes of the readouts' ages, s.
AGE_REFRESH_S = 0.25
#: Settings key of the spectrum's x axis ("nm" or "eV").
SPECTRUM_AXIS_KEY = "view/spectrum_axis"
#: Settings keys of the g² display: bins summed per shown bin, ± delay window in ns.
G2_BIN_KEY = "view/g2_bin_factor"
G2_WINDOW_KEY = "view/g2_window_ns"
#: Period of the check that saves a changed dock layout, ms.
LAYOUT_CHECK_MS = 1000
def _key_combos(shortcuts: tuple[str, ...]) -> list[tuple[int, int]]:
    """(key, required modifiers) of each shortcut's first key, e.g. ``Ctrl+Space``."""
    mask = int(QtCore.Qt.KeyboardModifierMask)
    combos = []
    for text in shortcuts:
        code = QtGui.QKeySequence(text)[0]
        combos.append((code & ~mask, code & mask))
    return combos


class EmergencyStopFilter(QtCore.QObject):
    """Application-wide event filter: the emergency-stop keys stop, in every window.

    Installed on the :class:`~PyQt5.QtWidgets.QApplication`, it sees the key
    events of every window, including modal dialogs, file dialogs and popup
    menus, before any widget or shortcut does. A key matches a shortcut of
    ``shortcuts`` when its key is the shortcut's and at least the shortcut's
    modifiers are held (F12 with Shift still stops). Qt sends a
    shortcut-override event, then the key press, for one press: the first
    calls ``callback``, both are consumed (no widget and no shortcut sees the
    key), and auto-repeats do nothing.

    Parameters
    ----------
    callback : callable
        ``callback()`` — the one emergency-stop path (:meth:`MainWindow.emergency_stop`).
    shortcuts : tuple of str
        Key sequences (:class:`~PyQt5.QtGui.QKeySequence` text).
    parent : QObject, optional
        Owner (the filter goes with it).
    """

    def __init__(self, callback: Callable[[], None], shortcuts: tuple[str, ...] = ESTOP_SHORTCUTS,
                 parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.callback = callback
        self._combos = _key_combos(shortcuts)
        self._override_at: dict[int, float] = {}  # key → monotonic s of its override
        self.triggered = 0

    def matches(self, event: QtGui.QKeyEvent) -> bool:
        """True when ``event`` is one of the emergency-stop keys."""
        modifiers = int(event.modifiers()) & ~int(QtCore.Qt.KeypadModifier)
        return any(event.key() == key and modifiers & needed == needed
                   for key, needed in self._combos)

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind not in (QtCore.QEvent.ShortcutOverride, QtCore.QEvent.KeyPress) \
                or not self.matches(event):
            return False
        event.accept()
        now = time.monotonic()
        if kind == QtCore.QEvent.ShortcutOverride:
            self._override_at[event.key()] = now
            fire = not event.isAutoRepeat()
        else:  # the press of an override already acted on is the same press
            fire = not event.isAutoRepeat() and \
                now - self._override_at.pop(event.key(), -math.inf) > SAME_PRESS_S
        if fire:
            self.triggered += 1
            log.info("emergency-stop key pressed in %s", type(obj).__name__)
            self.callback()
        return True


def close_dialogs(max_dialogs: int = 20) -> int:
    """Close every popup and modal dialog (rejected: "no", "cancel"); how many were open.

    Used before the window closes without asking, so that no dialog's event
    loop keeps waiting for an answer.
    """
    app = QtWidgets.QApplication.instance()
    closed = 0
    for _ in range(max_dialogs):
        widget = app.activePopupWidget() or app.activeModalWidget()
        if widget is None:
            break
        log.info("closing %s %r", type(widget).__name__, widget.windowTitle())
        if isinstance(widget, QtWidgets.QDialog):
            widget.reject()
        else:
            widget.close()
        if widget.isVisible():
            widget.hide()
        closed += 1
    return closed


class MainWindow(QtWidgets.QMainWindow):
    """micropl's main window.

    Parameters
    ----------
    session : Session, optional
        The live session (setup, runner, stream). None for a read-only window.
    reader : SessionReader, optional
        A session file to browse read-only (with ``session=None``).
    settings : QSettings, optional
        Where layout and parameters are kept; :func:`make_settings` by default.
    """

    def __init__(self, session: Any = None, *, reader: Any = None,
                 settings: QtCore.QSettings | None = None) -> None:
        super().__init__()
        if (session is None) == (reader is None):
            raise ValueError("give either a live session or a session file reader")
        self.session = session
        self.reader = reader
        self.read_only = session is None
        self.settings = settings or make_settings()
        self.buffer = DisplayBuffer(apd_channels=(1, 2) if session is None
                                    else tuple(session.setup.apd_channels))
        self.log_handler = GuiLogHandler()
        package_logger = logging.getLogger("micropl")
        if package_logger.getEffectiveLevel() > logging.INFO:
            package_logger.setLevel(logging.INFO)
        package_logger.addHandler(self.log_handler)
        self._closing = False
        self._closed = False
        self._shutdown_reason: str | None = None
        #: Without a screen (offscreen), :meth:`ask` answers yes instead of showing a dialog.
        self.auto_answer_offscreen = True
        self._queue_halted = False
        self._pending_start = False
        self._layout_saved = b""
        #: True until the first show applied the kept layout: nothing is saved before
        #: (the docks' signals while it is restored would save a half-restored layout).
        self._restoring = True
        self._held = Update()  # taken from the buffer, not yet shown (see _tick)
        self._shown_at = dict.fromkeys(PANEL_GROUPS, -math.inf)  # monotonic s
        self._ages_at = -math.inf  # last refresh of the readouts' ages, monotonic s
        self._readback_at: float | None = None  # monotonic s of the previous readback

        self._build_panels()
        self._build_actions()
        self._restore_layout()
        self._restore_choices()

        if self.read_only:
            self._open_read_only()
        else:
            self.runner = session.runner
            self.apd_max_rate_cps = self.runner.apd_max_rate_cps
            self.subscriber = session.on(self.buffer.handle, maxlen=5000)
            self.spectral_map_panel.follow(session.stream)
            self.worker = CommandWorker(self.runner)
            self.worker.failed.connect(self._command_failed)
            self.worker.done.connect(lambda text: self.statusBar().showMessage(text, 5000))
            self.worker.readback.connect(self._readback)
            self.worker.run_started.connect(self._run_started)
            self.worker.poll_now()
            self.estop_filter = EmergencyStopFilter(self.emergency_stop, parent=self)
            QtWidgets.QApplication.instance().installEventFilter(self.estop_filter)
            # Every dialog Qt's own (pyqtgraph's export dialogs too): a native dialog
            # (GTK, KDE, Windows) takes the keys before Qt, and so before the filter.
            QtCore.QCoreApplication.setAttribute(QtCore.Qt.AA_DontUseNativeDialogs, True)
            self.setWindowTitle(f"micropl — {session.setup.source}"
                                + (f" → {session.path}" if session.path else ""))

        self.drain_timer = QtCore.QTimer(self)
        self.drain_timer.timeout.connect(self._tick)
        self.drain_timer.start(DRAIN_INTERVAL_MS)
        self.layout_timer = QtCore.QTimer(self)
        self.layout_timer.timeout.connect(self.save_layout)
        self.layout_timer.start(LAYOUT_CHECK_MS)

    # ------------------------------------------------------------------ building
    def _dock(self, name: str, title: str, widget: QtWidgets.QWidget,
              area: QtCore.Qt.DockWidgetArea) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{name}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        for changed in (dock.dockLocationChanged, dock.topLevelChanged, dock.visibilityChanged):
            changed.connect(self.save_layout)
        self.docks[name] = dock
        return dock

    def add_replay_controls(self, source: Any, analysis: Any) -> Any:
        """Replay mode: dock the play / pause / seek / speed panel for ``source``."""
        from micropl.gui.panels.replay_panel import ReplayPanel

        self.replay_panel = ReplayPanel(self, source, analysis)
        self._dock("replay", "Replay", self.replay_panel, QtCore.Qt.LeftDockWidgetArea)
        return self.replay_panel

    def _build_panels(self) -> None:
        self.setDockNestingEnabled(True)
        self.docks: dict[str, QtWidgets.QDockWidget] = {}
        max_rate = 2e6 if self.read_only else self.session.runner.apd_max_rate_cps
        self.map_panel = MapPanel()
        self.spectrum_panel = SpectrumPanel()
        self.g2_panel = G2Panel()
        self.instruments_panel = InstrumentsPanel(max_rate)
        self.procedures_panel = ProceduresPanel(self.settings)
        self.survey_panel = SurveyPanel()
        self.log_panel = LogPanel()
        self.rate_panel = RatePanel()
        self.points_panel = PointsPanel()
        left, right = QtCore.Qt.LeftDockWidgetArea, QtCore.Qt.RightDockWidgetArea
        bottom = QtCore.Qt.BottomDockWidgetArea
        self._dock("procedures", "Procedures", self.procedures_panel, left)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.instruments_panel)
        self._dock("instruments", "Instruments", scroll, left)
        self.tabifyDockWidget(self.docks["procedures"], self.docks["instruments"])
        self._dock("points", "Points", self.points_panel, left)
        self.tabifyDockWidget(self.docks["instruments"], self.docks["points"])
        self.docks["procedures"].raise_()
        self._dock("map", "Scan map", self.map_panel, right)
        self.spectral_map_panel = SpectralMapPanel()
        self._dock("spectral_map", "Spectral map", self.spectral_map_panel, right)
        self.tabifyDockWidget(self.docks["map"], self.docks["spectral_map"])
        self.docks["map"].raise_()
        self._dock("spectrum", "Spectrum", self.spectrum_panel, right)
        self._dock("g2", "g²", self.g2_panel, right)
        self.splitDockWidget(self.docks["map"], self.docks["spectrum"], QtCore.Qt.Horizontal)
        self.splitDockWidget(self.docks["spectrum"], self.docks["g2"], QtCore.Qt.Vertical)
        self._dock("rates", "Count rate", self.rate_panel, right)
        self.tabifyDockWidget(self.docks["g2"], self.docks["rates"])
        self.docks["rates"].visibilityChanged.connect(
            lambda shown: shown and self.rate_panel.show_trace(self.buffer.trace))
        self.docks["g2"].raise_()
        self._dock("survey", "Survey", self.survey_panel, bottom)
        self._dock("log", "Log", self.log_panel, bottom)
        self.splitDockWidget(self.docks["survey"], self.docks["log"], QtCore.Qt.Horizontal)
        self._default_state = self.saveState()
        self.default_sizes()

        self.map_panel.move_requested.connect(self._map_clicked)
        self.map_panel.scan_requested.connect(self.scan_region)
        self.instruments_panel.command.connect(self.send_command)
        self.procedures_panel.start_requested.connect(self.start_procedure)
        self.procedures_panel.pause_requested.connect(self.pause)
        self.procedures_panel.resume_requested.connect(self.resume)
        self.procedures_panel.abort_requested.connect(self.abort)
        self.procedures_panel.invalid.connect(self.report_error)
        self.survey_panel.qd_selected.connect(self.qd_selected)
        self.instruments_panel.focus_requested.connect(self.focus_scan)
        self.points_panel.mark_requested.connect(self.mark_point)
        self.points_panel.changed.connect(self._point_changed)
        self.points_panel.go_requested.connect(self._go_to_point)
        self.points_panel.measure_requested.connect(self.measure_points)
        self.statusBar().showMessage("ready")

    def _build_actions(self) -> None:
        self.estop_action = QtWidgets.QAction("■ LASER OFF / STOP", self)
        self.estop_action.setShortcuts([QtGui.QKeySequence(s) for s in ESTOP_SHORTCUTS])
        self.estop_action.setShortcutContext(QtCore.Qt.ApplicationShortcut)
        self.estop_action.setToolTip("Laser off now and abort the run ("
                                     + " or ".join(ESTOP_SHORTCUTS) + ")")
        self.estop_action.triggered.connect(self.emergency_stop)
        toolbar = self.addToolBar("Safety")
        toolbar.setObjectName("toolbar_safety")
        toolbar.setMovable(False)
        toolbar.addAction(self.estop_action)
        button = toolbar.widgetForAction(self.estop_action)
        button.setStyleSheet("QToolButton { background: #c00; color: white; font-weight: bold;"
                             " font-size: 13pt; padding: 6px 14px; border-radius: 4px }")
        self.safety_toolbar = toolbar
        if self.read_only:
            toolbar.hide()

        menu = self.menuBar().addMenu("&File")
        open_action = menu.addAction("&Open session file…")
        open_action.setShortcut(QtGui.QKeySequence.Open)
        open_action.triggered.connect(self._ask_open)
        self.open_action = open_action
        menu.addSeparator()
        plots = menu.addMenu("&Export plot (PNG/SVG)")
        for name, title in (("map", "Scan map"), ("spectrum", "Spectrum"), ("g2", "g²"),
                            ("rates", "Count rate"), ("fwhm", "FWHM histogram"),
                            ("scatter", "FWHM vs peak energy"), ("g2_hist", "g²(0) histogram")):
            plots.addAction(f"{title}…", lambda n=name: self._ask_export_plot(n))
        menu.addAction("Export survey &table (CSV)…", self._ask_export_table)
        menu.addSeparator()
        menu.addAction("&Close window", self.close)
        view = self.menuBar().addMenu("&View")
        self.reset_layout_action = view.addAction("&Reset layout", self.reset_layout)
        self.reset_layout_action.setShortcut(QtGui.QKeySequence("Ctrl+Shift+R"))
        view.addSeparator()
        for dock in self.docks.values():
            view.addAction(dock.toggleViewAction())
        self.open_windows: list[MainWindow] = []

    # ------------------------------------------------------------------ layout
    def default_sizes(self) -> None:
        """Give the docks their default shares of the window (any window size).

        Left column (procedures, instruments) 24 % of the width; bottom row (survey
        beside the log) 42 % of the height, the survey four fifths of its width;
        the map beside the spectrum and g² plots above.
        """
        w, h = max(self.width(), 800), max(self.height(), 600)
        self.resizeDocks([self.docks["procedures"]], [int(0.24 * w)], QtCore.Qt.Horizontal)
        self.resizeDocks([self.docks["survey"], self.docks["log"]],
                         [int(0.60 * w), int(0.16 * w)], QtCore.Qt.Horizontal)
        self.resizeDocks([self.docks["map"], self.docks["survey"]],
                         [int(0.50 * h), int(0.42 * h)], QtCore.Qt.Vertical)
        self.resizeDocks([self.docks["map"], self.docks["spectrum"]],
                         [int(0.36 * w), int(0.40 * w)], QtCore.Qt.Horizontal)
        self.resizeDocks([self.docks["spectrum"], self.docks["g2"]],
                         [int(0.25 * h), int(0.25 * h)], QtCore.Qt.Vertical)

    def reset_layout(self) -> None:
        """View → Reset layout: every dock back in its place and size, shown, docked."""
        for dock in self.docks.values():
            dock.setFloating(False)
        self.restoreState(self._default_state)
        for dock in self.docks.values():
            dock.show()
        self.docks["procedures"].raise_()
        self.default_sizes()
        QtWidgets.QApplication.processEvents(QtCore.QEventLoop.ExcludeUserInputEvents)
        self.default_sizes()  # again, once the docks have their places: sizes are relative
        self.save_layout()
        log.info("layout reset to the default")

    # ------------------------------------------------------------------ settings
    def _restore_layout(self) -> None:
        prefix = "readonly/" if self.read_only else ""
        geometry = self.settings.value(f"{prefix}geometry")
        state = self.settings.value(f"{prefix}state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        restored = state is not None and self.restoreState(state)
        if state is not None and not restored:
            log.warning("settings: the kept dock layout is not readable; using the default")
        #: True once the docks have sizes for the real window (a kept layout has them).
        self._sized = bool(restored)
        # Applied once more at the first show: before it, Qt restores the places and
        # sizes of the docks but leaves a kept hidden dock shown.
        self._kept_state = state if restored else None
        self._layout_saved = bytes(self.saveState())

    def showEvent(self, event: QtGui.QShowEvent) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        if self._kept_state is not None:
            state, self._kept_state = self._kept_state, None
            self.restoreState(state)
        self._restoring = False
        if not self._sized:  # the first show at the real size: the default shares
            self._sized = True
            QtCore.QTimer.singleShot(0, self.default_sizes)

    def _restore_choices(self) -> None:
        """The display choices kept across restarts (each checked; an invalid one is reset)."""
        axis = str(self.settings.value(SPECTRUM_AXIS_KEY, "nm"))
        if axis not in ("nm", "eV"):
            log.warning("settings: %s = %r is not nm or eV: reset to nm", SPECTRUM_AXIS_KEY, axis)
            axis = "nm"
            self.settings.setValue(SPECTRUM_AXIS_KEY, axis)
        self.spectrum_panel.set_energy_axis(axis == "eV")
        self.spectrum_panel.axis_box.currentIndexChanged.connect(self._save_axis)
        factor = self._kept_number(G2_BIN_KEY, 1, int, 1, MAX_BIN_FACTOR)
        window = self._kept_number(G2_WINDOW_KEY, 0.0, float, 0.0, MAX_WINDOW_NS)
        self.g2_panel.set_display(factor, window)
        self.g2_panel.bin_factor.valueChanged.connect(
            lambda v: self._keep(G2_BIN_KEY, int(v)))
        self.g2_panel.window_ns.valueChanged.connect(
            lambda v: self._keep(G2_WINDOW_KEY, float(v)))

    def _kept_number(self, key: str, default: Any, kind: type, low: float, high: float) -> Any:
        """A kept number, or ``default`` (with a log line) when it is not a ``kind`` in range."""
        text = self.settings.value(key, None)
        if text is None:
            return default
        try:
            number = float(str(text))
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and low <= number <= high
                and (kind is float or number.is_integer())):
            log.warning("settings: %s = %r is not a number in %g–%g: reset to %g", key, text, low,
                        high, default)
            self._keep(key, default)
            return default
        return kind(number)

    def _keep(self, key: str, value: Any) -> None:
        self.settings.setValue(key, value)
        self.settings.sync()

    def _save_axis(self) -> None:
        self.settings.setValue(SPECTRUM_AXIS_KEY, "eV" if self.spectrum_panel.energy_axis
                               else "nm")
        self.settings.sync()

    def save_layout(self) -> None:
        """Save the dock layout and window geometry when they changed."""
        if self._restoring or (self._closing and not self.isVisible()):
            return
        state = bytes(self.saveState())
        if state == self._layout_saved:
            return
        prefix = "readonly/" if self.read_only else ""
        self.settings.setValue(f"{prefix}state", self.saveState())
        self.settings.setValue(f"{prefix}geometry", self.saveGeometry())
        self.settings.sync()
        self._layout_saved = state

    # ------------------------------------------------------------------ errors
    def report_error(self, message: str) -> None:
        """Show a user error in the status bar and the log panel (never a dialog)."""
        log.error("%s", message)
        self.statusBar().showMessage(message, 15000)

    # ------------------------------------------------------------------ commands
    def _command_failed(self, message: str) -> None:
        self._pending_start = False
        self.report_error(message)

    def _run_started(self, run_id: int) -> None:
        self._pending_start = False
        self.statusBar().showMessage(f"run {run_id} started", 5000)

    def send_command(self, description: str, action: Any) -> None:
        """Hand an instrument action ``action(setup)`` to the command worker."""
        if self.read_only:
            self.report_error("read-only session: instruments are not connected")
            return
        self.worker.submit(description, action)

    def _map_clicked(self, x_um: float, y_um: float) -> None:
        if self.read_only:
            self.statusBar().showMessage(f"({x_um:.2f}, {y_um:.2f}) µm", 5000)
            return
        self.instruments_panel.request_move(x_um, y_um)

    def scan_region(self, x_min_um: float, x_max_um: float, y_min_um: float,
                    y_max_um: float) -> None:
        """Start a raster scan of a rectangle, with the raster form's other parameters."""
        if self.read_only:
            return
        values = self.procedures_panel.forms["raster_scan"].values()
        values.update(x_min_um=round(x_min_um, 3), x_max_um=round(x_max_um, 3),
                      y_min_um=round(y_min_um, 3), y_max_um=round(y_max_um, 3))
        try:
            scan = RasterScan.model_validate(values)
        except ValueError as exc:
            self.report_error(f"region scan: {str(exc).splitlines()[-1].strip()}")
            return
        if self.procedures_panel.checked(scan) is not None:  # else refused: scanner limits
            self.start_procedure(scan)

    # ------------------------------------------------------------------ focus and points
    def focus_scan(self) -> None:
        """A z scan: the refocus procedure with its focus scan, the refocus form's values."""
        if self.read_only:
            return
        values = self.procedures_panel.forms["refocus"].values()
        values.update(z_scan=True, x_um=None, y_um=None)
        try:
            procedure = Refocus.model_validate(values)
        except ValueError as exc:
            self.report_error(f"focus scan: {str(exc).splitlines()[-1].strip()}")
            return
        if self.procedures_panel.checked(procedure) is not None:
            self.start_procedure(procedure)

    def mark_point(self, name: str | None = None) -> Any:
        """Mark the scanner's position (the newest readback) as a point of interest."""
        rb = getattr(self.instruments_panel, "readback", None)
        if rb is None or self.instruments_panel.age_s("position") > READOUT_STALE_S:
            self.report_error("mark: the scanner position is not known now (no fresh "
                              "readback); wait for the run to end")
            return None
        x, y, z = rb.position_um
        return self.points_panel.mark(x, y, z, name)

    def _point_changed(self, point: Any) -> None:
        """Store a point-of-interest record: it goes on the stream like every record."""
        if self.read_only:
            self.statusBar().showMessage("read-only session: the change is not stored", 8000)
            return
        self.session.stream.publish(Tagged(point, kind=POI_KIND))

    def _go_to_point(self, x_um: float, y_um: float, z_um: float) -> None:
        if self.read_only:
            self.statusBar().showMessage(f"({x_um:.2f}, {y_um:.2f}, {z_um:.2f}) µm", 5000)
            return
        self.instruments_panel.request_move(x_um, y_um, z_um)

    def measure_points(self, points: list[Any]) -> None:
        """Measure the points like survey QDs: a survey of these targets (the survey form's
        refocus, spectrum and g² settings; no map, no film reference)."""
        if self.read_only or not points:
            return
        first = max((r.qd_id for r in self.buffer.rows()), default=-1) + 1
        targets = [Target(qd_id=first + i, x_um=p.x_um, y_um=p.y_um)
                   for i, p in enumerate(points)]
        values = self.procedures_panel.forms["survey"].values()
        try:
            survey = Survey.model_validate({**values, "film_reference": False,
                                            "drift_every_n_qds": 0})
        except ValueError as exc:
            self.report_error(f"measure points: {str(exc).splitlines()[-1].strip()}")
            return
        survey = survey.model_copy(update={"targets": targets, "max_qds": len(targets)})
        survey = survey.resuming(film=None, announce=[t.qd_id for t in targets])
        if self.procedures_panel.checked(survey) is not None:
            log.info("measuring %d points of interest as QDs %d–%d: %s", len(points), first,
                     first + len(points) - 1, ", ".join(p.name for p in points))
            self.start_procedure(survey)

    def start_procedure(self, procedure: Any) -> None:
        """Start ``procedure`` now, or queue it when a run is in progress."""
        if self.read_only:
            return
        self._queue_halted = False
        if self.runner.busy or self._pending_start:
            self.procedures_panel.enqueue(procedure)
            self.statusBar().showMessage(f"{procedure.title} queued", 5000)
            return
        if procedure.name == "survey":
            self.map_panel.clear_spots()
        self._pending_start = True
        self.worker.start_run(procedure)

    def pause(self) -> None:
        """Pause the run at its next checkpoint (sets a flag; no driver call)."""
        self.runner.pause()

    def resume(self) -> None:
        """Resume a paused run."""
        self.runner.resume()

    def abort(self) -> None:
        """Abort the run (its cleanup switches the laser off); the queue waits."""
        self._queue_halted = True
        self.runner.abort("aborted by the user")
        self.statusBar().showMessage("aborting…", 5000)

    def emergency_stop(self) -> None:
        """Laser off now and abort the run; the queue is cleared."""
        if self.read_only:
            return
        self._queue_halted = True
        self.procedures_panel.clear_queue()
        self.worker.emergency_stop("emergency stop (GUI)")
        self.statusBar().showMessage("EMERGENCY STOP: laser off, run aborted", 15000)
        log.warning("emergency stop pressed")

    def qd_selected(self, run_id: int, qd_id: int, x_um: float, y_um: float) -> None:
        """Show a QD's data; in a live window also move the scanner back to it."""
        if self.read_only:
            from micropl.gui.session_file import qd_curves

            curves = qd_curves(self.reader, run_id, qd_id)
        else:
            curves = self.buffer.curves(run_id, qd_id)
            self.instruments_panel.request_move(x_um, y_um)
        if curves is not None:
            self.show_curves(curves)
        if self.read_only:
            self.map_panel.set_position(x_um, y_um)

    def show_curves(self, curves: QDCurves) -> None:
        """Show one QD's spectrum, fit, g² histogram and results (both panels: this QD)."""
        self.spectrum_panel.set_source(curves.source)
        if curves.spectrum is None:
            self.spectrum_panel.clear(f"no spectrum for QD {curves.source.qd_id}")
        else:
            self.spectrum_panel.show_accumulated(curves.spectrum, curves.fit)
        self.g2_panel.set_source(curves.source)
        if curves.histogram is None:
            self.g2_panel.clear(f"no g² histogram for QD {curves.source.qd_id}")
        else:
            self.g2_panel.show_histogram(curves.histogram, final=True)
        if curves.g2 is not None:
            self.g2_panel.show_result(curves.g2)
        if curves.lifetime is not None:
            self.g2_panel.show_lifetime(curves.lifetime)

    # ------------------------------------------------------------------ GUI-thread updates
    def _readback(self, rb: Readback) -> None:
        self.instruments_panel.set_readback(rb)
        now = time.monotonic()
        if self._readback_at is not None and not self.runner.busy:
            # The idle tagger's rates between runs: one trace bin per poll interval.
            self.buffer.trace.add_rates(rb.rates_cps, min(now - self._readback_at,
                                                          MAX_READBACK_BIN_S))
        self._readback_at = now
        self.procedures_panel.set_limits(rb.limits)
        self.map_panel.set_position(rb.position_um[0], rb.position_um[1])

    def drain(self) -> None:
        """Apply everything the stream and the log produced since the last drain, at once."""
        self._take()
        for group in PANEL_GROUPS:
            self._apply_group(group)

    def _tick(self) -> None:
        """Display timer slot: take the buffer, update the group that has waited longest."""
        self._take()
        now = time.monotonic()
        due = [group for group in PANEL_GROUPS if self._pending(group)
               and now - self._shown_at[group] >= GROUP_MIN_INTERVAL_S.get(group,
                                                                           GROUP_INTERVAL_S)]
        if due:
            # The spectrum first (frame to screen is what the eye follows while focusing),
            # then the group that has waited longest.
            group = "spectrum" if "spectrum" in due else min(due, key=self._shown_at.__getitem__)
            self._apply_group(group)
            self._shown_at[group] = now

    def _pending(self, group: str) -> bool:
        """True when ``group`` has held data not yet shown (a hidden rate trace has none:
        it is drawn when its tab is shown, and takes no tick from the other groups)."""
        if group == "rates" and not self.rate_panel.isVisible():
            self._held.trace = False
            return False
        return any(getattr(self._held, name) for name in GROUP_FIELDS[group])

    def _take(self) -> None:
        """Take the buffer; apply the cheap widgets now and hold the plot data for the groups."""
        u = self.buffer.take()
        held = self._held
        held.map_reset = held.map_reset or u.map_reset
        held.map_lines += u.map_lines
        held.qd_rows += u.qd_rows
        held.trace = held.trace or u.trace
        for name in ("frame", "frame_fit", "accumulated", "accumulated_fit", "histogram", "g2",
                     "lifetime", "position_um", "spectrum_source", "g2_source"):
            if getattr(u, name) is not None:
                setattr(held, name, getattr(u, name))
        if u.histogram is not None or u.g2 is not None:
            held.g2_final = u.g2_final
        if u.rates_cps:
            self.instruments_panel.set_rates(u.rates_cps, "from the run's time tags")
        if u.map_rate_cps is not None:
            self.instruments_panel.set_rates({}, f"map pixel: {u.map_rate_cps / 1e3:,.1f} kcps "
                                                 "(both APDs)")
        if u.position_um is not None:
            self.instruments_panel.set_position(*u.position_um)
        if u.progress is not None:
            self.procedures_panel.set_progress(u.progress.stage, u.progress.done,
                                               u.progress.total)
        for point in u.points:
            self.points_panel.apply(point)
        for event in u.events:
            self._event(event)
        for level, line in self.log_handler.drain():
            self.log_panel.add(level, line)
        now = self.instruments_panel.clock()
        if now - self._ages_at >= AGE_REFRESH_S:
            self._ages_at = now
            self.instruments_panel.refresh_age(now)
        if not self.read_only:
            state = self.runner.state
            self.procedures_panel.set_running(state is not RunState.IDLE,
                                              state is RunState.PAUSED)
            if not (self.runner.busy or self._pending_start or self._queue_halted) \
                    and self.procedures_panel.queue:
                self.start_procedure(self.procedures_panel.take_next())

    def _apply_group(self, group: str) -> None:
        """Hand the held data of one panel group to its panels (and forget it)."""
        u = self._held
        if group == "map":
            if u.map_reset:
                self.map_panel.reset()
            self.map_panel.add_lines(u.map_lines)
            if u.position_um is not None:
                self.map_panel.set_position(*u.position_um)
        elif group == "spectrum":
            if u.spectrum_source is not None:
                self.spectrum_panel.set_source(u.spectrum_source)
            if u.frame is not None or u.frame_fit is not None:
                self.spectrum_panel.show_frame(u.frame, u.frame_fit)
            if u.accumulated is not None or u.accumulated_fit is not None:
                self.spectrum_panel.show_accumulated(u.accumulated, u.accumulated_fit)
        elif group == "g2":
            if u.g2_source is not None:
                self.g2_panel.set_source(u.g2_source)
            if u.histogram is not None:
                self.g2_panel.show_histogram(u.histogram, final=u.g2_final)
            if u.g2 is not None:
                self.g2_panel.show_result(u.g2)
            if u.lifetime is not None:
                self.g2_panel.show_lifetime(u.lifetime)
        elif group == "rates":
            if u.trace and self.rate_panel.isVisible():  # a hidden tab: drawn when shown
                self.rate_panel.show_trace(self.buffer.trace)
        elif group == "survey":
            if u.qd_rows:
                self.survey_panel.update_rows(u.qd_rows)
                for row in u.qd_rows:
                    self.map_panel.set_spot(row.qd_id, row.x_um, row.y_um)
        empty = Update()
        for name in GROUP_FIELDS[group]:
            setattr(u, name, getattr(empty, name))

    def _event(self, event: Any) -> None:
        if isinstance(event, RunStart):
            self.procedures_panel.set_progress(f"run {event.run_id}: {event.procedure}", 0, None)
            return
        if not isinstance(event, RunStop):
            return
        text = f"run {event.run_id} {event.status}" + (f": {event.reason}" if event.reason
                                                        else "")
        self.procedures_panel.set_final(event.status, text)
        if event.status == "completed":
            self.statusBar().showMessage(text, 10000)
        else:
            self._queue_halted = True
            if self.read_only:
                self.statusBar().showMessage(text, 10000)
            else:
                self.report_error(text)
        if not self.read_only:
            self.worker.poll_now()

    # ------------------------------------------------------------------ export
    def plots(self) -> dict[str, Any]:
        """The plots that can be exported, by name."""
        return {"map": self.map_panel.plot, "spectrum": self.spectrum_panel.plot,
                "g2": self.g2_panel.plot, "rates": self.rate_panel.plot,
                "fwhm": self.survey_panel.fwhm_plot, "scatter": self.survey_panel.scatter_plot,
                "g2_hist": self.survey_panel.g2_plot}

    def export_plot(self, name: str, path: str | Path) -> bool:
        """Save plot ``name`` (see :meth:`plots`) as PNG or SVG; errors go to the status bar."""
        from micropl.gui.export import export_plot

        try:
            export_plot(self.plots()[name], path)
        except (OSError, ValueError) as exc:
            self.report_error(f"export of the {name} plot: {exc}")
            return False
        self.statusBar().showMessage(f"{name} plot saved to {path}", 10000)
        return True

    def export_table(self, path: str | Path) -> bool:
        """Save the survey table as CSV; errors go to the status bar."""
        from micropl.gui.export import export_table

        try:
            export_table(self.survey_panel.table, path)
        except OSError as exc:
            self.report_error(f"export of the survey table: {exc}")
            return False
        self.statusBar().showMessage(f"survey table saved to {path}", 10000)
        return True

    def _ask_export_plot(self, name: str) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, f"Export the {name} plot", str(Path.cwd() / f"{name}.png"),
            "PNG image (*.png);;SVG drawing (*.svg)",
            options=QtWidgets.QFileDialog.DontUseNativeDialog)
        if path:
            self.export_plot(name, path)

    def _ask_export_table(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export the survey table", str(Path.cwd() / "survey.csv"), "CSV (*.csv)",
            options=QtWidgets.QFileDialog.DontUseNativeDialog)
        if path:
            self.export_table(path)

    # ------------------------------------------------------------------ files
    def _ask_open(self) -> None:
        # Qt's own dialog: a native one would keep the emergency-stop keys from Qt.
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a session file", str(Path.cwd()), "micropl sessions (*.h5 *.hdf5)",
            options=QtWidgets.QFileDialog.DontUseNativeDialog)
        if path:
            self.open_session_file(path)

    def open_session_file(self, path: str | Path) -> MainWindow | None:
        """Open a session file read-only in a new window (None and an error when unreadable)."""
        from micropl.acquisition.storage import SessionReader

        try:
            reader = SessionReader(path)
        except (OSError, UserError) as exc:
            self.report_error(f"cannot open {path}: {exc}")
            return None
        window = MainWindow(reader=reader, settings=self.settings)
        window.resize(self.size())
        window.show()
        self.open_windows.append(window)
        return window

    def _open_read_only(self) -> None:
        from micropl.gui.session_file import load_session

        self.instruments_panel.setEnabled(False)
        self.procedures_panel.setEnabled(False)
        for button in (self.points_panel.mark_button, self.points_panel.remove_button,
                       self.points_panel.measure_button):
            button.setEnabled(False)
        n = load_session(self.reader, self.buffer)
        runs = self.reader.runs()
        self.setWindowTitle(f"micropl — {self.reader.path} [read-only]")
        self.statusBar().showMessage(f"{self.reader.path.name}: {len(runs)} runs, {n} records "
                                     f"(read-only, created {self.reader.created})")
        log.info("opened %s read-only: %d runs", self.reader.path, len(runs))
        self.drain()
        table = self.survey_panel.table
        if table.rowCount():  # both panels show one QD, the last one, and say which
            self.survey_panel.select_index(table.rowCount() - 1)

    # ------------------------------------------------------------------ closing
    def ask(self, question: str) -> bool:
        """Ask the user a yes/no question; the dialog has a "Laser off now" button.

        The button (like F12 / Ctrl+Space) calls :meth:`emergency_stop` at
        once and leaves the question open. Without a screen (the ``offscreen``
        platform) nobody can answer: unless :attr:`auto_answer_offscreen` is
        False, the answer is yes, which stops the run safely (laser off)
        instead of waiting forever in a dialog no one sees.
        """
        if self.auto_answer_offscreen \
                and QtGui.QGuiApplication.platformName() == "offscreen":
            log.warning("%s — no screen to ask on: answering yes", question)
            return True
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Question, "micropl", question,
                                    QtWidgets.QMessageBox.Yes | QtWidgets.QMessageBox.No, self)
        box.setDefaultButton(QtWidgets.QMessageBox.No)
        box.setEscapeButton(QtWidgets.QMessageBox.No)
        if not self.read_only:
            self._add_laser_off_button(box)
        box.exec_()
        return box.clickedButton() is box.button(QtWidgets.QMessageBox.Yes)

    def _add_laser_off_button(self, box: QtWidgets.QMessageBox) -> QtWidgets.QPushButton:
        """Give ``box`` a red "Laser off now" button that stops without closing it."""
        button = box.addButton(LASER_OFF_BUTTON, QtWidgets.QMessageBox.ActionRole)
        button.setObjectName("laser_off_now")
        button.setStyleSheet("QPushButton { background: #c00; color: white; font-weight: bold }")
        button.setToolTip("Laser off now and abort the run (" + " or ".join(ESTOP_SHORTCUTS)
                          + "); the question stays open")
        button.setAutoDefault(False)
        button.clicked.disconnect()  # a message box closes on every button: not on this one
        button.clicked.connect(self.emergency_stop)
        return button

    def shutdown(self, reason: str) -> None:
        """Close without asking (a signal): laser off and run aborted with ``reason``.

        Open dialogs are rejected, the run is aborted with ``reason`` and the
        laser switched off at once (command worker, not this thread), then
        the window closes once the run's cleanup ran. Safe to call again and
        from inside a dialog's event loop.
        """
        if self._closed:
            return
        if self._shutdown_reason is not None:
            log.warning("already closing (%s); %s ignored", self._shutdown_reason, reason)
            return
        self._shutdown_reason = reason
        log.warning("closing the window: %s", reason)
        if not self.read_only:
            self._queue_halted = True
            self.procedures_panel.clear_queue()
            self.runner.abort(reason)  # first: the run's stored reason is this one
            self.worker.emergency_stop(reason)
        close_dialogs()
        self.close()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt API
        if self._closed:
            event.accept()
            return
        if self._closing:  # already closing further down the stack; it finishes
            event.ignore()
            return
        if not self.read_only and self.runner.busy and self._shutdown_reason is None:
            answer = self.ask("A run is in progress. Stop it (the laser is switched off) and "
                              "close?")
            if self._closed:  # closed while the question was open (a signal)
                event.accept()
                return
            if not answer and self._shutdown_reason is None:
                event.ignore()
                return
        self._closing = True
        if not self.read_only and self.runner.busy:
            self.stop_run_and_wait(reason=self._shutdown_reason or "window closed")
        self.save_layout()
        self.drain_timer.stop()
        self.layout_timer.stop()
        for window in self.open_windows:
            window.close()
        if self.read_only:
            self.reader.close()
        else:
            QtWidgets.QApplication.instance().removeEventFilter(self.estop_filter)
            self.session.stream.unsubscribe(self.subscriber.subscription)
            self.spectral_map_panel.unfollow(self.session.stream)
            self.worker.stop()
        logging.getLogger("micropl").removeHandler(self.log_handler)
        self._closed = True
        event.accept()

    def stop_run_and_wait(self, timeout_s: float = 120.0, *,
                          reason: str = "window closed") -> bool:
        """Abort the run and keep the GUI alive until its cleanup ran; True when it ended."""
        self._queue_halted = True
        self.procedures_panel.clear_queue()
        self.runner.abort(reason)
        self.statusBar().showMessage("stopping the run…")
        deadline = time.monotonic() + timeout_s
        while self.runner.busy and time.monotonic() < deadline:
            QtWidgets.QApplication.processEvents(QtCore.QEventLoop.AllEvents, 50)
            self.runner.wait(0.05)
        result = self.runner.wait(0)
        if result is None:
            log.critical("the run did not stop within %.0f s", timeout_s)
            return False
        log.info("run %d %s: %s", result.run_id, result.status, result.reason)
        return True
