"""Tests for micropl.analysis.blinking with simulated telegraph (on/off) emitters."""

from __future__ import annotations

import numpy as np
import pytest

from micropl.analysis.blinking import (
    delays_after_sync_ps,
    fit_durations,
    flid,
    intensity_histogram,
    intensity_trace,
    on_off_durations,
    two_level_threshold,
)
from micropl.errors import AnalysisInputError

PERIOD_PS = 100_000


def telegraph(rng, duration_s, tau_on_s, tau_off_s, rate_on_hz=40e3, rate_off_hz=2e3):
    """Photon times (ps) of a two-state emitter with exponential on/off dwell times.

    Returns the sorted photon times, the state of each photon (True = on) and the list of
    (start_s, stop_s, is_on) intervals.
    """
    intervals = []
    t = 0.0
    on = bool(rng.random() < tau_on_s / (tau_on_s + tau_off_s))
    while t < duration_s:
        d = rng.exponential(tau_on_s if on else tau_off_s)
        intervals.append((t, min(t + d, duration_s), on))
        t += d
        on = not on
    times, states = [], []
    for a, b, is_on in intervals:
        n = rng.poisson((rate_on_hz if is_on else rate_off_hz) * (b - a))
        times.append(rng.uniform(a, b, n))
        states.append(np.full(n, is_on))
    times = np.concatenate(times)
    states = np.concatenate(states)
    order = np.argsort(times)
    return (times[order] * 1e12).astype(np.int64), states[order], intervals


def test_intensity_trace_matches_numpy_histogram():
    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 10**12, 50_000)).astype(np.int64)  # 1 s
    t_s, counts = intensity_trace(t, 0.01, t_start_ps=0, t_stop_ps=10**12)
    ref, _ = np.histogram(t, bins=np.arange(0, 10**12 + 1, 10**10))
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_allclose(t_s[:2], [0.005, 0.015])
    # default interval: first photon to last, partial last bin dropped
    t_s2, c2 = intensity_trace(t, 0.003)
    assert c2.size == int((t[-1] + 1 - t[0]) // 3e9)
    assert c2.sum() <= t.size
    centre, occ = intensity_histogram(counts)
    assert occ.sum() == counts.size
    assert centre[np.argmax(occ)] == pytest.approx(500, abs=40)


def test_telegraph_threshold_and_mean_durations():
    rng = np.random.default_rng(42)
    tau_on, tau_off, bin_s = 0.06, 0.04, 0.001
    t_ps, _, intervals = telegraph(rng, 120.0, tau_on, tau_off)
    trace = intensity_trace(t_ps, bin_s, t_start_ps=0, t_stop_ps=int(120e12))
    levels = two_level_threshold(trace[1])
    assert levels.success, levels.reason
    assert levels.on_level_counts == pytest.approx(40.0, rel=0.03)
    assert levels.off_level_counts == pytest.approx(2.0, rel=0.1)
    assert levels.off_level_counts < levels.threshold_counts < levels.on_level_counts
    assert levels.on_fraction == pytest.approx(tau_on / (tau_on + tau_off), abs=0.05)
    on_s, off_s = on_off_durations(trace, levels.threshold_counts)
    # ground truth: complete intervals in the simulation
    true_on = np.array([b - a for a, b, s in intervals[1:-1] if s])
    true_off = np.array([b - a for a, b, s in intervals[1:-1] if not s])
    assert abs(on_s.size - true_on.size) < 0.1 * true_on.size
    assert abs(off_s.size - true_off.size) < 0.1 * true_off.size
    for measured, tau in ((on_s, tau_on), (off_s, tau_off)):
        err = tau / np.sqrt(measured.size)  # statistical error of an exponential mean
        assert abs(measured.mean() - tau) < 3 * err + bin_s
        fit = fit_durations(measured, bin_s, model="exponential")
        assert fit.success
        assert abs(fit.tau_s - tau) < 3 * fit.tau_err_s + bin_s
        assert fit.tau_err_s == pytest.approx(err, rel=0.2)


def test_first_and_last_truncated_periods_are_dropped():
    t_s = np.arange(10) * 0.01
    counts = np.array([50, 50, 1, 1, 1, 50, 50, 50, 1, 1])
    on_s, off_s = on_off_durations((t_s, counts), 20)
    np.testing.assert_allclose(on_s, [0.03])
    np.testing.assert_allclose(off_s, [0.03])


def test_threshold_fails_without_blinking():
    rng = np.random.default_rng(1)
    fit = two_level_threshold(rng.poisson(30.0, 5000))
    assert not fit.success
    assert fit.reason != "ok"


def test_duration_fits_exponential_and_power_law():
    rng = np.random.default_rng(5)
    bin_s = 0.001
    # exponential: durations of whole bins from a continuous exponential (≥ 1 bin)
    pulls = []
    for _ in range(20):
        d = np.ceil(rng.exponential(0.02, 400) / bin_s) * bin_s
        fit = fit_durations(d, bin_s)
        # ceil of Exp(τ) is geometric with the same τ
        pulls.append((fit.tau_s - 0.02) / fit.tau_err_s)
    assert 0.6 < np.std(pulls) < 1.4 and abs(np.mean(pulls)) < 0.6
    # power law: sample the discrete distribution k^-α, k >= 1, by inverse CDF
    alpha = 1.7
    k = np.arange(1, 200_001)
    p = k**-alpha
    cdf = np.cumsum(p) / p.sum()
    pulls = []
    for _ in range(20):
        samples = k[np.searchsorted(cdf, rng.random(500))]
        fit = fit_durations(samples * bin_s, bin_s, model="power_law")
        assert fit.success, fit.reason
        pulls.append((fit.alpha - alpha) / fit.alpha_err)
    assert 0.6 < np.std(pulls) < 1.4 and abs(np.mean(pulls)) < 0.6
    few = fit_durations(np.array([0.001, 0.002]), bin_s)
    assert not few.success


def test_flid_separates_bright_long_and_dim_short_states():
    rng = np.random.default_rng(3)
    duration_s = 20.0
    t_ps, on, _ = telegraph(rng, duration_s, 0.08, 0.08, rate_on_hz=40e3, rate_off_hz=4e3)
    # delays after the sync: on state 8 ns, dim (grey) state 1.5 ns, 300 ps IRF, t0 = 3 ns
    tau_ps = np.where(on, 8000.0, 1500.0)
    delay = np.mod(3000.0 + rng.normal(0, 300, t_ps.size) + rng.exponential(tau_ps),
                   PERIOD_PS)
    res = flid(t_ps, 0.01, PERIOD_PS, delay_ps=delay, t_start_ps=0,
               t_stop_ps=int(duration_s * 1e12))
    assert res.t0_ps == pytest.approx(3000, abs=400)
    assert res.histogram.sum() == np.isfinite(res.mean_delay_ns).sum() == res.counts.size
    bright = res.counts > 300
    dim = res.counts < 60
    assert bright.sum() > 100 and dim.sum() > 100
    assert np.median(res.mean_delay_ns[bright]) == pytest.approx(8.0, abs=0.4)
    assert np.median(res.mean_delay_ns[dim]) == pytest.approx(1.5, abs=0.4)
    # the 2D histogram has its mass in the two corners: (high I, long τ) and (low I, short τ)
    i_mid = np.searchsorted(res.intensity_edges_counts, 200) - 1
    d_mid = np.searchsorted(res.delay_edges_ns, 4.5) - 1
    h = res.histogram
    assert h[i_mid:, d_mid:].sum() + h[:i_mid, :d_mid].sum() > 0.95 * h.sum()
    # brute-force mean delay of one bin
    k = int(np.flatnonzero(bright)[0])
    in_bin = (t_ps >= k * 10**10) & (t_ps < (k + 1) * 10**10)
    ref = np.mean(np.mod(delay[in_bin] - res.t0_ps + 5000, PERIOD_PS) - 5000) * 1e-3
    assert res.mean_delay_ns[k] == pytest.approx(ref, rel=1e-9)


def test_flid_from_sync_tags_equals_delay_input():
    rng = np.random.default_rng(8)
    n_pulses = 200_000  # 20 ms of 10 MHz sync
    sync = np.arange(n_pulses, dtype=np.int64) * PERIOD_PS
    pulse = rng.choice(n_pulses, 3000, replace=False)
    phot = np.sort(sync[pulse] + (2000 + rng.exponential(5000, 3000)).astype(np.int64))
    d = delays_after_sync_ps(sync, phot)
    a = flid(phot, 0.001, PERIOD_PS, t_sync_ps=sync, t0_ps=2000.0)
    b = flid(phot, 0.001, PERIOD_PS, delay_ps=d, t0_ps=2000.0)
    np.testing.assert_array_equal(a.histogram, b.histogram)
    np.testing.assert_allclose(a.mean_delay_ns, b.mean_delay_ns)
    assert np.nanmean(a.mean_delay_ns) == pytest.approx(5.0, abs=0.3)
    with pytest.raises(AnalysisInputError):
        flid(phot, 0.001, PERIOD_PS)


def test_bad_input():
    with pytest.raises(AnalysisInputError):
        intensity_trace(np.array([3, 2, 1]), 0.001)
    with pytest.raises(AnalysisInputError):
        intensity_trace(np.array([], np.int64), 0.001)
    with pytest.raises(AnalysisInputError):
        on_off_durations(np.arange(5), 1.0)
    with pytest.raises(AnalysisInputError):
        two_level_threshold(np.array([1, 2, 3]))
