"""GUI event-loop latency while a full-rate fast-mode survey runs.

A 10 ms QTimer (precise) records how late each tick fires; the lateness
distribution is measured first with the GUI idle (the peer figure), then while
fast-mode surveys stream into the main window: the first survey of the process
(which also loads numba's compiled kernels) and three more. Prints p50/p99 of
each against the idle GUI, the display subscriber's dropped records, and the
resident memory before and after (bounded buffers).

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui_latency.py``
"""

from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MICROPL_GUI_SETTINGS",
                      os.path.join(tempfile.mkdtemp(prefix="micropl-bench-"), "gui.ini"))

from PyQt5 import QtCore, QtWidgets  # noqa: E402

from micropl.acquisition import load_setup  # noqa: E402
from micropl.acquisition.session import Session  # noqa: E402
from micropl.gui.app import application, demo_survey  # noqa: E402
from micropl.gui.main_window import MainWindow  # noqa: E402

TICK_MS = 10
IDLE_S = 5.0
WARM_SURVEYS = 3


class LatencyProbe(QtCore.QObject):
    """Records the lateness of every tick of a 10 ms precise timer, in ms."""

    def __init__(self) -> None:
        super().__init__()
        self.lateness_ms: list[float] = []
        self._last = 0.0
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.PreciseTimer)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.lateness_ms.clear()
        self._last = time.perf_counter()
        self._timer.start(TICK_MS)

    def stop(self) -> np.ndarray:
        self._timer.stop()
        return np.asarray(self.lateness_ms)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append(max(0.0, (now - self._last) * 1e3 - TICK_MS))
        self._last = now


def rss_mb() -> float:
    """Resident memory of this process now, MB (the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spin(app: QtWidgets.QApplication, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (until is not None and until()):
        app.processEvents(QtCore.QEventLoop.AllEvents, 5)
        time.sleep(0.001)


def run_survey(app: QtWidgets.QApplication, window: MainWindow, probe: LatencyProbe,
               max_qds: int) -> tuple[np.ndarray, float, str]:
    """Run a fast-mode survey in ``window``; (lateness ms, wall s, final status)."""
    procedure = demo_survey().model_copy(update={"max_qds": max_qds})
    probe.start()
    t0 = time.perf_counter()
    window.start_procedure(procedure)
    spin(app, 10.0, until=lambda: window.runner.busy)
    spin(app, 600.0, until=lambda: not window.runner.busy)
    lateness = probe.stop()
    elapsed = time.perf_counter() - t0
    spin(app, 0.5)
    return lateness, elapsed, window.runner.wait(0).status


def report(name: str, lateness: np.ndarray, idle: np.ndarray) -> None:
    p50_i, p99_i = np.percentile(idle, [50, 99])
    p50, p99 = np.percentile(lateness, [50, 99])
    print(f"{name}: event-loop lateness p50 {p50:.2f} ms (peer idle GUI: {p50_i:.2f} ms), "
          f"p99 {p99:.2f} ms (peer idle GUI: {p99_i:.2f} ms, ratio {p99 / max(p99_i, 1e-3):.1f}; "
          f"budget 50 ms: {'met' if p99 < 50 else 'MISSED'}), max {lateness.max():.1f} ms, "
          f"{lateness.size} ticks")


def main() -> None:
    app = application()
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        window = MainWindow(session)
        window.resize(1600, 1000)
        window.show()
        probe = LatencyProbe()
        spin(app, 1.0)
        probe.start()
        spin(app, IDLE_S)
        idle = probe.stop()
        rss = [rss_mb()]
        # The first survey of a process also loads numba's compiled kernels (the
        # loading holds the GIL); the following ones are what a day at the setup is.
        cold, cold_s, cold_status = run_survey(app, window, probe, 8)
        rss.append(rss_mb())
        warm, walls = [], []
        for _ in range(WARM_SURVEYS):
            lateness, wall_s, status = run_survey(app, window, probe, 8)
            warm.append(lateness)
            walls.append(wall_s)
            rss.append(rss_mb())
        dropped = window.subscriber.subscription.dropped
        n_rows = len(window.buffer.rows())
        window.ask = lambda question: True
        window.close()

    print(f"first survey: {cold_status}, {cold_s:.1f} s wall; then {WARM_SURVEYS} surveys: "
          f"{status}, {np.median(walls):.1f} s wall each (median); {n_rows} QDs in the table")
    report("first survey in the process", cold, idle)
    report("following surveys", np.concatenate(warm), idle)
    print(f"display records dropped by coalescing: {dropped}")
    print("resident memory before and after each survey: "
          + " → ".join(f"{mb:.0f}" for mb in rss) + " MB")


if __name__ == "__main__":
    main()
