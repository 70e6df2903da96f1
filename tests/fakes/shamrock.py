"""Fake of pylablib's ``ShamrockSpectrograph`` (Andor Shamrock / Kymera).

Units as in pylablib: wavelengths, pixel width and calibration in m; grating
indices from 1; ``get_grating_info`` returns ``TGratingInfo(lines, blaze_wavelength,
home, offset)`` with the blaze as a string in nm. Refusals mirror the real
ones: a grating index outside 1..N raises ``ValueError`` (pylablib's check), a
wavelength outside the grating's limits raises
``ShamrockLibError("ShamrockSetWavelength", SHAMROCK_P2INVALID)``.

``get_calibration`` evaluates the Czerny–Turner grating equation with the
focal length, deviation angle and detector tilt of ``get_optical_parameters``.
"""

from __future__ import annotations

import math

import numpy as np
from pylablib.devices.Andor.Shamrock import (
    ShamrockLibError,
    TDeviceInfo,
    TGratingInfo,
    TOpticalParameters,
)
from pylablib.devices.Andor.ShamrockCIF_defs import SHAMROCK_ERR

from . import CallRecorder

GRATINGS = (  # (lines/mm, blaze nm as the SDK reports it)
    (150.0, "500"), (300.0, "500"), (600.0, "500"), (1200.0, "500"),
)


class FakeShamrockSpectrograph(CallRecorder):
    """In-process stand-in for ``pylablib.devices.Andor.ShamrockSpectrograph``."""

    def __init__(self, idx=0, *, focal_length_m=0.303, deviation_deg=-30.0, tilt_deg=0.0,
                 gratings=GRATINGS):
        super().__init__()
        self.idx = idx
        self.optical = TOpticalParameters(focal_length_m, deviation_deg, tilt_deg)
        self.gratings = tuple(gratings)
        self.grating = 1
        self.wavelength_m = 500e-9
        self.pixel_width_m = 0.0
        self.number_pixels = 0
        self.opened = True

    def _check_grating(self, grating):
        if grating is None:
            return self.grating
        if grating < 1 or grating > len(self.gratings):
            raise ValueError(f"incorrect grating index: {grating}; should be between 1 and "
                             f"{len(self.gratings)}")
        return grating

    def get_device_info(self):
        return TDeviceInfo("SR-303i-A-0001")

    def get_optical_parameters(self):
        self._record("get_optical_parameters")
        return self.optical

    def get_gratings_number(self):
        self._record("get_gratings_number")
        return len(self.gratings)

    def get_grating(self):
        self._record("get_grating")
        return self.grating

    def set_grating(self, grating, force=False):
        self._record("set_grating", grating, force=force)
        self.grating = self._check_grating(grating)
        return self.grating

    def get_grating_info(self, grating=None):
        self._record("get_grating_info", grating)
        lines, blaze = self.gratings[self._check_grating(grating) - 1]
        return TGratingInfo(lines, blaze, 0, 0)

    def is_wavelength_control_present(self):
        return True

    def get_wavelength_limits(self, grating=None):
        self._record("get_wavelength_limits", grating)
        lines = self.gratings[self._check_grating(grating) - 1][0]
        return (0.0, min(2e-6, 1.8 / (lines * 1e3)))  # sin limit of the turret, in m

    def get_wavelength(self):
        self._record("get_wavelength")
        return self.wavelength_m

    def set_wavelength(self, wavelength):
        self._record("set_wavelength", wavelength)
        lo, hi = self.get_wavelength_limits()
        if not lo <= wavelength <= hi:
            raise ShamrockLibError("ShamrockSetWavelength", SHAMROCK_ERR.SHAMROCK_P2INVALID)
        self.wavelength_m = float(wavelength)
        return self.wavelength_m

    def set_pixel_width(self, width):
        self._record("set_pixel_width", width)
        self.pixel_width_m = float(width)
        return self.pixel_width_m

    def get_pixel_width(self):
        return self.pixel_width_m

    def set_number_pixels(self, number):
        self._record("set_number_pixels", number)
        self.number_pixels = int(number)
        return self.number_pixels

    def get_number_pixels(self):
        return self.number_pixels

    def setup_pixels_from_camera(self, cam):
        self._record("setup_pixels_from_camera", cam)
        self.set_pixel_width(cam.get_pixel_size()[0])
        self.set_number_pixels(cam.get_detector_size()[0])
        return self.get_pixel_width(), self.get_number_pixels()

    def get_calibration(self):
        self._record("get_calibration")
        n = self.number_pixels
        if not n:
            return np.zeros(0)
        lines_per_m = self.gratings[self.grating - 1][0] * 1e3
        f, dev, tilt = self.optical
        half = math.radians(dev) / 2
        psi = math.asin(lines_per_m * self.wavelength_m / (2 * math.cos(half)))
        alpha, beta = psi - half, psi + half
        x = (np.arange(n) - (n - 1) / 2) * self.pixel_width_m
        t = math.radians(tilt)
        beta_px = beta + np.arctan(x * math.cos(t) / (f + x * math.sin(t)))
        return (np.sin(alpha) + np.sin(beta_px)) / lines_per_m

    def close(self):
        self._record("close")
        self.opened = False
