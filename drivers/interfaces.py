"""Instrument roles as small structural protocols, and the records they produce.

Every instrument micropl drives — real, simulated or replayed — satisfies one of
the :class:`typing.Protocol` classes below. Acquisition code talks only to these
protocols, so a script written against the simulated setup runs unchanged on
the real one.

Conventions
-----------
* Units are in the names: ``_nm``, ``_ev``, ``_s``, ``_ps``, ``_hz``, ``_um``,
  ``_c`` (degrees Celsius), ``_percent``.
* Time tags are int64 picoseconds with a uint8 channel number.
* Records are frozen dataclasses holding numpy arrays. They are the only things
  that flow between layers.
* Drivers enforce limits: an out-of-range value raises :class:`LimitError`
  before anything is sent to the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "InstrumentError",
    "LimitError",
    "InstrumentTimeout",
    "MissingExtraError",
    "Clock",
    "Grating",
    "Frame",
    "Spectrum",
    "TagChunk",
    "MapLine",
    "Laser",
    "Spectrograph",
    "Camera",
    "TimeTagger",
    "Scanner",
    "LineScanner",
    "hardware_lines",
    "line_refusal",
    "ReadMode",
    "EM_GAIN_MAX",
    "EM_GAIN_MAX_ADVANCED",
    "range_refusal",
    "em_gain_refusal",
    "grating_refusal",
    "channels_refusal",
    "bin_refusal",
]

#: Largest EM gain without advanced mode (EMCCD ageing protection).
EM_GAIN_MAX = 300
#: Largest EM gain with advanced mode on.
EM_GAIN_MAX_ADVANCED = 1000

ReadMode = Literal["fvb", "image", "roi"]


# --------------------------------------------------------------------------- errors
class InstrumentError(RuntimeError):
    """An instrument failed or refused an action.

    The message names the instrument and the action, for example
    ``spectrograph 'acton': GOTO 9999.0 nm refused: range 0–1400 nm``.
    """


class LimitError(InstrumentError, ValueError):
    """A requested value lies outside what the instrument (or the config) allows.

    Raised by the driver before anything is sent to the device.
    """


class InstrumentTimeout(InstrumentError, TimeoutError):
    """An instrument did not answer in time."""


class MissingExtraError(InstrumentError, ImportError):
    """A driver needs an optional package that is not installed.

    The message names the pip extra or the vendor library to install.
    """


def limit_error(kind: str, name: str, action: str, allowed: str) -> LimitError:
    """Build the standard refusal message ``kind 'name': action refused: allowed``."""
    return LimitError(f"{kind} '{name}': {action} refused: {allowed}")


# --------------------------------------------------------------------------- limit rules
# One function decides each kind of limit. Drivers call it when a value is sent;
# the pre-flight check of the procedures (micropl.acquisition.procedures.preflight)
# calls it with the limits the instruments report, so both refuse the same values.
def range_refusal(value: float, low: float, high: float, unit: str = "") -> str | None:
    """Whether ``value`` lies in the inclusive range ``[low, high]``.

    Parameters
    ----------
    value : float
        The value to check (NaN and infinities are refused).
    low, high : float
        Inclusive bounds, in ``unit``.
    unit : str
        Unit for the message, e.g. ``"µm"``.

    Returns
    -------
    str or None
        None when allowed, else the allowed range as text (``"range 0–80 µm"``).
    """
    number = float(value)
    if math.isfinite(number) and low <= number <= high:
        return None
    return f"range {low:g}–{high:g}" + (f" {unit}" if unit else "")


def em_gain_refusal(gain: int, advanced: bool, *, maximum: int = EM_GAIN_MAX_ADVANCED,
                    normal_maximum: int = EM_GAIN_MAX) -> str | None:
    """Whether a camera accepts EM gain ``gain`` (the temperature is checked apart).

    Parameters
    ----------
    gain : int
        Requested EM gain (1 = conventional amplifier).
    advanced : bool
        Whether advanced EM gain mode is on.
    maximum : int
        Largest gain the camera can do at all.
    normal_maximum : int
        Largest gain without advanced mode.

    Returns
    -------
    str or None
        None when allowed, else what is allowed, e.g. ``"maximum 300 unless advanced
        mode is on"``.
    """
    if gain < 1:
        return "minimum 1"
    if gain > maximum:
        return f"maximum {maximum}"
    if gain > normal_maximum and not advanced:
        return f"maximum {normal_maximum} unless advanced mode is on"
    return None


def grating_refusal(slot: int, gratings: list[Grating] | tuple[Grating, ...]) -> str | None:
    """Whether turret slot ``slot`` holds one of ``gratings``.

    Returns
    -------
    str or None
        None when installed, else the installed slots (``"installed slots 1, 2, 3"``).
    """
    slots = [int(g.slot) for g in gratings]
    if int(slot) in slots:
        return None
    return "installed slots " + ", ".join(str(s) for s in slots)


def channels_refusal(wanted: tuple[int, ...], available: tuple[int, ...]) -> str | None:
    """Whether a time tagger with inputs ``available`` can stream ``wanted``.

    Returns
    -------
    str or None
        None when every wanted channel exists (and at least one is wanted), else
        the available channels as text.
    """
    if wanted and all(int(c) in available for c in wanted):
        return None
    return f"available channels {tuple(available)}"


def bin_refusal(bin_ps: float, resolution_ps: float) -> str | None:
    """Whether a histogram bin of ``bin_ps`` can be made from tags of ``resolution_ps``.

    Returns
    -------
    str or None
        None for a whole multiple of the resolution (at least one), else the rule.
    """
    ratio = float(bin_ps) / float(resolution_ps)
    if math.isfinite(ratio) and ratio >= 1 - 1e-9 and abs(ratio - round(ratio)) <= 1e-6:
        return None
    return f"a whole multiple of the resolution {resolution_ps:g} ps"


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


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Grating:
    """One slot of a spectrograph turret.

    Attributes
    ----------
    slot : int
        1-based turret position.
    grooves_per_mm : float
        Groove density in lines/mm.
    blaze_nm : float
        Blaze wavelength in nm (``nan`` when unknown).
    """

    slot: int
    grooves_per_mm: float
    blaze_nm: float = float("nan")


@dataclass(frozen=True)
class Frame:
    """One camera readout.

    Attributes
    ----------
    counts : ndarray
        Raw ADU, shape ``(n_px,)`` in FVB mode or ``(n_rows, n_px)`` in image/ROI
        mode. Includes the bias offset.
    exposure_s : float
        Exposure time in s.
    t_s : float
        Clock time at the start of the exposure, in s.
    index : int
        Frame number since the acquisition started (gaps mean lost frames).
    em_gain : int
        EM gain used for this frame (1 = conventional amplifier).
    read_mode : str
        ``"fvb"``, ``"image"`` or ``"roi"``.
    """

    counts: np.ndarray
    exposure_s: float
    t_s: float
    index: int = 0
    em_gain: int = 1
    read_mode: ReadMode = "fvb"


@dataclass(frozen=True)
class Spectrum:
    """A camera frame placed on the spectrograph's wavelength axis.

    Attributes
    ----------
    wavelength_nm : ndarray, shape (n_px,)
        Wavelength of each pixel column in nm.
    counts : ndarray, shape (n_px,)
        Counts per pixel, in ``counts_unit``.
    exposure_s : float
        Exposure per accumulation in s.
    t_s : float
        Clock time at the start of acquisition in s.
    accumulations : int
        Number of frames summed into ``counts``.
    em_gain : int
        EM gain used.
    bias_subtracted : bool
        Whether a background/bias frame was already subtracted.
    counts_unit : str
        ``"adu"`` for raw camera units, ``"e"`` for detected photoelectrons
        (bias removed, divided by the EM gain, times ``e_per_adu``), which is
        what the fitter's EMCCD noise model (variance ≈ 2 × signal) expects.
    read_noise : float
        RMS noise per pixel that does not depend on the signal (read noise of
        the frame and of the subtracted background), in ``counts_unit``.
    saturated_pixels : int
        Raw pixels at the camera's ADC ceiling in the frames behind ``counts``
        (summed over the accumulations); the fit of a saturated spectrum is
        flagged ``"saturated"``.
    """

    wavelength_nm: np.ndarray
    counts: np.ndarray
    exposure_s: float
    t_s: float = 0.0
    accumulations: int = 1
    em_gain: int = 1
    bias_subtracted: bool = False
    counts_unit: str = "adu"
    read_noise: float = 0.0
    saturated_pixels: int = 0


@dataclass(frozen=True)
class TagChunk:
    """Time tags recorded over one interval.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Arrival times in ps, sorted ascending, on the tagger's time base.
    channel : ndarray of uint8, shape (n,)
        Input channel of each tag (1-based, as the hardware labels them).
    t_start_ps, t_stop_ps : int
        The interval ``[t_start_ps, t_stop_ps)`` this chunk covers. Consecutive
        chunks tile time without gaps, so an empty chunk still means
        "nothing arrived during this interval".
    overflow : bool
        True when the hardware buffer overflowed during the interval and some
        tags are missing.
    missed_events : int
        Number of tags known to be lost (0 when unknown or none).
    """

    t_ps: np.ndarray
    channel: np.ndarray
    t_start_ps: int
    t_stop_ps: int
    overflow: bool = False
    missed_events: int = 0

    @property
    def duration_s(self) -> float:
        """Covered interval in s."""
        return (self.t_stop_ps - self.t_start_ps) * 1e-12

    def __len__(self) -> int:
        return int(self.t_ps.shape[0])


@dataclass(frozen=True)
class MapLine:
    """One line of a raster scan.

    Attributes
    ----------
    line_index : int
        Row number in the map (0-based).
    y_um : float
        Scanner y position of the line in µm.
    x_um : ndarray, shape (n_x,)
        Scanner x positions in µm, in acquisition order.
    counts : ndarray, shape (n_x,)
        Counts per pixel (APD sum or camera integrated counts).
    dwell_s : float
        Dwell time per pixel in s.
    """

    line_index: int
    y_um: float
    x_um: np.ndarray
    counts: np.ndarray
    dwell_s: float
    source: str = "apd"


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


# --------------------------------------------------------------------------- hardware lines
def line_refusal(start_um: float, stop_um: float, n_pixels: int, dwell_s: float,
                 limits_um: tuple[float, float]) -> str | None:
    """Whether a hardware-timed line sweep is possible in the x range ``limits_um``.

    Parameters
    ----------
    start_um, stop_um : float
        Edges of the sweep in µm: the start of the first pixel and the end of
        the last (either direction).
    n_pixels : int
        Pixels in the line (at least 1).
    dwell_s : float
        Time per pixel in s (positive, finite).
    limits_um : (float, float)
        Allowed x range in µm.

    Returns
    -------
    str or None
        None when allowed, else what is allowed (``"range 0–80 µm"``, ...).
    """
    if int(n_pixels) != n_pixels or n_pixels < 1:
        return "at least 1 pixel"
    if not (math.isfinite(float(dwell_s)) and dwell_s > 0):
        return "a positive dwell time"
    if start_um == stop_um:
        return "a sweep of non-zero length"
    for edge in (start_um, stop_um):
        allowed = range_refusal(edge, limits_um[0], limits_um[1], "µm")
        if allowed is not None:
            return allowed
    return None


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
