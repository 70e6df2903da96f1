"""The GUI's emergency stop inside every dialog, and the GUI's safe end on signals.

pytest-qt, offscreen, fast clock, simulated setup. Keys are delivered to the
dialog itself from inside the dialog's own event loop (a ``QTimer.singleShot``
that runs while the dialog waits for an answer), and the laser and the run are
checked before the dialog is closed.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import h5py
import numpy as np
import pytest
from PyQt5 import QtCore, QtGui, QtWidgets
from PyQt5.QtTest import QTest

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2, RasterScan, Refocus, SpectrumAcquisition, Survey
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader, writer_alive
from micropl.gui.app import SHUTDOWN_SIGNALS, signal_reason, signal_shutdown
from micropl.gui.main_window import (
    LASER_OFF_BUTTON,
    EmergencyStopFilter,
    MainWindow,
)

pytestmark = pytest.mark.timeout(180)

KEYS = {"F12": (QtCore.Qt.Key_F12, QtCore.Qt.NoModifier),
        "Ctrl+Space": (QtCore.Qt.Key_Space, QtCore.Qt.ControlModifier)}


def long_survey() -> Survey:
    """A survey whose map alone outlasts every test (fast clock)."""
    return Survey(scan=RasterScan(x_min_um=0, x_max_um=40, y_min_um=0, y_max_um=40,
                                  step_um=0.2, dwell_s=0.005),
                  max_qds=20, refocus=Refocus(size_um=1.2, step_um=0.15),
                  spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
                  g2=G2(duration_s=5.0), drift_every_n_qds=0)


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "gui.ini"
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(path))
    return path


@pytest.fixture(scope="module")
def live(qapp, tmp_path_factory):
    """One live window on the simulated setup for the module (each test starts its run)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MICROPL_GUI_SETTINGS", str(tmp_path_factory.mktemp("gui") / "gui.ini"))
        with load_setup(clock_mode="fast") as setup, Session(setup) as session:
            window = MainWindow(session)
            window.resize(1000, 700)
            window.show()
            yield window
            window.ask = lambda question: True
            window.close()


@contextlib.contextmanager
def guarded_window(qtbot):
    """A live window on a fast simulated setup whose signals end it (``signal_shutdown``)."""
    with load_setup(clock_mode="fast") as setup, Session(setup) as session, \
            signal_shutdown() as guard:
        window = MainWindow(session)
        qtbot.addWidget(window)
        guard.window = window
        window.show()
        yield setup, window, guard


def start_survey(qtbot, window: MainWindow) -> None:
    """Start a long survey; return once it runs with the laser on."""
    laser = window.session.setup.laser
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    window.start_procedure(long_survey())
    qtbot.waitUntil(lambda: window.runner.busy and laser.emission_on, timeout=20_000)


def active_dialog() -> QtWidgets.QWidget | None:
    """The popup or modal window that has the keyboard now."""
    app = QtWidgets.QApplication.instance()
    return app.activePopupWidget() or app.activeModalWidget()


def key_target(dialog: QtWidgets.QWidget) -> QtWidgets.QWidget:
    """The widget of ``dialog`` that gets typed keys (its focus widget, or itself)."""
    focus = QtWidgets.QApplication.focusWidget()
    if focus is not None and focus.window() is dialog:
        return focus
    return dialog


def from_inside_dialog(qtbot, check: Callable[[QtWidgets.QWidget], None],
                       answer: Callable[[QtWidgets.QWidget], None]) -> dict:
    """Run ``check(dialog)`` inside the next dialog's own event loop, then ``answer(dialog)``.

    Returns the outcome: the dialog's type, and an ``error`` when ``check`` failed
    (the dialog is answered whatever happened, so that the test never hangs).
    """
    outcome: dict = {}

    def inside() -> None:
        dialog = None
        try:
            qtbot.waitUntil(lambda: active_dialog() is not None, timeout=15_000)
            dialog = active_dialog()
            outcome["dialog"] = type(dialog).__name__
            check(dialog)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test after the dialog
            outcome["error"] = exc
        finally:
            if dialog is not None and dialog.isVisible():
                answer(dialog)

    QtCore.QTimer.singleShot(0, inside)
    return outcome


def reject(dialog: QtWidgets.QWidget) -> None:
    if isinstance(dialog, QtWidgets.QDialog):
        dialog.reject()
    else:
        dialog.close()


def answer_no(dialog: QtWidgets.QWidget) -> None:
    assert isinstance(dialog, QtWidgets.QMessageBox)
    QTest.mouseClick(dialog.button(QtWidgets.QMessageBox.No), QtCore.Qt.LeftButton)


def stopped_while_open(qtbot, window: MainWindow, dialog: QtWidgets.QWidget) -> None:
    """Laser off, the run aborted by the emergency stop and shown, the dialog still open."""
    laser = window.session.setup.laser
    qtbot.waitUntil(lambda: not laser.emission_on, timeout=10_000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    result = window.runner.wait(0)
    assert result.status == "aborted" and "emergency stop" in result.reason, result
    # The display goes on under the dialog: the run's end reaches the panels.
    qtbot.waitUntil(lambda: "aborted" in window.procedures_panel.stage.text(), timeout=10_000)
    assert dialog.isVisible()
    assert laser.emission_on is False


def map_pixels(window: MainWindow) -> int:
    """Map pixels shown so far."""
    rate = window.map_panel.map_rate()
    return 0 if rate is None else int(np.isfinite(rate).sum())


def still_displayed(qtbot, window: MainWindow) -> None:
    """The survey goes on under the dialog and its map keeps reaching the screen."""
    before = map_pixels(window)
    qtbot.waitUntil(lambda: map_pixels(window) > before, timeout=15_000)
    assert window.runner.busy


def press(dialog: QtWidgets.QWidget, key: str) -> None:
    code, modifiers = KEYS[key]
    QTest.keyClick(key_target(dialog), code, modifiers)


# ---------------------------------------------------------------------------- the dialogs
def open_close_confirmation(window: MainWindow) -> None:
    window.auto_answer_offscreen = False  # the real QMessageBox, not the offscreen "yes"
    try:
        window.close()
    finally:
        window.auto_answer_offscreen = True


def open_file_dialog(window: MainWindow) -> None:
    window.open_action.trigger()  # File → Open: QFileDialog.getOpenFileName


def open_error_box(window: MainWindow) -> None:
    QtWidgets.QMessageBox.critical(window, "micropl", "camera 'camera': not responding")


def open_input_dialog(window: MainWindow) -> None:
    QtWidgets.QInputDialog.getText(window, "micropl", "Comment:")  # a focused line edit


def open_file_menu(window: MainWindow) -> None:
    menu = window.menuBar().actions()[0].menu()  # a popup menu has the keyboard
    menu.exec_(window.mapToGlobal(QtCore.QPoint(10, 10)))


DIALOGS = {"close_confirmation": (open_close_confirmation, "QMessageBox"),
           "file_open": (open_file_dialog, "QFileDialog"),
           "error_box": (open_error_box, "QMessageBox"),
           "input_dialog": (open_input_dialog, "QInputDialog"),
           "file_menu": (open_file_menu, "QMenu")}


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("dialog_name", list(DIALOGS))
def test_emergency_stop_key_works_inside_dialog(qtbot, live, dialog_name, key):
    """F12 / Ctrl+Space pressed in the dialog: laser off and survey aborted, dialog open."""
    opener, kind = DIALOGS[dialog_name]
    start_survey(qtbot, live)
    answer = answer_no if dialog_name == "close_confirmation" else reject

    def check(dialog):
        assert type(dialog).__name__ == kind
        still_displayed(qtbot, live)
        press(dialog, key)
        stopped_while_open(qtbot, live, dialog)

    outcome = from_inside_dialog(qtbot, check, answer)
    opener(live)
    if "error" in outcome:
        raise outcome["error"]
    assert outcome["dialog"] == kind
    # No native dialog anywhere (a native one would keep the keys from Qt).
    assert QtCore.QCoreApplication.testAttribute(QtCore.Qt.AA_DontUseNativeDialogs)
    assert live.isVisible()  # "No" to the close confirmation keeps the window
    assert active_dialog() is None
    assert live.session.setup.laser.emission_on is False


def test_laser_off_button_of_close_confirmation(qtbot, live):
    """The close confirmation's "Laser off now" button stops at once and keeps the question;
    answering "No" then leaves the window open with the laser off and the run aborted."""
    start_survey(qtbot, live)

    def check(dialog):
        button = next(b for b in dialog.buttons() if b.text() == LASER_OFF_BUTTON)
        QTest.mouseClick(button, QtCore.Qt.LeftButton)
        stopped_while_open(qtbot, live, dialog)

    outcome = from_inside_dialog(qtbot, check, answer_no)
    open_close_confirmation(live)
    if "error" in outcome:
        raise outcome["error"]
    assert live.isVisible() and not live.runner.busy
    assert live.session.setup.laser.emission_on is False
    assert live.runner.wait(0).status == "aborted"


def test_emergency_stop_key_in_main_window_stops_once_per_press(qtbot, live, monkeypatch):
    """One press is one stop (Qt sends a shortcut override and a key press); auto-repeat
    and other keys do nothing."""
    calls = []
    monkeypatch.setattr(live.worker, "emergency_stop", lambda reason: calls.append(reason))
    for n, key in enumerate(KEYS, start=1):
        code, modifiers = KEYS[key]
        QTest.keyClick(live, code, modifiers)
        assert len(calls) == n, key
    QtWidgets.QApplication.sendEvent(live, QtGui.QKeyEvent(
        QtCore.QEvent.KeyPress, QtCore.Qt.Key_F12, QtCore.Qt.NoModifier, "", True))
    QTest.keyClick(live, QtCore.Qt.Key_Space)
    QTest.keyClick(live, QtCore.Qt.Key_F11)
    assert calls == ["emergency stop (GUI)"] * 2


@pytest.mark.parametrize(("key", "modifiers", "stops"), [
    pytest.param(QtCore.Qt.Key_F12, QtCore.Qt.NoModifier, True, id="F12"),
    pytest.param(QtCore.Qt.Key_F12, QtCore.Qt.ShiftModifier, True, id="Shift+F12"),
    pytest.param(QtCore.Qt.Key_F12, QtCore.Qt.ControlModifier | QtCore.Qt.AltModifier, True,
                 id="Ctrl+Alt+F12"),
    pytest.param(QtCore.Qt.Key_F12, QtCore.Qt.KeypadModifier, True, id="keypad-F12"),
    pytest.param(QtCore.Qt.Key_Space, QtCore.Qt.ControlModifier, True, id="Ctrl+Space"),
    pytest.param(QtCore.Qt.Key_Space, QtCore.Qt.ControlModifier | QtCore.Qt.ShiftModifier, True,
                 id="Ctrl+Shift+Space"),
    pytest.param(QtCore.Qt.Key_Space, QtCore.Qt.NoModifier, False, id="Space"),
    pytest.param(QtCore.Qt.Key_Space, QtCore.Qt.ShiftModifier, False, id="Shift+Space"),
    pytest.param(QtCore.Qt.Key_F11, QtCore.Qt.NoModifier, False, id="F11"),
    pytest.param(QtCore.Qt.Key_Return, QtCore.Qt.ControlModifier, False, id="Ctrl+Return"),
])
def test_emergency_stop_filter_matches_only_its_keys(qapp, key, modifiers, stops):
    calls = []
    filt = EmergencyStopFilter(lambda: calls.append(1))
    widget = QtWidgets.QLineEdit()
    for kind in (QtCore.QEvent.ShortcutOverride, QtCore.QEvent.KeyPress):
        event = QtGui.QKeyEvent(kind, key, modifiers)
        assert filt.eventFilter(widget, event) is stops
    assert calls == ([1] if stops else [])


# ---------------------------------------------------------------------------- signals
def test_signal_during_close_confirmation_ends_safely(qtbot, settings_file):
    """SIGHUP while the close confirmation is open: the dialog closes, the run is aborted
    naming the signal, the laser is off and the window closed (in-process)."""
    with guarded_window(qtbot) as (setup, window, guard):
        start_survey(qtbot, window)

        def check(dialog):
            os.kill(os.getpid(), signal.SIGHUP)
            qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=15_000)

        outcome = from_inside_dialog(qtbot, check, answer_no)
        open_close_confirmation(window)
        if "error" in outcome:
            raise outcome["error"]
        assert outcome["dialog"] == "QMessageBox"
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
        assert not window.runner.busy
        result = window.runner.wait(0)
        assert result.status == "aborted" and result.reason == signal_reason(signal.SIGHUP)
        assert "SIGHUP" in result.reason
        assert setup.laser.emission_on is False
        assert guard.exit_code == 128 + signal.SIGHUP


def test_second_signal_is_ignored_and_handlers_restored(qtbot, settings_file):
    """SIGTERM in a file dialog, then SIGINT: the first one's reason is stored; after the
    block the previous handlers are back."""
    before = {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS}
    with guarded_window(qtbot) as (setup, window, guard):
        start_survey(qtbot, window)

        def check(dialog):
            os.kill(os.getpid(), signal.SIGTERM)
            qtbot.waitUntil(lambda: guard.signum is not None, timeout=15_000)
            os.kill(os.getpid(), signal.SIGINT)
            qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)

        outcome = from_inside_dialog(qtbot, check, reject)
        open_file_dialog(window)
        if "error" in outcome:
            raise outcome["error"]
        assert outcome["dialog"] == "QFileDialog"
        assert not window.isVisible() and active_dialog() is None
        result = window.runner.wait(0)
        assert result.status == "aborted" and "SIGTERM" in result.reason
        assert setup.laser.emission_on is False
        assert guard.exit_code == 128 + signal.SIGTERM
        assert guard.ignored == [signal.SIGINT]
    assert {sig: signal.getsignal(sig) for sig in SHUTDOWN_SIGNALS} == before


def test_signal_without_a_run_closes_the_window(qtbot, settings_file):
    """SIGTERM with no run (the laser switched on by hand): laser off, window closed."""
    with guarded_window(qtbot) as (setup, window, guard):
        QTest.mouseClick(window.instruments_panel.laser_button, QtCore.Qt.LeftButton)
        qtbot.waitUntil(lambda: setup.laser.emission_on, timeout=10_000)
        os.kill(os.getpid(), signal.SIGTERM)
        qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
        qtbot.waitUntil(lambda: not setup.laser.emission_on, timeout=10_000)
        assert guard.exit_code == 128 + signal.SIGTERM


def test_signal_before_the_event_loop_ends_without_running_it(qtbot, settings_file, qapp):
    """A signal while the setup loads: the loop never runs, the window ends the same way."""
    from micropl.gui.app import SignalShutdown, _exec

    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        window = MainWindow(session)
        qtbot.addWidget(window)
        window.show()
        guard = SignalShutdown()
        guard.window = window
        guard.signum = signal.SIGHUP  # as the handler records it
        _exec(qapp, guard)
        assert not guard.loop_running
        assert not window.isVisible()
        assert guard.exit_code == 128 + signal.SIGHUP


def _stderr_lines(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


@pytest.mark.parametrize("first", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_ends_micropl_gui_safely(tmp_path, first):
    """``micropl gui --fast --run survey --out FILE`` sent a signal during the survey (then a
    second one once the first was seen): exit code 128 + N, the run stored ``aborted`` naming
    the first signal, the file closed, one ``micropl:`` line and no traceback."""
    sig = signal.Signals[first]
    second = signal.SIGINT if sig != signal.SIGINT else signal.SIGTERM
    path = tmp_path / "gui.h5"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               MICROPL_GUI_SETTINGS=str(tmp_path / "gui.ini"))
    proc = subprocess.Popen([sys.executable, "-m", "micropl", "gui", "--fast", "--run", "survey",
                             "--out", str(path), "--size", "800x600"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    lines = _stderr_lines(proc)
    err: list[str] = []
    try:
        deadline = time.monotonic() + 120
        started = False
        while not started and time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                with SessionReader(path) as reader:
                    started = any(run.status == "running" for run in reader.runs())
            if not started:
                time.sleep(0.05)  # polling interval only: the condition is the file's content
        assert started, "the survey did not start"
        proc.send_signal(sig)
        while time.monotonic() < deadline:  # the first signal was handled: send the second
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                break
            err.append(line)
            if f"{first} received" in line:
                proc.send_signal(second)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while (line := lines.get(timeout=30)) is not None:
        err.append(line)
    text = "".join(err)
    assert proc.returncode == 128 + sig, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1].startswith(f"micropl: {first} received: ")
    assert not writer_alive(path)
    with h5py.File(path, "r"):  # plain (non-SWMR): refused unless the writer closed the file
        pass
    with SessionReader(path) as reader:
        run = reader.runs()[-1]
    assert run.procedure == "survey"
    assert run.status == "aborted" and run.reason == signal_reason(sig), run


def test_unhandled_gui_error_switches_the_laser_off_and_aborts(qtbot, live):
    """An exception no slot handled (PyQt would abort the process, laser on) stops safely."""
    from micropl.gui.app import error_stop

    start_survey(qtbot, live)
    previous = sys.excepthook
    with error_stop() as hook:
        assert sys.excepthook == hook.handle
        hook.window = live
        try:
            raise ValueError("plot data\nbroken")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        qtbot.waitUntil(lambda: not live.runner.busy, timeout=20_000)
    assert sys.excepthook is previous
    assert not live.session.setup.laser.emission_on
    result = live.runner.wait(0)
    assert result.status == "aborted"
    assert result.reason == "GUI error: ValueError: plot data broken"
    assert hook.errors == ["ValueError: plot data broken"]
