"""GUI event-loop latency while a full-rate fast-mode survey runs.

A 10 ms QTimer (precise) records how late each tick fires; the lateness
distribution is measured first with the GUI idle (the peer figure), then while
a fast-mode survey streams into the main window. Prints p50/p99 of both and
the ratio, the display subscriber's dropped records, and the resident memory
before and after (bounded buffers).

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
    """Peak resident memory of this process, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spin(app: QtWidgets.QApplication, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and not (until is not None and until()):
        app.processEvents(QtCore.QEventLoop.AllEvents, 5)
        time.sleep(0.001)


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
        rss_before = rss_mb()

        procedure = demo_survey().model_copy(update={"max_qds": 8})
        probe.start()
        t0 = time.perf_counter()
        window.start_procedure(procedure)
        spin(app, 10.0, until=lambda: window.runner.busy)
        spin(app, 600.0, until=lambda: not window.runner.busy)
        busy = probe.stop()
        elapsed = time.perf_counter() - t0
        spin(app, 1.0)
        result = window.runner.wait(0)
        dropped = window.subscriber.subscription.dropped
        n_rows = len(window.buffer.rows())
        window.ask = lambda question: True
        window.close()

    p50_i, p99_i = np.percentile(idle, [50, 99])
    p50_b, p99_b = np.percentile(busy, [50, 99])
    print(f"survey: {result.status}, {n_rows} QDs, {elapsed:.1f} s wall, "
          f"{busy.size} ticks measured")
    print(f"event-loop lateness p50 during survey: {p50_b:.2f} ms "
          f"(peer idle GUI: {p50_i:.2f} ms, ratio {p50_b / max(p50_i, 1e-3):.2f})")
    print(f"event-loop lateness p99 during survey: {p99_b:.2f} ms "
          f"(peer idle GUI: {p99_i:.2f} ms, ratio {p99_b / max(p99_i, 1e-3):.2f}; "
          f"budget 50 ms: {'met' if p99_b < 50 else 'MISSED'})")
    print(f"event-loop lateness max during survey: {busy.max():.2f} ms")
    print(f"display records dropped by coalescing: {dropped}")
    print(f"peak RSS: {rss_before:.0f} MB before the survey, {rss_mb():.0f} MB after")


if __name__ == "__main__":
    main()
