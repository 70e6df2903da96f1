"""Layout and kept choices: reset layout, the survey table at 1600 × 1000, choices kept
across restarts and checked when restored, screenshots with the defaults (pytest-qt)."""

from __future__ import annotations

import json
import logging

import pytest
from PyQt5 import QtCore

from micropl.acquisition import load_setup
from micropl.acquisition.session import Session
from micropl.gui.app import _settings_for
from micropl.gui.bridge import QDRow
from micropl.gui.main_window import SPECTRUM_AXIS_KEY, MainWindow
from micropl.gui.panels.survey_panel import MIN_TABLE_ROWS
from micropl.gui.settings import make_settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "gui.ini"
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(path))
    return path


@pytest.fixture(scope="module")
def setup():
    with load_setup(clock_mode="fast") as s:
        yield s


class Windows:
    """Opens live windows on one setup and closes them at the end."""

    def __init__(self, qtbot, setup) -> None:
        self.qtbot, self.setup, self.open = qtbot, setup, []

    def __call__(self, settings=None, size=(1600, 1000)) -> MainWindow:
        session = Session(self.setup)
        window = MainWindow(session, settings=settings)
        self.qtbot.addWidget(window)
        window.resize(*size)
        window.show()
        self.qtbot.waitExposed(window)
        self.qtbot.waitUntil(lambda: window._sized, timeout=5_000)
        self.qtbot.wait(20)  # the default sizes are applied from the event loop
        self.open.append((window, session))
        return window

    def close(self, window: MainWindow) -> None:
        for i, (w, session) in enumerate(self.open):
            if w is window:
                w.close()
                session.close()
                del self.open[i]
                return

    def close_all(self) -> None:
        while self.open:
            self.close(self.open[-1][0])


@pytest.fixture
def windows(qtbot, setup, settings_file):
    opener = Windows(qtbot, setup)
    yield opener
    opener.close_all()


def visible_rows(window: MainWindow) -> float:
    table = window.survey_panel.table
    return table.viewport().height() / table.rowHeight(0)


def fill_table(window: MainWindow, n: int = 12) -> None:
    window.survey_panel.update_rows([QDRow(1, i, x_um=i, y_um=i, status="completed")
                                     for i in range(n)])


def test_survey_table_shows_six_rows_at_1600_by_1000(windows, qapp):
    window = windows()
    fill_table(window)
    qapp.processEvents()
    assert window.size() == QtCore.QSize(1600, 1000)  # the minimum sizes fit the window
    assert visible_rows(window) >= MIN_TABLE_ROWS
    for plot in (window.spectrum_panel.plot, window.g2_panel.plot, window.map_panel.plot):
        assert plot.height() >= 80


def test_reset_layout_recovers_a_squashed_hidden_floating_layout(windows, qtbot, qapp):
    window = windows()
    fill_table(window)
    docks = window.docks
    window.resizeDocks([docks["map"], docks["survey"]], [900, 10], QtCore.Qt.Vertical)
    docks["log"].hide()
    docks["g2"].setFloating(True)
    qapp.processEvents()
    assert not docks["log"].isVisible() and docks["g2"].isFloating()
    window.save_layout()
    squashed = bytes(window.settings.value("state"))
    window.reset_layout_action.trigger()
    qtbot.wait(20)
    assert all(d.isVisible() and not d.isFloating() for d in docks.values())
    assert visible_rows(window) >= MIN_TABLE_ROWS
    assert window.g2_panel.plot.height() >= 80
    # The reset layout is kept (a new window of this machine starts with it).
    assert bytes(window.settings.value("state")) != squashed


def test_axis_unit_and_dock_layout_kept_across_restarts(windows):
    first = windows()
    first.spectrum_panel.set_energy_axis(True)
    first.docks["log"].hide()
    first.save_layout()
    windows.close(first)
    second = windows()
    assert second.spectrum_panel.energy_axis
    assert not second.docks["log"].isVisible()
    assert second.docks["map"].isVisible()


def test_invalid_kept_values_are_reset_with_a_log_line(windows, settings_file, caplog, qtbot):
    settings = make_settings()
    settings.setValue("params/raster_scan", json.dumps(
        {"x_min_um": 0.0, "x_max_um": 500.0, "y_min_um": 0.0, "y_max_um": 20.0,
         "step_um": 0.2, "dwell_s": 0.005}))  # a mistyped 500 µm edge: beyond the scanner
    settings.setValue("params/g2", json.dumps({"duration_s": -5}))  # the model refuses it
    settings.setValue(SPECTRUM_AXIS_KEY, "furlong")
    settings.sync()
    with caplog.at_level(logging.WARNING, logger="micropl.gui"):
        window = windows()
        form = window.procedures_panel.forms["raster_scan"]
        # Restored before the limits were known, refused once they are.
        qtbot.waitUntil(lambda: window.procedures_panel.limits is not None, timeout=10_000)
    assert form.values()["x_max_um"] == 20.0  # the default again, not clamped to 100
    assert window.procedures_panel.forms["g2"].values()["duration_s"] > 0
    assert not window.spectrum_panel.energy_axis
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "kept raster_scan parameters are refused" in text and "x_max_um" in text
    assert "kept g2 parameters are refused" in text
    assert "view/spectrum_axis = 'furlong'" in text
    # The defaults are kept from now on.
    assert json.loads(make_settings().value("params/raster_scan"))["x_max_um"] == 20.0


def test_screenshot_runs_use_the_defaults_not_the_kept_values(windows, settings_file):
    kept = make_settings()
    kept.setValue(SPECTRUM_AXIS_KEY, "eV")
    kept.setValue("params/raster_scan", json.dumps({"x_max_um": 33.0}))
    kept.sync()
    with _settings_for("shot.png") as fresh:
        window = windows(settings=fresh)
        assert not window.spectrum_panel.energy_axis
        assert window.procedures_panel.forms["raster_scan"].values()["x_max_um"] == 20.0
        windows.close(window)
    with _settings_for(None) as user:
        assert user is None  # a normal run: the user's settings
    assert make_settings().value(SPECTRUM_AXIS_KEY) == "eV"  # the kept ones untouched

