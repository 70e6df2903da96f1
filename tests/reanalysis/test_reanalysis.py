"""``micropl reanalyze``: re-fits that reproduce the stored ones, other settings that give
what ``analyze g2`` gives on the exported PTU, one table whatever the scheduler, a failing
QD named without stopping the rest, bad inputs refused in one line (exit 2), and session
files left untouched."""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from reanalysis_data import write_session

from micropl import cli
from micropl.acquisition.storage import SessionReader
from micropl.acquisition.summary import session_summary
from micropl.reanalysis import schedule
from micropl.reanalysis.schedule import check_scheduler, reanalyze
from micropl.reanalysis.settings import ReanalysisSettings
from micropl.reanalysis.table import COLUMNS, read_table

#: The survey made with the CLI: a small map, two QDs, short g².
SURVEY_PARAMS = ["scan.x_min_um=5", "scan.x_max_um=13", "scan.y_min_um=5", "scan.y_max_um=13",
                 "scan.step_um=0.3", "max_qds=2", "spectrum.exposure_s=1",
                 "spectrum.accumulations=2", "g2.duration_s=1.5", "drift_every_n_qds=0",
                 "refocus.size_um=1.2", "refocus.step_um=0.15"]


def _fingerprint(path: Path) -> tuple[str, int, int]:
    data = path.read_bytes()
    st = path.stat()
    return hashlib.sha256(data).hexdigest(), st.st_size, st.st_mtime_ns


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Path:
    """A fast-mode survey made with ``micropl survey --sample``."""
    path = tmp_path_factory.mktemp("survey") / "survey.h5"
    argv = ["survey", "--fast", "--json", "--sample", "batch A", "--out", str(path)]
    for p in SURVEY_PARAMS:
        argv += ["--param", p]
    assert cli.main(argv) == 0
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """Six QDs written without the simulator (QD 4 is two emitters)."""
    return write_session(tmp_path_factory.mktemp("syn") / "syn.h5", 6, seed=3,
                         duration_s=1.0, n_frames=2)


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _close(a, b, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-15)


# --------------------------------------------------------------------------- fidelity
def test_own_settings_reproduce_the_stored_fits_and_flags(survey, tmp_path, capsys):
    before = _fingerprint(survey)
    out = tmp_path / "r.parquet"
    code, stdout, _ = _run(capsys, ["reanalyze", str(survey), "--out", str(out),
                                    "--scheduler", "sync", "--json"])
    assert code == 0, stdout
    rows = {r["qd_id"]: r for r in read_table(out)}
    with SessionReader(survey) as reader:
        stored = session_summary(reader)["qds"]
    assert len(stored) == 2 and set(rows) == {q["id"] for q in stored}
    for q in stored:
        row = rows[q["id"]]
        assert row["sample"] == "batch A" and row["session"] == str(survey)
        # The stored fits: spectra to 1e-9 (same fitter, same data), g² to 1e-12.
        for key in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev",
                    "spectral_jitter_mev"):
            assert _close(row[key], q[key], 1e-9), (q["id"], key, row[key], q[key])
        for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_fit",
                    "g2_0_fit_err", "lifetime_ns", "lifetime_ns_err"):
            assert _close(row[key], q[key], 1e-12), (q["id"], key, row[key], q[key])
        # Re-judged as the survey judged it.
        assert (row["flags"] or "").split(",") == (q["flags"] or [""]), q["id"]
        expected = "multiple_emitters" if "multiple_emitters" in q["flags"] else \
            "poor_fit" if "poor_fit" in q["flags"] else "single"
        assert row["status"] == expected
        assert row["stored_status"] == q["status"] == "completed"
        # the main emitter's batch and core/shell flag, as info reads them from the truth
        assert row["batch"] == q["truth"]["batch"] and row["batch"] in ("7nm", "14nm")
        assert row["core_shell"] == q["truth"]["core_shell"]
    assert _fingerprint(survey) == before  # opened read-only: not a byte changed


def test_window_fraction_0_3_equals_analyze_g2_on_the_exported_ptu(survey, tmp_path, capsys):
    out = tmp_path / "r.csv"
    code, _, err = _run(capsys, ["reanalyze", str(survey), "--out", str(out),
                                 "--window-fraction", "0.3", "--bin-ps", "64",
                                 "--scheduler", "threads",
                                 "--workers", "2"])
    assert code == 0, err
    rows = {r["qd_id"]: r for r in read_table(out)}
    assert _run(capsys, ["export", str(survey), "--ptu", str(tmp_path / "ptu")])[0] == 0
    ptus = sorted((tmp_path / "ptu").glob("qd*_run*.ptu"))
    assert len(ptus) == len(rows) == 2
    for ptu in ptus:
        qd = int(ptu.name[2:].split("_")[0])
        code, stdout, err = _run(capsys, ["analyze", "g2", str(ptu), "--window-fraction", "0.3",
                                          "--json"])
        assert code == 0, err
        ref = json.loads(stdout)  # analyze g2's defaults: 64 ps bins, (n_side + 1) periods
        assert ref["window_fraction"] == rows[qd]["window_fraction"] == 0.3
        assert ref["bin_ps"] == rows[qd]["g2_bin_ps"] == 64
        for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
            assert _close(rows[qd][key], ref[key], 1e-12), (qd, key)
    # and the narrower window did change the raw ratio (the option reached the analysis)
    full = {r["qd_id"]: r for r in read_table(
        _table(capsys, survey, tmp_path / "full.csv", []))}
    assert all(abs(full[q]["g2_0"] - rows[q]["g2_0"]) > 1e-6 for q in rows)


def _table(capsys, session: Path, out: Path, extra: list[str]) -> Path:
    code, _, err = _run(capsys, ["reanalyze", str(session), "--out", str(out),
                                 "--scheduler", "sync", *extra])
    assert code == 0, err
    return out


# --------------------------------------------------------------------------- schedulers
def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert [(r["session"], r["qd_id"]) for r in a] == [(r["session"], r["qd_id"]) for r in b]
    for ra, rb in zip(a, b):
        for key in COLUMNS:
            va, vb = ra.get(key), rb.get(key)
            # Equal value for value up to float rounding: a fresh numba compilation in a
            # worker process has been seen to differ in the 15th digit (4e-15 relative).
            same = va == vb or (isinstance(va, float) and isinstance(vb, float)
                                and (math.isnan(va) and math.isnan(vb)
                                     or math.isclose(va, vb, rel_tol=1e-12, abs_tol=0.0)))
            assert same, (ra["qd_id"], key, va, vb)


def test_the_same_table_from_sync_processes_and_a_tcp_cluster(synthetic, tmp_path):
    from distributed import LocalCluster

    before = _fingerprint(synthetic)
    sessions = [str(synthetic)]
    settings = ReanalysisSettings(peak_train=False, two_line_test=False)
    sync = reanalyze(sessions, settings, scheduler="sync", chunk_qds=1).rows
    pool = reanalyze(sessions, settings, scheduler="processes", workers=2, chunk_qds=2).rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        seen: list[tuple[int, int]] = []
        remote = reanalyze(sessions, settings, scheduler=cluster.scheduler_address,
                           chunk_qds=3, progress=lambda d, t: seen.append((d, t))).rows
    assert seen[-1] == (2, 2)
    assert len(sync) == 6
    _same_rows(sync, pool)
    _same_rows(sync, remote)
    statuses = [r["status"] for r in sync]
    assert statuses.count("multiple_emitters") == 1 and statuses[4] == "multiple_emitters"
    assert _fingerprint(synthetic) == before


@pytest.mark.slow
def test_the_same_table_from_a_local_cluster_of_two_worker_processes(synthetic):
    from distributed import LocalCluster

    sessions = [str(synthetic)]
    sync = reanalyze(sessions, scheduler="sync").rows
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = reanalyze(sessions, scheduler=cluster.scheduler_address, chunk_qds=1).rows
    _same_rows(sync, remote)


def test_a_failing_qd_is_named_and_the_others_go_on(tmp_path, capsys):
    bad = write_session(tmp_path / "bad.h5", 4, seed=5, duration_s=0.5, n_frames=2,
                        corrupt_qd=2, multiple_every=0)
    out = tmp_path / "r.parquet"
    code, _, err = _run(capsys, ["reanalyze", str(bad), "--out", str(out), "--scheduler",
                                 "threads", "--workers", "2", "--chunk-qds", "1",
                                 "--no-peak-train"])
    assert code == 1
    lines = [line for line in err.splitlines() if line]
    assert lines == [f"micropl: {bad} QD 2: AnalysisInputError: wavelength axis must be "
                     "strictly monotonic"]
    rows = read_table(out)
    assert [r["qd_id"] for r in rows] == [0, 1, 2, 3]
    assert [r["status"] for r in rows] == ["single", "single", "failed", "single"]
    assert [r["task_error"] for r in rows] == [False, False, True, False]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case", ["not_a_session", "missing", "folder", "suffix", "exists",
                                  "no_suffix", "window", "workers", "scheduler_word",
                                  "scheduler_port", "bin", "threshold", "twice"])
def test_bad_inputs_are_one_line_and_exit_2(case, synthetic, tmp_path, capsys):
    session, out, extra, more = str(synthetic), tmp_path / "r.parquet", [], []
    if case == "not_a_session":
        session = str(tmp_path / "notes.h5")
        Path(session).write_text("not HDF5\n")
    elif case == "missing":
        session = str(tmp_path / "gone.h5")
    elif case == "folder":
        session = str(tmp_path)
    elif case == "suffix":
        out = tmp_path / "r.xlsx"
    elif case == "exists":
        out.write_bytes(b"keep me")
    elif case == "no_suffix":
        out = tmp_path / "results"
    elif case == "twice":
        more = [str(synthetic.parent / ".." / synthetic.parent.name / synthetic.name)]
    else:
        extra = {"window": ["--window-fraction", "1.5"], "workers": ["--workers", "0"],
                 "scheduler_word": ["--scheduler", "cluster"],
                 "scheduler_port": ["--scheduler", "tcp://localhost:99999"],
                 "bin": ["--bin-ps", "0"], "threshold": ["--single-threshold", "-1"]}[case]
    code, stdout, err = _run(capsys, ["reanalyze", session, *more, "--out", str(out), *extra])
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("micropl: error: "), err
    assert "Traceback" not in err and stdout == ""
    if case == "exists":
        assert out.read_bytes() == b"keep me"
    elif case != "exists":
        assert not out.exists()


def test_an_unreachable_scheduler_is_one_line_and_exit_2(synthetic, tmp_path, capsys,
                                                         monkeypatch):
    import socket

    monkeypatch.setattr(schedule, "CONNECT_TIMEOUT_S", 2.0)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = _run(capsys, ["reanalyze", str(synthetic), "--out",
                                 str(tmp_path / "r.csv"), "--scheduler",
                                 f"tcp://127.0.0.1:{port}"])
    assert code == 2
    assert err.count("\n") == 1 and f"tcp://127.0.0.1:{port}" in err
    assert "cannot reach the Dask scheduler" in err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize(("given", "expected"), [
    ("processes", "processes"), ("THREADS", "threads"), ("sync", "synchronous"),
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"), ("tls://head:8786/", "tls://head:8786")])
def test_scheduler_names(given, expected):
    assert check_scheduler(given) == expected


# --------------------------------------------------------------------------- the table
def test_the_table_round_trips_with_its_settings_and_version(synthetic, tmp_path, capsys):
    import pyarrow.parquet as pq

    from micropl import __version__

    parquet = _table(capsys, synthetic, tmp_path / "r.parquet", ["--model", "gaussian",
                                                                  "--no-peak-train",
                                                                  "--no-two-line-test"])
    csv = _table(capsys, synthetic, tmp_path / "r.csv", ["--model", "gaussian",
                                                          "--no-peak-train",
                                                          "--no-two-line-test"])
    a, b = read_table(parquet), read_table(csv)
    assert [r["qd_id"] for r in a] == list(range(6))
    for ra, rb in zip(a, b):
        for key in COLUMNS:
            va, vb = ra[key], rb[key]
            if isinstance(va, float) and vb is not None:
                assert math.isclose(va, vb, rel_tol=1e-15), key
            else:
                assert va == vb, key
    assert {r["model"] for r in a} == {"gaussian"}
    settings = json.loads(a[0]["settings"])
    assert settings["model"] == "gaussian" and settings["peak_train"] is False
    meta = pq.read_schema(parquet).metadata
    assert meta[b"micropl.software_version"].decode() == __version__ == a[0]["software_version"]
    assert json.loads(meta[b"micropl.settings"]) == settings
    # The Gaussian model gave other widths than the stored (Lorentzian) fits would
    lorentz = read_table(_table(capsys, synthetic, tmp_path / "l.csv",
                                   ["--no-peak-train", "--no-two-line-test"]))
    assert all(abs(x["fwhm_mev"] - y["fwhm_mev"]) > 0.1 for x, y in zip(a, lorentz))


def test_stricter_selection_rules_re_judge_the_statuses(synthetic):
    loose = reanalyze([str(synthetic)], ReanalysisSettings(peak_train=False, two_line_test=False),
                      scheduler="sync").rows
    strict = reanalyze([str(synthetic)], ReanalysisSettings(peak_train=False, two_line_test=False,
                                                            single_threshold=0.01),
                       scheduler="sync").rows
    for a, b in zip(loose, strict):
        # Independent reference: the rule g2 + 2σ < threshold on the table's own values.
        for row, threshold in ((a, 0.5), (b, 0.01)):
            single = row["g2_0_bgcorr"] + 2 * row["g2_0_bgcorr_err"] < threshold
            assert (row["status"] == "single") == single, (row["qd_id"], threshold)
    assert sum(r["status"] == "single" for r in strict) < sum(r["status"] == "single"
                                                              for r in loose)
    raw = reanalyze([str(synthetic)], ReanalysisSettings(peak_train=False, bgcorr=False,
                                                       two_line_test=False),
                    scheduler="sync").rows
    assert {r["g2_rule_source"] for r in raw} == {"raw"}
    assert {r["g2_rule_source"] for r in loose} == {"bgcorr"}


def test_rows_are_sorted_by_session_and_qd_whatever_the_order_given(synthetic, tmp_path):
    other = write_session(tmp_path / "a.h5", 2, seed=9, duration_s=0.5, n_frames=2)
    seen: list[tuple[int, int]] = []
    rows = reanalyze([str(synthetic), str(other)], ReanalysisSettings(peak_train=False,
                                                                      two_line_test=False),
                     scheduler="threads", workers=2, chunk_qds=1,
                     progress=lambda d, t: seen.append((d, t))).rows
    assert seen == [(k, 8) for k in range(1, 9)]  # one call per task, in order of completion
    keys = [(r["session"], r["qd_id"]) for r in rows]
    assert keys == sorted(keys) and len(keys) == 8
    assert np.all(np.isfinite([r["g2_0"] for r in rows]))
    assert os.path.exists(other)


@pytest.mark.parametrize(("fraction", "zeroed"), [(0.02, False), (0.3, False), (0.7, False),
                                                  (0.97, False), (0.4, True), (0.8, True)])
def test_a_damaged_session_is_refused_or_its_qds_named_never_a_traceback(
        fraction, zeroed, synthetic, tmp_path, capsys):
    """Cut at ``fraction`` of its bytes, or 64 kB zeroed there (data, not metadata)."""
    cut = tmp_path / "cut.h5"
    data = bytearray(synthetic.read_bytes())
    at = int(len(data) * fraction)
    if zeroed:
        data[at: at + 65536] = bytes(65536)
    else:
        del data[at:]
    cut.write_bytes(bytes(data))
    out = tmp_path / "r.csv"
    code, _, err = _run(capsys, ["reanalyze", str(cut), "--out", str(out), "--scheduler",
                                 "sync", "--no-peak-train", "--no-two-line-test"])
    assert "Traceback" not in err and "internal error" not in err, err
    assert all(line.startswith("micropl: ") for line in err.splitlines())
    if code == 2:  # refused before any work: one line naming the file
        assert err.count("\n") == 1 and str(cut) in err and not out.exists()
    else:  # readable header: every QD is a row, the damaged ones named
        rows = read_table(out)
        named = {int(line.split(" QD ")[1].split(":")[0]) for line in err.splitlines()}
        assert named == {r["qd_id"] for r in rows if r["task_error"]}
        assert code == (1 if named else 0)


def test_without_a_stored_g2_result_the_window_is_the_surveys(tmp_path):
    path = write_session(tmp_path / "w.h5", 1, seed=4, duration_s=1.0, n_frames=2,
                         window_fraction=0.4, multiple_every=1)  # two emitters: g²(0) > 0
    fast = ReanalysisSettings(peak_train=False, two_line_test=False)
    (own,) = reanalyze([str(path)], fast, scheduler="sync").rows
    (full,) = reanalyze([str(path)], fast.model_copy(update={"window_fraction": 1.0}),
                        scheduler="sync").rows
    assert own["window_fraction"] == 0.4 and full["window_fraction"] == 1.0
    assert own["g2_0"] > 0.2 and abs(own["g2_0"] - full["g2_0"]) > 1e-6


def test_survey_resume_with_sample_relabels_a_finished_survey(survey, tmp_path, capsys):
    copy = tmp_path / "copy.h5"
    copy.write_bytes(survey.read_bytes())
    code, _, err = _run(capsys, ["survey", "--resume", str(copy), "--sample", "film C",
                                 "--json"])
    assert code == 0, err
    with SessionReader(copy) as reader:
        assert reader.sample == "film C"
    code, _, err = _run(capsys, ["survey", "--resume", str(copy), "--sample", "a\tb"])
    assert code == 2 and "control characters" in err


def test_a_qd_without_data_is_failed_with_its_stored_reason(tmp_path):
    import time

    from micropl.acquisition.storage import SessionWriter
    from micropl.records import QDStatus, QDTarget, RunStart, RunStop

    path = tmp_path / "failed.h5"
    with SessionWriter.create(path, config_text="") as writer:
        writer.append(RunStart(0, "survey", "{}", time.time()))
        for qd in (0, 1):
            writer.append(QDTarget(run_id=0, qd_id=qd, x_um=1.0, y_um=qd, amplitude=1.0,
                                   snr=9.0))
        writer.append(QDStatus(run_id=0, qd_id=0, status="failed",
                               reason="camera 'camera': not responding", t_s=time.time()))
        writer.append(RunStop(0, "failed", "camera", time.time()))
    rows = reanalyze([str(path)], scheduler="sync").rows
    assert [(r["qd_id"], r["status"], r["stored_status"]) for r in rows] == [
        (0, "failed", "failed"), (1, "failed", "pending")]
    assert rows[0]["reason"] == "no accumulated spectrum stored"
    assert rows[0]["stored_reason"] == "camera 'camera': not responding"
    assert not any(r["task_error"] for r in rows)


@pytest.mark.parametrize(("problems", "g2", "two", "fit_flags", "threshold", "expected"), [
    ([], (0.2, 0.05), False, [], 0.5, ("single", [])),
    ([], (0.4, 0.05), False, [], 0.5, ("multiple_emitters", ["multiple_emitters"])),
    ([], (0.2, 0.05), True, [], 0.5, ("multiple_emitters", ["multiple_emitters"])),
    ([], (0.2, 0.05), False, ["poor_fit"], 0.5, ("poor_fit", ["poor_fit"])),
    ([], (0.2, 0.05), False, ["saturated"], 0.5, ("single", ["saturated"])),
    ([], (0.2, 0.05), False, [], 0.25, ("multiple_emitters", ["multiple_emitters"])),
    ([], None, False, [], 0.5, ("single", [])),
    (["g²: no coincidences"], None, False, ["poor_fit"], 0.5, ("failed", ["poor_fit"])),
    ([], (0.6, 0.0), False, ["poor_fit", "saturated"], 0.5,
     ("multiple_emitters", ["multiple_emitters", "poor_fit", "saturated"])),
])
def test_judge(problems, g2, two, fit_flags, threshold, expected):
    from micropl.analysis.emitters import G2Choice
    from micropl.reanalysis.tasks import judge

    choice = None if g2 is None else G2Choice(g2[0], g2[1], "bgcorr")
    status, reason, flags = judge(problems, choice, two_lines=two, fit_flag_list=fit_flags,
                                  settings=ReanalysisSettings(single_threshold=threshold))
    assert (status, flags) == expected
    assert (reason is None) == (not problems)
