"""Focus control, z scan and points of interest: mark, name, go to, saved with the session,
restored from it, measured like survey QDs (pytest-qt, fast clock)."""

from __future__ import annotations

import json

import pytest

from micropl.acquisition import load_setup
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader
from micropl.gui.main_window import MainWindow
from micropl.gui.panels.points_panel import PointsPanel
from micropl.records import QDTarget, RefocusResult
from micropl.records.points import PointOfInterest, current_points

pytestmark = pytest.mark.timeout(180)


def test_points_panel_records_every_change(qtbot):
    panel = PointsPanel()
    qtbot.addWidget(panel)
    emitted: list[PointOfInterest] = []
    panel.changed.connect(emitted.append)
    panel.mark(1.0, 2.0, 0.5)
    panel.mark(3.0, 4.0, 0.0)
    assert [p.name for p in panel.points()] == ["P1", "P2"]
    assert panel.rename("P1", "bright QD")
    assert not panel.rename("P2", "bright QD")  # taken
    assert not panel.rename("P2", "  ")  # empty
    panel.select("P2")
    panel.remove_button.click()
    assert [p.name for p in panel.points()] == ["bright QD"]
    # The stored records rebuild the list as shown (what File → Open does).
    assert list(current_points(emitted)) == ["bright QD"]
    assert current_points(emitted)["bright QD"].x_um == 1.0
    # Editing the name cell renames the point too.
    panel.table.item(0, 0).setText("QD A")
    assert [p.name for p in panel.points()] == ["QD A"]
    assert list(current_points(emitted)) == ["QD A"]


@pytest.fixture
def live(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    path = tmp_path / "points.h5"
    setup = load_setup(clock_mode="fast")
    session = Session(setup, path)
    window = MainWindow(session)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.instruments_panel.readback is not None, timeout=10_000)
    yield window, path
    window.ask = lambda question: True
    window.close()
    session.close()
    setup.close()


def _wait_position(qtbot, window, x, y, z=None):
    def there() -> bool:
        window.drain()
        rb = window.instruments_panel.readback
        return rb is not None and abs(rb.position_um[0] - x) < 1e-6 \
            and abs(rb.position_um[1] - y) < 1e-6 and (z is None
                                                        or abs(rb.position_um[2] - z) < 1e-6)
    qtbot.waitUntil(there, timeout=10_000)


def test_z_go_to_and_jog(qtbot, live):
    window, _ = live
    scanner = window.session.setup.scanner
    window.instruments_panel.request_z(2.5)
    qtbot.waitUntil(lambda: abs(scanner.position_um[2] - 2.5) < 1e-9, timeout=5_000)
    window.instruments_panel.z_jog_step.setValue(0.3)
    window.instruments_panel.jog_z(-1)
    qtbot.waitUntil(lambda: abs(scanner.position_um[2] - 2.2) < 1e-9, timeout=5_000)
    window.worker.poll_now()
    qtbot.waitUntil(lambda: "z 2.20 µm" in window.instruments_panel.position.text(),
                    timeout=5_000)


def test_focus_z_scan_runs_the_refocus_focus_scan(qtbot, live):
    window, path = live
    form = window.procedures_panel.forms["refocus"]
    form.set_values({"z_range_um": 1.0, "z_step_um": 0.25, "size_um": 0.8, "step_um": 0.2})
    assert window.runner.wait(0) is None  # no run yet in this window
    window.instruments_panel.focus_button.click()
    # the fast-mode refocus may end before a poll sees it running: wait for its result
    qtbot.waitUntil(lambda: window.runner.wait(0) is not None and not window.runner.busy,
                    timeout=60_000)
    result = window.runner.wait(0)
    assert result.status == "completed", result.reason
    window.session.stream.flush(10)
    with SessionReader(path) as reader:
        runs = reader.runs()
        refocus = reader.records("refocus")
    assert runs[-1].procedure == "refocus"
    assert json.loads(runs[-1].parameters_json)["z_scan"] is True
    assert isinstance(refocus[-1].record, RefocusResult)


def test_points_are_saved_with_the_session_and_restored(qtbot, live, tmp_path):
    window, path = live
    window.instruments_panel.request_move(4.0, 5.0, 0.0)
    _wait_position(qtbot, window, 4.0, 5.0)
    first = window.mark_point()
    window.instruments_panel.request_move(7.5, 1.25, 0.0)
    _wait_position(qtbot, window, 7.5, 1.25)
    window.mark_point("dim one")
    assert window.points_panel.rename(first.name, "bright QD")
    window.points_panel.mark(9.0, 9.0, 0.0, "gone")
    window.points_panel.select("gone")
    window.points_panel.remove_button.click()
    window.points_panel.select("bright QD")
    window.points_panel.go_button.click()
    _wait_position(qtbot, window, 4.0, 5.0)
    window.session.stream.flush(10)
    with SessionReader(path) as reader:
        stored = current_points(r.record for r in reader.records("point_of_interest"))
    assert sorted(stored) == ["bright QD", "dim one"]
    assert (stored["dim one"].x_um, stored["dim one"].y_um) == (7.5, 1.25)
    # File → Open shows them again.
    other = window.open_session_file(path)
    qtbot.addWidget(other)
    assert [p.name for p in other.points_panel.points()] == list(stored)
    assert other.points_panel.points() == list(stored.values())
    assert not other.points_panel.mark_button.isEnabled()
    other.close()


def test_points_are_measured_like_survey_qds(qtbot, live):
    window, path = live
    form = window.procedures_panel.forms["survey"]
    form.set_values({"spectrum": {"exposure_s": 0.5, "accumulations": 2},
                     "g2": {"duration_s": 3.0, "min_duration_s": 1.0},
                     "refocus": {"size_um": 1.0, "step_um": 0.2}})
    sample = window.session.setup.world.sample
    k = int(sample.brightness_cps.argmax())
    x, y = float(sample.x_um[k]), float(sample.y_um[k])
    window.points_panel.mark(x, y, 0.0, "by hand")
    window.points_panel.measure_button.click()
    qtbot.waitUntil(lambda: window.runner.busy, timeout=10_000)
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=120_000)
    result = window.runner.wait(0)
    assert result.status == "completed", result.reason
    window.drain()
    rows = window.buffer.rows()
    assert len(rows) == 1 and rows[0].status in ("completed", "failed")
    assert abs(rows[0].x_um - x) < 1e-9 and abs(rows[0].y_um - y) < 1e-9
    window.session.stream.flush(10)
    with SessionReader(path) as reader:
        targets = [r.record for r in reader.records("qd_target")]
    assert isinstance(targets[-1], QDTarget) and targets[-1].x_um == x
