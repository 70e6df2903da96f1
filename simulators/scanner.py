"""Simulated closed-loop piezo scanner.

The *reported* position is the commanded one (a closed-loop stage reads back its
own sensors). The sample, however, drifts slowly under the objective: the focus
position the world sees is ``position + drift_um_per_min × elapsed_min``, with
the elapsed clock time counted from the scanner's construction.
"""

from __future__ import annotations

import math
from typing import Any

from micropl.drivers.interfaces import limit_error, range_refusal
from micropl.simulators.faults import FaultInjector
from micropl.simulators.settings import SimScannerSettings
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimScanner"]

_KIND = "scanner"


class SimScanner:
    """A simulated x/y/z piezo stage; satisfies :class:`~micropl.drivers.interfaces.Scanner`.

    Parameters
    ----------
    settings : SimScannerSettings
        Limits, start position, speed, settle time, drift and faults.
    world : SimulatedWorld
        The world whose focus it moves; attaches itself as ``world.scanner``.
    """

    def __init__(self, settings: SimScannerSettings, world: SimulatedWorld) -> None:
        self.settings = settings
        self.world = world
        self.name = settings.name
        self.limits_um = tuple(tuple(float(v) for v in axis) for axis in settings.limits_um)
        self._position_um = tuple(float(v) for v in settings.start_um)
        self._t0_s = world.clock.now()
        self._faults = FaultInjector(settings.faults, world.clock, _KIND, self.name)
        world.scanner = self

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Reported (x, y, z) in µm (the commanded position)."""
        self._faults.check("read position")
        return self._position_um

    def true_position_um(self) -> tuple[float, float, float]:
        """Where the focus really is on the sample now, including drift, in µm.

        Not a device call: this is the simulation's ground truth.
        """
        drift = self.settings.drift_um_per_min
        if drift[0] == 0.0 and drift[1] == 0.0 and drift[2] == 0.0:
            return self._position_um
        elapsed_min = (self.world.clock.now() - self._t0_s) / 60.0
        return tuple(p + d * elapsed_min
                     for p, d in zip(self._position_um, self.settings.drift_um_per_min))

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) in µm and wait (travel / speed + settle) on the clock.

        Raises
        ------
        LimitError
            Before moving, when a target lies outside ``limits_um``; the
            message names the axis, the value and the range.
        """
        target = (float(x_um), float(y_um),
                  self._position_um[2] if z_um is None else float(z_um))
        for axis, value, (low, high) in zip("xyz", target, self.limits_um):
            allowed = range_refusal(value, low, high, "µm")
            if allowed is not None:
                raise limit_error(_KIND, self.name, f"move {axis} = {value:g} µm", allowed)
        self._faults.check(f"move to ({target[0]:g}, {target[1]:g}, {target[2]:g}) µm")
        distance_um = math.dist(self._position_um, target)
        self.world.clock.sleep(distance_um / self.settings.speed_um_per_s + self.settings.settle_s)
        self._position_um = target

    def snapshot(self) -> dict[str, Any]:
        """Settings for provenance (units in the keys)."""
        return {
            "driver": "simulated",
            "name": self.name,
            "position_um": list(self._position_um),
            "limits_um": [list(a) for a in self.limits_um],
            "speed_um_per_s": self.settings.speed_um_per_s,
            "settle_s": self.settings.settle_s,
            "drift_um_per_min": list(self.settings.drift_um_per_min),
        }

    def close(self) -> None:
        """Nothing to release; safe to call twice."""
