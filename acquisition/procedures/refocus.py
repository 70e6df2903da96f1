"""``refocus``: centre the laser spot on a QD with a small scan and a 2D Gaussian fit.

It moves only when the fit is sane: the centre inside the scanned window, the
amplitude well above the noise, and the step below a limit. Otherwise it stays
put and says why (unlike optimisers that can jump outside their window).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, count_apds, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.analysis.maps import fit_gaussian_2d
from micropl.records import RefocusResult


class Refocus(ProcedureBase):
    """Small x/y (optionally z) scan around a position, fitted with a 2D Gaussian."""

    name: ClassVar[str] = "refocus"
    title: ClassVar[str] = "Refocus on a QD"

    x_um: float | None = Field(None, description="centre of the window, µm (None: current)")
    y_um: float | None = Field(None, description="centre of the window, µm (None: current)")
    size_um: float = Field(1.6, ge=0.4, le=10.0, description="window side, µm")
    step_um: float = Field(0.1, ge=0.02, le=1.0, description="pixel size, µm")
    dwell_s: float = Field(0.005, ge=1e-4, le=1.0, description="dwell per pixel, s")
    max_step_um: float = Field(0.6, gt=0, le=5.0, description="largest move allowed, µm")
    min_snr: float = Field(5.0, ge=1.0, description="amplitude / noise needed to move")
    z_scan: bool = Field(False, description="also optimise the focus height")
    z_range_um: float = Field(1.0, gt=0, le=10.0, description="z scan range, µm")
    z_step_um: float = Field(0.2, gt=0, le=2.0, description="z step, µm")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, %")

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        return {"x_um": limits.axis_bound("x"), "y_um": limits.axis_bound("y"),
                "power_percent": limits.power_bound()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        # The window is clipped to the travel (a clipped window stays put, see _decide);
        # the focus scan must fit in the z travel around the current height.
        if not self.z_scan:
            return
        bound = limits.axis_bound("z")
        if limits.position_um is None:
            refuse_outside(prefix + "z_range_um", self.z_range_um,
                           Bound(0.0, bound.high - bound.low, "µm", bound.source + " travel"))
            return
        z0 = limits.position_um[2]
        half = self.z_range_um / 2
        for end in (z0 - half, z0 + half):
            refuse_outside(prefix + "z_range_um", self.z_range_um, bound,
                           f"focus scan {z0 - half:g}–{z0 + half:g} µm around z = {z0:g} µm",
                           tested=end)

    def run(self, ctx: RunContext) -> RefocusResult:
        scanner = ctx.setup.scanner
        x0, y0, z0 = scanner.position_um
        cx = x0 if self.x_um is None else self.x_um
        cy = y0 if self.y_um is None else self.y_um
        (xlo, xhi), (ylo, yhi), _ = scanner.limits_um
        n = int(round(self.size_um / self.step_um)) + 1
        offsets = (np.arange(n) - (n - 1) / 2) * self.step_um
        x_um = np.clip(cx + offsets, xlo, xhi)
        y_um = np.clip(cy + offsets, ylo, yhi)
        ctx.setup.tagger.start(apd_channels(ctx))
        laser_on(ctx, self.power_percent)
        z = z0
        if self.z_scan:
            z = self._best_z(ctx, cx, cy, z0)
        image = np.zeros((n, n))
        for row, y in enumerate(y_um):
            for col, x in enumerate(x_um):
                ctx.checkpoint()
                scanner.move_to(float(x), float(y), z)
                image[row, col] = count_apds(ctx, self.dwell_s)[0]
        fit = fit_gaussian_2d(image, x_um, y_um) if np.unique(x_um).size == n and \
            np.unique(y_um).size == n else None
        result = self._decide(fit, cx, cy, z)
        # Its tags were read (and checked) up to here; a tagger left streaming unread
        # through the next stage would be tags the over-rate check never sees.
        ctx.setup.tagger.stop()
        scanner.move_to(result.x_um, result.y_um, z)
        ctx.emit(result, kind="refocus")
        if not result.moved:
            ctx.log.warning("refocus at (%.2f, %.2f) µm stayed put: %s", cx, cy, result.reason)
        return result

    def _decide(self, fit: Any, cx: float, cy: float, z: float) -> RefocusResult:
        def stay(reason: str, fit: Any = None) -> RefocusResult:
            return RefocusResult(cx, cy, 0.0, 0.0, np.nan, np.nan, z,
                                 np.nan if fit is None else fit.amplitude / self.dwell_s,
                                 np.nan if fit is None else (fit.fwhm_x_um + fit.fwhm_y_um) / 2,
                                 False, reason)

        if fit is None:
            return stay("window clipped by the scanner limits")
        if not fit.success:
            return stay(f"fit failed: {fit.reason}", fit)
        half = self.size_um / 2
        dx, dy = fit.x0_um - cx, fit.y0_um - cy
        if abs(dx) > half or abs(dy) > half:
            return stay(f"fitted centre ({fit.x0_um:.2f}, {fit.y0_um:.2f}) µm is outside the "
                        "window", fit)
        noise = np.sqrt(max(fit.offset, 1.0))
        if fit.amplitude < self.min_snr * noise:
            return stay(f"amplitude {fit.amplitude:.0f} counts is below {self.min_snr:g}× the "
                        f"noise ({noise:.1f} counts)", fit)
        step = float(np.hypot(dx, dy))
        if step > self.max_step_um:
            return stay(f"step {step:.2f} µm exceeds the limit {self.max_step_um:g} µm", fit)
        return RefocusResult(float(fit.x0_um), float(fit.y0_um), float(dx), float(dy),
                             float(fit.x0_err_um), float(fit.y0_err_um), z,
                             float(fit.amplitude / self.dwell_s),
                             float((fit.fwhm_x_um + fit.fwhm_y_um) / 2), True, "ok")

    def _best_z(self, ctx: RunContext, x: float, y: float, z0: float) -> float:
        scanner = ctx.setup.scanner
        _, _, (zlo, zhi) = scanner.limits_um
        zs = np.clip(z0 + np.arange(-self.z_range_um / 2, self.z_range_um / 2 + 1e-9,
                                    self.z_step_um), zlo, zhi)
        counts = []
        for z in zs:
            ctx.checkpoint()
            scanner.move_to(x, y, float(z))
            counts.append(count_apds(ctx, 4 * self.dwell_s)[0])
        counts = np.asarray(counts, float)
        best = int(np.argmax(counts))
        if 0 < best < zs.size - 1:  # parabola through the maximum and its neighbours
            c0, c1, c2 = counts[best - 1:best + 2]
            denom = c0 - 2 * c1 + c2
            if denom < 0:
                shift = 0.5 * (c0 - c2) / denom
                return float(np.clip(zs[best] + shift * self.z_step_um, zlo, zhi))
        return float(zs[best])
