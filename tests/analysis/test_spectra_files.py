"""read_spectrum_file: delimiters, headers, bad input, and the real cryogenic QD spectra."""

import numpy as np
import pytest

from micropl.analysis.spectra import fit_spectra, main_line_roi_nm
from micropl.analysis.spectrum_files import read_spectrum_file
from micropl.errors import AnalysisInputError, FileFormatError

ROWS = [(500.0, 10.0), (500.5, 12.0), (501.0, 30.0), (501.5, 11.0)]


@pytest.mark.parametrize("sep,header", [(",", ""), ("\t", ""), ("  ", ""),
                                        (",", "wavelength_nm,counts\n"),
                                        ("\t", "# exported\nlambda\tI\n")])
def test_delimiters_and_headers(tmp_path, sep, header):
    path = tmp_path / "s.txt"
    path.write_text(header + "".join(f"{w}{sep}{c}\n" for w, c in ROWS))
    wl, counts = read_spectrum_file(path)
    assert np.allclose(wl, [r[0] for r in ROWS]) and np.allclose(counts, [r[1] for r in ROWS])


def test_descending_file_is_returned_ascending(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{w},{c}\n" for w, c in reversed(ROWS)))
    wl, counts = read_spectrum_file(path)
    assert np.all(np.diff(wl) > 0) and counts[2] == 30.0


@pytest.mark.parametrize("text,fragment", [
    ("", "no data rows"),
    ("wavelength,counts\n", "no data rows"),
    ("500\n501\n502\n", "one column"),
    ("500,1\n501,abc\n502,3\n", "not numeric"),
    ("hello world\nthis is not a spectrum\n", "not numeric"),
    ("500,1\n501,nan\n502,3\n", "non-finite"),
    ("500,0\n501,0\n502,0\n", "all counts are zero"),
    ("500,1\n502,2\n501,3\n", "monotonic"),
    ("500,1\n501,2\n", "at least 3"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(FileFormatError) as info:
        read_spectrum_file(path)
    msg = str(info.value)
    assert fragment in msg and str(path) in msg and "\n" not in msg
    assert isinstance(info.value, AnalysisInputError)


def test_binary_and_missing(tmp_path):
    path = tmp_path / "b.bin"
    path.write_bytes(b"\xff\xfe\x00\x81" * 20)
    with pytest.raises(FileFormatError, match="not a text file"):
        read_spectrum_file(path)
    with pytest.raises(FileNotFoundError):
        read_spectrum_file(tmp_path / "missing.txt")


def test_real_cryogenic_spectra_read_and_fit(shared_data):
    files = sorted((shared_data / "sps-quality").glob("spectrum_*.tsv"))
    assert len(files) >= 2
    for path in files:
        wl, counts = read_spectrum_file(path)
        assert wl.size >= 50 and np.all(np.diff(wl) > 0) and counts.max() > 1000
        roi = main_line_roi_nm(wl, counts)
        fit = fit_spectra(wl, counts, noise_factor=None, roi_nm=roi)
        assert fit.success, (path.name, fit.message)
        assert bool(fit.errors_scaled)
        assert 0.0 < float(fit.fwhm_mev) < 1.0           # cryogenic line: ≈0.1–0.3 meV
        assert wl.min() < float(fit.peak_wavelength_nm) < wl.max()
        # the fitted line sits on the strongest data point (within two points)
        step = np.median(np.diff(wl))
        assert abs(float(fit.peak_wavelength_nm) - wl[np.argmax(counts)]) < 2 * step
        for name in ("peak_energy_err_ev", "fwhm_err_mev", "area_err", "background_err"):
            err = float(getattr(fit, name))
            assert np.isfinite(err) and err > 0
        assert float(fit.fwhm_err_mev) < float(fit.fwhm_mev)
