"""Replay controls: play, pause, seek and speed over a recorded file.

The panel drives the :class:`~micropl.acquisition.replay.Replay` procedure
through the main window's runner commands (as the procedures panel does), so
the replayed data reaches the same map, spectrum, g² and survey panels as live
acquisition. Speed and seek only set the shared replay player's speed and
fast-forward target (no driver call from the GUI thread); seeking backwards
aborts the replay run and starts a new one that fast-forwards to the target
(the analysis must see the data before it again).
"""

from __future__ import annotations

import math
from typing import Any

from PyQt5 import QtCore, QtWidgets

__all__ = ["ReplayPanel", "SPEEDS"]

#: Speed choices: label → recorded seconds per clock second.
SPEEDS: dict[str, float] = {"0.5×": 0.5, "1×": 1.0, "2×": 2.0, "5×": 5.0, "10×": 10.0,
                            "100×": 100.0, "max": math.inf}
_SLIDER_STEPS = 1000


class ReplayPanel(QtWidgets.QWidget):
    """Play / pause / seek / speed of a replay session.

    Parameters
    ----------
    window : MainWindow
        The main window (its runner commands start, pause and abort runs).
    source : ReplaySource
        The recorded data the replay instruments serve.
    analysis : AnalysisSettings
        Fit settings of the replay (recorded in the run's provenance).
    """

    def __init__(self, window: Any, source: Any, analysis: Any,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.window = window
        self.source = source
        self.analysis = analysis
        self._pending_seek_s: float | None = None
        self.play_button = QtWidgets.QPushButton("Play")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.speed_box = QtWidgets.QComboBox()
        self.speed_box.addItems(list(SPEEDS))
        self.slider = QtWidgets.QSlider(QtCore.Qt.Horizontal)
        self.slider.setRange(0, _SLIDER_STEPS)
        self.position_label = QtWidgets.QLabel()
        self.file_label = QtWidgets.QLabel(f"{source.path.name} ({source.kind}, "
                                           f"{source.duration_s:.2f} s of data)")
        row = QtWidgets.QHBoxLayout()
        for widget in (self.play_button, self.pause_button, QtWidgets.QLabel("speed"),
                       self.speed_box):
            row.addWidget(widget)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.file_label)
        layout.addLayout(row)
        layout.addWidget(self.slider)
        layout.addWidget(self.position_label)
        self.set_speed_label(source.speed)
        self.play_button.clicked.connect(self.play)
        self.pause_button.clicked.connect(self.pause)
        self.speed_box.currentTextChanged.connect(self._speed_changed)
        self.slider.sliderReleased.connect(lambda: self.seek(self._slider_s()))
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(100)
        self.refresh()

    # ------------------------------------------------------------------ commands
    def set_speed_label(self, speed: float) -> None:
        """Select the speed choice nearest ``speed``."""
        label = min(SPEEDS, key=lambda k: abs(math.log(SPEEDS[k]) - math.log(speed))
                    if math.isfinite(SPEEDS[k]) and math.isfinite(speed)
                    else (0 if SPEEDS[k] == speed else math.inf))
        self.speed_box.setCurrentText(label)

    def _speed_changed(self, label: str) -> None:
        self.source.set_speed(SPEEDS[label])

    def play(self, start_s: float = 0.0) -> None:
        """Start the replay (from the beginning, fast-forwarding to ``start_s``) or resume."""
        from micropl.acquisition.replay import Replay

        runner = self.window.runner
        if runner.busy:
            self.window.resume()
            return
        self.window.start_procedure(Replay.for_source(self.source, self.analysis,
                                                      start_s=float(start_s or 0.0)))

    def pause(self) -> None:
        """Pause at the next checkpoint (the player position stops)."""
        self.window.pause()

    def seek(self, position_s: float) -> None:
        """Go to ``position_s`` of recorded time.

        Forward: play as fast as possible up to it. Backward: restart the replay
        run and fast-forward to it.
        """
        position_s = min(max(0.0, float(position_s)), self.source.duration_s)
        runner = self.window.runner
        if runner.busy and position_s >= self.source.position_s:
            self.source.fast_forward_to(position_s)
            return
        if runner.busy:
            self._pending_seek_s = position_s
            self.window.abort()
            return
        self.play(position_s)

    # ------------------------------------------------------------------ display
    def _slider_s(self) -> float:
        return self.slider.value() / _SLIDER_STEPS * self.source.duration_s

    def refresh(self) -> None:
        """Show the player position; start a pending backward seek once the run ended."""
        if self._pending_seek_s is not None and not self.window.runner.busy:
            target, self._pending_seek_s = self._pending_seek_s, None
            self.play(target)
        duration = self.source.duration_s
        position = self.source.position_s
        if not self.slider.isSliderDown() and duration > 0:
            self.slider.setValue(int(round(position / duration * _SLIDER_STEPS)))
        state = self.window.runner.state.value
        self.position_label.setText(f"{position:.3f} / {duration:.3f} s ({state})")
