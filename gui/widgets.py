"""Plots and labels that repaint once per data update, and no more.

A plot whose tick labels change width, or whose axis label or title is set
again, asks its layout to be recomputed; the layout pass resizes the view box
and paints the plot a second time (5–20 ms each on a busy machine). So does a
label that grows with its text, or a widget given a style sheet again. The
plots made here reserve a fixed width for the tick labels, :func:`set_label`
and :func:`set_style` only touch what really changed, and
:func:`fixed_lines_label` keeps its height.

pyqtgraph's auto-range is computed lazily while a plot paints, and the range
change then paints it once more; a :class:`DataFollower` sets the range when the
data change instead, so that the one paint already shows the final range.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

__all__ = ["LEFT_AXIS_WIDTH_PX", "DataFollower", "fixed_lines_label", "plot_widget", "set_label",
           "set_style"]

#: Width reserved for the left axis' tick labels, px (six digits at the default font).
LEFT_AXIS_WIDTH_PX = 52


def plot_widget(x_label: str, y_label: str, *, title: str | None = None,
                x_units: str | None = None, y_units: str | None = None,
                view_box: pg.ViewBox | None = None) -> pg.PlotWidget:
    """A PlotWidget with axis labels and a fixed left-axis width.

    Parameters
    ----------
    x_label, y_label : str
        Axis labels (with the unit in the text when ``x_units``/``y_units`` are None).
    title : str, optional
        Fixed plot title.
    x_units, y_units : str, optional
        Units shown by pyqtgraph after the label, without an automatic SI prefix.
    view_box : pg.ViewBox, optional
        A custom view box.
    """
    plot = pg.PlotWidget(title=title, viewBox=view_box)
    for side, text, units in (("bottom", x_label, x_units), ("left", y_label, y_units)):
        axis = plot.getAxis(side)
        axis.enableAutoSIPrefix(False)
        plot.setLabel(side, text, units=units)
    plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH_PX)
    return plot


def set_label(plot: pg.PlotWidget, side: str, text: str) -> None:
    """Set an axis label, leaving the axis alone when the text is unchanged."""
    axis = plot.getAxis(side)
    if axis.labelText != text:
        plot.setLabel(side, text)


def fixed_lines_label(lines: int, text: str = "") -> QtWidgets.QLabel:
    """A word-wrapped label whose height stays ``lines`` lines whatever its text.

    A label that grows or shrinks with its text moves the plot below it, which
    is then laid out and painted again.
    """
    label = QtWidgets.QLabel(text)
    label.setWordWrap(lines > 1)
    label.setAlignment(QtCore.Qt.AlignLeft | QtCore.Qt.AlignTop)
    label.setFixedHeight(label.fontMetrics().lineSpacing() * lines + 4)
    label.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Fixed)
    return label


def set_style(widget: QtWidgets.QWidget, style: str) -> None:
    """Give ``widget`` a style sheet, unless it already has that one (restyling relays out)."""
    if widget.styleSheet() != style:
        widget.setStyleSheet(style)


class DataFollower:
    """Keeps a plot's view on its data, setting the range when the data change.

    pyqtgraph's own auto-range is switched off: it runs while the plot paints,
    and its range change paints the plot a second time. Call :meth:`refresh`
    after giving the plot new data. Zooming or panning with the mouse stops the
    following; the plot's "A" button resumes it.

    Parameters
    ----------
    plot : pg.PlotWidget
        The plot whose view follows the bounds of its items.
    """

    def __init__(self, plot: pg.PlotWidget) -> None:
        self.view = plot.getViewBox()
        self.following = True
        self.view.disableAutoRange()
        self.view.sigRangeChangedManually.connect(self._stop)
        plot.getPlotItem().autoBtn.clicked.connect(self.resume)

    def _stop(self, *_: object) -> None:
        self.following = False

    def resume(self, *_: object) -> None:
        """Follow the data again (after a zoom), and show them now."""
        self.view.disableAutoRange()
        self.following = True
        self.refresh()

    def refresh(self) -> None:
        """Show the bounds of the plot's items (with pyqtgraph's padding) when following."""
        if not self.following:
            return
        ranges = {}
        for name, bounds in zip(("xRange", "yRange"), self.view.childrenBounds()):
            if bounds is not None and all(v is not None and math.isfinite(v) for v in bounds):
                ranges[name] = bounds
        if ranges:
            self.view.setRange(**ranges, padding=None)
            # pyqtgraph moves the items to the new range lazily, while painting, which
            # marks them dirty again and paints twice: move them now.
            self.view.updateMatrix()
