"""Pre-flight check: a procedure's parameters against what the instruments accept.

Before a run starts (before the laser goes on, before a map is taken) each
procedure checks its parameters with :meth:`ProcedureBase.check
<micropl.acquisition.procedures.base.ProcedureBase.check>`: a scan region
outside the scanner's travel, an EM gain or an exposure the camera refuses, a
centre wavelength or a grating the spectrograph cannot do, a laser power above
``max_power_percent``, a focus range outside the scanner's z travel, a g²
histogram the tagger cannot make. The first problem is raised as a
:class:`ParameterError`, one line naming the parameter, its value and the
instrument's limit, e.g.::

    raster_scan: x_max_um = 500 µm refused: scanner 'scanner' x range 0–80 µm

The limits come from the instruments (:class:`Limits.of` asks each one what it
accepts, through the protocols of :mod:`micropl.drivers.interfaces`) and the
decision from the same rule functions the drivers apply when a value is sent
(:func:`~micropl.drivers.interfaces.range_refusal`,
:func:`~micropl.drivers.interfaces.em_gain_refusal` ...), so a parameter set
that passes the check is not refused by a driver for a parameter reason.

Run-time conditions are not parameter errors and stay with the runner's
interlocks: EM gain on a warm sensor (the spectrum waits for the cooler), an
APD over-rate, an instrument that stops answering.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from micropl.drivers.limits import (
    bin_refusal,
    channels_refusal,
    em_gain_refusal,
    grating_refusal,
    range_refusal,
)
from micropl.errors import InstrumentError, UserError
from micropl.records import Grating

log = logging.getLogger(__name__)

__all__ = ["Bound", "Limits", "ParameterError", "refuse_outside", "unit_of"]

_UNITS = (("_um", "µm"), ("_nm", "nm"), ("_ps", "ps"), ("_percent", "%"), ("_s", "s"))


class ParameterError(UserError, RuntimeError):
    """A procedure parameter the setup's instruments cannot do; refused before the run.

    A user error (the CLI exits with 2). It is also a ``RuntimeError``, like
    every other refusal of :meth:`Runner.start
    <micropl.acquisition.runner.Runner.start>`, so callers that handle a start
    refused because a run is in progress handle this one too.
    """


@dataclass(frozen=True)
class Bound:
    """The range an instrument accepts for one parameter.

    Attributes
    ----------
    low, high : float
        Inclusive bounds, in ``unit``.
    unit : str
        Unit of the parameter (``"µm"``, ``""`` for a plain number).
    source : str
        Instrument and quantity for the message, e.g. ``"scanner 'piezo' x"``.
    """

    low: float
    high: float
    unit: str
    source: str


@dataclass(frozen=True)
class Limits:
    """What the setup's instruments accept now, read once.

    Read on a thread that may call drivers (the runner's caller, the GUI's
    command thread); a GUI form can then check values without touching an
    instrument. State that cannot be read (an instrument that fails to answer)
    is None and the checks that need it are left to the run, which then meets
    the failure itself.

    Attributes
    ----------
    laser, spectrograph, camera, tagger, scanner : str
        Instrument names (for messages).
    max_power_percent : float
        Highest laser power setting, %.
    gratings : tuple of Grating
        Installed gratings.
    grating : int or None
        Slot in place.
    center_wavelength_nm : float or None
        Centre wavelength now, nm.
    wavelength_ranges_nm : tuple of (slot, (low, high))
        Accepted centre wavelengths per slot, nm (slots whose range could not be read
        are missing).
    em_gain_range : (int, int)
        EM gains accepted with the advanced mode as it is now.
    em_gain_advanced : bool
        Whether advanced EM gain mode is on.
    em_gain_default : int or None
        Gain a spectrum uses when its ``em_gain`` is None (the setup file's camera gain,
        else the camera's current one).
    exposure_range_s : (float, float)
        Exposures accepted, s.
    channels, apd_channels : tuple of int
        Tagger inputs, and the two HBT inputs the procedures stream.
    resolution_ps : float
        Tagger time resolution, ps.
    limits_um : ((float, float), (float, float), (float, float))
        Scanner travel of x, y, z, µm.
    position_um : (float, float, float) or None
        Scanner position now, µm.
    g2_bin_ps : int or None
        Bin width of the g² histogram, ps (the session's analysis settings; None: not known).
    """

    laser: str
    max_power_percent: float
    spectrograph: str
    gratings: tuple[Grating, ...]
    grating: int | None
    center_wavelength_nm: float | None
    wavelength_ranges_nm: tuple[tuple[int, tuple[float, float]], ...]
    camera: str
    em_gain_range: tuple[int, int]
    em_gain_advanced: bool
    em_gain_default: int | None
    exposure_range_s: tuple[float, float]
    tagger: str
    channels: tuple[int, ...]
    apd_channels: tuple[int, int]
    resolution_ps: float
    scanner: str
    limits_um: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    position_um: tuple[float, float, float] | None
    g2_bin_ps: int | None = None

    @classmethod
    def of(cls, setup: Any, analysis: Any = None) -> Limits:
        """Ask the instruments of ``setup`` what they accept.

        Parameters
        ----------
        setup : Setup
            Open instruments (driver calls: not from the GUI thread).
        analysis : AnalysisSettings, optional
            Live analysis settings (for the g² bin).

        Raises
        ------
        InstrumentError
            When a limit itself cannot be read (state that cannot be read is None).
        """
        laser, spec, camera = setup.laser, setup.spectrograph, setup.camera
        tagger, scanner = setup.tagger, setup.scanner
        gratings = tuple(spec.gratings)
        ranges = []
        for g in gratings:
            got = _state(lambda g=g: tuple(float(v) for v in spec.wavelength_range_nm(g.slot)))
            if got is not None:
                ranges.append((int(g.slot), got))
        advanced = bool(_state(lambda: camera.em_gain_advanced) or False)
        configured = getattr(setup.config.camera, "em_gain", None)
        default = configured if configured else _state(lambda: int(camera.em_gain))
        position = _state(lambda: tuple(float(v) for v in scanner.position_um))
        return cls(
            laser=laser.name, max_power_percent=float(laser.max_power_percent),
            spectrograph=spec.name, gratings=gratings,
            grating=_state(lambda: int(spec.grating)),
            center_wavelength_nm=_state(lambda: float(spec.center_wavelength_nm)),
            wavelength_ranges_nm=tuple(ranges),
            camera=camera.name,
            em_gain_range=tuple(int(v) for v in camera.em_gain_range(advanced)),
            em_gain_advanced=advanced,
            em_gain_default=None if default is None else int(default),
            exposure_range_s=tuple(float(v) for v in camera.exposure_range_s),
            tagger=tagger.name, channels=tuple(int(c) for c in tagger.channels),
            apd_channels=tuple(int(c) for c in setup.apd_channels),
            resolution_ps=float(getattr(tagger, "resolution_ps", 1.0)),
            scanner=scanner.name,
            limits_um=tuple(tuple(float(v) for v in axis) for axis in scanner.limits_um),
            position_um=position,
            g2_bin_ps=None if analysis is None else int(analysis.g2_bin_ps))

    # ------------------------------------------------------------------ bounds
    def axis_bound(self, axis: str) -> Bound:
        """Scanner travel of ``axis`` (``"x"``, ``"y"`` or ``"z"``)."""
        low, high = self.limits_um["xyz".index(axis)]
        return Bound(low, high, "µm", f"scanner '{self.scanner}' {axis}")

    def power_bound(self) -> Bound:
        """Laser power settings accepted."""
        return Bound(0.0, self.max_power_percent, "%", f"laser '{self.laser}' power")

    def exposure_bound(self) -> Bound:
        """Camera exposures accepted."""
        low, high = self.exposure_range_s
        return Bound(low, high, "s", f"camera '{self.camera}' exposure")

    def em_gain_bound(self) -> Bound:
        """Camera EM gains accepted with the advanced mode as it is now."""
        low, high = self.em_gain_range
        return Bound(low, high, "", f"camera '{self.camera}' EM gain")

    def wavelength_bound(self, slot: int | None = None) -> Bound | None:
        """Centre wavelengths accepted with ``slot`` (None: the grating in place)."""
        slot = self.grating if slot is None else slot
        for s, (low, high) in self.wavelength_ranges_nm:
            if s == slot:
                return Bound(low, high, "nm", f"spectrograph '{self.spectrograph}' "
                             f"centre wavelength with grating {slot}:")
        return None

    def grating_bound(self) -> Bound:
        """Lowest and highest installed turret slot (gaps are refused by the check)."""
        slots = [g.slot for g in self.gratings]
        return Bound(min(slots), max(slots), "", f"spectrograph '{self.spectrograph}'")

    # ------------------------------------------------------------------ rules
    def refuse_grating(self, name: str, slot: int) -> None:
        """Raise :class:`ParameterError` when ``slot`` holds no grating."""
        allowed = grating_refusal(slot, self.gratings)
        if allowed is not None:
            raise ParameterError(f"{name} = {slot} refused: spectrograph "
                                 f"'{self.spectrograph}' {allowed}")

    def refuse_em_gain(self, name: str, gain: int) -> None:
        """Raise :class:`ParameterError` when the camera refuses EM gain ``gain``."""
        low, high = self.em_gain_range
        maximum = high if self.em_gain_advanced else max(high, 1000)
        allowed = em_gain_refusal(gain, self.em_gain_advanced, maximum=maximum,
                                  normal_maximum=high)
        if allowed is not None:
            raise ParameterError(f"{name} = {gain} refused: camera '{self.camera}' EM gain "
                                 f"{allowed}")

    def refuse_channels(self, name: str, channels: tuple[int, ...]) -> None:
        """Raise :class:`ParameterError` when the tagger lacks one of ``channels``."""
        allowed = channels_refusal(channels, self.channels)
        if allowed is not None:
            raise ParameterError(f"{name} = {channels} refused: tagger '{self.tagger}' "
                                 f"{allowed}")

    def refuse_g2_bin(self, name: str) -> None:
        """Raise :class:`ParameterError` when the live g² bin is not a multiple of the
        tagger's resolution."""
        if self.g2_bin_ps is None:
            return
        allowed = bin_refusal(self.g2_bin_ps, self.resolution_ps)
        if allowed is not None:
            raise ParameterError(f"{name}: analysis g2_bin_ps = {self.g2_bin_ps} ps refused: "
                                 f"tagger '{self.tagger}' needs {allowed}")


def refuse_outside(name: str, value: float, bound: Bound, note: str = "", *,
                   tested: float | None = None) -> None:
    """Raise :class:`ParameterError` when ``value`` is outside ``bound``.

    Parameters
    ----------
    name : str
        The parameter as the user wrote it (with its procedure prefix).
    value : float
        Its value, in ``bound.unit``.
    bound : Bound
        What the instrument accepts.
    note : str
        Why a derived value is checked (e.g. ``"the last pixel at 80.1 µm"``).
    tested : float, optional
        The derived value checked instead of ``value`` (``value`` is still named).
    """
    allowed = range_refusal(value if tested is None else tested, bound.low, bound.high,
                            bound.unit)
    if allowed is None:
        return
    unit = f" {bound.unit}" if bound.unit else ""
    why = f" ({note})" if note else ""
    raise ParameterError(f"{name} = {value:g}{unit} refused{why}: {bound.source} {allowed}")


def unit_of(name: str) -> str:
    """The unit a parameter name ends with (``"µm"`` for ``x_max_um``), or ``""``."""
    for ending, unit in _UNITS:
        if name.endswith(ending):
            return unit
    return ""


def _state(read: Callable[[], Any]) -> Any:
    """An instrument's state, or None when it cannot be read now (the run will say why)."""
    try:
        return read()
    except InstrumentError as exc:
        log.warning("pre-flight check: %s; the checks that need it are left to the run", exc)
        return None
