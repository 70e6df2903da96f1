"""Simulated closed-loop piezo scanner.

The *reported* position is the commanded one (a closed-loop stage reads back its
own sensors). The sample, however, drifts slowly under the objective: the focus
position the world sees is ``position + drift_um_per_min × elapsed_min``, with
the elapsed clock time counted from the scanner's construction.

Hardware-timed lines
--------------------
With ``hardware_lines`` on, the scanner is a
:class:`~micropl.drivers.interfaces.LineScanner`: :meth:`SimScanner.start_line`
sweeps x at constant speed from the line's start edge to its stop edge in
``n_pixels × dwell_s`` of clock time, and its trigger output pulses at each of
the ``n_pixels + 1`` pixel boundaries. The simulated tagger turns the pulses
into marker tags on ``marker_channel`` and the simulated camera, in external
trigger mode, starts an exposure at each. While a line runs, the tags and
frames are generated with the focus at the centre of the pixel being swept
(the excitation is taken as constant over a pixel, as it is over a
software-timed pixel).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from micropl.drivers.limits import limit_error, line_refusal, range_refusal
from micropl.errors import InstrumentError
from micropl.simulators.faults import FaultInjector
from micropl.simulators.settings import SimScannerSettings
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimScanner"]

_KIND = "scanner"
#: Lines kept for the trigger history (the camera and tagger read them after the line).
_LINES_KEPT = 4


@dataclass(frozen=True)
class SimLine:
    """One hardware-timed line: x from ``start_um`` to ``stop_um`` from clock time ``t0_s``.

    Attributes
    ----------
    start_um, stop_um : float
        Sweep edges in µm (start of the first pixel, end of the last).
    n_pixels : int
        Pixels in the line.
    dwell_s : float
        Time per pixel, s.
    y_um, z_um : float
        Commanded y and z of the line, µm.
    t0_s : float
        Clock time of the first trigger pulse (the start of pixel 0), s.
    """

    start_um: float
    stop_um: float
    n_pixels: int
    dwell_s: float
    y_um: float
    z_um: float
    t0_s: float
    end_pulse: bool = True

    @property
    def t_end_s(self) -> float:
        """Clock time of the last pulse (the end of the last pixel), s."""
        return self.t0_s + self.n_pixels * self.dwell_s

    def trigger_times_s(self) -> np.ndarray:
        """Clock times of the ``n_pixels + 1`` trigger pulses, s."""
        return self.t0_s + self.dwell_s * np.arange(self.n_pixels + 1)

    def pulse_times_s(self) -> np.ndarray:
        """Clock times of the trigger output's pulses: every pixel boundary, or the
        pixel starts only when the line was configured without its end pulse, s."""
        times = self.trigger_times_s()
        return times if self.end_pulse else times[:-1]

    def x_at(self, t_s: float) -> float:
        """Commanded x at clock time ``t_s`` (constant speed, clamped to the edges), µm."""
        u = min(max((t_s - self.t0_s) / (self.t_end_s - self.t0_s), 0.0), 1.0)
        return self.start_um + (self.stop_um - self.start_um) * u

    def pixel_centre_um(self, t_s: float) -> float:
        """x of the centre of the pixel being swept at clock time ``t_s``, µm."""
        k = int(math.floor((t_s - self.t0_s) / self.dwell_s))
        k = min(max(k, 0), self.n_pixels - 1)
        step = (self.stop_um - self.start_um) / self.n_pixels
        return self.start_um + (k + 0.5) * step


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
        #: Whether this scanner clocks lines in hardware (settings ``hardware_lines``).
        self.supports_hardware_lines = bool(settings.hardware_lines)
        #: Tagger input its trigger output is wired to (settings ``marker_channel``).
        self.marker_channel = settings.marker_channel
        self._configured: tuple[float, float, int, float, bool] | None = None
        self._lines: list[SimLine] = []
        self._probe_t_s: float | None = None
        world.scanner = self

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Reported (x, y, z) in µm (the commanded position; during a line, where it is)."""
        self._faults.check("read position")
        return self._commanded_um(self.world.clock.now())

    def _running_line(self, t_s: float) -> SimLine | None:
        line = self._lines[-1] if self._lines else None
        return line if line is not None and t_s < line.t_end_s else None

    def _commanded_um(self, t_s: float) -> tuple[float, float, float]:
        line = self._running_line(t_s)
        if line is None:
            return self._position_um
        return (line.x_at(t_s), line.y_um, line.z_um)

    def true_position_um(self) -> tuple[float, float, float]:
        """Where the focus really is on the sample now, including drift, in µm.

        Not a device call: this is the simulation's ground truth.
        """
        now = self.world.clock.now()
        position = self._position_um
        if self._lines:
            t_s = now if self._probe_t_s is None else self._probe_t_s
            position = self._line_focus_um(t_s, position)
        drift = self.settings.drift_um_per_min
        if drift[0] == 0.0 and drift[1] == 0.0 and drift[2] == 0.0:
            return position
        elapsed_min = (now - self._t0_s) / 60.0
        return tuple(p + d * elapsed_min
                     for p, d in zip(position, self.settings.drift_um_per_min))

    def _line_focus_um(self, t_s: float, otherwise: tuple[float, float, float]
                       ) -> tuple[float, float, float]:
        """Focus (without drift) at clock time ``t_s`` according to the line history."""
        for line in reversed(self._lines):
            if line.t0_s <= t_s < line.t_end_s:
                return (line.pixel_centre_um(t_s), line.y_um, line.z_um)
        last = self._lines[-1]
        if t_s < last.t0_s:  # after the move to the start edge, before the pulse
            return (last.start_um, last.y_um, last.z_um)
        return otherwise

    # ------------------------------------------------------------------ hardware lines
    @contextlib.contextmanager
    def probing(self, t_s: float) -> Iterator[None]:
        """Within the block the focus is where the line put it at clock time ``t_s``.

        Used by the simulated tagger and camera to generate what was seen during
        a line they read afterwards. Not a device call.
        """
        before = self._probe_t_s
        self._probe_t_s = float(t_s)
        try:
            yield
        finally:
            self._probe_t_s = before

    def lines_between(self, t0_s: float, t1_s: float) -> list[SimLine]:
        """Lines (kept history) overlapping clock times ``[t0_s, t1_s]``. Not a device call."""
        return [line for line in self._lines if line.t0_s <= t1_s and line.t_end_s >= t0_s]

    def _refuse_lines(self, action: str) -> None:
        if not self.supports_hardware_lines:
            raise InstrumentError(f"{_KIND} '{self.name}': {action} refused: this scanner has "
                                  "no hardware-timed lines (settings hardware_lines: false)")

    def configure_line(self, start_um: float, stop_um: float, n_pixels: int,
                       dwell_s: float, *, end_pulse: bool = True) -> None:
        """Prepare an x sweep from edge ``start_um`` to ``stop_um`` in ``n_pixels × dwell_s``.

        ``end_pulse=False`` leaves out the pulse at the end of the last pixel
        (``n_pixels`` pulses, one per pixel start: camera triggers).

        Raises
        ------
        LimitError
            An edge outside the x limits, no pixel, or a dwell that is not positive.
        InstrumentError
            Without hardware lines.
        """
        self._refuse_lines("configure line")
        allowed = line_refusal(start_um, stop_um, n_pixels, dwell_s, self.limits_um[0])
        if allowed is not None:
            raise limit_error(_KIND, self.name, f"line x {start_um:g}→{stop_um:g} µm, "
                              f"{n_pixels} px × {dwell_s:g} s", allowed)
        self._faults.check("configure line")
        self._configured = (float(start_um), float(stop_um), int(n_pixels), float(dwell_s),
                            bool(end_pulse))

    def start_line(self) -> None:
        """Start the configured line now; the first trigger pulse is at the current time.

        The scanner must be at the line's start edge (a ``move_to`` first); it
        ends at the stop edge.
        """
        self._refuse_lines("start line")
        if self._configured is None:
            raise InstrumentError(f"{_KIND} '{self.name}': start line refused: no line "
                                  "configured")
        start, stop, n, dwell, end_pulse = self._configured
        x, y, z = self._commanded_um(self.world.clock.now())
        if abs(x - start) > 1e-6:
            raise InstrumentError(f"{_KIND} '{self.name}': start line refused: at x = {x:g} µm, "
                                  f"not at the line start {start:g} µm")
        self._faults.check("start line")
        line = SimLine(start, stop, n, dwell, y, z, self.world.clock.now(), end_pulse)
        self._lines = [*self._lines[-(_LINES_KEPT - 1):], line]
        self._position_um = (stop, y, z)

    def line_done(self) -> bool:
        """Whether the last line started has ended (its last pulse is past)."""
        return self._running_line(self.world.clock.now()) is None


    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) in µm and wait (travel / speed + settle) on the clock.

        Raises
        ------
        LimitError
            Before moving, when a target lies outside ``limits_um``; the
            message names the axis, the value and the range.
        """
        here = self._commanded_um(self.world.clock.now())
        if self._running_line(self.world.clock.now()) is not None:
            raise InstrumentError(f"{_KIND} '{self.name}': move refused: a line is running")
        target = (float(x_um), float(y_um), here[2] if z_um is None else float(z_um))
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
            "position_um": list(self._commanded_um(self.world.clock.now())),
            "limits_um": [list(a) for a in self.limits_um],
            "speed_um_per_s": self.settings.speed_um_per_s,
            "settle_s": self.settings.settle_s,
            "drift_um_per_min": list(self.settings.drift_um_per_min),
            "hardware_lines": self.supports_hardware_lines,
            "marker_channel": self.marker_channel,
        }

    def close(self) -> None:
        """Nothing to release; safe to call twice."""
