"""g²: the bin width and window shown change live, from the accumulated histogram, without
touching the measurement (pytest-qt)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PyQt5 import QtCore

from micropl.gui.panels.g2_panel import G2Panel, rebin
from micropl.records import G2Histogram


def delays(seed: int = 3) -> np.ndarray:
    """Pulsed coincidence delays written here: peaks every 100 ns, the centre one missing."""
    rng = np.random.default_rng(seed)
    peaks = np.array([k * 100_000.0 for k in range(-5, 6) if k != 0])
    centre = rng.choice(peaks, 20_000)
    return centre + rng.exponential(1500.0, centre.size) * rng.choice([-1, 1], centre.size)


def histogram(bin_ps: float) -> tuple[np.ndarray, np.ndarray]:
    edges = np.arange(-600_000.0, 600_000.0 + bin_ps, bin_ps)
    counts, _ = np.histogram(delays(), edges)
    return (edges[:-1] + edges[1:]) / 2, counts


@pytest.mark.parametrize("factor", [1, 2, 4, 8, 16])
def test_rebin_equals_a_histogram_at_the_coarser_bin(factor):
    tau, counts = histogram(128.0)
    shown_tau, shown = rebin(tau, counts, factor)
    ref_tau, ref = histogram(128.0 * factor)
    n = shown.size
    assert np.array_equal(shown, ref[:n])
    assert np.allclose(shown_tau, ref_tau[:n])
    assert shown.sum() <= counts.sum()  # only an incomplete last group is dropped


def test_bin_and_window_change_the_display_live_not_the_data(qtbot):
    panel = G2Panel()
    qtbot.addWidget(panel)
    tau, counts = histogram(128.0)
    h = G2Histogram(tau_ps=tau, counts=counts.astype(np.int64), bin_ps=128.0, integration_s=10)
    panel.show_histogram(h, final=False)
    x, y = panel.shown()
    assert x.size == tau.size
    panel.bin_factor.setValue(4)
    x4, y4 = panel.shown()
    assert x4.size == tau.size // 4 and "512 ps" in panel.bin_label.text()
    assert np.array_equal(y4, rebin(tau, counts, 4)[1])
    panel.window_ns.setValue(150.0)
    xw, yw = panel.shown()
    assert np.abs(xw).max() <= 150.0 and xw.size < x4.size
    # A new live histogram keeps the chosen display.
    panel.show_histogram(G2Histogram(tau, (2 * counts).astype(np.int64), 128.0, 20), final=False)
    x2, y2 = panel.shown()
    assert np.array_equal(x2, xw) and np.array_equal(y2, 2 * yw)
    assert np.array_equal(h.counts, counts)  # the record is untouched


def test_g2_display_choices_kept_and_checked(qtbot, tmp_path, caplog):
    # A read-only window is enough for the kept choices; write a tiny session file.
    from micropl.acquisition import load_setup
    from micropl.acquisition.procedures import RasterScan
    from micropl.acquisition.session import Session
    from micropl.acquisition.storage import SessionReader
    from micropl.gui.main_window import G2_BIN_KEY, G2_WINDOW_KEY, MainWindow

    path = tmp_path / "s.h5"
    with load_setup(clock_mode="fast") as setup, Session(setup, path) as session:
        assert session.run(RasterScan(x_min_um=0, x_max_um=2, y_min_um=0, y_max_um=2,
                                      step_um=0.5, dwell_s=0.001)).ok
    settings = QtCore.QSettings(str(tmp_path / "gui.ini"), QtCore.QSettings.IniFormat)
    first = MainWindow(reader=SessionReader(path), settings=settings)
    qtbot.addWidget(first)
    first.g2_panel.bin_factor.setValue(8)
    first.g2_panel.window_ns.setValue(250.0)
    first.close()
    second = MainWindow(reader=SessionReader(path), settings=settings)
    qtbot.addWidget(second)
    assert second.g2_panel.bin_factor.value() == 8
    assert second.g2_panel.window_ns.value() == 250.0
    second.close()
    settings.setValue(G2_BIN_KEY, "2.5")
    settings.setValue(G2_WINDOW_KEY, "-3")
    with caplog.at_level(logging.WARNING, logger="micropl.gui"):
        third = MainWindow(reader=SessionReader(path), settings=settings)
    qtbot.addWidget(third)
    assert third.g2_panel.bin_factor.value() == 1 and third.g2_panel.window_ns.value() == 0
    text = caplog.text
    assert "view/g2_bin_factor = '2.5'" in text and "view/g2_window_ns = '-3'" in text
    third.close()
