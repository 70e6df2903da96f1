"""PicoQuant PDL 828 "Sepia II" laser driver (SLM 828 module) via ``Sepia2_Lib.dll``.

The Sepia II library is a Windows DLL, called here with :mod:`ctypes` using the
function names and arguments of the Sepia II library manual. Importing this
module works on any platform; :func:`open_instrument` raises
:class:`MissingExtraError` where the library is unavailable (always on Linux).

Mapping to the :class:`~micropl.drivers.interfaces.Laser` protocol:

* ``emission_on`` — the SCM 828 safety module's *soft lock*
  (``SEPIA2_SCM_SetLaserSoftLock``; locked = off). Emission cannot start while
  the key switch or interlock locks the laser (``SEPIA2_SCM_GetLaserLocked``).
* ``power_percent`` — SLM 828 intensity in per mille / 10
  (``SEPIA2_SLM_Set/GetIntensityFineStep``), refused above
  ``max_power_percent``.
* ``rep_rate_hz`` — one of the SLM 828's fixed presets 80, 40, 20, 10, 5 and
  2.5 MHz (``SEPIA2_SLM_SetPulseParameters`` frequency index 0–5, pulsed mode);
  indices 6/7 are external triggering and are not offered.
* ``wavelength_nm`` — from the settings (the laser head's nominal wavelength).
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from micropl.drivers._settings import StrictSettings
from micropl.drivers.limits import limit_error, range_refusal
from micropl.errors import InstrumentError, MissingExtraError

__all__ = ["SepiaSettings", "SepiaLaser", "DRIVERS", "REQUIRES", "open_instrument",
           "SLM_RATES_HZ"]

log = logging.getLogger(__name__)

#: No Python package needed; the vendor DLL is loaded with ctypes.
REQUIRES: tuple[str, ...] = ()
VENDOR_LIBRARIES: tuple[str, ...] = ("Sepia2_Lib.dll",)

#: SLM 828 internal oscillator presets, by frequency index.
SLM_RATES_HZ: dict[int, float] = {0: 80e6, 1: 40e6, 2: 20e6, 3: 10e6, 4: 5e6, 5: 2.5e6}
PULSED = 1


class SepiaSettings(StrictSettings):
    """Settings of a PicoQuant PDL 828 Sepia II with an SLM 828 laser driver."""

    driver: Literal["sepia"] = Field(description="Driver name: PicoQuant Sepia II via Sepia2_Lib.dll.")
    name: str = Field("laser", description="Instrument name used in messages and files.")
    device_index: int = Field(0, ge=0, le=7, description="USB device index of the Sepia II.")
    library_path: str = Field("", description="Full path of Sepia2_Lib.dll; empty = default search.")
    scm_slot: int = Field(100, ge=0, le=999, description="Slot of the SCM 828 safety module.")
    slm_slot: int = Field(200, ge=0, le=999, description="Slot of the SLM 828 laser driver module.")
    wavelength_nm: float = Field(405.0, gt=0, description="Nominal wavelength of the laser head, nm.")
    max_power_percent: float = Field(
        100.0, ge=0, le=100, description="Highest intensity setting accepted, in percent."
    )

    @model_validator(mode="after")
    def _check(self) -> SepiaSettings:
        if self.scm_slot == self.slm_slot:
            raise ValueError(f"slm_slot: {self.slm_slot} is also scm_slot; the SCM 828 and the "
                             "SLM 828 sit in different slots")
        return self


class SepiaLaser:
    """Laser protocol on top of the Sepia II library (ctypes, injectable).

    Parameters
    ----------
    lib : ctypes library
        ``Sepia2_Lib.dll`` loaded with ctypes (or a fake with the same functions).
    settings : SepiaSettings
        Connection settings and limits.
    """

    kind = "laser"

    def __init__(self, lib: Any, settings: SepiaSettings):
        self._lib = lib
        self.settings = settings
        self.name = settings.name
        self.wavelength_nm = float(settings.wavelength_nm)
        self._dev = settings.device_index
        self._closed = True
        model, serial = ctypes.create_string_buffer(32), ctypes.create_string_buffer(16)
        self._call("USB_OpenDevice", self._dev, model, serial)
        self._closed = False
        self.serial = serial.value.decode(errors="replace")
        try:
            count = ctypes.c_int()
            self._call("FWR_GetModuleMap", self._dev, 0, ctypes.byref(count))
        except InstrumentError:
            self.close()
            raise

    def _call(self, func: str, *args: Any) -> None:
        code = getattr(self._lib, f"SEPIA2_{func}")(*args)
        if code:
            text = ctypes.create_string_buffer(64)
            try:
                self._lib.SEPIA2_LIB_DecodeError(code, text)
                message = text.value.decode(errors="replace")
            except (AttributeError, OSError):
                message = "unknown error"
            raise InstrumentError(
                f"laser '{self.name}': SEPIA2_{func} failed with {code} ({message})"
            )

    def _get(self, func: str, slot: int, ctype: type) -> int:
        value = ctype()
        self._call(func, self._dev, slot, ctypes.byref(value))
        return int(value.value)

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise InstrumentError(f"laser '{self.name}': {action} refused: closed")

    # ------------------------------------------------------------------ emission
    @property
    def emission_on(self) -> bool:
        """True when the laser is neither soft-locked nor locked by key/interlock."""
        return not self._get("SCM_GetLaserLocked", self.settings.scm_slot, ctypes.c_ubyte)

    @emission_on.setter
    def emission_on(self, value: bool) -> None:
        if not value:
            self.off()
            return
        self._check_open("EMISSION ON")
        self._call("SCM_SetLaserSoftLock", self._dev, self.settings.scm_slot, 0)
        if not self.emission_on:
            raise InstrumentError(
                f"laser '{self.name}': EMISSION ON failed: locked by key switch or interlock"
            )

    def off(self) -> None:
        """Soft-lock the laser (emission off)."""
        if self._closed:
            return
        self._call("SCM_SetLaserSoftLock", self._dev, self.settings.scm_slot, 1)

    # ------------------------------------------------------------------ power
    @property
    def max_power_percent(self) -> float:
        """Highest power setting accepted (the configured limit), % (no device call)."""
        return float(self.settings.max_power_percent)

    @property
    def power_percent(self) -> float:
        """Intensity setting in percent (SLM 828 fine step / 10)."""
        return self._get("SLM_GetIntensityFineStep", self.settings.slm_slot, ctypes.c_ushort) / 10

    @power_percent.setter
    def power_percent(self, value: float) -> None:
        value = float(value)
        action = f"SET POWER {value:g} %"
        allowed = range_refusal(value, 0.0, self.max_power_percent, "%")
        if allowed is not None:
            raise limit_error("laser", self.name, action, allowed)
        self._check_open(action)
        self._call("SLM_SetIntensityFineStep", self._dev, self.settings.slm_slot,
                   int(round(value * 10)))

    # ------------------------------------------------------------------ repetition rate
    @property
    def rep_rate_hz(self) -> float:
        """Repetition rate in Hz (nan when externally triggered)."""
        freq, mode, head = ctypes.c_int(), ctypes.c_ubyte(), ctypes.c_int()
        self._call("SLM_GetPulseParameters", self._dev, self.settings.slm_slot,
                   ctypes.byref(freq), ctypes.byref(mode), ctypes.byref(head))
        return SLM_RATES_HZ.get(int(freq.value), float("nan"))

    @rep_rate_hz.setter
    def rep_rate_hz(self, value: float) -> None:
        value = float(value)
        action = f"SET RATE {value:g} Hz"
        index = next((i for i, f in SLM_RATES_HZ.items() if abs(f - value) < 1e-6 * f), None)
        if index is None:
            presets = ", ".join(f"{f / 1e6:g}" for f in SLM_RATES_HZ.values())
            raise limit_error("laser", self.name, action, f"SLM 828 presets {presets} MHz")
        self._check_open(action)
        self._call("SLM_SetPulseParameters", self._dev, self.settings.slm_slot, index, PULSED)

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        return {
            "driver": "sepia",
            "serial": self.serial,
            "wavelength_nm": self.wavelength_nm,
            "emission_on": self.emission_on,
            "power_percent": self.power_percent,
            "rep_rate_hz": self.rep_rate_hz,
        }

    def close(self) -> None:
        """Switch emission off and close the device. Safe to call twice."""
        if self._closed:
            return
        try:
            self.off()
        finally:
            self._closed = True
            try:
                self._call("FWR_FreeModuleMap", self._dev)
            finally:
                self._call("USB_CloseDevice", self._dev)


def _load_library(settings: SepiaSettings) -> Any:
    where = f"laser '{settings.name}': driver 'sepia'"
    hint = ("PicoQuant's Sepia2_Lib.dll (Windows only), installed with the Sepia II software "
            "from picoquant.com (Support → Software)")
    if os.name != "nt":
        raise MissingExtraError(f"{where} needs {hint}; it is not available on this platform")
    try:
        return ctypes.WinDLL(settings.library_path or "Sepia2_Lib.dll")  # type: ignore[attr-defined]
    except OSError as exc:
        raise MissingExtraError(f"{where} needs {hint}: {exc}") from exc


def open_instrument(settings: SepiaSettings) -> SepiaLaser:
    """Load ``Sepia2_Lib.dll`` and open the Sepia II described by ``settings``.

    Raises
    ------
    MissingExtraError
        When the library cannot be loaded (always on non-Windows platforms).
    """
    return SepiaLaser(_load_library(settings), settings)


DRIVERS: dict[str, type[BaseModel]] = {"laser": SepiaSettings}
