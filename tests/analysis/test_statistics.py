"""Tests for micropl.analysis.statistics with known data and simulated surveys."""

from __future__ import annotations

import numpy as np
import pytest

from micropl.analysis.statistics import (
    fwhm_histogram,
    g2_distribution,
    linear_fit_with_scatter,
    survey_statistics,
)
from micropl.errors import AnalysisInputError


def test_fwhm_histogram_known_values():
    edges, counts = fwhm_histogram(np.array([61.0, 64.9, 65.0, 72.0, np.nan, -3.0, 99.9]),
                                   bin_mev=5.0)
    assert edges[0] == 60.0 and edges[-1] == 100.0
    np.testing.assert_array_equal(counts, [2, 1, 1, 0, 0, 0, 0, 1])


def test_g2_distribution_known_values():
    g2 = np.array([0.1, 0.3, 0.45, 0.55, 0.8, np.nan, 0.2])
    err = np.array([0.02, 0.05, 0.1, 0.1, 0.05, 0.1, np.nan])
    d = g2_distribution(g2, err)
    assert d.n_valid == 5 and d.n_excluded == 2
    assert d.n_single_photon == 3
    assert d.fraction_single_photon == pytest.approx(0.6)
    assert d.fraction_single_photon_err == pytest.approx(np.sqrt(0.6 * 0.4 / 5))
    assert d.n_single_photon_confident == 2  # 0.45 + 0.1 is not below 0.5
    # Φ(20) + Φ(4) + Φ(0.5) + Φ(−0.5) + Φ(−6) = 3.0 (to 3e-5)
    assert d.n_single_photon_expected == pytest.approx(3.0, abs=1e-4)
    assert d.counts.sum() == 5
    assert d.edges[0] <= 0.0 and d.edges[-1] >= 1.0
    assert d.median == pytest.approx(0.45)
    strict = g2_distribution(g2, err, n_sigma=5.0)  # 0.3 + 5·0.05 is not below 0.5
    assert strict.n_single_photon_confident == 1


def test_line_without_intrinsic_scatter_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    x = np.linspace(2.40, 2.50, 25)
    sigma = rng.uniform(2.0, 6.0, x.size)
    y = 70.0 + 600.0 * (x - 2.40) + rng.normal(0, 0.5 * sigma)  # errors overstated 2×
    fit = linear_fit_with_scatter(x, y, None, sigma)
    assert fit.sigma_intrinsic == 0.0 and fit.red_chi2_measurement < 1.0
    coef, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    assert fit.slope == pytest.approx(coef[0], rel=1e-9)
    assert fit.intercept == pytest.approx(coef[1], rel=1e-9)
    assert fit.slope_err == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-6)
    assert fit.intercept_err == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-6)
    assert fit.pearson_r == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    # no errors at all: ordinary least squares with residual-scaled covariance
    ols = linear_fit_with_scatter(x, y)
    coef, cov = np.polyfit(x, y, 1, cov=True)
    assert ols.slope == pytest.approx(coef[0], rel=1e-9)
    assert ols.slope_err == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-6)


def test_slope_pulls_with_qd_to_qd_scatter():
    """Paper-like surveys: FWHM ≈ 70 meV at 2.40 eV rising 600 meV/eV, ±15 % scatter."""
    rng = np.random.default_rng(1)
    pulls, s_int = [], []
    for _ in range(200):
        e = rng.uniform(2.39, 2.51, 40)
        e_err = np.full(e.size, 0.001)
        e_meas = e + rng.normal(0, e_err)
        true = 70.0 + 600.0 * (e - 2.40)
        f_err = rng.uniform(1.0, 4.0, e.size)
        f = true + rng.normal(0, 10.0, e.size) + rng.normal(0, f_err)
        fit = linear_fit_with_scatter(e_meas, f, e_err, f_err)
        pulls.append((fit.slope - 600.0) / fit.slope_err)
        s_int.append(fit.sigma_intrinsic)
    assert 0.8 < np.std(pulls) < 1.2
    assert abs(np.mean(pulls)) < 0.2
    assert np.median(s_int) == pytest.approx(10.0, rel=0.1)


def test_survey_statistics_excludes_and_counts_failures():
    rng = np.random.default_rng(2)
    n = 60
    e = rng.uniform(2.39, 2.51, n)
    f = 70.0 + 600.0 * (e - 2.40) + rng.normal(0, 8.0, n)
    f_err = np.full(n, 2.0)
    e_err = np.full(n, 0.0005)
    g2 = rng.uniform(0.05, 0.7, n)
    g2_err = np.full(n, 0.03)
    e[3] = np.nan
    f[7] = np.nan
    f_err[11] = np.nan
    f[13] = -5.0
    g2[[1, 2]] = np.nan
    s = survey_statistics(e, f, e_err, f_err, g2, g2_err)
    assert s.n_total == n
    assert s.n_spectra_excluded == 4 and s.n_spectra_valid == n - 4
    assert s.fwhm_counts.sum() == n - 4
    ok = np.isfinite(e) & np.isfinite(f) & (f > 0) & np.isfinite(f_err)
    assert s.fwhm_mean_mev == pytest.approx(np.mean(f[ok]))
    assert s.fwhm_median_mev == pytest.approx(np.median(f[ok]))
    assert abs(s.slope_mev_per_ev - 600.0) < 4 * s.slope_err_mev_per_ev
    assert 0.8 < s.correlation_r < 1.0
    assert s.g2 is not None and s.g2.n_excluded == 2
    good = np.isfinite(g2)
    assert s.g2.n_single_photon == int(np.sum(g2[good] < 0.5))


def test_bad_input():
    with pytest.raises(AnalysisInputError):
        survey_statistics(np.full(4, np.nan), np.ones(4))
    with pytest.raises(AnalysisInputError):
        survey_statistics(np.ones(4), np.ones(3))
    with pytest.raises(AnalysisInputError):
        linear_fit_with_scatter(np.ones(5), np.arange(5.0))
    with pytest.raises(AnalysisInputError):
        g2_distribution(np.array([np.nan]))


def test_flagged_qds_are_left_out_and_counted():
    rng = np.random.default_rng(8)
    n = 12
    energy = rng.uniform(2.40, 2.50, n)
    fwhm = 70 + 600 * (energy - 2.40) + rng.normal(0, 3, n)
    g2 = rng.uniform(0.1, 0.4, n)
    flags = [[] for _ in range(n)]
    for k in (2, 7):  # two spots with a second emitter: broad and not antibunched
        fwhm[k], g2[k], flags[k] = 200.0, 0.6, ["multiple_emitters"]
    flags[4] = ["poor_fit"]  # flagged, but not an excluding flag
    stats = survey_statistics(energy, fwhm, np.full(n, 1e-4), np.full(n, 1.0), g2,
                              np.full(n, 0.02), flags=flags)
    keep = np.ones(n, bool)
    keep[[2, 7]] = False
    assert stats.excluded == {"multiple_emitters": 2} and stats.n_flag_excluded == 2
    assert stats.exclusion_text == "2 excluded: multiple emitters"
    assert stats.n_spectra_valid == 10 and stats.n_spectra_excluded == 0 and stats.n_total == n
    assert stats.fwhm_mean_mev == pytest.approx(fwhm[keep].mean())  # brute force
    assert stats.g2.n_valid == 10 and stats.g2.n_single_photon == 10
    plain = survey_statistics(energy, fwhm, g2_zero=g2, g2_zero_err=np.full(n, 0.02))
    assert plain.excluded == {} and plain.g2.n_single_photon == 10 and plain.g2.n_valid == 12
    with pytest.raises(AnalysisInputError):
        survey_statistics(energy, fwhm, flags=flags[:-1])
    with pytest.raises(AnalysisInputError, match="2 excluded"):
        survey_statistics(energy[[2, 7]], fwhm[[2, 7]], flags=[flags[2], flags[7]])
