"""Time tags and histograms a lab already has: PTU T3, PicoQuant PHU, rows, .ttbin.

T3 and PHU files are written by ``lab_writers`` (independently of micropl's readers)
and read by ``ptufile`` as the independent reader; the g² of a T3 file is compared
with a brute-force pair count of the photons' absolute times written in this test,
and its lifetime with the generator's truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from lab_writers import HH1T3, HH2T3, PHT3, write_phu, write_t3

from micropl.analysis.formats.histograms import read_histogram
from micropl.analysis.formats.phu import read_phu
from micropl.analysis.formats.t3 import correlate_t3_stream, iter_ptu_t3, read_t3_header
from micropl.analysis.g2 import pulsed_g2, pulsed_window_ps
from micropl.analysis.g2_files import MAX_PAIRS, MAX_TAIL_TAGS
from micropl.cli import main
from micropl.errors import FileFormatError

PERIOD_PS = 12_500  # 80 MHz
RES_PS = 16
TAU_PS = 800.0


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip().startswith("{") else None), out.err


def _source(seed: int = 5, n_pulses: int = 4_000_000, p_one: float = 0.05,
            p_two: float = 1e-4, n_dark: int = 4000):
    """A pulsed single-photon source on a beam splitter, as T3 (nsync, dtime, channel).

    Each pulse gives one photon (to channel 1 or 2) with probability ``p_one``, two
    (one per channel) with ``p_two``; delays ``2 ns + Exp(τ) + N(0, 40 ps)`` folded into
    the period; dark counts uniform on both channels.
    """
    rng = np.random.default_rng(seed)
    u = rng.random(n_pulses)
    one = np.flatnonzero(u < p_one)
    two = np.flatnonzero((u >= p_one) & (u < p_one + p_two))
    pulse = np.concatenate([one, two, two, rng.integers(0, n_pulses, n_dark)])
    chan = np.concatenate([rng.integers(1, 3, one.size), np.ones(two.size, int),
                           np.full(two.size, 2), rng.integers(1, 3, n_dark)])
    delay = 2000 + rng.exponential(TAU_PS, pulse.size) + rng.normal(0, 40, pulse.size)
    delay[-n_dark:] = rng.uniform(0, PERIOD_PS, n_dark)
    t_abs = pulse * PERIOD_PS + np.clip(delay, 0, None)
    nsync = (t_abs // PERIOD_PS).astype(np.int64)
    dtime = ((t_abs - nsync * PERIOD_PS) // RES_PS).astype(np.int64)
    order = np.lexsort((dtime, nsync))
    return nsync[order], dtime[order], chan[order]


@pytest.fixture(scope="module")
def t3_file(tmp_path_factory):
    nsync, dtime, chan = _source()
    path = tmp_path_factory.mktemp("t3") / "qd.ptu"
    write_t3(path, nsync, dtime, chan, period_s=PERIOD_PS * 1e-12, resolution_s=RES_PS * 1e-12)
    return path, nsync, dtime, chan


# --------------------------------------------------------------------- T3 codec
@pytest.mark.parametrize("record_type", [HH2T3, HH1T3, PHT3])
def test_t3_records_decode_as_ptufile_decodes_them(tmp_path, record_type):
    ptufile = pytest.importorskip("ptufile")
    rng = np.random.default_rng(record_type & 0xFF)
    nsync = np.sort(rng.integers(0, 3_000_000, 5000))  # thousands of overflows
    dtime = rng.integers(0, 700, nsync.size)
    chan = rng.integers(1, 5 if record_type == PHT3 else 9, nsync.size)
    path = write_t3(tmp_path / "r.ptu", nsync, dtime, chan, period_s=12.5e-9,
                    resolution_s=16e-12, record_type=record_type)
    with ptufile.PtuFile(path) as f:
        ref = f.decode_records()
    ref = ref[ref["channel"] >= 0]
    header, timing = read_t3_header(path)
    blocks = list(iter_ptu_t3(header, block_records=777))  # the sync count spans blocks
    got_sync = np.concatenate([b.nsync for b in blocks])
    got_dtime = np.concatenate([b.dtime for b in blocks])
    got_chan = np.concatenate([b.channel for b in blocks])
    np.testing.assert_array_equal(got_sync, ref["time"])
    np.testing.assert_array_equal(got_dtime, ref["dtime"])
    np.testing.assert_array_equal(got_chan, ref["channel"].astype(int) + 1)
    np.testing.assert_array_equal(got_sync, nsync)  # and the generator's truth
    assert timing.period_ps == pytest.approx(12_500) and timing.resolution_ps == pytest.approx(16)


def _brute_force_histogram(t_a, t_b, centres, bin_ps):
    """Every pair's delay t_b − t_a, histogrammed on the same bins (independent)."""
    half = bin_ps / 2
    lo_edge, hi_edge = centres[0] - half, centres[-1] + half
    lo = np.searchsorted(t_b, t_a + lo_edge, side="left")
    hi = np.searchsorted(t_b, t_a + hi_edge, side="left")
    n = hi - lo
    idx = np.repeat(np.arange(t_a.size), n)
    offs = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    delays = t_b[lo[idx] + offs] - t_a[idx]
    edges = np.concatenate([centres - half, [hi_edge]])
    return np.histogram(delays, bins=edges)[0]


def test_t3_g2_equals_brute_force_and_lifetime_matches_truth(t3_file, capsys):
    path, nsync, dtime, chan = t3_file
    t_abs = nsync * PERIOD_PS + dtime * RES_PS
    t_a, t_b = np.sort(t_abs[chan == 1]), np.sort(t_abs[chan == 2])
    header, timing = read_t3_header(path)
    window = pulsed_window_ps(80e6, 5, 64)  # what the command line uses
    acc, _, _ = correlate_t3_stream(header, timing, 1, 2, 64, window,
                                    max_pairs=MAX_PAIRS, max_tail=MAX_TAIL_TAGS)
    tau, counts = acc.result()
    np.testing.assert_array_equal(counts, _brute_force_histogram(t_a, t_b, tau, 64))
    code, out, err = _cli(capsys, "analyze", "g2", path, "--json")
    assert code == 0, err
    ref = pulsed_g2(tau, _brute_force_histogram(t_a, t_b, tau, 64), rep_rate_hz=80e6, n_side=5)
    assert out["format"] == "ptu-t3" and out["n_points"] == tau.size
    assert out["g2_0"] == pytest.approx(ref.g2_0, rel=1e-12)
    assert out["rep_rate_hz"] == pytest.approx(80e6)
    assert out["exposure_s"] == pytest.approx(nsync[-1] * PERIOD_PS * 1e-12)
    assert abs(out["lifetime_ns"] - TAU_PS / 1e3) < 4 * out["lifetime_err_ns"]
    assert 0 < out["lifetime_err_ns"] < 0.02
    assert out["g2_0"] < 0.3  # antibunched: two-photon pulses only


def test_t3_refusals_are_one_line(tmp_path, capsys):
    nsync, dtime, chan = np.arange(0, 1000, 3), np.full(334, 10), np.tile([1, 2], 167)
    cases = {
        "truncated": write_t3(tmp_path / "t.ptu", nsync, dtime, chan, period_s=12.5e-9,
                              resolution_s=16e-12, n_records=10_000),
        "image": write_t3(tmp_path / "i.ptu", nsync, dtime, chan, period_s=12.5e-9,
                          resolution_s=16e-12, sub_mode=3),
        "resolution-above-period": write_t3(tmp_path / "r.ptu", nsync, dtime, chan,
                                            period_s=12.5e-9, resolution_s=1e-6),
    }
    for name, path in cases.items():
        code, _, err = _cli(capsys, "analyze", "g2", path)
        assert code == 2 and err.count("\n") == 1 and str(path) in err, (name, err)
        with pytest.raises(FileFormatError):
            read_t3_header(path)
    for name in ("truncated", "image"):  # replay refuses them in one line too
        code, _, err = _cli(capsys, "replay", cases[name], "--out", tmp_path / f"{name}.h5")
        assert code == 2 and err.count("\n") == 1 and str(cases[name]) in err, (name, err)


# --------------------------------------------------------------------- PHU and rows
def _hbt_counts(seed: int, n_bins: int = 4096, bin_ps: float = 64.0, g2_0: float = 0.15):
    """A pulsed HBT histogram: two-sided exponential peaks every period, Poisson."""
    rng = np.random.default_rng(seed)
    tau = np.arange(n_bins) * bin_ps
    d0 = tau[n_bins // 2]
    k = np.round((tau - d0) / PERIOD_PS)
    shape = np.exp(-np.abs(tau - d0 - k * PERIOD_PS) / 900.0) * np.where(k == 0, g2_0, 1.0)
    return rng.poisson(400 * shape + 2).astype(np.uint32)


def test_phu_curves_equal_ptufile_and_give_the_text_files_g2(tmp_path, capsys):
    ptufile = pytest.importorskip("ptufile")
    curves = [_hbt_counts(1), _hbt_counts(2, n_bins=2048)]
    path = write_phu(tmp_path / "h.phu", curves, resolution_s=64e-12, acquisition_ms=30_000)
    with ptufile.PhuFile(path) as f:
        ref = f.histograms()
    for k in (0, 1):
        np.testing.assert_array_equal(read_phu(path, k).counts, ref[k])
    code, _, err = _cli(capsys, "analyze", "g2", path)
    assert code == 2 and "2 curves; choose one with --curve 0..1" in err
    code, out, _ = _cli(capsys, "analyze", "g2", path, "--curve", "0", "--rep-rate", "80e6",
                        "--json")
    assert code == 0 and out["format"] == "phu" and out["n_points"] == 4096
    assert out["exposure_s"] == 30.0 and out["bin_ps"] == 64.0
    text = tmp_path / "h.csv"
    text.write_text("delay_ps,counts\n" + "".join(
        f"{k * 64},{c}\n" for k, c in enumerate(curves[0])))
    _, ref_out, _ = _cli(capsys, "analyze", "g2", text, "--rep-rate", "80e6", "--json")
    assert ref_out["format"] == "text"
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "delay_ps"):
        assert out[key] == ref_out[key], key


@pytest.mark.parametrize("lie", ["bins", "offset", "cut"])
def test_lying_or_truncated_phu_is_one_line(tmp_path, capsys, lie):
    curve = _hbt_counts(3, n_bins=1024)
    if lie == "bins":
        path = write_phu(tmp_path / "l.phu", [curve], bins_claim=[1 << 30])
    elif lie == "offset":
        path = write_phu(tmp_path / "l.phu", [curve], offset_shift=1 << 40)
    else:
        path = write_phu(tmp_path / "l.phu", [curve])
        path.write_bytes(path.read_bytes()[:-1000])
    code, _, err = _cli(capsys, "analyze", "g2", path, "--rep-rate", "80e6")
    assert code == 2 and err.count("\n") == 1 and str(path) in err, err
    code, _, err = _cli(capsys, "replay", path)
    assert code == 2 and "PHU" in err


@pytest.mark.parametrize("style", ["labels-ns", "fitmydata", "tabs-ps", "decimal-comma"])
def test_histogram_in_rows_equals_columns(tmp_path, capsys, style):
    counts = _hbt_counts(4, n_bins=1024, bin_ps=128.0)
    delay_ns = (np.arange(counts.size) - 512) * 0.128
    columns = tmp_path / "c.csv"
    columns.write_text("delay_ns,counts\n" + "".join(
        f"{float(d)!r},{c}\n" for d, c in zip(delay_ns, counts)))
    rows = tmp_path / "r.txt"
    if style == "labels-ns":
        rows.write_text("delay_ns," + ",".join(repr(float(d)) for d in delay_ns) + "\n"
                        "counts," + ",".join(str(c) for c in counts) + "\n")
    elif style == "fitmydata":
        rows.write_text("# FitMyData export\n" + " ".join(repr(float(d)) for d in delay_ns)
                        + "\n" + " ".join(str(c) for c in counts) + "\n")
    elif style == "decimal-comma":
        rows.write_text("\t".join(repr(float(d)).replace(".", ",") for d in delay_ns) + "\n"
                        + "\t".join(str(c) for c in counts) + "\n")
    else:
        rows.write_text("tau_ps\t" + "\t".join(str(int(round(d * 1000))) for d in delay_ns)
                        + "\ncounts\t" + "\t".join(str(c) for c in counts) + "\n")
    hist, info = read_histogram(rows)
    assert info["format"] == "text-rows" and info["n_points"] == counts.size
    np.testing.assert_allclose(hist.tau_ps, delay_ns * 1000, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(hist.counts, counts)
    _, ref, _ = _cli(capsys, "analyze", "g2", columns, "--rep-rate", "80e6", "--json")
    for hint in ([], ["--layout", "rows"]):
        _, out, _ = _cli(capsys, "analyze", "g2", rows, "--rep-rate", "80e6", "--json", *hint)
        assert out["format"] == "text-rows"
        assert out["g2_0"] == pytest.approx(ref["g2_0"], rel=1e-12)
    code, _, err = _cli(capsys, "analyze", "g2", rows, "--layout", "columns")
    assert code == 2 and err.count("\n") == 1


def test_ttbin_without_the_vendor_extra_names_it(tmp_path, capsys):
    from micropl.analysis.formats.legacy import swabian_available

    if swabian_available():
        pytest.skip("the Swabian TimeTagger module is installed here")
    path = tmp_path / "run.ttbin"
    path.write_bytes(b"\x00" * 256)
    code, _, err = _cli(capsys, "analyze", "g2", path, "--rep-rate", "80e6")
    assert code == 2 and err.count("\n") == 1
    assert "Swabian .ttbin" in err and "pip install 'micropl[swabian]'" in err
    code, _, err = _cli(capsys, "analyze", "spectrum", path)
    assert code == 2 and "Swabian .ttbin" in err


def test_real_histogram_written_in_rows_gives_the_columns_g2(shared_data, tmp_path, capsys):
    """A real HBT measurement (snapshots in columns) re-laid out as FitMyData rows."""
    from micropl.analysis.tags import read_histogram_file

    src = shared_data / "sps-quality" / "g2_pulsed80MHz_10uW_12000cps.tsv"
    hist = read_histogram_file(src)
    rows = tmp_path / "rows.txt"
    rows.write_text(" ".join(repr(float(t / 1000)) for t in hist.tau_ps) + "\n"
                    + " ".join(str(int(c)) for c in hist.counts)
                    + "\n")
    _, ref, _ = _cli(capsys, "analyze", "g2", src, "--rep-rate", "80e6", "--json")
    _, out, _ = _cli(capsys, "analyze", "g2", rows, "--rep-rate", "80e6", "--json")
    assert (ref["format"], out["format"]) == ("text", "text-rows")
    assert out["n_points"] == ref["n_points"] == hist.tau_ps.size
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
        assert out[key] == pytest.approx(ref[key], rel=1e-12), key


def test_ttbin_through_a_stand_in_vendor_reader(tmp_path, capsys, monkeypatch):
    """The .ttbin path with a stand-in ``TimeTagger.FileReader`` (the vendor API): the
    g² equals that of the same tags in a PTU file; overflow records are not tags."""
    import sys
    import types

    from ptu_writer import write_t2

    nsync, dtime, chan = _source(n_pulses=400_000)
    t = nsync * PERIOD_PS + dtime * RES_PS
    kinds = np.zeros(t.size, dtype=np.int8)
    t_all = np.concatenate([t, [t[-1] // 2]])
    ch_all = np.concatenate([chan, [1]])
    kind_all = np.concatenate([kinds, [2]])  # an overflow-begin record, not a photon
    order = np.argsort(t_all, kind="stable")

    class Buffer:
        def __init__(self, sl):
            self.sl = sl

        def getTimestamps(self):
            return t_all[order][self.sl]

        def getChannels(self):
            return ch_all[order][self.sl]

        def getEventTypes(self):
            return kind_all[order][self.sl]

    class FileReader:
        def __init__(self, name):
            assert name == str(path)
            self.at = 0

        def hasData(self):
            return self.at < t_all.size

        def getData(self, n):
            sl = slice(self.at, min(self.at + 5000, self.at + int(n)))
            self.at = sl.stop
            return Buffer(sl)

    monkeypatch.setitem(sys.modules, "TimeTagger", types.SimpleNamespace(FileReader=FileReader))
    path = tmp_path / "run.ttbin"
    path.write_bytes(b"stand-in")
    code, out, err = _cli(capsys, "analyze", "g2", path, "--rep-rate", "80e6", "--json")
    assert code == 0 and out["format"] == "ttbin", err
    ptu = write_t2(tmp_path / "same.ptu", t, chan, sync_rate_hz=80_000_000)
    _, ref, _ = _cli(capsys, "analyze", "g2", ptu, "--json")
    assert out["n_tags_a"] + out["n_tags_b"] == t.size
    for key in ("g2_0", "g2_0_err", "n_points"):
        assert out[key] == ref[key], key


def test_replay_of_a_t3_file_gives_what_analyze_g2_gives(tmp_path, capsys):
    """Replay serves a T3 file's photons on their absolute times; its JSON (g², lifetime)
    is analyze g2's, and the stored tags are the generator's absolute times."""
    from micropl.acquisition.storage import SessionReader

    nsync, dtime, chan = _source(n_pulses=800_000)
    path = write_t3(tmp_path / "qd.ptu", nsync, dtime, chan, period_s=PERIOD_PS * 1e-12,
                    resolution_s=RES_PS * 1e-12)
    code, analyzed, err = _cli(capsys, "analyze", "g2", path, "--json")
    assert code == 0, err
    out = tmp_path / "replayed.h5"
    code, replayed, err = _cli(capsys, "replay", path, "--json", "--out", out)
    assert code == 0, err
    assert replayed == analyzed
    assert replayed["format"] == "ptu-t3" and "lifetime_ns" in replayed
    t_abs = nsync * PERIOD_PS + dtime * RES_PS
    with SessionReader(out) as reader:
        tags, channels = reader.tags(kind="g2")
    order = np.lexsort((chan, t_abs))
    np.testing.assert_array_equal(np.sort(tags), np.sort(t_abs))
    assert np.array_equal(np.bincount(channels), np.bincount(chan[order]))


def test_t3_tags_in_memory_are_sorted_across_blocks(tmp_path, monkeypatch):
    """Blocks of 101 records: photons of one sync period straddle the block boundaries
    out of order; the tags come out sorted and equal to the generator's."""
    import micropl.analysis.formats.t3 as t3

    rng = np.random.default_rng(8)
    nsync = np.repeat(np.arange(0, 40_000, 9), 3)  # three photons per sync period
    dtime = rng.integers(0, 700, nsync.size)  # in record order, not time order
    chan = rng.integers(1, 3, nsync.size)
    path = write_t3(tmp_path / "s.ptu", nsync, dtime, chan, period_s=12.5e-9,
                    resolution_s=16e-12)
    real_iter = t3.iter_ptu_t3
    monkeypatch.setattr(t3, "iter_ptu_t3", lambda h: real_iter(h, block_records=101))
    data = t3.read_ptu_t3_tags(path)
    t_abs = nsync * 12_500 + dtime * 16
    assert np.all(np.diff(data.t_ps) >= 0)
    order = np.lexsort((chan, t_abs))
    np.testing.assert_array_equal(data.t_ps, t_abs[order])
    got = np.lexsort((data.channel, data.t_ps))
    np.testing.assert_array_equal(data.channel[got], chan[order])
