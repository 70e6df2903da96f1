"""Thorlabs MDT693B three-axis open-loop piezo controller, used as a scanner.

Protocol (USB virtual serial port, 115200 baud 8N1):

* commands end in CR: ``xvoltage=12.5`` sets, ``xvoltage?`` reads an axis
  voltage (x, y, z); ``vlimit?`` reads the front-panel output-limit switch
  (75, 100 or 150 V); ``echo=0`` switches the command echo off;
* every command is acknowledged by the prompt character ``>`` (no line end
  after it); query values come before it framed in brackets and followed by
  CR, e.g. ``[  24.80]\\r>``. The driver uses ``>`` as the read termination,
  so one read returns a whole reply including any echo;
* an unknown command is answered by ``CMD_NOT_DEFINED`` (or a text holding
  ``Error``); the driver raises :class:`InstrumentError`.

The read-back of ``xvoltage?`` is the output voltage (0.1 V resolution), not
the setpoint. Positions in µm come from a linear calibration per axis,
``x_um = offset_um + um_per_volt · V``. The output range is 0 V to the smaller
of the limit switch and ``max_voltage_v``, so ``limits_um`` follow from both;
:meth:`MDT693B.move_to` refuses targets outside before anything is sent.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pymeasure.instruments import Channel, Instrument

from micropl.drivers._settings import StrictSettings
from micropl.drivers._visa_common import (
    AllowedRange,
    VisaLinkMixin,
    checked_targets_um,
    clock_functions,
    is_visa_timeout,
    open_visa,
    refuse_outside,
)
from micropl.drivers.interfaces import Clock
from micropl.errors import InstrumentError, InstrumentTimeout

__all__ = ["Mdt693bSettings", "MDT693B", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

KIND = "scanner"
AXES: tuple[str, str, str] = ("x", "y", "z")
VOLTAGE_LIMITS_V: tuple[float, ...] = (75.0, 100.0, 150.0)

#: Importable modules needed to open the instrument.
REQUIRES: tuple[str, ...] = ("pymeasure", "pyvisa")

Triple = tuple[float, float, float]


# --------------------------------------------------------------------------- settings
class Mdt693bSettings(StrictSettings):
    """Settings of a Thorlabs MDT693B piezo controller (role ``scanner``)."""

    driver: Literal["mdt693b"] = Field("mdt693b", description="Driver name: Thorlabs MDT693B piezo controller over pyvisa.")
    name: str = Field("scanner", description="name used in messages and data files")
    resource: str = Field(description="VISA resource name, e.g. 'ASRL/dev/ttyACM0::INSTR'")
    visa_library: str = Field(
        "", description="pyvisa backend: '' (default), '@py' (pyvisa-py) or 'file.yaml@sim'"
    )
    baud_rate: int = Field(115200, gt=0, description="serial baud rate (the device uses 115200)")
    timeout_s: float = Field(2.0, gt=0, description="reply timeout, s")
    prompt: Literal[">", "*"] = Field(
        ">", description="prompt character that ends every reply (some firmware sends '*')"
    )
    um_per_volt: Triple = Field(
        description="calibration of x, y, z in µm per volt (e.g. 20 µm / 75 V = 0.2667); "
        "negative when the stage moves the other way"
    )
    offset_um: Triple = Field(
        (0.0, 0.0, 0.0), description="position of x, y, z at 0 V, µm"
    )
    max_voltage_v: float | None = Field(
        None, gt=0, le=150, description="highest output allowed, V (e.g. 75 for 75 V piezo "
        "stacks); the smaller of this and the limit switch (vlimit?) is used"
    )
    settle_s: float = Field(0.0, ge=0, description="wait after each move for the piezo to settle, s")

    @model_validator(mode="after")
    def _check(self) -> Mdt693bSettings:
        for axis, k in zip(AXES, self.um_per_volt):
            if k == 0 or not math.isfinite(k):
                raise ValueError(f"um_per_volt: {axis} calibration must be non-zero, got {k}")
        return self


DRIVERS: dict[str, type[BaseModel]] = {"scanner": Mdt693bSettings}


# --------------------------------------------------------------------------- helpers
_BRACKETED = re.compile(r"\[\s*([^\]]*?)\s*\]")


def _bracket_value(reply: Any) -> float:
    """The number in a framed reply such as ``'[  24.80]'``."""
    text = str(reply)
    match = _BRACKETED.search(text)
    try:
        return float(match.group(1) if match else text.strip())
    except ValueError as exc:
        raise InstrumentError(f"{KIND}: expected a [number] reply, got {reply!r}") from exc


class PiezoAxis(Channel):
    """One output channel (x, y or z) of the MDT693B."""

    voltage_v = Channel.control(
        "{ch}voltage?",
        "{ch}voltage=%.3f",
        """Control the output voltage of this axis in V (float).

        Reading gives the output voltage (0.1 V resolution); setting outside
        0 V to the allowed maximum raises LimitError before anything is sent.""",
        validator=refuse_outside,
        cast=str,
        get_process=_bracket_value,
        check_set_errors=True,
        dynamic=True,
    )


# --------------------------------------------------------------------------- instrument
class MDT693B(VisaLinkMixin, Instrument):
    """Thorlabs MDT693B piezo controller with a µm calibration (a Scanner).

    Parameters
    ----------
    adapter : str or pymeasure Adapter
        VISA resource name or an adapter.
    name : str
        Instrument name used in messages (the setup's role name).
    settings : Mdt693bSettings
        Calibration, voltage limit and timeouts.
    clock : Clock, optional
        Time source for the settling wait (wall time by default).
    **kwargs
        Passed on to the pymeasure VISA adapter (e.g. ``visa_library``).

    Notes
    -----
    On construction the driver sends ``echo=0`` and reads ``vlimit?`` to
    derive :attr:`limits_um`.
    """

    axes = Instrument.MultiChannelCreator(PiezoAxis, AXES, prefix="ch_")

    def __init__(
        self,
        adapter: Any,
        name: str = "scanner",
        *,
        settings: Mdt693bSettings,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        self._open_link(
            adapter, name, settings, clock,
            read_termination=settings.prompt, write_termination="\r", **kwargs,
        )
        self._target_um: tuple[float, float, float] | None = None
        for axis in AXES:
            getattr(self, f"ch_{axis}").voltage_v_values = AllowedRange(
                KIND, name, f"{axis} voltage {{value:g}} V", "V", self._voltage_bounds_v
            )
        self.ask("echo=0")
        self.voltage_limit_v = self._read_voltage_limit()
        self.limits_um = self._limits_um()

    # ------------------------------------------------------------------ protocol layer
    def read(self, **kwargs: Any) -> str:
        """Read one reply up to the prompt; echo and framing are left in.

        Raises
        ------
        InstrumentError
            When the device reports an unknown command or an error.
        InstrumentTimeout
            When the prompt does not arrive in time.
        """
        try:
            reply = super().read(**kwargs)
        except Exception as exc:
            if is_visa_timeout(exc):
                raise InstrumentTimeout(
                    f"{KIND} '{self.name}': no prompt after '{self._last_command}' in time"
                ) from exc
            raise
        text = reply.strip()
        if "CMD_" in text or "error" in text.lower():
            raise InstrumentError(
                f"{KIND} '{self.name}': '{self._last_command}' failed: reply {text!r}"
            )
        return text

    def check_set_errors(self) -> list[str]:
        """Consume the prompt that acknowledges a setting (raises on an error reply)."""
        self.read()
        return []

    voltage_limit_query = Instrument.measurement(
        "vlimit?",
        """Get the output-limit switch setting in V (75, 100 or 150).""",
        cast=str,
        get_process=_bracket_value,
    )

    def _read_voltage_limit(self) -> float:
        limit = float(self.voltage_limit_query)
        if limit not in VOLTAGE_LIMITS_V:
            raise InstrumentError(
                f"{KIND} '{self.name}': unexpected voltage limit {limit:g} V (vlimit?)"
            )
        return limit

    # ------------------------------------------------------------------ calibration
    def _voltage_bounds_v(self) -> tuple[float, float]:
        high = self.voltage_limit_v
        if self.settings.max_voltage_v is not None:
            high = min(high, self.settings.max_voltage_v)
        return 0.0, high

    def _limits_um(self) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
        low_v, high_v = self._voltage_bounds_v()
        limits = []
        for k, offset in zip(self.settings.um_per_volt, self.settings.offset_um):
            ends = (offset + k * low_v, offset + k * high_v)
            limits.append((min(ends), max(ends)))
        return tuple(limits)  # type: ignore[return-value]

    def um_to_volt(self, axis: str, position_um: float) -> float:
        """Output voltage (V) that puts ``axis`` at ``position_um``."""
        i = AXES.index(axis)
        return (position_um - self.settings.offset_um[i]) / self.settings.um_per_volt[i]

    def volt_to_um(self, axis: str, voltage_v: float) -> float:
        """Position (µm) of ``axis`` at ``voltage_v``."""
        i = AXES.index(axis)
        return self.settings.offset_um[i] + self.settings.um_per_volt[i] * voltage_v

    # ------------------------------------------------------------------ Scanner
    @property
    def voltages_v(self) -> tuple[float, float, float]:
        """Output voltages of x, y, z in V (read back from the device)."""
        return tuple(getattr(self, f"ch_{axis}").voltage_v for axis in AXES)  # type: ignore[return-value]

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Current (x, y, z) in µm from the read-back voltages and the calibration."""
        return tuple(  # type: ignore[return-value]
            self.volt_to_um(axis, v) for axis, v in zip(AXES, self.voltages_v)
        )

    @property
    def target_um(self) -> tuple[float, float, float] | None:
        """Last (x, y, z) target of :meth:`move_to` in µm (None before any move; z is
        nan until a z target was given)."""
        return self._target_um

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) in µm and wait ``settle_s``.

        Raises
        ------
        LimitError
            Before anything is sent, when any target lies outside :attr:`limits_um`.
        """
        targets = checked_targets_um(KIND, self.name, self.limits_um, x_um, y_um, z_um)
        for axis, value in targets.items():
            volts = self.um_to_volt(axis, float(value))
            # rounding at the limit (e.g. 74.99999999) must not trip the validator
            low_v, high_v = self._voltage_bounds_v()
            getattr(self, f"ch_{axis}").voltage_v = min(max(volts, low_v), high_v)
        previous = self._target_um or (math.nan, math.nan, math.nan)
        self._target_um = (
            float(x_um),
            float(y_um),
            float(z_um) if z_um is not None else previous[2],
        )
        if self.settings.settle_s > 0:
            clock_functions(self._clock)[1](self.settings.settle_s)

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings with units in the keys."""
        x_v, y_v, z_v = self.voltages_v
        return {
            "driver": "mdt693b",
            "voltage_limit_v": self.voltage_limit_v,
            "max_voltage_v": self._voltage_bounds_v()[1],
            "x_voltage_v": x_v,
            "y_voltage_v": y_v,
            "z_voltage_v": z_v,
            "um_per_volt": list(self.settings.um_per_volt),
            "offset_um": list(self.settings.offset_um),
            "limits_um": [list(pair) for pair in self.limits_um],
        }


# --------------------------------------------------------------------------- shared bits
def open_instrument(settings: Mdt693bSettings, clock: Clock | None = None) -> MDT693B:
    """Open the piezo controller described by ``settings``."""
    return open_visa(
        KIND, "mdt693b", settings,
        lambda **kwargs: MDT693B(
            settings.resource, settings.name, settings=settings, clock=clock, **kwargs
        ),
    )
