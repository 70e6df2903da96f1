"""The map: a colour scale with ticks and units beside (not over) the map, and a hover
readout of position and rate (pytest-qt, offscreen)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PyQt5 import QtCore
from PyQt5.QtTest import QTest

from micropl.gui.panels.map_panel import MapPanel
from micropl.records import MapLine


@pytest.fixture
def panel(qtbot):
    widget = MapPanel()
    qtbot.addWidget(widget)
    widget.resize(560, 460)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _map() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.arange(0.0, 20.0, 0.5)
    y = np.arange(0.0, 15.0, 0.5)
    rate = 2e4 + 1.5e5 * np.exp(-((x[None] - 8) ** 2 + (y[:, None] - 11) ** 2) / 2.0)
    return x, y, rate


def test_colour_bar_has_ticks_and_units_beside_the_map(panel, qapp):
    x, y, rate = _map()
    panel.set_map(x, y, rate)
    qapp.processEvents()
    axis = panel.colorbar.axis
    lo, hi = panel.colorbar.levels()
    assert lo == pytest.approx(np.percentile(rate, 1)) and hi > 1e5
    assert "counts/s" in axis.labelString() and "k" in axis.labelString()  # SI prefix
    # Several readable ticks in kcounts/s (the old bar showed only "0").
    ticks = [v for level in axis.tickValues(lo, hi, 300) for v in level[1]]
    strings = axis.tickStrings(ticks, axis.autoSIPrefixScale, 1)
    assert len(ticks) >= 3 and all(s.strip() for s in strings)
    assert all(0 < float(s) < 1000 for s in strings)
    # The label is on the bar's outer axis, not between bar and map, and the bar is
    # beside the map's view box.
    assert not panel.colorbar.getAxis("left").labelText
    bar = panel.colorbar.sceneBoundingRect()
    view = panel.view.sceneBoundingRect()
    assert bar.left() >= view.right() - 1


@pytest.mark.parametrize("x_um, y_um, expected", [
    (8.0, 11.0, "x 8.00 µm, y 11.00 µm: 170,000 counts/s"),
    (8.1, 10.9, "x 8.10 µm, y 10.90 µm: 170,000 counts/s"),  # same pixel (0.5 µm steps)
    (0.0, 0.0, None),
    (25.0, 3.0, "x 25.00 µm, y 3.00 µm: outside the map"),
    (-0.3, 3.0, "x -0.30 µm, y 3.00 µm: outside the map"),
])
def test_readout_at(panel, x_um, y_um, expected):
    x, y, rate = _map()
    panel.set_map(x, y, rate)
    text = panel.readout_at(x_um, y_um)
    if expected is None:  # a pixel's own value, independently indexed
        expected = f"x 0.00 µm, y 0.00 µm: {rate[0, 0]:,.0f} counts/s"
    assert text == expected


def test_unscanned_pixels_say_so(panel):
    x = np.arange(0.0, 5.0, 0.5)
    panel.add_lines([MapLine(line_index=0, y_um=0.0, x_um=x, counts=np.full(x.size, 50),
                             dwell_s=0.01)])
    panel.add_lines([MapLine(line_index=2, y_um=1.0, x_um=x, counts=np.full(x.size, 80),
                             dwell_s=0.01)])
    assert panel.readout_at(1.0, 0.0).endswith(": 5,000 counts/s")
    assert panel.readout_at(1.0, 0.5).endswith(": not scanned yet")
    assert panel.readout_at(1.0, 1.0).endswith(": 8,000 counts/s")


def test_hovering_the_map_shows_position_and_rate(panel, qtbot):
    x, y, rate = _map()
    panel.set_map(x, y, rate)
    panel.view.setRange(xRange=(0, 20), yRange=(0, 15), padding=0)
    qtbot.wait(1)  # let the view apply its range
    scene = panel.view.mapViewToScene(QtCore.QPointF(8.0, 11.0))
    pos = panel.plot.mapFromScene(scene)
    QTest.mouseMove(panel.plot.viewport(), pos)
    qtbot.waitUntil(lambda: "counts/s" in panel.hover.text(), timeout=5_000)
    shown = panel.hover.text()
    match = re.match(r"x (-?[0-9.]+) µm, y (-?[0-9.]+) µm: ", shown)
    assert match, shown
    xs, ys = float(match.group(1)), float(match.group(2))
    assert abs(xs - 8.0) < 0.3 and abs(ys - 11.0) < 0.3
    assert shown == panel.readout_at(xs, ys)
