"""``micropl analyze spectrum FILE``: fit the main emission line of a spectrum file.

By default the strongest line is fitted alone, over ± 2 estimated FWHM around
it (``--roi-nm`` sets the range; ``--peaks N`` fits N lines over the range).
The file's counts have no known noise model, so errors are scaled by
``sqrt(reduced χ²)``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from micropl.analysis.errors import AnalysisInputError
from micropl.analysis.spectra import (
    HC_EV_NM,
    MODELS,
    SpectrumFit,
    energy_ev_from_wavelength_nm,
    fit_spectra,
    main_line_roi_nm,
)
from micropl.analysis.spectrum_files import read_spectrum_file

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``spectrum`` kind under ``micropl analyze``."""
    parser = subparsers.add_parser(
        "spectrum", help="fit the emission line of a two-column spectrum file",
        description="Fit a line in photon energy to a two-column (wavelength nm, counts) file.")
    parser.add_argument("file", type=Path, help="text file: wavelength (nm), counts")
    parser.add_argument("--model", choices=MODELS, default="lorentzian",
                        help="line shape in energy (default: lorentzian)")
    parser.add_argument("--peaks", type=int, default=1, metavar="N",
                        help="number of lines sharing one background (default 1)")
    parser.add_argument("--roi-nm", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="fit only this wavelength range (default: around the main line "
                             "for one line, the whole file for several)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="save a figure of the data and the fit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Read, fit, report; returns the exit code (1 when the fit failed)."""
    if args.peaks < 1:
        raise AnalysisInputError(f"--peaks must be >= 1, got {args.peaks}")
    wavelength_nm, counts = read_spectrum_file(args.file)
    if args.roi_nm is not None:
        roi = tuple(args.roi_nm)
    elif args.peaks == 1:
        roi = main_line_roi_nm(wavelength_nm, counts)
    else:
        roi = None
    fit = fit_spectra(wavelength_nm, counts, args.model, noise_factor=None, n_peaks=args.peaks,
                      roi_nm=roi)
    summary = fit.to_dict()
    summary["file"] = str(args.file)
    summary["roi_nm"] = list(roi) if roi is not None else None
    if args.plot is not None:
        _plot(args.plot, wavelength_nm, counts, fit, args.file.name)
        summary["plot"] = str(args.plot)
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        _print_table(summary)
    if not bool(fit.success):
        sys.stderr.write(f"micropl: fit failed: {args.file}: {fit.message.item()}\n")
        return 1
    return 0


def _fmt(value, err, scale=1.0, digits=4) -> str:
    if value is None:
        return "nan"
    if np.ndim(value):
        return ", ".join(_fmt(v, e, scale, digits) for v, e in zip(value, err))
    if err is None:
        return f"{value * scale:.{digits}g}"
    return f"{value * scale:.{digits}f} ± {err * scale:.{digits}f}"


def _print_table(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{s['file']} — {s['model']} fit", show_header=True)
    table.add_column("quantity")
    table.add_column("value ± 1σ", justify="right")
    table.add_column("unit")
    table.add_row("peak energy", _fmt(s["peak_energy_ev"], s["peak_energy_err_ev"], 1, 6), "eV")
    table.add_row("peak wavelength", _fmt(s["peak_wavelength_nm"], s["peak_wavelength_err_nm"],
                                          1, 4), "nm")
    table.add_row("FWHM", _fmt(s["fwhm_mev"], s["fwhm_err_mev"], 1, 4), "meV")
    table.add_row("area", _fmt(s["area"], s["area_err"], 1, 1), "counts")
    table.add_row("background", _fmt(s["background"], s["background_err"], 1, 2), "counts/pixel")
    table.add_row("reduced χ²", _fmt(s["reduced_chi2"], None), "")
    table.add_row("status", "ok" if s["success"] else f"FAILED: {s['message']}", "")
    Console(file=sys.stdout, width=100).print(table)


def _swap_ev_nm(x):
    """eV ↔ nm (the map is its own inverse); 0 maps to inf without a warning."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return HC_EV_NM / x


def _plot(path: Path, wavelength_nm, counts, fit: SpectrumFit, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    energy = energy_ev_from_wavelength_nm(wavelength_nm)
    fig = Figure(figsize=(7, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(energy, counts, "o", ms=3, color="0.3", label="data")
    fit_wl = fit.wavelength_nm
    if np.all(np.isfinite(fit.params)):
        ax.plot(energy_ev_from_wavelength_nm(fit_wl), fit.model_counts(), "-", color="C3",
                label=f"{fit.model} fit")
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("counts per pixel")
    ax.set_title(title)
    ax.legend(loc="best")
    secondary = ax.secondary_xaxis("top", functions=(_swap_ev_nm, _swap_ev_nm))
    secondary.set_xlabel("wavelength (nm)")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise AnalysisInputError(f"cannot write plot {path}: {exc.strerror or exc}") from exc
