"""Panels say what they show, the statistics line follows the report's rules (pytest-qt)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2, RasterScan, Refocus, SpectrumAcquisition, Survey
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader
from micropl.acquisition.summary import session_summary
from micropl.analysis.emitters import exclusion_text
from micropl.gui.bridge import QDRow, Source
from micropl.gui.main_window import MainWindow
from micropl.gui.panels.survey_panel import survey_line

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def settings_file(tmp_path, monkeypatch):
    path = tmp_path / "gui.ini"
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(path))
    return path


@pytest.fixture(scope="module")
def survey_file(tmp_path_factory):
    """A small fast survey of 3 QDs, stored."""
    path = tmp_path_factory.mktemp("survey") / "survey.h5"
    survey = Survey(scan=RasterScan(x_min_um=0, x_max_um=12, y_min_um=0, y_max_um=12,
                                    step_um=0.25, dwell_s=0.005),
                    max_qds=3, refocus=Refocus(size_um=1.2, step_um=0.15),
                    spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
                    g2=G2(duration_s=4.0), drift_every_n_qds=0)
    with load_setup(clock_mode="fast") as setup, Session(setup, path) as session:
        assert session.run(survey).ok
    return path


def _reference_line(rows: list[QDRow]) -> tuple[int, int, int, int | None, int]:
    """The report's rules, written out: completed QDs; flagged ones excluded; a single QD
    has a finite g²(0) < 0.5 with a finite error ≥ 0 (brute force, independent)."""
    done = [r for r in rows if r.status == "completed"]
    flagged = [r for r in done if "multiple_emitters" in r.flags]
    kept = [r for r in done if "multiple_emitters" not in r.flags]
    valid_g2 = [r for r in kept if math.isfinite(r.g2_0) and math.isfinite(r.g2_0_err)
                and r.g2_0_err >= 0]
    single = sum(r.g2_0 < 0.5 for r in valid_g2)
    return len(done), sum(r.status == "failed" for r in rows), len(flagged), \
        single if valid_g2 else None, len(valid_g2)


row_strategy = st.builds(
    lambda status, flagged, g2, err, qd: QDRow(
        run_id=1, qd_id=qd, status=status, peak_energy_ev=2.4 + 0.001 * qd,
        peak_energy_err_ev=1e-4, fwhm_mev=60.0 + qd, fwhm_err_mev=1.0, g2_0=g2, g2_0_err=err,
        flags=("multiple_emitters",) if flagged else ()),
    st.sampled_from(["completed", "failed", "pending"]), st.booleans(),
    st.one_of(st.just(float("nan")), st.floats(0.0, 1.2)),
    st.one_of(st.just(float("nan")), st.just(0.0), st.floats(1e-6, 0.2)),
    st.integers(0, 10_000))


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, min_size=0, max_size=12))
def test_statistics_line_counts_as_the_report_does(rows):
    text = survey_line(rows)
    done, failed, flagged, single, n_g2 = _reference_line(rows)
    assert text.startswith(f"{len(rows)} QDs: {done} completed, {failed} failed")
    if done:
        assert f"{flagged} excluded" in text
    if single is not None:
        assert f"; {single} of {n_g2} single QDs with g²(0) < 0.5" in text
    else:
        assert "single QDs" not in text


def test_the_inconsistent_line_of_the_issue_cannot_happen():
    """3 completed, a failed and a pending QD with g²(0) < 0.5: only the completed count."""
    rows = [QDRow(1, i, status="completed", peak_energy_ev=2.4, peak_energy_err_ev=1e-4,
                  fwhm_mev=60, fwhm_err_mev=1, g2_0=0.2, g2_0_err=0.02) for i in range(3)]
    rows += [QDRow(1, 3, status="failed", g2_0=0.1, g2_0_err=0.02),
             QDRow(1, 4, status="pending", g2_0=0.1, g2_0_err=0.02)]
    rows[2].flags = ("multiple_emitters",)
    assert survey_line(rows) == ("5 QDs: 3 completed, 1 failed; 1 excluded: multiple emitters; "
                                 "2 of 2 single QDs with g²(0) < 0.5")


@pytest.mark.parametrize("source, text", [
    (Source(3, 12, 4.2, 7.1), "run 3 · QD 12 · (4.20, 7.10) µm"),
    (Source(3, -1, 1.0, 2.0), "run 3 · no QD · (1.00, 2.00) µm"),
    (Source(3, 5), "run 3 · QD 5"),
    (Source(), "no run"),
])
def test_source_text(source, text):
    assert source.text() == text


def test_read_only_window_shows_one_qd_in_both_panels_and_the_reports_numbers(
        qtbot, settings_file, survey_file):
    with SessionReader(survey_file) as reader:
        summary = session_summary(reader)
        stored_g2 = {r.qd_id: r.record for r in reader.records("g2_result", kind="final")}
    window = MainWindow(reader=SessionReader(survey_file))
    qtbot.addWidget(window)
    try:
        qds = summary["qds"]
        last = qds[-1]
        where = f"run {last['run_id']} · QD {last['id']} · ({last['x_um']:.2f}, " \
                f"{last['y_um']:.2f}) µm"
        assert window.spectrum_panel.source.text() == where
        assert window.g2_panel.source.text() == where
        if last["id"] in stored_g2:
            match = re.search(r"g²\(0\) = ([0-9.]+)", window.g2_panel.g2_text())
            assert float(match.group(1)) == pytest.approx(stored_g2[last["id"]].g2_0, abs=1e-3)
        # The statistics line counts what the report counts.
        completed = [q for q in qds if q["status"] == "completed"]
        line = window.survey_panel.summary.text()
        assert line.startswith(f"{len(qds)} QDs: {len(completed)} completed")
        if completed:
            assert exclusion_text(summary["excluded"]) in line
        # Choosing another QD changes both panels to it; one without g² clears the g² panel.
        first = qds[0]
        window.survey_panel.select_index(0)
        assert window.spectrum_panel.source.text().startswith(
            f"run {first['run_id']} · QD {first['id']} ·")
        assert window.g2_panel.source.text() == window.spectrum_panel.source.text()
        if first["id"] not in stored_g2:
            assert window.g2_panel.g2_text() == "g²(0) = —"
    finally:
        window.close()


def test_a_qd_without_g2_clears_the_g2_panel(qtbot):
    from micropl.gui.panels.g2_panel import G2Panel
    from micropl.records import G2Histogram

    panel = G2Panel()
    qtbot.addWidget(panel)
    tau = np.arange(-500, 500, 1.0) * 128
    panel.show_histogram(G2Histogram(tau, np.ones(tau.size, np.int64), 128.0, 1.0), final=True)
    panel.clear("no g² histogram for QD 4")
    x, _ = panel.curve.getData()
    assert x is None or len(x) == 0
    assert panel.integration.text() == "no g² histogram for QD 4"
