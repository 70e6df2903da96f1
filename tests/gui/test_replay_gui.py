"""GUI replay mode: play, pause, seek and speed through the live panels (offscreen)."""

from __future__ import annotations

import time

import pytest

from micropl.acquisition import load_setup
from micropl.acquisition import run as run_procedure
from micropl.acquisition.live import AnalysisSettings
from micropl.acquisition.procedures import G2, RasterScan, Refocus, SpectrumAcquisition, Survey
from micropl.acquisition.replay import open_replay, replay_source_of
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader
from micropl.analysis.g2 import G2Result
from micropl.analysis.spectra import SpectrumFit
from micropl.gui.main_window import MainWindow

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def recorded(tmp_path):
    path = tmp_path / "small.h5"
    survey = Survey(scan=RasterScan(x_min_um=0, x_max_um=12, y_min_um=0, y_max_um=12,
                                    step_um=0.3, dwell_s=0.005),
                    max_qds=1, refocus=Refocus(size_um=1.2, step_um=0.15),
                    spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
                    g2=G2(duration_s=1.0), drift_every_n_qds=0)
    with load_setup(clock_mode="fast") as setup:
        result = run_procedure(survey, setup, out=path)
    assert result.ok and result.value["n_completed"] == 1, result
    return path


@pytest.fixture
def replay_window(qtbot, tmp_path, recorded, monkeypatch):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    setup = open_replay(recorded, speed=1.0)
    analysis = AnalysisSettings()
    session = Session(setup, tmp_path / "replayed.h5", analysis=analysis)
    window = MainWindow(session)
    panel = window.add_replay_controls(replay_source_of(setup), analysis)
    qtbot.addWidget(window)
    window.show()
    yield window, panel
    window.ask = lambda question: True
    window.close()
    session.close()
    setup.close()


def test_play_pause_seek_and_speed_show_the_fits(qtbot, replay_window, recorded):
    window, panel = replay_window
    source = panel.source
    assert source.duration_s > 5  # the map alone holds ~8 s of data
    panel.speed_box.setCurrentText("2×")
    assert source.speed == 2.0
    qtbot.mouseClick(panel.play_button, 1)
    qtbot.waitUntil(lambda: source.position_s > 0.2, timeout=10_000)
    qtbot.mouseClick(panel.pause_button, 1)
    qtbot.waitUntil(lambda: window.runner.state.value == "paused", timeout=5_000)
    time.sleep(0.15)
    paused_at = source.position_s
    qtbot.wait(400)
    assert source.position_s == paused_at  # paused: the player stands still
    assert paused_at < source.duration_s / 2
    panel.seek(source.duration_s - 0.5)  # forward: fast-forward while analysing
    qtbot.mouseClick(panel.play_button, 1)  # resume
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=60_000)
    result = window.runner.wait(0)
    assert result.ok, result.reason
    window.drain()
    qtbot.waitUntil(lambda: window.spectrum_panel._fit is not None, timeout=5_000)
    assert "—" not in window.g2_panel.value.text()
    with SessionReader(recorded) as original:
        expected = original.records(G2Result, kind="final")[-1].record
        fit = original.records(SpectrumFit, kind="accumulated")[-1].record
    assert result.run_id == 1
    live = window.session.live
    qd = original_qd(recorded)
    assert live.latest(1, qd, G2Result, "final").g2_0 == expected.g2_0
    assert (live.latest(1, qd, SpectrumFit, "accumulated").peak_energy_ev
            == fit.peak_energy_ev).all()
    assert f"{expected.g2_0:.3f}"[:4] in window.g2_panel.value.text()


def original_qd(path):
    with SessionReader(path) as reader:
        return reader.qds()[0].qd_id


def test_seek_backwards_restarts_the_replay_from_the_target(qtbot, replay_window):
    window, panel = replay_window
    source = panel.source
    events = []
    window.session.on(lambda item: events.append(item), maxlen=10_000)
    panel.speed_box.setCurrentText("2×")
    panel.play()
    qtbot.waitUntil(lambda: source.position_s > 2.0, timeout=15_000)
    panel.seek(1.0)
    # The first run is aborted; once it ended the panel starts a second one that
    # plays the recording again from 0 s, fast-forwarding through the first second.
    qtbot.waitUntil(lambda: any(type(e).__name__ == "RunStart" and e.run_id == 2
                                for e in events), timeout=15_000)
    stops = [e for e in events if type(e).__name__ == "RunStop"]
    assert [(s.run_id, s.status) for s in stops] == [(1, "aborted")]
    qtbot.waitUntil(lambda: 1.0 <= source.position_s < 2.0, timeout=10_000)
    panel.speed_box.setCurrentText("max")
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=60_000)
    result = window.runner.wait(0)
    assert result.run_id == 2 and result.ok, result.reason
    assert source.position_s == pytest.approx(source.duration_s, abs=0.1)
