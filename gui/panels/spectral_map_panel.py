"""Spectral map panel: the peak-energy and FWHM maps of a hyperspectral run.

Shows a :class:`~micropl.analysis.spectral_map.SpectralMapFit` (the per-pixel fit
the hyperspectral procedure stores) as two colour maps with colour bars; pixels
whose fit is not ``"ok"`` are blank. The panel follows a session stream by
itself (:meth:`SpectralMapPanel.follow`): the stream's thread hands each fit to
the GUI thread through a queued signal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.analysis.spectral_map import SpectralMapFit
from micropl.gui.widgets import plot_widget

__all__ = ["SpectralMapPanel"]


class SpectralMapPanel(QtWidgets.QWidget):
    """Peak energy (eV) and FWHM (meV) maps of the last spectral map."""

    #: A fit arrived (from any thread); shown in the GUI thread.
    fit_arrived = QtCore.pyqtSignal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.status = QtWidgets.QLabel("no spectral map yet (run 'hyperspectral')")
        layout.addWidget(self.status)
        row = QtWidgets.QHBoxLayout()
        layout.addLayout(row, 1)
        self.images: dict[str, pg.ImageItem] = {}
        self.bars: dict[str, pg.ColorBarItem] = {}
        self.plots: dict[str, pg.PlotWidget] = {}
        for key, title, cmap in (("energy", "peak energy (eV)", "viridis"),
                                 ("fwhm", "FWHM (meV)", "magma")):
            plot = plot_widget("x", "y", title=title, x_units="µm", y_units="µm")
            plot.getViewBox().setAspectLocked(True)
            image = pg.ImageItem(axisOrder="row-major")
            plot.addItem(image)
            bar = pg.ColorBarItem(colorMap=pg.colormap.get(cmap), interactive=False)
            bar.setImageItem(image, insert_in=plot.getPlotItem())
            row.addWidget(plot, 1)
            self.images[key], self.bars[key], self.plots[key] = image, bar, plot
        self.fit: SpectralMapFit | None = None
        self.fit_arrived.connect(self.show_fit, QtCore.Qt.QueuedConnection)
        self._worker: Any = None

    def follow(self, stream: Any) -> None:
        """Show every spectral-map fit published on ``stream`` (a session's stream)."""
        self._worker = stream.attach("gui-spectral-map", self._on_record, maxlen=4096)

    def unfollow(self, stream: Any) -> None:
        """Stop following ``stream`` (safe when not following)."""
        if self._worker is not None:
            stream.unsubscribe(self._worker.subscription)
            self._worker = None

    def _on_record(self, item: Any) -> None:
        record = getattr(item, "record", item)
        if isinstance(record, SpectralMapFit):
            self.fit_arrived.emit(record)

    def show_fit(self, fit: SpectralMapFit) -> None:
        """Draw ``fit``'s peak-energy and FWHM maps (pixels not ``"ok"`` blank)."""
        self.fit = fit
        ok = np.asarray(fit.quality) == "ok"
        x, y = np.asarray(fit.x_um, float), np.asarray(fit.y_um, float)
        dx = float(x[1] - x[0]) if x.size > 1 else 1.0
        dy = float(y[1] - y[0]) if y.size > 1 else 1.0
        rect = QtCore.QRectF(x[0] - dx / 2, y[0] - dy / 2, dx * x.size, dy * y.size)
        for key, values in (("energy", fit.peak_energy_ev), ("fwhm", fit.fwhm_mev)):
            shown = np.where(ok, np.asarray(values, float), np.nan)
            self.images[key].setImage(shown, autoLevels=False)
            self.images[key].setRect(rect)
            finite = shown[np.isfinite(shown)]
            if finite.size:
                low, high = float(finite.min()), float(finite.max())
                self.bars[key].setLevels((low, high if high > low else low + 1e-9))
        errors = np.asarray(fit.peak_energy_err_ev)[ok], np.asarray(fit.fwhm_err_mev)[ok]
        if ok.any():
            self.status.setText(
                f"{int(ok.sum())} of {ok.size} pixels fitted ({fit.model}); median 1σ: "
                f"{np.median(errors[0]) * 1e3:.2g} meV in energy, "
                f"{np.median(errors[1]):.2g} meV in FWHM")
        else:
            self.status.setText(f"no line fitted in the {ok.size} pixels")
