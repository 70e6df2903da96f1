"""Spectrum files a lab already has: SIF, SPE 2.x/3.0, ASC, text with any header.

Real files (``tests/data``, see SOURCES.md) are compared with the independent readers
(``sif_parser``, spe2py's ``spe_loader``) and with each other (a SIF and its own ASC
export); SPE 2.x and more SPE 3.0 variants are written by ``lab_writers`` (independent
of the reader) and also read by ``spe_loader``. Every truncated or lying file ends with
one line: FileFormatError in the API, exit 2 on the command line.
"""

from __future__ import annotations

import json
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from lab_writers import write_spe2, write_spe3

from micropl.analysis.formats import read_spectra, spectrum_format
from micropl.analysis.spectrum_files import read_spectrum_file
from micropl.cli import main
from micropl.errors import FileFormatError

DATA = Path(__file__).resolve().parents[1] / "data"
SIF_FILES = ["raman1.sif", "measurement.sif", "DD58_785_1_Fe2O3_5x10s.sif"]
HC = 1239.84198


def _lorentz_frames(wl: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Poisson frames of one line at 925 nm (an independent generator)."""
    rng = np.random.default_rng(seed)
    e = HC / wl
    line = 2000 * 0.5e-3**2 / ((e - HC / 925.0) ** 2 + 0.5e-3**2) + 100
    return rng.poisson(line, (n, wl.size))


def _cli(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith("{") else None), out.err


# --------------------------------------------------------------------- SIF (real files)
@pytest.mark.parametrize("name", SIF_FILES)
def test_sif_equals_sif_parser(name):
    import sif_parser

    series = read_spectra(DATA / name)
    data, info = sif_parser.np_open(str(DATA / name))
    ref_wl = sif_parser.utils.extract_calibration(info)
    assert series.format == "sif" and series.n_frames == data.shape[0]
    np.testing.assert_array_equal(series.counts, data[:, 0, :].astype(np.float64))
    np.testing.assert_array_equal(series.wavelength_nm, ref_wl)
    assert series.exposure_s == info["ExposureTime"]
    assert series.accumulations == info["AccumulatedCycles"]
    assert series.gain == info["GainDAC"]


def test_sif_and_its_asc_export_agree():
    sif, asc = read_spectra(DATA / "raman1.sif"), read_spectra(DATA / "raman1.asc")
    assert (sif.format, asc.format) == ("sif", "asc")
    # the ASC writes 8 significant digits (wavelength) and 6 (counts)
    np.testing.assert_allclose(asc.wavelength_nm, sif.wavelength_nm, rtol=0, atol=5e-5)
    np.testing.assert_allclose(asc.counts, sif.counts, rtol=5e-6, atol=0.5)
    for key in ("exposure_s", "accumulations", "gain"):
        assert getattr(asc, key) == getattr(sif, key)  # from the ASC footer


def test_sif_json_says_what_was_read(capsys):
    code, out, _ = _cli(capsys, "analyze", "spectrum", str(DATA / "DD58_785_1_Fe2O3_5x10s.sif"),
                        "--json")
    series = read_spectra(DATA / "DD58_785_1_Fe2O3_5x10s.sif")
    assert out["format"] == "sif" and out["n_points"] == 1024 and out["n_frames"] == 1
    assert out["wavelength_min_nm"] == series.wavelength_nm[0]
    assert out["wavelength_max_nm"] == series.wavelength_nm[-1]
    assert out["exposure_s"] == pytest.approx(9.99996) and out["accumulations"] == 5
    assert code in (0, 1) and "peak_energy_ev" in out


def test_kinetic_sif_fits_every_frame_or_the_one_asked(capsys):
    path = str(DATA / "measurement.sif")
    code, out, _ = _cli(capsys, "analyze", "spectrum", path, "--json")
    assert out["n_frames"] == 20 and [f["frame"] for f in out["frames"]] == list(range(20))
    code3, one, _ = _cli(capsys, "analyze", "spectrum", path, "--frame", "3", "--json")
    assert one["frame"] == 3
    assert one["peak_energy_ev"] == out["frames"][3]["peak_energy_ev"]
    with pytest.raises(FileFormatError, match="20 frames.*--frame 0..19"):
        read_spectrum_file(path)
    wl, counts = read_spectrum_file(path, frame=3)
    np.testing.assert_array_equal(counts, read_spectra(path).counts[3])
    code, _, err = _cli(capsys, "analyze", "spectrum", path, "--frame", "20")
    assert code == 2 and err.count("\n") == 1 and "0 to 19" in err


# --------------------------------------------------------------------- SPE
def test_real_spe3_equals_spe2py():
    import spe_loader

    ref = spe_loader.load_from_files([str(DATA / "one_dimensional_spectrum.spe")])
    series = read_spectra(DATA / "one_dimensional_spectrum.spe")
    assert series.format == "spe3" and series.n_frames == 1
    np.testing.assert_array_equal(series.wavelength_nm, np.asarray(ref.wavelength))
    np.testing.assert_array_equal(series.counts[0], np.asarray(ref.data[0][0][0]))
    assert series.exposure_s == pytest.approx(1.0)  # 999.99999999999989 ms in the footer


@pytest.mark.parametrize("dtype", ["<u2", "<u4", "<f4"])
def test_written_spe3_series_equals_spe2py(tmp_path, dtype):
    import spe_loader

    wl = np.linspace(960.0, 900.0, 300)  # descending: returned ascending
    frames = _lorentz_frames(wl, 4)
    path = write_spe3(tmp_path / "k.spe", frames, wl, exposure_ms=250.0, dtype=dtype)
    ref = spe_loader.load_from_files([str(path)])
    series = read_spectra(path)
    assert series.format == "spe3" and series.n_frames == 4 and series.exposure_s == 0.25
    np.testing.assert_array_equal(series.wavelength_nm, np.asarray(ref.wavelength)[::-1])
    for k in range(4):
        np.testing.assert_array_equal(series.counts[k], np.asarray(ref.data[k][0][0])[::-1])


def test_spe2_calibration_is_the_polynomial_of_the_pixel_from_1(tmp_path):
    coeffs = (899.5, 0.21, -3e-6)
    frames = _lorentz_frames(np.linspace(900, 940, 256), 2)
    series = read_spectra(write_spe2(tmp_path / "w.spe", frames, coeffs, exposure_s=0.5))
    pixel = np.arange(1, 257)
    expect = coeffs[0] + coeffs[1] * pixel + coeffs[2] * pixel**2
    assert series.format == "spe2" and series.exposure_s == 0.5
    np.testing.assert_allclose(series.wavelength_nm, expect, rtol=1e-15)
    np.testing.assert_array_equal(series.counts, frames)


def test_spe_without_calibration_names_format_and_flag(tmp_path, capsys):
    frames = _lorentz_frames(np.linspace(900, 950, 200), 1)
    for name, path, label in (
            ("3", write_spe3(tmp_path / "n3.spe", frames, None), "SPE 3.0"),
            ("2", write_spe2(tmp_path / "n2.spe", frames, None), "SPE 2.x")):
        code, _, err = _cli(capsys, "analyze", "spectrum", str(path))
        assert code == 2 and err.count("\n") == 1, name
        assert f"{label} without a wavelength calibration: give --wavelength-nm-range" in err
        code, out, _ = _cli(capsys, "analyze", "spectrum", str(path), "--json",
                            "--wavelength-nm-range", "900", "950")
        assert out["calibration"] == "user" and out["wavelength_min_nm"] == 900.0
        assert out["peak_wavelength_nm"] == pytest.approx(925.0, abs=0.5)


def test_spe3_region_of_a_sensor_wide_calibration_and_two_regions(tmp_path, capsys):
    sensor = np.linspace(880.0, 980.0, 400)  # one wavelength per sensor column
    frames = _lorentz_frames(sensor[100:300], 1)
    series = read_spectra(write_spe3(tmp_path / "roi.spe", frames, sensor, roi_x=100))
    np.testing.assert_array_equal(series.wavelength_nm, sensor[100:300])
    path = write_spe3(tmp_path / "two.spe", frames, sensor[100:300], n_regions=2)
    code, _, err = _cli(capsys, "analyze", "spectrum", str(path))
    assert code == 2 and "SPE 3.0 with 2 regions of interest" in err


# --------------------------------------------------------------------- text and ASC
def test_text_with_a_long_header_and_an_andor_footer(tmp_path):
    wl = np.linspace(900, 950, 50)
    counts = _lorentz_frames(wl, 1)[0]
    body = "".join(f"{float(w)!r}\t{c}\n" for w, c in zip(wl, counts))
    header = "".join(f"Line {k} of the header: value {k}\n" for k in range(12))
    footer = "\n\nDate and Time: Fri Sep 8 15:03:52 2017\nExposure Time (secs):  0.25\n" \
             "Number of Accumulations: 4\nEM Gain level: 300\nSR193i:\n"
    path = tmp_path / "x.asc"
    path.write_text(header + body + footer)
    series = read_spectra(path)
    assert series.format == "asc" and series.n_points == 50
    assert (series.exposure_s, series.accumulations, series.gain) == (0.25, 4, 300.0)
    np.testing.assert_array_equal(series.wavelength_nm, wl)
    plain = tmp_path / "x.txt"
    plain.write_text(header + body)
    assert read_spectra(plain).format == "text" and read_spectra(plain).exposure_s is None


def test_asc_kinetic_columns_are_frames_and_text_extra_columns_ignored(tmp_path):
    wl = np.linspace(900, 950, 40)
    frames = _lorentz_frames(wl, 3)
    rows = "".join(f"{w},{a},{b},{c}\n" for w, a, b, c in zip(wl, *frames))
    (tmp_path / "k.asc").write_text(rows)
    (tmp_path / "k.csv").write_text(rows)
    np.testing.assert_array_equal(read_spectra(tmp_path / "k.asc").counts, frames)
    np.testing.assert_array_equal(read_spectra(tmp_path / "k.csv").counts, frames[:1])


def test_decimal_commas_in_tab_or_semicolon_columns(tmp_path):
    wl = np.linspace(900, 950, 40)
    counts = _lorentz_frames(wl, 1)[0]
    for sep in ("\t", ";"):
        path = tmp_path / "de.asc"
        path.write_text("".join(f"{float(w)!r}{sep}{c}\n".replace(".", ",")
                                for w, c in zip(wl, counts)))
        series = read_spectra(path)
        np.testing.assert_array_equal(series.wavelength_nm, wl)
        np.testing.assert_array_equal(series.counts[0], counts)


@pytest.mark.parametrize("text,fragment", [
    ("h1\nh2\n500,1\n501,2\n502,3\nfooter: x\n503,4\n", "line 6 is not numeric"),
    ("500,1,1\n501,2,2\n502,3\n", "line 3 has 2 columns"),
    ("a\nb\nc\n", "no data rows"),
])
def test_text_refusals_name_the_line(tmp_path, text, fragment):
    path = tmp_path / "bad.asc"
    path.write_text(text)
    with pytest.raises(FileFormatError, match=fragment):
        read_spectra(path)


# --------------------------------------------------------------------- truncated, lying
def _sif_cases(tmp_path: Path) -> dict[str, Path]:
    raw = (DATA / "raman1.sif").read_bytes()
    cases = {}
    for cut in (40, 600, 2000, 3939):  # the pixels of raman1.sif span bytes 2939–7035
        cases[f"sif-cut-{cut}"] = tmp_path / f"cut{cut}.sif"
        cases[f"sif-cut-{cut}"].write_bytes(raw[:cut])
    return cases


def _spe_cases(tmp_path: Path) -> dict[str, Path]:
    wl = np.linspace(900, 950, 200)
    frames = _lorentz_frames(wl, 2)
    good3 = write_spe3(tmp_path / "good3.spe", frames, wl)
    cases = {
        "spe3-frames-lie": write_spe3(tmp_path / "c.spe", frames, wl, count_claim=10**6),
        "spe3-footer-lie": write_spe3(tmp_path / "f.spe", frames, wl,
                                      footer_offset_claim=2**60),
        "spe3-footer-in-header": write_spe3(tmp_path / "h.spe", frames, wl,
                                            footer_offset_claim=100),
        "spe2-frames-lie": write_spe2(tmp_path / "d.spe", frames, (900, 0.25),
                                      frames_claim=2**31 - 1),
        "spe2-xdim-lie": write_spe2(tmp_path / "x.spe", frames, (900, 0.25), xdim_claim=65535),
        "spe2-frames-negative": write_spe2(tmp_path / "n.spe", frames, (900, 0.25),
                                           frames_claim=-5),
    }
    raw = good3.read_bytes()
    for name, data in (("spe3-truncated-footer", raw[:-200]), ("spe-header-only", raw[:3000]),
                       ("spe3-truncated-data", raw[:4100 + 300])):
        cases[name] = tmp_path / f"{name}.spe"
        cases[name].write_bytes(data)
    return cases


def test_truncated_and_lying_binary_files_are_one_line_in_bounded_heap(tmp_path, capsys):
    cases = {**_sif_cases(tmp_path), **_spe_cases(tmp_path)}
    assert len(cases) == 13
    for name, path in cases.items():
        tracemalloc.start()
        with pytest.raises(FileFormatError) as info:
            read_spectra(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        msg = str(info.value)
        assert str(path) in msg and "\n" not in msg, (name, msg)
        assert peak < 50e6, (name, peak)
        code, _, err = _cli(capsys, "analyze", "spectrum", str(path))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (name, err)


def test_format_is_decided_by_content_not_suffix(tmp_path):
    sif = tmp_path / "renamed.txt"
    shutil.copy(DATA / "raman1.sif", sif)
    spe = tmp_path / "renamed.dat"
    shutil.copy(DATA / "one_dimensional_spectrum.spe", spe)
    assert (spectrum_format(sif), spectrum_format(spe)) == ("sif", "spe")
    assert read_spectra(sif).format == "sif" and read_spectra(spe).format == "spe3"


@pytest.mark.parametrize("name,fragment", [
    ("v20.ht2", "legacy HydraHarp file (.ht2, T2 time tags)"),
    ("v10.ht3", "legacy HydraHarp file (.ht3, T3 time tags)"),
])
def test_legacy_picoquant_files_name_format_and_converter(capsys, name, fragment):
    for command in (["analyze", "g2"], ["analyze", "spectrum"], ["replay"]):
        code, _, err = _cli(capsys, *command, str(DATA / name))
        assert code == 2 and err.count("\n") == 1, (command, err)
        assert fragment in err and "save it as PTU" in err, (command, err)
