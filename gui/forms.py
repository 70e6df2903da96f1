"""Parameter forms generated from pydantic models.

Each field becomes an editor: a spin box whose range comes from the field's
``ge``/``gt``/``le``/``lt`` limits (with the unit of its name as suffix), a
check box for ``bool``, a combo box for ``Literal`` choices, an "auto" check
box beside the spin box for optional values, a line of numbers for lists of
numbers, and a group box for a nested model. The field's description (which
states its unit) is the label; the field name is the tooltip. Validation is
pydantic's: :meth:`ModelForm.model` raises ``ValidationError``.

:meth:`ModelForm.set_bounds` narrows the spin boxes further to what the setup's
instruments accept (a procedure's ``field_bounds``, see
:mod:`micropl.acquisition.procedures.preflight`), so a form cannot hold a scan
edge beyond the scanner's travel.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from PyQt5 import QtCore, QtWidgets

from micropl.gui.settings import NoWheelComboBox, NoWheelDoubleSpinBox, NoWheelSpinBox

__all__ = ["ModelForm", "model_defaults", "unit_suffix"]

_UNITS = {"_um": "µm", "_nm": "nm", "_s": "s", "_ps": "ps", "_percent": "%", "_cps": "cps",
          "_hz": "Hz", "_ev": "eV", "_mev": "meV", "_c": "°C"}
_BIG = 1e12


def unit_suffix(name: str) -> str:
    """The unit a field name ends with, as a spin-box suffix (e.g. ``" µm"``), or ``""``."""
    for ending, unit in _UNITS.items():
        if name.endswith(ending):
            return f" {unit}"
    return ""


def _limits(info: FieldInfo) -> tuple[float | None, float | None, bool, bool]:
    lo = hi = None
    lo_open = hi_open = False
    for item in info.metadata:
        if isinstance(item, at.Ge):
            lo = float(item.ge)
        elif isinstance(item, at.Gt):
            lo, lo_open = float(item.gt), True
        elif isinstance(item, at.Le):
            hi = float(item.le)
        elif isinstance(item, at.Lt):
            hi, hi_open = float(item.lt), True
    return lo, hi, lo_open, hi_open


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(annotation)):
            return args[0], True
    return annotation, False


class _Editor(QtWidgets.QWidget):
    """One field's editor: ``value()``, ``set_value(v)`` and a ``changed`` signal."""

    changed = QtCore.pyqtSignal()

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError


class _NumberEditor(_Editor):
    def __init__(self, name: str, info: FieldInfo, kind: type, optional: bool) -> None:
        super().__init__()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        lo, hi, lo_open, hi_open = _limits(info)
        if kind is int:
            spin: QtWidgets.QAbstractSpinBox = NoWheelSpinBox()
            spin.setRange(int(lo if lo is not None else -2**31 + 1) + int(lo_open),
                          int(hi if hi is not None else 2**31 - 1) - int(hi_open))
        else:
            spin = NoWheelDoubleSpinBox()
            step = 1e-9
            spin.setRange((lo if lo is not None else -_BIG) + (step if lo_open else 0.0),
                          (hi if hi is not None else _BIG) - (step if hi_open else 0.0))
        self.model_range = (spin.minimum(), spin.maximum())
        spin.setSuffix(unit_suffix(name))
        spin.setKeyboardTracking(False)
        spin.valueChanged.connect(self.changed)
        self.spin = spin
        self.kind = kind
        layout.addWidget(spin, 1)
        self.auto: QtWidgets.QCheckBox | None = None
        if optional:
            self.auto = QtWidgets.QCheckBox("keep")
            self.auto.setToolTip("None: keep the instrument's current value")
            self.auto.toggled.connect(lambda on: spin.setEnabled(not on))
            self.auto.toggled.connect(self.changed)
            layout.addWidget(self.auto)

    def value(self) -> Any:
        if self.auto is not None and self.auto.isChecked():
            return None
        return self.kind(self.spin.value())

    def narrow(self, low: float, high: float, note: str) -> None:
        """Limit the spin box to ``[low, high]`` within the model's own range.

        Parameters
        ----------
        low, high : float
            What the instrument accepts, in the field's unit.
        note : str
            The instrument's limit, shown in the tooltip.
        """
        lo, hi = max(self.model_range[0], low), min(self.model_range[1], high)
        if self.kind is int:
            lo, hi = math.ceil(lo), math.floor(hi)
        if lo > hi:  # nothing the instrument accepts fits the model: leave the model's range
            return
        self.spin.setRange(lo, hi)
        self.spin.setToolTip(note)

    def set_value(self, value: Any) -> None:
        if value is None:
            if self.auto is not None:
                self.auto.setChecked(True)
            return
        if self.auto is not None:
            self.auto.setChecked(False)
        self.spin.setValue(self.kind(value))


class _BoolEditor(_Editor):
    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.box = QtWidgets.QCheckBox()
        self.box.toggled.connect(self.changed)
        layout.addWidget(self.box)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class _ChoiceEditor(_Editor):
    def __init__(self, choices: tuple[Any, ...]) -> None:
        super().__init__()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.choices = choices
        self.combo = NoWheelComboBox()
        self.combo.addItems([str(c) for c in choices])
        self.combo.currentIndexChanged.connect(self.changed)
        layout.addWidget(self.combo)

    def value(self) -> Any:
        return self.choices[self.combo.currentIndex()]

    def set_value(self, value: Any) -> None:
        if value in self.choices:
            self.combo.setCurrentIndex(self.choices.index(value))


class _ListEditor(_Editor):
    """Comma-separated numbers."""

    def __init__(self, name: str) -> None:
        super().__init__()
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.line = QtWidgets.QLineEdit()
        self.line.setPlaceholderText(f"comma-separated{unit_suffix(name)}")
        self.line.editingFinished.connect(self.changed)
        layout.addWidget(self.line)

    def value(self) -> Any:
        text = self.line.text().strip()
        if not text:
            return []
        # Unparseable text is passed on as text, so pydantic names the field and the value.
        parts = [p.strip() for p in text.split(",")]
        try:
            return [float(p) for p in parts]
        except ValueError:
            return parts

    def set_value(self, value: Any) -> None:
        self.line.setText(", ".join(f"{v:g}" for v in (value or [])))


class ModelForm(QtWidgets.QWidget):
    """A form for the pydantic model ``cls`` (nested models as group boxes).

    Fields the form cannot edit (e.g. a list of resume targets) keep their
    default and are listed greyed out.

    Signals
    -------
    changed()
        Any value changed.
    """

    changed = QtCore.pyqtSignal()

    def __init__(self, cls: type[BaseModel], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.cls = cls
        self.editors: dict[str, _Editor] = {}
        self.subforms: dict[str, ModelForm] = {}
        layout = QtWidgets.QFormLayout(self)
        layout.setFieldGrowthPolicy(QtWidgets.QFormLayout.AllNonFixedFieldsGrow)
        defaults = _defaults(cls)
        for name, info in cls.model_fields.items():
            annotation, optional = _strip_optional(info.annotation)
            label = QtWidgets.QLabel(info.description or name.replace("_", " "))
            label.setToolTip(name)
            label.setWordWrap(True)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sub = ModelForm(annotation)
                sub.changed.connect(self.changed)
                box = QtWidgets.QGroupBox(name)
                box.setToolTip(info.description or name)
                inner = QtWidgets.QVBoxLayout(box)
                inner.setContentsMargins(4, 4, 4, 4)
                inner.addWidget(sub)
                layout.addRow(box)
                self.subforms[name] = sub
                continue
            editor = self._editor(name, info, annotation, optional)
            if editor is None:
                shown = QtWidgets.QLabel(f"{defaults.get(name)!r} (not editable here)")
                shown.setEnabled(False)
                layout.addRow(label, shown)
                continue
            editor.setToolTip(f"{name}: {info.description or ''}")
            editor.changed.connect(self.changed)
            layout.addRow(label, editor)
            self.editors[name] = editor
        self.set_values(defaults)

    @staticmethod
    def _editor(name: str, info: FieldInfo, annotation: Any, optional: bool) -> _Editor | None:
        if annotation is bool:
            return _BoolEditor()
        if annotation in (int, float):
            return _NumberEditor(name, info, annotation, optional)
        if typing.get_origin(annotation) is typing.Literal:
            return _ChoiceEditor(typing.get_args(annotation))
        if typing.get_origin(annotation) is list and typing.get_args(annotation)[0] in (int,
                                                                                         float):
            return _ListEditor(name)
        return None

    def values(self) -> dict[str, Any]:
        """The form's values as a nested dict (only the editable fields)."""
        out: dict[str, Any] = {name: e.value() for name, e in self.editors.items()}
        out.update({name: f.values() for name, f in self.subforms.items()})
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill the form from a (possibly partial) nested dict; unknown keys are ignored."""
        blocked = self.blockSignals(True)
        try:
            for name, value in values.items():
                if name in self.editors:
                    self.editors[name].set_value(value)
                elif name in self.subforms and isinstance(value, dict):
                    self.subforms[name].set_values(value)
        finally:
            self.blockSignals(blocked)

    def model(self) -> BaseModel:
        """The validated model (raises ``pydantic.ValidationError``)."""
        return self.cls.model_validate(self.values())

    def set_bounds(self, bounds: dict[str, Any]) -> None:
        """Narrow spin boxes to instrument ranges.

        Parameters
        ----------
        bounds : dict
            Field name (dotted for nested models) → an object with ``low``, ``high``,
            ``unit`` and ``source`` (a :class:`~micropl.acquisition.procedures.preflight.Bound`).
            Fields without a number editor are ignored.
        """
        for name, bound in bounds.items():
            head, _, rest = name.partition(".")
            if rest:
                if head in self.subforms:
                    self.subforms[head].set_bounds({rest: bound})
                continue
            editor = self.editors.get(name)
            if isinstance(editor, _NumberEditor):
                unit = f" {bound.unit}" if bound.unit else ""
                editor.narrow(bound.low, bound.high,
                              f"{name}: {bound.source} {bound.low:g}–{bound.high:g}{unit}")


def model_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """The default values of model ``cls`` as a nested dict (what a fresh form shows)."""
    return _defaults(cls)


def _defaults(cls: type[BaseModel]) -> dict[str, Any]:
    try:
        return cls().model_dump()
    except ValueError:  # a model without defaults for every field
        return {name: info.get_default(call_default_factory=True)
                for name, info in cls.model_fields.items() if not info.is_required()}
