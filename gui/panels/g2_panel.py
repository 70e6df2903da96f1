"""g² panel: the live HBT histogram with the central and side windows shaded, g²(0) ± σ
in large type and the lifetime from the stream's peak-train fit of the final histogram.

The bin width and the delay window shown are set live, without touching the
measurement: the display sums ``factor`` adjacent bins of the accumulated
histogram (:func:`rebin`) and shows only delays within ± the window. g²(0) and
the lifetime stay those of the measurement's own analysis.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.analysis.g2 import G2Result, PeakTrainFit
from micropl.gui.settings import NoWheelDoubleSpinBox, NoWheelSpinBox
from micropl.gui.widgets import DataFollower, fixed_lines_label, plot_widget, set_style
from micropl.records import G2Histogram

__all__ = ["G2Panel", "PLOT_MIN_HEIGHT_PX", "rebin", "MAX_BIN_FACTOR", "MAX_WINDOW_NS"]

#: Most bins of the accumulated histogram summed into one shown bin.
MAX_BIN_FACTOR = 256
#: Widest delay window shown, ± ns (0: the whole histogram).
MAX_WINDOW_NS = 10_000.0


def rebin(tau_ps: np.ndarray, values: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``factor`` adjacent bins: the centres of the new bins and their sums.

    Bins are grouped from the first one; an incomplete group at the end is dropped
    (so every shown bin is ``factor`` times as wide). ``factor`` 1 returns the input.

    Parameters
    ----------
    tau_ps, values : ndarray, shape (n,)
        Bin centres (ps, equally spaced) and counts (or a model).
    factor : int
        Bins per shown bin (≥ 1).
    """
    tau = np.asarray(tau_ps, float)
    y = np.asarray(values, float)
    factor = int(factor)
    if factor <= 1:
        return tau, y
    n = (tau.size // factor) * factor
    return tau[:n].reshape(-1, factor).mean(axis=1), y[:n].reshape(-1, factor).sum(axis=1)

#: Smallest height of the histogram plot, px.
PLOT_MIN_HEIGHT_PX = 80
#: Style of the g²(0) value.
VALUE_STYLE = "font-size: 20pt; font-weight: bold"


class G2Panel(QtWidgets.QWidget):
    """Coincidences against delay τ (ns), with the windows the g²(0) estimate uses."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = plot_widget("delay τ (ns)", "coincidences")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        # ~10⁴ bins: draw peak-decimated to the screen's pixels.
        self.curve = self.plot.plot(pen=pg.mkPen("#ddd", width=1))
        self.model_curve = self.plot.plot(pen=pg.mkPen("#f84", width=1.5))
        for curve in (self.curve, self.model_curve):
            curve.setDownsampling(auto=True, method="peak")
        self.follower = DataFollower(self.plot)
        self._shown_windows: list[tuple[float, float]] = []
        self._windows: list[pg.LinearRegionItem] = []
        self.value = QtWidgets.QLabel("g²(0) = —")
        self.value.setStyleSheet(VALUE_STYLE)
        self.detail = fixed_lines_label(2)
        #: Which run, QD and position the histogram shown belongs to.
        self.source = fixed_lines_label(1, "no run")
        self.source.setStyleSheet("font-weight: bold")
        self.lifetime = QtWidgets.QLabel("lifetime: —")
        self.lifetime.setStyleSheet("font-size: 13pt")
        self.lifetime.setAlignment(QtCore.Qt.AlignRight)
        self.integration = QtWidgets.QLabel("no histogram yet")
        self.integration.setAlignment(QtCore.Qt.AlignRight)
        side = QtWidgets.QVBoxLayout()
        side.addWidget(self.lifetime)
        side.addWidget(self.integration)
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.source)
        left.addWidget(self.value)
        top = QtWidgets.QHBoxLayout()
        top.addLayout(left)
        top.addStretch(1)
        top.addLayout(side)
        self.plot.setMinimumHeight(PLOT_MIN_HEIGHT_PX)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.detail)
        layout.addLayout(self._display_controls())
        layout.addWidget(self.plot, 1)
        self._histogram: G2Histogram | None = None
        self._model: np.ndarray | None = None

    def _display_controls(self) -> QtWidgets.QHBoxLayout:
        """Bin width (× the measured bin) and the ± delay window shown."""
        self.bin_factor = NoWheelSpinBox()
        self.bin_factor.setRange(1, MAX_BIN_FACTOR)
        self.bin_factor.setPrefix("× ")
        self.bin_factor.setToolTip("bins of the measured histogram summed into one shown bin "
                                   "(display only: g²(0) is the measurement's)")
        self.window_ns = NoWheelDoubleSpinBox()
        self.window_ns.setRange(0.0, MAX_WINDOW_NS)
        self.window_ns.setSuffix(" ns")
        self.window_ns.setToolTip("delays shown: ± this window around 0 (0: all)")
        self.bin_label = QtWidgets.QLabel("")
        for box in (self.bin_factor, self.window_ns):
            box.setKeyboardTracking(False)
            box.valueChanged.connect(self._redraw)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("bin"))
        row.addWidget(self.bin_factor)
        row.addWidget(self.bin_label)
        row.addStretch(1)
        row.addWidget(QtWidgets.QLabel("window ±"))
        row.addWidget(self.window_ns)
        return row

    def set_display(self, bin_factor: int, window_ns: float) -> None:
        """Set the shown bin factor and ± window (ns; 0: all) and redraw."""
        for box, value in ((self.bin_factor, int(bin_factor)), (self.window_ns, float(window_ns))):
            box.blockSignals(True)
            box.setValue(value)
            box.blockSignals(False)
        self._redraw()

    def shown(self) -> tuple[np.ndarray, np.ndarray]:
        """(τ in ns, counts) of the histogram as drawn."""
        x, y = self.curve.xData, self.curve.yData  # not getData(): that one is downsampled
        return (np.zeros(0), np.zeros(0)) if x is None else (x, y)

    def _view(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = self._histogram
        tau, y = rebin(h.tau_ps, values, self.bin_factor.value())
        window = self.window_ns.value()
        if window > 0:
            keep = np.abs(tau) <= window * 1e3
            tau, y = tau[keep], y[keep]
        return tau / 1e3, y

    def _redraw(self) -> None:
        h = self._histogram
        if h is None:
            self.bin_label.setText("")
            return
        self.curve.setData(*self._view(np.asarray(h.counts, float)))
        if self._model is not None:
            self.model_curve.setData(*self._view(self._model))
        else:
            self.model_curve.setData([], [])
        self.bin_label.setText(f"= {h.bin_ps * self.bin_factor.value():g} ps")
        self.follower.refresh()

    def set_source(self, source: object) -> None:
        """Say which run, QD and position the histogram shown is of (a ``Source``)."""
        text = source.text()
        if self.source.text() != text:
            self.source.setText(text)

    def clear(self, note: str = "no histogram") -> None:
        """Show nothing (the QD chosen has no g² measurement): no other QD's data stay."""
        self._histogram = None
        self._model = None
        self.curve.setData([], [])
        self.model_curve.setData([], [])
        self._shade([])
        self.value.setText("g²(0) = —")
        set_style(self.value, VALUE_STYLE)
        self.detail.setText("")
        self.lifetime.setText("lifetime: —")
        self.integration.setText(note)

    def show_histogram(self, histogram: G2Histogram, final: bool = False) -> None:
        """Draw a (live or final) histogram."""
        self._histogram = histogram
        self._model = None
        self._redraw()
        self.integration.setText(f"{'final' if final else 'live'}: "
                                 f"{histogram.integration_s:.1f} s, {histogram.bin_ps:g} ps bins")

    def show_result(self, result: G2Result) -> None:
        """Shade the windows and show g²(0) ± 1σ."""
        windows = [tuple(result.central_window_ps)] + [tuple(w) for w in result.side_windows_ps]
        if windows != self._shown_windows:
            self._shade(windows)
        self.value.setText(f"g²(0) = {result.g2_0:.3f} ± {result.g2_0_err:.3f}")
        colour = "#2a2" if result.g2_0 + result.g2_0_err < 0.5 else "#c80"
        set_style(self.value, f"{VALUE_STYLE}; color: {colour}")
        bg = result.g2_0_bgcorr
        self.detail.setText(
            f"central {result.central_counts:.0f} counts, mean side "
            f"{result.side_mean_counts:.0f} counts ({result.n_side_left}+{result.n_side_right} "
            f"side peaks, period {result.period_ps / 1e3:.1f} ns)"
            + (f"; background-corrected {bg:.3f} ± {result.g2_0_bgcorr_err:.3f}"
               if np.isfinite(bg) else ""))

    def _shade(self, windows: list[tuple[float, float]]) -> None:
        """Shade the central window red and the side windows blue (times in ps)."""
        self._shown_windows = windows
        while len(self._windows) < len(windows):
            region = pg.LinearRegionItem(movable=False)
            region.setZValue(-5)
            self.plot.addItem(region)
            self._windows.append(region)
        for i, region in enumerate(self._windows):
            if i < len(windows):
                lo, hi = windows[i]
                region.setRegion((lo / 1e3, hi / 1e3))
                color = (255, 80, 80, 70) if i == 0 else (80, 160, 255, 45)
                region.setBrush(pg.mkBrush(color))
                region.show()
            else:
                region.hide()

    def show_lifetime(self, fit: PeakTrainFit) -> None:
        """Show the lifetime of a peak-train fit and draw its model."""
        self.lifetime.setText(f"lifetime: {fit.lifetime_ns:.2f} ± {fit.lifetime_ns_err:.2f} ns"
                              + ("" if fit.success else " (fit did not converge)"))
        h = self._histogram
        if h is not None and np.asarray(fit.model).shape == np.asarray(h.counts).shape:
            self._model = np.asarray(fit.model, float)
            self._redraw()

    def g2_text(self) -> str:
        """The g²(0) text shown."""
        return self.value.text()
