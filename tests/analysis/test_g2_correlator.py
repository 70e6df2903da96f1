"""cross_correlate and G2Accumulator against an O(N·M) brute force."""

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micropl.analysis.g2 import G2Accumulator, cross_correlate, histogram_bins
from micropl.errors import AnalysisInputError


def brute_force(t1, t2, bin_ps, window_ps):
    """Every pair delay, binned by plain numpy: the independent reference."""
    n_bins = -(-2 * window_ps // bin_ps)
    d = (np.asarray(t2, dtype=np.int64)[None, :] - np.asarray(t1, dtype=np.int64)[:, None]).ravel()
    d = d[(d >= -window_ps) & (d < -window_ps + n_bins * bin_ps)]
    edges = -window_ps + bin_ps * np.arange(n_bins + 1)
    counts, _ = np.histogram(d, bins=edges)  # half-open [e_k, e_k+1), last closed: see below
    # np.histogram closes the last bin on the right; d == last edge was already excluded.
    return counts.astype(np.int64)


def clustered(rng, n_clusters, per_cluster, spread_ps, span_ps):
    centres = rng.integers(0, span_ps, n_clusters)
    t = (centres[:, None] + rng.integers(0, spread_ps, (n_clusters, per_cluster))).ravel()
    return np.sort(t).astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_streams_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    t1 = np.sort(rng.integers(-500_000, 2_000_000, 700))
    t2 = np.sort(rng.integers(-500_000, 2_000_000, 500))
    tau, counts = cross_correlate(t1, t2, 100, 60_000)
    ref = brute_force(t1, t2, 100, 60_000)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, ref)
    assert counts.sum() > 0
    np.testing.assert_allclose(tau[:2], [-60_000 + 50, -60_000 + 150])


def test_clustered_data_with_duplicates_and_negative_delays():
    rng = np.random.default_rng(5)
    t1 = clustered(rng, 40, 12, 3_000, 1_000_000)
    t2 = clustered(rng, 40, 12, 3_000, 1_000_000)
    # exact duplicates inside a stream and between the streams
    t1 = np.sort(np.concatenate([t1, t1[:30], t2[:20]]))
    t2 = np.sort(np.concatenate([t2, t2[5:25], t1[:10]]))
    tau, counts = cross_correlate(t1, t2, 7, 5_000)
    np.testing.assert_array_equal(counts, brute_force(t1, t2, 7, 5_000))
    zero_bin = np.searchsorted(tau, 0.0)  # bin [0, 7)
    assert counts[zero_bin] >= 30  # duplicates between the streams give d = 0 pairs
    assert counts[: len(counts) // 2].sum() > 0  # negative delays populated


def test_window_not_multiple_of_bin_extends_last_bin():
    n_bins, span = histogram_bins(64, 550_000)
    assert n_bins == 17188 and span == 17188 * 64 >= 1_100_000
    t1 = np.array([0], dtype=np.int64)
    # delays -550000 (first bin), 549999 (last bin), 550000+63 (still last bin: extended)
    t2 = np.array([-550_000, 549_999, 550_031, 550_032], dtype=np.int64)
    tau, counts = cross_correlate(t1, t2, 64, 550_000)
    assert counts.size == n_bins
    assert counts[0] == 1 and counts[-1] == 2 and counts.sum() == 3
    np.testing.assert_array_equal(counts, brute_force(t1, t2, 64, 550_000))


def test_empty_inputs():
    e = np.zeros(0, dtype=np.int64)
    t = np.array([1, 2, 3], dtype=np.int64)
    for a, b in ((e, t), (t, e), (e, e)):
        tau, counts = cross_correlate(a, b, 10, 100)
        assert counts.shape == (20,) and counts.sum() == 0


def test_bad_input_raises():
    with pytest.raises(AnalysisInputError, match="sorted"):
        cross_correlate(np.array([3, 1]), np.array([1, 2]), 10, 100)
    with pytest.raises(AnalysisInputError):
        cross_correlate(np.array([1.5]), np.array([1]), 10, 100)
    with pytest.raises(AnalysisInputError):
        cross_correlate(np.array([1]), np.array([1]), 0, 100)


@dataclass(frozen=True)
class FakeChunk:
    """Stands in for drivers.interfaces.TagChunk (analysis must not import drivers)."""

    t_ps: np.ndarray
    channel: np.ndarray
    t_start_ps: int
    t_stop_ps: int


def _chunks_by_time(t, ch, cuts):
    bounds = [int(t.min()) - 1, *sorted(cuts), int(t.max()) + 1]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        sel = (t >= lo) & (t < hi)
        yield FakeChunk(t[sel], ch[sel], lo, hi)


def test_accumulator_with_tag_chunks_matches_one_shot():
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 5_000_000, 4000)).astype(np.int64)
    ch = rng.choice(np.array([1, 2, 3], dtype=np.uint8), t.size)
    acc = G2Accumulator(50, 20_000)
    cuts = rng.integers(0, 5_000_000, 60)
    for chunk in _chunks_by_time(t, ch, cuts):
        acc.add_chunk(chunk)
    tau, ref = cross_correlate(t[ch == 1], t[ch == 2], 50, 20_000)
    np.testing.assert_array_equal(acc.counts, ref)
    np.testing.assert_array_equal(acc.tau_ps, tau)
    assert acc.n_tags_a == np.count_nonzero(ch == 1)
    # tails stay bounded: roughly one window of tags, not the whole history
    assert acc._tail_a.size < 200 and acc._tail_b.size < 200


def test_accumulator_tail_bounded_when_one_channel_silent():
    acc = G2Accumulator(100, 10_000)
    for k in range(50):
        t = np.arange(k * 1_000_000, (k + 1) * 1_000_000, 1000, dtype=np.int64)
        acc.add_chunk(FakeChunk(t, np.full(t.size, 2, np.uint8), k * 1_000_000,
                                (k + 1) * 1_000_000))
    assert acc._tail_b.size <= 12
    assert acc.counts.sum() == 0


def test_accumulator_rejects_out_of_order_chunks():
    acc = G2Accumulator(10, 100)
    acc.add_arrays(np.array([100, 200]), np.array([150]))
    with pytest.raises(AnalysisInputError, match="earlier"):
        acc.add_arrays(np.array([50]), np.array([], dtype=np.int64))


tags = st.lists(st.integers(0, 3_000), max_size=60).map(lambda v: np.sort(np.array(v, np.int64)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t1=tags, t2=tags, bin_ps=st.integers(1, 90), window_ps=st.integers(1, 700),
       data=st.data())
def test_property_one_shot_equals_brute_force_and_incremental(t1, t2, bin_ps, window_ps, data):
    tau, one_shot = cross_correlate(t1, t2, bin_ps, window_ps)
    np.testing.assert_array_equal(one_shot, brute_force(t1, t2, bin_ps, window_ps))

    # Arbitrary per-channel splits into the same number of chunks (channels may
    # interleave in any way between chunks, as long as each is in order).
    n_chunks = data.draw(st.integers(1, 8))
    s1 = sorted(data.draw(st.lists(st.integers(0, len(t1)), min_size=n_chunks - 1,
                                   max_size=n_chunks - 1)))
    s2 = sorted(data.draw(st.lists(st.integers(0, len(t2)), min_size=n_chunks - 1,
                                   max_size=n_chunks - 1)))
    acc = G2Accumulator(bin_ps, window_ps)
    for a, b in zip(np.split(t1, s1), np.split(t2, s2)):
        acc.add_arrays(a, b)
    np.testing.assert_array_equal(acc.counts, one_shot)


@settings(max_examples=80, deadline=None)
@given(t=st.lists(st.tuples(st.integers(0, 5_000), st.sampled_from([1, 2, 4])), max_size=120),
       cuts=st.lists(st.integers(0, 5_000), max_size=10), bin_ps=st.integers(1, 50),
       window_ps=st.integers(1, 400))
def test_property_time_cut_chunks_with_t_stop(t, cuts, bin_ps, window_ps):
    arr = np.array(sorted(t), dtype=np.int64).reshape(-1, 2)
    times, ch = arr[:, 0], arr[:, 1].astype(np.uint8)
    acc = G2Accumulator(bin_ps, window_ps)
    if times.size:
        for chunk in _chunks_by_time(times, ch, cuts):
            acc.add_chunk(chunk)
    _, ref = cross_correlate(times[ch == 1], times[ch == 2], bin_ps, window_ps)
    np.testing.assert_array_equal(acc.counts, ref)


@pytest.mark.parametrize("bin_ps, window_ps", [(10, 100), (7, 100), (1, 1)])
def test_accumulator_pairs_at_the_exact_window_edges_across_chunks(bin_ps, window_ps):
    _, span = histogram_bins(bin_ps, window_ps)
    # delay exactly -W between an old b tag and a new a tag equal to the last a tag
    acc = G2Accumulator(bin_ps, window_ps)
    acc.add_arrays(np.array([1000]), np.array([1000 - window_ps]))
    acc.add_arrays(np.array([1000]), np.array([], dtype=np.int64))
    _, ref = cross_correlate([1000, 1000], [1000 - window_ps], bin_ps, window_ps)
    np.testing.assert_array_equal(acc.counts, ref)
    assert acc.counts[0] == 2
    # delay span - 1 (the last bin) between an old a tag and a new duplicate b tag
    acc = G2Accumulator(bin_ps, window_ps)
    last = 1000 - window_ps + span - 1
    acc.add_arrays(np.array([1000]), np.array([last]))
    acc.add_arrays(np.array([], dtype=np.int64), np.array([last]))
    _, ref = cross_correlate([1000], [last, last], bin_ps, window_ps)
    np.testing.assert_array_equal(acc.counts, ref)
    assert acc.counts[-1] == 2


dense = st.lists(st.integers(0, 40), max_size=25).map(lambda v: np.sort(np.array(v, np.int64)))


@settings(max_examples=300, deadline=None)
@given(t1=dense, t2=dense, bin_ps=st.integers(1, 6), window_ps=st.integers(1, 12),
       data=st.data())
def test_property_dense_duplicates_incremental(t1, t2, bin_ps, window_ps, data):
    """Few distinct times, many duplicates: pairs sit on the window edges often."""
    _, ref = cross_correlate(t1, t2, bin_ps, window_ps)
    np.testing.assert_array_equal(ref, brute_force(t1, t2, bin_ps, window_ps))
    n_chunks = data.draw(st.integers(1, 6))
    s1 = sorted(data.draw(st.lists(st.integers(0, len(t1)), min_size=n_chunks - 1,
                                   max_size=n_chunks - 1)))
    s2 = sorted(data.draw(st.lists(st.integers(0, len(t2)), min_size=n_chunks - 1,
                                   max_size=n_chunks - 1)))
    acc = G2Accumulator(bin_ps, window_ps)
    for a, b in zip(np.split(t1, s1), np.split(t2, s2)):
        acc.add_arrays(a, b)
    np.testing.assert_array_equal(acc.counts, ref)
