"""Spectrum panel: live frame, accumulated spectrum, fit curve, fit table, nm/eV axis."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.analysis.spectra import SpectrumFit, energy_ev_from_wavelength_nm
from micropl.gui.widgets import DataFollower, fixed_lines_label, plot_widget, set_label
from micropl.records import Spectrum

__all__ = ["SpectrumPanel", "fit_rows", "PLOT_MIN_HEIGHT_PX"]

#: Smallest height of the spectrum plot, px (it never collapses to a strip).
PLOT_MIN_HEIGHT_PX = 100

# The two numbers looked at most come first: they stay visible in a short panel.
_TABLE_ROWS = ("peak energy (eV)", "FWHM (meV)", "peak wavelength (nm)", "area (counts)",
               "background (counts/px)", "reduced χ²")


def _pair(value: np.ndarray, error: np.ndarray | None, fmt: str) -> tuple[str, str]:
    v = float(np.asarray(value, float).ravel()[0])
    e = "" if error is None else format(float(np.asarray(error, float).ravel()[0]), fmt)
    return format(v, fmt), e


def fit_rows(fit: SpectrumFit) -> list[tuple[str, str, str]]:
    """(quantity with unit, value, 1σ error) of a single-spectrum fit, as table text."""
    values = [
        _pair(fit.peak_energy_ev, fit.peak_energy_err_ev, ".5f"),
        _pair(fit.fwhm_mev, fit.fwhm_err_mev, ".2f"),
        _pair(fit.peak_wavelength_nm, fit.peak_wavelength_err_nm, ".3f"),
        _pair(fit.area, fit.area_err, ".4g"),
        _pair(fit.background, fit.background_err, ".3g"),
        _pair(fit.reduced_chi2, None, ".3f"),
    ]
    return [(name, v, e) for name, (v, e) in zip(_TABLE_ROWS, values)]


class SpectrumPanel(QtWidgets.QWidget):
    """Shows the newest frame and accumulated spectrum with their fit curves."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = plot_widget("wavelength (nm)", "counts per pixel")
        self.plot.addLegend(offset=(-10, 10))
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.frame_curve = self.plot.plot(pen=pg.mkPen((150, 150, 150), width=1),
                                          name="frame")
        self.acc_curve = self.plot.plot(pen=pg.mkPen("#4af", width=1.5), name="accumulated")
        self.fit_curve = self.plot.plot(pen=pg.mkPen("#f84", width=2), name="fit")
        self.follower = DataFollower(self.plot)
        self.axis_box = QtWidgets.QComboBox()
        self.axis_box.addItems(["wavelength (nm)", "energy (eV)"])
        self.axis_box.currentIndexChanged.connect(self._axis_changed)
        self.title = fixed_lines_label(1, "no spectrum yet")
        self.title.setStyleSheet("color: gray")
        #: Which run, QD and position the spectrum shown belongs to.
        self.source = fixed_lines_label(1, "no run")
        self.source.setStyleSheet("font-weight: bold")
        self.table = QtWidgets.QTableWidget(len(_TABLE_ROWS), 3)
        self.table.setHorizontalHeaderLabels(["quantity", "value", "± 1σ"])
        self.table.verticalHeader().hide()
        row_px = self.table.fontMetrics().height() + 6
        self.table.verticalHeader().setDefaultSectionSize(row_px)
        # Header + the first two rows (energy, FWHM) always in view.
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height()
                                    + 2 * row_px + 2 * self.table.frameWidth())
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Stretch)
        self.table.setMaximumHeight(200)
        for i, name in enumerate(_TABLE_ROWS):
            self.table.setItem(i, 0, QtWidgets.QTableWidgetItem(name))
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.source, 1)
        top.addWidget(QtWidgets.QLabel("axis:"))
        top.addWidget(self.axis_box)
        self.plot.setMinimumHeight(PLOT_MIN_HEIGHT_PX)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.table, 1)
        self._frame: Spectrum | None = None
        self._acc: Spectrum | None = None
        self._fit: SpectrumFit | None = None
        self._fit_of: Spectrum | None = None
        self._redraw()

    def set_source(self, source: object) -> None:
        """Say which run, QD and position the spectrum shown is of (a ``Source``)."""
        text = source.text()
        if self.source.text() != text:
            self.source.setText(text)

    def clear(self, note: str = "no spectrum") -> None:
        """Show nothing (the QD chosen has no spectrum): no other QD's data stay."""
        self._frame = self._acc = self._fit = self._fit_of = None
        self.title.setText(note)
        for i in range(self.table.rowCount()):
            for col in (1, 2):
                self.table.setItem(i, col, QtWidgets.QTableWidgetItem(""))
        self._redraw()

    @property
    def energy_axis(self) -> bool:
        """True when the x axis shows photon energy in eV."""
        return self.axis_box.currentIndex() == 1

    def set_energy_axis(self, on: bool) -> None:
        """Switch the x axis between nm (False) and eV (True)."""
        self.axis_box.setCurrentIndex(1 if on else 0)

    def show_frame(self, spectrum: Spectrum | None, fit: SpectrumFit | None) -> None:
        """Newest single frame (and its fit, shown when no accumulated fit is newer)."""
        if spectrum is not None:
            self._frame = spectrum
        if fit is not None:
            self._fit, self._fit_of = fit, self._frame
        self._redraw()

    def show_accumulated(self, spectrum: Spectrum | None, fit: SpectrumFit | None) -> None:
        """Newest accumulated spectrum and its fit."""
        if spectrum is not None:
            self._acc = spectrum
            self._frame = None
        if fit is not None:
            self._fit, self._fit_of = fit, self._acc
        self._redraw()

    def _x(self, wavelength_nm: np.ndarray) -> np.ndarray:
        return energy_ev_from_wavelength_nm(wavelength_nm) if self.energy_axis \
            else np.asarray(wavelength_nm)

    def _axis_changed(self) -> None:
        """Other units on x: a zoom in the old units means nothing, show all the data."""
        self._draw()
        self.follower.resume()

    def _redraw(self) -> None:
        self._draw()
        self.follower.refresh()

    def _draw(self) -> None:
        set_label(self.plot, "bottom", "photon energy (eV)" if self.energy_axis
                  else "wavelength (nm)")
        for curve, spectrum in ((self.frame_curve, self._frame), (self.acc_curve, self._acc)):
            if spectrum is None:
                curve.setData([], [])
            else:
                curve.setData(self._x(spectrum.wavelength_nm), np.asarray(spectrum.counts))
        fit = self._fit
        if fit is None or self._fit_of is None:
            self.fit_curve.setData([], [])
            return
        axis_nm = np.asarray(fit.wavelength_nm)
        self.fit_curve.setData(self._x(axis_nm), fit.model_counts(axis_nm))
        ok = bool(np.all(fit.success))
        unit = self._fit_of.counts_unit
        set_label(self.plot, "left",
                  f"{'e⁻' if unit == 'e' else 'ADU'} per pixel")
        source = "accumulated" if self._fit_of is self._acc else "frame"
        self.title.setText(f"{fit.model} fit of the {source} spectrum"
                           + ("" if ok else f" — FAILED: {np.asarray(fit.message).ravel()[0]}"))
        for i, (_, value, error) in enumerate(fit_rows(fit)):
            self.table.setItem(i, 1, QtWidgets.QTableWidgetItem(value))
            self.table.setItem(i, 2, QtWidgets.QTableWidgetItem(error))
            for col in (1, 2):
                self.table.item(i, col).setTextAlignment(QtCore.Qt.AlignRight
                                                         | QtCore.Qt.AlignVCenter)

    def table_text(self) -> dict[str, tuple[str, str]]:
        """Quantity → (value, error) as shown in the fit table."""
        out = {}
        for i in range(self.table.rowCount()):
            value, error = self.table.item(i, 1), self.table.item(i, 2)
            out[self.table.item(i, 0).text()] = (value.text() if value else "",
                                                 error.text() if error else "")
        return out
