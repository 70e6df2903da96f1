"""``raster_scan``: a PL map of a region, line by line, live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, count_apds, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.drivers.interfaces import MapLine


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
    """

    x_um: np.ndarray
    y_um: np.ndarray
    counts: np.ndarray
    dwell_s: float
    source: str = "apd"

    @property
    def rate_cps(self) -> np.ndarray:
        """Counts per second per pixel, shape (n_y, n_x)."""
        return self.counts / self.dwell_s


class RasterScan(ProcedureBase):
    """Scan a rectangle pixel by pixel and record the PL intensity.

    Counts per pixel come from the sum of both APDs (``source="apd"``) or from
    the camera's integrated counts (``source="camera"``, an FVB frame per pixel
    with the exposure equal to the dwell).
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
        dark_sum = 0.0
        if self.source == "apd":
            setup.tagger.start(apd_channels(ctx))
        else:
            setup.laser.off()
            dark_sum = self._camera_sum(ctx)  # bias + dark, subtracted from every pixel
        laser_on(ctx, self.power_percent)
        z_um = setup.scanner.position_um[2]
        for row, y in enumerate(y_um):
            backwards = self.bidirectional and row % 2 == 1
            order = np.arange(x_um.size)[::-1] if backwards else np.arange(x_um.size)
            line = np.zeros(x_um.size)
            for col in order:
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
                        source=self.source)

    def _camera_sum(self, ctx: Any) -> float:
        camera = ctx.setup.camera
        camera.read_mode = "fvb"
        camera.exposure_s = self.dwell_s
        frame = camera.acquire()
        ctx.guard(frame)
        return float(np.sum(frame.counts, dtype=float))
