"""``raster_scan``: a PL map of a region, line by line, live.

Timing
------
A scanner with hardware-timed lines (:class:`~micropl.drivers.interfaces.LineScanner`,
e.g. the PI E-727's wave generator) sweeps each line at constant speed and marks
the pixel boundaries on a tagger input; the counts of a pixel are the APD tags
between two markers (:func:`micropl.analysis.marker_bins.counts_between_markers`).
Other scanners are software-timed: a move, a settle and a count per pixel.
:func:`choose_timing` decides (``timing="auto"`` takes hardware timing when it is
possible); the run emits a :class:`~micropl.records.scans.MapTiming`
record saying which timing it used and why, and the map carries it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, count_apds, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, ParameterError, refuse_outside
from micropl.analysis.marker_bins import counts_between_markers
from micropl.drivers.interfaces import hardware_lines
from micropl.drivers.limits import line_refusal
from micropl.errors import InstrumentError, InstrumentTimeout
from micropl.records import MapLine, TagChunk
from micropl.records.scans import MapTiming

Timing = Literal["auto", "hardware", "software"]
#: Reads of the tagger during a hardware line are at most this far apart, s (watchdog).
LINE_READ_S = 0.02
#: The last read of a line covers at most this much clock time after the read before, s.
LINE_TAIL_S = 0.003
#: Time allowed beyond the line's duration for its last marker to arrive, s.
LINE_MARKER_GRACE_S = 1.0


def line_edges_um(x_um: np.ndarray, backwards: bool = False) -> tuple[float, float]:
    """Sweep edges (start, stop) of a hardware line whose pixel centres are ``x_um``, µm.

    The sweep runs from half a step before the first centre to half a step
    after the last (reversed for a backward line); one pixel: a step of 1 µm.
    """
    step = float(x_um[1] - x_um[0]) if x_um.size > 1 else 1.0
    lo, hi = float(x_um[0]) - 0.5 * step, float(x_um[-1]) + 0.5 * step
    return (hi, lo) if backwards else (lo, hi)


def choose_timing(wanted: str, scanner: Any, x_um: np.ndarray, dwell_s: float,
                  source: str, photon_channels: tuple[int, ...]) -> tuple[str, str]:
    """Which timing a map uses, and why: the one decision every path calls.

    Parameters
    ----------
    wanted : {"auto", "hardware", "software"}
        The procedure's ``timing``.
    scanner : Scanner
        The setup's scanner.
    x_um : ndarray
        Pixel-centre x positions of a line, µm.
    dwell_s : float
        Time per pixel, s.
    source : str
        ``"apd"`` (marker tags needed) or ``"camera"`` (camera triggers).
    photon_channels : tuple of int
        The APD inputs (the marker input must be another one).

    Returns
    -------
    timing : str
        ``"hardware"`` or ``"software"``.
    reason : str
        ``"requested"``, ``"auto"`` or why hardware timing is not possible.

    Raises
    ------
    ParameterError
        ``wanted="hardware"`` and hardware timing is not possible (one line, why).
    """
    if wanted == "software":
        return "software", "requested"
    problem = _hardware_problem(scanner, x_um, dwell_s, source, photon_channels)
    if problem is None:
        return "hardware", "requested" if wanted == "hardware" else "auto"
    if wanted == "hardware":
        raise ParameterError(f"timing = hardware refused: {problem}")
    return "software", problem


def _hardware_problem(scanner: Any, x_um: np.ndarray, dwell_s: float, source: str,
                      photon_channels: tuple[int, ...]) -> str | None:
    name = getattr(scanner, "name", "scanner")
    if not hardware_lines(scanner):
        return f"scanner '{name}' has no hardware-timed lines"
    if source == "apd":
        marker = getattr(scanner, "marker_channel", None)
        if marker is None:
            return f"scanner '{name}' has no marker_channel (tagger input of its trigger output)"
        if int(marker) in photon_channels:
            return f"scanner '{name}' marker_channel {marker} is an APD input {photon_channels}"
    start, stop = line_edges_um(x_um)
    allowed = line_refusal(start, stop, int(x_um.size), dwell_s, scanner.limits_um[0])
    if allowed is not None:
        return f"the line sweep x {start:g}–{stop:g} µm: {allowed}"
    refuse = getattr(scanner, "line_refusal", None)
    if callable(refuse):
        allowed = refuse(start, stop, int(x_um.size), dwell_s)
        if allowed is not None:
            return f"scanner '{name}': {allowed}"
    return None


@dataclass(frozen=True)
class MapImage:
    """A finished PL map.

    Attributes
    ----------
    x_um : ndarray, shape (n_x,)
        Pixel-centre x positions in µm (ascending).
    y_um : ndarray, shape (n_y,)
        Pixel-centre y positions in µm (ascending).
    counts : ndarray, shape (n_y, n_x)
        Counts per pixel.
    dwell_s : float
        Dwell time per pixel in s.
    source : str
        ``"apd"`` (sum of both APDs) or ``"camera"`` (integrated counts).
    timing : str
        ``"hardware"`` (lines clocked by the scanner, counts between pixel
        markers) or ``"software"`` (move, settle, count per pixel).
    """

    x_um: np.ndarray
    y_um: np.ndarray
    counts: np.ndarray
    dwell_s: float
    source: str = "apd"
    timing: str = "software"

    @property
    def rate_cps(self) -> np.ndarray:
        """Counts per second per pixel, shape (n_y, n_x)."""
        return self.counts / self.dwell_s


class RasterScan(ProcedureBase):
    """Scan a rectangle pixel by pixel and record the PL intensity.

    Counts per pixel come from the sum of both APDs (``source="apd"``) or from
    the camera's integrated counts (``source="camera"``, an FVB frame per pixel
    with the exposure equal to the dwell, software-timed).

    ``timing``: ``"auto"`` clocks the lines in hardware when the scanner can
    (and its trigger output is wired to a tagger input), else in software;
    ``"hardware"`` refuses (before the run) when it cannot; ``"software"``
    always moves, settles and counts per pixel. See :func:`choose_timing`.
    """

    name: ClassVar[str] = "raster_scan"
    title: ClassVar[str] = "Raster scan (PL map)"

    x_min_um: float = Field(0.0, description="left edge of the region, µm")
    x_max_um: float = Field(20.0, description="right edge of the region, µm")
    y_min_um: float = Field(0.0, description="bottom edge of the region, µm")
    y_max_um: float = Field(20.0, description="top edge of the region, µm")
    step_um: float = Field(0.2, ge=0.01, le=20.0, description="pixel size, µm")
    dwell_s: float = Field(0.005, ge=1e-4, le=10.0, description="dwell time per pixel, s")
    source: Literal["apd", "camera"] = Field("apd", description="what counts the photons")
    bidirectional: bool = Field(False, description="scan every other line backwards")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, % (None: keep)")
    emit_lines: bool = Field(True, description="publish each line (live map, storage)")
    timing: Timing = Field("auto", description="pixel clock: auto (hardware when the scanner "
                           "can), hardware (scanner sweeps, pixel markers) or software")

    @model_validator(mode="after")
    def _region(self) -> RasterScan:
        if self.x_max_um <= self.x_min_um or self.y_max_um <= self.y_min_um:
            raise ValueError("the region needs x_max_um > x_min_um and y_max_um > y_min_um")
        n = self.axes_um()
        if n[0].size * n[1].size > 1_000_000:
            raise ValueError(f"{n[0].size}×{n[1].size} pixels: at most 10⁶ per map")
        return self

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        x, y = limits.axis_bound("x"), limits.axis_bound("y")
        return {"x_min_um": x, "x_max_um": x, "y_min_um": y, "y_max_um": y,
                "power_percent": limits.power_bound()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        # The pixels the scanner visits (the last one may lie up to half a step past
        # x_max_um / y_max_um), and the camera exposure when the camera counts.
        x_um, y_um = self.axes_um()
        for axis, edge, values in (("x", "x_max_um", x_um), ("y", "y_max_um", y_um)):
            last = float(values[-1])
            refuse_outside(prefix + edge, getattr(self, edge), limits.axis_bound(axis),
                           f"the last pixel at {last:g} µm", tested=last)
        if self.source == "camera":
            refuse_outside(prefix + "dwell_s", self.dwell_s, limits.exposure_bound(),
                           "the camera's exposure per pixel")

    def check(self, setup: Any, *, analysis: Any = None) -> None:
        """The limits (see :meth:`ProcedureBase.check`), then the timing (:func:`choose_timing`)."""
        super().check(setup, analysis=analysis)
        self.chosen_timing(setup)

    def chosen_timing(self, setup: Any) -> tuple[str, str]:
        """:func:`choose_timing` for this map on ``setup``.

        A camera-counted map is software-timed (the camera-triggered map is the
        ``hyperspectral`` procedure).
        """
        if self.source == "camera":
            if self.timing == "hardware":
                raise ParameterError("timing = hardware refused: a camera-counted map is "
                                     "software-timed; use the hyperspectral procedure")
            return "software", "requested" if self.timing == "software" else \
                "camera-counted maps are software-timed"
        x_um, _ = self.axes_um()
        return choose_timing(self.timing, setup.scanner, x_um, self.dwell_s, self.source,
                             tuple(setup.apd_channels))

    def axes_um(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre x and y positions in µm."""
        nx = max(1, int(round((self.x_max_um - self.x_min_um) / self.step_um)) + 1)
        ny = max(1, int(round((self.y_max_um - self.y_min_um) / self.step_um)) + 1)
        return (self.x_min_um + self.step_um * np.arange(nx),
                self.y_min_um + self.step_um * np.arange(ny))

    def run(self, ctx: Any) -> MapImage:
        setup = ctx.setup
        x_um, y_um = self.axes_um()
        counts = np.zeros((y_um.size, x_um.size))
        timing, reason = self.chosen_timing(setup)
        marker = int(setup.scanner.marker_channel) if timing == "hardware" else -1
        ctx.emit(MapTiming(timing=timing, reason=reason, marker_channel=marker,
                           dwell_s=self.dwell_s), kind="map_timing")
        dark_sum = 0.0
        if self.source == "apd":
            setup.tagger.start(apd_channels(ctx) + ((marker,) if marker >= 0 else ()))
        else:
            setup.laser.off()
            dark_sum = self._camera_sum(ctx)  # bias + dark, subtracted from every pixel
        laser_on(ctx, self.power_percent)
        z_um = setup.scanner.position_um[2]
        for row, y in enumerate(y_um):
            backwards = self.bidirectional and row % 2 == 1
            order = np.arange(x_um.size)[::-1] if backwards else np.arange(x_um.size)
            line = np.zeros(x_um.size)
            if timing == "hardware":
                line[:] = hardware_line(ctx, x_um, float(y), z_um, self.dwell_s, marker,
                                        backwards)
            for col in order if timing == "software" else ():
                ctx.checkpoint()
                setup.scanner.move_to(float(x_um[col]), float(y), z_um)
                if self.source == "apd":
                    line[col] = count_apds(ctx, self.dwell_s)[0]
                else:
                    line[col] = self._camera_sum(ctx) - dark_sum
            counts[row] = line
            if self.emit_lines:
                ctx.emit(MapLine(line_index=row, y_um=float(y), x_um=x_um.copy(), counts=line,
                                 dwell_s=self.dwell_s, source=self.source), kind="map")
            ctx.progress("raster scan", row + 1, y_um.size)
        if self.source == "apd":
            setup.tagger.stop()
        return MapImage(x_um=x_um, y_um=y_um, counts=counts, dwell_s=self.dwell_s,
                        source=self.source, timing=timing)

    def _camera_sum(self, ctx: Any) -> float:
        camera = ctx.setup.camera
        camera.read_mode = "fvb"
        camera.exposure_s = self.dwell_s
        frame = camera.acquire()
        ctx.guard(frame)
        return float(np.sum(frame.counts, dtype=float))


def run_line(ctx: Any, x_um: np.ndarray, y_um: float, z_um: float, dwell_s: float,
             backwards: bool, on_read: Any, *, end_pulse: bool = True) -> None:
    """Sweep one hardware-timed line; ``on_read()`` is called every ≤ 20 ms of clock time.

    Moves to the start edge, configures and starts the line, then calls
    ``on_read`` (which reads the tagger or the camera) until it returns True
    (everything of the line arrived), sleeping to fixed deadlines so that the
    time the reads take is absorbed in the line's own time.

    Raises
    ------
    InstrumentTimeout
        When ``on_read`` is not satisfied within the line's duration plus 1 s.
    """
    scanner = ctx.setup.scanner
    start, stop = line_edges_um(x_um, backwards)
    ctx.checkpoint()
    scanner.move_to(start, y_um, z_um)
    if end_pulse:
        scanner.configure_line(start, stop, int(x_um.size), dwell_s)
    else:
        scanner.configure_line(start, stop, int(x_um.size), dwell_s, end_pulse=False)
    on_read(first=True)
    clock = ctx.clock
    t0 = clock.now()
    scanner.start_line()
    t_end = t0 + x_um.size * dwell_s + 1e-6  # just past the last pixel boundary
    deadline = t_end + LINE_MARKER_GRACE_S
    while True:
        now = clock.now()
        # sleep to the next fixed deadline: the time the reads take is absorbed
        wake = t0 + (math.floor((now - t0) / LINE_READ_S + 1e-6) + 1) * LINE_READ_S
        if now < t_end - 2 * LINE_TAIL_S and wake > t_end - LINE_TAIL_S:
            wake = t_end - LINE_TAIL_S  # the read after the line's end then has little to do
        wake = min(wake, t_end) if now < t_end else now + LINE_READ_S
        ctx.sleep(max(wake - now, 1e-9))
        if on_read(first=False) and scanner.line_done():
            return
        if clock.now() > deadline:
            raise InstrumentTimeout(
                f"scanner '{scanner.name}': line at y = {y_um:g} µm not complete "
                f"{LINE_MARKER_GRACE_S:g} s after its end (pixel markers or triggers "
                "missing: check the trigger wiring)")


def hardware_line(ctx: Any, x_um: np.ndarray, y_um: float, z_um: float, dwell_s: float,
                  marker_channel: int, backwards: bool = False) -> np.ndarray:
    """Counts per pixel of one hardware-timed line, from the tags between pixel markers.

    Every tagger read goes through the run's guarded tagger (the APD interlock
    sees every tag) and ``ctx.guard``. Returns counts in ascending-x order.

    Raises
    ------
    InstrumentError
        When more markers than pixels + 1 arrive (a wiring or trigger fault).
    """
    tagger = ctx.setup.tagger
    channels = tuple(apd_channels(ctx))
    n = int(x_um.size)
    chunks: list[TagChunk] = []
    seen = [0]

    def read(first: bool) -> bool:
        chunk = tagger.read()
        ctx.guard(chunk)
        if first:  # tags of the move: checked and discarded
            return False
        chunks.append(chunk)
        seen[0] += int(np.count_nonzero(chunk.channel == marker_channel))
        if seen[0] > n + 1:
            raise InstrumentError(f"tagger '{tagger.name}': {seen[0]} pixel markers on channel "
                                  f"{marker_channel} for a line of {n} pixels")
        return seen[0] == n + 1

    run_line(ctx, x_um, y_um, z_um, dwell_s, backwards, read)
    t_ps = np.concatenate([c.t_ps for c in chunks])
    channel = np.concatenate([c.channel for c in chunks])
    counts = counts_between_markers(t_ps, channel, marker_channel, channels, n_pixels=n)
    return counts[::-1].astype(float) if backwards else counts.astype(float)
