"""``micropl analyze g2`` in-process: PTU and histogram files, JSON, plot, bad input."""

import json

import numpy as np
import pytest
from test_g2_pulsed import simulate_hbt_tags
from test_tags_ptu import encode_hh2, ptu_bytes

from micropl.cli import main


@pytest.fixture(scope="module")
def ptu_file(tmp_path_factory):
    rng = np.random.default_rng(21)
    t1, t2 = simulate_hbt_tags(rng, g2_0=0.15, lifetime_ps=3_000, n_pulses=6_000_000,
                               click_prob=5e-3)
    t2 = t2 + 3_000  # cable delay
    events = [(int(t), "photon", 1) for t in t1 if t >= 0]
    events += [(int(t), "photon", 2) for t in t2 if t >= 0]
    events += [(int(t), "photon", 4) for t in t1[::50] if t >= 0]
    path = tmp_path_factory.mktemp("ptu") / "hbt.ptu"
    path.write_bytes(ptu_bytes(encode_hh2(events), resolution_s=1e-12, sync_rate=10_000_000))
    return path


def run(capsys, *args):
    code = main(["analyze", "g2", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ptu_json(ptu_file, capsys, tmp_path):
    png = tmp_path / "g2.png"
    code, out, err = run(capsys, ptu_file, "--json", "--plot", png)
    assert code == 0, err
    assert out.count("\n") == 1
    res = json.loads(out)
    for key in ("g2_0", "g2_0_err", "rep_rate_hz", "delay_ps", "n_side", "central_counts",
                "side_mean_counts", "n_tags", "duration_s", "g2_0_bgcorr", "g2_0_bgcorr_err",
                "file", "bin_ps"):
        assert key in res
    assert res["rep_rate_hz"] == 10_000_000 and res["period_source"] == "header"
    assert abs(res["g2_0"] - 0.15) < 4 * res["g2_0_err"]
    assert res["delay_ps"] == pytest.approx(3_000, abs=500)
    assert res["n_tags"] > 50_000 and res["duration_s"] == pytest.approx(0.6, rel=0.01)
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_ptu_human_output_and_options(ptu_file, capsys):
    code, out, err = run(capsys, ptu_file, "--rep-rate", "1e7", "--n-side", "4",
                         "--bin-ps", "128", "--window-ps", "500000")
    assert code == 0, err
    assert "g2(0) = " in out and "MHz" in out and "ns" in out
    assert "bin: 128.0 ps" in out


def test_missing_channel(ptu_file, capsys):
    code, out, err = run(capsys, ptu_file, "--channels", "1", "3")
    assert code == 2
    assert err.count("\n") == 1 and "channel 3" in err and "1, 2, 4" in err


def test_histogram_file(shared_data, capsys):
    f = shared_data / "sps-quality" / "g2_pulsed80MHz_10uW_12000cps.tsv"
    code, out, err = run(capsys, f, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert 0.6 < res["g2_0"] < 0.8 and res["g2_0_err"] > 0
    assert res["rep_rate_hz"] == pytest.approx(80e6, rel=0.003)
    assert res["delay_ps"] == pytest.approx(61_000, abs=1_000)


@pytest.mark.parametrize("content", [b"", b"PQTTTR\0\0" + b"\0" * 30, b"\x89PNG\r\n" + b"x" * 99])
def test_bad_files_exit_2(tmp_path, capsys, content):
    p = tmp_path / "bad.ptu"
    p.write_bytes(content)
    code, out, err = run(capsys, p)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and str(p) in err


def test_histogram_without_peaks_and_missing_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    p = tmp_path / "flat.csv"
    p.write_text("delay_ps,counts\n" + "\n".join(f"{64 * i},{rng.poisson(30)}"
                                                  for i in range(3000)))
    code, out, err = run(capsys, p)
    assert code == 2 and "no periodic peaks" in err and err.count("\n") == 1
    code, out, err = run(capsys, tmp_path / "none.ptu")
    assert code == 2 and "no such file" in err
