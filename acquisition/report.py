"""The survey report: one PNG with the map, example fits and the statistics.

Panels (as in the reference paper's figures): the PL map with the selected
spots and their IDs; example spectra with their Lorentzian fits; an example g²
histogram with the central and side windows; the FWHM histogram; FWHM against
peak energy with the fitted slope; the g²(0) histogram. QDs flagged
``multiple_emitters`` (:mod:`micropl.analysis.emitters`) are drawn orange on the
map and left out of the statistics; the titles say how many were excluded.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from micropl.acquisition.storage import SessionReader  # noqa: E402
from micropl.acquisition.summary import session_summary  # noqa: E402
from micropl.analysis.emitters import (  # noqa: E402
    EXCLUDING_FLAGS,
    excluded_counts,
    exclusion_text,
)
from micropl.analysis.statistics import survey_statistics  # noqa: E402
from micropl.errors import AnalysisInputError, UserError  # noqa: E402
from micropl.units import energy_ev_from_wavelength_nm  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["write_report", "write_spectral_map_report", "spectral_map_figure"]


def write_report(session_file: str | Path, png: str | Path, *, n_examples: int = 3) -> Path:
    """Draw the survey report of ``session_file`` into ``png``.

    Parameters
    ----------
    session_file : path
        A micropl session file holding a survey.
    png : path
        Output image (written to a temporary name, then renamed).
    n_examples : int
        Example spectra drawn.

    Returns
    -------
    Path
        The written PNG.
    """
    png = Path(png)
    with SessionReader(session_file) as reader:
        summary = session_summary(reader)
        fig, axes = plt.subplots(2, 3, figsize=(16, 9.5), constrained_layout=True)
        _map_panel(axes[0, 0], reader, summary)
        completed = [q for q in summary["qds"] if q["status"] == "completed"]
        single = [q for q in completed if not _excluded(q)]
        _spectra_panel(axes[0, 1], reader, single[:n_examples])
        _g2_panel(axes[0, 2], reader, single[:1])
        _statistics_panels(axes[1], completed)
    excluded = exclusion_text(excluded_counts(q.get("flags") for q in completed))
    fig.suptitle(f"micropl survey — {Path(session_file).name}: "
                 f"{len(completed)} of {len(summary['qds'])} QDs measured, {excluded}",
                 fontsize=13)
    tmp = png.with_name(png.name + ".part")
    fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    tmp.replace(png)
    return png


def _map_panel(ax: Any, reader: SessionReader, summary: dict[str, Any]) -> None:
    lines = [r.record for r in reader.records("map_line") if r.kind in ("map", "")]
    if not lines:
        ax.text(0.5, 0.5, "no map", ha="center", transform=ax.transAxes)
        return
    first_run = reader.records("map_line")[0].run_id
    lines = [r.record for r in reader.records("map_line", run_id=first_run)]
    lines.sort(key=lambda line: line.line_index)
    x_um = lines[0].x_um
    y_um = np.array([line.y_um for line in lines])
    image = np.array([line.counts / line.dwell_s for line in lines]) / 1e3
    step = float(x_um[1] - x_um[0]) if x_um.size > 1 else 1.0
    extent = (x_um[0] - step / 2, x_um[-1] + step / 2, y_um[0] - step / 2, y_um[-1] + step / 2)
    im = ax.imshow(image, origin="lower", extent=extent, cmap="magma",
                   vmax=np.percentile(image, 99.7))
    plt.colorbar(im, ax=ax, label="APD rate (kcounts/s)")
    for q in summary["qds"]:
        colour = {"completed": "cyan", "failed": "red"}.get(q["status"], "white")
        if q["status"] == "completed" and _excluded(q):
            colour = "orange"
        ax.plot(q["x_um"], q["y_um"], "o", mfc="none", mec=colour, ms=9)
        ax.annotate(str(q["id"]), (q["x_um"], q["y_um"]), xytext=(4, 4),
                    textcoords="offset points", color=colour, fontsize=7)
    ax.set_xlabel("x (µm)")
    ax.set_ylabel("y (µm)")
    ax.set_title("PL map and selected QDs\n(cyan: measured, orange: multiple emitters, "
                 "red: failed)", fontsize=10)


def _spectra_panel(ax: Any, reader: SessionReader, qds: list[dict[str, Any]]) -> None:
    for i, q in enumerate(qds):
        # only the tables drawn (a QD's raw tags are most of the file)
        spectra = [r.record for r in reader.records("spectrum", qd_id=q["id"],
                                                    kind="accumulated")]
        fits = [r.record for r in reader.records("spectrum_fit", qd_id=q["id"],
                                                 kind="accumulated")]
        if not spectra or not fits:
            continue
        spectrum, fit = spectra[-1], fits[-1]
        energy_ev = energy_ev_from_wavelength_nm(spectrum.wavelength_nm)
        scale = 1.0 / max(float(np.max(spectrum.counts)), 1.0)
        offset = 1.1 * i
        ax.plot(energy_ev, spectrum.counts * scale + offset, ".", ms=2, color="0.6")
        model = fit.model_counts(spectrum.wavelength_nm)
        ax.plot(energy_ev, np.asarray(model).ravel() * scale + offset, "-", lw=1.5,
                label=f"QD {q['id']}: {q['peak_energy_ev']:.3f} eV, "
                      f"{q['fwhm_mev']:.0f}±{q['fwhm_err_mev']:.1f} meV")
    ax.set_xlim(2.2, 2.7)
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("counts (normalised, offset)")
    ax.set_title("example spectra (grey) with Lorentzian fits")
    ax.legend(fontsize=8, loc="upper right")


def _g2_panel(ax: Any, reader: SessionReader, qds: list[dict[str, Any]]) -> None:
    if not qds:
        ax.text(0.5, 0.5, "no g² measured", ha="center", transform=ax.transAxes)
        return
    qd_id = qds[0]["id"]
    hists = [r.record for r in reader.records("g2_histogram", qd_id=qd_id, kind="final")]
    results = [r.record for r in reader.records("g2_result", qd_id=qd_id, kind="final")]
    if not hists or not results:
        return
    hist, result = hists[-1], results[-1]
    factor = 8  # display bins of 8 × the histogram bin
    n = hist.counts.size // factor * factor
    tau_ns = hist.tau_ps[:n].reshape(-1, factor).mean(axis=1) / 1e3
    counts = hist.counts[:n].reshape(-1, factor).sum(axis=1)
    ax.plot(tau_ns, counts, "-", lw=0.8, color="k")
    lo, hi = result.central_window_ps
    ax.axvspan(lo / 1e3, hi / 1e3, color="tab:red", alpha=0.15)
    for lo, hi in result.side_windows_ps:
        ax.axvspan(lo / 1e3, hi / 1e3, color="tab:blue", alpha=0.08)
    ax.set_xlabel("delay τ (ns)")
    ax.set_ylabel(f"coincidences per {hist.bin_ps * factor / 1e3:.2f} ns")
    ax.set_title(f"QD {qds[0]['id']}: g²(0) = {result.g2_0:.3f} ± {result.g2_0_err:.3f}")


def _excluded(q: dict[str, Any]) -> bool:
    return any(f in EXCLUDING_FLAGS for f in q.get("flags") or [])


def _statistics_panels(axes: Any, qds: list[dict[str, Any]]) -> None:
    """FWHM histogram, FWHM against energy and g²(0) histogram of the single QDs; the
    flagged ones (multiple emitters) are left out and counted in the titles."""
    flagged = np.array([_excluded(q) for q in qds], bool)

    def column(key: str, keep: np.ndarray | None = None) -> np.ndarray:
        values = np.array([np.nan if q.get(key) is None else q[key] for q in qds], float)
        return values if keep is None else values[keep]

    try:
        stats = survey_statistics(column("peak_energy_ev"), column("fwhm_mev"),
                                  column("peak_energy_err_ev"), column("fwhm_err_mev"),
                                  column("g2_0"), column("g2_0_err"),
                                  flags=[q.get("flags") for q in qds])
    except UserError as exc:
        for ax in axes:
            ax.text(0.5, 0.5, f"no statistics: {exc}", ha="center", transform=ax.transAxes,
                    wrap=True)
        return
    ax = axes[0]
    ax.stairs(stats.fwhm_counts, stats.fwhm_edges_mev, fill=True, alpha=0.6)
    ax.set_xlabel("FWHM (meV)")
    ax.set_ylabel("QDs")
    ax.set_title(f"FWHM: mean {stats.fwhm_mean_mev:.1f} ± {stats.fwhm_mean_err_mev:.1f} meV "
                 f"(n = {stats.n_spectra_valid})\n{stats.exclusion_text}", fontsize=10)
    ax = axes[1]
    energy, fwhm = column("peak_energy_ev", ~flagged), column("fwhm_mev", ~flagged)
    ok = np.isfinite(energy) & np.isfinite(fwhm)
    ax.errorbar(energy[ok], fwhm[ok], yerr=column("fwhm_err_mev", ~flagged)[ok],
                xerr=column("peak_energy_err_ev", ~flagged)[ok], fmt="o", ms=4)
    line = stats.fwhm_vs_energy
    if line is not None:
        x = np.linspace(np.nanmin(energy), np.nanmax(energy), 50)
        ax.plot(x, line.intercept + line.slope * x, "-",
                label=f"slope {line.slope:.0f} ± {line.slope_err:.0f} meV/eV, "
                      f"r = {line.pearson_r:.2f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("peak energy (eV)")
    ax.set_ylabel("FWHM (meV)")
    ax.set_title("FWHM against peak energy")
    ax = axes[2]
    g2_all = column("g2_0")
    g2, g2_flagged = g2_all[~flagged], g2_all[flagged]
    g2, g2_flagged = g2[np.isfinite(g2)], g2_flagged[np.isfinite(g2_flagged)]
    if g2.size or g2_flagged.size:
        top = max([1.0, *g2.tolist(), *g2_flagged.tolist()]) + 0.05
        ax.hist([g2, g2_flagged], bins=np.arange(0, top, 0.05), alpha=0.7, stacked=True,
                color=["tab:blue", "tab:orange"], label=["single", "multiple emitters"])
        ax.legend(fontsize=8)
    ax.axvline(0.5, color="k", ls="--", lw=0.8)
    ax.set_xlabel("g²(0) (peak-area ratio)")
    ax.set_ylabel("QDs")
    ax.set_title(f"g²(0): {int(np.sum(g2 < 0.5))} of {g2.size} single QDs below 0.5\n"
                 f"{stats.exclusion_text}", fontsize=10)


# --------------------------------------------------------------------------- spectral maps
def spectral_map_figure(fit: Any, cube: Any = None) -> Any:
    """A figure of a spectral map: integrated PL, peak energy and FWHM maps.

    Parameters
    ----------
    fit : SpectralMapFit
        The per-pixel fit (:func:`micropl.analysis.spectral_map.fit_spectral_cube`).
    cube : SpectralCube, optional
        The cube (its integrated counts are drawn as the first panel).

    Returns
    -------
    matplotlib.figure.Figure
        Pixels whose fit is not ``"ok"`` are blank; the titles give the median
        1σ error of the pixels drawn.
    """
    panels = [("peak energy (eV)", fit.peak_energy_ev, fit.peak_energy_err_ev, "viridis"),
              ("FWHM (meV)", fit.fwhm_mev, fit.fwhm_err_mev, "magma")]
    n = len(panels) + (cube is not None)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), constrained_layout=True)
    axes = np.atleast_1d(axes)
    x, y = np.asarray(fit.x_um), np.asarray(fit.y_um)
    half = 0.5 * (x[1] - x[0] if x.size > 1 else 1.0), 0.5 * (y[1] - y[0] if y.size > 1 else 1.0)
    extent = (x[0] - half[0], x[-1] + half[0], y[0] - half[1], y[-1] + half[1])
    ok = np.asarray(fit.quality) == "ok"
    k = 0
    if cube is not None:
        total = np.nansum(np.asarray(cube.counts), axis=2)
        im = axes[0].imshow(total, origin="lower", extent=extent, cmap="gray")
        fig.colorbar(im, ax=axes[0], label="photoelectrons per pixel")
        axes[0].set_title(f"spectral map, {cube.timing}-timed\n{cube.missing_pixels} pixels missing")
        k = 1
    for ax, (label, values, errors, cmap) in zip(axes[k:], panels):
        shown = np.where(ok, values, np.nan)
        im = ax.imshow(shown, origin="lower", extent=extent, cmap=cmap)
        fig.colorbar(im, ax=ax, label=label)
        err = np.asarray(errors)[ok]
        note = f"median 1σ {np.median(err):.2g}" if err.size else "no line fitted"
        ax.set_title(f"{label}\n{int(ok.sum())} of {ok.size} pixels fitted, {note}")
    for ax in axes:
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    return fig


def write_spectral_map_report(session_file: str | Path, png: str | Path) -> Path:
    """Draw the last spectral map of ``session_file`` (its cube and fit) into ``png``.

    Raises
    ------
    AnalysisInputError
        When the file holds no fitted spectral map.
    """
    from micropl.analysis.spectral_map import SpectralMapFit
    from micropl.records.scans import SpectralCube

    png = Path(png)
    with SessionReader(session_file) as reader:
        fits = reader.records(SpectralMapFit)
        cubes = reader.records(SpectralCube)
    if not fits:
        raise AnalysisInputError(f"{session_file}: holds no fitted spectral map (run "
                                 "'micropl hyperspectral' first)")
    fig = spectral_map_figure(fits[-1].record, cubes[-1].record if cubes else None)
    try:
        fig.savefig(png, dpi=110)
    finally:
        plt.close(fig)
    return png
