"""Tests for micropl.analysis.lifetime against simulated photon streams and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from micropl.analysis.lifetime import (
    decay_histogram,
    decay_model,
    fit_decay,
)
from micropl.errors import AnalysisInputError

PERIOD_PS = 100_000.0
IRF_PS = 300.0


def simulate_delays(rng, n_photons, taus_ns, fractions, t0_ps=5_000.0, irf_ps=IRF_PS,
                    background_fraction=0.02):
    """Photon delays after the preceding sync for a periodic pulse train (Monte Carlo)."""
    comp = rng.choice(len(taus_ns), size=n_photons, p=fractions)
    d = t0_ps + rng.normal(0.0, irf_ps, n_photons) + rng.exponential(
        np.asarray(taus_ns)[comp] * 1e3)
    d = np.mod(d, PERIOD_PS)  # a photon late by more than a period follows a later sync
    d = np.concatenate([d, rng.uniform(0, PERIOD_PS, int(background_fraction * n_photons))])
    return d


def histogram(delays_ps, bin_ps=50.0):
    edges = np.arange(0.0, PERIOD_PS + 0.5 * bin_ps, bin_ps)
    counts, _ = np.histogram(delays_ps, edges)
    return 0.5 * (edges[1:] + edges[:-1]), counts


def test_decay_histogram_matches_brute_force():
    rng = np.random.default_rng(1)
    n_sync = 400
    sync = (np.arange(n_sync) * 100_000 + rng.integers(-20, 20, n_sync)).astype(np.int64)
    sync = np.delete(sync, [50, 51, 200])  # missing sync pulses
    phot = np.sort(rng.integers(-50_000, n_sync * 100_000, 3000)).astype(np.int64)
    t_ps, counts = decay_histogram(sync, phot, bin_ps=250.0, period_ps=100_000.0)
    ref = np.zeros(400, dtype=np.int64)
    for p in phot:
        before = [s for s in sync if s <= p]
        if not before:
            continue
        d = p - max(before)
        if d < 100_000:
            ref[int(d // 250)] += 1
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_allclose(t_ps[:3], [125.0, 375.0, 625.0])
    assert counts.sum() < phot.size  # early photons and gaps are not counted


def test_model_matches_numerical_convolution_with_wraparound():
    """The analytic periodic exp⊗Gaussian against a brute-force numerical sum."""
    tau_ns, sigma_ps, t0_ps = 40.0, 300.0, 1_000.0
    dt = 5.0
    grid = np.arange(-30 * PERIOD_PS, 1.2 * PERIOD_PS, dt)  # 30 earlier pulses, next one
    decay = np.zeros_like(grid)
    for k in range(-1, 31):
        u = grid - (t0_ps - k * PERIOD_PS)
        decay += np.where(u >= 0, np.exp(-np.clip(u, 0, None) / (tau_ns * 1e3)), 0.0)
    kern_t = np.arange(-6 * sigma_ps, 6 * sigma_ps + dt / 2, dt)
    kern = np.exp(-0.5 * (kern_t / sigma_ps) ** 2)
    kern /= kern.sum()
    conv = np.convolve(decay, kern, mode="same")
    t = np.arange(0.0, PERIOD_PS, 500.0) + 250.0
    ref = np.interp(t, grid, conv)
    got = decay_model(t, tau_ns, 1.0, t0_ps, sigma_ps, 0.0, PERIOD_PS)
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * ref.max())
    # the wrap-around lifts the level just before the pulse well above zero
    assert got[0] > 0.08


def test_mono_exponential_pulls_are_honest():
    rng = np.random.default_rng(7)
    pulls_tau, pulls_sigma, pulls_t0 = [], [], []
    for _ in range(32):
        tau = rng.uniform(2.0, 10.0)
        t0 = rng.uniform(3_000, 20_000)
        t, c = histogram(simulate_delays(rng, 20_000, [tau], [1.0], t0_ps=t0))
        fit = fit_decay(t, c, PERIOD_PS)
        assert fit.success, fit.reason
        assert fit.red_chi2 == pytest.approx(1.0, abs=0.2)
        pulls_tau.append((fit.tau_ns[0] - tau) / fit.tau_err_ns[0])
        pulls_sigma.append((fit.irf_sigma_ps - IRF_PS) / fit.irf_sigma_err_ps)
        pulls_t0.append((fit.t0_ps - t0) / fit.t0_err_ps)
    for pulls in (pulls_tau, pulls_sigma, pulls_t0):
        assert 0.7 < np.std(pulls) < 1.3
        assert abs(np.mean(pulls)) < 0.45


def test_long_lifetime_with_wraparound_is_unbiased():
    rng = np.random.default_rng(3)
    pulls = []
    for _ in range(6):
        t, c = histogram(simulate_delays(rng, 50_000, [35.0], [1.0], t0_ps=2_000.0), 200.0)
        fit = fit_decay(t, c, PERIOD_PS, irf_sigma_ps=IRF_PS)
        assert fit.success, fit.reason
        assert fit.irf_fixed and np.isnan(fit.irf_sigma_err_ps)
        pulls.append((fit.tau_ns[0] - 35.0) / fit.tau_err_ns[0])
    assert abs(np.mean(pulls)) < 1.5
    assert np.max(np.abs(pulls)) < 3.5


def test_bi_exponential_recovers_both_components():
    rng = np.random.default_rng(12)
    t, c = histogram(simulate_delays(rng, 200_000, [1.0, 8.0], [0.4, 0.6],
                                     background_fraction=0.01))
    fit = fit_decay(t, c, PERIOD_PS, n_components=2)
    assert fit.success, fit.reason
    assert fit.n_components == 2
    assert abs(fit.tau_ns[0] - 1.0) < 4 * fit.tau_err_ns[0]
    assert abs(fit.tau_ns[1] - 8.0) < 4 * fit.tau_err_ns[1]
    np.testing.assert_allclose(fit.intensity_fraction, [0.4, 0.6], atol=0.03)
    assert fit.red_chi2 == pytest.approx(1.0, abs=0.15)
    # a mono-exponential fit of the same data is visibly worse
    mono = fit_decay(t, c, PERIOD_PS)
    assert mono.red_chi2 > fit.red_chi2 + 0.3


def test_fit_is_the_poisson_maximum_likelihood():
    rng = np.random.default_rng(9)
    t, c = histogram(simulate_delays(rng, 5_000, [4.0], [1.0]), 100.0)
    fit = fit_decay(t, c, PERIOD_PS)

    def nll(p):
        tau, amp, t0, sig, bg = p
        if tau <= 0 or sig <= 0 or amp < 0 or bg < 0:
            return np.inf
        mu = decay_model(t, tau, amp, t0, sig, bg, PERIOD_PS)
        return float(np.sum(mu - c * np.log(mu)))

    ours = [fit.tau_ns[0], fit.amplitude[0], fit.t0_ps, fit.irf_sigma_ps, fit.background]
    start = np.array(ours) * np.array([1.1, 0.9, 1.0, 1.2, 1.1]) + [0, 0, 50, 0, 0]
    ref = minimize(nll, start, method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-9, "maxiter": 40000, "maxfev": 40000})
    assert nll(ours) <= ref.fun + 1e-5
    np.testing.assert_allclose(ours, ref.x, rtol=2e-3, atol=0.5)


def test_bad_input():
    t = np.arange(100) * 50.0 + 25.0
    with pytest.raises(AnalysisInputError):
        fit_decay(t, np.zeros(100), PERIOD_PS)
    with pytest.raises(AnalysisInputError):
        fit_decay(t, np.ones(99), PERIOD_PS)
    with pytest.raises(AnalysisInputError):
        fit_decay(t, -np.ones(100), PERIOD_PS)
    with pytest.raises(AnalysisInputError):
        fit_decay(t, np.ones(100), PERIOD_PS, n_components=3)
    with pytest.raises(AnalysisInputError):
        decay_histogram(np.array([], np.int64), np.array([1, 2]), 10.0, 100.0)
    with pytest.raises(AnalysisInputError):
        decay_histogram(np.array([5, 1]), np.array([1, 2]), 10.0, 100.0)


@pytest.mark.parametrize("divider", [2, 16])
def test_divided_sync_gives_the_histogram_of_every_pulse(divider):
    """A sync tag every ``divider`` pulses gives the same histogram as a sync tag per pulse
    (pulses at whole periods after each sync); a photon after a missing sync tag is
    dropped, not folded onto the wrong pulse."""
    rng = np.random.default_rng(7)
    period = 100_000
    n_pulses = 64 * divider
    every = np.arange(n_pulses, dtype=np.int64) * period + 1_234
    phot = np.sort(rng.integers(0, n_pulses * period, 5000)).astype(np.int64)
    _, ref = decay_histogram(every, phot, bin_ps=500.0, period_ps=period)
    _, got = decay_histogram(every[::divider], phot, bin_ps=500.0, period_ps=period,
                             pulses_per_sync=divider)
    np.testing.assert_array_equal(got, ref)
    gap = np.delete(every[::divider], [10])  # one sync tag lost
    _, fewer = decay_histogram(gap, phot, bin_ps=500.0, period_ps=period,
                               pulses_per_sync=divider)
    lost = ((phot >= every[::divider][10]) & (phot < every[::divider][11])).sum()
    assert ref.sum() - fewer.sum() == lost


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_pulses_per_sync_must_be_a_whole_number(bad):
    with pytest.raises(AnalysisInputError, match="pulses_per_sync"):
        decay_histogram(np.array([0, 100]), np.array([1, 2]), 10.0, 100.0,
                        pulses_per_sync=bad)
