"""Peak-train fit and tail-corrected background: pulls on an independent simulation,
agreement with a plain scipy fit of the same comb model, analytic derivatives."""

import numpy as np
import pytest
from scipy import optimize, special

from micropl.analysis.g2 import fit_peak_train, pulsed_g2
from micropl.analysis.g2.comb import _comb_fun

PERIOD_PS = 100_000.0
BIN_PS = 128.0
WINDOW_PS = 600_000.0
JITTER_PS = 300.0


def simulate_histogram(rng, *, g2_0, lifetime_ps, side_counts=2_000, bg_fraction=0.02,
                       delay_ps=0.0):
    """HBT histogram of a pulsed emitter, drawn pair by pair (numpy only).

    Each peak k holds Poisson(side_counts) pairs (g2_0·side_counts for k = 0); a pair delay
    is k·P + (e1 − e2) + (j1 − j2) with e exponential emission delays of the two photons
    and j the Gaussian jitter of each detector. A flat background adds uniform pairs, in
    number bg_fraction × the signal pairs inside the window.
    """
    edges = -WINDOW_PS + BIN_PS * np.arange(int(2 * WINDOW_PS / BIN_PS) + 1)
    delays = []
    for k in range(-8, 9):
        n = rng.poisson(side_counts * (g2_0 if k == 0 else 1.0))
        delays.append(k * PERIOD_PS + delay_ps + rng.exponential(lifetime_ps, n)
                      - rng.exponential(lifetime_ps, n) + rng.normal(0, JITTER_PS, n)
                      - rng.normal(0, JITTER_PS, n))
    d = np.concatenate(delays)
    n_signal = int(((d >= edges[0]) & (d < edges[-1])).sum())
    d = np.concatenate([d, rng.uniform(edges[0], edges[-1], rng.poisson(bg_fraction
                                                                          * n_signal))])
    counts, _ = np.histogram(d, edges)
    return 0.5 * (edges[1:] + edges[:-1]), counts


CASES = [(0.1, 2_000.0), (0.3, 2_000.0), (0.1, 9_000.0), (0.3, 9_000.0)]


@pytest.fixture(scope="module")
def realisations():
    out = {}
    for g2_0, lifetime_ps in CASES:
        rng = np.random.default_rng(int(g2_0 * 100 + lifetime_ps))
        out[(g2_0, lifetime_ps)] = [simulate_histogram(rng, g2_0=g2_0,
                                                       lifetime_ps=lifetime_ps)
                                    for _ in range(24)]
    return out


@pytest.mark.parametrize("g2_0, lifetime_ps", CASES)
def test_peak_train_fit_pulls(realisations, g2_0, lifetime_ps):
    pulls, tl_pulls = [], []
    for tau, counts in realisations[(g2_0, lifetime_ps)]:
        fit = fit_peak_train(tau, counts, period_ps=PERIOD_PS)
        assert fit.success
        pulls.append((fit.g2_0 - g2_0) / fit.g2_0_err)
        tl_pulls.append((fit.lifetime_ns * 1e3 - lifetime_ps) / (fit.lifetime_ns_err * 1e3))
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.5, pulls.mean()
    assert 0.7 < pulls.std(ddof=1) < 1.3, pulls.std(ddof=1)
    assert abs(np.mean(tl_pulls)) < 0.6, np.mean(tl_pulls)


@pytest.mark.parametrize("g2_0, lifetime_ps", CASES)
def test_background_corrected_ratio_pulls(realisations, g2_0, lifetime_ps):
    pulls = []
    for tau, counts in realisations[(g2_0, lifetime_ps)]:
        r = pulsed_g2(tau, counts, period_ps=PERIOD_PS, n_side=5)
        pulls.append((r.g2_0_bgcorr - g2_0) / r.g2_0_bgcorr_err)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.5, pulls.mean()
    assert 0.7 < pulls.std(ddof=1) < 1.3, pulls.std(ddof=1)


def test_background_estimate_is_not_raised_by_long_tails(realisations):
    # true background per bin: 2 % of the signal pairs spread over the 9375 bins
    for tau, counts in realisations[(0.3, 9_000.0)][:6]:
        r = pulsed_g2(tau, counts, period_ps=PERIOD_PS, n_side=5)
        n_signal = (10 + 0.3) * 2_000 + 2 * 2_000  # roughly: ±5, ±6 (half) peaks
        truth = 0.02 * n_signal / tau.size
        assert abs(r.background_per_bin - truth) < 4 * r.background_per_bin_err + 0.02


# ---------------------------------------------------------------------------
# Independent reference: the same comb model written here, fitted by scipy
# ---------------------------------------------------------------------------


def comb_reference(tau, q, ks):
    """bg + amp·Σ_k w_k·[exp(-|x|/τ) ⊛ Gauss(σ)], averaged over 3 points per bin."""
    amp, g2v, tl, sig, d, bg = q
    out = np.zeros_like(tau)
    for o in (-1 / 3, 0.0, 1 / 3):
        t = tau + o * BIN_PS
        for k in ks:
            x = t - d - k * PERIOD_PS
            s = 0.0
            for sgn in (1.0, -1.0):
                # ½·exp(σ²/2τ² ∓ x/τ)·erfc(z), z = (σ²/τ ∓ x)/(σ√2); erfcx form for z >= 0
                z = (sig * sig / tl - sgn * x) / (sig * np.sqrt(2))
                zp = np.maximum(z, 0.0)
                xn = np.maximum(sgn * x, sig * sig / tl)  # z <= 0 branch only
                s = s + np.where(
                    z >= 0, 0.5 * np.exp(-x * x / (2 * sig * sig)) * special.erfcx(zp),
                    0.5 * np.exp(sig * sig / (2 * tl * tl) - xn / tl) * special.erfc(z))
            out += (g2v if k == 0 else 1.0) * s
    return bg + amp * out / 3


def test_agrees_with_scipy_least_squares_on_same_model():
    rng = np.random.default_rng(5)
    tau, counts = simulate_histogram(rng, g2_0=0.2, lifetime_ps=6_000.0, delay_ps=700.0)
    sel = np.abs(tau) < 250_000  # 3906 bins keeps the reference fit short
    tau, counts = tau[sel], counts[sel].astype(float)
    fit = fit_peak_train(tau, counts, period_ps=PERIOD_PS)
    ks = np.arange(-4, 5)
    sigma = np.sqrt(np.maximum(counts, 1.0))
    q = np.array([10.0, 0.3, 4_000.0, 300.0, 500.0, 0.1])
    for _ in range(3):
        res = optimize.least_squares(
            lambda p, s=sigma: (comb_reference(tau, p, ks) - counts) / s, q,
            bounds=([0, 0, 50, 1, -20_000, 0], [np.inf, 5, 1e5, 2.5e4, 20_000, np.inf]),
            x_scale="jac")
        q = res.x
        sigma = np.sqrt(np.maximum(comb_reference(tau, q, ks), 0.1))
    cov = np.linalg.inv(res.jac.T @ res.jac)
    model = comb_reference(tau, q, ks)
    chi2_red = np.sum((model - counts) ** 2 / np.maximum(model, 0.1)) / (tau.size - 6)
    err = np.sqrt(np.diag(cov) * max(1.0, chi2_red))
    ours = [fit.side_amplitude, fit.g2_0, fit.lifetime_ns * 1e3, fit.irf_sigma_ps,
            fit.delay_ps, fit.background_per_bin]
    ours_err = [fit.side_amplitude_err, fit.g2_0_err, fit.lifetime_ns_err * 1e3,
                fit.irf_sigma_ps_err, fit.delay_ps_err, fit.background_per_bin_err]
    np.testing.assert_array_less(np.abs(np.array(ours) - q) / err, 0.05)
    np.testing.assert_allclose(ours_err, err, rtol=0.02)
    assert fit.chi2_red == pytest.approx(chi2_red, rel=1e-3)
    np.testing.assert_allclose(fit.model, model, rtol=1e-3, atol=1e-3)


def test_analytic_jacobian_matches_finite_differences():
    tau = np.arange(-2_000, 2_000) * BIN_PS
    fun = _comb_fun(tau, BIN_PS, PERIOD_PS, -5, 11, 5)
    for q in ([50.0, 0.2, 7_000.0, 400.0, 300.0, 2.0], [5.0, 0.05, 300.0, 900.0, -50.0, 0.0]):
        q = np.array(q)
        m, jac = fun(q)
        np.testing.assert_allclose(m, comb_reference(tau, q, range(-5, 6)), rtol=1e-9,
                                   atol=1e-12)
        for i in range(6):
            h = 1e-6 * max(abs(q[i]), 1.0)
            up, dn = q.copy(), q.copy()
            up[i] += h
            dn[i] -= h
            num = (fun(up)[0] - fun(dn)[0]) / (2 * h)
            scale = np.max(np.abs(jac[:, i]))
            np.testing.assert_allclose(jac[:, i], num, atol=1e-6 * scale)
