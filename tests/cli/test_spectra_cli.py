"""``micropl analyze spectrum`` in-process: JSON, table, plot, bad input and failed fits."""

import json

import numpy as np
import pytest

from micropl.analysis.spectra import HC_EV_NM, pixel_edges_nm
from micropl.cli import main


def _write_spectrum(path, e0=2.44, fwhm=0.06, seed=0):
    wl = np.linspace(470.0, 560.0, 400)
    edges = HC_EV_NM / pixel_edges_nm(wl)
    clean = 3e4 * np.abs(np.diff(np.arctan(2 * (edges - e0) / fwhm) / np.pi)) + 30.0
    counts = np.random.default_rng(seed).normal(clean, np.sqrt(2 * clean))
    path.write_text("wavelength_nm\tcounts\n" + "".join(f"{w:.4f}\t{c:.3f}\n"
                                                        for w, c in zip(wl, counts)))
    return path


def test_json_output(tmp_path, capsys):
    path = _write_spectrum(tmp_path / "s.tsv")
    code = main(["analyze", "spectrum", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert out.count("\n") == 1
    d = json.loads(out)
    for key in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev",
                "peak_wavelength_nm", "area", "area_err", "background", "background_err",
                "reduced_chi2", "model", "success", "file"):
        assert key in d
    assert d["success"] is True and d["model"] == "lorentzian"
    assert abs(d["peak_energy_ev"] - 2.44) < 5 * d["peak_energy_err_ev"]
    assert abs(d["fwhm_mev"] - 60.0) < 5 * d["fwhm_err_mev"]


def test_table_output_and_plot(tmp_path, capsys):
    path = _write_spectrum(tmp_path / "s.tsv")
    png = tmp_path / "fit.png"
    code = main(["analyze", "spectrum", str(path), "--model", "gaussian", "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 0
    assert "meV" in out and "eV" in out and "±" in out and "gaussian" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_voigt_and_roi(tmp_path, capsys):
    path = _write_spectrum(tmp_path / "s.tsv", fwhm=0.08)
    code = main(["analyze", "spectrum", str(path), "--model", "voigt", "--json",
                 "--roi-nm", "480", "550"])
    d = json.loads(capsys.readouterr().out)
    step = 90.0 / 399                                 # pixel spacing of the file
    low, high = d["roi_nm"]                           # the first and last pixel fitted
    assert d["model"] == "voigt" and 480.0 <= low < 480.0 + step and 550.0 - step < high <= 550.0
    assert code == (0 if d["success"] else 1)


@pytest.mark.parametrize("text", ["", "500\n501\n502\n", "this is\nnot a spectrum\n",
                                  "500,0\n501,0\n502,0\n503,0\n"])
def test_bad_input_exit_2_one_line(tmp_path, capsys, text):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    code = main(["analyze", "spectrum", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_missing_file_exit_2(tmp_path, capsys):
    code = main(["analyze", "spectrum", str(tmp_path / "nope.tsv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1


def test_failed_fit_exit_1_one_line(tmp_path, capsys):
    path = tmp_path / "flat.tsv"
    path.write_text("".join(f"{500 + 0.1 * i:.2f}\t100\n" for i in range(50)))
    code = main(["analyze", "spectrum", str(path), "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["success"] is False
    assert err.count("\n") == 1 and "fit failed" in err


def test_real_file(shared_data, capsys):
    path = shared_data / "sps-quality" / "spectrum_QD-A08_0p5uW_5K.tsv"
    code = main(["analyze", "spectrum", str(path), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["fwhm_mev"] < 1.0
