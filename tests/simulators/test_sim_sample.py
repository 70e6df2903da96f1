"""The virtual sample: population statistics, blinking, spectral diffusion, excitation.

Every check compares against numbers from PHYSICS.md or brute-force estimates
computed here, not against the sample code's own helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from micropl.simulators.clock import VirtualClock
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.scanner import SimScanner
from micropl.simulators.settings import (
    BatchSettings,
    SampleSettings,
    SimLaserSettings,
    SimScannerSettings,
)
from micropl.simulators.world import SimulatedWorld


def _physics_fwhm_mev(energy_ev):
    """PHYSICS.md: ≈70 meV at 2.40, ≈100 at 2.44, ≈130 at 2.50 eV (linear between)."""
    return np.interp(energy_ev, [2.40, 2.44, 2.50], [70.0, 100.0, 130.0])


# --------------------------------------------------------------------------- population
def test_population_size_positions_and_determinism():
    s = SampleSettings(seed=7, area_um=(40.0, 40.0), density_per_um2=0.1, aggregates_per_um2=0.003)
    a = VirtualSample.from_settings(s)
    b = VirtualSample.from_settings(s)
    c = VirtualSample.from_settings(s.model_copy(update={"seed": 8}))
    n_qd = int(np.sum(~a.is_aggregate))
    assert abs(n_qd - 160) < 5 * math.sqrt(160)
    assert a.n == n_qd + int(a.is_aggregate.sum())
    assert np.all((a.x_um >= 0) & (a.x_um <= 40) & (a.y_um >= 0) & (a.y_um <= 40))
    # x uniform over the area (KS test against U(0, 40))
    assert stats.kstest(a.x_um, stats.uniform(0, 40).cdf).pvalue > 1e-3
    for key, value in a.truth().items():
        np.testing.assert_array_equal(value, b.truth()[key], err_msg=key)
    assert c.n != a.n or not np.array_equal(c.x_um, a.x_um)


@pytest.mark.parametrize(("edge_nm", "energy_lo", "energy_hi"), [(14.0, 2.40, 2.42),
                                                                  (7.0, 2.47, 2.51)])
def test_batch_emission_energy(edge_nm, energy_lo, energy_hi):
    s = SampleSettings(seed=3, density_per_um2=0.5, aggregates_per_um2=0.0,
                       batch=BatchSettings(edge_nm_mean=edge_nm))
    smp = VirtualSample.from_settings(s)
    # confinement law from PHYSICS.md, evaluated independently
    np.testing.assert_allclose(smp.energy_ev, 2.383 + 5.2 / smp.edge_nm**2, rtol=0, atol=1e-12)
    assert energy_lo <= np.median(smp.energy_ev) <= energy_hi
    rel_spread = np.std(smp.edge_nm) / np.mean(smp.edge_nm)
    assert 0.12 < rel_spread < 0.17


def test_linewidth_grows_with_energy_with_qd_to_qd_scatter():
    smp = VirtualSample.from_settings(SampleSettings(
        seed=11, density_per_um2=1.0, aggregates_per_um2=0.0,
        batch=BatchSettings(edge_nm_mean=10.0, edge_nm_spread=0.3)))
    ratio = smp.fwhm_mev / _physics_fwhm_mev(smp.energy_ev)
    inside = (smp.energy_ev > 2.40) & (smp.energy_ev < 2.50)
    assert inside.sum() > 200
    assert abs(np.median(ratio[inside]) - 1.0) < 0.05
    assert 0.10 < np.std(np.log(ratio[inside])) < 0.20  # ±15 % scatter
    slope = np.polyfit(smp.energy_ev[inside], smp.fwhm_mev[inside], 1)[0]
    assert 400 < slope < 900  # meV per eV


def test_core_shell_blue_shifted_narrower_more_antibunched():
    base = dict(seed=5, density_per_um2=1.0, aggregates_per_um2=0.0)
    core = VirtualSample.from_settings(SampleSettings(**base))
    cs = VirtualSample.from_settings(SampleSettings(
        **base, batch=BatchSettings(core_shell_fraction=1.0)))
    assert np.all(cs.core_shell) and not np.any(core.core_shell)
    shift_mev = 1e3 * (cs.energy_ev - (2.383 + 5.2 / cs.edge_nm**2))
    assert np.all((shift_mev >= 10) & (shift_mev <= 120))
    assert 60 <= np.mean(cs.fwhm_mev) <= 72
    assert cs.fwhm_mev.min() >= 33
    # much narrower than a core-only QD at the same energy (35 vs 110 meV at 2.44 eV at best)
    assert np.mean(cs.fwhm_mev / _physics_fwhm_mev(cs.energy_ev)) < 0.7
    assert np.mean(cs.g2_0) < np.mean(core.g2_0)
    assert np.all((core.g2_0 >= 0.05) & (core.g2_0 <= 0.4))


def test_brightness_lifetime_and_aggregates():
    smp = VirtualSample.from_settings(SampleSettings(seed=2, density_per_um2=1.0,
                                                     aggregates_per_um2=0.05))
    qd = ~smp.is_aggregate
    assert np.all((smp.brightness_cps[qd] >= 1e4 - 1) & (smp.brightness_cps[qd] <= 1e5 + 1))
    assert abs(np.mean(smp.brightness_cps[qd]) / 3e4 - 1) < 0.1
    assert np.all((smp.lifetime_ns >= 2) & (smp.lifetime_ns <= 10))
    agg = smp.is_aggregate
    assert agg.sum() > 30
    assert np.all(np.isnan(smp.edge_nm[agg]))
    assert np.min(smp.brightness_cps[agg]) > np.median(smp.brightness_cps[qd])
    assert np.all(smp.g2_0[agg] > 0.8) and np.all(smp.fwhm_mev[agg] >= 100)
    starts, stops = smp.on_intervals_s(int(np.flatnonzero(agg)[0]), 0.0, 50.0)
    assert starts.tolist() == [0.0] and stops.tolist() == [50.0]  # aggregates do not blink


# --------------------------------------------------------------------------- blinking
def _union_on_time(smp, index, pieces):
    total = 0.0
    edges = []
    for t0, t1 in pieces:
        s, e = smp.on_intervals_s(index, t0, t1)
        assert np.all(s >= t0) and np.all(e <= t1) and np.all(e > s)
        total += float(np.sum(e - s))
        edges.append((s, e))
    return total, edges


def test_blinking_is_deterministic_whatever_the_query_order():
    s = SampleSettings(seed=21, density_per_um2=0.05)
    a = VirtualSample.from_settings(s)
    b = VirtualSample.from_settings(s)
    whole_s, whole_e = a.on_intervals_s(3, 0.0, 95.0)
    # b: ask the pieces in reverse order, crossing block boundaries
    pieces = [(61.2, 95.0), (9.99, 61.2), (0.0, 9.99)]
    got = [b.on_intervals_s(3, t0, t1) for t0, t1 in pieces]
    starts = np.concatenate([g[0] for g in reversed(got)])
    stops = np.concatenate([g[1] for g in reversed(got)])
    # merge intervals cut at the piece boundaries
    merged_s, merged_e = [starts[0]], [stops[0]]
    for st, sp in zip(starts[1:], stops[1:]):
        if st == merged_e[-1]:
            merged_e[-1] = sp
        else:
            merged_s.append(st)
            merged_e.append(sp)
    np.testing.assert_allclose(merged_s, whole_s, rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged_e, whole_e, rtol=0, atol=1e-12)
    # another emitter and another seed differ
    assert not np.array_equal(a.on_intervals_s(4, 0.0, 95.0)[0], whole_s)
    c = VirtualSample.from_settings(s.model_copy(update={"seed": 22}))
    assert not np.array_equal(c.on_intervals_s(3, 0.0, 95.0)[0], whole_s)


def test_blinking_durations_are_exponential_with_the_configured_means():
    on_mean, off_mean = 0.3, 0.05
    smp = VirtualSample.from_settings(SampleSettings(seed=4, blink_on_s_mean=on_mean,
                                                     blink_off_s_mean=off_mean))
    t_end = 1500.0
    starts, stops = smp.on_intervals_s(0, 0.0, t_end)
    # drop the intervals cut by the query edges
    on_d = (stops - starts)[1:-1]
    off_d = starts[1:] - stops[:-1]
    assert on_d.size > 3000
    assert abs(on_d.mean() / on_mean - 1) < 4 / math.sqrt(on_d.size)
    assert abs(off_d.mean() / off_mean - 1) < 4 / math.sqrt(off_d.size)
    assert stats.kstest(on_d, stats.expon(scale=on_mean).cdf).pvalue > 1e-3
    assert stats.kstest(off_d, stats.expon(scale=off_mean).cdf).pvalue > 1e-3
    on_fraction = np.sum(stops - starts) / t_end
    assert abs(on_fraction - on_mean / (on_mean + off_mean)) < 0.02


# --------------------------------------------------------------------------- spectral diffusion
def test_spectral_diffusion_rms_correlation_and_determinism():
    rms_mev, tau_s = 3.0, 0.5
    s = SampleSettings(seed=9, spectral_diffusion_mev=rms_mev, spectral_diffusion_tau_s=tau_s)
    a = VirtualSample.from_settings(s)
    b = VirtualSample.from_settings(s)
    t = np.arange(0.0, 600.0, 0.05)
    x_ev = a.energy_offset_ev(1, t)
    # asked backwards and piecewise on a fresh copy: identical
    y_ev = np.concatenate([b.energy_offset_ev(1, t[t >= 300]), b.energy_offset_ev(1, t[t < 300])])
    np.testing.assert_array_equal(np.concatenate([x_ev[t >= 300], x_ev[t < 300]]), y_ev)
    x = x_ev * 1e3
    # independent 1200 correlation times: rms within ~8 %
    assert abs(np.std(x) / rms_mev - 1) < 0.12
    lag = int(round(tau_s / 0.05))
    r = np.corrcoef(x[:-lag], x[lag:])[0, 1]
    assert abs(r - math.exp(-1)) < 0.1
    assert float(a.energy_offset_ev(1, 12.345)) == float(b.energy_offset_ev(1, 12.345))


# --------------------------------------------------------------------------- excitation
def _world(sample, power_percent=20.0, **scanner_kw):
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(power_percent=power_percent), world)
    SimScanner(SimScannerSettings(**scanner_kw), world)
    return world, laser


def test_excitation_spot_saturation_and_laser_off():
    smp = VirtualSample.single(x_um=20.0, y_um=20.0, brightness_cps=4e4)
    world, laser = _world(smp)
    assert world.excitation().indices.size == 0  # laser starts off
    laser.emission_on = True
    exc = world.excitation()
    p_sat = laser.settings.saturation_power_percent
    assert exc.indices.tolist() == [0]
    assert exc.p_exc_per_pulse[0] == pytest.approx(1 - math.exp(-20.0 / p_sat), rel=1e-9)
    assert exc.detected_cps_per_apd[0] == pytest.approx(4e4 * exc.p_exc_per_pulse[0], rel=1e-9)
    # half a FWHM away the intensity is halved
    world.scanner.move_to(20.0 + 0.3, 20.0)
    assert world.excitation().p_exc_per_pulse[0] == pytest.approx(
        1 - math.exp(-0.5 * 20.0 / p_sat), rel=1e-6)
    # out of focus the peak intensity drops
    world.scanner.move_to(20.0, 20.0, 0.5)
    assert world.excitation().p_exc_per_pulse[0] < 0.5 * exc.p_exc_per_pulse[0]
    # far away: nothing excited
    world.scanner.move_to(30.0, 30.0, 0.0)
    assert world.excitation().indices.size == 0
    # saturation: brightness_cps per APD at 10 MHz
    laser.power_percent = 100.0
    world.scanner.move_to(20.0, 20.0)
    assert world.excitation().detected_cps_per_apd[0] == pytest.approx(4e4, rel=0.01)
    laser.off()
    dark = world.excitation()
    assert dark.indices.size == 0 and dark.background_cps_per_apd == 0.0


def test_scanner_drift_moves_what_the_world_sees():
    smp = VirtualSample.single(x_um=20.0, y_um=20.0)
    world, laser = _world(smp, drift_um_per_min=(0.3, 0.0, 0.0))
    laser.emission_on = True
    p0 = world.excitation().p_exc_per_pulse[0]
    world.clock.sleep(60.0)  # the focus drifted 0.3 µm = half a FWHM
    assert world.scanner.position_um == (20.0, 20.0, 0.0)
    assert world.scanner.true_position_um()[0] == pytest.approx(20.3)
    assert world.excitation().p_exc_per_pulse[0] < 0.8 * p0


def test_excitation_matches_brute_force_over_all_emitters():
    """The world's nearby-emitter shortcut loses nothing a full evaluation would find."""
    smp = VirtualSample.from_settings(SampleSettings(seed=31, area_um=(10.0, 10.0),
                                                     density_per_um2=2.0, z_spread_um=0.3))
    world, laser = _world(smp, power_percent=100.0)
    laser.emission_on = True
    f0, na = laser.settings.spot_fwhm_um, laser.settings.objective_na
    z_r = f0 / math.sqrt(2 * math.log(2)) / math.tan(math.asin(na / 1.515))
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y, z = rng.uniform(1, 9), rng.uniform(1, 9), rng.uniform(-2, 2)
        world.scanner.move_to(x, y, z)
        exc = world.excitation()
        f = f0 * np.sqrt(1 + ((smp.z_um - z) / z_r) ** 2)
        w = (f0 / f) ** 2 * np.exp(-4 * math.log(2) * ((smp.x_um - x) ** 2 + (smp.y_um - y) ** 2)
                                    / f**2)
        p = 1 - np.exp(-100.0 / laser.settings.saturation_power_percent * w)
        expected = np.flatnonzero(p > 1e-7)
        np.testing.assert_array_equal(np.sort(exc.indices), expected)
        np.testing.assert_allclose(exc.p_exc_per_pulse[np.argsort(exc.indices)], p[expected],
                                   rtol=1e-9)
