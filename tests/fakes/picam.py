"""Fake of pylablib's ``PicamCamera`` (Princeton Instruments ProEM / PyLoN, PICam).

Method names and signatures follow ``pylablib/devices/PrincetonInstruments/picam.py``
and pylablib's common camera API. Camera parameters are PICam attributes with
their PICam names ("Exposure Time" in ms, "Sensor Temperature Reading",
"Sensor Temperature Set Point", "Sensor Temperature Status", "ADC Quality",
"ADC Analog Gain", "EM Gain" on EMCCD models, "Sensor Active Width/Height",
"Pixel Width/Height" in µm).

Refusals mirror PICam + pylablib: an unknown attribute raises ``PicamError``;
``set_attribute_value(..., truncate=True)`` (pylablib's default) silently clips
to the range, while ``truncate=False`` stores the value and the next
parameter commit (``setup_acquisition``/``start_acquisition``) fails with
``PicamError("failed to commit following parameters: [...]")``; a value not in
an enumeration's collection raises ``PicamLibError`` (invalid parameter value);
read-only parameters raise ``PicamLibError`` (value is read-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pylablib.devices.PrincetonInstruments.picam import (
    PicamError,
    PicamLibError,
    TDeviceInfo,
)
from pylablib.devices.PrincetonInstruments.picam_defs import PicamError as PicamErrorCode

from . import CallRecorder
from ._framebuffer import FrameRing


@dataclass
class FakeAttribute:
    name: str
    value: object
    min: float | None = None
    max: float | None = None
    values: list = field(default_factory=list)
    writable: bool = True


class FakePicamCamera(CallRecorder):
    """In-process stand-in for ``pylablib.devices.PrincetonInstruments.PicamCamera``."""

    def __init__(self, serial_number=None, *, em_capable=True, detector_size=(1600, 200),
                 pixel_um=16.0, sensor_temperature_c=-70.0, buffer_size=8, bias_adu=600):
        super().__init__()
        self.serial_number = serial_number or "0123456"
        width, height = detector_size
        self.attrs: dict[str, FakeAttribute] = {}
        for attr in [
            FakeAttribute("Exposure Time", 100.0, 0.0, 1e7),
            FakeAttribute("Sensor Temperature Reading", float(sensor_temperature_c),
                          writable=False),
            FakeAttribute("Sensor Temperature Set Point", -70.0, -80.0, 30.0),
            FakeAttribute("Sensor Temperature Status", "Locked", values=["Unlocked", "Locked",
                                                                        "Faulted"],
                          writable=False),
            FakeAttribute("ADC Analog Gain", "Medium", values=["Low", "Medium", "High"]),
            FakeAttribute("ADC Quality", "Low Noise",
                          values=["Low Noise", "Electron Multiplied"] if em_capable
                          else ["Low Noise", "High Capacity"]),
            FakeAttribute("Sensor Active Width", width, writable=False),
            FakeAttribute("Sensor Active Height", height, writable=False),
            FakeAttribute("Pixel Width", pixel_um, writable=False),
            FakeAttribute("Pixel Height", pixel_um, writable=False),
        ]:
            self.attrs[attr.name] = attr
        if em_capable:
            self.attrs["EM Gain"] = FakeAttribute("EM Gain", 1, 1, 1000)
        self.roi = (0, width, 0, height, 1, 1)
        self.buffer_size = buffer_size
        self.bias_adu = bias_adu
        self.pending_invalid: list[str] = []
        self.opened = True
        self.ring = FrameRing(self._make_frame)

    def _make_frame(self, index):
        hstart, hend, vstart, vend, hbin, vbin = self.roi
        rows, width = (vend - vstart) // vbin, (hend - hstart) // hbin
        return np.tile(self.bias_adu + 10 * index + np.arange(width), (rows, 1)).astype(np.uint16)

    # ------------------------------------------------------------------ attributes
    def get_attribute(self, name, error_on_missing=True):
        if name in self.attrs:
            return self.attrs[name]
        if error_on_missing:
            raise PicamError(f"attribute {name} is missing")
        return None

    def get_attribute_value(self, name, error_on_missing=True, default=None, enum_as_str=True):
        self._record("get_attribute_value", name)
        attr = self.get_attribute(name, error_on_missing=error_on_missing and default is None)
        return default if attr is None else attr.value

    def set_attribute_value(self, name, value, truncate=True, error_on_missing=True):
        self._record("set_attribute_value", name, value, truncate=truncate)
        attr = self.get_attribute(name, error_on_missing=error_on_missing)
        if attr is None:
            return
        if not attr.writable:
            raise PicamLibError("Picam_SetParameterFloatingPointValue",
                                PicamErrorCode.PicamError_ParameterValueIsReadOnly)
        if attr.values:
            if value not in attr.values:
                raise PicamLibError("Picam_SetParameterIntegerValue",
                                    PicamErrorCode.PicamError_InvalidParameterValue)
        elif attr.min is not None:
            if truncate:
                value = min(max(value, attr.min), attr.max)
            elif not attr.min <= value <= attr.max:
                self.pending_invalid.append(name)  # PICam refuses it at commit
        attr.value = value

    def _commit_parameters(self):
        if self.pending_invalid:
            failed, self.pending_invalid = self.pending_invalid, []
            raise PicamError(f"failed to commit following parameters: {failed}")

    # ------------------------------------------------------------------ info
    def get_device_info(self):
        return TDeviceInfo("ProEM", self.serial_number, "ProEM+: 1600", "USB3")

    def get_detector_size(self):
        return self.attrs["Sensor Active Width"].value, self.attrs["Sensor Active Height"].value

    def get_pixel_size(self):
        return (self.attrs["Pixel Width"].value * 1e-6, self.attrs["Pixel Height"].value * 1e-6)

    # ------------------------------------------------------------------ exposure, ROI
    def get_exposure(self):
        return self.attrs["Exposure Time"].value * 1e-3

    def set_exposure(self, exposure):
        self._record("set_exposure", exposure)
        self.set_attribute_value("Exposure Time", exposure * 1e3)
        return self.get_exposure()

    def get_frame_timings(self):
        from pylablib.devices.interface.camera import TAcqTimings
        return TAcqTimings(self.get_exposure(), self.get_exposure() + 0.02)

    def get_roi(self):
        return self.roi

    def set_roi(self, hstart=0, hend=None, vstart=0, vend=None, hbin=1, vbin=1):
        self._record("set_roi", hstart, hend, vstart, vend, hbin, vbin)
        width, height = self.get_detector_size()
        hend = width if hend is None else min(hend, width)
        vend = height if vend is None else min(vend, height)
        hstart, vstart = max(0, hstart), max(0, vstart)  # pylablib truncates to the limits
        self.roi = (hstart, hend, vstart, vend, max(1, min(hbin, hend - hstart)),
                    max(1, min(vbin, vend - vstart)))
        return self.roi

    # ------------------------------------------------------------------ acquisition
    def setup_acquisition(self, mode="sequence", nframes=100):
        self._record("setup_acquisition", mode=mode, nframes=nframes)
        self._commit_parameters()
        self.ring.setup(min(nframes, self.buffer_size), nframes if mode == "snap" else None)

    def clear_acquisition(self):
        self._record("clear_acquisition")
        self.ring.clear()

    def start_acquisition(self, *args, **kwargs):
        self._record("start_acquisition")
        self._commit_parameters()
        if self.ring.buffer_size is None:
            self.setup_acquisition(*args, **kwargs)
        self.ring.start()

    def stop_acquisition(self):
        self._record("stop_acquisition")
        self.ring.stop()

    def acquisition_in_progress(self):
        return self.ring.running

    def get_frames_status(self):
        return self.ring.status()

    def wait_for_frame(self, since="lastread", nframes=1, timeout=20.0, error_on_stopped=False):
        self._record("wait_for_frame", timeout=timeout)
        if not self.ring.running and self.ring.unread() < nframes:
            if error_on_stopped:
                raise PicamError("waiting for a frame while acquisition is stopped")
            return False
        if nframes - self.ring.unread() > 0:
            self.ring.produce(nframes - self.ring.unread())
        return True

    def read_multiple_images(self, rng=None, peek=False, missing_frame="skip", return_info=False,
                             return_rng=False):
        self._record("read_multiple_images", return_info=return_info)
        return self.ring.read(return_info, peek=peek)

    def advance_frames(self, n):
        return self.ring.produce(n)

    def close(self):
        self._record("close")
        self.ring.clear()
        self.opened = False
