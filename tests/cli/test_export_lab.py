"""``micropl export`` for colleagues: QD table, g² CSV, precise numbers, PTU times.

A session is written here record by record (independently of the simulator): a QD
with a spectrum, a fit, tags measured 106–136 s after the tagger started, a g²
histogram and its result. The export is read back by ``ptufile`` and by
``micropl analyze``, which must give the stored fits.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micropl.acquisition.export import number_text
from micropl.acquisition.storage import SessionWriter
from micropl.analysis.g2 import pulsed_g2
from micropl.analysis.spectra import fit_spectra
from micropl.cli import main
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

T_START_PS = 106 * 10**12  # the g² began 106 s after the tagger's time base started
T_STOP_PS = 136 * 10**12  # and lasted 30 s
HC = 1239.84198


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("export") / "s.h5"
    wl = 18.1 + np.arange(900) * 0.7  # 18.1 nm + k·0.7: decimal steps that float64 rounds
    wl = 470 + (wl - 18.1) / 7  # a visible axis whose values are not short decimals
    e = HC / wl
    counts = rng.poisson(3000 * (0.03**2) / ((e - 2.45) ** 2 + 0.03**2) + 100).astype(float)
    fit = fit_spectra(wl, counts)
    tau = np.arange(-550_000, 550_000, 256, dtype=float) + 128
    peaks = sum(np.exp(-np.abs(tau - k * 100_000) / 3000) * (0.12 if k == 0 else 1.0)
                for k in range(-5, 6))
    hist = rng.poisson(300 * peaks + 1).astype(np.int64)
    g2 = pulsed_g2(tau, hist, rep_rate_hz=1e7)
    n_tags = 60_000  # 2 kHz over 30 s
    t = np.sort(rng.integers(T_START_PS, T_STOP_PS, n_tags)).astype(np.int64)
    ch = rng.integers(1, 3, n_tags).astype(np.uint8)
    mid = T_START_PS + 15 * 10**12
    k = int(np.searchsorted(t, mid))
    with SessionWriter.create(path, config_text="clock: {mode: fast}\n",
                              instruments={"laser": {"rep_rate_hz": 1.0e7}}) as w:
        w.append(RunStart(0, "g2", '{"window_fraction": 1.0}', 1_700_000_000.0))
        w.append(QDTarget(0, 0, 10.0, 11.0, 80.0, 20.0))
        w.append(Tagged(Spectrum(wl, counts, 1.0), 0, 0, "accumulated"))
        w.append(Tagged(fit, 0, 0, "accumulated"))
        w.append(Tagged(TagChunk(t[:k], ch[:k], T_START_PS, mid), 0, 0, "g2"))
        w.append(Tagged(TagChunk(t[k:], ch[k:], mid, T_STOP_PS), 0, 0, "g2"))
        w.append(Tagged(G2Histogram(tau, hist, 256.0, 30.0), 0, 0, "final"))
        w.append(Tagged(g2, 0, 0, "final"))
        w.append(QDStatus(0, 0, "completed", "", 1_700_000_100.0))
        w.append(RunStop(0, "completed", "", 1_700_000_200.0))
    return {"path": path, "wl": wl, "counts": counts, "fit": fit, "g2": g2, "t": t, "ch": ch}


@pytest.fixture(scope="module")
def exported(session, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = main(["export", str(session["path"]), "--csv", str(out / "csv"), "--ptu",
                 str(out / "ptu")])
    assert code == 0
    return out


def test_ptu_export_carries_the_acquisition_time_and_start(session, exported):
    ptufile = pytest.importorskip("ptufile")
    (ptu,) = sorted((exported / "ptu").iterdir())
    with ptufile.PtuFile(ptu) as f:
        acq_s = f.tags["MeasDesc_AcquisitionTime"] * 1e-3
        offset = f.tags["micropl_TimeOffset_ps"]
        records = f.decode_records()
        res_ps = round(f.global_resolution * 1e12)
    photons = records[records["channel"] >= 0]
    assert acq_s == 30.0 and offset == T_START_PS  # not 136 s from the session start
    np.testing.assert_array_equal(photons["time"].astype(np.int64) * res_ps + offset,
                                  session["t"])
    for c in (1, 2):  # the rates read back are the measurement's
        n = int(np.count_nonzero(photons["channel"] + 1 == c))
        assert n / acq_s == np.count_nonzero(session["ch"] == c) / 30.0
    assert int(photons["time"][0]) * res_ps == int(session["t"][0]) - T_START_PS


def test_csv_numbers_have_the_precision_they_carry(session, exported):
    (spectrum,) = (exported / "csv").glob("qd0_run0_accumulated_seq*.csv")
    lines = spectrum.read_text().splitlines()
    assert lines[0] == "wavelength_nm,counts"
    texts = [line.split(",") for line in lines[1:]]
    assert [w for w, _ in texts] == [number_text(v) for v in session["wl"]]
    assert all("." not in c for _, c in texts)  # whole counts as integers
    noisy = [f"{v:.17g}" for v in session["wl"]]  # what %.17g would have written
    assert sum(map(len, noisy)) > 1.3 * sum(len(w) for w, _ in texts)
    assert "470.10000000000002" in noisy and texts[1][0] == "470.1"
    back = np.loadtxt(spectrum, delimiter=",", skiprows=1)
    assert back[:, 0].tobytes() == session["wl"].tobytes()
    assert back[:, 1].tobytes() == session["counts"].tobytes()
    assert number_text(18.1) == "18.1" and number_text(18.100000000000001) == "18.1"
    assert number_text(3.0) == "3" and number_text(float("nan")) == "nan"


@given(st.floats(allow_nan=False, allow_infinity=True))
def test_number_text_round_trips_every_float(x):
    text = number_text(x)
    assert float(text) == x and len(text) <= len(repr(x))
    assert np.signbit(float(text)) == np.signbit(x)


def test_qd_summary_csv_and_json_are_info_json(session, exported, capsys):
    _, out, _ = _cli(capsys, "info", session["path"], "--json")
    qds = json.loads(out)["qds"]
    table = json.loads((exported / "csv" / "qd_summary.json").read_text())
    assert table == qds
    with open(exported / "csv" / "qd_summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(qds) == 1
    row, qd = rows[0], qds[0]
    assert set(qd) - {"truth"} <= set(row)
    for key in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "g2_0",
                "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "x_um", "y_um"):
        assert float(row[key]) == qd[key], key  # exact: the shortest round-trip text
    assert row["status"] == "completed" and row["flags"] == ";".join(qd["flags"])
    assert float(row["peak_energy_ev"]) == float(session["fit"].peak_energy_ev)


def test_round_trip_export_analyze_gives_the_stored_fits(session, exported, capsys):
    (spectrum,) = (exported / "csv").glob("qd0_run0_accumulated_seq*.csv")
    code, out, _ = _cli(capsys, "analyze", "spectrum", spectrum, "--json")
    got, fit = json.loads(out), session["fit"]
    assert got["format"] == "text" and got["n_points"] == 900 and got["cosmic_rays_removed"] == 0
    for key in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "area"):
        assert got[key] == pytest.approx(float(getattr(fit, key)), rel=1e-9), key
    (hist,) = (exported / "csv").glob("qd0_run0_g2_final_seq*.csv")
    assert hist.read_text().splitlines()[0] == "delay_ns,counts"
    code, out, _ = _cli(capsys, "analyze", "g2", hist, "--rep-rate", "1e7", "--json")
    got, g2 = json.loads(out), session["g2"]
    assert code == 0 and got["delay_unit"] == "ns"
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
        assert got[key] == pytest.approx(float(getattr(g2, key)), rel=1e-9), key
    (ptu,) = sorted((exported / "ptu").iterdir())
    code, out, _ = _cli(capsys, "analyze", "g2", ptu, "--json", "--window-ps", "550000")
    got = json.loads(out)
    assert got["format"] == "ptu-t2" and got["exposure_s"] <= 30.0
    assert got["n_tags"] == session["t"].size


def test_export_lists_every_file_as_json(session, tmp_path, capsys):
    code, out, _ = _cli(capsys, "export", session["path"], "--csv", tmp_path / "c", "--json")
    files = json.loads(out)
    assert code == 0 and len(files["csv"]) == 1 and len(files["g2_csv"]) == 1
    assert [Path(p).name for p in files["summary"]] == ["qd_summary.csv", "qd_summary.json"]
    code, _, err = _cli(capsys, "export", session["path"], "--csv", tmp_path / "c")
    assert code == 2 and err.count("\n") == 1  # never overwrites


def test_ptu_writer_refuses_an_acquisition_time_before_the_last_tag(tmp_path):
    from micropl.analysis.ptu_write import write_ptu_t2
    from micropl.errors import AnalysisInputError

    t = np.array([0, 10**12, 2 * 10**12], dtype=np.int64)
    with pytest.raises(AnalysisInputError, match="ends before the last tag"):
        write_ptu_t2(tmp_path / "a.ptu", t, np.array([1, 2, 1]), sync_rate_hz=1e7,
                     acquisition_time_s=1.5)
    with pytest.raises(AnalysisInputError, match="must be >= 0"):
        write_ptu_t2(tmp_path / "a.ptu", t, np.array([1, 2, 1]), sync_rate_hz=1e7,
                     acquisition_time_s=float("nan"))
    write_ptu_t2(tmp_path / "a.ptu", t, np.array([1, 2, 1]), sync_rate_hz=1e7,
                 acquisition_time_s=30.0)
    ptufile = pytest.importorskip("ptufile")
    with ptufile.PtuFile(tmp_path / "a.ptu") as f:
        assert f.tags["MeasDesc_AcquisitionTime"] == 30_000
