"""Throughput of the simulated HBT tag generator (micropl.simulators.hbt).

Figures (median of repeats, one core):

* generator: a 60 s g² acquisition of a bright QD (1e5 counts/s per APD, g²(0) = 0.2,
  5 ns, default APD model with dark counts, jitter, dead time, afterpulsing) in one
  call — M tags/s and the wall time of the 60 s acquisition;
* tagger: the same through ``SimTimeTagger`` in the simulated world, one-second reads;
* PTU writer: M tags/s written to a T2 file;
* short read: median µs per ``SimTimeTagger.read()`` of 5 ms (the map-pixel dwell of
  ``micropl demo``), at a QD and at an empty spot of the default simulated sample.

Peer: a straightforward vectorised numpy generator of the same process (per-pulse
uniform draws, exponential delays, Gaussian jitter, Poisson dark counts, argsort,
iterative vectorised non-paralysable dead time, afterpulses), in 1 s slices. For the
short read the peer is the same read without the caches (the per-read path before they
were added): numpy excitation over every emitter of the sample, blink intervals queried
from the sample for each read, emitter arrays rebuilt for each read. It produces the
same tags, which the benchmark checks.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from timing import median_s

from micropl.analysis.ptu_write import write_ptu_t2
from micropl.simulators.hbt import (
    DetectorModel,
    Emitters,
    HbtStream,
    period_ps_from_rate,
    simulate_constant_emitters,
)

RATE_CPS = 1e5
G2_0 = 0.2
TAU_NS = 5.0
REP_HZ = 10e6
PERIOD_PS = 100_000




def numpy_peer(duration_s: float, det: DetectorModel, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same physical process written directly in numpy (no state across 1 s slices)."""
    rng = np.random.default_rng(seed)
    mu = 2 * RATE_CPS / REP_HZ
    p2 = 0.5 * G2_0 * mu * mu
    p1 = mu - 2 * p2
    sigma = det.jitter_sigma_ps
    tau_ps = TAU_NS * 1e3
    out_t, out_c = [], []
    n_pulses = int(REP_HZ)
    for s in range(int(math.ceil(duration_s))):
        t0 = s * 10**12
        u = rng.random(n_pulses)
        single = np.flatnonzero(u < p1)
        pair = np.flatnonzero((u >= p1) & (u < p1 + p2))
        k = np.concatenate([single, pair, pair])
        delay = rng.exponential(tau_ps, k.size)
        delay[single.size + pair.size:] += rng.exponential(tau_ps / 4, pair.size)
        t = t0 + k * PERIOD_PS + delay + rng.normal(0, sigma, k.size)
        c = rng.integers(0, 2, k.size)
        for a in (0, 1):
            n_dark = rng.poisson(det.dark_cps[a])
            t = np.concatenate([t, t0 + rng.uniform(0, 1e12, n_dark)])
            c = np.concatenate([c, np.full(n_dark, a)])
        t = t.astype(np.int64)
        order = np.argsort(t, kind="stable")
        t, c = t[order], c[order]
        kept_t, kept_c = [], []
        for a in (0, 1):
            ta = t[c == a]
            ap = ta[rng.random(ta.size) < det.afterpulse_probability]
            ta = np.sort(np.concatenate(
                [ta, ap + rng.exponential(det.afterpulse_delay_ps, ap.size).astype(np.int64)]))
            # iterative non-paralysable dead time: drop a tag closer than the dead time to
            # its predecessor when that predecessor itself is kept
            while True:
                gap_short = np.diff(ta) < det.dead_time_ps
                if not gap_short.any():
                    break
                prev_ok = np.r_[True, ~gap_short[:-1]]
                drop = np.r_[False, gap_short & prev_ok]
                ta = ta[~drop]
            kept_t.append(ta)
            kept_c.append(np.full(ta.size, a, np.uint8))
        t = np.concatenate(kept_t)
        c = np.concatenate(kept_c)
        order = np.argsort(t, kind="stable")
        out_t.append(t[order])
        out_c.append(c[order])
    return np.concatenate(out_t), np.concatenate(out_c)


def through_tagger(duration_s: float) -> int:
    from micropl.simulators.clock import VirtualClock
    from micropl.simulators.laser import SimLaser
    from micropl.simulators.sample import VirtualSample
    from micropl.simulators.settings import BackgroundSettings, SimLaserSettings, SimTaggerSettings
    from micropl.simulators.tagger import SimTimeTagger
    from micropl.simulators.world import SimulatedWorld

    p_exc = -math.expm1(-100 / 15)
    sample = VirtualSample.single(brightness_cps=RATE_CPS / p_exc, g2_0=G2_0, lifetime_ns=TAU_NS,
                                  background=BackgroundSettings(apd_cps=0.0))
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(power_percent=100.0), world)
    tagger = SimTimeTagger(SimTaggerSettings(), world)
    laser.emission_on = True
    tagger.start((1, 2))
    n = 0
    for _ in range(int(duration_s)):
        world.clock.sleep(1.0)
        n += len(tagger.read())
    return n


def short_read_world():
    """The default simulated sample with laser, scanner and a started tagger (fast clock)."""
    from micropl.simulators.clock import VirtualClock
    from micropl.simulators.laser import SimLaser
    from micropl.simulators.sample import VirtualSample
    from micropl.simulators.scanner import SimScanner
    from micropl.simulators.settings import (
        SampleSettings,
        SimLaserSettings,
        SimScannerSettings,
        SimTaggerSettings,
    )
    from micropl.simulators.tagger import SimTimeTagger
    from micropl.simulators.world import SimulatedWorld

    world = SimulatedWorld(VirtualSample.from_settings(SampleSettings()), VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(), world)
    scanner = SimScanner(SimScannerSettings(), world)
    tagger = SimTimeTagger(SimTaggerSettings(), world)
    laser.emission_on = True
    return world, scanner, tagger


def uncached_excitation(world) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Excited emitters by a numpy pass over every emitter (the world's model, no index)."""
    from micropl.simulators.world import REFERENCE_REP_RATE_HZ, spot_weight

    laser, smp = world.laser, world.sample
    s = laser.settings
    x, y, z = world.scanner.true_position_um()
    w = spot_weight(smp.x_um - x, smp.y_um - y, smp.z_um - z, s.spot_fwhm_um, s.objective_na)
    p = -np.expm1(-laser.power_percent * w / s.saturation_power_percent)
    idx = np.flatnonzero(p > 1e-7)
    detected = smp.brightness_cps[idx] / REFERENCE_REP_RATE_HZ * p[idx]
    background = smp.background.apd_cps * laser.power_percent / 100.0
    return idx, detected, float(laser.rep_rate_hz), float(background)


class UncachedReader:
    """The tagger's read without caches: everything re-derived at each read."""

    def __init__(self, world, tagger) -> None:
        from micropl.simulators.tagger import detector_model

        self.world = world
        self.stream = HbtStream(detector_model(tagger.settings), int(world.sample.seed),
                                t_start_ps=int(round(world.clock.now() * 1e12)))

    def read(self) -> np.ndarray:
        world, stream = self.world, self.stream
        t_end_ps = max(int(round(world.clock.now() * 1e12)), stream.t_ps)
        idx, detected, rep_hz, background = uncached_excitation(world)
        t0_ps, t1_ps = stream.block_span_ps(t_end_ps)
        smp = world.sample
        intervals = [smp.on_intervals_s(int(i), t0_ps * 1e-12, t1_ps * 1e-12) for i in idx]
        emitters = Emitters.from_intervals(idx, detected, smp.g2_0[idx],
                                           smp.lifetime_ns[idx] * 1e3, intervals)
        out = stream.advance(t_end_ps, emitters, period_ps_from_rate(rep_hz), background)
        return out.t_ps


def short_reads_us(x_um: float, y_um: float, n_reads: int = 400) -> tuple[float, float, int]:
    """Median µs per 5 ms read of the tagger and of the uncached peer at ``(x_um, y_um)``.

    Also returns the number of reads in which both gave identical tag times.
    """
    world, scanner, tagger = short_read_world()
    scanner.move_to(x_um, y_um)
    tagger.start((1, 2))
    peer = UncachedReader(world, tagger)
    t_new, t_old = [], []
    same = 0
    for _ in range(n_reads):
        world.clock.sleep(0.005)
        t0 = time.perf_counter()
        chunk = tagger.read()
        t1 = time.perf_counter()
        ref = peer.read()
        t2 = time.perf_counter()
        t_new.append(t1 - t0)
        t_old.append(t2 - t1)
        same += bool(np.array_equal(chunk.t_ps, ref))
    return statistics.median(t_new) * 1e6, statistics.median(t_old) * 1e6, same


def main() -> None:
    det = DetectorModel()
    # warm up (numba compile / cache load)
    simulate_constant_emitters(0.05, [RATE_CPS], [G2_0], [TAU_NS], detectors=det, seed=0)
    through_tagger(1)

    duration = 60.0
    t_gen, (t, c) = median_s(lambda: simulate_constant_emitters(
        duration, [RATE_CPS], [G2_0], [TAU_NS], detectors=det, seed=1), 3)
    gen_rate = t.size / t_gen / 1e6

    peer_duration = 5.0
    t_peer, (tp, _) = median_s(lambda: numpy_peer(peer_duration, det, seed=1), 3)
    peer_rate = tp.size / t_peer / 1e6
    print(f"tag generator (60 s, 1e5 cps/APD QD): {gen_rate:.1f} M tags/s "
          f"(peer numpy: {peer_rate:.1f} M tags/s, ratio {gen_rate / peer_rate:.2f}x)")
    print(f"60 s g2 acquisition of a bright QD: {t_gen:.3f} s for {t.size / 1e6:.1f} M tags "
          f"(peer numpy: {t_peer * duration / peer_duration:.3f} s, "
          f"ratio {t_peer * duration / peer_duration / t_gen:.2f}x)")

    t_tag, n_tag = median_s(lambda: through_tagger(20), 3)
    tag_rate = n_tag / t_tag / 1e6
    print(f"SimTimeTagger, 1 s reads: {tag_rate:.1f} M tags/s "
          f"(peer numpy: {peer_rate:.1f} M tags/s, ratio {tag_rate / peer_rate:.2f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.ptu"
        ch = (c + 1).astype(np.uint8)
        t_ptu, _ = median_s(lambda: write_ptu_t2(path, t, ch, sync_rate_hz=REP_HZ), 3)
        ptu_rate = t.size / t_ptu / 1e6
        raw = np.empty(t.size, "<u4")
        t_peer_io, _ = median_s(lambda: raw.tofile(path), 3)
        print(f"PTU T2 writer: {ptu_rate:.1f} M tags/s "
              f"(peer raw numpy tofile of the same size: {t.size / t_peer_io / 1e6:.1f} M tags/s, "
              f"ratio {t_peer_io / t_ptu:.2f}x)")


    world, _, _ = short_read_world()
    smp = world.sample
    qd = int(np.argmax(smp.brightness_cps * ~smp.is_aggregate))
    short_reads_us(float(smp.x_um[qd]), float(smp.y_um[qd]), n_reads=20)  # warm up
    spots = {"at a QD": (float(smp.x_um[qd]), float(smp.y_um[qd]))}
    grid = np.stack(np.meshgrid(np.arange(2.0, 38.0, 0.5), np.arange(2.0, 38.0, 0.5)), -1)
    d2 = ((grid[..., None, 0] - smp.x_um) ** 2 + (grid[..., None, 1] - smp.y_um) ** 2).min(-1)
    empty = np.unravel_index(int(np.argmax(d2)), d2.shape)
    spots["at an empty spot"] = tuple(float(v) for v in grid[empty])
    n_reads = 400
    for label, (x, y) in spots.items():
        new_us, old_us, same = short_reads_us(x, y, n_reads)
        print(f"short read (5 ms, {label}): {new_us:.1f} us/read "
              f"(peer uncached read: {old_us:.1f} us/read, ratio {old_us / new_us:.2f}x; "
              f"identical tags in {same}/{n_reads} reads)")


if __name__ == "__main__":
    main()
