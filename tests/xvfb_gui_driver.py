"""Helper of ``test_gui_xvfb.py``: the real GUI on a real X server, reporting on stdout.

Run as ``python tests/xvfb_gui_driver.py SCREENSHOT.png`` with ``DISPLAY`` set. It opens
the main window (fast simulated setup, default settings), fills the survey form with
the demo survey and prints ``START x y`` (the Start button's centre on the screen); the
test clicks it with xdotool. Once QDs are measured and the laser is on it prints
``ESTOP`` and waits for the test's F12 key; when the run has ended it prints
``LASER on|off``, saves the window to SCREENSHOT.png, prints ``SAVED`` and quits.
"""

from __future__ import annotations

import sys
import time

from PyQt5 import QtCore

from micropl.acquisition import load_setup
from micropl.acquisition.session import Session
from micropl.gui.app import application, demo_survey
from micropl.gui.main_window import MainWindow

#: QDs measured before the emergency stop is asked for.
QDS_BEFORE_STOP = 3
DEADLINE_S = 240.0


def say(line: str) -> None:
    print(line, flush=True)


def main(shot: str) -> int:
    app = application()
    setup = load_setup(clock_mode="fast")
    session = Session(setup)
    window = MainWindow(session, settings=QtCore.QSettings(shot + ".ini",
                                                           QtCore.QSettings.IniFormat))
    window.resize(1600, 1000)
    window.show()
    form = window.procedures_panel.select("survey")
    form.set_values(demo_survey().model_dump())
    state = {"phase": "start", "t0": time.monotonic()}

    def tick() -> None:
        if time.monotonic() - state["t0"] > DEADLINE_S:
            say("TIMEOUT")
            window.shutdown("test deadline")
            app.quit()
            return
        if state["phase"] == "start" and window.isVisible():
            button = window.procedures_panel.start_button
            centre = button.mapToGlobal(button.rect().center())
            say(f"START {centre.x()} {centre.y()}")
            state["phase"] = "running"
        elif state["phase"] == "running":
            done = sum(r.status == "completed" for r in window.buffer.rows())
            if window.runner.busy and setup.laser.emission_on and done >= QDS_BEFORE_STOP:
                window.activateWindow()
                say("ESTOP")
                state["phase"] = "stopping"
        elif state["phase"] == "stopping" and not window.runner.busy:
            result = window.runner.wait(0)
            window.drain()
            table = window.survey_panel.table
            if table.rowCount():
                window.survey_panel.select_index(0)
            say(f"RUN {result.status} {result.reason}")
            say(f"LASER {'on' if setup.laser.emission_on else 'off'}")
            state["phase"] = "settle"
            QtCore.QTimer.singleShot(1500, save)

    def save() -> None:
        window.drain()
        ok = window.grab().save(shot)
        say("SAVED" if ok else "NOT SAVED")
        window.close()
        app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(100)
    app.exec_()
    session.close()
    setup.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
