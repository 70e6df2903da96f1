"""Log panel: log records (and the runner's errors) as coloured lines."""

from __future__ import annotations

import html
import logging

from PyQt5 import QtWidgets

__all__ = ["LogPanel"]

_COLOURS = {logging.DEBUG: "#888", logging.INFO: "#ccc", logging.WARNING: "#e90",
            logging.ERROR: "#f44", logging.CRITICAL: "#f0f"}


class LogPanel(QtWidgets.QWidget):
    """A bounded, read-only log view.

    Parameters
    ----------
    max_lines : int
        Oldest lines beyond this are discarded (memory stays bounded).
    """

    def __init__(self, max_lines: int = 5000, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.text = QtWidgets.QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(max_lines)
        self.text.setStyleSheet("background: #111; font-family: monospace")
        clear = QtWidgets.QPushButton("Clear")
        clear.clicked.connect(self.text.clear)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.text)
        layout.addWidget(clear)

    def add(self, level: int, line: str) -> None:
        """Append one line, coloured by its level."""
        colour = _COLOURS.get(level, "#ccc" if level < logging.WARNING else "#f44")
        self.text.appendHtml(f'<span style="color:{colour}">{html.escape(line)}</span>')

    def lines(self) -> list[str]:
        """The text shown, one entry per line."""
        return self.text.toPlainText().splitlines()
