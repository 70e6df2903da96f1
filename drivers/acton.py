"""Acton / Princeton Instruments SpectraPro spectrograph over its ASCII protocol.

Tested protocol (SpectraPro 300i and the SP-2150i … SP-2750i series, RS-232 or
the USB virtual serial port, 9600 baud 8N1):

* every command ends in CR; the device answers when the command has *finished*
  with the text ``" ok"`` and CR LF. Queries put their value before the
  ``ok`` (``?NM`` → ``" 546.074 nm  ok"``); ``?GRATINGS`` answers over several
  CR LF-separated lines and ends with a line ``" ok"``.
* the serial port echoes every command until ``NO-ECHO`` is sent, which this
  driver does on connect.
* an unknown command is answered by the command followed by ``?`` instead of
  ``ok`` (for example ``"FOO ?"``); the driver raises :class:`InstrumentError`
  naming it.
* the device silently clamps a wavelength outside its mechanical range, so the
  driver refuses such a value itself (:class:`LimitError`) before sending.

The wavelength axis of the camera is computed from the grating equation of a
Czerny–Turner spectrograph, with the one implementation that the analysis and
the simulated spectrograph use (:func:`micropl.grating.wavelength_axis_nm`:
incidence α = ψ − γ/2, diffraction β = ψ + γ/2, γ = inclusion angle). Importing
that pure-numpy function is the accepted exception to "drivers import only
drivers": a second copy of the grating equation drifted in its sign convention.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator
from pymeasure.instruments import Instrument

from micropl.drivers._settings import StrictSettings, check_range
from micropl.drivers._visa_common import (
    AllowedRange,
    VisaLinkMixin,
    clock_functions,
    is_visa_timeout,
    open_visa,
    refuse_outside,
)
from micropl.drivers.interfaces import Clock
from micropl.drivers.limits import limit_error
from micropl.errors import AnalysisInputError, InstrumentError, InstrumentTimeout
from micropl.grating import wavelength_axis_nm
from micropl.records import Grating

__all__ = ["ActonSettings", "SpectraPro", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

KIND = "spectrograph"

#: Importable modules needed to open the instrument.
REQUIRES: tuple[str, ...] = ("pymeasure", "pyvisa")


# --------------------------------------------------------------------------- settings
class ActonSettings(StrictSettings):
    """Settings of an Acton SpectraPro spectrograph (role ``spectrograph``)."""

    driver: Literal["acton"] = Field("acton", description="Driver name: Acton / Princeton Instruments SpectraPro over pyvisa.")
    name: str = Field("spectrograph", description="name used in messages and data files")
    resource: str = Field(
        description="VISA resource name, e.g. 'ASRL/dev/ttyUSB0::INSTR' or 'ASRL3::INSTR'"
    )
    visa_library: str = Field(
        "", description="pyvisa backend: '' (default), '@py' (pyvisa-py) or 'file.yaml@sim'"
    )
    baud_rate: int = Field(9600, gt=0, description="serial baud rate (the device uses 9600)")
    timeout_s: float = Field(2.0, gt=0, description="reply timeout of ordinary commands, s")
    move_timeout_s: float = Field(
        60.0, gt=0, description="reply timeout of a wavelength move (GOTO, >NM polling), s"
    )
    grating_timeout_s: float = Field(
        40.0, gt=0, description="reply timeout of a grating change (the turret takes up to 20 s), s"
    )
    wavelength_range_nm: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] = Field(
        (0.0, 1400.0),
        description="allowed centre wavelength range in nm for a grating of "
        "range_grooves_per_mm (the manual's mechanical range: 0–1400 nm at 1200 g/mm)",
    )
    range_grooves_per_mm: float | None = Field(
        1200.0,
        gt=0,
        description="groove density the range refers to; the range is scaled by "
        "range_grooves_per_mm / G of the grating in place. None: same range for every grating",
    )
    focal_length_mm: float = Field(300.0, gt=0, description="focal length, mm (SP-2300i: 300)")
    inclusion_angle_deg: float = Field(
        15.15,
        gt=-90,
        lt=90,
        description="included angle between incident and diffracted beam, degrees "
        "(SP-2150i 24.66, SP-2300i 15.15, SP-2500i 8.59, SP-2750i 6.55); the sign selects "
        "the side of the diffracted beam: positive puts it on the far side (β = ψ + γ/2)",
    )
    detector_angle_deg: float = Field(
        0.0, gt=-45, lt=45, description="tilt of the detector plane against the focal plane, degrees"
    )
    diffraction_order: int = Field(1, description="diffraction order used (non-zero)")

    @model_validator(mode="after")
    def _check(self) -> ActonSettings:
        check_range("wavelength_range_nm", self.wavelength_range_nm, " nm")
        if self.diffraction_order == 0:
            raise ValueError("diffraction_order: 0 is the specular order, use ±1, ±2 …")
        return self


DRIVERS: dict[str, type[BaseModel]] = {"spectrograph": ActonSettings}


# --------------------------------------------------------------------------- helpers
#: A reply longer than this without "ok" means the link is out of step.
_MAX_REPLY_LINES = 32

@dataclass(frozen=True)
class _Slots:
    """Installed turret slots handed to the grating validator as ``values``."""

    kind: str
    name: str
    slots: Callable[[], list[int]]


def _refuse_empty_slot(value: Any, allowed: _Slots) -> int:
    """pymeasure validator: return the slot or raise LimitError naming the installed ones."""
    slots = allowed.slots()
    number = float(value)
    if not (number.is_integer() and int(number) in slots):
        raise limit_error(
            allowed.kind,
            allowed.name,
            f"GRATING {value}",
            "installed slots " + ", ".join(str(slot) for slot in slots),
        )
    return int(number)


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")
_OK = re.compile(r"(?:^|\s)ok$")
_INSTALLED = re.compile(
    r"^[\s\x1a>]*(\d+)\s+(\d+(?:\.\d+)?)\s*g/mm(?:\s+BLZ=\s*(\d+(?:\.\d+)?)\s*(NM|UM|nm|um))?"
)
_EMPTY_SLOT = re.compile(r"^[\s\x1a>]*(\d+)\s+Not Installed", re.IGNORECASE)


def _first_number(reply: Any) -> float:
    """The first number in a reply such as ``'546.074 nm'``."""
    match = _NUMBER.search(str(reply))
    if match is None:
        raise InstrumentError(f"{KIND}: expected a number, got reply {reply!r}")
    return float(match.group())


def parse_gratings(reply: str) -> list[Grating]:
    """Installed gratings from a ``?GRATINGS`` reply (one slot per line).

    Parameters
    ----------
    reply : str
        The lines of the reply without the final ``ok``, e.g.
        ``"\\x1a1  150 g/mm BLZ=  500NM\\n 2  600 g/mm BLZ=  1.6UM\\n 3  Not Installed"``.
        The arrow (``\\x1a`` or ``>``) that marks the current slot is ignored.

    Returns
    -------
    list of Grating
        Installed slots in turret order; blaze in nm (``UM`` is converted,
        ``nan`` when the line gives none). Empty slots are left out.
    """
    gratings: list[Grating] = []
    for line in reply.splitlines():
        if not line.strip() or _EMPTY_SLOT.match(line):
            continue
        match = _INSTALLED.match(line)
        if match is None:
            log.warning("%s: unrecognised ?GRATINGS line %r", KIND, line)
            continue
        slot, grooves, blaze, unit = match.groups()
        blaze_nm = float("nan") if blaze is None else float(blaze)
        if unit is not None and unit.lower() == "um":
            blaze_nm *= 1000.0
        gratings.append(Grating(int(slot), float(grooves), blaze_nm))
    return gratings


# --------------------------------------------------------------------------- instrument
class SpectraPro(VisaLinkMixin, Instrument):
    """Acton / Princeton Instruments SpectraPro spectrograph.

    Parameters
    ----------
    adapter : str or pymeasure Adapter
        VISA resource name (e.g. ``"ASRL/dev/ttyUSB0::INSTR"``) or an adapter.
    name : str
        Instrument name used in messages (the setup's role name).
    settings : ActonSettings, optional
        Limits, timeouts and optical geometry; defaults of :class:`ActonSettings`.
    clock : Clock, optional
        Time source for polling non-blocking moves (wall time by default).
    **kwargs
        Passed on to the pymeasure VISA adapter (e.g. ``visa_library``).

    Examples
    --------
    >>> sp = SpectraPro("ASRL/dev/ttyUSB0::INSTR")              # doctest: +SKIP
    >>> sp.center_wavelength_nm = 515.0   # blocks until the move is done
    >>> sp.wavelength_axis_nm(1600, 16.0)
    """

    def __init__(
        self,
        adapter: Any,
        name: str = "spectrograph",
        *,
        settings: ActonSettings | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        self._open_link(
            adapter, name, settings if settings is not None else ActonSettings(resource=""), clock,
            read_termination="\r\n", write_termination="\r", **kwargs,
        )
        self._gratings_cache: list[Grating] | None = None
        self._identity: dict[str, str] = {}
        range_nm = AllowedRange(KIND, name, "GOTO {value} nm", "nm", self._wavelength_bounds_nm)
        self.center_wavelength_nm_values = range_nm
        self._scan_target_nm_values = AllowedRange(KIND, name, ">NM {value} nm", "nm",
                                               self._wavelength_bounds_nm)
        self.grating_values = _Slots(KIND, name, self._installed_slots)
        self.ask("NO-ECHO")

    # ------------------------------------------------------------------ protocol layer
    def read(self, **kwargs: Any) -> str:
        """Read one complete reply, up to and without the final ``ok``.

        Multi-line replies are joined with ``\\n``; empty lines are dropped.
        The adapter timeout is raised for the duration of slow commands
        (GOTO, GRATING).

        Raises
        ------
        InstrumentError
            When the device answers ``<command> ?`` (unknown command).
        InstrumentTimeout
            When no complete reply arrives in time.
        """
        lines: list[str] = []
        with self._timeout_for(self._last_command):
            for _ in range(_MAX_REPLY_LINES):
                try:
                    raw = super().read(**kwargs)
                except Exception as exc:
                    if is_visa_timeout(exc):
                        raise InstrumentTimeout(
                            f"{KIND} '{self.name}': no complete reply to "
                            f"'{self._last_command}' in time"
                        ) from exc
                    raise
                text = raw.strip()
                if _OK.search(text):
                    body = text[:-2].strip()
                    if body:
                        lines.append(body)
                    break
                if text.endswith("?"):
                    raise InstrumentError(
                        f"{KIND} '{self.name}': command '{self._last_command}' not "
                        f"understood (reply {text!r})"
                    )
                if text:
                    lines.append(raw.rstrip())
            else:
                raise InstrumentError(
                    f"{KIND} '{self.name}': no 'ok' within {_MAX_REPLY_LINES} reply lines "
                    f"to '{self._last_command}'"
                )
        return "\n".join(lines)

    def check_set_errors(self) -> list[str]:
        """Consume the ``ok`` that ends every setting command (raises on ``?``)."""
        self.read()
        return []

    @contextmanager
    def _timeout_for(self, command: str) -> Iterator[None]:
        verb = command.split()[-1].upper() if command.strip() else ""
        timeout_s = {
            "GOTO": self.settings.move_timeout_s,
            "GRATING": self.settings.grating_timeout_s,
        }.get(verb)
        if timeout_s is None:
            yield
            return
        connection = self.adapter.connection
        previous = connection.timeout
        connection.timeout = int(timeout_s * 1000)
        try:
            yield
        finally:
            connection.timeout = previous

    # ------------------------------------------------------------------ properties
    center_wavelength_nm = Instrument.control(
        "?NM",
        "%.3f GOTO",
        """Control the centre wavelength in nm (float).

        Setting sends ``<nm> GOTO`` and blocks until the move has finished (the
        device answers ``ok`` then). Values outside the allowed range are
        refused with :class:`LimitError` before anything is sent.""",
        validator=refuse_outside,
        cast=str,
        get_process=_first_number,
        check_set_errors=True,
        dynamic=True,
    )

    _scan_target_nm = Instrument.setting(
        "%.3f >NM",
        """Set a wavelength target without waiting (``>NM``); see :meth:`start_move_nm`.""",
        validator=refuse_outside,
        check_set_errors=True,
        dynamic=True,
    )

    move_done = Instrument.measurement(
        "MONO-?DONE",
        """Get whether the last non-blocking move has finished (bool).""",
        cast=str,
        get_process=lambda reply: bool(int(_first_number(reply))),
    )

    grating = Instrument.control(
        "?GRATING",
        "%d GRATING",
        """Control the turret slot in use (int, 1-based).

        A grating change takes up to 20 s; the adapter timeout is raised for
        that command only. Slots that are not installed are refused.""",
        validator=_refuse_empty_slot,
        cast=str,
        get_process=lambda reply: int(_first_number(reply)),
        check_set_errors=True,
        dynamic=True,
    )

    model = Instrument.measurement(
        "MODEL", """Get the model, e.g. ``SP-2-300i`` (str).""", cast=str, maxsplit=0,
        get_process=lambda reply: str(reply).strip(),
    )

    serial = Instrument.measurement(
        "SERIAL", """Get the serial number (str).""", cast=str, maxsplit=0,
        get_process=lambda reply: str(reply).strip(),
    )

    @property
    def gratings(self) -> list[Grating]:
        """Installed gratings read with ``?GRATINGS`` (list of :class:`Grating`)."""
        gratings = parse_gratings(self.ask("?GRATINGS"))
        if not gratings:
            raise InstrumentError(f"{KIND} '{self.name}': ?GRATINGS lists no installed grating")
        self._gratings_cache = gratings
        return list(gratings)

    # ------------------------------------------------------------------ derived
    def grooves_per_mm(self, slot: int | None = None) -> float:
        """Groove density of ``slot`` (default: the slot in use), lines/mm."""
        if self._gratings_cache is None:
            self.gratings  # noqa: B018 - fills the cache
        slot = self.grating if slot is None else slot
        for grating in self._gratings_cache or []:
            if grating.slot == slot:
                return grating.grooves_per_mm
        raise InstrumentError(f"{KIND} '{self.name}': grating slot {slot} is not installed")

    def wavelength_range_nm(self, slot: int | None = None) -> tuple[float, float]:
        """Allowed centre wavelength range (nm) for ``slot`` (default: in use)."""
        low, high = self.settings.wavelength_range_nm
        reference = self.settings.range_grooves_per_mm
        if reference is None:
            return low, high
        scale = reference / self.grooves_per_mm(slot)
        return low * scale, high * scale

    def _wavelength_bounds_nm(self) -> tuple[float, float]:
        return self.wavelength_range_nm()

    def _installed_slots(self) -> list[int]:
        if self._gratings_cache is None:
            self.gratings  # noqa: B018 - fills the cache
        return [g.slot for g in self._gratings_cache or []]

    def wavelength_axis_nm(self, n_px: int, pixel_um: float) -> np.ndarray:
        """Wavelength of each of ``n_px`` pixel columns of width ``pixel_um`` (µm).

        Uses the centre wavelength and grating in place and the geometry from
        the settings (focal length, inclusion and detector angles).

        Returns
        -------
        ndarray of float64, shape (n_px,)
            Wavelengths in nm, increasing with pixel index.
        """
        s = self.settings
        center_nm = self.center_wavelength_nm
        grooves = self.grooves_per_mm()
        try:
            return wavelength_axis_nm(
                int(n_px), float(pixel_um), center_nm, grooves, s.focal_length_mm,
                s.inclusion_angle_deg, s.diffraction_order,
                detector_tilt_deg=s.detector_angle_deg,
            )
        except AnalysisInputError as exc:
            raise InstrumentError(
                f"{KIND} '{self.name}': no wavelength axis at {center_nm:g} nm with "
                f"{grooves:g} g/mm: {exc}"
            ) from exc

    # ------------------------------------------------------------------ non-blocking move
    def start_move_nm(self, wavelength_nm: float) -> None:
        """Start moving to ``wavelength_nm`` (``>NM``) and return at once.

        The ``>NM`` move runs at the scan rate set with ``NM/MIN``; poll
        :attr:`move_done` or call :meth:`wait_until_done`.
        """
        self._scan_target_nm = wavelength_nm

    def wait_until_done(self, timeout_s: float | None = None, poll_s: float = 0.1) -> None:
        """Poll ``MONO-?DONE`` until the move has finished.

        Raises
        ------
        InstrumentTimeout
            When the move is not done within ``timeout_s`` (default
            ``settings.move_timeout_s``) of clock time.
        """
        timeout_s = self.settings.move_timeout_s if timeout_s is None else timeout_s
        now, sleep = clock_functions(self._clock)
        deadline = now() + timeout_s
        while not self.move_done:
            if now() >= deadline:
                raise InstrumentTimeout(
                    f"{KIND} '{self.name}': move not done after {timeout_s:g} s (MONO-?DONE)"
                )
            sleep(poll_s)

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings with units in the keys."""
        if not self._identity:
            self._identity = {"model": self.model, "serial": self.serial}
        slot = self.grating
        return {
            "driver": "acton",
            **self._identity,
            "center_wavelength_nm": self.center_wavelength_nm,
            "grating": slot,
            "grooves_per_mm": self.grooves_per_mm(slot),
            "focal_length_mm": self.settings.focal_length_mm,
            "inclusion_angle_deg": self.settings.inclusion_angle_deg,
            "detector_angle_deg": self.settings.detector_angle_deg,
        }


# --------------------------------------------------------------------------- shared bits
def open_instrument(settings: ActonSettings, clock: Clock | None = None) -> SpectraPro:
    """Open the spectrograph described by ``settings``."""
    return open_visa(
        KIND, "acton", settings,
        lambda **kwargs: SpectraPro(
            settings.resource, settings.name, settings=settings, clock=clock, **kwargs
        ),
    )
