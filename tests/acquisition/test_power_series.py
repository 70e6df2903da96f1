"""The power series applies the saturation fit: on the simulated setup in fast mode, the
fitted saturation power agrees with the simulator's ``saturation_power_percent`` within
errors and with scipy's ``curve_fit`` on the same stored rates; the fit is stored and read
back identical."""

from __future__ import annotations

import numpy as np
import pytest
from record_compare import same
from scipy.optimize import curve_fit

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import PowerSeries
from micropl.acquisition.procedures.power_series import saturation_fit
from micropl.acquisition.session import run
from micropl.acquisition.storage import SessionReader
from micropl.analysis.saturation import SaturationFit
from micropl.errors import AnalysisInputError
from micropl.records import PowerSeriesData
from micropl.simulators.sample import VirtualSample

pytestmark = pytest.mark.timeout(300)

P_SAT_PERCENT = 15.0  # the simulated laser's saturation_power_percent (configs/simulated.yaml)


def power_series(path, procedure: PowerSeries, *, seed: int = 1):
    """Run ``procedure`` on one QD under the laser focus (no blinking), into ``path``.

    ``seed`` is the setup's sample seed, which also seeds the tagger's photon stream."""
    with load_setup(clock_mode="fast", overrides={"sample": {"seed": seed}}) as setup:
        assert setup.config.laser.saturation_power_percent == P_SAT_PERCENT
        setup.world.sample = VirtualSample.single(x_um=20.0, y_um=20.0, g2_0=0.05, seed=seed)
        return run(procedure, setup, out=path)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fitted_saturation_power_is_the_simulators_and_scipys(tmp_path, seed):
    path = tmp_path / "ps.h5"
    result = power_series(path, PowerSeries(dwell_s=0.5), seed=seed)
    assert result.status == "completed", result.reason
    fit = result.value
    assert isinstance(fit, SaturationFit) and fit.success, fit.reason
    assert fit.power_unit == "%" and fit.linear_background
    # the truth: the QD sits in the centre of the spot, so P_sat is the laser's setting
    assert abs(fit.p_sat - P_SAT_PERCENT) < 3 * fit.p_sat_err
    assert 0 < fit.p_sat_err < 0.05 * P_SAT_PERCENT
    with SessionReader(path) as reader:
        (data,) = reader.records(PowerSeriesData)
        (stored,) = reader.records(SaturationFit)
    assert same(stored.record, fit)
    assert stored.kind == "saturation_fit" and stored.run_id == data.run_id
    # an independent fit of the same stored rates
    d = data.record

    def model(p, a, ps, b, c):
        return a * (1 - np.exp(-p / ps)) + b * p + c

    popt, pcov = curve_fit(model, d.power_percent, d.rate_cps, p0=(4e4, 10.0, 0.0, 300.0),
                           sigma=d.rate_err_cps, absolute_sigma=True, maxfev=20000)
    ref_err = np.sqrt(np.diag(pcov)) * np.sqrt(max(1.0, fit.red_chi2))
    ours = np.array([fit.amplitude, fit.p_sat, fit.slope, fit.offset])
    assert np.all(np.abs(ours - popt) < 1e-3 * ref_err)
    np.testing.assert_allclose([fit.amplitude_err, fit.p_sat_err, fit.slope_err,
                                fit.offset_err], ref_err, rtol=1e-3)


def test_powers_far_below_saturation_store_an_untrusted_fit(tmp_path):
    """The data do not reach saturation: the run completes, the fit is stored and returned
    with success False and the reason, not passed off as a saturation power."""
    path = tmp_path / "low.h5"
    result = power_series(path, PowerSeries(powers_percent=[0.2, 0.4, 0.6, 0.8, 1.0],
                                            dwell_s=0.2))
    assert result.status == "completed", result.reason
    assert not result.value.success and "saturation not reached" in result.value.reason
    with SessionReader(path) as reader:
        (stored,) = reader.records(SaturationFit)
    assert same(stored.record, result.value)


def test_too_few_powers_fail_the_run_after_the_rates_are_stored(tmp_path):
    path = tmp_path / "three.h5"
    result = power_series(path, PowerSeries(powers_percent=[5, 10, 10, 40], dwell_s=0.05))
    assert result.status == "failed"
    assert "at least 4 different powers_percent, got 3" in result.reason
    with SessionReader(path) as reader:
        assert len(reader.records(PowerSeriesData)) == 1
        assert "saturation_fit" not in reader.tables or not reader.records(SaturationFit)


def _series(powers):
    p = np.asarray(powers, float)
    rate = 3e4 * -np.expm1(-p / 15.0) + 4.0 * p + 350.0
    return PowerSeriesData(power_percent=p, rate_cps=rate, rate_err_cps=np.sqrt(rate))


@pytest.mark.parametrize(("powers", "linear"), [
    ([1, 5, 20, 60], False),
    ([1, 1, 5, 5, 20, 60], False),  # repeated powers count once
    ([1, 5, 10, 20, 60], True),
    ([0, 1, 2, 4, 7, 10, 15, 20, 30, 45, 60, 80, 100], True),
])
def test_model_follows_the_number_of_different_powers(powers, linear):
    fit = saturation_fit(_series(powers))
    assert fit.linear_background is linear
    assert fit.covariance.shape == ((4, 4) if linear else (3, 3))
    assert fit.p_sat == pytest.approx(15.0, rel=0.05 if not linear else 1e-3)


@pytest.mark.parametrize("powers", [[1, 2, 4], [10, 10, 10, 10, 10], [0, 50, 0, 50]])
def test_fewer_than_four_different_powers_are_refused(powers):
    with pytest.raises(AnalysisInputError, match="at least 4 different powers_percent"):
        saturation_fit(_series(powers))
