"""Offline replay: recorded sessions and PTU files through the live pipeline (issue 7)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time

import numpy as np
import pytest
from ptu_writer import write_t2
from record_compare import same

from micropl import cli
from micropl.acquisition import load_setup
from micropl.acquisition import run as run_procedure
from micropl.acquisition.live import AnalysisSettings
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.replay import Replay, open_replay, replay_source_of
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader
from micropl.analysis.g2 import G2Result, PeakTrainFit, cross_correlate, pulsed_g2
from micropl.analysis.spectra import SpectrumFit, fit_spectra


@pytest.fixture(autouse=True)
def _replay_command(monkeypatch):
    if "micropl.cli.replay" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(cli, "COMMAND_MODULES",
                            cli.COMMAND_MODULES + ("micropl.cli.replay",))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A small fast-mode survey: a map, two QDs with spectra (2 frames) and g² (1.5 s)."""
    path = tmp_path_factory.mktemp("recorded") / "survey.h5"
    survey = Survey(scan=RasterScan(x_min_um=5, x_max_um=25, y_min_um=5, y_max_um=25,
                                    step_um=0.3, dwell_s=0.005),
                    max_qds=2, spectrum=SpectrumAcquisition(exposure_s=1.0, accumulations=2),
                    g2=G2(duration_s=1.5), drift_every_n_qds=0)
    with load_setup(clock_mode="fast") as setup:
        result = run_procedure(survey, setup, out=path)
    assert result.ok, result.reason
    assert result.value["n_completed"] >= 1
    return path


def _derived(path, run_id=None):
    """Fits and g² results by (qd, kind, type), in stored order.

    The live g² updates are left out: they are taken every ``g2_update_interval_s``
    of wall time, so how many tags each one holds depends on the machine's load.
    """
    out: dict[tuple, list] = {}
    with SessionReader(path) as reader:
        for table in ("spectrum_fit", "g2_result", "peak_train_fit", "g2_histogram"):
            for rec in reader.records(table, run_id=run_id):
                if rec.kind != "live":
                    out.setdefault((rec.qd_id, rec.kind, table), []).append(rec.record)
    return out


def test_replay_gives_identical_results_and_records_provenance(recorded, tmp_path, capsys):
    out = tmp_path / "replay.h5"
    assert cli.main(["replay", str(recorded), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["replay"]["sha256"] == hashlib.sha256(recorded.read_bytes()).hexdigest()

    original, replayed = _derived(recorded), _derived(out)
    assert set(original) == set(replayed)
    assert any(k[2] == "spectrum_fit" and k[1] == "accumulated" for k in original)
    assert any(k[2] == "g2_result" and k[1] == "final" for k in original)
    for key, records in original.items():
        assert len(records) == len(replayed[key]), key
        for a, b in zip(records, replayed[key]):
            assert same(a, b), (key, a, b)

    with SessionReader(out) as reader, SessionReader(recorded) as source:
        (run,) = reader.runs()
        assert run.procedure == "replay" and run.status == "completed"
        params = json.loads(run.parameters_json)
        assert params["source"] == str(recorded.resolve())
        assert params["source_sha256"] == summary["replay"]["sha256"]
        assert params["source_software_version"] == source.software_version
        assert params["source_runs"][0]["procedure"] == "survey"
        assert params["analysis"] == AnalysisSettings().model_dump()
        assert "driver: replay" in reader.config_text
        # Raw data is re-stored as recorded: same tags, frames, QDs and statuses.
        for kind in ("g2",):
            t0, c0 = source.tags(kind=kind)
            t1, c1 = reader.tags(kind=kind)
            assert np.array_equal(t0, t1) and np.array_equal(c0, c1)
        assert [(q.qd_id, q.status, q.x_um) for q in reader.qds()] == \
            [(q.qd_id, q.status, q.x_um) for q in source.qds()]
        assert reader.n_rows("frame") == source.n_rows("frame")
        assert reader.n_rows("map_line") == source.n_rows("map_line")
    assert cli.main(["info", str(out)]) == 0


def test_replay_with_other_fit_settings_gives_the_new_results(recorded, tmp_path, capsys):
    out = tmp_path / "gauss.h5"
    assert cli.main(["replay", str(recorded), "--out", str(out), "--model", "gaussian",
                     "--n-side", "3", "--bin-ps", "256", "--json"]) == 0
    capsys.readouterr()
    with SessionReader(out) as reader, SessionReader(recorded) as source:
        (run,) = reader.runs()
        params = json.loads(run.parameters_json)
        assert params["analysis"]["spectrum_model"] == "gaussian"
        assert params["analysis"]["n_side"] == 3 and params["analysis"]["g2_bin_ps"] == 256
        rate_hz = source.instruments["laser"]["rep_rate_hz"]
        checked = 0
        for qd in source.qds():
            spectra = source.records("spectrum", qd_id=qd.qd_id, kind="accumulated")
            fits = reader.records(SpectrumFit, qd_id=qd.qd_id, kind="accumulated")
            if not spectra:
                continue
            # Independent reference: a direct Gaussian fit of the recorded spectrum.
            s = spectra[-1].record
            noise = {"noise_factor": 2.0 if s.em_gain > 1 else 1.0,
                     "read_noise": float(s.read_noise)}
            ref = fit_spectra(s.wavelength_nm, s.counts, model="gaussian", **noise)
            if float(ref.reduced_chi2) > 1.0:
                ref = fit_spectra(s.wavelength_nm, s.counts, model="gaussian",
                                  scale_errors="chi2", p0=ref.params, **noise)
            new = fits[-1].record
            np.testing.assert_allclose(new.peak_energy_ev, ref.peak_energy_ev, rtol=1e-9)
            np.testing.assert_allclose(new.fwhm_mev, ref.fwhm_mev, rtol=1e-9)
            old = source.records(SpectrumFit, qd_id=qd.qd_id, kind="accumulated")[-1].record
            assert not np.allclose(new.fwhm_mev, old.fwhm_mev, rtol=1e-6)
            # g²: correlate the recorded tags with the new bin and window, n_side 3.
            t, c = source.tags(qd_id=qd.qd_id, kind="g2")
            window = int(round(4 * 1e12 / rate_hz))
            window -= window % 256
            tau, counts = cross_correlate(t[c == 1], t[c == 2], 256, window)
            expected = pulsed_g2(tau, counts, rep_rate_hz=rate_hz, n_side=3)
            (result,) = reader.records(G2Result, qd_id=qd.qd_id, kind="final")
            assert result.record.n_side == 3 and result.record.bin_ps == 256
            assert result.record.g2_0 == pytest.approx(expected.g2_0, rel=1e-12)
            assert result.record.g2_0_err == pytest.approx(expected.g2_0_err, rel=1e-12)
            assert reader.records(PeakTrainFit, qd_id=qd.qd_id, kind="final")
            checked += 1
        assert checked >= 1


# --------------------------------------------------------------------------- PTU
def _hbt_tags(seed=3, duration_s=0.3, rate_hz=10e6):
    """Pulsed single-photon emitter with some two-photon pulses, two APDs, dark counts."""
    rng = np.random.default_rng(seed)
    period_ps = 1e12 / rate_hz
    n_pulses = int(duration_s * rate_hz)
    pulses = np.flatnonzero(rng.random(n_pulses) < 0.03)
    twos = pulses[rng.random(pulses.size) < 0.0045]  # g²(0) ≈ 0.3
    emit = np.concatenate([pulses, twos])
    t = emit * period_ps + rng.exponential(5000.0, emit.size) + rng.normal(0, 150, emit.size)
    ch = rng.integers(1, 3, emit.size)
    dark = rng.uniform(0, duration_s * 1e12, 120)
    t = np.concatenate([t, dark])
    ch = np.concatenate([ch, rng.integers(1, 3, dark.size)])
    t = t + np.where(ch == 2, 3000.0, 0.0) + 1e6
    order = np.argsort(t, kind="stable")
    return np.round(t[order]).astype(np.int64), ch[order].astype(np.uint8)


def _both_json(path, capsys, tmp_path, *extra):
    assert cli.main(["analyze", "g2", str(path), "--json", *extra]) == 0
    analyzed = json.loads(capsys.readouterr().out)
    out = tmp_path / f"{path.stem}-replay.h5"
    assert cli.main(["replay", str(path), "--json", "--out", str(out), *extra]) == 0
    replayed = json.loads(capsys.readouterr().out)
    return analyzed, replayed, out


def test_ptu_replay_agrees_with_analyze_g2_independent_writer(tmp_path, capsys):
    t, ch = _hbt_tags()
    path = write_t2(tmp_path / "hbt.ptu", t, ch, acquisition_ms=300)
    analyzed, replayed, out = _both_json(path, capsys, tmp_path)
    assert replayed.keys() == analyzed.keys()
    assert replayed == analyzed
    # The emitter's two-photon pulses: g²(0) = 2 P₂ / P₁² ≈ 0.3.
    assert analyzed["g2_0"] == pytest.approx(0.3, abs=4 * analyzed["g2_0_err"] + 0.03)
    with SessionReader(out) as reader:
        (run,) = reader.runs()
        params = json.loads(run.parameters_json)
        assert params["source_kind"] == "ptu"
        assert params["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        tags, channels = reader.tags(kind="g2")
        assert np.array_equal(tags, t) and np.array_equal(channels, ch)
    # Other settings are honoured the same way by both commands.
    (tmp_path / "other").mkdir()
    analyzed, replayed, _ = _both_json(path, capsys, tmp_path / "other", "--n-side", "3",
                                       "--bin-ps", "100")
    assert replayed == analyzed and analyzed["n_side"] == 3


def test_ptu_replay_of_a_micropl_export(recorded, tmp_path, capsys):
    assert cli.main(["export", str(recorded), "--ptu", str(tmp_path), "--json"]) == 0
    capsys.readouterr()
    files = sorted(tmp_path.glob("*.ptu"))
    assert files
    analyzed, replayed, _ = _both_json(files[0], capsys, tmp_path)
    assert replayed == analyzed


def test_speed_factor_paces_through_the_clock(tmp_path):
    t, ch = _hbt_tags(duration_s=0.2)
    path = write_t2(tmp_path / "slow.ptu", t, ch, acquisition_ms=200)
    results = {}
    for speed in (math.inf, 0.5):
        with open_replay(path, speed=speed) as setup:
            assert setup.clock.mode == ("fast" if math.isinf(speed) else "real")
            source = replay_source_of(setup)
            analysis = AnalysisSettings(g2_bin_ps=64)
            with Session(setup, None, analysis=analysis) as session:
                start = time.monotonic()
                result = session.run(Replay.for_source(source, analysis))
                results[speed] = (time.monotonic() - start, setup.clock.now(), result.value)
            assert result.ok, result.reason
            assert source.position_s == pytest.approx(source.duration_s)
    recorded_s = source.duration_s
    assert recorded_s == pytest.approx(0.2, abs=1e-3)
    wall_half, _, g2_half = results[0.5]
    _, virtual_fast, g2_fast = results[math.inf]
    assert wall_half >= recorded_s / 0.5 * 0.95  # half speed: twice the recorded time
    # As fast as possible: the fast clock advanced by the recorded time, instantly.
    assert virtual_fast == pytest.approx(recorded_s, rel=1e-9)
    assert g2_half.g2_0 == g2_fast.g2_0  # timing changes nothing in the results


# --------------------------------------------------------------------------- bad input
def _bad_files(tmp_path, recorded):
    (tmp_path / "foreign.txt").write_text("delay,counts\n1,2\n")
    (tmp_path / "empty.h5").write_bytes(b"")
    data = recorded.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 3])
    t, ch = _hbt_tags(duration_s=0.01)
    good = write_t2(tmp_path / "good.ptu", t, ch).read_bytes()
    (tmp_path / "truncated.ptu").write_bytes(good[: len(good) - 1001])
    (tmp_path / "header.ptu").write_bytes(good[:40])
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    shutil.copy(recorded, tmp_path / "copy.h5")
    return ["foreign.txt", "empty.h5", "truncated.h5", "truncated.ptu", "header.ptu",
            "other.h5", "missing.h5"]


def test_bad_truncated_or_foreign_files_exit_2_with_one_line(recorded, tmp_path, capsys):
    for name in _bad_files(tmp_path, recorded):
        code = cli.main(["replay", str(tmp_path / name), "--out", str(tmp_path / "x.h5")])
        err = capsys.readouterr().err
        assert code == 2, name
        assert err.count("\n") == 1 and err.startswith("micropl: error:"), (name, err)
        assert "Traceback" not in err
        assert not (tmp_path / "x.h5").exists()
    assert cli.main(["replay", str(tmp_path / "copy.h5"), "--speed", "-1"]) == 2
    assert cli.main(["replay", str(tmp_path / "copy.h5"), "--n-side", "0"]) == 2
    capsys.readouterr()
