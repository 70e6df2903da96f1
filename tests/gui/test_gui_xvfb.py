"""The real GUI in a real X server (Xvfb), driven with xdotool: start a fast survey from the
form with the mouse, press F12, check the laser is off, save a screenshot.

Skipped unless ``Xvfb`` and ``xdotool`` are installed and Qt's xcb platform can load. The
screenshot is written to the test's folder; with ``MICROPL_SCREENSHOT=path`` (e.g.
``docs/screenshot.png``, the README's picture) it is copied there too.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from micropl.gui.platform_check import platform_problem

pytestmark = [pytest.mark.timeout(300)]

DRIVER = Path(__file__).resolve().parents[1] / "xvfb_gui_driver.py"


def _tools() -> str | None:
    for tool in ("Xvfb", "xdotool"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install xvfb xdotool)"
    return None


@pytest.fixture
def xserver():
    missing = _tools()
    if missing:
        pytest.skip(missing)
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start")
    display = f":{number}"
    problem = platform_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": display})
    if problem:
        server.kill()
        pytest.skip(problem)
    yield display
    server.terminate()
    server.wait(10)


def _lines(proc: subprocess.Popen) -> queue.Queue:
    out: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            out.put(line.strip())
        out.put(None)

    threading.Thread(target=read, daemon=True).start()
    return out


def _expect(lines: queue.Queue, prefix: str, timeout_s: float = 180.0) -> str:
    while True:
        line = lines.get(timeout=timeout_s)
        if line is None:
            raise AssertionError(f"the GUI ended before {prefix!r}")
        if line.startswith(prefix) or line == "TIMEOUT":
            assert line != "TIMEOUT", f"the GUI gave up waiting before {prefix!r}"
            return line


def test_real_gui_survey_from_the_form_f12_laser_off_screenshot(xserver, tmp_path):
    shot = tmp_path / "screenshot.png"
    env = {**os.environ, "DISPLAY": xserver, "QT_QPA_PLATFORM": "xcb",
           "MICROPL_GUI_SETTINGS": str(tmp_path / "gui.ini")}
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(shot)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = _lines(proc)
    xdotool = ["xdotool"]
    try:
        _, x, y = _expect(lines, "START ", 120).split()
        subprocess.run([*xdotool, "mousemove", x, y, "click", "1"], env=env, check=True)
        _expect(lines, "ESTOP", 240)
        subprocess.run([*xdotool, "key", "F12"], env=env, check=True)
        run = _expect(lines, "RUN ", 60)
        assert run.startswith("RUN aborted") and "emergency stop" in run
        assert _expect(lines, "LASER ", 30) == "LASER off"
        assert _expect(lines, "SAVED", 30) == "SAVED"
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert shot.stat().st_size > 50_000
    target = os.environ.get("MICROPL_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
