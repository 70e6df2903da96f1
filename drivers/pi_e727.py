"""Physik Instrumente (PI) E-727 digital piezo controller over GCS 2.0, as a scanner.

Protocol (TCP/IP port 50000, ``TCPIP::<host>::50000::SOCKET``, or RS-232 /
USB virtual serial port at 115200 baud; LF ends every command and reply line):

* ``SVO 1 1`` switches the servo (closed loop) of axis 1 on; ``SVO? 1`` → ``1=1``;
* ``MOV 1 12.5`` starts a move of axis 1 to 12.5 (stage units, µm for PI
  nanopositioning stages); ``POS? 1`` → ``1=12.5000``;
* ``ONT? 1 2 3`` reports on-target per axis over several lines; GCS ends every
  line of a multi-line answer but the last with a space before the LF
  (``1=1 \\n2=1 \\n3=0\\n``);
* setting commands send no reply. Errors are kept by the controller and read
  with ``ERR?`` (``0`` = no error); the driver checks it after each move and
  after switching the servo, and raises :class:`InstrumentError` with the GCS
  error code;
* ``TMN? 1`` / ``TMX? 1`` give the travel range of an axis.

Axis identifiers are ``1 2 3`` by default (configurable). Targets outside
``limits_um`` are refused with :class:`LimitError` before anything is sent.

Hardware-timed lines (wave generator)
-------------------------------------
With ``hardware_lines`` on, the controller is a
:class:`~micropl.drivers.interfaces.LineScanner`. :meth:`E727.configure_line`
writes one linear segment into wave table ``wave_table`` and sets up the
digital trigger output ``trigger_output`` to pulse at each pixel boundary::

    WGO 1 0                                  stop the generator (if it ran)
    WAV 1 X LIN <L> <amp> <start> <L> 0 0    L = n·p + 1 points, amp = stop − start
    WSL 1 1                                  wave table 1 → generator 1 (axis x)
    WGC 1 1                                  one cycle
    WTR 1 <rate> 0                           a point every <rate> servo cycles
    CTO <out> 3 4                            trigger mode: generator trigger
    TWC                                      clear the trigger points
    TWS <out> <i·p + 1> 1                    output high at each boundary, i = 0…n
    ERR?

``p`` points per pixel (at least 2) at ``rate`` servo cycles of ``servo_cycle_s``
each make one dwell; the smallest rate that keeps the table within
``wave_points_max`` is used. Parameters the wave generator cannot do (an edge
outside ``limits_um``, a dwell that is not a whole number of table points, a
table too long) are refused with :class:`LimitError` before anything is sent.
The trigger points (CTO/TWC/TWS) are sent only when the pixel layout changes.
:meth:`E727.start_line` sends ``WGO 1 1`` (start now) and checks ``ERR?``;
:meth:`E727.line_done` asks ``WGN? 1`` (cycles finished) and, once the cycle is
done, stops the generator with ``WGO 1 0``. The segment has no speed-up points:
the axis follows a constant-speed target, and the servo lag at the start of a
line shifts its first pixel (scan lines wide enough that the lag is small, or
discard the first pixel).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pymeasure.instruments import Channel, Instrument

from micropl.drivers._settings import StrictSettings
from micropl.drivers._visa_common import (
    AllowedRange,
    VisaLinkMixin,
    checked_targets_um,
    clock_functions,
    is_visa_timeout,
    open_visa,
    refuse_outside,
)
from micropl.drivers.interfaces import Clock
from micropl.drivers.limits import limit_error, line_refusal
from micropl.errors import InstrumentError, InstrumentTimeout

__all__ = ["E727Settings", "E727", "GCS_ERRORS", "DRIVERS", "REQUIRES", "open_instrument",
           "wave_layout"]

log = logging.getLogger(__name__)

KIND = "scanner"

#: Importable modules needed to open the instrument.
REQUIRES: tuple[str, ...] = ("pymeasure", "pyvisa")

#: Common GCS controller error codes (the full list is in the E-727 manual).
GCS_ERRORS: dict[int, str] = {
    1: "parameter syntax error",
    2: "unknown command",
    3: "command too long",
    5: "move attempted with servo off or axis not referenced",
    7: "position out of limits",
    10: "controller was stopped by command",
    15: "invalid axis identifier",
    17: "parameter out of range",
}

Limits = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]


# --------------------------------------------------------------------------- settings
class E727Settings(StrictSettings):
    """Settings of a PI E-727 piezo controller (role ``scanner``)."""

    driver: Literal["pi_e727"] = Field("pi_e727", description="Driver name: PI E-727 piezo controller (GCS 2.0) over pyvisa.")
    name: str = Field("scanner", description="name used in messages and data files")
    resource: str = Field(
        description="VISA resource name: 'TCPIP::<host>::50000::SOCKET' or 'ASRL/dev/ttyUSB0::INSTR'"
    )
    visa_library: str = Field(
        "", description="pyvisa backend: '' (default), '@py' (pyvisa-py) or 'file.yaml@sim'"
    )
    baud_rate: int = Field(115200, gt=0, description="serial baud rate when connected by RS-232")
    timeout_s: float = Field(2.0, gt=0, description="reply timeout, s")
    axes: tuple[str, str, str] = Field(
        ("1", "2", "3"), description="GCS axis identifiers used for x, y, z"
    )
    limits_um: Limits | None = Field(
        None,
        description="allowed (min, max) of x, y, z in µm; None: the travel range read with "
        "TMN?/TMX?. Limits beyond the travel range are an error on open",
    )
    move_timeout_s: float = Field(
        2.0, gt=0, description="time allowed for all axes to report on target, s"
    )
    poll_s: float = Field(0.005, gt=0, description="interval between ONT? polls, s")
    servo_on_at_open: bool = Field(True, description="switch the servo of every axis on when opened")
    hardware_lines: bool = Field(
        True, description="clock x lines with the wave generator (pixel trigger pulses)")
    marker_channel: int | None = Field(
        None, ge=0, le=64, description="time-tagger input wired to the trigger output "
        "(pixel markers), or none")
    trigger_output: int = Field(1, ge=1, le=8, description="digital output line (CTO) that "
                                "pulses at each pixel boundary")
    wave_generator: int = Field(1, ge=1, le=8, description="wave generator driving the x axis")
    wave_table: int = Field(1, ge=1, le=8, description="wave table holding the line")
    servo_cycle_s: float = Field(2e-5, gt=0, le=1e-2, description="servo cycle time, s "
                                 "(one wave table point at table rate 1)")
    wave_points_max: int = Field(65536, ge=16, description="longest wave table the line may "
                                 "use, points")

    @model_validator(mode="after")
    def _check(self) -> E727Settings:
        if len(set(self.axes)) != 3 or any(not a.strip() or " " in a for a in self.axes):
            raise ValueError(f"axes: need three distinct identifiers without spaces, got {self.axes}")
        if self.limits_um is not None:
            for axis, (low, high) in zip("xyz", self.limits_um):
                if not low < high:
                    raise ValueError(f"limits_um: {axis} range {low}–{high} µm is empty")
        return self


DRIVERS: dict[str, type[BaseModel]] = {"scanner": E727Settings}


# --------------------------------------------------------------------------- helpers
def _axis_value(reply: Any) -> str:
    """The value of a single-axis GCS reply ``'1=12.5000'``."""
    text = str(reply).strip()
    if "=" not in text:
        raise InstrumentError(f"{KIND}: expected '<axis>=<value>', got reply {reply!r}")
    return text.split("=", 1)[1].strip()


def _axis_float(reply: Any) -> float:
    return float(_axis_value(reply))


def _axis_bool(reply: Any) -> bool:
    return bool(int(_axis_value(reply)))


class GcsAxis(Channel):
    """One GCS axis of the E-727 (identifier in ``id``)."""

    servo = Channel.control(
        "SVO? {ch}",
        "SVO {ch} %d",
        """Control the servo (closed loop) of this axis (bool); ERR? is checked.""",
        cast=str,
        get_process=_axis_bool,
        set_process=int,
        check_set_errors=True,
    )

    target_um = Channel.control(
        "MOV? {ch}",
        "MOV {ch} %.4f",
        """Control the commanded target of this axis in µm (float).

        Setting starts the move and returns at once (use
        :meth:`E727.move_to` to wait); values outside the axis limits raise
        LimitError before anything is sent.""",
        validator=refuse_outside,
        cast=str,
        get_process=_axis_float,
        dynamic=True,
    )

    position_um = Channel.measurement(
        "POS? {ch}", """Get the measured position of this axis in µm (float).""",
        cast=str, get_process=_axis_float,
    )

    on_target = Channel.measurement(
        "ONT? {ch}", """Get whether this axis is on target (bool).""",
        cast=str, get_process=_axis_bool,
    )

    travel_min_um = Channel.measurement(
        "TMN? {ch}", """Get the lower end of the travel range in µm (float).""",
        cast=str, get_process=_axis_float,
    )

    travel_max_um = Channel.measurement(
        "TMX? {ch}", """Get the upper end of the travel range in µm (float).""",
        cast=str, get_process=_axis_float,
    )


def wave_layout(n_pixels: int, dwell_s: float, servo_cycle_s: float,
                points_max: int) -> tuple[int, int] | str:
    """Table rate and points per pixel for a line of ``n_pixels`` × ``dwell_s``.

    Parameters
    ----------
    n_pixels : int
        Pixels in the line.
    dwell_s : float
        Time per pixel, s.
    servo_cycle_s : float
        Controller servo cycle, s.
    points_max : int
        Longest wave table allowed (``n_pixels × points_per_pixel + 1`` points).

    Returns
    -------
    (int, int) or str
        ``(table_rate, points_per_pixel)`` with the smallest rate that fits, or
        what is allowed when nothing does.
    """
    cycles = dwell_s / servo_cycle_s
    whole = round(cycles)
    if whole < 2 or abs(cycles - whole) > 1e-6 * max(1.0, cycles):
        return (f"a dwell of a whole number (≥ 2) of servo cycles of {servo_cycle_s * 1e6:g} µs")
    for rate in range(1, whole // 2 + 1):
        if whole % rate:
            continue
        points = whole // rate
        if n_pixels * points + 1 <= points_max:
            return rate, points
    return (f"at most {points_max} wave table points (n_pixels × 2 + 1 at the least, "
            f"here {n_pixels * 2 + 1})")


# --------------------------------------------------------------------------- instrument
class E727(VisaLinkMixin, Instrument):
    """PI E-727 piezo controller (a Scanner), talking GCS 2.0.

    Parameters
    ----------
    adapter : str or pymeasure Adapter
        VISA resource name (``"TCPIP::192.168.0.27::50000::SOCKET"``) or an adapter.
    name : str
        Instrument name used in messages (the setup's role name).
    settings : E727Settings, optional
        Axes, limits and timeouts; defaults of :class:`E727Settings`.
    clock : Clock, optional
        Time source for the on-target polling (wall time by default).
    **kwargs
        Passed on to the pymeasure VISA adapter (e.g. ``visa_library``).

    Notes
    -----
    On construction the driver reads ``TMN?`` and ``TMX?`` of each axis to
    derive (or check) :attr:`limits_um`. Attributes ``axis_x``, ``axis_y`` and
    ``axis_z`` are the per-axis channels.
    """

    def __init__(
        self,
        adapter: Any,
        name: str = "scanner",
        *,
        settings: E727Settings | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        self._open_link(
            adapter, name, settings if settings is not None else E727Settings(resource=""), clock,
            read_termination="\n", write_termination="\n", **kwargs,
        )
        self._axes: dict[str, GcsAxis] = {}
        for label, ident in zip("xyz", self.settings.axes):
            axis = self.add_child(GcsAxis, ident, collection="gcs_axes", attr_name=f"axis_{label}")
            self._axes[label] = axis
        self.travel_um: Limits = tuple(  # type: ignore[assignment]
            (self._axes[a].travel_min_um, self._axes[a].travel_max_um) for a in "xyz"
        )
        self.limits_um: Limits = self._checked_limits()
        #: Whether lines are clocked by the wave generator (settings ``hardware_lines``).
        self.supports_hardware_lines = bool(self.settings.hardware_lines)
        #: Tagger input of the trigger output (settings ``marker_channel``).
        self.marker_channel = self.settings.marker_channel
        self._trigger_layout: tuple[int, int] | None = None
        self._line: tuple[float, float, int, float] | None = None
        self._line_running = False
        for label, axis in self._axes.items():
            i = "xyz".index(label)
            axis.target_um_values = AllowedRange(
                KIND, name, f"MOV {label} ({axis.id}) to {{value:g}} µm", "µm",
                lambda i=i: self.limits_um[i],
            )

    def _checked_limits(self) -> Limits:
        wanted = self.settings.limits_um
        if wanted is None:
            return self.travel_um
        for label, (low, high), (t_low, t_high) in zip("xyz", wanted, self.travel_um):
            if low < t_low or high > t_high:
                raise InstrumentError(
                    f"{KIND} '{self.name}': limits_um {label} {low:g}–{high:g} µm exceed the "
                    f"travel range {t_low:g}–{t_high:g} µm (TMN?/TMX?)"
                )
        return wanted

    # ------------------------------------------------------------------ protocol layer
    def read(self, **kwargs: Any) -> str:
        """Read one reply line (LF stripped; a trailing space marks more lines)."""
        try:
            return super().read(**kwargs)
        except Exception as exc:
            if is_visa_timeout(exc):
                raise InstrumentTimeout(
                    f"{KIND} '{self.name}': no reply to '{self._last_command}' in time"
                ) from exc
            raise

    def ask_lines(self, command: str) -> list[str]:
        """Send a query and read every line of its (multi-line) GCS answer."""
        self.write(command)
        lines = []
        while True:
            line = self.read()
            lines.append(line.strip())
            if not line.endswith(" "):
                return lines

    error_code = Instrument.measurement(
        "ERR?", """Get (and clear) the controller's last GCS error code (int, 0 = none).""",
        cast=int,
    )

    identity = Instrument.measurement(
        "*IDN?", """Get the identification string (str).""", cast=str, maxsplit=0,
        get_process=lambda reply: str(reply).strip(),
    )

    def check_errors(self) -> list[int]:
        """Read ``ERR?``; a non-zero code raises InstrumentError naming it and the
        command sent before."""
        after = self._last_command
        code = self.error_code
        if code != 0:
            meaning = GCS_ERRORS.get(code, "see the E-727 manual")
            raise InstrumentError(
                f"{KIND} '{self.name}': GCS error {code} ({meaning}) after '{after}'"
            )
        return []

    def check_set_errors(self) -> list[int]:
        """After a setting command: check ``ERR?``."""
        return self.check_errors()

    # ------------------------------------------------------------------ Scanner
    def servo_on(self, on: bool = True) -> None:
        """Switch the servo of every axis on (or off); ERR? is checked after each."""
        for axis in self._axes.values():
            axis.servo = on

    def on_target(self) -> tuple[bool, bool, bool]:
        """On-target state of x, y, z from one ``ONT?`` query."""
        idents = [self._axes[a].id for a in "xyz"]
        replies = dict(line.split("=", 1) for line in self.ask_lines("ONT? " + " ".join(idents)))
        try:
            return tuple(bool(int(replies[i])) for i in idents)  # type: ignore[return-value]
        except (KeyError, ValueError) as exc:
            raise InstrumentError(
                f"{KIND} '{self.name}': unexpected ONT? answer {replies!r}"
            ) from exc

    @property
    def position_um(self) -> tuple[float, float, float]:
        """Measured (x, y, z) in µm (``POS?`` of each axis)."""
        return tuple(self._axes[a].position_um for a in "xyz")  # type: ignore[return-value]

    def move_to(self, x_um: float, y_um: float, z_um: float | None = None) -> None:
        """Move to (x, y[, z]) in µm and wait until every axis is on target.

        Sends ``MOV`` per axis, polls ``ONT?`` until all axes are on target
        (``move_timeout_s`` of clock time), then checks ``ERR?``.

        Raises
        ------
        LimitError
            Before anything is sent, when any target is outside :attr:`limits_um`.
        InstrumentTimeout
            When the axes are not on target in time (the GCS error code, if
            any, is in the message).
        InstrumentError
            When ``ERR?`` reports an error after the move.
        """
        targets = checked_targets_um(KIND, self.name, self.limits_um, x_um, y_um, z_um)
        for label, value in targets.items():
            self._axes[label].target_um = float(value)
        move = ", ".join(f"{label}={float(v):g}" for label, v in targets.items())
        now, sleep = clock_functions(self._clock)
        deadline = now() + self.settings.move_timeout_s
        while not all(self.on_target()):
            if now() >= deadline:
                code = self.error_code
                detail = f"; GCS error {code} ({GCS_ERRORS.get(code, 'see manual')})" if code else ""
                raise InstrumentTimeout(
                    f"{KIND} '{self.name}': move to {move} µm not on target after "
                    f"{self.settings.move_timeout_s:g} s{detail}"
                )
            sleep(self.settings.poll_s)
        code = self.error_code
        if code != 0:
            raise InstrumentError(
                f"{KIND} '{self.name}': move to {move} µm failed: GCS error {code} "
                f"({GCS_ERRORS.get(code, 'see the E-727 manual')})"
            )

    # ------------------------------------------------------------------ hardware lines
    def line_refusal(self, start_um: float, stop_um: float, n_pixels: int,
                     dwell_s: float) -> str | None:
        """Why the wave generator cannot run this line (None when it can)."""
        if not self.supports_hardware_lines:
            return "hardware lines are off (settings hardware_lines: false)"
        allowed = line_refusal(start_um, stop_um, n_pixels, dwell_s, self.limits_um[0])
        if allowed is not None:
            return allowed
        layout = wave_layout(int(n_pixels), float(dwell_s), self.settings.servo_cycle_s,
                             self.settings.wave_points_max)
        return layout if isinstance(layout, str) else None

    def configure_line(self, start_um: float, stop_um: float, n_pixels: int,
                       dwell_s: float, *, end_pulse: bool = True) -> None:
        """Write the line into the wave table and set the pixel trigger points.

        ``end_pulse=False`` leaves out the trigger point at the end of the last
        pixel (one pulse per pixel start, for a camera's external trigger).

        Raises
        ------
        LimitError
            Before anything is sent, for a line the wave generator cannot do
            (:meth:`line_refusal`).
        InstrumentError
            When ``ERR?`` reports an error after the configuration.
        """
        allowed = self.line_refusal(start_um, stop_um, n_pixels, dwell_s)
        if allowed is not None:
            raise limit_error(KIND, self.name, f"line x {start_um:g}→{stop_um:g} µm, "
                              f"{n_pixels} px × {dwell_s:g} s", allowed)
        s = self.settings
        rate, per_pixel = wave_layout(int(n_pixels), float(dwell_s), s.servo_cycle_s,
                                      s.wave_points_max)  # type: ignore[misc]
        n = int(n_pixels)
        length = n * per_pixel + 1
        gen, table, out = s.wave_generator, s.wave_table, s.trigger_output
        amplitude = float(stop_um) - float(start_um)
        self.write(f"WGO {gen} 0")
        self.write(f"WAV {table} X LIN {length} {amplitude:.4f} {float(start_um):.4f} "
                   f"{length} 0 0")
        self.write(f"WSL {gen} {table}")
        self.write(f"WGC {gen} 1")
        self.write(f"WTR {gen} {rate} 0")
        pulses = n + 1 if end_pulse else n
        if self._trigger_layout != (pulses, per_pixel):
            self._trigger_layout = None
            self.write(f"CTO {out} 3 4")
            self.write("TWC")
            for i in range(pulses):
                self.write(f"TWS {out} {i * per_pixel + 1} 1")
        self.check_errors()
        self._trigger_layout = (pulses, per_pixel)
        self._line = (float(start_um), float(stop_um), n, float(dwell_s))

    def start_line(self) -> None:
        """Start the configured line now (``WGO <gen> 1``) and check ``ERR?``."""
        if self._line is None:
            raise InstrumentError(f"{KIND} '{self.name}': start line refused: no line "
                                  "configured")
        self.write(f"WGO {self.settings.wave_generator} 1")
        self.check_errors()
        self._line_running = True

    def line_done(self) -> bool:
        """Whether the line's cycle is finished (``WGN?``); then the generator is stopped."""
        if not self._line_running:
            return True
        gen = self.settings.wave_generator
        reply = self.ask(f"WGN? {gen}")
        try:
            cycles = int(_axis_value(reply))
        except ValueError as exc:
            raise InstrumentError(f"{KIND} '{self.name}': unexpected WGN? answer "
                                  f"{reply!r}") from exc
        if cycles < 1:
            return False
        self.write(f"WGO {gen} 0")
        self.check_errors()
        self._line_running = False
        return True

    # ------------------------------------------------------------------ housekeeping
    def snapshot(self) -> dict[str, Any]:
        """Current settings with units in the keys."""
        x, y, z = self.position_um
        return {
            "driver": "pi_e727",
            "identity": self.identity,
            "axes": list(self.settings.axes),
            "servo": [self._axes[a].servo for a in "xyz"],
            "x_um": x,
            "y_um": y,
            "z_um": z,
            "limits_um": [list(pair) for pair in self.limits_um],
            "travel_um": [list(pair) for pair in self.travel_um],
            "hardware_lines": self.supports_hardware_lines,
            "marker_channel": self.marker_channel,
            "trigger_output": self.settings.trigger_output,
            "servo_cycle_s": self.settings.servo_cycle_s,
        }


# --------------------------------------------------------------------------- shared bits
def open_instrument(settings: E727Settings, clock: Clock | None = None) -> E727:
    """Open the controller described by ``settings`` (servo on when configured)."""
    scanner = open_visa(
        KIND, "pi_e727", settings,
        lambda **kwargs: E727(
            settings.resource, settings.name, settings=settings, clock=clock, **kwargs
        ),
    )
    try:
        if settings.servo_on_at_open:
            scanner.servo_on(True)
    except BaseException:
        scanner.close()
        raise
    return scanner
