"""Count-rate trace panel: both APDs and their sum over the last minutes.

What a time tagger's own software shows first: the rate to watch while
focusing, where blinking shows. Data: :class:`~micropl.gui.rate_trace.RateTrace`
(the stream's tag chunks, and the idle tagger's readbacks).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtWidgets

from micropl.gui.rate_trace import RateTrace
from micropl.gui.widgets import DataFollower, fixed_lines_label, plot_widget

__all__ = ["RatePanel"]

#: Curve colours: APD A, APD B, sum.
COLOURS = ("#4af", "#f84", "#ddd")


class RatePanel(QtWidgets.QWidget):
    """Rates of APD A, APD B and their sum against counting time (s, newest at 0)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = plot_widget("counting time (s, newest at 0)", "count rate", y_units="counts/s")
        self.plot.getAxis("left").enableAutoSIPrefix(True)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.addLegend(offset=(10, 10))
        self.curves = [self.plot.plot(pen=pg.mkPen(colour, width=1.2), name=name)
                       for colour, name in zip(COLOURS, ("APD A", "APD B", "sum"))]
        for curve in self.curves:  # up to 3000 bins: drawn peak-decimated to the pixels
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        self.follower = DataFollower(self.plot)
        self.readout = fixed_lines_label(1, "no counts yet")
        self.plot.setMinimumHeight(90)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.readout)
        layout.addWidget(self.plot, 1)

    def show_trace(self, trace: RateTrace) -> None:
        """Redraw from the trace's ring buffer."""
        t, a, b, total = trace.arrays()
        for curve, values in zip(self.curves, (a, b, total)):
            curve.setData(t, values)
        if t.size:
            first, second = trace.channels
            self.readout.setText(
                f"newest: APD A (ch {first}) {a[-1] / 1e3:,.1f} kcps · APD B (ch {second}) "
                f"{b[-1] / 1e3:,.1f} kcps · sum {total[-1] / 1e3:,.1f} kcps; mean of the "
                f"{t.size} bins shown {np.nanmean(total) / 1e3:,.1f} kcps")
        self.follower.refresh()

    def data(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(t, rate) of the APD A, APD B and sum curves (as given, not as decimated)."""
        return [(curve.xData, curve.yData) for curve in self.curves]
