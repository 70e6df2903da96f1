"""The statistics figure of a results table (``micropl stats --report``), in the style
of the survey report (:mod:`micropl.acquisition.report`).

Three panels, one colour per group: the FWHM histograms with each group's mean ± its
standard error; FWHM against peak energy with each group's fitted line and slope ± 1σ;
core-only against core/shell, mean FWHM ± standard error per group (with the mean
background-corrected g²(0) in the labels). The title counts the QDs and the exclusions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from micropl.analysis.emitters import exclusion_text
from micropl.reanalysis.stats import GroupStatistics

log = logging.getLogger(__name__)

__all__ = ["write_stats_report"]


def write_stats_report(groups: Sequence[GroupStatistics], png: str | Path, *, by: str,
                       title: str) -> Path:
    """Draw the statistics of ``groups`` into ``png`` (the caller places the file).

    Returns
    -------
    Path
        ``png``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 5.2), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    colours = [f"C{i % 10}" for i in range(len(groups))]
    _histograms(axes[0], groups, colours)
    _energy(axes[1], groups, colours)
    _core_shell(axes[2], groups, colours)
    n = sum(g.n_rows for g in groups)
    excluded: dict[str, int] = {}
    for g in groups:
        for k, v in (g.survey.excluded if g.survey else {}).items():
            excluded[k] = excluded.get(k, 0) + v
    failed = sum(g.status_counts.get("failed", 0) for g in groups)
    fig.suptitle(f"micropl statistics — {title}: {n} QDs in {len(groups)} group(s) by {by}, "
                 f"{failed} failed, {exclusion_text(excluded)}", fontsize=13)
    fig.savefig(png, dpi=90, format="png")
    return Path(png)


def _histograms(ax: Any, groups: Sequence[GroupStatistics], colours: list[str]) -> None:
    for g, colour in zip(groups, colours):
        s = g.survey
        if s is None:
            continue
        ax.stairs(s.fwhm_counts, s.fwhm_edges_mev, fill=True, alpha=0.35, color=colour,
                  label=f"{g.name}: {s.fwhm_mean_mev:.1f} ± {s.fwhm_mean_err_mev:.1f} meV "
                        f"(n = {s.n_spectra_valid})")
    ax.set_xlabel("FWHM (meV)")
    ax.set_ylabel("QDs")
    ax.set_title("FWHM histograms (mean ± standard error)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _energy(ax: Any, groups: Sequence[GroupStatistics], colours: list[str]) -> None:
    for g, colour in zip(groups, colours):
        rows = [r for r in g.rows if r.get("status") != "failed"
                and "multiple_emitters" not in str(r.get("flags") or "")]
        e = np.array([np.nan if r.get("peak_energy_ev") is None else r["peak_energy_ev"]
                      for r in rows], float)
        f = np.array([np.nan if r.get("fwhm_mev") is None else r["fwhm_mev"] for r in rows],
                     float)
        fe = np.array([np.nan if r.get("fwhm_err_mev") is None else r["fwhm_err_mev"]
                       for r in rows], float)
        ok = np.isfinite(e) & np.isfinite(f)
        if not ok.any():
            continue
        ax.errorbar(e[ok], f[ok], yerr=np.where(np.isfinite(fe[ok]), fe[ok], 0.0), fmt="o",
                    ms=3, color=colour, alpha=0.6)
        line = g.survey.fwhm_vs_energy if g.survey else None
        if line is not None:
            x = np.linspace(np.nanmin(e[ok]), np.nanmax(e[ok]), 50)
            ax.plot(x, line.intercept + line.slope * x, "-", color=colour,
                    label=f"{g.name}: slope {line.slope:.0f} ± {line.slope_err:.0f} meV/eV "
                          f"(n = {line.n})")
    ax.set_xlabel("peak energy (eV)")
    ax.set_ylabel("FWHM (meV)")
    ax.set_title("FWHM against peak energy, fitted slope ± 1σ")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _core_shell(ax: Any, groups: Sequence[GroupStatistics], colours: list[str]) -> None:
    drawn = False
    for i, (g, colour) in enumerate(zip(groups, colours)):
        c = g.comparison
        if c is None:
            continue
        d = c.fwhm_mev
        for j, (n, mean, sem, kind) in enumerate(((d.n_a, d.mean_a, d.sem_a, "core"),
                                                  (d.n_b, d.mean_b, d.sem_b, "core/shell"))):
            if n == 0:
                continue
            g2 = c.g2_0_bgcorr.mean_a if j == 0 else c.g2_0_bgcorr.mean_b
            ax.errorbar([i + 0.2 * (2 * j - 1)], [mean], yerr=[0.0 if np.isnan(sem) else sem],
                        fmt="o" if j == 0 else "s", color=colour, capsize=4,
                        label=f"{g.name} {kind}: n = {n}, g²(0) {g2:.2f}")
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no core/shell record in the table", ha="center",
                transform=ax.transAxes)
    ax.set_xticks(range(len(groups)), [g.name for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel("mean FWHM (meV)")
    ax.set_title("core-only (o) against core/shell (□), mean ± standard error")
    if drawn:
        ax.legend(fontsize=8)
