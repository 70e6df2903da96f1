"""Save what you see: plots as PNG/SVG, the survey table as CSV (pytest-qt)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PyQt5 import QtGui

from micropl.gui.bridge import QDRow
from micropl.gui.export import export_plot, export_table
from micropl.gui.panels.map_panel import MapPanel
from micropl.gui.panels.survey_panel import COLUMNS, SurveyPanel


def test_map_plot_as_png_and_svg(qtbot, tmp_path):
    panel = MapPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 400)
    panel.show()
    x = np.arange(0.0, 10.0, 0.5)
    panel.set_map(x, x, 1e4 + 1e3 * np.add.outer(x, x))
    png = export_plot(panel.plot, tmp_path / "map.png")
    image = QtGui.QImage(str(png))
    assert not image.isNull() and image.width() >= 300
    # Not blank: the map's colours are in it.
    colours = {image.pixel(i, j) for i in range(0, image.width(), 7)
               for j in range(0, image.height(), 7)}
    assert len(colours) > 20
    svg = export_plot(panel.plot, tmp_path / "map.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "counts/s" in svg  # the colour scale's unit is in the drawing


def test_plot_export_refuses_other_suffixes(qtbot, tmp_path):
    panel = MapPanel()
    qtbot.addWidget(panel)
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        export_plot(panel.plot, tmp_path / "map.jpg")


def test_survey_table_as_csv(qtbot, tmp_path):
    panel = SurveyPanel()
    qtbot.addWidget(panel)
    rows = [QDRow(2, i, x_um=1.5 * i, y_um=2.0, status="completed", g2_0=0.2, g2_0_err=0.03,
                  flags=("multiple_emitters",) if i == 1 else ()) for i in range(3)]
    panel.update_rows(rows)
    path = export_table(panel.table, tmp_path / "survey.csv")
    with path.open(newline="", encoding="utf-8") as handle:
        read = list(csv.reader(handle))
    assert read[0] == list(COLUMNS)
    assert len(read) == 4
    assert read[2][:4] == ["2", "1", "1.50", "2.00"]
    assert read[2][5] == "completed [multiple_emitters]"
    assert read[3][COLUMNS.index("g²(0)")] == "0.200"


def test_window_export_errors_go_to_the_status_bar(qtbot, tmp_path, monkeypatch):
    from micropl.acquisition import load_setup
    from micropl.acquisition.session import Session
    from micropl.gui.main_window import MainWindow

    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        window = MainWindow(session)
        qtbot.addWidget(window)
        window.show()
        try:
            assert window.export_plot("g2", tmp_path / "g2.svg")
            assert (tmp_path / "g2.svg").stat().st_size > 0
            assert not window.export_plot("spectrum", tmp_path / "missing" / "s.png")
            assert "export of the spectrum plot" in window.statusBar().currentMessage()
            assert window.export_table(tmp_path / "t.csv")
        finally:
            window.close()
