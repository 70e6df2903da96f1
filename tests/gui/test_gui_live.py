"""Live truth: readouts carry their age, rates show "—" with no counts, the progress bar
shows how the run ended (pytest-qt, offscreen, fake clocks: no sleeps)."""

from __future__ import annotations

import math

import pytest

from micropl.gui.commands import Readback
from micropl.gui.panels.instruments_panel import (
    RATE_STALE_S,
    READOUT_STALE_S,
    InstrumentsPanel,
    age_text,
)
from micropl.gui.panels.procedures_panel import ProceduresPanel


class ManualMonotonic:
    """Monotonic seconds that move only when told."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def readback(**changes) -> Readback:
    values = dict(laser_on=True, power_percent=10.0, rep_rate_hz=10e6, center_wavelength_nm=515,
                  grating=1, gratings=("1: 600 l/mm",), exposure_s=1.0, em_gain=100,
                  temperature_c=-60.0, read_mode="fvb", position_um=(1.0, 2.0, 3.5),
                  limits_um=((0, 100), (0, 100), (0, 50)), rates_cps={1: 21e3, 2: 19e3})
    values.update(changes)
    return Readback(**values)


@pytest.fixture
def panel(qtbot):
    clock = ManualMonotonic()
    widget = InstrumentsPanel(2e6, clock=clock)
    qtbot.addWidget(widget)
    return widget, clock


def test_rates_show_a_dash_once_no_counts_flow(panel):
    widget, clock = panel
    assert "—" in widget.rate_text(1)[0]  # nothing measured yet
    widget.set_rates({1: 21e3, 2: 19.5e3}, "from the run's time tags")
    text, style = widget.rate_text(1)
    assert "21.0 kcps" in text and "#2a2" in style
    assert "19.5 kcps" in widget.rate_text(2)[0]
    clock.advance(RATE_STALE_S * 0.9)
    widget.refresh_age()
    assert "21.0 kcps" in widget.rate_text(1)[0]
    clock.advance(RATE_STALE_S * 0.2)
    widget.refresh_age()
    for ch in (1, 2):
        text, style = widget.rate_text(ch)
        assert "— kcps" in text and "#888" in style
    assert widget.rate_source.text().startswith("no counts for")


def test_one_channel_refreshed_keeps_the_other_ageing(panel):
    widget, clock = panel
    widget.set_rates({1: 5e3, 2: 6e3}, "tags")
    clock.advance(RATE_STALE_S + 0.5)
    widget.set_rates({1: 7e3}, "tags")
    assert "7.0 kcps" in widget.rate_text(1)[0]
    assert "— kcps" in widget.rate_text(2)[0]


def test_readouts_go_grey_and_say_their_age(panel):
    widget, clock = panel
    widget.set_readback(readback())
    assert widget.position.text() == "x 1.00 µm, y 2.00 µm, z 3.50 µm"
    assert "#e22" in widget.laser_state.styleSheet()
    assert widget.age_s("position") == 0.0
    clock.advance(READOUT_STALE_S + 7.0)
    widget.refresh_age()
    for label in (widget.position, widget.temperature, widget.laser_state):
        assert "#888" in label.styleSheet()
        assert "(12 s ago)" in label.text()
    assert "— kcps" in widget.rate_text(1)[0]  # the readback's rates are old too
    widget.set_readback(readback(laser_on=False))  # fresh again
    assert widget.position.text().endswith("µm") and "#888" not in widget.position.styleSheet()
    assert "21.0 kcps" in widget.rate_text(1)[0]


def test_position_without_z_keeps_the_last_known_z(panel):
    widget, _ = panel
    widget.set_position(1.0, 2.0)
    assert "z — µm" in widget.position.text()
    widget.set_position(1.0, 2.0, 7.25)
    widget.set_position(4.0, 5.0)
    assert widget.position.text() == "x 4.00 µm, y 5.00 µm, z 7.25 µm"


@pytest.mark.parametrize("age, text", [(0.42, "0.4 s ago"), (12.4, "12 s ago"),
                                       (600, "10 min ago"), (math.inf, "never")])
def test_age_text(age, text):
    assert age_text(age) == text


@pytest.mark.parametrize("status, value, shown", [
    ("aborted", 300, "aborted at 30%"),
    ("failed", 550, "failed at 55%"),
    ("completed", 1000, "completed"),
])
def test_progress_bar_shows_the_final_status(qtbot, tmp_path, status, value, shown):
    from PyQt5 import QtCore

    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.IniFormat)
    procedures = ProceduresPanel(settings)
    qtbot.addWidget(procedures)
    procedures.set_progress("map", 3, 10)
    if status == "failed":
        procedures.set_progress("g2", 5.5, 10)
    procedures.set_final(status, f"run 1 {status}")
    assert procedures.progress.value() == value
    assert procedures.progress_text() == shown
    assert ("#c33" in procedures.progress.styleSheet()) == (status != "completed")
    procedures.set_progress("run 2: survey", 0, 10)  # the next run: plain percent again
    assert procedures.progress_text() == "0%" and procedures.progress.styleSheet() == ""


def test_progress_of_a_run_that_never_reported_progress(qtbot, tmp_path):
    from PyQt5 import QtCore

    settings = QtCore.QSettings(str(tmp_path / "s.ini"), QtCore.QSettings.IniFormat)
    procedures = ProceduresPanel(settings)
    qtbot.addWidget(procedures)
    procedures.set_progress("run 1: g2", 0, None)  # busy indicator
    procedures.set_final("aborted", "run 1 aborted")
    assert procedures.progress_text() == "aborted at 0%"
