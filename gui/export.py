"""Save what you see: a plot as PNG or SVG (pyqtgraph's exporters), a table as CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pyqtgraph as pg
import pyqtgraph.exporters as exporters
from PyQt5 import QtWidgets

log = logging.getLogger(__name__)

__all__ = ["PLOT_SUFFIXES", "export_plot", "export_table"]

#: File types a plot is saved as.
PLOT_SUFFIXES = (".png", ".svg")


def export_plot(plot: pg.PlotWidget, path: str | Path, *, width_px: int | None = None) -> Path:
    """Save ``plot`` as it is shown (range, curves, colour bar) to a PNG or SVG file.

    Parameters
    ----------
    plot : pg.PlotWidget
    path : path
        Ends in ``.png`` or ``.svg``.
    width_px : int, optional
        PNG width in pixels (default: as on screen).

    Raises
    ------
    ValueError
        Another suffix.
    OSError
        The file could not be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PLOT_SUFFIXES:
        raise ValueError(f"{path}: a plot is saved as .png or .svg, not {suffix or 'no suffix'}")
    # The plot's whole scene: axes, legend, and a map's colour bar beside its view.
    scene = plot.scene()
    if suffix == ".png":
        exporter = exporters.ImageExporter(scene)
        if width_px is not None:
            exporter.parameters()["width"] = int(width_px)
    else:
        exporter = exporters.SVGExporter(scene)
    exporter.export(str(path))
    if not path.is_file():
        raise OSError(f"{path}: the plot was not written")
    log.info("plot saved to %s", path)
    return path


def export_table(table: QtWidgets.QTableWidget, path: str | Path) -> Path:
    """Save a table's header and cells, as shown, to a CSV file (UTF-8)."""
    path = Path(path)
    headers = [table.horizontalHeaderItem(c).text() if table.horizontalHeaderItem(c) else str(c)
               for c in range(table.columnCount())]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        for r in range(table.rowCount()):
            writer.writerow([table.item(r, c).text() if table.item(r, c) else ""
                             for c in range(table.columnCount())])
    log.info("table saved to %s (%d rows)", path, table.rowCount())
    return path
