"""The HBT photon/tag generator against independent references computed here.

g² areas come from a brute-force numpy pair counter (searchsorted over the
delays within ±period/2 of each peak), not from micropl's analysis.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from micropl.simulators import hbt
from micropl.simulators.hbt import DetectorModel, simulate_constant_emitters

PERIOD_PS = 100_000
IDEAL = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.0, crosstalk_probability=0.0)


def pair_delays(t_a: np.ndarray, t_b: np.ndarray, lo_ps: float, hi_ps: float) -> np.ndarray:
    """All delays t_b − t_a within [lo_ps, hi_ps) (brute force over sorted arrays)."""
    start = np.searchsorted(t_b, t_a + lo_ps, side="left")
    stop = np.searchsorted(t_b, t_a + hi_ps, side="left")
    n = stop - start
    if n.sum() == 0:
        return np.zeros(0)
    rep_a = np.repeat(t_a, n)
    idx = np.repeat(start - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(n.sum())
    return (t_b[idx] - rep_a).astype(np.float64)


def peak_areas(t_ps, ch, center_ps, n_side=5, period_ps=PERIOD_PS):
    """Central area and side-peak areas of the APD1×APD2 cross-correlation."""
    t1 = t_ps[ch == 0]
    t2 = t_ps[ch == 1]
    areas = {}
    for k in range(-n_side, n_side + 1):
        c = center_ps + k * period_ps
        lo = np.searchsorted(t2, t1 + c - period_ps / 2)
        hi = np.searchsorted(t2, t1 + c + period_ps / 2)
        areas[k] = int((hi - lo).sum())
    central = areas[0]
    sides = np.array([areas[k] for k in areas if k != 0], float)
    return central, sides


def g2_ratio(t_ps, ch, center_ps):
    c, s = peak_areas(t_ps, ch, center_ps)
    g = c / s.mean()
    return g, g * math.sqrt(1 / c + 1 / s.sum())


# --------------------------------------------------------------------------- photon statistics
def test_photon_number_probabilities_give_g2_exactly():
    d = np.array([1e-4, 0.01, 0.1, 0.3])
    g = np.array([0.0, 0.2, 0.5, 1.0])
    p1, p2 = hbt.photon_number_probabilities(d, g)
    mean_n = p1 + 2 * p2
    assert np.allclose(mean_n, 2 * d)
    assert np.allclose(2 * p2 / mean_n**2, g)  # E[N(N-1)] / E[N]^2
    assert np.all(p1 + p2 <= 1) and np.all(p1 >= 0)


def test_normal_quantile_matches_scipy():
    p = np.concatenate([np.linspace(1e-9, 0.03, 500), np.linspace(0.02, 0.98, 2000),
                        1 - np.linspace(1e-9, 0.03, 500)])
    ours = np.array([hbt._normal_ppf(x) for x in p])
    assert np.allclose(ours, stats.norm.ppf(p), rtol=2e-9, atol=1e-9)


# --------------------------------------------------------------------------- g2
def test_single_qd_g2_matches_truth_within_3_sigma():
    g2_true = 0.2
    t, c = simulate_constant_emitters(20.0, [1e5], [g2_true], [5.0], detectors=IDEAL, seed=11)
    g, err = g2_ratio(t, c, IDEAL.channel_delay_ps)
    assert abs(g - g2_true) < 3 * err, (g, err)
    # the rates are the asked ones (dead time costs only a tiny fraction)
    rate = np.bincount(c) / 20.0
    assert np.allclose(rate, 1e5, rtol=0.01)


@pytest.mark.parametrize(("g2s", "expected"), [((0.0, 0.0), 0.5), ((1.0,), 1.0)])
def test_several_emitters_add(g2s, expected):
    m = len(g2s)
    t, c = simulate_constant_emitters(5.0, [5e4] * m, list(g2s), [4.0] * m, detectors=IDEAL,
                                      seed=5)
    g, err = g2_ratio(t, c, IDEAL.channel_delay_ps)
    assert abs(g - expected) < 3 * err + 1e-3, (g, err)


def test_central_peak_sits_at_the_channel_delay():
    det = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.0, channel_delay_ps=5200)
    t, c = simulate_constant_emitters(10.0, [1e5], [0.3], [3.0], detectors=det, seed=3)
    delays = pair_delays(t[c == 0], t[c == 1], -PERIOD_PS / 2, PERIOD_PS / 2)
    assert delays.size > 1000
    mean = delays.mean()
    assert abs(mean - 5200) < 3 * delays.std() / math.sqrt(delays.size) + 1.0


@pytest.mark.parametrize("lifetime_ns", [0.01, 2.0])
def test_peak_width_is_lifetime_convolved_with_jitter(lifetime_ns):
    det = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.0, jitter_fwhm_ps=350.0)
    t, c = simulate_constant_emitters(5.0, [1e5], [0.0], [lifetime_ns], detectors=det, seed=9)
    t1, t2 = t[c == 0], t[c == 1]
    var = []
    for k in (1, 2, 3, -1, -2, -3):
        center = det.channel_delay_ps + k * PERIOD_PS
        d = pair_delays(t1, t2, center - PERIOD_PS / 2, center + PERIOD_PS / 2) - center
        var.append(d.var())
    sigma = 350.0 / (2 * math.sqrt(2 * math.log(2)))
    tau = lifetime_ns * 1e3
    # side peak: difference of two independent Exp(tau) + N(0, sigma) delays
    expected = 2 * tau**2 + 2 * sigma**2
    assert abs(np.mean(var) / expected - 1) < 0.06, (np.mean(var), expected)


# --------------------------------------------------------------------------- detectors
def test_dark_counts_with_laser_off():
    det = DetectorModel(dark_cps=(150.0, 400.0), afterpulse_probability=0.0)
    stream = hbt.HbtStream(det, seed=2)
    out = stream.advance(int(20e12), hbt.Emitters.none(), 0, 0.0)
    counts = out.counts[:2]
    for n, rate in zip(counts, det.dark_cps):
        expected = rate * 20.0
        assert abs(n - expected) < 3.5 * math.sqrt(expected), (n, expected)
    assert out.counts[2] == 0


def _poisson_stream(rate_cps, duration_s, det, seed=4, read_s=None):
    """Uncorrelated light only (background at ``rate_cps`` per APD)."""
    stream = hbt.HbtStream(det, seed=seed)
    step = duration_s if read_s is None else read_s
    ts, cs = [], []
    t = 0.0
    while t < duration_s - 1e-15:
        t = min(duration_s, t + step)
        out = stream.advance(int(round(t * 1e12)), hbt.Emitters.none(), PERIOD_PS, rate_cps)
        ts.append(out.t_ps)
        cs.append(out.channel)
    return np.concatenate(ts), np.concatenate(cs), stream


def test_dead_time_is_respected_and_non_paralysable():
    det = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.01)
    rate = 5e6
    t, c, stream = _poisson_stream(rate, 0.2, det, read_s=0.0137)
    for a in (0, 1):
        ta = t[c == a]
        assert np.diff(ta).min() >= det.dead_time_ps
    # without afterpulses the counted rate follows R / (1 + R tau)
    det0 = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.0)
    t, c, stream = _poisson_stream(rate, 0.2, det0)
    tau_s = det0.dead_time_ps * 1e-12
    expected = rate / (1 + rate * tau_s) * 0.2
    for a in (0, 1):
        n = int((c == a).sum())
        assert abs(n - expected) < 4 * math.sqrt(expected), (n, expected)
        assert n < 0.95 * rate * 0.2  # really reduced (≈ 10 %)
    lost = stream.dead_time_losses
    assert abs(sum(lost) + (c < 2).sum() - 2 * rate * 0.2) < 4 * math.sqrt(2 * rate * 0.2)


def test_afterpulses_show_in_the_autocorrelation():
    p_ap, mean_ns = 0.05, 100.0
    det = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=p_ap,
                        afterpulse_delay_ps=mean_ns * 1e3)
    rate, duration = 1e5, 2.0
    t, c, _ = _poisson_stream(rate, duration, det, seed=6)
    t1 = t[c == 0]
    lo, hi = det.dead_time_ps, 1_000_000
    pairs = pair_delays(t1, t1, lo, hi)
    n1 = t1.size
    measured_rate = n1 / duration
    accidental = n1 * measured_rate * (hi - lo) * 1e-12
    expected_ap = n1 * p_ap * (math.exp(-lo / (mean_ns * 1e3)) - math.exp(-hi / (mean_ns * 1e3)))
    excess = pairs.size - accidental
    assert abs(excess - expected_ap) < 4 * math.sqrt(pairs.size), (excess, expected_ap)
    # and they decay with the afterpulse time constant: excess mostly below 300 ns
    early = pair_delays(t1, t1, lo, 300_000).size - n1 * measured_rate * (300_000 - lo) * 1e-12
    assert early > 0.8 * excess


def test_crosstalk_peaks_at_channel_delay_plus_minus_delay():
    det = DetectorModel(dark_cps=(0.0, 0.0), afterpulse_probability=0.0,
                        crosstalk_probability=0.05, crosstalk_delay_ps=30_000,
                        channel_delay_ps=3000)
    t, c, _ = _poisson_stream(1e5, 1.0, det, seed=8)
    t1, t2 = t[c == 0], t[c == 1]
    d = pair_delays(t1, t2, -60_000, 60_000)
    hist, edges = np.histogram(d, bins=np.arange(-60_000, 60_001, 2000))
    centers = (edges[:-1] + edges[1:]) / 2
    top2 = np.sort(centers[np.argsort(hist)[-2:]])
    assert np.allclose(top2, [3000 - 30_000, 3000 + 30_000], atol=2000)
    n_each = 0.05 * 1e5  # counted detections per APD per s × probability
    peak = hist.max() - np.median(hist)
    assert 0.8 * n_each < peak < 1.2 * n_each


# --------------------------------------------------------------------------- determinism
def test_same_seed_same_tags_and_chunking_invariance():
    det = DetectorModel(afterpulse_probability=0.02, crosstalk_probability=0.01)
    kw = dict(detectors=det, seed=21, background_cps_per_apd=2e3, sync_divider=16)
    a = simulate_constant_emitters(0.3, [2e5, 5e4], [0.1, 0.4], [5.0, 8.0], **kw)
    b = simulate_constant_emitters(0.3, [2e5, 5e4], [0.1, 0.4], [5.0, 8.0], **kw)
    c = simulate_constant_emitters(0.3, [2e5, 5e4], [0.1, 0.4], [5.0, 8.0], read_s=0.00731,
                                   **kw)
    d = simulate_constant_emitters(0.3, [2e5, 5e4], [0.1, 0.4], [5.0, 8.0],
                                   **{**kw, "seed": 22})
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1])
    assert not np.array_equal(a[0][:100], d[0][:100])
    assert np.all(np.diff(a[0]) >= 0)
    assert a[0].dtype == np.int64 and a[1].dtype == np.uint8
    # sync tags: every 16th pulse
    sync = a[0][a[1] == 2]
    assert np.all(np.diff(sync) == 16 * PERIOD_PS)


def test_reads_tile_time_and_hold_late_tags():
    det = DetectorModel(afterpulse_probability=0.05)
    stream = hbt.HbtStream(det, seed=1)
    span = stream.block_span_ps(int(0.05e12))
    em = hbt.Emitters(np.array([0]), np.array([0.05]), np.array([0.2]), np.array([5000.0]),
                      np.array([span[0]]), np.array([span[1]]), np.array([0, 1]))
    t = 0
    last = {0: -(10**18), 1: -(10**18)}
    for step in np.random.default_rng(0).integers(1, 200_000, 400):
        out = stream.advance(t + int(step) * 100 + 37, em, PERIOD_PS, 0.0)
        assert out.t_start_ps == t
        assert np.all(out.t_ps >= out.t_start_ps) and np.all(out.t_ps < out.t_stop_ps)
        for a in (0, 1):
            ta = out.t_ps[out.channel == a]
            if ta.size:
                assert ta[0] - last[a] >= det.dead_time_ps
                assert np.all(np.diff(ta) >= det.dead_time_ps)
                last[a] = ta[-1]
        t = out.t_stop_ps
