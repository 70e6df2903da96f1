"""Princeton Instruments ProEM / PyLoN / PIXIS camera through pylablib's ``PicamCamera``.

A thin adapter implementing :class:`~micropl.drivers.interfaces.Camera` on top
of an open pylablib ``PicamCamera`` (injectable; tests use a fake). Parameters
are PICam attributes, named as PICam names them:

=============================  ==========================================
``exposure_s``                 ``set_exposure`` ("Exposure Time", ms)
``em_gain``                    "EM Gain" (EMCCD models; needs ADC Quality
                               "Electron Multiplied")
``adc_quality``                "ADC Quality"
``analog_gain``                "ADC Analog Gain" (Low / Medium / High)
``temperature_c``              "Sensor Temperature Reading"
``target_temperature_c``       "Sensor Temperature Set Point"
``temperature_status``         "Sensor Temperature Status"
read modes                     ``set_roi``: FVB = full height binned on chip,
                               ROI = rows ``roi_rows`` binned, image = 1×1
=============================  ==========================================

Every value is range-checked here and written with ``truncate=False``, because
pylablib's default silently clips out-of-range values. The vendor library
(``Picam.dll``, PICam runtime from Teledyne Princeton Instruments) is loaded by
pylablib when the camera opens.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from micropl.drivers._camera_common import EM_GAIN_MAX as EM_GAIN_MAX
from micropl.drivers._camera_common import EM_GAIN_MAX_ADVANCED, SdkCameraMixin
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

__all__ = ["PicamCameraSettings", "PicamCamera", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

REQUIRES: tuple[str, ...] = ("pylablib",)
VENDOR_LIBRARIES: tuple[str, ...] = ("Picam.dll", "libpicam.so")

EXPOSURE = "Exposure Time"
EM_GAIN = "EM Gain"
ADC_QUALITY = "ADC Quality"
ANALOG_GAIN = "ADC Analog Gain"
TEMP_READING = "Sensor Temperature Reading"
TEMP_SET_POINT = "Sensor Temperature Set Point"
TEMP_STATUS = "Sensor Temperature Status"
EM_QUALITY = "Electron Multiplied"


class PicamCameraSettings(StrictSettings):
    """Settings of a PICam camera (ProEM EMCCD, PyLoN/PIXIS CCD)."""

    driver: Literal["picam"] = Field(description="Driver name: Princeton Instruments PICam via pylablib.")
    name: str = Field("camera", description="Instrument name used in messages and files.")
    serial_number: str = Field("", description="Camera serial number; empty = first camera.")
    target_temperature_c: float = Field(-70.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C,
                                        description="Sensor set point at connection, °C.")
    min_temperature_c: float = Field(-100.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C,
                                     description="Lowest set point accepted, °C.")
    max_temperature_c: float = Field(20.0, ge=SENSOR_TEMPERATURE_MIN_C, le=SENSOR_TEMPERATURE_MAX_C,
                                     description="Highest set point accepted, °C.")
    em_gain_max_temperature_c: float = Field(
        -60.0, ge=GAIN_TEMPERATURE_MIN_C, le=GAIN_TEMPERATURE_MAX_C,
        description="EM gain above 1 is refused while the sensor is warmer than this, °C."
    )
    max_exposure_s: float = Field(600.0, gt=0, description="Longest exposure accepted, s.")
    e_per_adu: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"Low": 4.0, "Medium": 2.0, "High": 1.0},
        description="Electrons per ADU for each ADC analog gain, from the camera's test sheet.",
    )
    buffer_frames: int = Field(100, ge=2, description="Frames in the streaming ring buffer.")
    frame_timeout_s: float = Field(10.0, gt=0, description="Readout time allowed beyond exposure, s.")

    @model_validator(mode="after")
    def _check(self) -> PicamCameraSettings:
        check_cooling(self)
        return self


class PicamCamera(SdkCameraMixin):
    """Camera protocol on top of an open pylablib ``PicamCamera``."""

    settings: PicamCameraSettings
    _log = log

    def __init__(self, sdk: Any, settings: PicamCameraSettings, clock: Clock | None = None):
        self._init_camera_state(sdk, settings, clock)
        self.em_gain_advanced = False
        self.has_em = sdk.get_attribute(EM_GAIN, error_on_missing=False) is not None
        self._em_gain = int(sdk.get_attribute_value(EM_GAIN)) if self.has_em else 1
        height = self.sensor_shape[0]
        centre = height // 2
        self._roi_rows = (max(centre - 5, 0), min(centre + 5, height))
        self._read_mode: ReadMode = "fvb"
        self._apply_roi("fvb", self._roi_rows)

    # ------------------------------------------------------------------ helpers
    def _check_open(self, action: str) -> None:
        if self._closed:
            raise InstrumentError(f"camera '{self.name}': {action} refused: camera is closed")
        if self._streaming:
            raise InstrumentError(f"camera '{self.name}': {action} refused: streaming; stop first")

    def _set(self, name: str, value: Any, action: str) -> None:
        with self._sdk_errors(action):
            self._sdk.set_attribute_value(name, value, truncate=False)

    # ------------------------------------------------------------------ exposure, gains
    @SdkCameraMixin.exposure_s.setter
    def exposure_s(self, value: float) -> None:
        value = float(value)
        action = self._check_exposure(value)
        self._set(EXPOSURE, value * 1e3, action)
        self._exposure_s = value

    @property
    def temperature_c(self) -> float:
        """Sensor temperature in °C."""
        with self._sdk_errors("READ TEMPERATURE"):
            return float(self._sdk.get_attribute_value(TEMP_READING))

    @property
    def adc_quality(self) -> str:
        """PICam "ADC Quality" (e.g. "Low Noise", "Electron Multiplied")."""
        with self._sdk_errors("READ ADC QUALITY"):
            return str(self._sdk.get_attribute_value(ADC_QUALITY))

    @adc_quality.setter
    def adc_quality(self, value: str) -> None:
        action = f"SET ADC QUALITY {value!r}"
        allowed = list(self._sdk.get_attribute(ADC_QUALITY).values)
        if value not in allowed:
            raise self._refuse(action, f"one of {allowed}")
        if value != EM_QUALITY and self._em_gain > 1:
            raise self._refuse(action, f"EM gain {self._em_gain} must first be set to 1")
        self._check_open(action)
        self._set(ADC_QUALITY, value, action)

    @property
    def analog_gain(self) -> str:
        """PICam "ADC Analog Gain" (Low, Medium, High)."""
        with self._sdk_errors("READ ANALOG GAIN"):
            return str(self._sdk.get_attribute_value(ANALOG_GAIN))

    @analog_gain.setter
    def analog_gain(self, value: str) -> None:
        action = f"SET ANALOG GAIN {value!r}"
        if value not in self.settings.e_per_adu:
            raise self._refuse(action, f"one of {sorted(self.settings.e_per_adu)}")
        self._check_open(action)
        self._set(ANALOG_GAIN, value, action)

    @property
    def e_per_adu(self) -> float:
        """Electrons per ADU for the current analog gain."""
        return float(self.settings.e_per_adu[self.analog_gain])

    @property
    def em_gain(self) -> int:
        """EM gain (1 on CCDs without an EM register)."""
        return self._em_gain

    @em_gain.setter
    def em_gain(self, value: int) -> None:
        gain = int(value)
        action = f"SET EM GAIN {gain}"
        if gain != value or gain < 1 or gain > EM_GAIN_MAX_ADVANCED:
            raise self._refuse(action, f"integer 1–{EM_GAIN_MAX_ADVANCED}")
        self._check_em_gain_advanced(action, gain, self.em_gain_advanced)
        if gain > 1:
            if not self.has_em:
                raise self._refuse(action, "1 (this camera has no EM register)")
            if self.adc_quality != EM_QUALITY:
                raise self._refuse(action, f"1 unless adc_quality is {EM_QUALITY!r}")
            self._check_em_gain_cold(action)
        self._check_open(action)
        if self.has_em:
            self._set(EM_GAIN, gain, action)
        self._em_gain = gain

    # ------------------------------------------------------------------ cooling
    @property
    def target_temperature_c(self) -> float:
        """Sensor set point in °C."""
        with self._sdk_errors("READ SET POINT"):
            return float(self._sdk.get_attribute_value(TEMP_SET_POINT))

    @target_temperature_c.setter
    def target_temperature_c(self, value: float) -> None:
        value = float(value)
        action = f"SET TEMPERATURE {value:g} °C"
        attr = self._sdk.get_attribute(TEMP_SET_POINT)
        lo = max(self.settings.min_temperature_c, float(attr.min))
        hi = min(self.settings.max_temperature_c, float(attr.max))
        if not lo <= value <= hi:
            raise self._refuse(action, f"range {lo:g}–{hi:g} °C")
        self._check_open(action)
        self._set(TEMP_SET_POINT, value, action)

    @property
    def temperature_status(self) -> str:
        """PICam temperature status: "Locked", "Unlocked" or "Faulted"."""
        with self._sdk_errors("READ TEMPERATURE STATUS"):
            return str(self._sdk.get_attribute_value(TEMP_STATUS))

    @property
    def cooler_on(self) -> bool:
        """PICam cameras regulate their temperature whenever powered."""
        return True

    @cooler_on.setter
    def cooler_on(self, value: bool) -> None:
        if not value:
            raise self._refuse("COOLER OFF", "PICam cameras have no cooler switch")

    # ------------------------------------------------------------------ read modes
    @property
    def read_mode(self) -> ReadMode:
        """``"fvb"``, ``"roi"`` or ``"image"`` (set through the PICam ROI)."""
        return self._read_mode

    @read_mode.setter
    def read_mode(self, mode: str) -> None:
        action = f"SET READ MODE {mode!r}"
        if mode not in ("fvb", "roi", "image"):
            raise self._refuse(action, "one of 'fvb', 'roi', 'image'")
        self._check_open(action)
        self._apply_roi(mode, self._roi_rows)
        self._read_mode = mode  # type: ignore[assignment]

    @property
    def roi_rows(self) -> tuple[int, int]:
        """Rows ``[start, stop)`` binned in ``"roi"`` mode."""
        return self._roi_rows

    @roi_rows.setter
    def roi_rows(self, rows: tuple[int, int]) -> None:
        start, stop, action = self._check_roi_rows(rows)
        self._check_open(action)
        if self._read_mode == "roi":
            self._apply_roi("roi", (start, stop))
        self._roi_rows = (start, stop)

    def _apply_roi(self, mode: str, rows: tuple[int, int]) -> None:
        height, width = self.sensor_shape
        with self._sdk_errors(f"SET READ MODE {mode!r}"):
            if mode == "fvb":
                self._sdk.set_roi(0, width, 0, height, 1, height)
            elif mode == "roi":
                self._sdk.set_roi(0, width, rows[0], rows[1], 1, rows[1] - rows[0])
            else:
                self._sdk.set_roi(0, width, 0, height, 1, 1)

    # ------------------------------------------------------------------ acquisition
    def acquire(self) -> Frame:
        """Take one exposure and return it."""
        self._check_open("ACQUIRE")
        t_s, _got, result = self._acquire_one("snap")
        if result is None or not result[0]:
            raise InstrumentError(f"camera '{self.name}': ACQUIRE failed: no frame arrived")
        return self._to_frame(result[0][-1], 0, t_s)

    def start_stream(self) -> None:
        """Start continuous acquisition into a ring of ``buffer_frames`` frames."""
        self._check_open("START STREAM")
        self._begin_stream("START STREAM", mode="sequence", nframes=self.settings.buffer_frames)

    def read_frames(self) -> list[Frame]:
        """Frames acquired since the last call; gaps in ``Frame.index`` are lost frames."""
        if self._closed or not self._streaming:
            raise InstrumentError(
                f"camera '{self.name}': READ FRAMES refused: not streaming; call start_stream()"
            )
        with self._sdk_errors("READ FRAMES"):
            result = self._sdk.read_multiple_images(return_info=True)
        if result is None or result[0] is None:
            raise InstrumentError(f"camera '{self.name}': READ FRAMES failed: no acquisition")
        return self._frames_from_ring(*result)

    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        return {
            "driver": "picam",
            "exposure_s": self._exposure_s,
            "em_gain": self._em_gain,
            "adc_quality": self.adc_quality,
            "analog_gain": self.analog_gain,
            **self._readout_snapshot(),
            "e_per_adu": self.e_per_adu,
            "lost_frames": self.lost_frames,
        }


def open_instrument(settings: PicamCameraSettings, clock: Clock | None = None) -> PicamCamera:
    """Open the PICam camera described by ``settings``.

    Raises
    ------
    MissingExtraError
        When pylablib or the PICam runtime is not available.
    """
    where = f"camera '{settings.name}': driver 'picam'"
    try:
        from pylablib.devices.PrincetonInstruments import PicamCamera as PllPicam
    except ImportError as exc:
        raise MissingExtraError(f"{where} needs pylablib: pip install pylablib") from exc
    try:
        sdk = PllPicam(serial_number=settings.serial_number or None)
    except OSError as exc:
        raise MissingExtraError(
            f"{where} needs the PICam runtime (Picam.dll), installed with LightField or the "
            f"PICam SDK from Teledyne Princeton Instruments: {exc}"
        ) from exc
    cam = PicamCamera(sdk, settings, clock=clock)
    try:
        cam.target_temperature_c = settings.target_temperature_c
    except InstrumentError:
        cam.close()
        raise
    return cam


DRIVERS: dict[str, type[BaseModel]] = {"camera": PicamCameraSettings}
