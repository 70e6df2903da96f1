"""Instrument roles as small structural protocols, and nothing else.

Every instrument micropl drives — real, simulated or replayed — satisfies one of
the :class:`typing.Protocol` classes below. Acquisition code talks only to these
protocols, so a script written against the simulated setup runs unchanged on
the real one.

Conventions
-----------
* Units are in the names: ``_nm``, ``_ev``, ``_s``, ``_ps``, ``_hz``, ``_um``,
  ``_c`` (degrees Celsius), ``_percent``.
* Time tags are int64 picoseconds with a uint8 channel number.
* The records the roles produce (``Frame``, ``Spectrum``, ``TagChunk``,
  ``MapLine``) are in :mod:`micropl.records`, the errors in :mod:`micropl.errors`.
* Drivers enforce limits with the rules of :mod:`micropl.drivers.limits`: an
  out-of-range value raises :class:`~micropl.errors.LimitError` before anything
  is sent to the device.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from micropl.records import Frame, Grating, ReadMode, TagChunk

__all__ = ["Clock", "Laser", "Spectrograph", "Camera", "TimeTagger", "Scanner", "LineScanner",
           "hardware_lines"]


# --------------------------------------------------------------------------- clock
@runtime_checkable
class Clock(Protocol):
    """Source of time for every wait in micropl.

    In real mode it is wall time. In fast mode (simulators only) ``sleep``
    advances virtual time instantly, so a 10 s exposure returns at once with
    10 s worth of photons.
    """

    mode: Literal["real", "fast"]

    def now(self) -> float:
        """Seconds since the clock started."""
        ...

    def sleep(self, duration_s: float) -> None:
        """Wait ``duration_s`` seconds of clock time."""
        ...


# --------------------------------------------------------------------------- roles
@runtime_checkable
class Instrument(Protocol):
    """What every instrument has: a name, a settings snapshot and ``close``."""

    name: str

    def snapshot(self) -> dict[str, Any]:
        """Current settings, keyed with units in the names, for provenance."""
        ...

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
        ...


@runtime_checkable
class Laser(Instrument, Protocol):
    """Pulsed excitation laser.

    ``power_percent`` is the output setting in percent of the laser's maximum;
    drivers refuse values above the configured ``max_power_percent``.
    """

    wavelength_nm: float
    emission_on: bool
    power_percent: float
    rep_rate_hz: float
    #: Highest ``power_percent`` the driver accepts (the configured limit), %.
    max_power_percent: float

    def off(self) -> None:
        """Switch emission off. Must never raise for a reachable device."""
        ...


@runtime_checkable
class Spectrograph(Instrument, Protocol):
    """Grating spectrograph (monochromator) in front of the camera."""

    center_wavelength_nm: float
    grating: int
    gratings: list[Grating]

    def wavelength_axis_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """Wavelength of each of ``n_px`` pixel columns of width ``pixel_um``.

        Returns
        -------
        ndarray, shape (n_px,)
            Wavelengths in nm, for the current grating and centre wavelength.
        """
        ...

    def wavelength_range_nm(self, grating: int | None = None) -> tuple[float, float]:
        """Centre wavelengths (inclusive, nm) the driver accepts with turret slot ``grating``
        (None: the grating in place)."""
        ...


@runtime_checkable
class Camera(Instrument, Protocol):
    """Spectroscopy camera, typically an EMCCD.

    Drivers refuse an EM gain above 300 unless ``em_gain_advanced`` is on, and
    any EM gain above 1 while the sensor is warmer than the safe temperature.
    """

    exposure_s: float
    em_gain: int
    em_gain_advanced: bool
    read_mode: ReadMode
    roi_rows: tuple[int, int]
    temperature_c: float
    target_temperature_c: float
    cooler_on: bool
    sensor_shape: tuple[int, int]
    pixel_um: float
    e_per_adu: float
    #: Shortest and longest exposure the driver accepts (inclusive), s.
    exposure_range_s: tuple[float, float]

    def em_gain_range(self, advanced: bool | None = None) -> tuple[int, int]:
        """Lowest and highest EM gain accepted with advanced mode ``advanced`` (None: as
        it is now); a warm sensor is refused apart (an interlock at run time)."""
        ...

    def acquire(self) -> Frame:
        """Take one exposure and return it (blocks for the exposure time)."""
        ...

    def start_stream(self) -> None:
        """Start continuous acquisition into the camera's buffer."""
        ...

    def read_frames(self) -> list[Frame]:
        """Frames acquired since the last call (may be empty)."""
        ...

    def stop(self) -> None:
        """Stop any acquisition. Safe to call when idle."""
        ...


@runtime_checkable
class TimeTagger(Instrument, Protocol):
    """Time tagger fed by the APDs (and optionally the laser sync)."""

    channels: tuple[int, ...]
    #: Time resolution (tag time unit), ps; histogram bins are multiples of it.
    resolution_ps: float

    def start(self, channels: tuple[int, ...]) -> None:
        """Start streaming tags of ``channels`` into the buffer."""
        ...

    def read(self) -> TagChunk:
        """Tags recorded since the previous ``read`` (or ``start``)."""
        ...

    def count_rates_hz(self) -> dict[int, float]:
        """Current count rate of each channel in counts/s."""
        ...

    def stop(self) -> None:
        """Stop streaming. Safe to call when idle."""
        ...


@runtime_checkable
class Scanner(Instrument, Protocol):
    """Sample (or beam) scanner, e.g. a piezo stage."""

    limits_um: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Current (x, y, z) in µm."""
        ...

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) in µm and wait until there.

        Raises :class:`LimitError` before moving when any target is outside
        ``limits_um``.
        """
        ...


@runtime_checkable
class LineScanner(Scanner, Protocol):
    """A scanner that can clock a line of pixels itself (hardware timing).

    The line runs along x at the current y and z, at constant speed from
    ``start_um`` to ``stop_um`` (the outer edges of the first and the last
    pixel) in ``n_pixels × dwell_s``. The trigger output gives a pulse at each
    of the ``n_pixels + 1`` pixel boundaries; wired to a tagger input
    (``marker_channel``) it puts a marker tag there, wired to a camera's
    external trigger it starts one exposure per pixel.
    """

    #: Whether this device (and its settings) can run hardware-timed lines.
    supports_hardware_lines: bool
    #: Time-tagger input wired to the trigger output (None: not wired).
    marker_channel: int | None

    def configure_line(self, start_um: float, stop_um: float, n_pixels: int,
                       dwell_s: float, *, end_pulse: bool = True) -> None:
        """Prepare a line sweep; refuses (LimitError) before anything is sent.

        ``end_pulse=False``: no pulse at the end of the last pixel (``n_pixels``
        pulses, one per pixel start, as a camera's external trigger wants).
        """
        ...

    def start_line(self) -> None:
        """Start the configured line from the current position (move to ``start_um`` first)."""
        ...

    def line_done(self) -> bool:
        """Whether the line started last has finished."""
        ...


def hardware_lines(scanner: Any) -> bool:
    """Whether ``scanner`` can run hardware-timed lines (:class:`LineScanner`).

    Looks only at the object's attributes and methods (no property is read, so no
    device is asked).
    """
    kind = type(scanner)
    return bool(getattr(scanner, "supports_hardware_lines", False)) and all(
        callable(getattr(kind, name, None))
        for name in ("configure_line", "start_line", "line_done", "move_to"))
