"""The GUI's spectral map panel: peak-energy and FWHM maps of a hyperspectral run."""

from __future__ import annotations

import numpy as np
import pytest

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import Hyperspectral
from micropl.acquisition.session import Session
from micropl.analysis.spectral_map import SpectralMapFit
from micropl.gui.main_window import MainWindow
from micropl.gui.panels.spectral_map_panel import SpectralMapPanel

pytestmark = pytest.mark.timeout(120)


def _fit(quality):
    quality = np.array(quality)
    shape = quality.shape
    energy = 2.4 + 0.01 * np.arange(quality.size).reshape(shape)
    fwhm = 80.0 + np.arange(quality.size).reshape(shape)
    ones = np.ones(shape)
    return SpectralMapFit(x_um=np.arange(shape[1]) * 0.5, y_um=np.arange(shape[0]) * 0.5,
                          peak_energy_ev=energy, peak_energy_err_ev=1e-3 * ones, fwhm_mev=fwhm,
                          fwhm_err_mev=2.0 * ones, area=ones, area_err=ones,
                          reduced_chi2=ones, quality=quality)


def test_panel_draws_ok_pixels_and_blanks_the_others(qtbot):
    panel = SpectralMapPanel()
    qtbot.addWidget(panel)
    fit = _fit([["ok", "failed", "ok"], ["missing", "ok", "ok"]])
    panel.show_fit(fit)
    energy = panel.images["energy"].image
    fwhm = panel.images["fwhm"].image
    assert energy.shape == (2, 3)
    assert np.isnan(energy[0, 1]) and np.isnan(energy[1, 0]) and np.isnan(fwhm[1, 0])
    assert energy[1, 2] == pytest.approx(2.45) and fwhm[0, 2] == pytest.approx(82.0)
    rect = panel.images["energy"].boundingRect()
    assert (rect.width(), rect.height()) == (3, 2)
    assert "4 of 6 pixels fitted" in panel.status.text()
    assert "1 meV in energy" in panel.status.text()
    panel.show_fit(_fit([["failed"]]))
    assert "no line fitted" in panel.status.text()


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    setup = load_setup(clock_mode="fast")
    session = Session(setup)
    window = MainWindow(session)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.ask = lambda question: True
    window.close()
    session.close()
    setup.close()


def test_main_window_shows_the_fit_of_a_hyperspectral_run(qtbot, window):
    assert "spectral_map" in window.docks
    run = Hyperspectral(x_min_um=10, x_max_um=11, y_min_um=10, y_max_um=11, step_um=0.5,
                        exposure_s=0.02, dwell_s=0.04)
    window.start_procedure(run)
    qtbot.waitUntil(lambda: window.spectral_map_panel.fit is not None, timeout=60_000)
    fit = window.spectral_map_panel.fit
    assert fit.peak_energy_ev.shape == (3, 3)
    assert window.spectral_map_panel.images["energy"].image.shape == (3, 3)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=30_000)
    assert window.session.setup.laser.emission_on is False
