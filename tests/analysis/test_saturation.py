"""Tests for micropl.analysis.saturation against simulated truth and scipy curve_fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit

from micropl.analysis.saturation import fit_saturation, saturation_model
from micropl.errors import AnalysisInputError

TRUTH = {"amplitude": 40_000.0, "p_sat": 2e-6, "slope": 1.5e9, "offset": 300.0}
POWER_W = np.geomspace(0.1e-6, 15e-6, 14)


def simulate(rng, with_slope=True):
    mu = saturation_model(POWER_W, TRUTH["amplitude"], TRUTH["p_sat"],
                          TRUTH["slope"] if with_slope else 0.0, TRUTH["offset"])
    return rng.poisson(mu).astype(float)


def test_recovers_truth_with_honest_errors():
    rng = np.random.default_rng(0)
    pulls = {k: [] for k in TRUTH}
    for _ in range(60):
        y = simulate(rng)
        fit = fit_saturation(POWER_W, y, np.sqrt(y))
        assert fit.success, fit.reason
        for key, true in TRUTH.items():
            err = {"amplitude": fit.amplitude_err, "p_sat": fit.p_sat_err,
                   "slope": fit.slope_err, "offset": fit.offset_err}[key]
            pulls[key].append((getattr(fit, key) - true) / err)
    for key, values in pulls.items():
        assert 0.7 < np.std(values) < 1.3, key
        assert abs(np.mean(values)) < 0.35, key


def test_matches_scipy_curve_fit():
    rng = np.random.default_rng(1)
    y = simulate(rng)
    power_uw = POWER_W * 1e6  # curve_fit's covariance needs well-scaled parameters

    def model(p, a, ps, b, c):
        return a * (1 - np.exp(-p / ps)) + b * p + c

    to_si = np.array([1.0, 1e-6, 1e6, 1.0])  # (A, P_sat in µW, B per µW, C) -> SI
    for sigma, absolute in ((np.sqrt(y), True), (None, False)):
        popt, pcov = curve_fit(model, power_uw, y, p0=(35_000, 3.0, 1e3, 200), sigma=sigma,
                               absolute_sigma=absolute, maxfev=20000)
        ref = popt * to_si
        ref_err = np.sqrt(np.diag(pcov)) * to_si
        if absolute:
            ref_err = ref_err * np.sqrt(max(1.0, fit_saturation(POWER_W, y, sigma).red_chi2))
        fit = fit_saturation(POWER_W, y, sigma)
        ours = np.array([fit.amplitude, fit.p_sat, fit.slope, fit.offset])
        # same optimum: differences far below the statistical errors
        assert np.all(np.abs(ours - ref) < 1e-3 * ref_err)
        np.testing.assert_allclose(
            [fit.amplitude_err, fit.p_sat_err, fit.slope_err, fit.offset_err],
            ref_err, rtol=1e-3)


def test_without_linear_term():
    rng = np.random.default_rng(2)
    y = simulate(rng, with_slope=False)
    fit = fit_saturation(POWER_W, y, np.sqrt(y), linear_background=False)
    assert fit.success and not fit.linear_background
    assert fit.slope == 0.0
    assert abs(fit.p_sat - TRUTH["p_sat"]) < 4 * fit.p_sat_err
    assert fit.covariance.shape == (3, 3)
    assert fit.red_chi2 == pytest.approx(1.0, abs=0.9)


def test_unsaturated_data_is_flagged():
    rng = np.random.default_rng(3)
    p = np.linspace(0.01e-6, 0.2e-6, 10)  # far below P_sat: a straight line
    y = rng.poisson(saturation_model(p, 40_000, 2e-6, 0.0, 300)).astype(float)
    fit = fit_saturation(p, y, np.sqrt(y))
    assert not fit.success
    assert fit.reason != "ok"


def test_bad_input():
    with pytest.raises(AnalysisInputError):
        fit_saturation(POWER_W, np.ones(3))
    with pytest.raises(AnalysisInputError):
        fit_saturation(POWER_W[:4], np.ones(4))
    with pytest.raises(AnalysisInputError):
        fit_saturation(POWER_W, np.ones(POWER_W.size), np.zeros(POWER_W.size))
    with pytest.raises(AnalysisInputError):
        fit_saturation(-POWER_W, np.ones(POWER_W.size))


def test_power_unit_is_carried_into_the_result_and_its_reasons():
    """Powers in % of the laser setting (as the power series fits them): P_sat in %."""
    rng = np.random.default_rng(4)
    p = np.linspace(0.1, 2.0, 8)  # % of the laser setting, far below P_sat = 15 %
    y = rng.poisson(saturation_model(p, 4e4, 15.0, 0.0, 300)).astype(float)
    fit = fit_saturation(p, y, np.sqrt(y), linear_background=False, power_unit="%")
    assert fit.power_unit == "%" and not fit.success
    assert "saturation not reached" in fit.reason and " %" in fit.reason and " W" not in fit.reason
    assert fit_saturation(POWER_W, simulate(rng), power_unit="W").power_unit == "W"
