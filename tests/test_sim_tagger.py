"""SimTimeTagger in the real simulated world (sample, clock, laser)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from micropl.drivers.interfaces import InstrumentError, LimitError, TimeTagger
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
    with pytest.raises(LimitError):
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
