"""Points of interest: mark the scanner's place, name it, go back, measure the points.

Each change (mark, rename, remove) is a :class:`~micropl.records.points.PointOfInterest`
record handed on with ``changed``; the main window publishes it on the session's
stream, so the session file keeps the list, and File → Open shows it again.
"Measure" asks for a survey of the listed points (refocus, spectrum and g² on
each, as for the QDs a survey finds).
"""

from __future__ import annotations

import time

from PyQt5 import QtCore, QtWidgets

from micropl.records.points import PointOfInterest

__all__ = ["PointsPanel"]

_COLUMNS = ("name", "x (µm)", "y (µm)", "z (µm)", "note")


class PointsPanel(QtWidgets.QWidget):
    """The list of points of interest.

    Signals
    -------
    mark_requested()
        Mark the scanner's current position (the main window knows it).
    changed(object)
        A :class:`PointOfInterest` record to store (a new, renamed or removed point).
    go_requested(float, float, float)
        Move the scanner to (x, y, z) µm.
    measure_requested(object)
        Measure these points (a list of :class:`PointOfInterest`).
    """

    mark_requested = QtCore.pyqtSignal()
    changed = QtCore.pyqtSignal(object)
    go_requested = QtCore.pyqtSignal(float, float, float)
    measure_requested = QtCore.pyqtSignal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QtWidgets.QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemChanged.connect(self._edited)
        self.mark_button = QtWidgets.QPushButton("Mark here")
        self.go_button = QtWidgets.QPushButton("Go to")
        self.remove_button = QtWidgets.QPushButton("Remove")
        self.measure_button = QtWidgets.QPushButton("Measure all (survey of the points)")
        self.mark_button.clicked.connect(self.mark_requested)
        self.go_button.clicked.connect(self._go)
        self.remove_button.clicked.connect(self._remove)
        self.measure_button.clicked.connect(lambda: self.measure_requested.emit(self.points()))
        buttons = QtWidgets.QHBoxLayout()
        for button in (self.mark_button, self.go_button, self.remove_button):
            buttons.addWidget(button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.measure_button)
        layout.addWidget(QtWidgets.QLabel("double-click a name or note to edit it"))
        self._points: dict[str, PointOfInterest] = {}
        self._filling = False

    # ------------------------------------------------------------------ the list
    def points(self) -> list[PointOfInterest]:
        """The points listed, in table order."""
        return list(self._points.values())

    def next_name(self) -> str:
        """A free name, ``P1``, ``P2``, …"""
        i = 1
        while f"P{i}" in self._points:
            i += 1
        return f"P{i}"

    def mark(self, x_um: float, y_um: float, z_um: float, name: str | None = None) -> \
            PointOfInterest:
        """Add a point at (x, y, z) µm (a free name by default) and hand it on to store."""
        point = PointOfInterest(name or self.next_name(), float(x_um), float(y_um), float(z_um),
                                t_s=time.time())
        self.apply(point)
        self.changed.emit(point)
        return point

    def apply(self, point: PointOfInterest) -> None:
        """Show a point record (new, changed or removed) without storing it again."""
        if point.removed:
            self._points.pop(point.name, None)
        else:
            self._points[point.name] = point
        self._fill()

    def _fill(self) -> None:
        self._filling = True
        try:
            self.table.setRowCount(len(self._points))
            for row, p in enumerate(self._points.values()):
                cells = (p.name, f"{p.x_um:.2f}", f"{p.y_um:.2f}", f"{p.z_um:.2f}", p.note)
                for col, text in enumerate(cells):
                    item = QtWidgets.QTableWidgetItem(text)
                    if col not in (0, 4):
                        item.setFlags(item.flags() & ~QtCore.Qt.ItemIsEditable)
                        item.setTextAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
                    self.table.setItem(row, col, item)
        finally:
            self._filling = False

    def _selected(self) -> PointOfInterest | None:
        row = self.table.currentRow()
        if not 0 <= row < len(self._points):
            return None
        return list(self._points.values())[row]

    def select(self, name: str) -> None:
        """Select the point ``name``."""
        self.table.selectRow(list(self._points).index(name))

    def _go(self) -> None:
        point = self._selected()
        if point is not None:
            self.go_requested.emit(point.x_um, point.y_um, point.z_um)

    def _remove(self) -> None:
        point = self._selected()
        if point is None:
            return
        gone = PointOfInterest(point.name, point.x_um, point.y_um, point.z_um, point.note,
                               removed=True, t_s=time.time())
        self.apply(gone)
        self.changed.emit(gone)

    def rename(self, old: str, new: str) -> bool:
        """Rename a point (refused, False, when ``new`` is empty or taken)."""
        new = new.strip()
        point = self._points.get(old)
        if point is None or not new or (new != old and new in self._points):
            self._fill()
            return False
        if new == old:
            return True
        removed = PointOfInterest(old, point.x_um, point.y_um, point.z_um, point.note,
                                  removed=True, t_s=time.time())
        renamed = PointOfInterest(new, point.x_um, point.y_um, point.z_um, point.note,
                                  t_s=time.time())
        order = [renamed if k == old else v for k, v in self._points.items()]
        self._points = {p.name: p for p in order}
        self._fill()
        self.changed.emit(removed)
        self.changed.emit(renamed)
        return True

    def _edited(self, item: QtWidgets.QTableWidgetItem) -> None:
        if self._filling:
            return
        point = list(self._points.values())[item.row()]
        if item.column() == 0:
            self.rename(point.name, item.text())
        elif item.column() == 4 and item.text() != point.note:
            noted = PointOfInterest(point.name, point.x_um, point.y_um, point.z_um, item.text(),
                                    t_s=time.time())
            self.apply(noted)
            self.changed.emit(noted)
