"""``micropl simulate …``: data from the simulated setup without running a procedure.

``micropl simulate spectrum`` puts one QD of known peak energy and FWHM under the
laser spot of the simulated setup (fast clock, 300 g/mm grating centred on the QD,
cold EMCCD) and writes one full-vertical-binning frame as CSV.
``micropl simulate tags`` lives in :mod:`micropl.cli.simulate.tags`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from micropl.cli import UsageError
from micropl.cli.output import print_json
from micropl.units import HC_EV_NM

_ENERGY_RANGE_EV = (1.5, 3.5)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate`` and its sub-commands."""
    parser = subparsers.add_parser("simulate", help="write data from the simulated setup")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True,
                                  parser_class=type(parser))
    _register_spectrum(kinds)
    from micropl.cli.simulate import tags  # imports helpers from here

    tags.register(kinds)


def _register_spectrum(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "spectrum",
        help="one simulated single-QD spectrum (EMCCD, FVB) as CSV",
        description=(
            "Simulate one QD with the given peak energy and Lorentzian FWHM under the laser "
            "spot (no blinking, no spectral diffusion, weak polystyrene background), take one "
            "full-vertical-binning EMCCD frame through the 300 g/mm grating centred on the QD, "
            "and write 'wavelength_nm,counts'. counts are raw ADU minus the camera bias "
            "(500 ADU), so they can be slightly negative; --raw keeps the bias."),
    )
    p.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    p.add_argument("--energy-ev", type=float, default=2.41,
                   help="QD peak energy, eV (1.5–3.5; default 2.41)")
    p.add_argument("--fwhm-mev", type=float, default=70.0,
                   help="QD Lorentzian FWHM, meV (> 0, ≤ 1000; default 70)")
    p.add_argument("--brightness-cps", type=float, default=3.0e4,
                   help="QD detected counts/s per APD at saturation (default 3e4)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--exposure-s", type=float, default=1.0,
                   help="exposure time, s (0 < s ≤ 3600; default 1)")
    p.add_argument("--em-gain", type=int, default=100, help="EM gain 1–300 (default 100)")
    p.add_argument("--raw", action="store_true", help="write raw ADU including the bias")
    p.add_argument("--json", action="store_true",
                   help="print the truth used (energy, FWHM, brightness, gain, …) as JSON")
    p.set_defaults(func=run_spectrum)


def _validate(args: argparse.Namespace) -> Path:
    lo, hi = _ENERGY_RANGE_EV
    if not (math.isfinite(args.energy_ev) and lo <= args.energy_ev <= hi):
        raise UsageError(f"--energy-ev: {args.energy_ev} is outside {lo}–{hi} eV")
    if not (math.isfinite(args.fwhm_mev) and 0 < args.fwhm_mev <= 1000):
        raise UsageError(f"--fwhm-mev: {args.fwhm_mev} must be > 0 and ≤ 1000 meV")
    if not (math.isfinite(args.brightness_cps) and 0 < args.brightness_cps <= 1e8):
        raise UsageError(f"--brightness-cps: {args.brightness_cps} must be > 0 and ≤ 1e8")
    if not (math.isfinite(args.exposure_s) and 0 < args.exposure_s <= 3600):
        raise UsageError(f"--exposure-s: {args.exposure_s} must be > 0 and ≤ 3600 s")
    if not 1 <= args.em_gain <= 300:
        raise UsageError(f"--em-gain: {args.em_gain} is outside 1–300")
    check_seed(args.seed)
    return checked_out_path(args.out)


def check_seed(seed: int) -> None:
    """Refuse a negative ``--seed`` (UsageError)."""
    if seed < 0:
        raise UsageError(f"--seed: {seed} must be ≥ 0")


_OUT_HINT = "choose another --out"


def checked_out_path(out_arg: str) -> Path:
    """The ``--out`` file as a Path, refused unless it can be created.

    Refused (one line, exit 2): an existing file or directory (nothing is
    overwritten), a missing parent folder, a parent that is a file, a folder
    without write permission, a name too long. The file itself is later
    created exclusively (:func:`write_out`).
    """
    from micropl.acquisition.storage import prepare_output

    out = Path(out_arg)
    if os.path.isdir(out):
        raise UsageError(f"--out: {out} is a directory")
    return prepare_output(out, hint=_OUT_HINT, make_parents=False)


def write_out(out: Path, write: Callable[[Path], object]) -> None:
    """Create ``out`` with ``write(tmp)``: exclusively, never replacing a file."""
    from micropl.acquisition.storage import write_new_file

    write_new_file(out, write, hint=_OUT_HINT)


def write_truth(truth: dict) -> None:
    """Print the simulation truth as one line of JSON on stdout (``--json``)."""
    print_json(truth)


def p_exc_per_pulse(power_percent: float, saturation_power_percent: float) -> float:
    """Excitation probability per pulse, ``1 − exp(−P / P_sat)``, of a QD in the focus."""
    return -math.expm1(-power_percent / saturation_power_percent)


def run_spectrum(args: argparse.Namespace) -> int:
    """Simulate and write one spectrum; returns the exit code."""
    out = _validate(args)

    from micropl.simulators.camera import SimCamera
    from micropl.simulators.clock import VirtualClock
    from micropl.simulators.laser import SimLaser
    from micropl.simulators.sample import VirtualSample
    from micropl.simulators.scanner import SimScanner
    from micropl.simulators.settings import (
        SimCameraSettings,
        SimLaserSettings,
        SimScannerSettings,
        SimSpectrographSettings,
    )
    from micropl.simulators.spectrograph import SimSpectrograph
    from micropl.simulators.world import SimulatedWorld

    scanner_settings = SimScannerSettings()
    x_um, y_um, _ = scanner_settings.start_um
    sample = VirtualSample.single(x_um=x_um, y_um=y_um, energy_ev=args.energy_ev,
                                  fwhm_mev=args.fwhm_mev, brightness_cps=args.brightness_cps,
                                  seed=args.seed)
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(), world)
    SimScanner(scanner_settings, world)
    center_nm = HC_EV_NM / args.energy_ev
    spectrograph = SimSpectrograph(SimSpectrographSettings(grating=2), world)
    spectrograph.center_wavelength_nm = center_nm
    cam_settings = SimCameraSettings(start_temperature_c=-80.0, exposure_s=args.exposure_s,
                                     em_gain=args.em_gain, read_mode="fvb")
    camera = SimCamera(cam_settings, world)
    laser.emission_on = True
    frame = camera.acquire()
    laser.off()
    wavelength_nm = spectrograph.wavelength_axis_nm(camera.sensor_shape[1], camera.pixel_um)
    clipped = clipped_pixels(frame.counts, camera.adc_max_adu)
    if clipped:
        sys.stderr.write(f"micropl: warning: {out}: {clipped} pixel(s) clipped at the ADC "
                         f"ceiling ({camera.adc_max_adu} ADU): the line is saturated; lower "
                         f"--brightness-cps, --exposure-s or --em-gain\n")
    counts = frame.counts.astype(int) - (0 if args.raw else int(round(cam_settings.bias_adu)))
    lines = ["wavelength_nm,counts"]
    lines += [f"{wl:.5f},{c}" for wl, c in zip(wavelength_nm.tolist(), counts.tolist())]
    text = "\n".join(lines) + "\n"
    write_out(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if args.json:
        truth = {
            "energy_ev": args.energy_ev,
            "fwhm_mev": args.fwhm_mev,
            "brightness_cps": args.brightness_cps,
            "p_exc_per_pulse": _p_exc(laser),
            "em_gain": frame.em_gain,
            "exposure_s": frame.exposure_s,
            "seed": args.seed,
            "grating_grooves_per_mm": spectrograph.gratings[spectrograph.grating - 1].grooves_per_mm,
            "center_wavelength_nm": center_nm,
            "bias_adu": cam_settings.bias_adu,
            "bias_subtracted": not args.raw,
            "e_per_adu": cam_settings.e_per_adu,
            "adc_max_adu": camera.adc_max_adu,
            "clipped_pixels": clipped,
            "file": str(out),
        }
        write_truth(truth)
    return 0


def clipped_pixels(raw_adu, adc_max_adu: int) -> int:
    """Pixels of a raw frame clipped by the ADC (at its ceiling or at 0)."""
    raw = np.asarray(raw_adu)
    return int(np.count_nonzero((raw >= adc_max_adu) | (raw <= 0)))


def _p_exc(laser) -> float:
    """Excitation probability per pulse of a QD in the focus at the laser's power."""
    return p_exc_per_pulse(laser.power_percent, laser.settings.saturation_power_percent)
