"""Pulsed g²(0): hand-computed ratios, honest errors on photon-level simulations, fits."""

import math

import numpy as np
import pytest

from micropl.analysis.g2 import (
    cross_correlate,
    detect_period_ps,
    fit_cw_g2,
    fit_peak_train,
    pulsed_g2,
    two_sided_exp_irf,
)
from micropl.analysis.tags import read_histogram_file
from micropl.errors import AnalysisInputError

# ---------------------------------------------------------------------------
# Independent photon-level simulation of an HBT experiment on a pulsed emitter
# ---------------------------------------------------------------------------


def simulate_hbt_tags(rng, *, g2_0, lifetime_ps, period_ps=100_000, n_pulses=20_000_000,
                      click_prob=4e-3, jitter_ps=300.0, dark_hz=0.0):
    """Clicks of two detectors behind a 50:50 splitter, one Bernoulli trial per pulse.

    Per pulse the detectors see: nothing, a click in D1 only, in D2 only, or in both.
    With s = P(click in a given detector) and P(both) = g2·s², the coincidence rate in
    the central peak divided by the one between independent pulses (s²) is g2 exactly.
    Each click is delayed by an exponential emission time and a Gaussian jitter.
    """
    p_both = g2_0 * click_prob**2
    p_one = click_prob - p_both
    p_any = 2 * p_one + p_both
    n_est = int(n_pulses * p_any * 1.2 + 100)
    pulses = np.cumsum(rng.geometric(p_any, n_est)) - 1
    pulses = pulses[pulses < n_pulses]
    kind = rng.choice(3, pulses.size, p=[p_one / p_any, p_one / p_any, p_both / p_any])
    out = []
    for det in (0, 1):
        sel = pulses[(kind == det) | (kind == 2)]
        t = (sel * period_ps + rng.exponential(lifetime_ps, sel.size)
             + rng.normal(0.0, jitter_ps, sel.size))
        n_dark = rng.poisson(dark_hz * n_pulses * period_ps * 1e-12)
        t = np.concatenate([t, rng.uniform(0, n_pulses * period_ps, n_dark)])
        out.append(np.sort(np.round(t).astype(np.int64)))
    return out[0], out[1]


# ---------------------------------------------------------------------------
# Ratio computed by hand
# ---------------------------------------------------------------------------


def hand_histogram():
    # 1 ns bins covering [-60, 60) ns; comb period 10 ns with peaks in the bins whose
    # centres are at 0.5 + 10k ns; a flat background of 1 count per bin.
    tau = -60_000 + 500 + 1000 * np.arange(120)
    counts = np.ones(120)
    peaks = {0: 30, -1: 100, -2: 90, -3: 110, -4: 95, -5: 105,
             1: 98, 2: 102, 3: 91, 4: 109, 5: 100, 6: 5000, -6: 5000}
    for k, n in peaks.items():
        counts[np.flatnonzero(tau == 500 + 10_000 * k)] += n
    return tau.astype(float), counts, peaks


def test_ratio_by_hand():
    tau, counts, peaks = hand_histogram()
    r = pulsed_g2(tau, counts, period_ps=10_000, n_side=5)
    # each window is 10 bins: peak + 10 background counts
    C = peaks[0] + 10
    sides = [peaks[k] + 10 for k in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)]
    assert r.central_counts == pytest.approx(C)
    np.testing.assert_allclose(r.side_counts, sides)
    assert r.g2_0 == pytest.approx(C / np.mean(sides))
    # 1σ: half the 68 % interval, close to the delta-method error at 40 central counts
    assert r.g2_0_err == pytest.approx(0.5 * (r.g2_0_ci68[1] - r.g2_0_ci68[0]))
    assert r.g2_0_err == pytest.approx(C / np.mean(sides) * math.sqrt(1 / C + 1 / sum(sides)),
                                       rel=0.01)
    assert r.delay_ps == pytest.approx(500, abs=1e-6)
    assert r.zero_delay_source == "nearest-zero"
    assert r.n_side_left == r.n_side_right == 5
    # background from the gap bins (all exactly 1), subtracted from every window
    assert r.background_per_bin == pytest.approx(1.0)
    net_sides = [peaks[k] for k in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)]
    assert r.g2_0_bgcorr == pytest.approx(peaks[0] / np.mean(net_sides))
    assert 0 < r.g2_0_bgcorr_err < r.g2_0_bgcorr
    assert r.central_window_ps == pytest.approx((-4500, 5500))
    assert r.side_windows_ps.shape == (10, 2)
    assert r.rep_rate_hz == pytest.approx(1e8)


def test_lowest_peak_found_when_zero_delay_is_not_near_zero():
    tau, counts, peaks = hand_histogram()
    # shift to a start–stop axis: 0..120 ns, the antibunched peak at 60.5 ns
    r = pulsed_g2(tau + 60_000, counts, period_ps=10_000, n_side=5)
    assert r.zero_delay_source == "lowest-peak"
    assert r.delay_ps == pytest.approx(60_500)
    assert r.central_counts == pytest.approx(40)
    # user-given zero delay snaps to the nearest comb peak
    r2 = pulsed_g2(tau + 60_000, counts, period_ps=10_000, zero_delay_ps=31_000, n_side=2)
    assert r2.delay_ps == pytest.approx(30_500) and r2.zero_delay_source == "user"


def test_flat_histogram_has_no_peaks():
    rng = np.random.default_rng(0)
    tau = np.arange(2000) * 256.0
    with pytest.raises(AnalysisInputError, match="no periodic peaks"):
        pulsed_g2(tau, rng.poisson(20, 2000))
    with pytest.raises(AnalysisInputError, match="empty"):
        pulsed_g2(tau, np.zeros(2000))


def test_no_antibunched_peak_on_start_stop_axis_is_an_error():
    tau, counts, peaks = hand_histogram()
    counts = counts.copy()
    counts[np.flatnonzero(tau == 500)] += 70  # central peak now as high as the others
    with pytest.raises(AnalysisInputError, match="antibunched"):
        pulsed_g2(tau + 60_000, counts, period_ps=10_000)


# ---------------------------------------------------------------------------
# Honest errors: pulls over independent realisations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("g2_true, lifetime_ps", [(0.05, 2_000), (0.2, 5_000), (0.4, 10_000)])
def test_pulls_are_unit_normal(g2_true, lifetime_ps):
    rng = np.random.default_rng(int(g2_true * 1000) + lifetime_ps)
    pulls = []
    period = 100_000
    for _ in range(60):
        t1, t2 = simulate_hbt_tags(rng, g2_0=g2_true, lifetime_ps=lifetime_ps,
                                   n_pulses=25_000_000)
        tau, counts = cross_correlate(t1, t2, 256, 6 * period)
        r = pulsed_g2(tau, counts, rep_rate_hz=1e7, n_side=5)
        assert abs(r.delay_ps) < 1_000
        pulls.append((r.g2_0 - g2_true) / r.g2_0_err)
    pulls = np.array(pulls)
    assert 0.7 < pulls.std(ddof=1) < 1.3, pulls.std(ddof=1)
    assert abs(pulls.mean()) < 0.5, pulls.mean()


def test_background_corrected_pulls_with_dark_counts():
    rng = np.random.default_rng(11)
    g2_true = 0.1
    raw, pulls = [], []
    for _ in range(50):
        t1, t2 = simulate_hbt_tags(rng, g2_0=g2_true, lifetime_ps=2_000, n_pulses=25_000_000,
                                   dark_hz=15_000.0)
        tau, counts = cross_correlate(t1, t2, 256, 600_000)
        r = pulsed_g2(tau, counts, rep_rate_hz=1e7)
        raw.append(r.g2_0)
        pulls.append((r.g2_0_bgcorr - g2_true) / r.g2_0_bgcorr_err)
    pulls = np.array(pulls)
    assert np.mean(raw) > 0.3  # the dark counts really do spoil the raw ratio
    assert 0.7 < pulls.std(ddof=1) < 1.3, pulls.std(ddof=1)
    assert abs(pulls.mean()) < 0.5, pulls.mean()


def test_period_detected_from_symmetric_histogram():
    rng = np.random.default_rng(2)
    t1, t2 = simulate_hbt_tags(rng, g2_0=0.2, lifetime_ps=3_000, period_ps=100_000,
                               n_pulses=10_000_000)
    t2 = t2 + 4_000  # cable delay
    tau, counts = cross_correlate(t1, t2, 128, 700_000)
    assert detect_period_ps(tau, counts) == pytest.approx(100_000, rel=2e-3)
    r = pulsed_g2(tau, counts)
    assert r.period_source == "detected"
    assert r.delay_ps == pytest.approx(4_000, abs=150)
    assert r.g2_0 == pytest.approx(0.2, abs=5 * r.g2_0_err)


# ---------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------


def test_two_sided_exp_irf_matches_numerical_convolution():
    x = np.arange(-20_000, 20_000, 5.0)
    tau, sigma = 1_500.0, 400.0
    exp = np.exp(-np.abs(x) / tau)
    kx = np.arange(-3_000, 3_001, 5.0)  # odd length: 'same' stays centred
    g = np.exp(-0.5 * (kx / sigma) ** 2)
    g /= g.sum()
    num = np.convolve(exp, g, mode="same")
    inner = slice(2000, -2000)
    np.testing.assert_allclose(two_sided_exp_irf(x, tau, sigma)[inner], num[inner], atol=2e-4)
    far = two_sided_exp_irf(np.array([1e7, -1e7]), 500.0, 300.0)
    assert np.all(np.isfinite(far)) and np.all(far < 1e-300)


def test_peak_train_fit_recovers_truth():
    rng = np.random.default_rng(7)
    lifetime_ps, g2_true, delay_ps = 3_000.0, 0.15, 2_500
    t1, t2 = simulate_hbt_tags(rng, g2_0=g2_true, lifetime_ps=lifetime_ps,
                               n_pulses=40_000_000, click_prob=5e-3, dark_hz=3_000.0)
    tau, counts = cross_correlate(t1, t2 + delay_ps, 256, 400_000)
    fit = fit_peak_train(tau, counts, rep_rate_hz=1e7)
    assert fit.success
    assert abs(fit.lifetime_ns - lifetime_ps / 1e3) < 3 * fit.lifetime_ns_err
    assert abs(fit.g2_0 - g2_true) < 3 * fit.g2_0_err
    assert abs(fit.delay_ps - delay_ps) < 3 * fit.delay_ps_err
    assert abs(fit.irf_sigma_ps - 300 * math.sqrt(2)) < 3 * fit.irf_sigma_ps_err + 20
    assert 0 < fit.g2_0_err < 0.05 and 0 < fit.lifetime_ns_err < 0.1
    assert 0.8 < fit.chi2_red < 1.2


def simulate_cw_histogram(rng, *, g2_0, tau0_ps, delay_ps, sigma_ps, norm, bin_ps=100,
                          window_ps=30_000):
    """Poisson counts of N·[1 − (1 − g0)·exp(−|τ−τd|/τ0)] smeared numerically by the IRF."""
    fine = np.arange(-window_ps - 5_000, window_ps + 5_000, 2.0)
    ideal = 1 - (1 - g2_0) * np.exp(-np.abs(fine - delay_ps) / tau0_ps)
    kernel_x = np.arange(-6 * sigma_ps, 6 * sigma_ps + 1, 2.0)
    kernel = np.exp(-0.5 * (kernel_x / sigma_ps) ** 2)
    smeared = np.convolve(ideal, kernel / kernel.sum(), mode="same")
    edges = np.arange(-window_ps, window_ps + bin_ps, bin_ps)
    idx = np.searchsorted(fine, edges)
    csum = np.concatenate([[0.0], np.cumsum(smeared)])
    mean = (csum[idx[1:]] - csum[idx[:-1]]) / np.diff(idx)
    tau = 0.5 * (edges[1:] + edges[:-1])
    return tau, rng.poisson(norm * mean)


def test_cw_fit_recovers_truth_with_free_and_rate_normalisation():
    rng = np.random.default_rng(4)
    truth = dict(g2_0=0.2, tau0_ps=2_500.0, delay_ps=1_200.0, sigma_ps=350.0)
    tau, counts = simulate_cw_histogram(rng, norm=400.0, **truth)
    fit = fit_cw_g2(tau, counts)
    assert fit.normalisation == "fit"
    assert abs(fit.g2_0 - truth["g2_0"]) < 3 * fit.g2_0_err
    assert abs(fit.tau0_ns * 1e3 - truth["tau0_ps"]) < 3 * fit.tau0_ns_err * 1e3
    assert abs(fit.delay_ps - truth["delay_ps"]) < 3 * fit.delay_ps_err
    assert abs(fit.norm_counts_per_bin - 400) < 3 * fit.norm_counts_per_bin_err
    assert fit.g2_0_err < 0.05
    # normalisation from rates: N = r1·r2·bin·T; fixed IRF
    r1, r2, dur = 2.0e5, 1.0e5, 200.0  # 2e5·1e5·100e-12·200 = 400 per bin
    fit2 = fit_cw_g2(tau, counts, rate1_hz=r1, rate2_hz=r2, duration_s=dur, irf_sigma_ps=350.0)
    assert fit2.normalisation == "rates" and fit2.norm_counts_per_bin == pytest.approx(400)
    assert abs(fit2.g2_0 - truth["g2_0"]) < 3 * fit2.g2_0_err
    np.testing.assert_allclose(fit2.g2_tau, counts / 400)


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------


def test_real_80mhz_10uw(shared_data):
    h = read_histogram_file(shared_data / "sps-quality" / "g2_pulsed80MHz_10uW_12000cps.tsv")
    r = pulsed_g2(h.tau_ps, h.counts)
    assert r.period_source == "detected"
    assert r.period_ps == pytest.approx(12_500, rel=0.003)
    assert r.delay_ps == pytest.approx(61_000, abs=1_000)
    assert 0.6 < r.g2_0 < 0.8
    assert 0 < r.g2_0_err < 0.1
    assert np.isfinite(r.g2_0_bgcorr) and r.g2_0_bgcorr < r.g2_0
    fit = fit_peak_train(h.tau_ps, h.counts)
    assert abs(fit.delay_ps - r.delay_ps) < 200
    assert 0.3 < fit.lifetime_ns < 3 and 0 < fit.g2_0_err < 0.1


def test_real_80mhz_30uw(shared_data):
    h = read_histogram_file(shared_data / "sps-quality" / "g2_pulsed80MHz_30uW_7000cps.tsv")
    assert h.n_snapshots > 100 and h.delay_unit == "ns"
    r = pulsed_g2(h.tau_ps, h.counts, n_side=4)
    assert r.period_ps == pytest.approx(12_500, rel=0.003)
    assert r.delay_ps == pytest.approx(61_000, abs=1_000)
    assert 0.7 < r.g2_0 < 0.95 and 0 < r.g2_0_err < 0.1
    # a user-given rate and zero delay give the same peak
    r2 = pulsed_g2(h.tau_ps, h.counts, rep_rate_hz=80e6, zero_delay_ps=60_000, n_side=4)
    assert r2.delay_ps == pytest.approx(r.delay_ps, abs=400)
