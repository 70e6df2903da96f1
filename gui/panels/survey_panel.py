"""Survey panel: the QDs measured with their results, and the survey statistics plots.

The statistics line and plots follow the report's selection rules
(:mod:`micropl.acquisition.report`): the *completed* QDs go to
:func:`micropl.analysis.statistics.survey_statistics`, which leaves out the
flagged multiple-emitter spots and counts them apart (:func:`survey_line`).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt5 import QtCore, QtWidgets

from micropl.analysis.emitters import EXCLUDING_FLAGS, excluded_counts, exclusion_text
from micropl.analysis.statistics import SurveyStatistics, survey_statistics
from micropl.errors import UserError
from micropl.gui.bridge import QDRow
from micropl.gui.widgets import DataFollower, plot_widget

__all__ = ["SurveyPanel", "COLUMNS", "survey_line", "row_statistics"]

#: Rows of the QD table always in view.
MIN_TABLE_ROWS = 6
#: Smallest height of a statistics plot, px.
PLOT_MIN_HEIGHT_PX = 80

COLUMNS = ("run", "QD", "x (µm)", "y (µm)", "SNR", "status", "E (eV)", "σE (meV)",
           "FWHM (meV)", "σFWHM (meV)", "g²(0)", "σg²(0)", "τ (ns)")


def _fmt(value: float, fmt: str) -> str:
    return "—" if not math.isfinite(value) else format(value, fmt)


def _flags(row: QDRow) -> tuple[str, ...]:
    return tuple(getattr(row, "flags", ()) or ())


def _excluded(row: QDRow) -> bool:
    """Left out of the single-QD statistics (see :mod:`micropl.analysis.emitters`)."""
    return any(f in EXCLUDING_FLAGS for f in _flags(row))


def _cells(row: QDRow) -> list[str]:
    status = row.status if not _flags(row) else f"{row.status} [{', '.join(_flags(row))}]"
    return [str(row.run_id), str(row.qd_id), _fmt(row.x_um, ".2f"), _fmt(row.y_um, ".2f"),
            _fmt(row.snr, ".1f"), status, _fmt(row.peak_energy_ev, ".4f"),
            _fmt(row.peak_energy_err_ev * 1e3, ".2f"), _fmt(row.fwhm_mev, ".1f"),
            _fmt(row.fwhm_err_mev, ".1f"), _fmt(row.g2_0, ".3f"), _fmt(row.g2_0_err, ".3f"),
            _fmt(row.lifetime_ns, ".2f")]


def row_statistics(rows: list[QDRow]) -> SurveyStatistics | None:
    """The report's statistics of the completed QDs among ``rows`` (None: none yet).

    The same call the report makes: completed QDs, their flags given, so that
    flagged multiple-emitter spots are left out and counted in ``excluded``.
    """
    done = [r for r in rows if r.status == "completed"]
    if not done:
        return None

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in done], float)

    g2, g2_err = column("g2_0"), column("g2_0_err")
    kept = np.array([not _excluded(r) for r in done], bool)
    has_g2 = bool(np.any(np.isfinite(g2[kept]) & np.isfinite(g2_err[kept])
                         & (g2_err[kept] >= 0)))
    try:
        return survey_statistics(column("peak_energy_ev"), column("fwhm_mev"),
                                 column("peak_energy_err_ev"), column("fwhm_err_mev"),
                                 g2 if has_g2 else None, g2_err if has_g2 else None,
                                 flags=[_flags(r) for r in done])
    except UserError:
        return None


def survey_line(rows: list[QDRow]) -> str:
    """The statistics line: QDs, completed and failed, the excluded, the single emitters.

    E.g. ``5 QDs: 3 completed, 1 failed; 1 excluded: multiple emitters; 2 of 2 single
    QDs with g²(0) < 0.5``. Every number after "completed" counts completed QDs only.
    """
    done = sum(r.status == "completed" for r in rows)
    failed = sum(r.status == "failed" for r in rows)
    text = f"{len(rows)} QDs: {done} completed, {failed} failed"
    if not done:
        return text
    # The report's title: the excluded among the completed QDs.
    text += "; " + exclusion_text(excluded_counts(_flags(r) for r in rows
                                                  if r.status == "completed"))
    stats = row_statistics(rows)
    if stats is None:
        return text + "; no usable spectrum fit"
    if stats.g2 is not None:
        text += (f"; {stats.g2.n_single_photon} of {stats.g2.n_valid} single QDs with "
                 f"g²(0) < {stats.g2.threshold:g}")
    return text


class SurveyPanel(QtWidgets.QWidget):
    """QD table (click a row to go back to that QD) and statistics plots.

    Parameters
    ----------
    max_rows : int
        QDs kept in the table and the statistics; the oldest go first.

    Signals
    -------
    qd_selected(run_id, qd_id, x_um, y_um)
        The user clicked a QD.
    """

    qd_selected = QtCore.pyqtSignal(int, int, float, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None, *, max_rows: int = 5000) -> None:
        super().__init__(parent)
        self.max_rows = max_rows
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.Interactive)
        self.table.cellClicked.connect(self._clicked)
        self.fwhm_plot = plot_widget("FWHM (meV)", "QDs", title="FWHM histogram")
        self.scatter_plot = plot_widget("peak energy (eV)", "FWHM (meV)",
                                        title="FWHM vs peak energy")
        self.g2_plot = plot_widget("g²(0)", "QDs", title="g²(0) histogram")
        self.g2_plot.addItem(pg.InfiniteLine(0.5, angle=90, pen=pg.mkPen("#c80",
                                                                          style=QtCore.Qt.DashLine)))
        self.fwhm_bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush="#4af")
        self.fwhm_plot.addItem(self.fwhm_bars)
        self.g2_bars = pg.BarGraphItem(x0=[], x1=[], height=[], brush="#a6f")
        self.g2_plot.addItem(self.g2_bars)
        self.scatter = pg.ScatterPlotItem(size=8, brush="#4af")
        self.errors = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), pen="#888")
        self.scatter_plot.addItem(self.errors)
        self.scatter_plot.addItem(self.scatter)
        self.followers = [DataFollower(plot) for plot in
                          (self.fwhm_plot, self.scatter_plot, self.g2_plot)]
        plots = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(plots)
        row.setContentsMargins(0, 0, 0, 0)
        for plot in (self.fwhm_plot, self.scatter_plot, self.g2_plot):
            plot.setMinimumHeight(PLOT_MIN_HEIGHT_PX)
            row.addWidget(plot)
        self.summary = QtWidgets.QLabel("no QD yet")
        # The table always shows MIN_TABLE_ROWS rows; the plots take what is left.
        row_px = self.table.fontMetrics().height() + 6
        self.table.verticalHeader().setDefaultSectionSize(row_px)
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height()
                                    + MIN_TABLE_ROWS * row_px + 2 * self.table.frameWidth() + 2
                                    + self.table.horizontalScrollBar().sizeHint().height())
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(plots)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.summary)
        layout.addWidget(self.splitter, 1)
        self._rows: dict[tuple[int, int], QDRow] = {}
        self._index: dict[tuple[int, int], int] = {}
        self._shown = b""

    # ------------------------------------------------------------------ data
    def clear(self) -> None:
        """Remove every QD."""
        self._rows.clear()
        self._index.clear()
        self.table.setRowCount(0)
        self._statistics()

    def update_rows(self, rows: list[QDRow]) -> None:
        """Add or refresh QD rows, then recompute the statistics."""
        if not rows:
            return
        for row in rows:
            key = (row.run_id, row.qd_id)
            self._rows[key] = row
            index = self._index.get(key)
            if index is None:
                index = self._index[key] = self.table.rowCount()
                self.table.insertRow(index)
            for col, text in enumerate(_cells(row)):
                item = QtWidgets.QTableWidgetItem(text)
                if col != 5:
                    item.setTextAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
                self.table.setItem(index, col, item)
        self._drop_oldest(self.table.rowCount() - self.max_rows)
        if self.table.rowCount() <= 2:  # size the columns once there is content
            self.table.resizeColumnsToContents()
        self._statistics()

    def _drop_oldest(self, n: int) -> None:
        """Remove the ``n`` oldest QDs (the first table rows)."""
        if n <= 0:
            return
        for _ in range(n):
            self.table.removeRow(0)
        for key, index in list(self._index.items()):
            if index < n:
                del self._index[key]
                del self._rows[key]
            else:
                self._index[key] = index - n

    def row(self, run_id: int, qd_id: int) -> QDRow | None:
        """The QD row shown for (run, QD)."""
        return self._rows.get((run_id, qd_id))

    def select_index(self, index: int) -> None:
        """Select table row ``index`` as a click would."""
        self.table.selectRow(index)
        self._clicked(index, 0)

    def _clicked(self, index: int, _col: int) -> None:
        for key, i in self._index.items():
            if i == index:
                row = self._rows[key]
                self.qd_selected.emit(row.run_id, row.qd_id, row.x_um, row.y_um)
                return

    # ------------------------------------------------------------------ statistics
    def _statistics(self) -> None:
        """The statistics line and plots (:func:`survey_line`, :func:`row_statistics`):
        completed QDs, flagged multiple emitters left out of the plots, counted in the line."""
        every = list(self._rows.values())
        self.summary.setText(survey_line(every))
        stats = row_statistics(every)
        rows = [r for r in every if r.status == "completed" and not _excluded(r)]
        energy = np.array([r.peak_energy_ev for r in rows], float)
        energy_err = np.array([r.peak_energy_err_ev for r in rows], float)
        fwhm = np.array([r.fwhm_mev for r in rows], float)
        fwhm_err = np.array([r.fwhm_err_mev for r in rows], float)
        g2 = np.array([r.g2_0 for r in rows], float)
        shown = np.concatenate([energy, energy_err, fwhm, fwhm_err, g2]).tobytes()
        if shown == self._shown:  # a status changed, not a result: leave the plots alone
            return
        self._shown = shown
        if stats is None:
            self.fwhm_bars.setOpts(x0=[], x1=[], height=[])
        else:
            edges, counts = stats.fwhm_edges_mev, stats.fwhm_counts
            self.fwhm_bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        ok = np.isfinite(energy) & np.isfinite(fwhm)
        self.scatter.setData(energy[ok], fwhm[ok])
        self.errors.setData(x=energy[ok], y=fwhm[ok],
                            width=2 * np.nan_to_num(energy_err[ok]),
                            height=2 * np.nan_to_num(fwhm_err[ok]))
        if stats is not None and stats.g2 is not None:
            edges, counts = stats.g2.edges, stats.g2.counts
            self.g2_bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        else:
            self.g2_bars.setOpts(x0=[], x1=[], height=[])
        for follower in self.followers:
            follower.refresh()
