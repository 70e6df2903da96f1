"""Compressed session files: lossless tags, old files, SWMR readers, the raw-tags setting."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micropl.acquisition.storage import SessionReader, SessionWriter, schema
from micropl.acquisition.storage.tags import (
    CoincidenceFilter,
    RawTagsStored,
    RawTagStore,
    coincidence_mask,
)
from micropl.analysis.g2 import G2Accumulator
from micropl.records import G2Histogram, Spectrum, TagChunk, Tagged

I64 = np.iinfo(np.int64)


# --------------------------------------------------------------------------- generators
@st.composite
def tag_streams(draw):
    """Sorted int64 tags of both channels, with equal times, huge gaps, int64 extremes."""
    n = draw(st.integers(0, 400))
    gaps = draw(st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2**23),
                                   st.integers(0, 2**62)), min_size=n, max_size=n))
    start = draw(st.one_of(st.just(0), st.integers(I64.min, I64.max)))
    t = (np.int64(start) + np.cumsum(np.array(gaps, dtype=np.uint64)).astype(np.int64)) \
        if n else np.zeros(0, np.int64)  # int64 arithmetic wraps: any int64 sequence
    channel = np.array(draw(st.lists(st.sampled_from([0, 1, 2, 255]), min_size=n,
                                     max_size=n)), dtype=np.uint8)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return t, channel, cuts


def _chunks(t, channel, cuts):
    edges = [0, *cuts, t.shape[0]]
    return [TagChunk(t[a:b], channel[a:b], i, i + 1) for i, (a, b) in
            enumerate(zip(edges[:-1], edges[1:]))]


def _plain_tags(path, qd_id):
    """The recipe of docs/data-format.md: h5py + hdf5plugin, a cumsum per row."""
    with h5py.File(path, "r") as f:
        table = f["tables/tag_chunk"]
        rows = table["rows"][:]
        rows = rows[rows["qd_id"] == qd_id]
        delta = table["t_ps"].attrs.get("codec", "") == "delta-zstd"
        ts, cs = [], []
        for row in rows:
            o, n = row["t_ps_offset"], row["t_ps_size"]
            stored = table["t_ps"][o:o + n]
            ts.append(np.cumsum(stored, dtype=np.int64) if delta else stored)
            o, n = row["channel_offset"], row["channel_size"]
            cs.append(table["channel"][o:o + n])
    return (np.concatenate(ts) if ts else np.zeros(0, np.int64),
            np.concatenate(cs) if cs else np.zeros(0, np.uint8))


# --------------------------------------------------------------------------- round trips
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(stream=tag_streams(), batch=st.integers(1, 4))
def test_compressed_tags_come_back_bit_identical(tmp_path_factory, stream, batch):
    t, channel, cuts = stream
    path = tmp_path_factory.mktemp("rt") / "s.h5"
    chunks = _chunks(t, channel, cuts)
    with SessionWriter.create(path) as w:
        for i in range(0, len(chunks), batch):
            w.append_many([Tagged(c, 0, 7, "g2") for c in chunks[i:i + batch]])
        w.append(Tagged(Spectrum(np.arange(3.0), np.ones(3), 1.0), 0, 7, "accumulated"))
    with SessionReader(path) as r:
        got_t, got_c = r.tags(qd_id=7)
        records = [s.record for s in r.records(TagChunk)]
    assert got_t.dtype == np.int64 and got_c.dtype == np.uint8
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, channel)
    assert [len(c) for c in records] == [len(c) for c in chunks]
    plain_t, plain_c = _plain_tags(path, 7)
    np.testing.assert_array_equal(plain_t, t)
    np.testing.assert_array_equal(plain_c, channel)


def test_tag_columns_are_compressed_with_a_standard_plugin(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(4e6, 65536)).astype(np.int64)
    with SessionWriter.create(path) as w:
        w.append(Tagged(TagChunk(t, rng.integers(1, 3, t.size).astype(np.uint8), 0,
                                 int(t[-1]) + 1), 0, 0, "g2"))
    with h5py.File(path, "r") as f:
        for name, codec in (("t_ps", "delta-zstd"), ("channel", "zstd")):
            ds = f[f"tables/tag_chunk/{name}"]
            assert str(hdf5plugin.BLOSC2_ID) in ds._filters, ds._filters
            assert ds.attrs["codec"] == codec
        assert f.attrs["format_version"] == schema.FORMAT_VERSION == 2
        stored = f["tables/tag_chunk/t_ps"].id.get_storage_size() + \
            f["tables/tag_chunk/channel"].id.get_storage_size()
    # 22 bits of exponential gaps and one bit of channel: about 3 bytes a tag
    assert stored / t.size < 3.5


def test_chunks_are_written_once_records_start_on_chunk_boundaries(tmp_path):
    """Each record of a compressed column starts on a chunk: no chunk is rewritten."""
    path = tmp_path / "s.h5"
    tau = np.linspace(-500.0, 500.0, 100)
    with SessionWriter.create(path) as w:
        for k in range(5):
            w.append_many([Tagged(G2Histogram(tau, np.full(100, k + j), 10.0, 1.0), 0, k)
                           for j in range(k % 2 + 1)])
    with h5py.File(path, "r") as f:
        rows = f["tables/g2_histogram/rows"][:]
        counts = f["tables/g2_histogram/counts"]
        assert counts.attrs["codec"] == "zstd"
        assert np.all(rows["counts_offset"] % counts.chunks[0] == 0)
        assert counts.id.get_num_chunks() == len(rows)
    with SessionReader(path) as r:
        got = [int(s.record.counts[0]) for s in r.records(G2Histogram)]
    assert got == [0, 1, 2, 2, 3, 4, 4]


# --------------------------------------------------------------------------- old files
def _make_version1_file(path, t, channel):
    """A file in the layout of format version 1: plain datasets, contiguous offsets."""
    specs = []
    for spec in schema.registered_tables():
        cols = tuple(schema.Column(**{**c.to_dict(), "codec": "", "chunk": 0})
                     for c in spec.columns)
        specs.append(schema.TableSpec(spec.name, spec.type_name, cols, spec.default_kind,
                                      spec.own_ids, spec.record_type))
    with SessionWriter.create(path, tables=specs) as w:
        half = t.size // 2
        w.append_many([Tagged(TagChunk(t[:half], channel[:half], 0, 10), 0, 1, "g2"),
                       Tagged(TagChunk(t[half:], channel[half:], 10, 20), 0, 1, "g2")])
        w.append(Tagged(Spectrum(np.arange(4.0), np.arange(4.0) * 2, 1.0), 0, 1,
                        "accumulated"))
    with h5py.File(path, "r+") as f:  # as version 1 wrote them: no codec anywhere
        f.attrs["format_version"] = 1
        for group in f["tables"].values():
            data = json.loads(group.attrs["schema"])
            for col in data["columns"]:
                del col["codec"]
            group.attrs["schema"] = json.dumps(data)
            for ds in group.values():
                assert not ds._filters


def test_version1_file_still_reads_and_resumes_in_its_layout(tmp_path):
    path = tmp_path / "old.h5"
    rng = np.random.default_rng(5)
    t = np.sort(rng.integers(0, 2**40, 1000))
    channel = rng.integers(1, 3, 1000).astype(np.uint8)
    _make_version1_file(path, t, channel)
    with SessionReader(path) as r:
        got_t, got_c = r.tags()
        spectrum = r.records(Spectrum)[0].record
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_c, channel)
    np.testing.assert_array_equal(spectrum.counts, np.arange(4.0) * 2)
    with SessionWriter.resume(path) as w:  # the old layout goes on: rows stay valid
        w.append(Tagged(TagChunk(t[:3] + 2**41, channel[:3], 20, 30), 0, 2, "g2"))
    with SessionReader(path) as r:
        np.testing.assert_array_equal(r.tags(qd_id=1)[0], t)
        np.testing.assert_array_equal(r.tags(qd_id=2)[0], t[:3] + 2**41)
    with h5py.File(path, "r") as f:
        assert not f["tables/tag_chunk/t_ps"]._filters


def test_compressed_file_resumes_bit_identical(tmp_path):
    path = tmp_path / "s.h5"
    rng = np.random.default_rng(6)
    t = np.cumsum(rng.integers(0, 10**7, 200_000)).astype(np.int64)
    c = rng.integers(1, 3, t.size).astype(np.uint8)
    with SessionWriter.create(path) as w:
        w.append_many([Tagged(TagChunk(t[:70_000], c[:70_000], 0, 1), 0, 1, "g2"),
                       Tagged(TagChunk(t[70_000:], c[70_000:], 1, 2), 0, 1, "g2")])
    with SessionWriter.resume(path) as w:
        w.append(Tagged(TagChunk(t[:5], c[:5], 2, 3), 0, 2, "g2"))
    with SessionReader(path) as r:
        np.testing.assert_array_equal(r.tags(qd_id=1)[0], t)
        np.testing.assert_array_equal(r.tags(qd_id=1)[1], c)
        np.testing.assert_array_equal(r.tags(qd_id=2)[0], t[:5])
    with h5py.File(path, "r") as f:
        assert str(hdf5plugin.BLOSC2_ID) in f["tables/tag_chunk/t_ps"]._filters


# --------------------------------------------------------------------------- SWMR
_SWMR_READER = textwrap.dedent("""
    import hashlib, sys, time
    from micropl.acquisition.storage import SessionReader
    path, want = sys.argv[1], int(sys.argv[2])
    deadline = time.monotonic() + 120
    with SessionReader(path) as r:
        while r.n_rows("tag_chunk") < want:
            if time.monotonic() > deadline:
                sys.exit("timed out")
            time.sleep(0.05)
            r.refresh()
        t, c = r.tags()
        print(t.size, hashlib.sha256(t.tobytes() + c.tobytes()).hexdigest())
        sys.stdout.flush()
        sys.stdin.read()
""")


def test_swmr_reader_sees_compressed_tags_while_they_are_written(tmp_path):
    import hashlib

    path = tmp_path / "s.h5"
    rng = np.random.default_rng(8)
    t = np.cumsum(rng.integers(0, 10**6, 3 * 65536)).astype(np.int64)
    c = rng.integers(1, 3, t.size).astype(np.uint8)
    parts = np.array_split(np.arange(t.size), 3)
    with SessionWriter.create(path) as w:
        w.append(Tagged(TagChunk(t[parts[0]], c[parts[0]], 0, 1), 0, 0, "g2"))
        w.append(Tagged(TagChunk(t[parts[1]], c[parts[1]], 1, 2), 0, 0, "g2"))
        reader = subprocess.Popen([sys.executable, "-c", _SWMR_READER, str(path), "2"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = reader.stdout.readline().split()
            assert reader.poll() is None  # the writer still holds the file
            w.append(Tagged(TagChunk(t[parts[2]], c[parts[2]], 2, 3), 0, 0, "g2"))
        finally:
            reader.communicate("", timeout=60)
    n = parts[0].size + parts[1].size
    assert line == [str(n), hashlib.sha256(t[:n].tobytes() + c[:n].tobytes()).hexdigest()]


# --------------------------------------------------------------------------- around-peaks
def _brute_force_keep(t, channel, a, b, window_ps, span_ps):
    """Every tag of a pair (a, b) with t_b - t_a in [-window, -window + span), by all pairs."""
    delay = t[None, :] - t[:, None]  # [i, j]: t_j - t_i, every pair
    pair = (channel[:, None] == a) & (channel[None, :] == b) & \
        (delay >= -window_ps) & (delay < span_ps - window_ps)
    return pair.any(axis=1) | pair.any(axis=0) | ((channel != a) & (channel != b))


@st.composite
def hbt_streams(draw):
    n = draw(st.integers(0, 120))
    gaps = draw(st.lists(st.one_of(st.integers(0, 2), st.integers(0, 400),
                                   st.integers(0, 5000)), min_size=n, max_size=n))
    t = np.cumsum(np.array(gaps, dtype=np.int64)) if n else np.zeros(0, np.int64)
    channel = np.array(draw(st.lists(st.sampled_from([1, 2, 2, 1, 3]), min_size=n,
                                     max_size=n)), dtype=np.uint8)
    window = draw(st.integers(1, 600))
    span = window + draw(st.integers(1, 900))
    n_cut = draw(st.integers(0, 8))
    stops = sorted(set(draw(st.lists(st.integers(0, int(t[-1]) + 1 if n else 1),
                                     min_size=n_cut, max_size=n_cut))))
    return t, channel, window, span, stops


def _stream_chunks(t, channel, stops):
    end = int(t[-1]) + 1 if t.size else 1
    edges = [0, *[s for s in stops if 0 < s < end], end]
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (t >= lo) & (t < hi)
        out.append(TagChunk(t[sel], channel[sel], lo, hi))
    return out


@settings(max_examples=120, deadline=None)
@given(stream=hbt_streams(), chunk_tags=st.sampled_from([3, 16, 65536]))
def test_around_peaks_keeps_exactly_the_tags_a_pair_search_keeps(stream, chunk_tags):
    t, channel, window, span, stops = stream
    want = _brute_force_keep(t, channel, 1, 2, window, span)
    np.testing.assert_array_equal(coincidence_mask(t, channel, 1, 2, window, span) |
                                  ((channel != 1) & (channel != 2)), want)
    store = RawTagStore("around-peaks", channels=(1, 2), window_ps=window, span_ps=span,
                        chunk_tags=chunk_tags)
    items = [Tagged(c, 0, 4, "g2") for c in _stream_chunks(t, channel, stops)]
    out = store.process(items) + store.close()
    chunks = [i.record for i in out if isinstance(i.record, TagChunk)]
    summary = [i.record for i in out if isinstance(i.record, RawTagsStored)]
    got_t = np.concatenate([c.t_ps for c in chunks]) if chunks else np.zeros(0, np.int64)
    np.testing.assert_array_equal(got_t, t[want])
    np.testing.assert_array_equal(np.concatenate([c.channel for c in chunks]) if chunks
                                  else np.zeros(0, np.uint8), channel[want])
    # whole chunks (a record cut only between different timestamps)
    assert all(len(c) <= chunk_tags or np.all(c.t_ps == c.t_ps[0]) for c in chunks)
    # the stored records still tile the stream's interval
    assert all(a.t_stop_ps == b.t_start_ps for a, b in zip(chunks, chunks[1:]))
    assert len(summary) == 1
    s = summary[0]
    assert (s.mode, s.n_tags, s.n_stored, s.n_dropped) == \
        ("around-peaks", t.size, int(want.sum()), int((~want).sum()))


def test_around_peaks_leaves_the_g2_histogram_unchanged():
    rng = np.random.default_rng(11)
    period = 12_500
    n = 40_000
    pulses = np.sort(rng.choice(4_000_000, n, replace=False))
    t = pulses * period + rng.integers(0, 800, n)
    t.sort()
    channel = rng.integers(1, 3, n).astype(np.uint8)
    bin_ps, window = 64, 3 * period
    store = RawTagStore("around-peaks", channels=(1, 2), window_ps=window,
                        span_ps=-(-2 * window // bin_ps) * bin_ps)
    chunks = _stream_chunks(t, channel, list(range(0, int(t[-1]), 10**9)))
    out = store.process([Tagged(c, 0, 0, "g2") for c in chunks]) + store.close()
    full, thin = G2Accumulator(bin_ps, window), G2Accumulator(bin_ps, window)
    for c in chunks:
        full.add_chunk(c)
    kept = [i.record for i in out if isinstance(i.record, TagChunk)]
    for c in kept:
        thin.add_chunk(c)
    np.testing.assert_array_equal(full.counts, thin.counts)
    assert full.counts.sum() > 200
    stored = sum(len(c) for c in kept)
    assert 0 < stored < n // 2  # sparse stream: most tags pair with nothing


def test_coincidence_filter_refuses_a_window_without_zero():
    with pytest.raises(ValueError, match="must contain 0"):
        CoincidenceFilter(1, 2, 100, 100)


@pytest.mark.parametrize("mode", ["all", "none", "around-peaks"])
def test_the_file_records_the_raw_tags_setting(tmp_path, mode):
    rng = np.random.default_rng(2)
    t = np.sort(rng.integers(0, 10**9, 5000))
    c = rng.integers(1, 3, t.size).astype(np.uint8)
    store = RawTagStore(mode, channels=(1, 2), window_ps=10_000, span_ps=20_000,
                        chunk_tags=1024)
    chunks = _stream_chunks(t, c, list(range(0, 10**9, 10**7)))
    path = tmp_path / "s.h5"
    with SessionWriter.create(path) as w:
        w.append_many(store.process([Tagged(ch, 0, 3, "g2") for ch in chunks]))
        w.append_many(store.process([Tagged(TagChunk(t[:10], c[:10], 0, 10**9), 0, 3,
                                            "trpl")]))
        w.append_many(store.close())
    with SessionReader(path) as r:
        rows = r.records("raw_tags_stored")
        stored_t, _ = r.tags(kind="g2")
        trpl_t, _ = r.tags(kind="trpl")
    assert [(x.kind, x.qd_id, x.record.mode) for x in rows] == \
        [("g2", 3, mode), ("trpl", 3, "none" if mode == "none" else "all")]
    g2 = rows[0].record
    assert g2.n_tags == t.size and g2.n_stored == stored_t.size
    assert g2.n_dropped == t.size - stored_t.size
    want = {"all": t.size, "none": 0,
            "around-peaks": int(coincidence_mask(t, c, 1, 2, 10_000, 20_000).sum())}[mode]
    assert stored_t.size == want
    assert trpl_t.size == (0 if mode == "none" else 10)  # only g² streams are thinned
    if mode == "around-peaks":
        assert (g2.window_ps, g2.span_ps, g2.channel_a, g2.channel_b) == (10_000, 20_000, 1, 2)
        assert 0 < want < t.size


def test_tags_are_gathered_into_whole_chunks_and_held_no_longer_than_max_hold():
    now = [0.0]
    store = RawTagStore("all", chunk_tags=100, max_hold_s=2.0, clock=lambda: now[0])
    t = np.arange(1000, dtype=np.int64)
    c = np.ones(1000, np.uint8)
    pieces = [TagChunk(t[i:i + 30], c[i:i + 30], i, i + 30) for i in range(0, 300, 30)]
    out = store.process([Tagged(p, 0, 0, "g2") for p in pieces])
    assert [len(i.record) for i in out] == [100, 100, 100]
    out = store.process([Tagged(TagChunk(t[300:310], c[300:310], 300, 310), 0, 0, "g2")])
    assert out == []  # held
    now[0] = 2.5
    out = store.process([Tagged(TagChunk(t[310:320], c[310:320], 310, 320), 0, 0, "g2")])
    assert [len(i.record) for i in out] == [20]
    assert [type(i.record).__name__ for i in store.close()] == ["RawTagsStored"]


def test_raw_tags_setting_is_checked():
    with pytest.raises(ValueError, match="raw_tags: 'some' is not one of"):
        RawTagStore("some")


def test_cli_raw_tags_option_is_recorded_in_the_file(tmp_path):
    """``--raw-tags none`` on a fast g² run: no tag stored, the setting and count recorded."""
    path = tmp_path / "g2.h5"
    proc = subprocess.run([sys.executable, "-m", "micropl", "g2", "--fast", "--json",
                           "--raw-tags", "none", "--out", str(path), "--param",
                           "duration_s=0.3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr  # 1: no QD under the laser, no g²
    assert "Traceback" not in proc.stderr
    with SessionReader(path) as r:
        rows = r.records("raw_tags_stored")
        assert r.tags()[0].size == 0
    assert [(x.kind, x.record.mode) for x in rows] == [("g2", "none")]
    assert rows[0].record.n_tags == rows[0].record.n_dropped > 0
