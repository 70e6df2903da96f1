"""SimTimeTagger in the real simulated world (sample, clock, laser)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from micropl.drivers.interfaces import TimeTagger
from micropl.errors import InstrumentError, LimitError
from micropl.simulators.clock import VirtualClock
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.settings import (
    BackgroundSettings,
    FaultSettings,
    SimLaserSettings,
    SimTaggerSettings,
)
from micropl.simulators.tagger import SimTimeTagger
from micropl.simulators.world import SimulatedWorld

PERIOD_PS = 100_000


def make_world(g2_0=0.2, brightness_cps=1e5, blinking=False, seed=3, **tagger_kw):
    sample = VirtualSample.single(x_um=20.0, y_um=20.0, brightness_cps=brightness_cps,
                                  g2_0=g2_0, lifetime_ns=5.0, blinking=blinking, seed=seed,
                                  background=BackgroundSettings(apd_cps=0.0))
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(power_percent=100.0), world)
    tagger = SimTimeTagger(SimTaggerSettings(**tagger_kw), world)
    return world, laser, tagger


def record(world, tagger, reads_s):
    chunks = []
    for step in reads_s:
        world.clock.sleep(step)
        chunks.append(tagger.read())
    return chunks


def concat(chunks):
    return (np.concatenate([c.t_ps for c in chunks]),
            np.concatenate([c.channel for c in chunks]))


def test_satisfies_the_protocol_and_validates_channels():
    world, _, tagger = make_world(sync_channel=3)
    assert isinstance(tagger, TimeTagger)
    assert tagger.channels == (1, 2, 3)
    with pytest.raises(InstrumentError, match="not started"):
        tagger.read()
    with pytest.raises(LimitError, match="tagger 'tagger'"):
        tagger.start((1, 7))
    with pytest.raises(ValidationError, match="sync_channel"):  # refused by the settings
        make_world(sync_channel=2)
    tagger.stop()  # safe when idle
    tagger.close()
    tagger.close()


def test_g2_of_a_qd_through_the_tagger():
    world, laser, tagger = make_world(g2_0=0.2, afterpulse_probability=0.0,
                                      dark_cps=(0.0, 0.0))
    laser.emission_on = True
    tagger.start((1, 2))
    chunks = record(world, tagger, [0.5] * 16)
    t, c = concat(chunks)
    t1, t2 = t[c == 1], t[c == 2]
    delay = tagger.settings.channel_delay_ps
    areas = []
    for k in range(-5, 6):
        lo = np.searchsorted(t2, t1 + delay + k * PERIOD_PS - PERIOD_PS / 2)
        hi = np.searchsorted(t2, t1 + delay + k * PERIOD_PS + PERIOD_PS / 2)
        areas.append(int((hi - lo).sum()))
    central = areas[5]
    side = np.array(areas[:5] + areas[6:], float)
    g = central / side.mean()
    err = g * math.sqrt(1 / central + 1 / side.sum())
    assert abs(g - 0.2) < 3 * err, (g, err)
    # rate per APD ≈ brightness × p_exc (power 100 %, P_sat 15 %)
    p_exc = -math.expm1(-100 / 15)
    rate = t1.size / 8.0
    assert abs(rate - 1e5 * p_exc) < 5 * math.sqrt(1e5 * 8) / 8 + 0.003 * 1e5


def test_chunks_tile_time_and_are_well_formed():
    world, laser, tagger = make_world(sync_channel=4)
    laser.emission_on = True
    world.clock.sleep(0.123)
    tagger.start((1, 2, 4))
    chunks = record(world, tagger, np.random.default_rng(1).uniform(0, 0.02, 60))
    assert chunks[0].t_start_ps == int(round(0.123e12))
    for a, b in zip(chunks[:-1], chunks[1:]):
        assert b.t_start_ps == a.t_stop_ps
    for ch in chunks:
        assert ch.t_ps.dtype == np.int64 and ch.channel.dtype == np.uint8
        assert np.all(np.diff(ch.t_ps) >= 0)
        if len(ch):
            assert ch.t_ps[0] >= ch.t_start_ps and ch.t_ps[-1] < ch.t_stop_ps
        assert set(np.unique(ch.channel)) <= {1, 2, 4}
    t, c = concat(chunks)
    # dead time holds across read boundaries
    for a in (1, 2):
        assert np.diff(t[c == a]).min() >= tagger.settings.dead_time_ns * 1e3
    # sync: every 16th pulse at 10 MHz
    assert tagger.snapshot()["sync_divider"] == 16
    assert np.all(np.diff(t[c == 4]) == 16 * PERIOD_PS)


def test_laser_off_gives_dark_counts_only():
    world, laser, tagger = make_world(sync_channel=3, afterpulse_probability=0.0)
    tagger.start((1, 2, 3))
    rates_expected = tagger.count_rates_hz()
    assert rates_expected[1] == pytest.approx(150.0, rel=0.01)
    chunks = record(world, tagger, [5.0, 5.0])
    t, c = concat(chunks)
    for ch, dark in zip((1, 2), (150.0, 200.0)):
        n = int((c == ch).sum())
        assert abs(n - dark * 10) < 3.5 * math.sqrt(dark * 10)
    assert not np.any(c == 3)
    rates = tagger.count_rates_hz()
    assert rates[1] == pytest.approx(int(((chunks[-1].channel == 1)).sum()) / 5.0)
    # switching the laser on between reads changes what the next read sees
    laser.emission_on = True
    world.clock.sleep(0.5)
    ch = tagger.read()
    assert int((ch.channel == 1).sum()) > 100 * 150 * 0.5


@pytest.mark.parametrize("blinking", [False, True])
def test_same_seed_same_tags_whatever_the_read_pattern(blinking):
    patterns = [[0.25] * 4, list(np.random.default_rng(2).uniform(0, 0.04, 40))]
    assert sum(patterns[1]) < 1.0
    patterns[1].append(1.0 - sum(patterns[1]))
    results = []
    for reads in patterns + patterns[:1]:
        world, laser, tagger = make_world(blinking=blinking, crosstalk_probability=0.01)
        laser.emission_on = True
        tagger.start((1, 2))
        results.append(concat(record(world, tagger, reads)))
    (ta, ca), (tb, cb), (tc, cc) = results
    assert ta.size > 10_000
    assert np.array_equal(ta, tc) and np.array_equal(ca, cc)
    assert np.array_equal(ta, tb) and np.array_equal(ca, cb)
    if blinking:  # blinking visible: some 10 ms bins are dark
        counts = np.bincount((ta // 10**10).astype(int))
        assert counts.min() < 0.2 * counts.max()


def test_buffer_overflow_drops_the_excess():
    world, laser, tagger = make_world(buffer_tags=5000)
    laser.emission_on = True
    tagger.start((1, 2))
    world.clock.sleep(0.01)
    small = tagger.read()
    assert not small.overflow and small.missed_events == 0
    world.clock.sleep(0.2)
    big = tagger.read()
    assert big.overflow and len(big) == 5000
    total = tagger.count_rates_hz()
    produced = (total[1] + total[2]) * big.duration_s
    assert big.missed_events == pytest.approx(produced - 5000, abs=1)
    assert tagger.snapshot()["overflows"] == 1


def test_fault_injector_forces_overflow():
    world, laser, tagger = make_world(faults=FaultSettings(overflow_every_n_reads=2))
    laser.emission_on = True
    tagger.start((1, 2))
    flags = []
    for _ in range(4):
        world.clock.sleep(0.05)
        ch = tagger.read()
        flags.append((ch.overflow, ch.missed_events > 0))
    assert flags == [(False, False), (True, True), (False, False), (True, True)]


def test_fault_injector_timeouts_reach_the_caller():
    world, _, tagger = make_world(faults=FaultSettings(timeout_every_n_calls=2))
    tagger.start((1, 2))  # call 1
    with pytest.raises(InstrumentError, match="timed out"):
        tagger.read()  # call 2


# ---------------------------------------------------------------- caches (per-read cost)
def _survey_world(drift_um_per_min=(0.0, 0.0, 0.0)):
    from micropl.simulators.scanner import SimScanner
    from micropl.simulators.settings import SampleSettings, SimScannerSettings

    sample = VirtualSample.from_settings(SampleSettings(seed=5, area_um=(8.0, 8.0),
                                                        density_per_um2=1.0, z_spread_um=0.2))
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(power_percent=60.0), world)
    scanner = SimScanner(SimScannerSettings(drift_um_per_min=drift_um_per_min), world)
    tagger = SimTimeTagger(SimTaggerSettings(), world)
    return world, laser, scanner, tagger


class _UncachedReference:
    """The tagger's read re-derived from scratch each time, from the public pieces.

    Numpy excitation over every emitter (no spatial index, no cache), blink
    intervals queried from the sample for the span of each read (clipped to it),
    a new :class:`Emitters` each read.
    """

    def __init__(self, world, tagger):
        from micropl.simulators.hbt import HbtStream
        from micropl.simulators.tagger import detector_model

        self.world = world
        self.stream = HbtStream(detector_model(tagger.settings), world.sample.seed,
                                t_start_ps=int(round(world.clock.now() * 1e12)))

    def read(self):
        from micropl.simulators.hbt import Emitters
        from micropl.simulators.world import spot_weight

        world, stream, smp = self.world, self.stream, self.world.sample
        laser, s = world.laser, world.laser.settings
        t_end = max(int(round(world.clock.now() * 1e12)), stream.t_ps)
        x, y, z = world.scanner.true_position_um()
        w = spot_weight(smp.x_um - x, smp.y_um - y, smp.z_um - z, s.spot_fwhm_um,
                        s.objective_na)
        p = -np.expm1(-laser.power_percent * w / s.saturation_power_percent)
        idx = np.flatnonzero(p > 1e-7)
        t0, t1 = stream.block_span_ps(t_end)
        em = Emitters.from_intervals(
            idx, smp.brightness_cps[idx] / 10e6 * p[idx], smp.g2_0[idx],
            smp.lifetime_ns[idx] * 1e3,
            [smp.on_intervals_s(int(i), t0 * 1e-12, t1 * 1e-12) for i in idx])
        out = stream.advance(t_end, em, PERIOD_PS, smp.background.apd_cps * laser.power_percent
                             / 100.0)
        return out.t_ps, out.channel


@pytest.mark.parametrize("drift", [(0.0, 0.0, 0.0), (0.5, -0.3, 0.05)])
def test_cached_reads_equal_an_uncached_reference_through_moves_and_power_changes(drift):
    """Map-like reads (move, discard, dwell) give the tags of a from-scratch evaluation."""
    world, laser, scanner, tagger = _survey_world(drift)
    laser.emission_on = True
    tagger.start((1, 2))
    ref = _UncachedReference(world, tagger)
    smp = world.sample
    rng = np.random.default_rng(7)
    # pixels at emitters (several excited at once), between them, and long stays
    targets = [(float(smp.x_um[i]), float(smp.y_um[i])) for i in rng.choice(smp.n, 12)]
    targets += [tuple(rng.uniform(1.0, 7.0, 2)) for _ in range(12)]
    n_tags = n_excited = 0
    for k, (x, y) in enumerate(targets):
        scanner.move_to(x, y)
        if k == 10:
            laser.power_percent = 100.0  # must invalidate the cached excitation
        for dwell_s in (0.0, 0.005, 0.013, 0.002):
            world.clock.sleep(dwell_s)
            chunk = tagger.read()
            t_ref, c_ref = ref.read()
            assert np.array_equal(chunk.t_ps, t_ref)
            assert np.array_equal(chunk.channel, tagger._lut[c_ref])
            n_tags += len(chunk)
        n_excited += world.excitation().indices.size
    assert n_tags > 2000 and n_excited > 12


def test_excitation_cache_is_shared_read_only_and_follows_changes():
    world, laser, scanner, _ = _survey_world()
    laser.emission_on = True
    smp = world.sample
    scanner.move_to(float(smp.x_um[3]), float(smp.y_um[3]))
    a = world.excitation()
    world.clock.sleep(0.01)
    b = world.excitation()
    assert b.indices is a.indices and b.t_s == pytest.approx(a.t_s + 0.01)
    assert 3 in a.indices.tolist()
    with pytest.raises(ValueError):
        a.p_exc_per_pulse[0] = 0.5  # shared with later calls: must not be writable
    laser.power_percent = 10.0
    c = world.excitation()
    assert c.indices is not a.indices
    i3 = a.indices.tolist().index(3)
    assert c.p_exc_per_pulse[c.indices.tolist().index(3)] < a.p_exc_per_pulse[i3]
    laser.rep_rate_hz = 5e6
    assert world.excitation().rep_rate_hz == 5e6
    laser.emission_on = False
    assert world.excitation().indices.size == 0


def test_excitation_under_drift_is_evaluated_at_the_drifted_position():
    world, laser, scanner, _ = _survey_world(drift_um_per_min=(0.6, 0.0, 0.0))
    laser.emission_on = True
    smp = world.sample
    i = int(np.argmin(np.abs(smp.x_um - 4.0) + np.abs(smp.y_um - 4.0)))
    scanner.move_to(float(smp.x_um[i]), float(smp.y_um[i]))
    p = []
    for _ in range(4):
        exc = world.excitation()
        p.append(float(exc.p_exc_per_pulse[exc.indices.tolist().index(i)]))
        world.clock.sleep(10.0)  # 0.1 µm of drift each step
    assert p[0] > p[1] > p[2] > p[3]  # no stale cached value


def test_kernels_release_the_gil():
    from micropl.simulators import hbt, world

    for kernel in (hbt._advance_span, hbt.generate_primaries, hbt.apply_detectors,
                   world._excite_window):
        assert kernel.targetoptions.get("nogil") is True
