"""``micropl simulate spectrum``: round trip in-process, and bad input → exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from micropl.cli import main

HC = 1239.84198


def test_simulate_spectrum_round_trip(tmp_path, capsys):
    out = tmp_path / "qd.csv"
    code = main(["simulate", "spectrum", "--out", str(out), "--energy-ev", "2.45",
                 "--fwhm-mev", "90", "--seed", "4", "--exposure-s", "2", "--json"])
    assert code == 0
    truth = json.loads(capsys.readouterr().out)
    assert truth["energy_ev"] == 2.45 and truth["fwhm_mev"] == 90.0
    assert truth["seed"] == 4 and truth["exposure_s"] == 2.0 and truth["file"] == str(out)
    assert truth["em_gain"] == 100 and truth["bias_subtracted"] is True
    lines = out.read_text().splitlines()
    assert lines[0] == "wavelength_nm,counts"
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    wl, counts = data[:, 0], data[:, 1]
    assert wl.size == 1600 and np.all(np.diff(wl) > 0)
    # the peak sits at the QD energy (pixel of maximum counts after a light smoothing,
    # converted to a density in energy with the Jacobian λ²/hc)
    density = np.convolve(counts, np.ones(15) / 15, mode="same") * wl**2
    assert HC / wl[np.argmax(density)] == pytest.approx(2.45, abs=0.005)
    # width at half maximum of the density, in energy: ≈ 90 meV
    half = np.flatnonzero(density > density.max() / 2)
    width_mev = 1e3 * (HC / wl[half[0]] - HC / wl[half[-1]])
    assert width_mev == pytest.approx(90.0, rel=0.1)
    # same seed → same file; another seed → different
    again = tmp_path / "again.csv"
    assert main(["simulate", "spectrum", "--out", str(again), "--energy-ev", "2.45",
                 "--fwhm-mev", "90", "--seed", "4", "--exposure-s", "2"]) == 0
    assert again.read_text() == out.read_text()
    other = tmp_path / "other.csv"
    assert main(["simulate", "spectrum", "--out", str(other), "--energy-ev", "2.45",
                 "--fwhm-mev", "90", "--seed", "5", "--exposure-s", "2"]) == 0
    assert other.read_text() != out.read_text()


@pytest.mark.parametrize("args", [
    ["--fwhm-mev", "-5"],
    ["--energy-ev", "1.2"],
    ["--energy-ev", "3.6"],
    ["--exposure-s", "0"],
    ["--em-gain", "500"],
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args):
    code = main(["simulate", "spectrum", "--out", str(tmp_path / "x.csv"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("micropl: error: --")
    assert not (tmp_path / "x.csv").exists()


def test_unwritable_path_exits_2(tmp_path, capsys):
    for bad in (tmp_path / "missing" / "x.csv", tmp_path):
        assert main(["simulate", "spectrum", "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out" in err
