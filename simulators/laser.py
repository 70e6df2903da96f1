"""Simulated pulsed 405 nm diode laser.

Setting ``emission_on``, ``power_percent`` or ``rep_rate_hz`` is one device call
(subject to injected faults); reading them returns the driver's cached value.
``power_percent`` sets the pulse energy, so the excitation probability per pulse
does not depend on the repetition rate (see :mod:`micropl.simulators.world`).
"""

from __future__ import annotations

import logging
from typing import Any

from micropl.drivers.limits import limit_error, range_refusal
from micropl.errors import InstrumentError
from micropl.simulators.faults import FaultInjector
from micropl.simulators.settings import SimLaserSettings
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimLaser"]

log = logging.getLogger(__name__)

_KIND = "laser"
_REP_RATE_RANGE_HZ = (25.0, 40e6)


class SimLaser:
    """A simulated picosecond diode laser; satisfies :class:`~micropl.drivers.interfaces.Laser`.

    Parameters
    ----------
    settings : SimLaserSettings
        Power limits, saturation, spot size and faults.
    world : SimulatedWorld
        The world it illuminates; the laser attaches itself as ``world.laser``.

    Notes
    -----
    Emission starts off. :meth:`off` retries through injected timeouts and
    garbled replies (up to three attempts) and only fails when the laser is
    disconnected.
    """

    def __init__(self, settings: SimLaserSettings, world: SimulatedWorld) -> None:
        self.settings = settings
        self.world = world
        self.name = settings.name
        self.wavelength_nm = float(settings.wavelength_nm)
        if settings.power_percent > settings.max_power_percent:
            raise limit_error(_KIND, self.name, f"initial power {settings.power_percent:g} %",
                              f"maximum {settings.max_power_percent:g} %")
        self._power_percent = float(settings.power_percent)
        self._rep_rate_hz = float(settings.rep_rate_hz)
        self._emission_on = False
        self._faults = FaultInjector(settings.faults, world.clock, _KIND, self.name)
        self._closed = False
        world.laser = self

    # ------------------------------------------------------------------ properties
    @property
    def emission_on(self) -> bool:
        """Whether the laser emits (cached)."""
        return self._emission_on

    @emission_on.setter
    def emission_on(self, value: bool) -> None:
        self._faults.check("emission on" if value else "emission off")
        self._emission_on = bool(value)
        log.debug("laser '%s': emission %s", self.name, "on" if value else "off")

    @property
    def power_percent(self) -> float:
        """Power (pulse energy) setting in percent of the maximum."""
        return self._power_percent

    @power_percent.setter
    def power_percent(self, value: float) -> None:
        value = float(value)
        allowed = range_refusal(value, 0.0, self.max_power_percent, "%")
        if allowed is not None:
            raise limit_error(_KIND, self.name, f"power {value:g} %", allowed)
        self._faults.check(f"power {value:g} %")
        self._power_percent = value

    @property
    def max_power_percent(self) -> float:
        """Highest power setting accepted (the configured limit), % (not a device call)."""
        return float(self.settings.max_power_percent)

    @property
    def rep_rate_hz(self) -> float:
        """Pulse repetition rate in Hz."""
        return self._rep_rate_hz

    @rep_rate_hz.setter
    def rep_rate_hz(self, value: float) -> None:
        value = float(value)
        lo, hi = _REP_RATE_RANGE_HZ
        if not lo <= value <= hi:
            raise limit_error(_KIND, self.name, f"repetition rate {value:g} Hz",
                              f"range {lo:g}–{hi:g} Hz")
        self._faults.check(f"repetition rate {value:g} Hz")
        self._rep_rate_hz = value

    # ------------------------------------------------------------------ actions
    def off(self) -> None:
        """Switch emission off, retrying through timeouts and garbled replies."""
        for attempt in range(3):
            try:
                self._faults.check("emission off")
            except InstrumentError:
                if self._faults.disconnected() or attempt == 2:
                    raise
                log.warning("laser '%s': emission off failed, retrying", self.name)
                continue
            self._emission_on = False
            return

    def snapshot(self) -> dict[str, Any]:
        """Settings for provenance (units in the keys)."""
        return {
            "driver": "simulated",
            "name": self.name,
            "wavelength_nm": self.wavelength_nm,
            "emission_on": self._emission_on,
            "power_percent": self._power_percent,
            "max_power_percent": self.settings.max_power_percent,
            "rep_rate_hz": self._rep_rate_hz,
            "saturation_power_percent": self.settings.saturation_power_percent,
            "spot_fwhm_um": self.settings.spot_fwhm_um,
            "objective_na": self.settings.objective_na,
        }

    def close(self) -> None:
        """Switch the emission off (when reachable) and release. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._emission_on = False
