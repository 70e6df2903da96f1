"""Fake of pylablib's ``AndorSDK2Camera`` (Andor iXon / Newton, SDK2).

Method names and signatures follow
``pylablib/devices/Andor/AndorSDK2.py``. Refusals mirror the real SDK:

* ``set_EMCCD_gain`` outside the range of the current gain mode raises
  ``AndorSDK2LibError("SetEMCCDGain", DRV_P1INVALID)`` (in "real gain" mode the
  range is 0–300, or 0–1000 with advanced EM gain enabled);
* an unknown read mode or shutter mode raises the same ``ValueError`` as
  pylablib's parameter enumerations;
* ``set_temperature`` clamps to ``GetTemperatureRange`` silently, as the real
  wrapper does (so a driver must check the range itself);
* reading frames without an acquisition set up returns ``None`` and
  ``wait_for_frame(error_on_stopped=True)`` raises ``AndorError``, as in the
  real camera API.

Frames are ``bias_adu + 10 * frame_index + column_index`` (uint16), so a test
can tell which frame it got.
"""

from __future__ import annotations

import numpy as np
from pylablib.devices.Andor.AndorSDK2 import (
    AndorError,
    AndorSDK2Camera,
    AndorSDK2LibError,
    TAcqProgress,
    TDeviceInfo,
)
from pylablib.devices.Andor.atmcd32d_defs import DRV_STATUS
from pylablib.devices.interface.camera import TAcqTimings

from . import CallRecorder
from ._framebuffer import FrameRing

_READ_MODES = AndorSDK2Camera._p_read_mode
_SHUTTER_MODES = AndorSDK2Camera._p_shutter_mode


class FakeAndorSDK2Camera(CallRecorder):
    """In-process stand-in for ``pylablib.devices.Andor.AndorSDK2Camera``."""

    def __init__(
        self,
        idx=0,
        ini_path="",
        temperature=None,
        fan_mode="off",
        amp_mode=None,
        *,
        detector_size=(1600, 200),
        pixel_size_m=16e-6,
        sensor_temperature_c=-80.0,
        temperature_range_c=(-100, 20),
        preamp_gains=(1.0, 2.0, 4.0),
        preamp=0,
        buffer_size=8,
        bias_adu=500,
    ):
        super().__init__()
        self.idx = idx
        self.detector_size = tuple(detector_size)  # (width, height)
        self.pixel_size_m = pixel_size_m
        self.sensor_temperature_c = float(sensor_temperature_c)
        self.temperature_range_c = tuple(temperature_range_c)
        self.preamp_gains = tuple(preamp_gains)
        self.preamp = preamp
        self.buffer_size = buffer_size
        self.bias_adu = bias_adu
        self.opened = True
        self.setpoint_c = int(temperature) if temperature not in (None, "off") else -80
        self.cooler = temperature != "off"
        self.em_gain = 0
        self.em_advanced = False
        self.read_mode = "fvb"
        self.single_track = (0, 1)
        self.image_params = (0, self.detector_size[0], 0, self.detector_size[1], 1, 1)
        self.exposure_s = 0.0
        self.shutter = "closed"
        self.acq_mode = "cont"
        self.kinetic_frames = 1
        self.ring = FrameRing(self._make_frame)

    # ------------------------------------------------------------------ helpers
    def _make_frame(self, index: int) -> np.ndarray:
        width, height = self.detector_size
        if self.read_mode in ("fvb", "single_track"):
            rows = 1
        else:
            hstart, hend, vstart, vend, hbin, vbin = self.image_params
            rows, width = (vend - vstart) // vbin, (hend - hstart) // hbin
        row = self.bias_adu + 10 * index + np.arange(width)
        return np.tile(row, (rows, 1)).astype(np.uint16)

    def _check_open(self) -> None:
        if not self.opened:
            raise AndorError("camera is not opened")

    # ------------------------------------------------------------------ info
    def get_device_info(self):
        self._record("get_device_info")
        return TDeviceInfo("USB", "DU970P-BVF", 12345)

    def get_detector_size(self):
        self._record("get_detector_size")
        return self.detector_size

    def get_pixel_size(self):
        self._record("get_pixel_size")
        return (self.pixel_size_m, self.pixel_size_m)

    def close(self):
        self._record("close")
        self.ring.clear()
        self.opened = False

    def is_opened(self):
        return self.opened

    # ------------------------------------------------------------------ cooling
    def get_temperature(self):
        self._record("get_temperature")
        self._check_open()
        return self.sensor_temperature_c

    def get_temperature_status(self):
        self._record("get_temperature_status")
        if not self.cooler:
            return "off"
        if abs(self.sensor_temperature_c - self.setpoint_c) < 1.0:
            return "stabilized"
        return "not_reached"

    def get_temperature_range(self):
        self._record("get_temperature_range")
        return self.temperature_range_c

    def set_temperature(self, temperature, enable_cooler=True):
        self._record("set_temperature", temperature, enable_cooler=enable_cooler)
        lo, hi = self.temperature_range_c
        self.setpoint_c = int(min(max(temperature, lo), hi))  # the real wrapper clamps
        if enable_cooler:
            self.cooler = True
        return self.setpoint_c

    def get_temperature_setpoint(self):
        return self.setpoint_c

    def set_cooler(self, on=True):
        self._record("set_cooler", on)
        self.cooler = bool(on)
        return self.cooler

    def is_cooler_on(self):
        self._record("is_cooler_on")
        return self.cooler

    # ------------------------------------------------------------------ amplifiers
    def get_EMCCD_gain(self):
        self._record("get_EMCCD_gain")
        return (self.em_gain, self.em_advanced)

    def set_EMCCD_gain(self, gain, advanced=None):
        self._record("set_EMCCD_gain", gain, advanced=advanced)
        gain = int(gain)
        if advanced is not None:
            self.em_advanced = bool(advanced)
        high = 1000 if self.em_advanced else 300
        if not 0 <= gain <= high:
            raise AndorSDK2LibError("SetEMCCDGain", DRV_STATUS.DRV_P1INVALID)
        self.em_gain = gain

    def get_preamp(self):
        return self.preamp

    def get_preamp_gain(self, preamp=None):
        self._record("get_preamp_gain", preamp)
        return self.preamp_gains[self.preamp if preamp is None else preamp]

    # ------------------------------------------------------------------ read modes
    def set_read_mode(self, mode):
        self._record("set_read_mode", mode)
        _READ_MODES(mode)  # same ValueError as pylablib for an unknown mode
        self.read_mode = mode
        return mode

    def get_read_mode(self):
        return self.read_mode

    def setup_single_track_mode(self, center=0, width=1):
        self._record("setup_single_track_mode", center=center, width=width)
        height = self.detector_size[1]
        if not (0 <= center < height and width >= 1 and center - width // 2 >= 0
                and center + (width - 1) // 2 < height):
            raise AndorSDK2LibError("SetSingleTrack", DRV_STATUS.DRV_P1INVALID)
        self.read_mode = "single_track"
        self.single_track = (center, width)
        return (center, width)

    def get_single_track_mode_parameters(self):
        return self.single_track

    def setup_image_mode(self, hstart=0, hend=None, vstart=0, vend=None, hbin=1, vbin=1):
        self._record("setup_image_mode", hstart=hstart, hend=hend, vstart=vstart, vend=vend,
                     hbin=hbin, vbin=vbin)
        width, height = self.detector_size
        hend = width if hend is None else hend
        vend = height if vend is None else vend
        self.read_mode = "image"
        self.image_params = (hstart, hend, vstart, vend, hbin, vbin)
        return self.image_params

    # ------------------------------------------------------------------ timing
    def set_exposure(self, exposure):
        self._record("set_exposure", exposure)
        self.exposure_s = max(float(exposure), 1e-5)  # the SDK rounds up to its minimum
        return self.exposure_s

    def get_exposure(self):
        return self.exposure_s

    def get_frame_timings(self):
        return TAcqTimings(self.exposure_s, self.exposure_s + 0.01)

    # ------------------------------------------------------------------ shutter
    def setup_shutter(self, mode, ttl_mode=0, open_time=None, close_time=None):
        self._record("setup_shutter", mode, ttl_mode=ttl_mode, open_time=open_time,
                     close_time=close_time)
        _SHUTTER_MODES(mode)
        self.shutter = mode
        return (mode, ttl_mode, open_time or 0, close_time or 0)

    def get_shutter(self):
        return self.shutter

    # ------------------------------------------------------------------ acquisition
    def set_acquisition_mode(self, mode, setup_params=True):
        self._record("set_acquisition_mode", mode, setup_params=setup_params)
        AndorSDK2Camera._p_acq_mode(mode)
        self.acq_mode = mode
        return mode

    def setup_kinetic_mode(self, num_cycle, cycle_time=0.0, num_acc=1, cycle_time_acc=0,
                           num_prescan=0):
        self._record("setup_kinetic_mode", num_cycle, cycle_time=cycle_time)
        self.acq_mode = "kinetic"
        self.kinetic_frames = int(num_cycle)
        return (num_cycle, cycle_time, num_acc, cycle_time_acc, num_prescan)

    def setup_cont_mode(self, cycle_time=0):
        self._record("setup_cont_mode", cycle_time)
        self.acq_mode = "cont"
        return cycle_time

    def setup_acquisition(self, mode=None, nframes=None):
        self._record("setup_acquisition", mode=mode, nframes=nframes)
        mode = {"snap": "kinetic", "sequence": "cont"}.get(mode, mode)
        if mode == "kinetic" and nframes is not None:
            self.kinetic_frames = int(nframes)
        if mode is not None:
            self.acq_mode = mode
        self.ring.setup(self.buffer_size, self.kinetic_frames if self.acq_mode == "kinetic"
                        else None)

    def clear_acquisition(self):
        self._record("clear_acquisition")
        self.ring.clear()

    def start_acquisition(self, *args, **kwargs):
        self._record("start_acquisition", *args, **kwargs)
        if self.ring.buffer_size is None:
            self.setup_acquisition(*args, **kwargs)
        self.ring.start()

    def stop_acquisition(self):
        self._record("stop_acquisition")
        self.ring.stop()

    def acquisition_in_progress(self):
        return self.ring.running

    def get_status(self):
        return "acquiring" if self.ring.running else "idle"

    def get_acquisition_progress(self):
        return TAcqProgress(self.ring.acquired, 0)

    def get_buffer_size(self):
        return self.buffer_size

    def get_frames_status(self):
        self._record("get_frames_status")
        return self.ring.status()

    def wait_for_frame(self, since="lastread", nframes=1, timeout=20.0, error_on_stopped=False):
        self._record("wait_for_frame", since=since, nframes=nframes, timeout=timeout,
                     error_on_stopped=error_on_stopped)
        if not self.ring.running and self.ring.unread() < nframes:
            if error_on_stopped:
                raise AndorError("waiting for a frame while acquisition is stopped")
            return False
        missing = nframes - self.ring.unread()
        if missing > 0:
            self.ring.produce(missing)  # the exposure completes
        return True

    def read_multiple_images(self, rng=None, peek=False, missing_frame="skip", return_info=False,
                             return_rng=False):
        self._record("read_multiple_images", rng=rng, peek=peek, missing_frame=missing_frame,
                     return_info=return_info)
        result = self.ring.read(return_info, peek=peek)
        return result

    # ------------------------------------------------------------------ test hooks
    def advance_frames(self, n: int) -> int:
        """Let the camera acquire ``n`` frames while nobody reads (test hook)."""
        return self.ring.produce(n)
