"""Persistent GUI settings (QSettings) and spin boxes that ignore the wheel unless focused.

Settings are written on every change, not only on exit. Tests (and users who
want a separate profile) redirect them to an INI file with the environment
variable ``MICROPL_GUI_SETTINGS``.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from PyQt5 import QtCore, QtGui, QtWidgets

log = logging.getLogger(__name__)

__all__ = ["ORGANISATION", "APPLICATION", "make_settings", "load_json", "save_json",
           "NoWheelSpinBox", "NoWheelDoubleSpinBox", "NoWheelComboBox"]

ORGANISATION = "micropl"
APPLICATION = "micropl-gui"
#: Environment variable naming an INI file used instead of the user's settings.
SETTINGS_ENV = "MICROPL_GUI_SETTINGS"


def make_settings() -> QtCore.QSettings:
    """The GUI's settings store (INI file from ``$MICROPL_GUI_SETTINGS`` when set)."""
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QtCore.QSettings(path, QtCore.QSettings.IniFormat)
    return QtCore.QSettings(ORGANISATION, APPLICATION)


def save_json(settings: QtCore.QSettings, key: str, value: Any) -> None:
    """Store ``value`` as JSON text under ``key`` and write it to disk now."""
    settings.setValue(key, json.dumps(value))
    settings.sync()


def load_json(settings: QtCore.QSettings, key: str, default: Any = None) -> Any:
    """The JSON value stored under ``key`` (``default`` when absent or unreadable)."""
    text = settings.value(key, None)
    if not text:
        return default
    try:
        return json.loads(str(text))
    except json.JSONDecodeError:
        log.warning("settings: %s is not valid JSON; using the default", key)
        return default


class _WheelGuard:
    """Mixin: wheel events change the value only while the widget has focus."""

    def _guard_init(self) -> None:
        self.setFocusPolicy(QtCore.Qt.StrongFocus)  # type: ignore[attr-defined]

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:  # noqa: N802 - Qt API
        if self.hasFocus():  # type: ignore[attr-defined]
            super().wheelEvent(event)  # type: ignore[misc]
        else:
            event.ignore()  # let the surrounding scroll area scroll


class NoWheelSpinBox(_WheelGuard, QtWidgets.QSpinBox):
    """Integer spin box that ignores the mouse wheel unless it has focus."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_init()


class NoWheelDoubleSpinBox(_WheelGuard, QtWidgets.QDoubleSpinBox):
    """Float spin box (shows values in ``%g`` style) that ignores an unfocused wheel."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_init()
        self.setDecimals(9)

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt API
        return f"{value:.6g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt API
        try:
            return float(text.replace(self.suffix(), "").strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> tuple[QtGui.QValidator.State, str, int]:
        body = text.replace(self.suffix(), "").strip()
        if body in ("", "-", "+", ".", "-.", "+.") or body.lower().endswith(("e", "e-", "e+")):
            return QtGui.QValidator.Intermediate, text, pos
        try:
            value = float(body)
        except ValueError:
            return QtGui.QValidator.Invalid, text, pos
        if self.minimum() <= value <= self.maximum():
            return QtGui.QValidator.Acceptable, text, pos
        return QtGui.QValidator.Intermediate, text, pos


class NoWheelComboBox(_WheelGuard, QtWidgets.QComboBox):
    """Combo box that ignores the mouse wheel unless it has focus."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._guard_init()
