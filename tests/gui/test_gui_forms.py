"""GUI pieces without a run: generated forms, settings, wheel guard, rate colours, CLI."""

from __future__ import annotations

import argparse

import pytest
from PyQt5 import QtCore, QtGui

from micropl.acquisition.procedures import G2, PROCEDURES, RasterScan, Survey
from micropl.cli import UsageError
from micropl.gui.forms import ModelForm
from micropl.gui.panels.instruments_panel import rate_colour
from micropl.gui.panels.procedures_panel import ProceduresPanel
from micropl.gui.settings import make_settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    return make_settings()


@pytest.mark.parametrize("name", list(PROCEDURES))
def test_form_defaults_round_trip(qtbot, name):
    form = ModelForm(PROCEDURES[name])
    qtbot.addWidget(form)
    assert form.model() == PROCEDURES[name]()


def test_limits_units_and_nesting(qtbot):
    form = ModelForm(Survey)
    qtbot.addWidget(form)
    step = form.subforms["scan"].editors["step_um"].spin
    assert (step.minimum(), step.maximum()) == (0.01, 20.0)  # ge=0.01, le=20
    assert step.suffix() == " µm"
    max_qds = form.editors["max_qds"].spin
    assert (max_qds.minimum(), max_qds.maximum()) == (1, 10_000)
    duration = form.subforms["g2"].editors["duration_s"].spin
    assert duration.minimum() > 0 and duration.maximum() == 86_400  # gt=0, le=86400
    assert set(form.subforms) == {"scan", "refocus", "spectrum", "g2"}
    # Optional values: "keep" means None.
    power = form.subforms["g2"].editors["power_percent"]
    assert power.value() is None
    power.set_value(35.0)
    assert form.model().g2.power_percent == 35.0
    # Literal choices.
    source = form.subforms["scan"].editors["source"]
    source.set_value("camera")
    assert form.model().scan.source == "camera"


def test_invalid_form_reports_one_line(qtbot, settings):
    panel = ProceduresPanel(settings)
    qtbot.addWidget(panel)
    form = panel.select("raster_scan")
    form.editors["x_max_um"].set_value(-5.0)  # left of x_min_um
    messages = []
    panel.invalid.connect(messages.append)
    assert panel.procedure() is None
    assert len(messages) == 1 and "x_max_um > x_min_um" in messages[0]


def test_last_used_parameters_saved_on_change(qtbot, settings):
    panel = ProceduresPanel(settings)
    qtbot.addWidget(panel)
    panel.select("g2").editors["duration_s"].spin.setValue(42.0)
    # Written at once (not on exit): a fresh settings object sees it.
    again = ProceduresPanel(make_settings())
    qtbot.addWidget(again)
    assert again.current_name == "g2"
    assert again.forms["g2"].model() == G2(duration_s=42.0)


def test_spin_boxes_ignore_wheel_without_focus(qtbot):
    form = ModelForm(RasterScan)
    qtbot.addWidget(form)
    form.show()
    spin = form.editors["step_um"].spin
    before = spin.value()

    def wheel():
        centre = QtCore.QPointF(spin.rect().center())
        event = QtGui.QWheelEvent(centre, QtCore.QPointF(spin.mapToGlobal(centre.toPoint())),
                                  QtCore.QPoint(0, 0),
                                  QtCore.QPoint(0, 120), QtCore.Qt.NoButton,
                                  QtCore.Qt.NoModifier, QtCore.Qt.NoScrollPhase, False)
        spin.wheelEvent(event)

    wheel()
    assert spin.value() == before
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=2000)
    wheel()
    assert spin.value() > before


def test_rate_colours_near_threshold():
    assert rate_colour(0.1e6, 2e6) == "#2a2"
    assert rate_colour(1.3e6, 2e6) == "#e90"
    assert rate_colour(1.8e6, 2e6) == "#e22"


def test_cli_gui_arguments():
    from micropl.cli import gui as cli_gui

    parser = argparse.ArgumentParser()
    cli_gui.register(parser.add_subparsers())
    args = parser.parse_args(["gui", "--fast", "--size", "big"])
    with pytest.raises(UsageError, match="--size"):
        cli_gui.run(args)
    args = parser.parse_args(["gui", "--run", "nonsense"])
    with pytest.raises(UsageError, match="--run 'nonsense'"):
        cli_gui.run(args)
    args = parser.parse_args(["gui", "--screenshot", "x.jpg"])
    with pytest.raises(UsageError, match=".png"):
        cli_gui.run(args)
