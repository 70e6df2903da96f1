"""``hyperspectral``: a spectrum per pixel (FVB) over a region, fitted into maps.

Hardware timing (a :class:`~micropl.drivers.interfaces.LineScanner` and a camera
with an external trigger): the scanner sweeps each line at constant speed and its
trigger output starts one camera exposure at each pixel start; the camera
streams the frames. Software timing: a move, a settle and one exposure per pixel.
:func:`~micropl.acquisition.procedures.raster_scan.choose_timing` decides, as for
the PL map, and a :class:`~micropl.records.scans.MapTiming` record
says which timing was used.

The spectra are stored as a :class:`~micropl.records.scans.SpectralCube`
(photoelectrons, axes x_um, y_um, wavelength_nm; NaN for a pixel whose frame was
lost) and fitted, all pixels in one batch, by
:func:`micropl.analysis.spectral_map.fit_spectral_cube` into peak-energy and
FWHM maps with 1σ errors (a :class:`~micropl.analysis.spectral_map.SpectralMapFit`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from micropl.acquisition.procedures.base import ProcedureBase, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.acquisition.procedures.raster_scan import choose_timing, run_line
from micropl.acquisition.procedures.spectrum import SpectrumAcquisition
from micropl.analysis.spectral_map import SpectralMapFit, fit_spectral_cube
from micropl.analysis.spectrum_preprocess import frame_noise_rms
from micropl.records import MapLine
from micropl.records.scans import MapTiming, SpectralCube

log = logging.getLogger(__name__)

__all__ = ["Hyperspectral", "SpectralMap"]

#: Most pixels of one spectral map (the cube is n_pixels × camera columns × 8 bytes).
MAX_PIXELS = 10_000
#: Time allowed after a line's end for its last frame to arrive, beyond the exposure, s.
FRAME_GRACE_S = 0.1


@dataclass(frozen=True, eq=False)
class SpectralMap:
    """A finished spectral map: the cube, its fit and the timing used."""

    cube: SpectralCube
    fit: SpectralMapFit | None
    timing: MapTiming


class Hyperspectral(ProcedureBase):
    """Take an FVB spectrum at every pixel of a rectangle and fit its line.

    The camera exposes ``exposure_s`` per pixel; a hardware-timed line gives
    each pixel ``dwell_s`` (the exposure plus the camera's readout must fit in
    it, else triggers are missed and those pixels are NaN, counted in
    ``missing_pixels``).
    """

    name: ClassVar[str] = "hyperspectral"
    title: ClassVar[str] = "Spectral map (hyperspectral)"

    x_min_um: float = Field(0.0, description="left edge of the region, µm")
    x_max_um: float = Field(4.0, description="right edge of the region, µm")
    y_min_um: float = Field(0.0, description="bottom edge of the region, µm")
    y_max_um: float = Field(4.0, description="top edge of the region, µm")
    step_um: float = Field(0.5, ge=0.01, le=20.0, description="pixel size, µm")
    exposure_s: float = Field(0.05, ge=1e-4, le=60.0, description="camera exposure per pixel, s")
    dwell_s: float = Field(0.07, ge=1e-4, le=60.0, description="time per pixel of a "
                           "hardware-timed line (exposure + camera readout), s")
    em_gain: int | None = Field(None, ge=1, le=1000, description="EM gain (None: the setup's)")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, % "
                                        "(None: keep)")
    center_wavelength_nm: float | None = Field(None, gt=0, description="spectrograph centre, nm "
                                               "(None: keep)")
    grating: int | None = Field(None, ge=1, description="turret slot (None: keep)")
    timing: Literal["auto", "hardware", "software"] = Field(
        "auto", description="pixel clock: auto (hardware when scanner and camera can), "
        "hardware (scanner triggers the camera per pixel) or software")
    bidirectional: bool = Field(True, description="scan every other line backwards")
    dark_frames: int = Field(3, ge=1, le=100, description="dark frames (laser off) averaged")
    model: Literal["lorentzian", "gaussian", "voigt"] = Field("lorentzian",
                                                              description="line shape fitted")
    fit: bool = Field(True, description="fit each pixel's line (peak energy and FWHM maps)")
    cooldown_timeout_s: float = Field(600.0, gt=0, description="longest wait for the camera "
                                      "to cool for EM gain, s")

    @model_validator(mode="after")
    def _check_fields(self) -> Hyperspectral:
        if self.x_max_um <= self.x_min_um or self.y_max_um <= self.y_min_um:
            raise ValueError("the region needs x_max_um > x_min_um and y_max_um > y_min_um")
        if self.exposure_s > self.dwell_s:
            raise ValueError(f"exposure_s {self.exposure_s:g} s is longer than dwell_s "
                             f"{self.dwell_s:g} s")
        x, y = self.axes_um()
        if x.size * y.size > MAX_PIXELS:
            raise ValueError(f"{x.size}×{y.size} pixels: at most {MAX_PIXELS} per spectral map")
        return self

    def axes_um(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre x and y positions in µm."""
        nx = max(1, int(round((self.x_max_um - self.x_min_um) / self.step_um)) + 1)
        ny = max(1, int(round((self.y_max_um - self.y_min_um) / self.step_um)) + 1)
        return (self.x_min_um + self.step_um * np.arange(nx),
                self.y_min_um + self.step_um * np.arange(ny))

    # ------------------------------------------------------------------ pre-flight
    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        x, y = limits.axis_bound("x"), limits.axis_bound("y")
        bounds = {"x_min_um": x, "x_max_um": x, "y_min_um": y, "y_max_um": y,
                  "power_percent": limits.power_bound(), "exposure_s": limits.exposure_bound()}
        if limits.wavelength_bound() is not None:
            bounds["center_wavelength_nm"] = limits.wavelength_bound()
        return bounds

    def _check_more(self, limits: Limits, prefix: str) -> None:
        x_um, y_um = self.axes_um()
        for axis, edge, values in (("x", "x_max_um", x_um), ("y", "y_max_um", y_um)):
            last = float(values[-1])
            refuse_outside(prefix + edge, getattr(self, edge), limits.axis_bound(axis),
                           f"the last pixel at {last:g} µm", tested=last)
        if self.grating is not None:
            limits.refuse_grating(prefix + "grating", self.grating)
        gain = self.em_gain if self.em_gain is not None else limits.em_gain_default
        if gain is not None:
            limits.refuse_em_gain(prefix + "em_gain", int(gain))

    def check(self, setup: Any, *, analysis: Any = None) -> None:
        """The limits (see :meth:`ProcedureBase.check`), then the timing."""
        super().check(setup, analysis=analysis)
        self.chosen_timing(setup)

    def chosen_timing(self, setup: Any) -> tuple[str, str]:
        """The timing of this map on ``setup`` (:func:`choose_timing` plus the camera's trigger)."""
        x_um, _ = self.axes_um()
        wanted = self.timing
        if wanted != "software" and not hasattr(setup.camera, "trigger_mode"):
            if wanted == "hardware":
                from micropl.acquisition.procedures.preflight import ParameterError

                raise ParameterError(f"timing = hardware refused: camera '{setup.camera.name}' "
                                     "has no external trigger")
            return "software", f"camera '{setup.camera.name}' has no external trigger"
        return choose_timing(wanted, setup.scanner, x_um, self.dwell_s, "camera",
                             tuple(setup.apd_channels))

    # ------------------------------------------------------------------ run
    def run(self, ctx: Any) -> SpectralMap:
        setup = ctx.setup
        camera, spectrograph = setup.camera, setup.spectrograph
        x_um, y_um = self.axes_um()
        timing, reason = self.chosen_timing(setup)
        record = MapTiming(timing=timing, reason=reason, marker_channel=-1, dwell_s=self.dwell_s)
        ctx.emit(record, kind="map_timing")
        if self.grating is not None and spectrograph.grating != self.grating:
            spectrograph.grating = self.grating
        if self.center_wavelength_nm is not None:
            spectrograph.center_wavelength_nm = self.center_wavelength_nm
        camera.read_mode = "fvb"
        camera.exposure_s = self.exposure_s
        gain = int(self.em_gain or getattr(setup.config.camera, "em_gain", None)
                   or camera.em_gain)
        if gain > 1:
            SpectrumAcquisition(cooldown_timeout_s=self.cooldown_timeout_s)._wait_until_cold(ctx)
        camera.em_gain = gain
        wavelength_nm = spectrograph.wavelength_axis_nm(int(camera.sensor_shape[1]),
                                                        camera.pixel_um)
        e_per_count = camera.e_per_adu / gain
        dark_adu, read_noise_e = self._dark(ctx, e_per_count)
        cube = np.full((y_um.size, x_um.size, wavelength_nm.size), np.nan)
        laser_on(ctx, self.power_percent)
        z_um = setup.scanner.position_um[2]
        if timing == "hardware":
            camera.trigger_mode = "external"
            camera.start_stream()
        try:
            for row, y in enumerate(y_um):
                backwards = self.bidirectional and row % 2 == 1
                if timing == "hardware":
                    frames = self._hardware_line(ctx, x_um, float(y), z_um, row, backwards)
                else:
                    frames = self._software_line(ctx, x_um, float(y), z_um, backwards)
                for col, frame in frames.items():
                    cube[row, col] = (np.asarray(frame.counts, float) - dark_adu) * e_per_count
                line = np.nansum(cube[row], axis=1)
                line[np.isnan(cube[row]).all(axis=1)] = np.nan
                ctx.emit(MapLine(line_index=row, y_um=float(y), x_um=x_um.copy(), counts=line,
                                 dwell_s=self.exposure_s, source="camera"), kind="map")
                ctx.progress("spectral map", row + 1, y_um.size)
        finally:
            if timing == "hardware":
                camera.stop()
                camera.trigger_mode = "internal"
        missing = int(np.isnan(cube).all(axis=2).sum())
        if missing:
            ctx.log.warning("spectral map: %d of %d pixels without a frame (missed triggers: "
                            "make dwell_s longer than the exposure plus the readout)",
                            missing, x_um.size * y_um.size)
        spectral = SpectralCube(x_um=x_um, y_um=y_um, wavelength_nm=wavelength_nm, counts=cube,
                                exposure_s=self.exposure_s, dwell_s=self.dwell_s, em_gain=gain,
                                read_noise=read_noise_e, timing=timing, missing_pixels=missing)
        ctx.emit(spectral, kind="spectral_cube")
        fit = None
        if self.fit:
            ctx.progress("fitting the spectral map")
            fit = fit_spectral_cube(x_um, y_um, wavelength_nm, cube, model=self.model,
                                    noise_factor=2.0 if gain > 1 else 1.0,
                                    read_noise=read_noise_e)
            ctx.emit(fit, kind="spectral_map_fit")
        return SpectralMap(cube=spectral, fit=fit, timing=record)

    def _dark(self, ctx: Any, e_per_count: float) -> tuple[np.ndarray, float]:
        """Mean dark frame (laser off), ADU, and the signal-independent noise of one
        dark-subtracted pixel spectrum, photoelectrons rms."""
        setup = ctx.setup
        setup.laser.off()
        frames = []
        for _ in range(self.dark_frames):
            ctx.checkpoint()
            frame = setup.camera.acquire()
            ctx.guard(frame)
            frames.append(np.asarray(frame.counts, float))
        stack = np.asarray(frames)
        if len(frames) >= 2:
            noise = frame_noise_rms(stack)
        else:
            noise = float(np.std(stack[0] - np.median(stack[0])))
        # one frame's noise and that of the mean dark, in quadrature
        noise_e = noise * e_per_count * float(np.sqrt(1.0 + 1.0 / len(frames)))
        return stack.mean(axis=0), noise_e

    def _software_line(self, ctx: Any, x_um: np.ndarray, y_um: float, z_um: float,
                       backwards: bool) -> dict[int, Any]:
        order = np.arange(x_um.size)[::-1] if backwards else np.arange(x_um.size)
        frames = {}
        for col in order:
            ctx.checkpoint()
            ctx.setup.scanner.move_to(float(x_um[col]), y_um, z_um)
            frame = ctx.setup.camera.acquire()
            ctx.guard(frame)
            frames[int(col)] = frame
        return frames

    def _hardware_line(self, ctx: Any, x_um: np.ndarray, y_um: float, z_um: float, row: int,
                       backwards: bool) -> dict[int, Any]:
        """Frames of one line triggered by the scanner, by column (missing ones absent)."""
        camera, scanner, clock = ctx.setup.camera, ctx.setup.scanner, ctx.clock
        n = int(x_um.size)
        first_index = row * n
        frames: dict[int, Any] = {}
        done_at: list[float] = []

        def read(first: bool) -> bool:
            for frame in camera.read_frames():
                ctx.guard(frame)
                k = int(frame.index) - first_index
                if not 0 <= k < n:
                    log.warning("camera '%s': frame %d outside line %d, dropped", camera.name,
                                frame.index, row)
                    continue
                frames[n - 1 - k if backwards else k] = frame
            if first:
                return False
            if len(frames) == n:
                return True
            if scanner.line_done():
                done_at.append(clock.now())
                return clock.now() - done_at[0] >= self.exposure_s + FRAME_GRACE_S
            return False

        run_line(ctx, x_um, y_um, z_um, self.dwell_s, backwards, read, end_pulse=False)
        return frames
