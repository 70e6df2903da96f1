"""``micropl simulate tags``: a synthetic HBT measurement of one QD as a PTU (T2) file.

One QD of the given g²(0), lifetime and detected rate sits in the focus of the
simulated setup (fast clock, laser at 10 MHz and full power, no polystyrene
background, no blinking). The simulated time tagger records APD1 and APD2 with
its default detector model (dark counts, 22 ns dead time, 350 ps jitter, 0.5 %
afterpulsing, 3 ns cable delay on APD2) in one-second reads, and the tags are
written as a PicoQuant PTU T2 file: APD1 as input 1, APD2 as input 2 (channel
fields 0 and 1), ``TTResult_SyncRate`` = 10 MHz.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from micropl.cli import UsageError
from micropl.cli.simulate import (
    check_seed,
    checked_out_path,
    p_exc_per_pulse,
    write_out,
    write_truth,
)

#: Laser repetition rate of the synthetic measurement, Hz.
REP_RATE_HZ = 10e6
#: Largest number of tags one file may hold (memory bound).
MAX_TAGS = 100_000_000
_READ_S = 1.0


def register(kinds: argparse._SubParsersAction) -> None:
    """Add ``tags`` to the ``micropl simulate`` sub-commands."""
    p = kinds.add_parser(
        "tags",
        help="a simulated single-QD HBT measurement as a PTU (T2) file",
        description=(
            "Simulate one QD with the given g²(0) under the laser spot (10 MHz, no blinking, "
            "no polystyrene background) and record both APDs with the simulated time tagger "
            "(dark counts, dead time, jitter, afterpulsing, 3 ns delay on APD2). Writes a "
            "PicoQuant PTU T2 file with APD1 as input 1 and APD2 as input 2."),
    )
    p.add_argument("--out", required=True, metavar="FILE.ptu", help="PTU file to write")
    p.add_argument("--g2-zero", type=float, default=0.2,
                   help="g²(0) of the QD, 0–1 (default 0.2)")
    p.add_argument("--duration", type=float, default=10.0, metavar="S",
                   help="acquisition time, s (default 10)")
    p.add_argument("--rate-cps", type=float, default=5.0e4, metavar="R",
                   help="detected QD photons per APD per s, before dead time and without dark "
                        "counts (≤ 5e6; default 5e4)")
    p.add_argument("--lifetime-ns", type=float, default=5.0, metavar="T",
                   help="PL lifetime, ns (0 < T ≤ 50; default 5)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--json", action="store_true", help="print the truth used as JSON")
    p.set_defaults(func=run)


def _validate(args: argparse.Namespace) -> Path:
    if not (math.isfinite(args.g2_zero) and 0.0 <= args.g2_zero <= 1.0):
        raise UsageError(f"--g2-zero: {args.g2_zero} is outside 0–1")
    if not (math.isfinite(args.duration) and args.duration > 0):
        raise UsageError(f"--duration: {args.duration} must be > 0 s")
    if not (math.isfinite(args.rate_cps) and args.rate_cps > 0):
        raise UsageError(f"--rate-cps: {args.rate_cps} must be > 0")
    if args.rate_cps > REP_RATE_HZ / 2:
        raise UsageError(f"--rate-cps: {args.rate_cps:g} is above {REP_RATE_HZ / 2:g} "
                         "(half the 10 MHz repetition rate per APD)")
    if not (math.isfinite(args.lifetime_ns) and 0 < args.lifetime_ns <= 50):
        raise UsageError(f"--lifetime-ns: {args.lifetime_ns} must be > 0 and ≤ 50 ns")
    check_seed(args.seed)
    expected_tags = 2.0 * args.rate_cps * args.duration
    if expected_tags > MAX_TAGS:
        raise UsageError(f"--duration × --rate-cps: about {expected_tags:.3g} tags, more than "
                         f"the {MAX_TAGS:.0e} one file may hold")
    return checked_out_path(args.out)


def simulate_single_qd_tags(g2_0: float, rate_cps: float, duration_s: float,
                            lifetime_ns: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Record one QD in the focus with the simulated world and tagger.

    Parameters
    ----------
    g2_0 : float
        g²(0) of the QD.
    rate_cps : float
        Detected QD photons per APD per s (before dead time, without dark counts).
    duration_s : float
        Acquisition time, s.
    lifetime_ns : float
        PL lifetime, ns.
    seed : int
        Seed of the sample (and so of the tags).

    Returns
    -------
    t_ps : ndarray of int64, shape (n,)
        Tag times from the start of the acquisition, ps.
    channel : ndarray of uint8, shape (n,)
        Inputs 1 (APD1) and 2 (APD2).
    """
    from micropl.simulators.clock import VirtualClock
    from micropl.simulators.laser import SimLaser
    from micropl.simulators.sample import VirtualSample
    from micropl.simulators.settings import (
        BackgroundSettings,
        SimLaserSettings,
        SimTaggerSettings,
    )
    from micropl.simulators.tagger import SimTimeTagger
    from micropl.simulators.world import REFERENCE_REP_RATE_HZ, SimulatedWorld

    laser_settings = SimLaserSettings(rep_rate_hz=REP_RATE_HZ, power_percent=100.0)
    # without a scanner the focus is at the centre of the sample area, z = 0
    area_um = (40.0, 40.0)
    p_exc = p_exc_per_pulse(laser_settings.power_percent, laser_settings.saturation_power_percent)
    brightness_cps = rate_cps / p_exc * REFERENCE_REP_RATE_HZ / REP_RATE_HZ
    sample = VirtualSample.single(
        x_um=area_um[0] / 2, y_um=area_um[1] / 2, z_um=0.0, brightness_cps=brightness_cps,
        lifetime_ns=lifetime_ns, g2_0=g2_0, blinking=False, seed=seed,
        background=BackgroundSettings(apd_cps=0.0), area_um=area_um)
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(laser_settings, world)
    tagger_settings = SimTaggerSettings()
    tagger = SimTimeTagger(tagger_settings, world)
    apd1, apd2 = tagger_settings.apd_channels
    laser.emission_on = True
    t0_ps = int(round(world.clock.now() * 1e12))
    tagger.start((apd1, apd2))
    pieces_t, pieces_c = [], []
    left_s = duration_s
    while left_s > 0:
        step = min(_READ_S, left_s)
        world.clock.sleep(step)
        chunk = tagger.read()
        pieces_t.append(chunk.t_ps)
        pieces_c.append(chunk.channel)
        left_s -= step
    tagger.stop()
    laser.off()
    tagger.close()
    t_ps = np.concatenate(pieces_t) - t0_ps
    channel = np.concatenate(pieces_c)
    # inputs 1 and 2 whatever the tagger numbering
    channel = np.where(channel == apd1, 1, 2).astype(np.uint8)
    return t_ps, channel


def run(args: argparse.Namespace) -> int:
    """Simulate and write the PTU file; returns the exit code."""
    out = _validate(args)
    from micropl.analysis.ptu_write import write_ptu_t2

    t_ps, channel = simulate_single_qd_tags(args.g2_zero, args.rate_cps, args.duration,
                                            args.lifetime_ns, args.seed)
    comment = (f"micropl simulate tags: one QD, g2(0)={args.g2_zero:g}, "
               f"rate={args.rate_cps:g} cps/APD, lifetime={args.lifetime_ns:g} ns, "
               f"seed={args.seed}")
    write_out(out, lambda tmp: write_ptu_t2(tmp, t_ps, channel, sync_rate_hz=REP_RATE_HZ,
                                            header_extra={"File_Comment": comment}))
    if args.json:
        truth = {
            "g2_0": args.g2_zero,
            "rate_cps": args.rate_cps,
            "duration_s": args.duration,
            "lifetime_ns": args.lifetime_ns,
            "rep_rate_hz": REP_RATE_HZ,
            "seed": args.seed,
            "n_tags": int(t_ps.size),
            "apd_inputs": [1, 2],
            "file": str(out),
        }
        write_truth(truth)
    return 0
