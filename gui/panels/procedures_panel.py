"""Procedures panel: parameter forms from the pydantic models, run controls and a queue.

The last-used parameters of every procedure are saved on every change. Kept
values are checked when they are restored (the model) and again once the
instruments' limits are known (the pre-flight rule); a refused set is put back
to the defaults with a warning in the log. Once the
setup's instrument limits are known (:meth:`ProceduresPanel.set_limits`, from a
readback of the command thread) the spin boxes stop at them, and a procedure is
only handed on when it passes the same pre-flight check the runner applies.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from PyQt5 import QtCore, QtWidgets

from micropl.acquisition.config import format_validation_error
from micropl.acquisition.procedures import PROCEDURES
from micropl.acquisition.procedures.preflight import Limits, ParameterError
from micropl.gui.forms import ModelForm, model_defaults
from micropl.gui.settings import load_json, save_json

log = logging.getLogger(__name__)

__all__ = ["ProceduresPanel"]


def _altered(kept: dict[str, Any], shown: dict[str, Any], prefix: str = "") -> list[str]:
    """The kept values a form does not show as kept (``name = value``), nested names dotted."""
    out = []
    for key, value in kept.items():
        if key not in shown:
            continue
        if isinstance(value, dict) and isinstance(shown[key], dict):
            out += _altered(value, shown[key], f"{prefix}{key}.")
        elif value != shown[key] and not (isinstance(value, int | float)
                                          and isinstance(shown[key], int | float)
                                          and float(value) == float(shown[key])):
            out.append(f"{prefix}{key} = {value!r}")
    return out


class ProceduresPanel(QtWidgets.QWidget):
    """Choose a procedure, edit its parameters, start/pause/resume/abort it, queue others.

    Parameters
    ----------
    settings : QSettings
        Where the last-used parameters are kept.

    Signals
    -------
    start_requested(object)
        A validated procedure to run now (or queue when busy).
    pause_requested(), resume_requested(), abort_requested()
        Run controls.
    invalid(str)
        The form holds an invalid value (one line naming the field).
    """

    start_requested = QtCore.pyqtSignal(object)
    pause_requested = QtCore.pyqtSignal()
    resume_requested = QtCore.pyqtSignal()
    abort_requested = QtCore.pyqtSignal()
    invalid = QtCore.pyqtSignal(str)

    def __init__(self, settings: QtCore.QSettings,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.choice = QtWidgets.QComboBox()
        self.stack = QtWidgets.QStackedWidget()
        self.forms: dict[str, ModelForm] = {}
        self.limits: Limits | None = None
        #: Procedures whose form holds values kept from an earlier session.
        self._kept: set[str] = set()
        for name, cls in PROCEDURES.items():
            form = self.forms[name] = ModelForm(cls)
            saved = load_json(settings, f"params/{name}", {})
            if isinstance(saved, dict) and saved:
                form.set_values(saved)
                self._kept.add(name)
                altered = _altered(saved, form.values())
                if altered:  # the form could not hold them (out of its range, wrong type)
                    self._reset(name, "not valid: " + ", ".join(altered))
                else:
                    self._check_kept(name, form)
            elif saved:
                log.warning("settings: params/%s is not a parameter set: the defaults are used",
                            name)
            form.changed.connect(lambda n=name: self._save(n))
            scroll = QtWidgets.QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(form)
            self.stack.addWidget(scroll)
            self.choice.addItem(cls.title, name)
            self.forms[name] = form
        self.choice.currentIndexChanged.connect(self._chosen)
        last = str(settings.value("procedure", "survey"))
        if last in self.forms:
            self.choice.setCurrentIndex(list(self.forms).index(last))
        self.stack.setCurrentIndex(self.choice.currentIndex())

        self.start_button = QtWidgets.QPushButton("Start")
        self.queue_button = QtWidgets.QPushButton("Add to queue")
        self.pause_button = QtWidgets.QPushButton("Pause")
        self.resume_button = QtWidgets.QPushButton("Resume")
        self.abort_button = QtWidgets.QPushButton("Abort")
        self.start_button.clicked.connect(self._start)
        self.queue_button.clicked.connect(self._enqueue)
        self.pause_button.clicked.connect(self.pause_requested)
        self.resume_button.clicked.connect(self.resume_requested)
        self.abort_button.clicked.connect(self.abort_requested)
        self.queue_list = QtWidgets.QListWidget()
        self.queue_list.setMaximumHeight(110)
        remove = QtWidgets.QPushButton("Remove from queue")
        remove.clicked.connect(self._remove_selected)
        self.progress = QtWidgets.QProgressBar()
        self.stage = QtWidgets.QLabel("idle")
        self.queue: list[Any] = []

        buttons = QtWidgets.QGridLayout()
        buttons.addWidget(self.start_button, 0, 0)
        buttons.addWidget(self.queue_button, 0, 1)
        buttons.addWidget(self.pause_button, 1, 0)
        buttons.addWidget(self.resume_button, 1, 1)
        buttons.addWidget(self.abort_button, 2, 0, 1, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.choice)
        layout.addWidget(self.stack, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.stage)
        layout.addWidget(self.progress)
        layout.addWidget(QtWidgets.QLabel("queue"))
        layout.addWidget(self.queue_list)
        layout.addWidget(remove)
        self.set_running(False, False)

    # ------------------------------------------------------------------ forms
    @property
    def current_name(self) -> str:
        """Name of the procedure shown."""
        return str(self.choice.currentData())

    def select(self, name: str) -> ModelForm:
        """Show the form of procedure ``name`` and return it."""
        self.choice.setCurrentIndex(list(self.forms).index(name))
        return self.forms[name]

    def _chosen(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.settings.setValue("procedure", self.current_name)
        self.settings.sync()

    def _reset(self, name: str, why: str) -> None:
        """Put the defaults back into form ``name`` (a kept value is refused), and say so."""
        log.warning("settings: the kept %s parameters are refused (%s): reset to the defaults",
                    name, why)
        self.forms[name].set_values(model_defaults(PROCEDURES[name]))
        self._kept.discard(name)
        self._save(name)

    def _check_kept(self, name: str, form: ModelForm) -> bool:
        """Validate the values of ``form`` (kept from an earlier session); reset when invalid.

        Against the model now, and against today's instruments once their limits are
        known (the pre-flight check's own rule, :meth:`check_limits`).
        """
        try:
            procedure = form.model()
            if self.limits is not None:
                procedure.check_limits(self.limits)
        except ValidationError as exc:
            self._reset(name, format_validation_error(exc))
            return False
        except ParameterError as exc:
            self._reset(name, str(exc))
            return False
        return True

    def _save(self, name: str) -> None:
        self._kept.discard(name)  # the user's own value of today: checked when started
        save_json(self.settings, f"params/{name}", self.forms[name].values())

    def set_limits(self, limits: Limits | None) -> None:
        """Stop every form's spin boxes at what the instruments accept (None: unknown)."""
        if limits is None or limits == self.limits:
            return
        self.limits = limits
        for name, form in self.forms.items():
            # Before the spin boxes narrow (which would clamp a kept value silently).
            if name in self._kept:
                self._check_kept(name, form)
            form.set_bounds(PROCEDURES[name].field_bounds(limits))

    def procedure(self, name: str | None = None) -> Any | None:
        """The validated procedure of a form (None and ``invalid`` emitted when invalid).

        Valid means: the model validates and, once the limits are known, the
        procedure passes the pre-flight check (the message is the runner's).
        """
        name = name or self.current_name
        try:
            procedure = self.forms[name].model()
        except ValidationError as exc:
            message = f"{name}: {format_validation_error(exc)}"
            self.invalid.emit(message)
            return None
        return self.checked(procedure)

    def checked(self, procedure: Any) -> Any | None:
        """``procedure`` when it passes the pre-flight check against the known limits;
        else None, and ``invalid`` is emitted with the check's message."""
        if self.limits is None:
            return procedure  # Runner.start checks it against the instruments
        try:
            procedure.check_limits(self.limits)
        except ParameterError as exc:
            self.invalid.emit(str(exc))
            return None
        return procedure

    # ------------------------------------------------------------------ run controls
    def _start(self) -> None:
        procedure = self.procedure()
        if procedure is not None:
            self.start_requested.emit(procedure)

    def _enqueue(self) -> None:
        procedure = self.procedure()
        if procedure is not None:
            self.enqueue(procedure)

    def enqueue(self, procedure: Any) -> None:
        """Append a procedure to the queue."""
        self.queue.append(procedure)
        self.queue_list.addItem(type(procedure).title)

    def take_next(self) -> Any | None:
        """Remove and return the first queued procedure (None when the queue is empty)."""
        if not self.queue:
            return None
        self.queue_list.takeItem(0)
        return self.queue.pop(0)

    def clear_queue(self) -> None:
        """Empty the queue."""
        self.queue.clear()
        self.queue_list.clear()

    def _remove_selected(self) -> None:
        row = self.queue_list.currentRow()
        if 0 <= row < len(self.queue):
            self.queue.pop(row)
            self.queue_list.takeItem(row)

    def set_running(self, running: bool, paused: bool) -> None:
        """Enable the controls that make sense in this state."""
        self.pause_button.setEnabled(running and not paused)
        self.resume_button.setEnabled(running and paused)
        self.abort_button.setEnabled(running)

    def set_progress(self, stage: str, done: float, total: float | None) -> None:
        """Show the current stage and its progress (a run in progress: plain percent)."""
        self.stage.setText(stage)
        if self.final_status is not None:
            self.final_status = None
            self.progress.setFormat("%p%")
            self.progress.setStyleSheet("")
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done / total, 1.0)))
        else:
            self.progress.setRange(0, 0)

    #: Status of the run that ended last (None while one runs or before any).
    final_status: str | None = None

    def set_final(self, status: str, text: str) -> None:
        """The run ended with ``status``: the bar says so (never 100 % for a run cut short).

        ``completed`` fills the bar; ``aborted`` and ``failed`` keep it where the run
        stopped, red, with the status in its text.
        """
        self.stage.setText(text)
        self.final_status = status
        if self.progress.maximum() == 0:  # busy indicator: nothing measured to show
            self.progress.setRange(0, 1000)
            self.progress.setValue(0)
        if status == "completed":
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("completed")
            self.progress.setStyleSheet("")
        else:
            self.progress.setFormat(f"{status} at %p%")
            self.progress.setStyleSheet("QProgressBar::chunk { background: #c33 }")

    def progress_text(self) -> str:
        """The text the progress bar shows."""
        return self.progress.text()
