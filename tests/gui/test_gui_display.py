"""The display path of the GUI: one repaint per update, followed ranges, bounded tables,
and the panel groups spread over the display timer's ticks (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PyQt5 import QtCore

from micropl.acquisition import load_setup
from micropl.acquisition.session import Session
from micropl.analysis.g2 import pulsed_g2
from micropl.gui.bridge import DisplayBuffer, QDRow
from micropl.gui.main_window import GROUP_INTERVAL_S, PANEL_GROUPS, MainWindow
from micropl.gui.panels.g2_panel import G2Panel
from micropl.gui.panels.spectrum_panel import SpectrumPanel
from micropl.gui.panels.survey_panel import SurveyPanel
from micropl.gui.widgets import DataFollower, plot_widget
from micropl.records import G2Histogram, MapLine, QDStatus, Spectrum, TagChunk, Tagged

pytestmark = pytest.mark.timeout(60)

PERIOD_PS = 100_000.0
TAU_PS = np.arange(-500_000.0, 500_000.0, 128.0)


def histogram(scale: float, seed: int) -> G2Histogram:
    """A pulsed HBT histogram: 11 exponential peaks, the central one antibunched."""
    rate = 2.0 + scale * sum((0.1 if k == 0 else 1.0)
                             * np.exp(-np.abs(TAU_PS - k * PERIOD_PS) / 2_000.0)
                             for k in range(-5, 6))
    counts = np.random.default_rng(seed).poisson(rate)
    return G2Histogram(TAU_PS, counts, 128.0, scale / 10)


@pytest.fixture
def paints(monkeypatch):
    """Counts of GraphicsView paint events, per view."""
    counts: dict[int, int] = {}
    original = pg.GraphicsView.paintEvent

    def counting(view, event):
        counts[id(view)] = counts.get(id(view), 0) + 1
        original(view, event)

    monkeypatch.setattr(pg.GraphicsView, "paintEvent", counting)
    return counts


def settle(qtbot) -> None:
    for _ in range(5):
        qtbot.wait(10)


def shown(qtbot, panel):
    """``panel`` on screen (offscreen) with its first paints done."""
    qtbot.addWidget(panel)
    panel.resize(700, 450)
    panel.show()
    settle(qtbot)
    return panel


def test_g2_update_paints_the_plot_once_with_the_new_range(qtbot, paints):
    panel = shown(qtbot, G2Panel())
    for i, scale in enumerate((5.0, 50.0, 500.0)):
        paints.clear()
        h = histogram(scale, i)
        panel.show_histogram(h)
        panel.show_result(pulsed_g2(h.tau_ps, h.counts, period_ps=PERIOD_PS))
        settle(qtbot)
        assert paints == {id(panel.plot): 1}
        (_, _), (y_lo, y_hi) = panel.plot.getViewBox().viewRange()
        assert y_lo <= 0 and h.counts.max() <= y_hi < 1.2 * h.counts.max()


def test_spectrum_update_paints_the_plot_once(qtbot, paints):
    panel = shown(qtbot, SpectrumPanel())
    wavelength = np.linspace(480.0, 540.0, 512)
    for peak in (300.0, 3000.0):
        paints.clear()
        counts = 100 + peak / (1 + ((wavelength - 510.0) / 3.0) ** 2)
        panel.show_frame(Spectrum(wavelength_nm=wavelength, counts=counts, exposure_s=1.0,
                                  counts_unit="e", read_noise=1.0), None)
        settle(qtbot)
        assert paints == {id(panel.plot): 1}
        (x_lo, x_hi), (_, y_hi) = panel.plot.getViewBox().viewRange()
        assert x_lo <= 480.0 and x_hi >= 540.0 and y_hi >= counts.max()


def test_follower_stops_on_a_manual_zoom_and_resumes_with_the_auto_button(qtbot):
    plot = plot_widget("x (nm)", "y")
    qtbot.addWidget(plot)
    curve = plot.plot()
    follower = DataFollower(plot)
    curve.setData([0.0, 10.0], [0.0, 1.0])
    follower.refresh()
    (x_lo, x_hi), _ = plot.getViewBox().viewRange()
    assert x_lo <= 0.0 and x_hi >= 10.0

    plot.getViewBox().setXRange(2.0, 3.0, padding=0)
    plot.getViewBox().sigRangeChangedManually.emit([True, True])  # as the wheel does
    curve.setData([0.0, 100.0], [0.0, 1.0])
    follower.refresh()
    assert plot.getViewBox().viewRange()[0] == pytest.approx([2.0, 3.0])

    button = plot.getPlotItem().autoBtn
    button.clicked.emit(button)
    (x_lo, x_hi), _ = plot.getViewBox().viewRange()
    assert follower.following and x_lo <= 0.0 and x_hi >= 100.0
    assert not any(plot.getViewBox().autoRangeEnabled())  # pyqtgraph's lazy one stays off


def row(run_id: int, qd_id: int, fwhm_mev: float = 60.0) -> QDRow:
    return QDRow(run_id, qd_id, x_um=1.0, y_um=2.0, status="completed",
                 peak_energy_ev=2.4, peak_energy_err_ev=1e-4, fwhm_mev=fwhm_mev,
                 fwhm_err_mev=1.0, g2_0=0.1, g2_0_err=0.02)


def test_survey_table_drops_the_oldest_qds_beyond_its_bound(qtbot):
    panel = SurveyPanel(max_rows=5)
    qtbot.addWidget(panel)
    for run_id in (1, 2, 3):
        panel.update_rows([row(run_id, q) for q in range(3)])
    assert panel.table.rowCount() == 5
    assert panel.row(1, 0) is None and panel.row(2, 1) is not None
    assert panel.table.item(0, 0).text() == "2" and panel.table.item(0, 1).text() == "1"
    panel.update_rows([row(3, 2, fwhm_mev=80.0)])  # an update of a kept QD stays in place
    assert panel.table.rowCount() == 5 and panel.table.item(4, 8).text() == "80.0"
    with qtbot.waitSignal(panel.qd_selected) as selected:
        panel.select_index(0)
    assert selected.args[:2] == [2, 1]


def test_display_buffer_keeps_at_most_max_rows():
    buffer = DisplayBuffer(max_rows=4)
    for qd in range(10):
        buffer.handle(QDStatus(run_id=1, qd_id=qd, status="completed"))
    assert [r.qd_id for r in buffer.rows()] == [6, 7, 8, 9]
    assert [r.qd_id for r in buffer.take().qd_rows] == [6, 7, 8, 9]


def test_display_tick_updates_one_panel_group_at_a_time(qtbot, monkeypatch, tmp_path):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        window = MainWindow(session)
        qtbot.addWidget(window)
        window.drain_timer.stop()
        window.drain()
        calls: list[str] = []
        monkeypatch.setattr(window.rate_panel, "isVisible", lambda: True)  # its tab in front
        for panel, method, group in ((window.map_panel, "add_lines", "map"),
                                     (window.spectrum_panel, "show_frame", "spectrum"),
                                     (window.g2_panel, "show_histogram", "g2"),
                                     (window.survey_panel, "update_rows", "survey"),
                                     (window.rate_panel, "show_trace", "rates")):
            monkeypatch.setattr(panel, method,
                                lambda *args, group=group, **kwargs: calls.append(group))
        wavelength = np.linspace(480.0, 540.0, 64)
        records = [MapLine(x_um=np.arange(4.0), y_um=0.0, counts=np.ones(4), dwell_s=0.01,
                           line_index=0),
                   Spectrum(wavelength_nm=wavelength, counts=np.ones(64), exposure_s=1.0),
                   histogram(5.0, 0),
                   TagChunk(t_ps=np.array([10, 20], np.int64), channel=np.array([1, 2], np.int32),
                            t_start_ps=0, t_stop_ps=200_000_000_000)]
        for record, kind in zip(records, ("", "frame", "live", "g2")):
            window.buffer.handle(Tagged(record=record, run_id=1, qd_id=0, kind=kind))
        window.buffer.handle(QDStatus(run_id=1, qd_id=0, status="completed"))
        for i, group in enumerate(PANEL_GROUPS):
            window._tick()
            assert calls == list(PANEL_GROUPS[:i + 1]), group
        # New map data right away waits until the map's last update is GROUP_INTERVAL_S old.
        window.buffer.handle(Tagged(record=records[0], run_id=1, qd_id=0))
        window._tick()
        assert calls == list(PANEL_GROUPS)
        qtbot.wait(int(GROUP_INTERVAL_S * 1e3) + 10)
        window._tick()
        assert calls == [*PANEL_GROUPS, "map"]
        window.ask = lambda question: True
        window.close()


def test_plot_widget_reserves_a_fixed_axis_width(qtbot):
    plot = plot_widget("λ (nm)", "counts")
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    plot.show()
    curve = plot.plot()
    follower = DataFollower(plot)
    widths = []
    for top in (1.0, 1e6):
        curve.setData([0.0, 1.0], [0.0, top])
        follower.refresh()
        settle(qtbot)
        widths.append(plot.getViewBox().geometry().width())
    assert widths[0] == widths[1]
    assert QtCore.QRectF(plot.getViewBox().geometry()).isValid()


def test_switching_the_spectrum_axis_to_ev_shows_the_data_even_after_a_zoom(qtbot):
    panel = shown(qtbot, SpectrumPanel())
    wavelength = np.linspace(480.0, 540.0, 512)
    panel.show_frame(Spectrum(wavelength_nm=wavelength, counts=np.ones(512), exposure_s=1.0,
                              counts_unit="e"), None)
    view = panel.plot.getViewBox()
    view.setXRange(500.0, 505.0, padding=0)
    view.sigRangeChangedManually.emit([True, True])
    panel.set_energy_axis(True)
    (x_lo, x_hi), _ = view.viewRange()
    assert x_lo <= 1239.84198 / 540.0 and x_hi >= 1239.84198 / 480.0
