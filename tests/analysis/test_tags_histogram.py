"""Histogram text files: delimiters, headers, units, snapshots, bad input."""

import numpy as np
import pytest

from micropl.analysis.tags import read_histogram_file
from micropl.errors import FileFormatError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_two_columns_comma_with_ps_header(tmp_path):
    p = write(tmp_path, "h.csv", "delay_ps,counts\n-128,5\n-64,7\n0,1\n64,9\n")
    h = read_histogram_file(p)
    np.testing.assert_array_equal(h.tau_ps, [-128, -64, 0, 64])
    np.testing.assert_array_equal(h.counts, [5, 7, 1, 9])
    assert (h.delay_unit, h.unit_source, h.n_snapshots) == ("ps", "header", 1)


def test_ns_header_tab_delimited(tmp_path):
    p = write(tmp_path, "h.tsv", "delay_ns\tcounts\n0\t3\n2\t4\n4\t5\n")
    h = read_histogram_file(p)
    np.testing.assert_array_equal(h.tau_ps, [0, 2000, 4000])
    assert h.delay_unit == "ns"


def test_headerless_whitespace_unit_inference_and_override(tmp_path):
    # integer delays 1 ps apart over a long span: ps
    lines = "\n".join(f"{d}  {d % 7}" for d in range(0, 100_000, 64))
    h = read_histogram_file(write(tmp_path, "ps.txt", lines))
    assert h.delay_unit == "ps" and h.unit_source == "inferred"
    # fractional spacing cannot be ps
    h = read_histogram_file(write(tmp_path, "ns.txt", "0 1\n0.256 2\n0.512 3\n# comment\n"))
    assert h.delay_unit == "ns"
    np.testing.assert_allclose(h.tau_ps, [0, 256, 512])
    h = read_histogram_file(write(tmp_path, "ns2.txt", "0 1\n0.256 2\n0.512 3\n"),
                            delay_unit="ps")
    assert h.delay_unit == "ps" and h.unit_source == "user"
    np.testing.assert_allclose(h.tau_ps, [0, 0.256, 0.512])


def test_snapshot_columns_are_summed(tmp_path):
    p = write(tmp_path, "snap.tsv", "0\t1\t2\t3\n0.5\t0\t0\t1\n1.0\t4\t4\t4\n")
    h = read_histogram_file(p)
    np.testing.assert_array_equal(h.counts, [6, 1, 12])
    assert h.n_snapshots == 3


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("delay_ps,counts\n", "no data|fewer than 3"),
    ("1\n2\n3\n", "1 column"),
    ("0,1\n1,2\n1,3\n", "increasing"),
    ("0,1\n1,-2\n2,3\n", "negative"),
    ("0,1\n1,abc\n2,3\n", "non-numeric"),
    ("0,1\n1,2,3\n2,3\n", "columns"),
    ("0,1\n1,nan\n2,3\n", "NaN"),
])
def test_bad_histogram_files(tmp_path, text, match):
    p = write(tmp_path, "bad.csv", text)
    with pytest.raises(FileFormatError, match=match) as info:
        read_histogram_file(p)
    assert str(p) in str(info.value)


def test_binary_and_missing(tmp_path):
    p = tmp_path / "b.dat"
    p.write_bytes(b"\x00\x01\x02garbage" * 50)
    with pytest.raises(FileFormatError, match="binary"):
        read_histogram_file(p)
    with pytest.raises(FileFormatError, match="no such file"):
        read_histogram_file(tmp_path / "missing.tsv")


def test_real_sps_quality_files(shared_data):
    for name, n_cols in (("g2_pulsed80MHz_10uW_12000cps.tsv", 121),
                         ("g2_pulsed80MHz_30uW_7000cps.tsv", 478)):
        h = read_histogram_file(shared_data / "sps-quality" / name)
        assert h.delay_unit == "ns" and h.unit_source == "inferred"
        assert h.n_snapshots == n_cols
        assert h.tau_ps[0] == 0 and h.tau_ps[-1] == pytest.approx(499_968)
        assert np.diff(h.tau_ps) == pytest.approx(256)
        assert h.counts.sum() > 40_000
