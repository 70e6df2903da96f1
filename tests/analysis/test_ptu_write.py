"""PTU T2 writer: round trip through ptufile, overflows, errors, atomic write, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import ptufile
import pytest

from micropl.analysis.ptu_write import RECORD_TYPE_HYDRAHARP2_T2, T2_WRAP, write_ptu_t2
from micropl.cli import main
from micropl.errors import AnalysisInputError


def read_photons(path):
    with ptufile.PtuFile(path) as f:
        rec = f.decode_records()
        info = {"syncrate": f.syncrate, "record_type": int(f.record_type),
                "global_resolution": f.global_resolution, "mode": int(f.measurement_mode),
                "number_records": f.number_records, "tags": dict(f.tags)}
    photons = rec["channel"] >= 0
    return rec["time"][photons].astype(np.int64), rec["channel"][photons], info


def test_round_trip_is_exact_including_long_gaps(tmp_path):
    rng = np.random.default_rng(0)
    # dense part, then gaps of many wraps (up to minutes), then dense again
    t = np.concatenate([
        np.sort(rng.integers(0, 10**8, 5000)),
        np.array([3 * T2_WRAP - 1, 3 * T2_WRAP, 200 * T2_WRAP + 5, 10**12, 10**14]),
        10**14 + np.sort(rng.integers(1, 10**10, 5000)),
    ]).astype(np.int64)
    ch = rng.integers(1, 3, t.size).astype(np.uint8)
    path = tmp_path / "a.ptu"
    n_records = write_ptu_t2(path, t, ch, sync_rate_hz=10e6)
    t_read, ch_read, info = read_photons(path)
    assert np.array_equal(t_read, t)
    assert np.array_equal(ch_read.astype(np.int64) + 1, ch)  # field = input − 1
    assert info["syncrate"] == 10_000_000
    assert info["record_type"] == RECORD_TYPE_HYDRAHARP2_T2
    assert info["global_resolution"] == pytest.approx(1e-12)
    assert info["mode"] == 2
    assert info["number_records"] == n_records > t.size  # overflow records were added


def test_resolution_and_header_extra(tmp_path):
    t = np.array([0, 7, 1000, 5 * 10**12], np.int64)
    ch = np.array([1, 2, 1, 2], np.uint8)
    path = tmp_path / "b.ptu"
    write_ptu_t2(path, t, ch, sync_rate_hz=40e6, resolution_ps=4,
                 header_extra={"File_Comment": "hello", "Sample_Temp": 293.0})
    t_read, _, info = read_photons(path)
    assert np.array_equal(t_read, t // 4)
    assert info["global_resolution"] == pytest.approx(4e-12)
    assert info["tags"]["File_Comment"] == "hello"
    assert info["tags"]["Sample_Temp"] == 293.0
    assert info["syncrate"] == 40_000_000


def test_sync_records_and_bit_layout(tmp_path):
    t = np.array([5, 100, T2_WRAP + 7], np.int64)
    ch = np.array([3, 2, 1], np.uint8)
    path = tmp_path / "c.ptu"
    write_ptu_t2(path, t, ch, sync_rate_hz=10e6, sync_channel=3)
    with ptufile.PtuFile(path) as f:
        raw = f.read_records()
    expected = [
        (1 << 31) | 5,                     # sync: special, channel 0
        (1 << 25) | 100,                   # input 2: channel field 1
        (1 << 31) | (63 << 25) | 1,        # one overflow
        7,                                 # input 1: channel field 0
    ]
    assert raw.tolist() == expected


@pytest.mark.parametrize(("t", "ch", "match"), [
    ([5, 3], [1, 1], "sorted"),
    ([-1, 3], [1, 1], "≥ 0"),
    ([1, 3], [0, 1], "inputs 1–64"),
    ([1, 3], [1], "equal length"),
])
def test_bad_input_is_refused(tmp_path, t, ch, match):
    with pytest.raises(AnalysisInputError, match=match):
        write_ptu_t2(tmp_path / "d.ptu", np.array(t), np.array(ch), sync_rate_hz=1e7)
    assert not (tmp_path / "d.ptu").exists()


def test_critical_header_tags_cannot_be_overridden(tmp_path):
    with pytest.raises(AnalysisInputError, match="TTResult_SyncRate"):
        write_ptu_t2(tmp_path / "e.ptu", np.array([1]), np.array([1]), sync_rate_hz=1e7,
                     header_extra={"TTResult_SyncRate": 5})


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "f.ptu"

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_ptu_t2(target, np.arange(100, dtype=np.int64), np.ones(100, np.uint8),
                     sync_rate_hz=1e7)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- CLI
def test_cli_writes_a_ptu_file_ptufile_reads(tmp_path, capsys):
    out = tmp_path / "qd.ptu"
    code = main(["simulate", "tags", "--out", str(out), "--g2-zero", "0.2", "--duration", "2",
                 "--rate-cps", "5e4", "--seed", "4", "--lifetime-ns", "3", "--json"])
    assert code == 0
    truth = json.loads(capsys.readouterr().out)
    assert truth["g2_0"] == 0.2 and truth["seed"] == 4 and truth["rep_rate_hz"] == 1e7
    assert truth["file"] == str(out)
    t, ch, info = read_photons(out)
    assert info["syncrate"] == 10_000_000
    assert t.size == truth["n_tags"]
    assert set(np.unique(ch)) == {0, 1}  # inputs 1 and 2
    rates = np.bincount(ch) / 2.0
    assert np.allclose(rates, 5e4, rtol=0.03)
    assert np.all(np.diff(t) >= 0) and t[-1] < 2e12
    # antibunching: few coincidences in the central peak (delay ≈ 3 ns cable delay)
    t1, t2 = t[ch == 0], t[ch == 1]
    central = (np.searchsorted(t2, t1 + 53_000) - np.searchsorted(t2, t1 - 47_000)).sum()
    side = (np.searchsorted(t2, t1 + 153_000) - np.searchsorted(t2, t1 + 53_000)).sum()
    assert 0.1 < central / side < 0.3


@pytest.mark.parametrize("args", [
    ["--g2-zero", "1.5"],
    ["--g2-zero", "-0.1"],
    ["--duration", "0"],
    ["--rate-cps", "-5"],
    ["--lifetime-ns", "0"],
])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args):
    code = main(["simulate", "tags", "--out", str(tmp_path / "x.ptu"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("micropl: error:") and err.count("\n") == 1
    assert not (tmp_path / "x.ptu").exists()


def test_cli_unwritable_path(tmp_path, capsys):
    code = main(["simulate", "tags", "--out", str(tmp_path / "missing" / "x.ptu")])
    assert code == 2
    assert "does not exist" in capsys.readouterr().err
