"""Instruments panel: laser, spectrograph, camera and scanner settings, APD rates.

Every control sends a command (a description and a function of the setup) with
the ``command`` signal; the main window hands it to the command worker, so no
driver is called on the GUI thread. Readbacks come back as
:class:`~micropl.gui.commands.Readback` records and update the controls the
user is not editing.

Every readout carries its age: each value remembers when it arrived (an
injectable ``clock``, monotonic seconds), and :meth:`InstrumentsPanel.refresh_age`
(called by the main window's display timer) greys out a value older than its
limit and says how old it is. An APD rate with no data for
:data:`RATE_STALE_S` shows "—": no rate is shown that is not being measured.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from PyQt5 import QtCore, QtWidgets

from micropl.gui.commands import Readback
from micropl.gui.settings import NoWheelComboBox, NoWheelDoubleSpinBox, NoWheelSpinBox
from micropl.gui.widgets import set_style

__all__ = ["InstrumentsPanel", "rate_colour", "age_text", "RATE_STALE_S", "READOUT_STALE_S"]

#: Fractions of the APD protection threshold where a rate turns amber, then red.
AMBER_FRACTION = 0.6
RED_FRACTION = 0.85
#: An APD rate older than this (s) is not shown ("—"): no counts are flowing.
RATE_STALE_S = 2.0
#: A readback (position, temperature, laser state) older than this (s) is shown grey.
READOUT_STALE_S = 5.0
#: Colour of a stale readout.
STALE_COLOUR = "#888"


def age_text(age_s: float) -> str:
    """How old a value is, e.g. "0.4 s ago", "12 s ago", "3 min ago", "never"."""
    if not math.isfinite(age_s):
        return "never"
    if age_s < 10:
        return f"{max(age_s, 0.0):.1f} s ago"
    if age_s < 120:
        return f"{age_s:.0f} s ago"
    return f"{age_s / 60:.0f} min ago"


def rate_colour(rate_cps: float, max_rate_cps: float) -> str:
    """CSS colour of an APD rate: green, amber from 60 % and red from 85 % of the threshold."""
    fraction = rate_cps / max_rate_cps if max_rate_cps > 0 else 0.0
    if fraction >= RED_FRACTION:
        return "#e22"
    if fraction >= AMBER_FRACTION:
        return "#e90"
    return "#2a2"


def _spin(lo: float, hi: float, value: float, suffix: str) -> NoWheelDoubleSpinBox:
    spin = NoWheelDoubleSpinBox()
    spin.setRange(lo, hi)
    spin.setValue(value)
    spin.setSuffix(suffix)
    spin.setKeyboardTracking(False)
    return spin


class InstrumentsPanel(QtWidgets.QWidget):
    """Controls and readbacks of every instrument.

    Parameters
    ----------
    apd_max_rate_cps : float
        Protection threshold of the APDs (``safety.apd_max_rate_cps``), counts/s.
    clock : callable
        Monotonic time in s (the readouts' ages; tests give a fake one).

    Signals
    -------
    command(str, object)
        Description and ``fn(setup)`` to run on the command thread.
    focus_requested()
        The user asked for a z scan (focus).
    """

    command = QtCore.pyqtSignal(str, object)
    focus_requested = QtCore.pyqtSignal()

    def __init__(self, apd_max_rate_cps: float, parent: QtWidgets.QWidget | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parent)
        self.apd_max_rate_cps = float(apd_max_rate_cps)
        self.clock = clock
        #: Readout name → (monotonic s it arrived, its text) for the ages.
        self._seen: dict[str, tuple[float, str]] = {}
        self._rates: dict[int, float] = {}
        self._rate_source = ""
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._apd_box())
        layout.addWidget(self._laser_box())
        layout.addWidget(self._scanner_box())
        layout.addWidget(self._spectrograph_box())
        layout.addWidget(self._camera_box())
        layout.addStretch(1)
        self.readback: Readback | None = None

    # ------------------------------------------------------------------ building
    def _send(self, description: str, fn: Callable[[Any], Any]) -> None:
        self.command.emit(description, fn)

    def _set(self, role: str, attribute: str, value: Any, description: str) -> None:
        """Send ``setup.<role>.<attribute> = value`` (the driver checks the limits)."""
        self._send(description, lambda setup: setattr(getattr(setup, role), attribute, value))

    def _apd_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox(f"APD count rates (protection at "
                                  f"{self.apd_max_rate_cps / 1e6:g} Mcps)")
        grid = QtWidgets.QHBoxLayout(box)
        self.rate_labels: dict[int, QtWidgets.QLabel] = {}
        for ch in (1, 2):
            label = QtWidgets.QLabel(f"APD {ch}\n— kcps")
            label.setAlignment(QtCore.Qt.AlignCenter)
            label.setStyleSheet("font-size: 20pt; font-weight: bold; color: #888")
            grid.addWidget(label)
            self.rate_labels[ch] = label
        self.rate_source = QtWidgets.QLabel("")
        self.rate_source.setWordWrap(True)
        self.rate_source.setStyleSheet("color: gray")
        grid.addWidget(self.rate_source)
        return box

    def _laser_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Laser")
        form = QtWidgets.QFormLayout(box)
        self.laser_button = QtWidgets.QPushButton("Laser ON")
        self.laser_button.clicked.connect(lambda: self._send(
            "laser on", lambda s: setattr(s.laser, "emission_on", True)))
        self.laser_off_button = QtWidgets.QPushButton("Laser OFF")
        self.laser_off_button.clicked.connect(lambda: self._send("laser off",
                                                                 lambda s: s.laser.off()))
        self.laser_state = QtWidgets.QLabel("—")
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.laser_button)
        row.addWidget(self.laser_off_button)
        row.addWidget(self.laser_state)
        form.addRow("emission", row)
        self.power = _spin(0, 100, 10, " %")
        self.power.editingFinished.connect(lambda: self._set(
            "laser", "power_percent", self.power.value(), f"laser power {self.power.value():g} %"))
        form.addRow("power", self.power)
        self.rep_rate = _spin(0.01, 1000, 10, " MHz")
        self.rep_rate.editingFinished.connect(lambda: self._set(
            "laser", "rep_rate_hz", self.rep_rate.value() * 1e6,
            f"repetition rate {self.rep_rate.value():g} MHz"))
        form.addRow("repetition rate", self.rep_rate)
        return box

    def _spectrograph_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Spectrograph")
        form = QtWidgets.QFormLayout(box)
        self.wavelength = _spin(0, 2000, 500, " nm")
        self.wavelength.editingFinished.connect(lambda: self._set(
            "spectrograph", "center_wavelength_nm", self.wavelength.value(),
            f"centre wavelength {self.wavelength.value():g} nm"))
        form.addRow("centre wavelength", self.wavelength)
        self.grating = NoWheelComboBox()
        self.grating.activated.connect(lambda i: self._set("spectrograph", "grating", i + 1,
                                                           f"grating {i + 1}"))
        form.addRow("grating", self.grating)
        return box

    def _camera_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Camera")
        form = QtWidgets.QFormLayout(box)
        self.exposure = _spin(1e-4, 3600, 1, " s")
        self.exposure.editingFinished.connect(lambda: self._set(
            "camera", "exposure_s", self.exposure.value(),
            f"exposure {self.exposure.value():g} s"))
        form.addRow("exposure", self.exposure)
        self.em_gain = NoWheelSpinBox()
        self.em_gain.setRange(1, 1000)
        self.em_gain.setKeyboardTracking(False)
        self.em_gain.editingFinished.connect(lambda: self._set(
            "camera", "em_gain", self.em_gain.value(), f"EM gain {self.em_gain.value()}"))
        form.addRow("EM gain", self.em_gain)
        self.read_mode = NoWheelComboBox()
        self.read_mode.addItems(["fvb", "image", "roi"])
        self.read_mode.activated.connect(lambda i: self._set(
            "camera", "read_mode", self.read_mode.itemText(i),
            f"read mode {self.read_mode.itemText(i)}"))
        form.addRow("read mode", self.read_mode)
        self.temperature = QtWidgets.QLabel("— °C")
        form.addRow("sensor temperature", self.temperature)
        return box

    def _scanner_box(self) -> QtWidgets.QGroupBox:
        box = QtWidgets.QGroupBox("Scanner")
        grid = QtWidgets.QGridLayout(box)
        self.position = QtWidgets.QLabel("x — µm, y — µm, z — µm")
        grid.addWidget(self.position, 0, 0, 1, 6)
        self.goto_x = _spin(-1e4, 1e4, 0, " µm")
        self.goto_y = _spin(-1e4, 1e4, 0, " µm")
        go = QtWidgets.QPushButton("Go to")
        go.clicked.connect(lambda: self.request_move(self.goto_x.value(), self.goto_y.value()))
        grid.addWidget(QtWidgets.QLabel("x"), 1, 0)
        grid.addWidget(self.goto_x, 1, 1)
        grid.addWidget(QtWidgets.QLabel("y"), 1, 2)
        grid.addWidget(self.goto_y, 1, 3)
        grid.addWidget(go, 1, 4)
        self.jog_step = _spin(0.01, 100, 1, " µm")
        grid.addWidget(QtWidgets.QLabel("jog"), 2, 0)
        grid.addWidget(self.jog_step, 2, 1)
        for col, (text, dx, dy) in enumerate((("←", -1, 0), ("→", 1, 0), ("↓", 0, -1),
                                              ("↑", 0, 1))):
            button = QtWidgets.QPushButton(text)
            button.setMaximumWidth(36)
            button.clicked.connect(lambda _=False, dx=dx, dy=dy: self.jog(dx, dy))
            grid.addWidget(button, 2, col + 2)
        # Focus: z go-to and jog, and a z scan (the refocus procedure's focus scan).
        self.goto_z = _spin(-1e4, 1e4, 0, " µm")
        go_z = QtWidgets.QPushButton("Go to z")
        go_z.clicked.connect(lambda: self.request_z(self.goto_z.value()))
        grid.addWidget(QtWidgets.QLabel("z"), 3, 0)
        grid.addWidget(self.goto_z, 3, 1)
        grid.addWidget(go_z, 3, 2, 1, 2)
        self.z_jog_step = _spin(0.01, 10, 0.1, " µm")
        grid.addWidget(QtWidgets.QLabel("z jog"), 4, 0)
        grid.addWidget(self.z_jog_step, 4, 1)
        for col, (text, dz) in enumerate((("z −", -1), ("z +", 1))):
            button = QtWidgets.QPushButton(text)
            button.setMaximumWidth(48)
            button.clicked.connect(lambda _=False, dz=dz: self.jog_z(dz))
            grid.addWidget(button, 4, col + 2)
        self.focus_button = QtWidgets.QPushButton("Focus (z scan)")
        self.focus_button.setToolTip("a refocus with its focus scan along z (the refocus form's "
                                     "z range and step), then x/y; moves to the best focus")
        self.focus_button.clicked.connect(self.focus_requested)
        grid.addWidget(self.focus_button, 5, 0, 1, 4)
        return box

    # ------------------------------------------------------------------ commands
    def request_move(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Send a scanner move to (x, y[, z]) µm (the driver checks the limits)."""
        if z_um is None:
            self._send(f"move to ({x_um:.2f}, {y_um:.2f}) µm",
                       lambda s: s.scanner.move_to(float(x_um), float(y_um)))
        else:
            self._send(f"move to ({x_um:.2f}, {y_um:.2f}, {z_um:.2f}) µm",
                       lambda s: s.scanner.move_to(float(x_um), float(y_um), float(z_um)))

    def request_z(self, z_um: float) -> None:
        """Send a focus move to height ``z_um`` (x and y stay)."""
        def move(setup: Any) -> None:
            x, y, _ = setup.scanner.position_um
            setup.scanner.move_to(x, y, float(z_um))

        self._send(f"focus to z = {z_um:.2f} µm", move)

    def jog_z(self, dz: int) -> None:
        """Move the focus by one z jog step up (``dz`` = 1) or down (−1)."""
        step = self.z_jog_step.value()

        def move(setup: Any) -> None:
            x, y, z = setup.scanner.position_um
            setup.scanner.move_to(x, y, z + dz * step)

        self._send(f"jog z {dz * step:+g} µm", move)

    def jog(self, dx: int, dy: int) -> None:
        """Move by one jog step along x (``dx``) and/or y (``dy``) from the current position."""
        step = self.jog_step.value()

        def move(setup: Any) -> None:
            x, y, _ = setup.scanner.position_um
            setup.scanner.move_to(x + dx * step, y + dy * step)

        self._send(f"jog ({dx * step:+g}, {dy * step:+g}) µm", move)

    # ------------------------------------------------------------------ readbacks
    def set_readback(self, rb: Readback) -> None:
        """Show instrument readbacks (controls being edited are left alone)."""
        self.readback = rb
        self._fresh("laser", "ON" if rb.laser_on else "off")
        for spin, value in ((self.power, rb.power_percent), (self.rep_rate, rb.rep_rate_hz / 1e6),
                            (self.wavelength, rb.center_wavelength_nm),
                            (self.exposure, rb.exposure_s)):
            if not spin.hasFocus():
                spin.blockSignals(True)
                spin.setValue(value)
                spin.blockSignals(False)
        if not self.em_gain.hasFocus():
            self.em_gain.blockSignals(True)
            self.em_gain.setValue(rb.em_gain)
            self.em_gain.blockSignals(False)
        if [self.grating.itemText(i) for i in range(self.grating.count())] != list(rb.gratings):
            self.grating.clear()
            self.grating.addItems(list(rb.gratings))
        self.grating.setCurrentIndex(rb.grating - 1)
        self.read_mode.setCurrentText(rb.read_mode)
        self._fresh("temperature", f"{rb.temperature_c:.1f} °C")
        self.set_position(*rb.position_um)
        self.set_rates(rb.rates_cps, "instrument readback")

    def set_position(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Show the scanner position in µm."""
        if z_um is None:  # z not in this record: the last known z, if any
            z_um = self._z_um
        self._z_um = z_um
        z = "—" if z_um is None else f"{z_um:.2f}"
        self._fresh("position", f"x {x_um:.2f} µm, y {y_um:.2f} µm, z {z} µm")

    _z_um: float | None = None

    def set_rates(self, rates_cps: dict[int, float], source: str) -> None:
        """Show APD rates in kcps, coloured by their distance to the protection threshold.

        A channel not in ``rates_cps`` keeps its previous value (and age).
        """
        now = self.clock()
        for ch in self.rate_labels:
            if ch in rates_cps:
                self._rates[ch] = float(rates_cps[ch])
                self._seen[f"rate{ch}"] = (now, "")
        self._rate_source = source
        self._seen["rate_source"] = (now, source)
        self.refresh_age(now)

    # ------------------------------------------------------------------ ages
    def _fresh(self, name: str, text: str) -> None:
        """A readout ``name`` now reads ``text`` (its age starts at 0)."""
        self._seen[name] = (self.clock(), text)
        self._show_readout(name, self.clock())

    def age_s(self, name: str, now: float | None = None) -> float:
        """Age in s of readout ``name`` (``rate1``, ``position``, ...; inf: never seen)."""
        seen = self._seen.get(name)
        if seen is None:
            return math.inf
        return (self.clock() if now is None else now) - seen[0]

    def _show_readout(self, name: str, now: float) -> None:
        labels = {"laser": self.laser_state, "temperature": self.temperature,
                  "position": self.position}
        label = labels[name]
        when, text = self._seen[name]
        age = now - when
        stale = age > READOUT_STALE_S
        shown = f"{text} ({age_text(age)})" if stale else text
        if label.text() != shown:
            label.setText(shown)
        if stale:
            style = f"color: {STALE_COLOUR}"
        elif name == "laser" and text == "ON":
            style = "color: #e22; font-weight: bold"
        elif name == "laser":
            style = f"color: {STALE_COLOUR}"
        else:
            style = ""
        set_style(label, style)

    def refresh_age(self, now: float | None = None) -> None:
        """Grey out or blank every readout that is too old (display timer, GUI thread)."""
        now = self.clock() if now is None else now
        for ch, label in self.rate_labels.items():
            age = self.age_s(f"rate{ch}", now)
            if age <= RATE_STALE_S and ch in self._rates:
                rate = self._rates[ch]
                text = f"APD {ch}\n{rate / 1e3:,.1f} kcps"
                colour = rate_colour(rate, self.apd_max_rate_cps)
            else:
                text, colour = f"APD {ch}\n— kcps", STALE_COLOUR
            if label.text() != text:
                label.setText(text)
            set_style(label, f"font-size: 20pt; font-weight: bold; color: {colour}")
        age = self.age_s("rate_source", now)
        if math.isfinite(age):
            source = (f"{self._rate_source}, {age_text(age)}" if age <= RATE_STALE_S
                      else f"no counts for {age_text(age).removesuffix(' ago')} "
                           f"(last: {self._rate_source})")
            if self.rate_source.text() != source:
                self.rate_source.setText(source)
        for name in ("laser", "temperature", "position"):
            if name in self._seen:
                self._show_readout(name, now)

    def rate_text(self, channel: int) -> tuple[str, str]:
        """(text, style sheet) of a channel's rate label."""
        label = self.rate_labels[channel]
        return label.text(), label.styleSheet()
