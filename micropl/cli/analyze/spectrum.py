"""``micropl analyze spectrum FILE``: fit the main emission line of a spectrum file.

The file is read by content (:func:`micropl.analysis.formats.read_spectra`): Andor
``.sif``, Princeton ``.spe`` 2.x/3.0, Andor ``.asc`` (with or without its footer) or
text with any header. ``--json`` says what was read: ``format``, ``n_points``,
``n_frames``, ``wavelength_min_nm``, ``wavelength_max_nm``, ``exposure_s`` (null when
the file does not record it), ``accumulations``, ``gain``, ``calibration``. A kinetic
series (several frames) is fitted frame by frame (``frames``: one fit per frame, with
``frame``), or one frame with ``--frame K``.

The same fit as every other path (:func:`micropl.analysis.spectra.fit_spectra`
with its defaults, as the live analysis runs it):

* cosmic-ray spikes are removed first, by the spectrum procedure's function
  (:func:`~micropl.analysis.spectrum_preprocess.remove_cosmic_rays_spatial`),
  judged with the stated noise model or one estimated from the file's scatter;
* the fit range is the automatic one (± 4 FWHM around the strongest line, cut
  before a neighbouring line) unless ``--roi-nm`` sets it (``--peaks N`` fits N
  lines over the whole file or the range);
* error bars follow the one rule of :func:`~micropl.analysis.spectra.error_scale`:
  a file's counts have no known noise model, so errors are scaled by
  ``sqrt(reduced χ²)``; ``--noise-factor`` states one (counts in photoelectrons)
  and then the errors are the model's, widened by ``sqrt(reduced χ²)`` above 1;
* the verdict (``quality``): ``saturated`` (a flat top at the maximum, or a pixel
  at ``--saturation-counts``), ``failed`` (FWHM below the resolution — one pixel,
  or ``--resolution-mev`` — or an area below 3σ), ``poor fit`` (a stated noise
  model and reduced χ² > 3) or ``ok``. Exit code 1 when the fit failed or is
  saturated, 0 otherwise (also for ``poor fit``, which the table and JSON say).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np

from micropl.analysis.formats import read_spectra
from micropl.analysis.spectra import (
    HC_EV_NM,
    MODELS,
    SpectrumFit,
    energy_ev_from_wavelength_nm,
    fit_spectra,
)
from micropl.analysis.spectrum_preprocess import (
    noise_model_from_scatter,
    remove_cosmic_rays_spatial,
)
from micropl.cli.output import print_json
from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``spectrum`` kind under ``micropl analyze``."""
    parser = subparsers.add_parser(
        "spectrum", help="fit the emission line of a spectrum file (text, ASC, SIF, SPE)",
        description="Fit a line in photon energy to a spectrum file: text (wavelength nm, "
                    "counts; any header), Andor .asc or .sif, Princeton .spe 2.x/3.0.")
    parser.add_argument("file", type=Path,
                        help="spectrum file: text (wavelength nm, counts), .asc, .sif, .spe")
    parser.add_argument("--frame", type=int, metavar="K",
                        help="fit only frame K (0-based) of a kinetic series (default: "
                             "every frame)")
    parser.add_argument("--wavelength-nm-range", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="wavelength of the first and the last pixel, nm, for a SIF or "
                             "SPE file without a wavelength calibration (linear axis)")
    parser.add_argument("--model", choices=MODELS, default="lorentzian",
                        help="line shape in energy (default: lorentzian)")
    parser.add_argument("--peaks", type=int, default=1, metavar="N",
                        help="number of lines sharing one background (default 1)")
    parser.add_argument("--roi-nm", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="fit only this wavelength range (default: ± 4 FWHM around the "
                             "main line for one line, the whole file for several)")
    parser.add_argument("--noise-factor", type=float, metavar="F",
                        help="counts are photoelectrons with variance F × signal (2: EMCCD "
                             "with EM gain, 1: Poisson); default: unknown noise, errors "
                             "scaled by sqrt(reduced chi2)")
    parser.add_argument("--read-noise", type=float, default=0.0, metavar="R",
                        help="signal-independent noise, counts rms (with --noise-factor)")
    parser.add_argument("--resolution-mev", type=float, metavar="R",
                        help="spectrograph resolution, meV: a narrower fitted line fails "
                             "(default: one pixel's energy width)")
    parser.add_argument("--saturation-counts", type=float, metavar="C",
                        help="detector ceiling in the file's counts: a pixel at or above it "
                             "marks the fit saturated (a flat top is detected without it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="save a figure of the data and the fit")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.peaks < 1:
        raise AnalysisInputError(f"--peaks must be >= 1, got {args.peaks}")
    for flag, value in (("--noise-factor", args.noise_factor),
                        ("--resolution-mev", args.resolution_mev),
                        ("--saturation-counts", args.saturation_counts)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise AnalysisInputError(f"{flag} must be a number > 0, got {value}")
    if not (math.isfinite(args.read_noise) and args.read_noise >= 0):
        raise AnalysisInputError(f"--read-noise must be >= 0, got {args.read_noise}")


def clean_spectrum(counts: np.ndarray, noise_factor: float | None,
                   read_noise: float) -> tuple[np.ndarray, int]:
    """Remove cosmic-ray spikes as the spectrum procedure does; returns (counts, n removed).

    The outlier test uses the stated noise model, or (unknown noise) the one
    :func:`noise_model_from_scatter` estimates from the spectrum.
    """
    if counts.size < 9:
        return counts, 0
    if noise_factor is None:
        noise_factor, read_noise = noise_model_from_scatter(counts)
    cleaned, mask = remove_cosmic_rays_spatial(counts, noise_factor=noise_factor,
                                               read_noise=read_noise)
    return cleaned, int(mask.sum())


def run(args: argparse.Namespace) -> int:
    """Read, clean, fit, report; returns the exit code (1 when a fit failed)."""
    _check_args(args)
    series = read_spectra(args.file, wavelength_nm_range=(
        tuple(args.wavelength_nm_range) if args.wavelength_nm_range is not None else None))
    if args.frame is not None:
        series.frame(args.frame)  # refuses a frame the file does not hold
        frames = [args.frame]
    else:
        frames = list(range(series.n_frames))
    if args.plot is not None and len(frames) > 1:
        raise AnalysisInputError(f"{args.file}: --plot draws one frame; the file holds "
                                 f"{series.n_frames}: add --frame K")
    read_info = series.describe()
    results, failed = [], []
    for k in frames:
        summary, fit = _fit_frame(args, series, k)
        if series.n_frames > 1:
            summary["frame"] = k
        results.append(summary)
        if not bool(fit.success):
            failed.append((k, fit))
    if len(results) == 1:
        out = {**results[0], **read_info}
    else:
        out = {"file": str(args.file), **read_info, "frames": results}
    if args.json:
        print_json(out)
    else:
        for summary in results:
            _print_table({**summary, **read_info})
    for k, fit in failed:
        where = f" frame {k}" if series.n_frames > 1 else ""
        sys.stderr.write(f"micropl: fit {fit.quality.item()}: {args.file}{where}: "
                         f"{fit.message.item()}\n")
    return 1 if failed else 0


def _fit_frame(args: argparse.Namespace, series, k: int) -> tuple[dict, SpectrumFit]:
    """Clean and fit frame ``k``; its summary (the fit's dict) and the fit."""
    wavelength_nm, counts = series.frame(k)
    cleaned, n_cosmic = clean_spectrum(counts, args.noise_factor, args.read_noise)
    roi = tuple(args.roi_nm) if args.roi_nm is not None else "auto"
    fit = fit_spectra(wavelength_nm, cleaned, args.model, noise_factor=args.noise_factor,
                      read_noise=args.read_noise, n_peaks=args.peaks, roi_nm=roi,
                      resolution_mev=args.resolution_mev,
                      saturation_counts=args.saturation_counts)
    summary = fit.to_dict()
    summary["file"] = str(args.file)
    summary["noise_model"] = "unknown" if args.noise_factor is None else "stated"
    summary["cosmic_rays_removed"] = n_cosmic
    if args.plot is not None:
        _plot(args.plot, wavelength_nm, cleaned, fit, args.file.name)
        summary["plot"] = str(args.plot)
    return summary, fit


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

    frame = f" frame {s['frame']}" if "frame" in s else ""
    table = Table(title=f"{s['file']}{frame} ({s['format']}, {s['n_points']} points) — "
                        f"{s['model']} fit", show_header=True)
    table.add_column("quantity")
    table.add_column("value ± 1σ", justify="right")
    table.add_column("unit")
    table.add_row("peak energy", _fmt(s["peak_energy_ev"], s["peak_energy_err_ev"], 1, 6), "eV")
    table.add_row("peak wavelength", _fmt(s["peak_wavelength_nm"], s["peak_wavelength_err_nm"],
                                          1, 4), "nm")
    table.add_row("FWHM", _fmt(s["fwhm_mev"], s["fwhm_err_mev"], 1, 4), "meV")
    table.add_row("area", _fmt(s["area"], s["area_err"], 1, 1), "counts")
    table.add_row("background", _fmt(s["background"], s["background_err"], 1, 2), "counts/pixel")
    table.add_row("reduced χ²", _fmt(s["reduced_chi2"], None), f"{s['dof']} dof")
    table.add_row("errors", _errors_text(s), "")
    table.add_row("fit range", f"{s['roi_nm'][0]:.3f} – {s['roi_nm'][1]:.3f}", "nm")
    table.add_row("quality", _quality_text(s), "")
    Console(file=sys.stdout, width=100).print(table)


def _errors_text(s: dict) -> str:
    if s["noise_model"] == "unknown":
        return "scaled by √χ² (noise unknown)"
    return "noise model × √χ²" if s["errors_scaled"] else "noise model"


def _quality_text(s: dict) -> str:
    quality = s["quality"]
    if quality == "ok":
        return "ok"
    label = {"failed": "FAILED", "saturated": "SATURATED"}.get(quality, quality)
    message = s["message"]
    if message.startswith(f"{quality}: "):
        message = message[len(quality) + 2:]
    return f"{label}: {message}"



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
