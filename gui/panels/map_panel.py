"""Scan map panel: the live PL map with a colour bar, crosshair, scale bar and QD markers.

The colour bar has ticks and the unit (counts/s with an SI prefix); hovering
shows the position in µm and the rate of the pixel under the mouse
(:meth:`MapPanel.readout_at`).

Mouse: a click moves the scanner there; a left drag draws a rectangle and
asks for a raster scan of it; the wheel zooms and a right drag zooms the axes
(pyqtgraph's default); a middle drag pans.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.gui.widgets import DataFollower, fixed_lines_label, plot_widget
from micropl.records import MapLine

__all__ = ["MapPanel", "COLORBAR_AXIS_WIDTH_PX"]

#: Width of the colour bar's axis (ticks and label), px.
COLORBAR_AXIS_WIDTH_PX = 62


class _MapViewBox(pg.ViewBox):
    """ViewBox whose left drag selects a rectangle and whose click reports a position."""

    clicked = QtCore.pyqtSignal(float, float)
    region = QtCore.pyqtSignal(float, float, float, float)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=False)
        self._band = QtWidgets.QGraphicsRectItem()
        self._band.setPen(pg.mkPen("c", width=1.5, style=QtCore.Qt.DashLine))
        self._band.setBrush(pg.mkBrush(0, 255, 255, 30))
        self._band.setZValue(50)
        self._band.hide()
        self.addItem(self._band, ignoreBounds=True)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            point = self.mapSceneToView(ev.scenePos())
            self.clicked.emit(float(point.x()), float(point.y()))
        else:
            super().mouseClickEvent(ev)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph API
        if ev.button() == QtCore.Qt.LeftButton:
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos())
            b = self.mapSceneToView(ev.scenePos())
            rect = QtCore.QRectF(a, b).normalized()
            if ev.isFinish():
                self._band.hide()
                if rect.width() > 0 and rect.height() > 0:
                    self.region.emit(rect.left(), rect.right(), rect.top(), rect.bottom())
            else:
                self._band.setRect(rect)
                self._band.show()
        elif ev.button() == QtCore.Qt.MiddleButton:
            ev.accept()
            delta = self.mapSceneToView(ev.lastScenePos()) - self.mapSceneToView(ev.scenePos())
            self.translateBy(x=delta.x(), y=delta.y())
            self.sigRangeChangedManually.emit(self.mouseEnabled())
        else:
            super().mouseDragEvent(ev, axis)


class MapPanel(QtWidgets.QWidget):
    """PL map in counts/s per pixel, scanner crosshair and the QDs found.

    Signals
    -------
    move_requested(x_um, y_um)
        The user clicked the map.
    scan_requested(x_min_um, x_max_um, y_min_um, y_max_um)
        The user dragged a rectangle.
    """

    move_requested = QtCore.pyqtSignal(float, float)
    scan_requested = QtCore.pyqtSignal(float, float, float, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = _MapViewBox()
        self.plot = plot_widget("x", "y", x_units="µm", y_units="µm", view_box=self.view)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(-10)
        self.view.addItem(self.image)
        self.follower = DataFollower(self.plot)
        self.colorbar = pg.ColorBarItem(colorMap="inferno", interactive=False, width=14)
        self.colorbar.setImageItem(self.image, insert_in=self.plot.getPlotItem())
        # The scale's ticks and unit on the bar's outer side (SI prefix: "kcounts/s"), wide
        # enough for its labels (pyqtgraph drops a tick label that does not fit).
        axis = self.colorbar.axis
        axis.setLabel("PL rate", units="counts/s")
        axis.enableAutoSIPrefix(True)
        axis.setWidth(COLORBAR_AXIS_WIDTH_PX)
        self.cross_x = pg.InfiniteLine(angle=90, pen=pg.mkPen("c", width=1))
        self.cross_y = pg.InfiniteLine(angle=0, pen=pg.mkPen("c", width=1))
        for line in (self.cross_x, self.cross_y):
            self.view.addItem(line, ignoreBounds=True)
        self.spots = pg.ScatterPlotItem(symbol="o", size=14, brush=None,
                                        pen=pg.mkPen("#4cf", width=1.5))
        self.view.addItem(self.spots)
        self.scale = pg.ScaleBar(size=5.0, suffix="µm")
        self.scale.setParentItem(self.view)
        self.scale.anchor((1, 1), (1, 1), offset=(-20, -20))
        self._labels: list[pg.TextItem] = []
        help_text = ("click: move the scanner · left-drag: scan a region · wheel: zoom · "
                     "middle-drag: pan")
        self.hover = fixed_lines_label(1, f"hover: x, y and the PL rate · {help_text}")
        self.hover.setObjectName("map_hover")
        self.hover.setToolTip(help_text)
        self.plot.setToolTip(help_text)
        self.plot.setMinimumSize(220, 200)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.hover)
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)
        self.view.clicked.connect(self.move_requested)
        self.view.region.connect(self.scan_requested)
        self._rate: np.ndarray | None = None
        self._x_um: np.ndarray | None = None
        self._y_um: np.ndarray | None = None
        self._spot_xy: dict[int, tuple[float, float]] = {}

    # ------------------------------------------------------------------ data
    def reset(self) -> None:
        """Forget the current map (a new one starts)."""
        self._rate = None

    def add_lines(self, lines: list[MapLine]) -> None:
        """Put map lines into the image (a line's rate is counts / dwell)."""
        if not lines:
            return
        for line in lines:
            self._place(line)
        self._show()

    def _place(self, line: MapLine) -> None:
        x = np.asarray(line.x_um, float)
        if self._rate is None or self._x_um is None or self._x_um.size != x.size \
                or not np.allclose(self._x_um, x):
            step = float(x[1] - x[0]) if x.size > 1 else 1.0
            self._x_um = x
            self._y_um = np.array([line.y_um - step * line.line_index])
            self._rate = np.full((1, x.size), np.nan)
            self._step = step
        row = int(line.line_index)
        if row >= self._rate.shape[0]:
            grow = np.full((row + 1 - self._rate.shape[0], self._rate.shape[1]), np.nan)
            self._rate = np.vstack([self._rate, grow])
        self._rate[row] = np.asarray(line.counts, float) / line.dwell_s

    def _show(self) -> None:
        rate = self._rate
        if rate is None or self._x_um is None:
            return
        finite = rate[np.isfinite(rate)]
        if finite.size == 0:
            return
        lo, hi = float(np.percentile(finite, 1)), float(np.percentile(finite, 99.7))
        if hi <= lo:
            hi = lo + 1.0
        shown = np.where(np.isfinite(rate), rate, lo)
        self.image.setImage(shown, autoLevels=False)
        self.colorbar.setLevels((lo, hi))
        step = self._step
        x0 = float(self._x_um[0]) - step / 2
        y0 = float(self._y_um[0]) - step / 2
        self.image.setRect(QtCore.QRectF(x0, y0, step * rate.shape[1], step * rate.shape[0]))
        self.follower.refresh()

    def set_map(self, x_um: np.ndarray, y_um: np.ndarray, rate_cps: np.ndarray) -> None:
        """Show a whole map (rows along y), e.g. from a session file."""
        self._x_um = np.asarray(x_um, float)
        self._y_um = np.asarray(y_um, float)
        self._step = float(self._x_um[1] - self._x_um[0]) if self._x_um.size > 1 else 1.0
        self._rate = np.asarray(rate_cps, float)
        self._show()

    def pixel_at(self, x_um: float, y_um: float) -> tuple[int, int] | None:
        """(row, column) of the map pixel holding (x, y) µm, or None outside the map."""
        rate = self._rate
        if rate is None or self._x_um is None or self._y_um is None:
            return None
        col = int(np.floor((x_um - float(self._x_um[0])) / self._step + 0.5))
        row = int(np.floor((y_um - float(self._y_um[0])) / self._step + 0.5))
        if 0 <= row < rate.shape[0] and 0 <= col < rate.shape[1]:
            return row, col
        return None

    def readout_at(self, x_um: float, y_um: float) -> str:
        """The hover text at (x, y) µm: the position and the pixel's PL rate in counts/s."""
        where = f"x {x_um:.2f} µm, y {y_um:.2f} µm"
        pixel = self.pixel_at(x_um, y_um)
        if pixel is None:
            return f"{where}: outside the map"
        value = float(self._rate[pixel])
        if not np.isfinite(value):
            return f"{where}: not scanned yet"
        return f"{where}: {value:,.0f} counts/s"

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if not self.view.sceneBoundingRect().contains(scene_pos):
            return
        point = self.view.mapSceneToView(scene_pos)
        text = self.readout_at(float(point.x()), float(point.y()))
        if self.hover.text() != text:
            self.hover.setText(text)

    def map_rate(self) -> np.ndarray | None:
        """The map shown, counts/s, shape (n_y, n_x) (NaN: not yet scanned)."""
        return None if self._rate is None else self._rate.copy()

    def set_position(self, x_um: float, y_um: float) -> None:
        """Move the crosshair to the scanner position."""
        self.cross_x.setPos(x_um)
        self.cross_y.setPos(y_um)

    def set_spot(self, qd_id: int, x_um: float, y_um: float) -> None:
        """Mark a selected QD with its ID."""
        if not np.isfinite(x_um) or self._spot_xy.get(qd_id) == (x_um, y_um):
            return
        self._spot_xy[qd_id] = (x_um, y_um)
        xy = np.array(list(self._spot_xy.values()))
        self.spots.setData(x=xy[:, 0], y=xy[:, 1])
        label = pg.TextItem(str(qd_id), color="#4cf", anchor=(-0.3, 1.1))
        label.setPos(x_um, y_um)
        self.view.addItem(label)
        self._labels.append(label)

    def clear_spots(self) -> None:
        """Remove the QD markers."""
        for label in self._labels:
            self.view.removeItem(label)
        self._labels.clear()
        self._spot_xy.clear()
        self.spots.clear()
