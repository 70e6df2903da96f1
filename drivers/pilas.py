"""NKT Photonics PILAS picosecond pulsed diode laser.

Protocol of the PiLas controller (RS-232 or its USB virtual serial port,
19200 baud 8N1, LF at the end of every command and reply):

* settings are ``key=value`` and answered by ``done``: ``ld=1`` (emission on),
  ``tm=0`` (manual tune mode), ``tune=450`` (tune 45.0 %, in per mille),
  ``f=10000000`` (internal repetition rate in Hz), ``ts=0`` (trigger source);
* queries are ``key?`` and answered by ``label: value`` with tabs and units,
  e.g. ``tune value:\\t\\t     45.00 %``, ``int. frequency:\\t  10000000 Hz``,
  ``laser head temp.:\\t     25.0 °C`` (latin-1 degree sign), ``LD temp.:\\t\\tgood``.

``power_percent`` is the PiLas *tune* value: the laser-diode drive in percent of
its range (the tune only acts in manual tune mode, which :func:`open_instrument`
selects). The driver refuses a tune above ``max_power_percent`` and refuses to
switch emission on while the laser-diode temperature status is not good.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import BaseModel, Field
from pymeasure.instruments import Instrument

from micropl.drivers._settings import StrictSettings
from micropl.drivers._visa_common import (
    AllowedRange,
    VisaLinkMixin,
    is_visa_timeout,
    open_visa,
    refuse_outside,
)
from micropl.errors import InstrumentError, InstrumentTimeout

__all__ = ["PilasSettings", "Pilas", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

KIND = "laser"

#: Importable modules needed to open the instrument.
REQUIRES: tuple[str, ...] = ("pymeasure", "pyvisa")

#: Trigger sources and their ``ts`` codes (0 internal oscillator, 2 external input).
TRIGGER_CODES: dict[str, int] = {"internal": 0, "external": 2}

MIN_REP_RATE_HZ = 25.0
MAX_REP_RATE_HZ = 40e6


# --------------------------------------------------------------------------- settings
class PilasSettings(StrictSettings):
    """Settings of an NKT PILAS pulsed diode laser (role ``laser``)."""

    driver: Literal["pilas"] = Field("pilas", description="Driver name: NKT Photonics (A.L.S.) PiLas diode laser over pyvisa.")
    name: str = Field("laser", description="name used in messages and data files")
    resource: str = Field(description="VISA resource name, e.g. 'ASRL/dev/ttyUSB1::INSTR'")
    visa_library: str = Field(
        "", description="pyvisa backend: '' (default), '@py' (pyvisa-py) or 'file.yaml@sim'"
    )
    baud_rate: int = Field(19200, gt=0, description="serial baud rate (the controller uses 19200)")
    timeout_s: float = Field(2.0, gt=0, description="reply timeout, s")
    wavelength_nm: float = Field(405.0, gt=0, description="emission wavelength of the head, nm")
    max_power_percent: float = Field(
        100.0, ge=0, le=100, description="tune settings above this are refused, %"
    )
    rep_rate_hz: float | None = Field(
        10e6,
        ge=MIN_REP_RATE_HZ,
        le=MAX_REP_RATE_HZ,
        description="internal repetition rate applied on open, Hz (None: keep the device's)",
    )
    trigger_source: Literal["internal", "external"] | None = Field(
        "internal", description="trigger source applied on open (None: keep the device's)"
    )
    manual_tune_on_open: bool = Field(
        True, description="select manual tune mode on open, so that power_percent takes effect"
    )


DRIVERS: dict[str, type[BaseModel]] = {"laser": PilasSettings}


# --------------------------------------------------------------------------- helpers
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def _value_text(reply: Any) -> str:
    """The value part of a ``label: value`` reply (the whole reply when no colon)."""
    text = str(reply)
    return text.split(":", 1)[1].strip() if ":" in text else text.strip()


def _number(reply: Any) -> float:
    match = _NUMBER.search(_value_text(reply))
    if match is None:
        raise InstrumentError(f"{KIND}: expected a number, got reply {reply!r}")
    return float(match.group())


def _on_off(reply: Any) -> bool:
    value = _value_text(reply).lower()
    if value in ("on", "1"):
        return True
    if value in ("off", "0"):
        return False
    raise InstrumentError(f"{KIND}: expected on/off, got reply {reply!r}")


def _tune_mode(reply: Any) -> str:
    value = _value_text(reply).lower()
    if value in ("manual", "0"):
        return "manual"
    if value in ("auto", "1"):
        return "auto"
    raise InstrumentError(f"{KIND}: expected a tune mode, got reply {reply!r}")


def _trigger_source(reply: Any) -> str:
    value = _value_text(reply).lower()
    if value.isdigit():
        for source, code in TRIGGER_CODES.items():
            if int(value) == code:
                return source
    elif value.startswith("int"):
        return "internal"
    elif value.startswith("ext"):
        return "external"
    raise InstrumentError(f"{KIND}: unknown trigger source in reply {reply!r}")


def _discrete(value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {allowed}")
    return value


# --------------------------------------------------------------------------- instrument
class Pilas(VisaLinkMixin, Instrument):
    """NKT Photonics PILAS picosecond pulsed diode laser.

    Parameters
    ----------
    adapter : str or pymeasure Adapter
        VISA resource name (e.g. ``"ASRL/dev/ttyUSB1::INSTR"``) or an adapter.
    name : str
        Instrument name used in messages (the setup's role name).
    settings : PilasSettings, optional
        Limits and wavelength; defaults of :class:`PilasSettings`.
    **kwargs
        Passed on to the pymeasure VISA adapter (e.g. ``visa_library``).

    Notes
    -----
    Nothing is sent on construction. :func:`open_instrument` applies the
    configured repetition rate, trigger source and manual tune mode.
    """

    def __init__(
        self,
        adapter: Any,
        name: str = "laser",
        *,
        settings: PilasSettings | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("encoding", "latin-1")
        self._open_link(
            adapter, name, settings if settings is not None else PilasSettings(resource=""), None,
            read_termination="\n", write_termination="\n", **kwargs,
        )
        self.power_percent_values = AllowedRange(
            KIND, name, "power {value:g} %", "%",
            lambda: (0.0, self.settings.max_power_percent),
            allowed="allowed {low:g}–{high:g} {unit} (max_power_percent)",
        )
        self.rep_rate_hz_values = AllowedRange(
            KIND, name, "repetition rate {value:g} Hz", "Hz",
            lambda: (MIN_REP_RATE_HZ, MAX_REP_RATE_HZ),
        )

    # ------------------------------------------------------------------ protocol layer
    @property
    def max_power_percent(self) -> float:
        """Highest power setting accepted (the configured limit), % (no device call)."""
        return float(self.settings.max_power_percent)

    @property
    def wavelength_nm(self) -> float:
        """Emission wavelength of the laser head in nm (from the settings)."""
        return self.settings.wavelength_nm

    def read(self, **kwargs: Any) -> str:
        """Read one reply line (LF stripped); a timeout raises InstrumentTimeout."""
        try:
            return super().read(**kwargs).strip()
        except Exception as exc:
            if is_visa_timeout(exc):
                raise InstrumentTimeout(
                    f"{KIND} '{self.name}': no reply to '{self._last_command}' in time"
                ) from exc
            raise

    def check_set_errors(self) -> list[str]:
        """Read the reply to a setting; anything but ``done`` raises InstrumentError."""
        reply = self.read()
        if reply.lower() != "done":
            raise InstrumentError(
                f"{KIND} '{self.name}': '{self._last_command}' failed: reply {reply!r}"
            )
        return []

    # ------------------------------------------------------------------ properties
    _emission = Instrument.control(
        "ld?",
        "ld=%d",
        """Control the pulsed emission (bool) without the temperature interlock.""",
        cast=str,
        get_process=_on_off,
        set_process=int,
        check_set_errors=True,
    )

    power_percent = Instrument.control(
        "tune?",
        "tune=%d",
        """Control the tune (laser-diode drive) in percent (float, 0.1 % steps).

        Sent as per mille (``tune=450`` for 45.0 %). Values above
        ``max_power_percent`` are refused with LimitError.""",
        validator=refuse_outside,
        cast=str,
        get_process=_number,
        set_process=lambda percent: int(round(percent * 10)),
        check_set_errors=True,
        dynamic=True,
    )

    rep_rate_hz = Instrument.control(
        "f?",
        "f=%d",
        """Control the internal repetition rate in Hz (25 Hz to 40 MHz, integer Hz).""",
        validator=refuse_outside,
        cast=str,
        get_process=_number,
        set_process=lambda rate: int(round(rate)),
        check_set_errors=True,
        dynamic=True,
    )

    tune_mode = Instrument.control(
        "tm?",
        "tm=%d",
        """Control the tune mode: ``"manual"`` (tune value acts) or ``"auto"``.""",
        validator=lambda value, allowed: _discrete(value, allowed),
        values=("manual", "auto"),
        cast=str,
        get_process=_tune_mode,
        set_process=lambda mode: 0 if mode == "manual" else 1,
        check_set_errors=True,
    )

    trigger_source = Instrument.control(
        "ts?",
        "ts=%d",
        """Control the trigger source: ``"internal"`` (ts=0) or ``"external"`` (ts=2).""",
        validator=lambda value, allowed: _discrete(value, allowed),
        values=tuple(TRIGGER_CODES),
        cast=str,
        get_process=_trigger_source,
        set_process=lambda source: TRIGGER_CODES[source],
        check_set_errors=True,
    )

    head_temperature_c = Instrument.measurement(
        "lht?",
        """Get the laser-head temperature in °C (float).""",
        cast=str,
        get_process=_number,
    )

    diode_temperature_status = Instrument.measurement(
        "ldtemp?",
        """Get the laser-diode temperature status: ``"good"`` or ``"bad"`` (str).""",
        cast=str,
        get_process=lambda reply: _value_text(reply).lower(),
    )

    @property
    def emission_on(self) -> bool:
        """Whether pulsed emission is on (``ld?``).

        Setting True first checks the laser-diode temperature status and
        refuses (InstrumentError) unless it is good.
        """
        return self._emission

    @emission_on.setter
    def emission_on(self, on: bool) -> None:
        if on:
            status = self.diode_temperature_status
            if status not in ("good", "ok"):
                raise InstrumentError(
                    f"{KIND} '{self.name}': emission on refused: laser-diode temperature "
                    f"status is '{status}'"
                )
        self._emission = bool(on)

    def off(self) -> None:
        """Switch emission off (``ld=0``) and confirm with ``ld?``.

        Never refuses: the reply to ``ld=0`` is only logged if unexpected; an
        error is raised only when the device still reports emission on (or does
        not answer at all).
        """
        self.write("ld=0")
        reply = self.read()
        if reply.lower() != "done":
            log.warning("%s '%s': unexpected reply %r to ld=0", KIND, self.name, reply)
        if self._emission:
            raise InstrumentError(f"{KIND} '{self.name}': emission still on after ld=0")

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings with units in the keys."""
        return {
            "driver": "pilas",
            "wavelength_nm": self.wavelength_nm,
            "emission_on": self.emission_on,
            "power_percent": self.power_percent,
            "max_power_percent": self.settings.max_power_percent,
            "rep_rate_hz": self.rep_rate_hz,
            "trigger_source": self.trigger_source,
            "tune_mode": self.tune_mode,
            "head_temperature_c": self.head_temperature_c,
            "diode_temperature_status": self.diode_temperature_status,
        }


def open_instrument(settings: PilasSettings) -> Pilas:
    """Open the laser described by ``settings`` and apply its start-up settings.

    Applies, in this order: manual tune mode (when ``manual_tune_on_open``),
    the trigger source and the repetition rate (when not None). Emission and
    power are not touched.
    """
    laser = open_visa(
        KIND, "pilas", settings,
        lambda **kwargs: Pilas(settings.resource, settings.name, settings=settings, **kwargs),
    )
    try:
        if settings.manual_tune_on_open:
            laser.tune_mode = "manual"
        if settings.trigger_source is not None:
            laser.trigger_source = settings.trigger_source
        if settings.rep_rate_hz is not None:
            laser.rep_rate_hz = settings.rep_rate_hz
    except BaseException:
        laser.close()
        raise
    return laser
