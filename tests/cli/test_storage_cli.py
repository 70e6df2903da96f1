"""``micropl info`` and ``micropl export`` on session files."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from micropl import cli
from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.acquisition.summary import TRUTH_MATCH_UM
from micropl.analysis.g2 import pulsed_g2
from micropl.analysis.spectra import fit_spectra
from micropl.records import (
    G2Histogram,
    QDStatus,
    QDTarget,
    RunStart,
    RunStop,
    Spectrum,
    TagChunk,
    Tagged,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "acquisition"))
import test_storage_crash as crash  # noqa: E402  (subprocess writer helpers)

MODULES = ("micropl.cli.info", "micropl.cli.export")


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    """Register info/export even before the lead adds them to COMMAND_MODULES."""
    extra = tuple(m for m in MODULES if m not in cli.COMMAND_MODULES)
    monkeypatch.setattr(cli, "COMMAND_MODULES", cli.COMMAND_MODULES + extra)


def _lorentzian_counts(rng, wl, energy_ev, fwhm_mev):
    e = 1239.84198 / wl
    hw = fwhm_mev / 2000
    return rng.poisson(3000 * hw**2 / ((e - energy_ev) ** 2 + hw**2) + 100).astype(float)


def _g2_hist(rng, g2_0):
    tau = np.arange(-550_000, 550_000, 256, dtype=float) + 128
    peaks = sum(np.exp(-np.abs(tau - k * 100_000) / 3000) * (g2_0 if k == 0 else 1.0)
                for k in range(-5, 6))
    return tau, rng.poisson(300 * peaks + 1).astype(np.int64)


@pytest.fixture
def session(tmp_path):
    """A simulated survey: QD 0 completed, QD 1 failed, QD 2 pending, QD 3 far from truth."""
    rng = np.random.default_rng(3)
    path = tmp_path / "survey.h5"
    truth = {"x_um": np.array([10.0, 20.0, 30.0, 5.0]), "y_um": np.array([10.0, 20.0, 30.0, 5.0]),
             "energy_ev": np.array([2.41, 2.45, 2.48, 2.40]),
             "fwhm_mev": np.array([72.0, 100.0, 125.0, 70.0]),
             "g2_0": np.array([0.1, 0.2, 0.3, 0.15]), "brightness_cps": np.ones(4)}
    wl = np.linspace(470, 560, 1600)
    fits = {}
    with SessionWriter.create(path, truth=truth, config_text="clock: {mode: fast}\n",
                              instruments={"laser": {"rep_rate_hz": 1.0e7}}) as w:
        w.append(RunStart(0, "survey", '{"max_qds": 4}', 1_700_000_000.0))
        w.append_many([QDTarget(0, 0, 10.2, 9.9, 80.0, 20.0), QDTarget(0, 1, 20.0, 20.3, 50.0, 9.0),
                       QDTarget(0, 2, 30.0, 30.0, 40.0, 8.5),
                       QDTarget(0, 3, 15.0, 15.0, 40.0, 8.5)])
        # QD 0: raw frames, accumulated spectrum + fit, tags, histogram, g2
        counts = _lorentzian_counts(rng, wl, 2.41, 72.0)
        w.append(Tagged(Spectrum(wl, counts / 2, 1.0), 0, 0, "frame"))
        w.append(Tagged(Spectrum(wl, counts, 1.0, accumulations=2), 0, 0, "accumulated"))
        fits[0] = fit_spectra(wl, counts)
        w.append(Tagged(fit_spectra(wl, counts / 2), 0, 0, "frame"))
        w.append(Tagged(fits[0], 0, 0, "accumulated"))
        t = np.cumsum(rng.integers(1, 50_000, 20_000)).astype(np.int64)
        c = rng.integers(1, 3, t.size).astype(np.uint8)
        w.append(Tagged(TagChunk(t[:12_000], c[:12_000], 0, int(t[11_999]) + 1), 0, 0, "g2"))
        w.append(Tagged(TagChunk(t[12_000:], c[12_000:], int(t[11_999]) + 1, int(t[-1]) + 1),
                        0, 0, "g2"))
        tau, hist = _g2_hist(rng, 0.1)
        w.append(Tagged(G2Histogram(tau, hist, 256.0, 60.0), 0, 0, "final"))
        g2 = pulsed_g2(tau, hist, period_ps=100_000.0)
        w.append(Tagged(g2, 0, 0, "final"))
        w.append(QDStatus(0, 0, "completed", "", 1_700_000_100.0))
        w.append(QDStatus(0, 1, "failed", "spectrum fit failed: no line", 1_700_000_200.0))
        w.append(Tagged(Spectrum(wl, _lorentzian_counts(rng, wl, 2.48, 125.0), 1.0), 0, 3,
                        "accumulated"))
        w.append(RunStop(0, "aborted", "user abort", 1_700_000_300.0))
    return path, fits[0], g2


def _info_json(path, capsys):
    assert cli.main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json(session, capsys):
    path, fit, g2 = session
    info = _info_json(path, capsys)
    for key in ("file", "software_version", "created", "simulated", "runs", "qds"):
        assert key in info
    assert info["simulated"] is True and info["being_written"] is False
    (run,) = info["runs"]
    assert (run["procedure"], run["status"], run["reason"]) == ("survey", "aborted", "user abort")
    assert run["start"] == "2023-11-14T22:13:20+00:00" and run["end"].startswith("2023-11-14")
    qds = {q["id"]: q for q in info["qds"]}
    assert [qds[i]["status"] for i in range(4)] == ["completed", "failed", "pending", "pending"]
    assert qds[1]["reason"] == "spectrum fit failed: no line"
    q0 = qds[0]
    assert q0["peak_energy_ev"] == float(fit.peak_energy_ev)  # the accumulated fit, not frame
    assert q0["fwhm_err_mev"] == float(fit.fwhm_err_mev)
    assert abs(q0["peak_energy_ev"] - 2.41) < 0.005 and abs(q0["fwhm_mev"] - 72) < 5
    assert (q0["g2_0"], q0["g2_0_err"]) == (g2.g2_0, g2.g2_0_err)
    # A file without truth records: the nearest emitter's static values; the raw g²(0)
    # expected with the background is not known for it.
    assert q0["truth"]["energy_ev"] == 2.41 and q0["truth"]["g2_0_intrinsic"] == 0.1
    assert q0["truth"]["g2_0"] is None and q0["truth"]["exposure_averaged"] is False
    assert q0["flags"] == [] and q0["spectral_jitter_mev"] is None  # one frame: no jitter
    assert q0["truth"]["distance_um"] <= TRUTH_MATCH_UM
    assert qds[2]["truth"]["fwhm_mev"] == 125.0
    assert qds[3]["truth"] is None  # nothing within 1 µm
    for key in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "g2_0",
                "g2_0_err"):
        assert qds[1][key] is None and qds[2][key] is None


def test_info_table(session, capsys):
    path, _, _ = session
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Runs" in out and "QDs (4)" in out and "aborted" in out and "2.41" in out


def test_info_while_written_and_bad_files(tmp_path, capsys):
    path = tmp_path / "live.h5"
    proc = crash.start_writer(path, seed=2)
    try:
        assert proc.stdout.readline().startswith("ready")
        info = _info_json(path, capsys)
        assert info["being_written"] is True and info["runs"][0]["status"] == "running"
        assert info["simulated"] is True and "qds" in info
    finally:
        proc.kill()
        proc.communicate()
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5\n")
    assert cli.main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: not a micropl session file" in err
    assert cli.main(["info", str(tmp_path / "missing.h5")]) == 2


def test_export_csv_round_trip(session, tmp_path, capsys):
    path, _, _ = session
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "csv"
    assert cli.main(["export", str(path), "--csv", str(out), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["csv"]
    assert len(files) == 3
    with SessionReader(path) as reader:
        stored = reader.records("spectrum")
    for s, name in zip(stored, files):
        assert Path(name).name == f"qd{s.qd_id}_run{s.run_id}_{s.kind}_seq{s.seq}.csv"
        assert Path(name).read_text().splitlines()[0] == "wavelength_nm,counts"
        back = np.loadtxt(name, delimiter=",", skiprows=1)
        assert back[:, 0].tobytes() == s.record.wavelength_nm.tobytes()
        assert back[:, 1].tobytes() == s.record.counts.tobytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_export_ptu_readable_by_ptufile(session, tmp_path, capsys):
    ptufile = pytest.importorskip("ptufile")
    path, _, g2 = session
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    out = tmp_path / "ptu"
    assert cli.main(["export", str(path), "--ptu", str(out)]) == 0
    assert "1 PTU file(s) written" in capsys.readouterr().out
    (ptu,) = sorted(out.iterdir())
    assert ptu.name == "qd0_run0.ptu"
    with SessionReader(path) as reader:
        t_ps, channel = reader.tags(qd_id=0, run_id=0)
    assert t_ps.size == 20_000
    with ptufile.PtuFile(ptu) as f:
        assert f.tags["TTResult_SyncRate"] == round(g2.rep_rate_hz)
        records = f.decode_records()
        resolution_ps = f.global_resolution * 1e12
    photons = records[records["channel"] >= 0]
    np.testing.assert_array_equal(photons["time"] * round(resolution_ps), t_ps)
    np.testing.assert_array_equal(photons["channel"] + 1, channel)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_export_needs_a_target(session, capsys):
    path, _, _ = session
    assert cli.main(["export", str(path)]) == 2
    assert "give --ptu DIR and/or --csv DIR" in capsys.readouterr().err
