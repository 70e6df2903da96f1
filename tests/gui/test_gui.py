"""GUI tests (pytest-qt, offscreen, fast clock, simulated setup)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from PyQt5 import QtCore

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2, RasterScan, Refocus, SpectrumAcquisition, Survey
from micropl.acquisition.session import Session
from micropl.analysis.g2 import G2Result, PeakTrainFit
from micropl.analysis.spectra import SpectrumFit
from micropl.gui.main_window import MainWindow

pytestmark = pytest.mark.timeout(120)


def small_survey(max_qds: int = 2) -> Survey:
    return Survey(scan=RasterScan(x_min_um=0, x_max_um=12, y_min_um=0, y_max_um=12,
                                  step_um=0.25, dwell_s=0.005),
                  max_qds=max_qds, refocus=Refocus(size_um=1.2, step_um=0.15),
                  spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
                  g2=G2(duration_s=5.0), drift_every_n_qds=0)


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "gui.ini"
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(path))
    return path


@pytest.fixture
def gui(qtbot, settings_file):
    setup = load_setup(clock_mode="fast")
    session = Session(setup)
    window = MainWindow(session)
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    yield window
    window.ask = lambda question: True
    window.close()
    session.close()
    setup.close()


def wait_run_end(qtbot, window, timeout_ms=60_000):
    qtbot.waitUntil(lambda: window.runner.busy, timeout=10_000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=timeout_ms)
    window.drain()
    return window.runner.wait(0)


def test_start_and_abort_survey_leaves_laser_off(qtbot, gui):
    panel = gui.procedures_panel
    form = panel.select("survey")
    form.subforms["scan"].editors["x_max_um"].set_value(30.0)
    form.subforms["scan"].editors["y_max_um"].set_value(30.0)
    qtbot.mouseClick(panel.start_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: gui.session.setup.laser.emission_on, timeout=10_000)
    qtbot.waitUntil(lambda: panel.abort_button.isEnabled(), timeout=5_000)
    qtbot.mouseClick(panel.abort_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: not gui.runner.busy, timeout=20_000)
    result = gui.runner.wait(0)
    assert result.status == "aborted"
    assert result.reason == "aborted by the user"
    assert gui.session.setup.laser.emission_on is False
    gui.drain()
    assert "aborted" in panel.stage.text()
    # The bar says how the run ended, not 100 %.
    assert panel.progress_text().startswith("aborted at ")
    assert panel.progress.value() < panel.progress.maximum()
    assert any("aborted" in line for line in gui.log_panel.lines())
    # Laser off, run over: the rates read back are the dark counts, not the run's last read.
    gui.worker.poll_now()

    def dark() -> bool:
        gui.drain()
        rb = gui.instruments_panel.readback
        return rb is not None and not rb.laser_on and all(
            v < 2e3 for v in rb.rates_cps.values())

    qtbot.waitUntil(dark, timeout=10_000)
    assert all("#e90" not in gui.instruments_panel.rate_text(ch)[1] for ch in (1, 2))


def _click_map(qtbot, window, x_um, y_um):
    panel = window.map_panel
    panel.view.setRange(xRange=(0, 20), yRange=(0, 20), padding=0)
    qtbot.wait(50)
    scene = panel.view.mapViewToScene(QtCore.QPointF(x_um, y_um))
    pos = panel.plot.mapFromScene(scene)
    qtbot.mouseClick(panel.plot.viewport(), QtCore.Qt.LeftButton, pos=pos)


def test_click_on_map_moves_scanner(qtbot, gui):
    scanner = gui.session.setup.scanner
    _click_map(qtbot, gui, 7.5, 12.5)
    qtbot.waitUntil(lambda: abs(scanner.position_um[0] - 7.5) < 0.15
                    and abs(scanner.position_um[1] - 12.5) < 0.15, timeout=5_000)
    # The readback (polled on the command thread) reaches the panel and the crosshair.
    qtbot.waitUntil(lambda: "x 7." in gui.instruments_panel.position.text(), timeout=5_000)
    assert abs(gui.map_panel.cross_x.value() - scanner.position_um[0]) < 1e-6


def test_move_outside_limits_reports_driver_message(qtbot, gui):
    scanner = gui.session.setup.scanner
    before = scanner.position_um
    gui.instruments_panel.request_move(120.0, 5.0)
    qtbot.waitUntil(lambda: "refused" in gui.statusBar().currentMessage(), timeout=5_000)
    message = gui.statusBar().currentMessage()
    assert "scanner" in message and "120" in message
    assert scanner.position_um == before
    gui.drain()
    assert any("refused" in line for line in gui.log_panel.lines())


def test_survey_results_appear_in_panels(qtbot, gui):
    gui.start_procedure(small_survey())
    result = wait_run_end(qtbot, gui)
    assert result.status == "completed", result.reason
    live = gui.session.live
    rows = [r for r in gui.buffer.rows() if r.status == "completed"]
    assert rows, "no QD completed"
    last = max(r.qd_id for r in rows)
    fit = live.latest(result.run_id, last, SpectrumFit, "accumulated")
    g2 = live.latest(result.run_id, last, G2Result, "final")
    # Spectrum fit table shows the live core's fit with its error.
    value, error = gui.spectrum_panel.table_text()["peak energy (eV)"]
    assert float(value) == pytest.approx(float(fit.peak_energy_ev), abs=1e-5)
    assert float(error) == pytest.approx(float(fit.peak_energy_err_ev), rel=1e-3, abs=1e-5)
    fwhm, fwhm_err = gui.spectrum_panel.table_text()["FWHM (meV)"]
    assert float(fwhm) == pytest.approx(float(fit.fwhm_mev), abs=0.01)
    # The fit curve follows the data it was fitted to.
    x, y = gui.spectrum_panel.fit_curve.getData()
    assert y.max() > 5 * np.median(np.abs(y - np.median(y)) + 1e-9) and x.size > 100
    # g²(0) ± σ in large type, equal to the final result.
    match = re.search(r"g²\(0\) = ([0-9.]+) ± ([0-9.]+)", gui.g2_panel.g2_text())
    assert match, gui.g2_panel.g2_text()
    assert float(match.group(1)) == pytest.approx(g2.g2_0, abs=1e-3)
    assert float(match.group(2)) == pytest.approx(g2.g2_0_err, abs=1e-3)
    # The central and side windows are shaded where the result says.
    lo, hi = gui.g2_panel._windows[0].getRegion()
    assert (lo * 1e3, hi * 1e3) == pytest.approx(g2.central_window_ps)
    assert sum(w.isVisible() for w in gui.g2_panel._windows) == 1 + len(g2.side_windows_ps)
    # Survey table and map.
    table_row = gui.survey_panel.row(result.run_id, last)
    assert table_row.g2_0 == pytest.approx(g2.g2_0)
    assert table_row.fwhm_mev == pytest.approx(float(fit.fwhm_mev))
    rate = gui.map_panel.map_rate()
    assert rate is not None and rate.shape == (49, 49) and np.isfinite(rate).all()
    # The lifetime shown is the stream's peak-train fit record (the GUI fits nothing itself).
    qtbot.waitUntil(lambda: (gui.drain() or True) and
                    math.isfinite(gui.survey_panel.row(result.run_id, last).lifetime_ns),
                    timeout=20_000)
    stored = live.latest(result.run_id, last, PeakTrainFit, "final")
    assert gui.survey_panel.row(result.run_id, last).lifetime_ns == stored.lifetime_ns
    assert f"{stored.lifetime_ns:.2f} ± {stored.lifetime_ns_err:.2f} ns" in \
        gui.g2_panel.lifetime.text()
    # Both panels say which run, QD and position they show.
    for panel in (gui.spectrum_panel, gui.g2_panel):
        assert panel.source.text().startswith(f"run {result.run_id} · QD {last} · (")
    assert 0.3 < gui.survey_panel.row(result.run_id, last).lifetime_ns < 30
    # Clicking a QD in the table moves the scanner back to it.
    first = gui.survey_panel.row(result.run_id, 0)
    gui.session.setup.scanner.move_to(1.0, 1.0)
    gui.survey_panel.select_index(0)
    scanner = gui.session.setup.scanner
    qtbot.waitUntil(lambda: abs(scanner.position_um[0] - first.x_um) < 1e-6
                    and abs(scanner.position_um[1] - first.y_um) < 1e-6, timeout=5_000)


def test_emergency_stop_shortcut_switches_laser_off(qtbot, gui):
    laser = gui.session.setup.laser
    qtbot.mouseClick(gui.instruments_panel.laser_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: laser.emission_on, timeout=5_000)
    gui.session.setup.scanner.move_to(40.0, 40.0)
    gui.start_procedure(G2(duration_s=3000.0))
    qtbot.waitUntil(lambda: gui.runner.busy, timeout=10_000)
    assert laser.emission_on
    qtbot.keyClick(gui, QtCore.Qt.Key_F12)
    qtbot.waitUntil(lambda: not gui.runner.busy, timeout=20_000)
    assert laser.emission_on is False
    result = gui.runner.wait(0)
    assert result.status == "aborted" and "emergency stop" in result.reason
    # Without a run, the button still switches the laser off.
    qtbot.mouseClick(gui.instruments_panel.laser_button, QtCore.Qt.LeftButton)
    qtbot.waitUntil(lambda: laser.emission_on, timeout=5_000)
    gui.estop_action.trigger()
    qtbot.waitUntil(lambda: not laser.emission_on, timeout=5_000)


def test_instrument_command_refused_during_run(qtbot, gui):
    gui.session.setup.scanner.move_to(40.0, 40.0)
    gui.start_procedure(G2(duration_s=3000.0))
    qtbot.waitUntil(lambda: gui.runner.busy, timeout=10_000)
    gui.instruments_panel.request_move(5.0, 5.0)
    qtbot.waitUntil(lambda: "refused" in gui.statusBar().currentMessage(), timeout=5_000)
    assert gui.session.setup.scanner.position_um[:2] == (40.0, 40.0)
    gui.abort()
    qtbot.waitUntil(lambda: not gui.runner.busy, timeout=20_000)


def test_close_during_run_asks_and_stops_cleanly(qtbot, settings_file):
    setup = load_setup(clock_mode="fast")
    session = Session(setup)
    window = MainWindow(session)
    qtbot.addWidget(window)
    window.show()
    setup.scanner.move_to(40.0, 40.0)
    window.start_procedure(G2(duration_s=3000.0, power_percent=20))
    qtbot.waitUntil(lambda: window.runner.busy and setup.laser.emission_on, timeout=10_000)
    asked = []
    window.ask = lambda question: asked.append(question) or False
    window.close()
    assert asked and window.isVisible() and window.runner.busy  # "no": keeps running
    window.ask = lambda question: asked.append(question) or True
    window.close()
    assert not window.isVisible()
    assert not window.runner.busy
    result = window.runner.wait(0)
    assert result.status == "aborted" and result.reason == "window closed"
    assert setup.laser.emission_on is False
    session.close()
    setup.close()


def test_open_session_file_read_only(qtbot, gui, tmp_path):
    path = tmp_path / "past.h5"
    with load_setup(clock_mode="fast") as setup, Session(setup, path) as session:
        assert session.run(RasterScan(x_min_um=0, x_max_um=10, y_min_um=0, y_max_um=8,
                                      step_um=0.25, dwell_s=0.005)).ok
        setup.scanner.move_to(7.9, 10.4)
        spectrum = session.run(SpectrumAcquisition(exposure_s=0.5, accumulations=2))
        g2_run = session.run(G2(duration_s=5.0))
        assert spectrum.ok and g2_run.ok
        fit = session.live.latest(spectrum.run_id, -1, SpectrumFit, "accumulated")
        g2 = session.live.latest(g2_run.run_id, -1, G2Result, "final")
    window = gui.open_session_file(path)
    assert window is not None and window.read_only
    qtbot.addWidget(window)
    assert "[read-only]" in window.windowTitle()
    assert not window.instruments_panel.isEnabled()
    rate = window.map_panel.map_rate()
    assert rate.shape == (33, 41) and np.isfinite(rate).all() and rate.max() > 0
    value, _ = window.spectrum_panel.table_text()["peak energy (eV)"]
    assert float(value) == pytest.approx(float(fit.peak_energy_ev), abs=1e-5)
    match = re.search(r"g²\(0\) = ([0-9.]+)", window.g2_panel.g2_text())
    assert float(match.group(1)) == pytest.approx(g2.g2_0, abs=1e-3)
    window.close()


def test_open_bad_file_is_a_status_message(qtbot, gui, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    assert gui.open_session_file(bad) is None
    assert "not a micropl session file" in gui.statusBar().currentMessage()


class _ThreadWatch:
    """Stands in for an instrument and notes every attribute used from the GUI thread."""

    def __init__(self, role, instrument, calls):
        object.__setattr__(self, "_role", role)
        object.__setattr__(self, "_instrument", instrument)
        object.__setattr__(self, "_calls", calls)

    def __getattr__(self, name):
        import threading

        if threading.current_thread() is threading.main_thread():
            self._calls.append(f"{self._role}.{name}")
        return getattr(self._instrument, name)

    def __setattr__(self, name, value):
        setattr(self._instrument, name, value)


def test_gui_thread_never_touches_an_instrument(qtbot, settings_file):
    """From the window's creation on: commands, a survey, the emergency stop, closing."""
    from micropl.acquisition.setup import ROLES

    calls: list[str] = []
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        originals = {role: getattr(setup, role) for role in ROLES}
        for role, instrument in originals.items():
            object.__setattr__(setup, role, _ThreadWatch(role, instrument, calls))
        try:
            window = MainWindow(session)
            qtbot.addWidget(window)
            window.show()
            window._map_clicked(3.0, 4.0)  # a move command
            qtbot.waitUntil(lambda: window.instruments_panel.position.text()
                            .startswith("x 3.00"), timeout=10_000)
            window.start_procedure(small_survey(max_qds=1))
            assert wait_run_end(qtbot, window).ok
            window.emergency_stop()
            qtbot.waitUntil(lambda: not originals["laser"].emission_on, timeout=5_000)
            window.ask = lambda question: True
            window.close()
        finally:
            for role, instrument in originals.items():
                object.__setattr__(setup, role, instrument)
    assert calls == []
