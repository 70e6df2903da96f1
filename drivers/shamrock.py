"""Andor Shamrock / Kymera spectrograph through pylablib's ``ShamrockSpectrograph``.

A thin adapter implementing :class:`~micropl.drivers.interfaces.Spectrograph`.
pylablib works in metres (centre wavelength, limits, pixel width and the
calibration array); this driver converts to nm and µm at the boundary.

* ``center_wavelength_nm`` — ``get_wavelength``/``set_wavelength`` (m); values
  outside the current grating's limits (``get_wavelength_limits``) or the
  configured range are refused before the SDK is called.
* ``grating`` — ``get_grating``/``set_grating`` (1-based turret slot).
* ``wavelength_axis_nm(n_px, pixel_um)`` — ``set_number_pixels`` +
  ``set_pixel_width`` then ``get_calibration``: the SDK's own calibration from
  the grating equation and the spectrograph's EEPROM optical parameters.

The vendor library (``ShamrockCIF.dll``/``atspectrograph.dll``) comes with
Andor Solis or the Andor SDK; pylablib loads it when the spectrograph opens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from micropl.drivers._settings import StrictSettings, check_range
from micropl.drivers.limits import limit_error, range_refusal
from micropl.errors import InstrumentError, MissingExtraError
from micropl.records import Grating

__all__ = ["ShamrockSettings", "ShamrockSpectrograph", "DRIVERS", "REQUIRES", "open_instrument"]

#: Importable modules needed at open time (the vendor DLL is loaded by pylablib).
REQUIRES: tuple[str, ...] = ("pylablib",)
VENDOR_LIBRARIES: tuple[str, ...] = ("ShamrockCIF.dll", "atspectrograph.dll")


class ShamrockSettings(StrictSettings):
    """Settings of an Andor Shamrock/Kymera spectrograph."""

    driver: Literal["shamrock"] = Field(description="Driver name: Andor Shamrock/Kymera via pylablib.")
    name: str = Field("spectrograph", description="Instrument name used in messages and files.")
    index: int = Field(0, ge=0, description="Spectrograph index in the Shamrock SDK.")
    min_wavelength_nm: float = Field(0.0, ge=0, description="Lowest centre wavelength accepted, nm.")
    max_wavelength_nm: float = Field(1400.0, gt=0, description="Highest centre wavelength accepted, nm.")

    @model_validator(mode="after")
    def _check(self) -> ShamrockSettings:
        check_range("min_wavelength_nm/max_wavelength_nm",
                    (self.min_wavelength_nm, self.max_wavelength_nm), " nm")
        return self


def _blaze_nm(text: Any) -> float:
    try:
        return float(str(text).strip().rstrip("nm").strip())
    except ValueError:
        return float("nan")


class ShamrockSpectrograph:
    """Spectrograph protocol on top of an open pylablib ``ShamrockSpectrograph``.

    Parameters
    ----------
    sdk : ShamrockSpectrograph
        Open pylablib object (or a fake with the same methods).
    settings : ShamrockSettings
        Connection settings and wavelength limits.
    """

    kind = "spectrograph"

    def __init__(self, sdk: Any, settings: ShamrockSettings):
        self._sdk = sdk
        self.settings = settings
        self.name = settings.name
        self._closed = False
        with self._sdk_errors("READ GRATINGS"):
            n = int(sdk.get_gratings_number())
            infos = [sdk.get_grating_info(slot) for slot in range(1, n + 1)]
        self.gratings: list[Grating] = [
            Grating(slot=i + 1, grooves_per_mm=float(info.lines), blaze_nm=_blaze_nm(info[1]))
            for i, info in enumerate(infos)
        ]

    @contextlib.contextmanager
    def _sdk_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except InstrumentError:
            raise
        except (RuntimeError, OSError) as exc:
            raise InstrumentError(f"spectrograph '{self.name}': {action} failed: {exc}") from exc

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise InstrumentError(f"spectrograph '{self.name}': {action} refused: closed")

    # ------------------------------------------------------------------ wavelength
    def wavelength_limits_nm(self, grating: int | None = None) -> tuple[float, float]:
        """Centre wavelengths reachable with ``grating`` (current one by default), in nm."""
        with self._sdk_errors("READ WAVELENGTH LIMITS"):
            lo_m, hi_m = self._sdk.get_wavelength_limits(grating)
        return (max(lo_m * 1e9, self.settings.min_wavelength_nm),
                min(hi_m * 1e9, self.settings.max_wavelength_nm))

    def wavelength_range_nm(self, grating: int | None = None) -> tuple[float, float]:
        """Centre wavelengths accepted with ``grating`` (None: in place), nm (an SDK call)."""
        return self.wavelength_limits_nm(grating)

    @property
    def center_wavelength_nm(self) -> float:
        """Centre wavelength in nm."""
        with self._sdk_errors("READ WAVELENGTH"):
            return float(self._sdk.get_wavelength()) * 1e9

    @center_wavelength_nm.setter
    def center_wavelength_nm(self, value: float) -> None:
        value = float(value)
        action = f"GOTO {value:.1f} nm"
        self._check_open(action)
        lo, hi = self.wavelength_limits_nm()
        if range_refusal(value, lo, hi) is not None:
            raise limit_error("spectrograph", self.name, action,
                              f"range {lo:g}–{hi:g} nm with grating {self.grating}")
        with self._sdk_errors(action):
            self._sdk.set_wavelength(value * 1e-9)

    # ------------------------------------------------------------------ grating
    @property
    def grating(self) -> int:
        """Current turret slot (1-based)."""
        with self._sdk_errors("READ GRATING"):
            return int(self._sdk.get_grating())

    @grating.setter
    def grating(self, slot: int) -> None:
        action = f"SET GRATING {slot}"
        self._check_open(action)
        if not isinstance(slot, int) or not 1 <= slot <= len(self.gratings):
            raise limit_error("spectrograph", self.name, action, f"slot 1–{len(self.gratings)}")
        with self._sdk_errors(action):
            self._sdk.set_grating(slot)

    # ------------------------------------------------------------------ calibration
    def wavelength_axis_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """Wavelength of each pixel column from the SDK calibration, in nm.

        Parameters
        ----------
        n_px : int
            Number of pixel columns of the camera.
        pixel_um : float
            Pixel width in µm.

        Returns
        -------
        ndarray, shape (n_px,)
            Wavelengths in nm for the current grating and centre wavelength.
        """
        if int(n_px) < 1 or not pixel_um > 0:
            raise limit_error("spectrograph", self.name,
                              f"CALIBRATE {n_px} px of {pixel_um} µm", "n_px ≥ 1, pixel_um > 0")
        with self._sdk_errors("CALIBRATE"):
            self._sdk.set_number_pixels(int(n_px))
            self._sdk.set_pixel_width(float(pixel_um) * 1e-6)
            axis_m = np.asarray(self._sdk.get_calibration(), dtype=float)
        if axis_m.shape != (int(n_px),):
            raise InstrumentError(
                f"spectrograph '{self.name}': CALIBRATE failed: SDK returned {axis_m.shape[0]} "
                f"values for {n_px} pixels"
            )
        return axis_m * 1e9

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        slot = self.grating
        return {
            "driver": "shamrock",
            "center_wavelength_nm": self.center_wavelength_nm,
            "grating": slot,
            "grooves_per_mm": self.gratings[slot - 1].grooves_per_mm,
            "blaze_nm": self.gratings[slot - 1].blaze_nm,
        }

    def close(self) -> None:
        """Release the spectrograph. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self._sdk_errors("CLOSE"):
            self._sdk.close()


def open_instrument(settings: ShamrockSettings) -> ShamrockSpectrograph:
    """Open the Shamrock/Kymera spectrograph described by ``settings``.

    Raises
    ------
    MissingExtraError
        When pylablib or the Andor Shamrock library is not available.
    """
    where = f"spectrograph '{settings.name}': driver 'shamrock'"
    try:
        from pylablib.devices.Andor import ShamrockSpectrograph as PllShamrock
    except ImportError as exc:
        raise MissingExtraError(f"{where} needs pylablib: pip install pylablib") from exc
    try:
        sdk = PllShamrock(idx=settings.index)
    except OSError as exc:
        raise MissingExtraError(
            f"{where} needs the Andor Shamrock library (ShamrockCIF.dll / atspectrograph.dll), "
            f"installed with Andor Solis or the Andor SDK from andor.oxinst.com: {exc}"
        ) from exc
    return ShamrockSpectrograph(sdk, settings)


DRIVERS: dict[str, type[BaseModel]] = {"spectrograph": ShamrockSettings}
