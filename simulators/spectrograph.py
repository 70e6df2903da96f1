"""Simulated Czerny–Turner spectrograph with a grating turret.

The wavelength axis comes from the grating equation
(:func:`micropl.grating.wavelength_axis_nm`) with the configured focal
length and inclusion angle. Changing the grating takes ``grating_change_s`` and
moving the centre wavelength takes ``|Δλ| / move_speed_nm_per_s`` of clock time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from micropl.drivers.limits import grating_refusal, limit_error, range_refusal
from micropl.errors import AnalysisInputError
from micropl.grating import wavelength_axis_nm as _grating_axis_nm
from micropl.records import Grating
from micropl.simulators.faults import FaultInjector
from micropl.simulators.settings import SimSpectrographSettings
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimSpectrograph"]

_KIND = "spectrograph"


class SimSpectrograph:
    """A simulated spectrograph; satisfies :class:`~micropl.drivers.interfaces.Spectrograph`.

    Parameters
    ----------
    settings : SimSpectrographSettings
        Turret, focal length, inclusion angle, range, speeds and faults.
    world : SimulatedWorld
        Attaches itself as ``world.spectrograph``; the simulated camera reads
        its wavelength axis.
    """

    def __init__(self, settings: SimSpectrographSettings, world: SimulatedWorld) -> None:
        self.settings = settings
        self.world = world
        self.name = settings.name
        self.gratings = [Grating(slot=i + 1, grooves_per_mm=g.grooves_per_mm, blaze_nm=g.blaze_nm)
                         for i, g in enumerate(settings.gratings)]
        self._grating = int(settings.grating)
        self._center_nm = float(settings.center_wavelength_nm)
        self._check_center(self._center_nm)
        self._faults = FaultInjector(settings.faults, world.clock, _KIND, self.name)
        world.spectrograph = self

    # ------------------------------------------------------------------ grating
    @property
    def grating(self) -> int:
        """Current 1-based turret slot."""
        return self._grating

    @grating.setter
    def grating(self, slot: int) -> None:
        slot = int(slot)
        if grating_refusal(slot, self.gratings) is not None:
            raise limit_error(_KIND, self.name, f"grating {slot}",
                              f"installed slots 1–{len(self.gratings)}")
        self._check_center(self._center_nm, slot)
        self._faults.check(f"grating {slot}")
        if slot != self._grating:
            self.world.clock.sleep(self.settings.grating_change_s)
        self._grating = slot

    # ------------------------------------------------------------------ wavelength
    @property
    def center_wavelength_nm(self) -> float:
        """Wavelength at the centre of the exit focal plane, nm."""
        return self._center_nm

    @center_wavelength_nm.setter
    def center_wavelength_nm(self, value: float) -> None:
        value = float(value)
        self._check_center(value)
        self._faults.check(f"GOTO {value:.1f} nm")
        self.world.clock.sleep(abs(value - self._center_nm) / self.settings.move_speed_nm_per_s)
        self._center_nm = value

    def _reach_nm(self, slot: int | None = None) -> float:
        """Longest centre wavelength grating ``slot`` (None: in place) can diffract to, nm."""
        g = self.gratings[(self._grating if slot is None else int(slot)) - 1]
        return float(2e6 / g.grooves_per_mm
                     * np.cos(np.radians(self.settings.inclusion_angle_deg) / 2))

    def wavelength_range_nm(self, grating: int | None = None) -> tuple[float, float]:
        """Centre wavelengths accepted with turret slot ``grating`` (None: in place), nm.

        The configured range, cut at the grating's reach. Not a device call.
        """
        lo, hi = self.settings.wavelength_range_nm
        return float(lo), float(min(hi, self._reach_nm(grating)))

    def _check_center(self, value_nm: float, slot: int | None = None) -> None:
        lo, hi = self.settings.wavelength_range_nm
        allowed = range_refusal(value_nm, lo, hi, "nm")
        if allowed is not None:
            raise limit_error(_KIND, self.name, f"GOTO {value_nm:.1f} nm", allowed)
        if range_refusal(value_nm, *self.wavelength_range_nm(slot)) is not None:
            g = self.gratings[(self._grating if slot is None else slot) - 1]
            raise limit_error(_KIND, self.name, f"GOTO {value_nm:.1f} nm",
                              f"grating {g.slot} ({g.grooves_per_mm:g} g/mm) reaches up to "
                              f"{self._reach_nm(slot):.0f} nm")

    def axis_nm(self, n_px: int, pixel_um: float, center_pixel: float | None = None) -> np.ndarray:
        """Wavelength axis without a device call (the simulation's ground truth).

        Parameters
        ----------
        n_px : int
            Number of points.
        pixel_um : float
            Pixel width in µm.
        center_pixel : float, optional
            Index (may be fractional) where the centre wavelength falls; default
            ``(n_px − 1)/2``.

        Returns
        -------
        ndarray, shape (n_px,)
            Wavelengths in nm, increasing with index.
        """
        g = self.gratings[self._grating - 1]
        try:
            return _grating_axis_nm(
                n_px, pixel_um, self._center_nm, g.grooves_per_mm,
                self.settings.focal_length_mm, self.settings.inclusion_angle_deg,
                center_pixel=center_pixel)
        except AnalysisInputError as exc:
            raise limit_error(_KIND, self.name, "wavelength axis", str(exc)) from exc

    def pixel_edges_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """Wavelengths of the ``n_px + 1`` pixel boundaries, nm (ground truth)."""
        return self.axis_nm(n_px + 1, pixel_um, center_pixel=n_px / 2.0)

    def wavelength_axis_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """Wavelength of each of ``n_px`` pixel columns of width ``pixel_um``.

        Returns
        -------
        ndarray, shape (n_px,)
            Pixel-centre wavelengths in nm for the current grating and centre.
        """
        self._faults.check("read wavelength axis")
        return self.axis_nm(n_px, pixel_um)

    def snapshot(self) -> dict[str, Any]:
        """Settings for provenance (units in the keys)."""
        g = self.gratings[self._grating - 1]
        return {
            "driver": "simulated",
            "name": self.name,
            "grating": self._grating,
            "grooves_per_mm": g.grooves_per_mm,
            "blaze_nm": g.blaze_nm,
            "center_wavelength_nm": self._center_nm,
            "focal_length_mm": self.settings.focal_length_mm,
            "inclusion_angle_deg": self.settings.inclusion_angle_deg,
            "gratings_grooves_per_mm": [x.grooves_per_mm for x in self.gratings],
        }

    def close(self) -> None:
        """Nothing to release; safe to call twice."""
