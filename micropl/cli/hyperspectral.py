"""``micropl hyperspectral``: a spectral map (a spectrum per pixel) fitted into maps.

Runs :class:`~micropl.acquisition.procedures.Hyperspectral` like the other
acquisition commands (pre-flight check before any file is made or the laser goes
on, progress, a summary), then prints the spectral map's figures and optionally
draws the peak-energy and FWHM maps into a PNG (``--report``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from micropl.acquisition.config import format_validation_error
from micropl.acquisition.procedures import Hyperspectral
from micropl.cli import UsageError
from micropl.cli.output import print_json

HELP = "record a spectral map (a spectrum per pixel) and fit peak-energy and FWHM maps"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``hyperspectral``."""
    from micropl.cli.run import _common

    parser = subparsers.add_parser("hyperspectral", help=HELP, description=HELP)
    _common(parser, out_required=True)
    parser.add_argument("--timing", choices=("auto", "hardware", "software"),
                        help="pixel clock (default auto: hardware when the scanner and the "
                             "camera's trigger can)")
    parser.add_argument("--report", type=Path, help="PNG of the peak-energy and FWHM maps")
    parser.set_defaults(func=run, procedure="hyperspectral")


def build(params: list[str], timing: str | None) -> Hyperspectral:
    """The procedure from ``KEY=VALUE`` parameters (values in YAML) and ``--timing``."""
    values: dict[str, Any] = {}
    for item in params:
        key, sep, text = item.partition("=")
        if not sep or not key or "." in key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        try:
            values[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            values[key] = text
    if timing is not None:
        values["timing"] = timing
    try:
        return Hyperspectral.model_validate(values)
    except ValidationError as exc:
        raise UsageError(f"hyperspectral parameters: {format_validation_error(exc)}") from None


def spectral_map_summary(result_value: Any) -> dict[str, Any]:
    """The spectral map's figures (JSON key ``spectral_map``)."""
    cube, fit, timing = result_value.cube, result_value.fit, result_value.timing
    out: dict[str, Any] = {"timing": timing.timing, "timing_reason": timing.reason,
                           "shape": list(cube.counts.shape), "missing_pixels": cube.missing_pixels,
                           "exposure_s": cube.exposure_s, "dwell_s": cube.dwell_s}
    if fit is not None:
        ok = fit.ok
        out["ok_fits"] = int(ok.sum())
        for name in ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev"):
            values = np.asarray(getattr(fit, name))[ok]
            out[f"median_{name}"] = float(np.median(values)) if values.size else None
    return out


def run(args: argparse.Namespace) -> int:
    """Run the spectral map; exit 0 when it completed, 1 when the run failed."""
    from micropl.acquisition import logs
    from micropl.acquisition.storage import SessionReader, prepare_output, write_new_file
    from micropl.acquisition.summary import session_summary
    from micropl.cli.info import print_summary
    from micropl.cli.run import _refuse_overwrite, execute

    if args.out is None:
        raise UsageError("hyperspectral: --out FILE.h5 is required")
    procedure = build(args.param, args.timing)
    _refuse_overwrite(args.out)
    if args.report is not None:
        prepare_output(args.report, hint="choose another --report")
    result = execute(procedure, args.config, args.out, fast=args.fast, quiet=args.json)
    with SessionReader(args.out) as reader:
        summary = session_summary(reader)
    summary["result"] = {"status": result.status, "reason": result.reason,
                         "procedure": result.procedure, "run_id": result.run_id}
    if result.status == "completed" and result.value is not None:
        section = spectral_map_summary(result.value)
        if args.report is not None and result.value.fit is not None:
            from micropl.acquisition.report import write_spectral_map_report

            write_new_file(args.report, lambda tmp: write_spectral_map_report(args.out, tmp),
                           hint="choose another --report")
            section["report"] = str(args.report)
        summary["spectral_map"] = section
    if args.json:
        print_json(summary)
    else:
        print_summary(summary)
        if "spectral_map" in summary:
            sys.stdout.write("spectral map: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in summary["spectral_map"].items()) + "\n")
    if result.status != "completed":
        sys.stderr.write(f"micropl: run {result.status}: {result.reason}{logs.hint()}\n")
        return 1
    return 0
