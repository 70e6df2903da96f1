"""Andor iXon / Newton EMCCD camera through pylablib's ``AndorSDK2Camera``.

A thin adapter: it implements the :class:`~micropl.drivers.interfaces.Camera`
protocol on top of an already-open pylablib camera object (injectable, so tests
use an in-process fake), and refuses unsafe settings before anything reaches
the SDK:

* EM gain above 300 unless ``em_gain_advanced`` is on, above 1000 always, and
  any EM gain above 1 while the sensor is warmer than
  ``em_gain_max_temperature_c`` (−60 °C by default);
* exposure outside ``(0, max_exposure_s]``, cooling set point outside the
  configured range, ROI rows outside the sensor.

Read modes map as ``"fvb"`` → SDK ``"fvb"``, ``"roi"`` → SDK ``"single_track"``
(the rows ``roi_rows`` binned on chip into one row) and ``"image"`` → SDK
``"image"`` (full sensor).

Streaming uses the SDK ring buffer (``"cont"`` acquisition, or ``"kinetic"``
for a fixed number of frames). Frames overwritten before they were read show up
as gaps in the SDK frame indices; the gap is kept in :attr:`Frame.index`,
counted in :attr:`AndorCamera.lost_frames` and logged.

The vendor library (``atmcd64d.dll`` on Windows, ``libandor.so`` on Linux) comes
with Andor Solis or the Andor SDK2; pylablib loads it when the camera opens.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from micropl.drivers._camera_common import EM_GAIN_MAX, EM_GAIN_MAX_ADVANCED, SdkCameraMixin
from micropl.drivers._settings import (
    GAIN_TEMPERATURE_MAX_C,
    GAIN_TEMPERATURE_MIN_C,
    SENSOR_TEMPERATURE_MAX_C,
    SENSOR_TEMPERATURE_MIN_C,
    StrictSettings,
    check_cooling,
)
from micropl.drivers.interfaces import Clock
from micropl.errors import InstrumentError, MissingExtraError
from micropl.records import Frame, ReadMode

__all__ = ["AndorCameraSettings", "AndorCamera", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

#: Importable modules needed at open time (the SDK DLL itself is loaded by pylablib).
REQUIRES: tuple[str, ...] = ("pylablib",)
#: Vendor shared libraries pylablib needs to open the camera.
VENDOR_LIBRARIES: tuple[str, ...] = ("atmcd64d.dll", "libandor.so")

_SDK_READ_MODE: dict[str, str] = {"fvb": "fvb", "roi": "single_track", "image": "image"}
_SHUTTER_MODES = ("auto", "open", "closed")


class AndorCameraSettings(StrictSettings):
    """Settings of an Andor SDK2 camera (iXon, Newton, Idus)."""

    driver: Literal["andor"] = Field(description="Driver name: Andor SDK2 camera via pylablib.")
    name: str = Field("camera", description="Instrument name used in messages and files.")
    index: int = Field(0, ge=0, description="Camera index in the Andor SDK (0 = first camera).")
    ini_path: str = Field("", description="Path to the camera .ini file, if the model needs one.")
    fan_mode: Literal["full", "low", "off"] = Field("full", description="Cooling fan mode.")
    target_temperature_c: float = Field(
        -80.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C, description="Cooling set point applied at connection, in °C."
    )
    min_temperature_c: float = Field(-100.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C,
                                     description="Lowest set point accepted, in °C.")
    max_temperature_c: float = Field(20.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C,
                                     description="Highest set point accepted, in °C.")
    em_gain_max_temperature_c: float = Field(
        -60.0, ge=GAIN_TEMPERATURE_MIN_C, le=GAIN_TEMPERATURE_MAX_C,
        description="EM gain above 1 is refused while the sensor is warmer than this, in °C.",
    )
    max_exposure_s: float = Field(600.0, gt=0, description="Longest exposure accepted, in s.")
    e_per_adu_preamp1: float = Field(
        4.0,
        gt=0,
        description=(
            "Sensitivity in electrons per ADU at pre-amp gain 1x, from the camera's "
            "performance sheet for the readout speed in use; divided by the pre-amp gain."
        ),
    )
    frame_timeout_s: float = Field(
        10.0, gt=0, description="Time allowed for readout beyond the exposure, in s."
    )

    @model_validator(mode="after")
    def _check(self) -> AndorCameraSettings:
        check_cooling(self)
        return self


class AndorCamera(SdkCameraMixin):
    """Camera protocol on top of an open pylablib ``AndorSDK2Camera``.

    Parameters
    ----------
    sdk : AndorSDK2Camera
        Open camera object (or a fake with the same methods).
    settings : AndorCameraSettings
        Connection settings and limits.
    clock : Clock, optional
        Source of ``Frame.t_s``; wall time since connection when omitted.
    """

    settings: AndorCameraSettings
    _log = log
    _lost_frames_note = " (read too slowly)"

    def __init__(self, sdk: Any, settings: AndorCameraSettings, clock: Clock | None = None):
        self._init_camera_state(sdk, settings, clock)
        gain, advanced = sdk.get_EMCCD_gain()
        self._em_gain = max(int(gain), 1)
        self._em_advanced = bool(advanced)
        self._target_temperature_c = float(settings.target_temperature_c)
        height = self.sensor_shape[0]
        centre = height // 2
        self._roi_rows: tuple[int, int] = (max(centre - 5, 0), min(centre + 6, height))
        self._read_mode: ReadMode = "fvb"
        with self._sdk_errors("SET READ MODE fvb"):
            sdk.set_read_mode("fvb")

    # ------------------------------------------------------------------ helpers
    def _check_open(self, action: str) -> None:
        if self._closed:
            raise InstrumentError(f"camera '{self.name}': {action} refused: camera is closed")

    def _check_not_streaming(self, action: str) -> None:
        if self._streaming:
            raise InstrumentError(
                f"camera '{self.name}': {action} refused: streaming; call stop() first"
            )

    # ------------------------------------------------------------------ exposure
    @SdkCameraMixin.exposure_s.setter
    def exposure_s(self, value: float) -> None:
        value = float(value)
        action = self._check_exposure(value)
        with self._sdk_errors(action):
            self._exposure_s = float(self._sdk.set_exposure(value))

    # ------------------------------------------------------------------ EM gain
    @property
    def temperature_c(self) -> float:
        """Sensor temperature in °C, read now."""
        with self._sdk_errors("READ TEMPERATURE"):
            return float(self._sdk.get_temperature())

    def _check_em_gain(self, gain: int, advanced: bool) -> None:
        action = f"SET EM GAIN {gain}"
        if gain < 1 or gain > EM_GAIN_MAX_ADVANCED:
            raise self._refuse(action, f"range 1–{EM_GAIN_MAX_ADVANCED}")
        self._check_em_gain_advanced(action, gain, advanced)
        if gain > 1:
            self._check_em_gain_cold(action)

    @property
    def em_gain(self) -> int:
        """EM gain (1 = no multiplication)."""
        return self._em_gain

    @em_gain.setter
    def em_gain(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value:
            raise self._refuse(f"SET EM GAIN {value!r}", "an integer")
        gain = int(value)
        self._check_open(f"SET EM GAIN {gain}")
        self._check_em_gain(gain, self._em_advanced)
        with self._sdk_errors(f"SET EM GAIN {gain}"):
            self._sdk.set_EMCCD_gain(gain, advanced=self._em_advanced)
        self._em_gain = gain

    @property
    def em_gain_advanced(self) -> bool:
        """Whether EM gains above 300 are allowed (Andor "advanced EM gain")."""
        return self._em_advanced

    @em_gain_advanced.setter
    def em_gain_advanced(self, value: bool) -> None:
        value = bool(value)
        action = f"SET EM ADVANCED {'ON' if value else 'OFF'}"
        if not value and self._em_gain > EM_GAIN_MAX:
            raise self._refuse(action, f"EM gain {self._em_gain} must first be ≤ {EM_GAIN_MAX}")
        self._check_open(action)
        with self._sdk_errors(action):
            self._sdk.set_EMCCD_gain(self._em_gain, advanced=value)
        self._em_advanced = value

    # ------------------------------------------------------------------ read mode
    @property
    def read_mode(self) -> ReadMode:
        """``"fvb"``, ``"roi"`` (single track over ``roi_rows``) or ``"image"``."""
        return self._read_mode

    @read_mode.setter
    def read_mode(self, mode: str) -> None:
        action = f"SET READ MODE {mode!r}"
        if mode not in _SDK_READ_MODE:
            raise self._refuse(action, "one of 'fvb', 'roi', 'image'")
        self._check_open(action)
        self._check_not_streaming(action)
        self._apply_read_mode(mode, self._roi_rows)
        self._read_mode = mode  # type: ignore[assignment]

    def _apply_read_mode(self, mode: str, rows: tuple[int, int]) -> None:
        with self._sdk_errors(f"SET READ MODE {mode!r}"):
            if mode == "roi":
                start, stop = rows
                width = stop - start
                self._sdk.setup_single_track_mode(center=start + width // 2, width=width)
            elif mode == "image":
                self._sdk.setup_image_mode()
            else:
                self._sdk.set_read_mode(_SDK_READ_MODE[mode])

    @property
    def roi_rows(self) -> tuple[int, int]:
        """Rows ``[start, stop)`` binned in ``"roi"`` mode (0-based)."""
        return self._roi_rows

    @roi_rows.setter
    def roi_rows(self, rows: tuple[int, int]) -> None:
        start, stop, action = self._check_roi_rows(rows)
        if (stop - start) % 2 == 0:
            raise self._refuse(
                action, "an odd number of rows (Andor single track is centred on one row)"
            )
        self._check_open(action)
        if self._read_mode == "roi":
            self._check_not_streaming(action)
            self._apply_read_mode("roi", (start, stop))
        self._roi_rows = (start, stop)

    # ------------------------------------------------------------------ cooling
    @property
    def target_temperature_c(self) -> float:
        """Cooling set point in °C."""
        return self._target_temperature_c

    @target_temperature_c.setter
    def target_temperature_c(self, value: float) -> None:
        value = float(value)
        action = f"SET TEMPERATURE {value:g} °C"
        lo, hi = self.settings.min_temperature_c, self.settings.max_temperature_c
        with self._sdk_errors("READ TEMPERATURE RANGE"):
            sdk_lo, sdk_hi = self._sdk.get_temperature_range()
        lo, hi = max(lo, float(sdk_lo)), min(hi, float(sdk_hi))
        if not lo <= value <= hi or value != int(value):
            raise self._refuse(action, f"whole degrees in {lo:g}–{hi:g} °C")
        self._check_open(action)
        with self._sdk_errors(action):
            self._target_temperature_c = float(self._sdk.set_temperature(int(value)))

    @property
    def temperature_status(self) -> str:
        """SDK cooling status: off, not_reached, not_stabilized, stabilized or drifted."""
        with self._sdk_errors("READ TEMPERATURE STATUS"):
            return str(self._sdk.get_temperature_status())

    @property
    def cooler_on(self) -> bool:
        """Whether the thermo-electric cooler runs."""
        with self._sdk_errors("READ COOLER"):
            return bool(self._sdk.is_cooler_on())

    @cooler_on.setter
    def cooler_on(self, value: bool) -> None:
        value = bool(value)
        action = f"COOLER {'ON' if value else 'OFF'}"
        if not value and self._em_gain > 1:
            raise self._refuse(action, f"EM gain {self._em_gain} must first be set to 1")
        self._check_open(action)
        with self._sdk_errors(action):
            self._sdk.set_cooler(value)

    # ------------------------------------------------------------------ shutter, e/ADU
    def set_shutter(self, mode: str) -> None:
        """Set the camera shutter to ``"auto"``, ``"open"`` or ``"closed"``."""
        action = f"SET SHUTTER {mode!r}"
        if mode not in _SHUTTER_MODES:
            raise self._refuse(action, "one of 'auto', 'open', 'closed'")
        self._check_open(action)
        with self._sdk_errors(action):
            self._sdk.setup_shutter(mode)

    @property
    def e_per_adu(self) -> float:
        """Electrons per ADU for the current pre-amp gain (before EM gain)."""
        with self._sdk_errors("READ PRE-AMP GAIN"):
            preamp_gain = float(self._sdk.get_preamp_gain())
        return self.settings.e_per_adu_preamp1 / preamp_gain

    # ------------------------------------------------------------------ acquisition
    def acquire(self) -> Frame:
        """Take one exposure (SDK kinetic series of one frame) and return it."""
        self._check_open("ACQUIRE")
        self._check_not_streaming("ACQUIRE")
        t_s, got, result = self._acquire_one("kinetic")
        frames, _infos = result if result is not None else (None, None)
        if not frames:
            why = "no frame arrived" if got else "acquisition stopped without a frame"
            raise InstrumentError(f"camera '{self.name}': ACQUIRE failed: {why}")
        return self._to_frame(frames[-1], 0, t_s)

    def start_stream(self, n_frames: int | None = None) -> None:
        """Start acquiring into the SDK ring buffer.

        Parameters
        ----------
        n_frames : int, optional
            Number of frames of a kinetic series; continuous when omitted.
        """
        action = "START STREAM"
        self._check_open(action)
        self._check_not_streaming(action)
        if n_frames is not None and int(n_frames) < 1:
            raise self._refuse(f"START STREAM of {n_frames} frames", "at least 1 frame")
        if n_frames is None:
            self._begin_stream(action, mode="cont")
        else:
            self._begin_stream(action, mode="kinetic", nframes=int(n_frames))

    def read_frames(self) -> list[Frame]:
        """Frames acquired since the last call; gaps in ``Frame.index`` are lost frames."""
        action = "READ FRAMES"
        self._check_open(action)
        if not self._streaming:
            raise InstrumentError(
                f"camera '{self.name}': {action} refused: not streaming; call start_stream() first"
            )
        with self._sdk_errors(action):
            result = self._sdk.read_multiple_images(return_info=True)
        if result is None or result[0] is None:
            raise InstrumentError(
                f"camera '{self.name}': {action} failed: the SDK has no acquisition set up"
            )
        return self._frames_from_ring(*result)

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        return {
            "driver": "andor",
            "exposure_s": self._exposure_s,
            "em_gain": self._em_gain,
            "em_gain_advanced": self._em_advanced,
            **self._readout_snapshot(),
            "sensor_shape_px": list(self.sensor_shape),
            "pixel_um": self.pixel_um,
            "e_per_adu": self.e_per_adu,
            "lost_frames": self.lost_frames,
        }


def open_instrument(settings: AndorCameraSettings, clock: Clock | None = None) -> AndorCamera:
    """Open the Andor camera described by ``settings``.

    Raises
    ------
    MissingExtraError
        When pylablib or the Andor SDK2 library is not available.
    """
    where = f"camera '{settings.name}': driver 'andor'"
    try:
        from pylablib.devices.Andor import AndorSDK2Camera
    except ImportError as exc:
        raise MissingExtraError(f"{where} needs pylablib: pip install pylablib") from exc
    try:
        sdk = AndorSDK2Camera(
            idx=settings.index,
            ini_path=settings.ini_path,
            temperature=settings.target_temperature_c,
            fan_mode=settings.fan_mode,
        )
    except OSError as exc:
        raise MissingExtraError(
            f"{where} needs the Andor SDK2 library (atmcd64d.dll on Windows, libandor.so on "
            f"Linux), installed with Andor Solis or the Andor SDK from andor.oxinst.com: {exc}"
        ) from exc
    return AndorCamera(sdk, settings, clock=clock)


DRIVERS: dict[str, type[BaseModel]] = {"camera": AndorCameraSettings}
