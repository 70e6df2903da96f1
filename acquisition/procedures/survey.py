"""``survey``: find single QDs in a PL map and measure each one's spectrum and g².

``raster_scan`` → spot finding → a film reference → for each QD (``refocus`` →
``spectrum`` → ``g2``) → statistics. A QD whose measurement fails is recorded
as failed with the reason, and the survey goes on. Every few QDs the drift is
measured by re-imaging a reference area and cross-correlating it with the first
image.

The film reference is the laser-on spectrum of the bare polystyrene film at
the darkest place of the map. The film's broad emission band lies under the QD
lines; the laser-off background frame cannot remove it, and a constant
background in the fit cannot follow its curvature, which widens the fitted
FWHM (by ≈0.9 meV, 1.5σ, on the simulated sample). It is subtracted from every
QD spectrum, and stored (kinds ``film_raw``, ``film_frame``,
``film_accumulated``) with the survey's run.

Each completed QD gets a :class:`~micropl.records.QDFlags` record
before its status: ``multiple_emitters`` when its g²(0) is not below 0.5 by 2σ
or its spectrum holds two resolved lines, ``poor_fit``/``saturated`` from the
spectrum fit (:mod:`micropl.analysis.emitters` decides). On a simulated setup a
:class:`~micropl.records.QDTruth` record follows: what the simulated
emitters gave during the QD's exposures and g² acquisition, as the world computes
it (:meth:`~micropl.simulators.world.SimulatedWorld.measured_truth`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from micropl.acquisition.context import Aborted, RunContext
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.procedures.g2 import G2
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.acquisition.procedures.raster_scan import MapImage, RasterScan
from micropl.acquisition.procedures.refocus import Refocus
from micropl.acquisition.procedures.spectrum import SpectrumAcquisition, SpectrumOutcome
from micropl.acquisition.results import spectrum_noise
from micropl.analysis.emitters import (
    SINGLE_G2_THRESHOLD,
    SINGLE_N_SIGMA,
    TwoLineTest,
    choose_g2,
    is_single_emitter,
    qd_flags,
    two_line_test,
)
from micropl.analysis.g2 import G2Result
from micropl.analysis.maps import emptiest_position_um, find_spots, register_shift_um
from micropl.errors import InstrumentError, UserError
from micropl.records import QDFlags, QDStatus, QDTarget, QDTruth, Spectrum


class Target(BaseModel):
    """A QD to measure (used to resume a survey without re-scanning)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    qd_id: int = Field(ge=0)
    x_um: float
    y_um: float
    amplitude: float = 0.0
    snr: float = 0.0


class Survey(ProcedureBase):
    """Automated single-QD survey with per-QD spectrum and g²."""

    name: ClassVar[str] = "survey"
    title: ClassVar[str] = "Survey of single QDs"

    scan: RasterScan = Field(default_factory=lambda: RasterScan(
        x_min_um=0.0, x_max_um=40.0, y_min_um=0.0, y_max_um=40.0, step_um=0.2, dwell_s=0.005))
    max_qds: int = Field(30, ge=1, le=10_000, description="largest number of QDs measured")
    isolated_only: bool = Field(True, description="skip spots with a neighbour within the PSF")
    min_snr: float = Field(8.0, ge=1, description="spot amplitude / map noise needed")
    min_rate_cps: float = Field(0.0, ge=0, description="dimmest spot accepted, counts/s")
    max_rate_cps: float = Field(2.5e5, gt=0, description="brightest spot accepted (both APDs), "
                                "counts/s; brighter spots are aggregates")
    psf_fwhm_um: float = Field(0.6, gt=0, le=5, description="expected spot FWHM, µm")
    refocus: Refocus = Field(default_factory=Refocus)
    spectrum: SpectrumAcquisition = Field(default_factory=SpectrumAcquisition)
    g2: G2 = Field(default_factory=G2)
    film_reference: bool = Field(True, description="subtract a laser-on spectrum of the bare "
                                 "film, taken at the darkest place of the map, from every QD "
                                 "spectrum")
    film_accumulations: int = Field(10, ge=1, le=1000, description="frames summed for the "
                                    "film reference (more: less noise added to each QD)")
    film_radius_um: float = Field(1.5, gt=0, le=10, description="radius of the emitter-free "
                                  "disc the film reference is taken in, µm")
    drift_every_n_qds: int = Field(10, ge=0, description="re-image the reference area every "
                                   "N QDs (0: never)")
    drift_area_um: float = Field(6.0, ge=1, le=40, description="side of the reference area, µm")
    max_attempts: int = Field(2, ge=1, le=5, description="tries per QD on instrument errors")
    retry_delay_s: float = Field(2.0, ge=0, le=600, description="clock time waited before "
                                 "a retry, so a briefly disconnected instrument can come back, s")
    targets: list[Target] | None = Field(None, description="QDs to measure instead of scanning "
                                         "(resume)")

    _film: Spectrum | None = PrivateAttr(None)
    _map: MapImage | None = PrivateAttr(None)
    _announce: frozenset[int] = PrivateAttr(frozenset())

    @model_validator(mode="after")
    def _film_needs_photoelectrons(self) -> Survey:
        if self.film_reference and not self.spectrum.background:
            raise ValueError("film_reference needs spectrum.background: true (the film is "
                             "subtracted in photoelectrons); or set film_reference: false")
        return self

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        bounds: dict[str, Bound] = {}
        for field, nested in (("scan", RasterScan), ("refocus", Refocus),
                              ("spectrum", SpectrumAcquisition), ("g2", G2)):
            bounds.update({f"{field}.{k}": v for k, v in nested.field_bounds(limits).items()})
        return bounds

    def _check_more(self, limits: Limits, prefix: str) -> None:
        # Everything the survey will do, before it scans: the map (or the resumed
        # targets), then per QD refocus, spectrum and g²; the film reference is a
        # spectrum with the same settings, the drift area a part of the map.
        if self.targets is None:
            self.scan.check_limits(limits, prefix + "scan.")
        else:
            for i, target in enumerate(self.targets):
                for axis in ("x", "y"):
                    refuse_outside(f"{prefix}targets[{i}].{axis}_um",
                                   getattr(target, f"{axis}_um"), limits.axis_bound(axis))
            if self.scan.power_percent is not None and self.drift_every_n_qds:
                refuse_outside(prefix + "scan.power_percent", self.scan.power_percent,
                               limits.power_bound())
        self.refocus.check_limits(limits, prefix + "refocus.")
        self.spectrum.check_limits(limits, prefix + "spectrum.")
        self.g2.check_limits(limits, prefix + "g2.")

    def reusing_film(self, film: Spectrum | None) -> Survey:
        """This survey, subtracting ``film`` (a stored film reference) instead of taking one:
        a resumed survey has no map to choose the place from."""
        survey = self.model_copy()
        survey._film = film
        return survey

    def resuming(self, *, film: Spectrum | None, image: MapImage | None = None,
                 announce: Iterable[int] = ()) -> Survey:
        """This survey continuing a stored one (``targets`` are the QDs left to measure).

        Parameters
        ----------
        film : Spectrum or None
            The stored film reference, subtracted instead of taking a new one.
        image : MapImage, optional
            The stored PL map: when no film reference was stored, it is taken
            at the darkest place of this map (as the original survey would have).
        announce : iterable of int
            QD numbers whose :class:`QDTarget` record was not stored before the
            interruption; this run stores it before measuring them.
        """
        survey = self.reusing_film(film)
        survey._map = image
        survey._announce = frozenset(int(i) for i in announce)
        return survey

    def select(self, spots: Any) -> list[Target]:
        """The QDs to measure among the ``spots`` found in the map, numbered from 0.

        Deterministic: a resume recomputes the same list from the stored spot list.
        """
        rate = np.asarray(spots.amplitude) / self.scan.dwell_s
        keep = (rate >= self.min_rate_cps) & (rate <= self.max_rate_cps) & \
            ~np.asarray(spots.at_edge, dtype=bool)
        if self.isolated_only:
            keep &= np.asarray(spots.isolated, dtype=bool)
        index = np.flatnonzero(keep)[: self.max_qds]
        return [Target(qd_id=qd_id, x_um=float(spots.x_um[k]), y_um=float(spots.y_um[k]),
                       amplitude=float(spots.amplitude[k]), snr=float(spots.snr[k]))
                for qd_id, k in enumerate(index)]

    def run(self, ctx: RunContext) -> dict[str, Any]:
        image = None
        if self.targets is not None:
            targets = list(self.targets)
            image = self._map
            for target in targets:
                if target.qd_id in self._announce:
                    self._announce_target(ctx, target)
        else:
            targets, image = self._find(ctx)
        film = self._film
        if self.film_reference and film is None:
            if image is None:
                ctx.log.warning("no map and no stored film reference: the QD spectra keep "
                                "the film's background")
            else:
                film = self._film_reference(ctx, image)
        drift = np.zeros(2)
        reference = self._reference(ctx, targets) if self.drift_every_n_qds else None
        done, failed = 0, 0
        for i, target in enumerate(targets):
            ctx.checkpoint()
            if reference is not None and i > 0 and i % self.drift_every_n_qds == 0:
                drift = self._drift(ctx, reference)
            qctx = ctx.scoped(qd_id=target.qd_id)
            ctx.progress(f"QD {i + 1}/{len(targets)}", i, len(targets))
            reason = self._measure(qctx, target, drift, film)
            self._record(ctx, target, reason)
            done += reason is None
            failed += reason is not None
        ctx.progress("survey", len(targets), len(targets))
        return {"n_targets": len(targets), "n_completed": done, "n_failed": failed,
                "drift_um": drift.tolist()}

    # ------------------------------------------------------------------ steps
    def _find(self, ctx: RunContext) -> tuple[list[Target], MapImage]:
        image: MapImage = self.scan.run(ctx)
        spots = find_spots(image.counts, image.x_um, image.y_um, psf_fwhm_um=self.psf_fwhm_um,
                           snr_min=self.min_snr)
        # Stored before the QD targets (one row): a resume rebuilds the selection from it.
        ctx.emit(spots, kind="spots")
        targets = self.select(spots)
        ctx.log.info("map: %d spots, %d selected", len(spots), len(targets))
        for target in targets:
            self._announce_target(ctx, target)
        return targets, image

    @staticmethod
    def _announce_target(ctx: RunContext, target: Target) -> None:
        ctx.emit(QDTarget(run_id=ctx.run_id, qd_id=target.qd_id, x_um=target.x_um,
                          y_um=target.y_um, amplitude=target.amplitude, snr=target.snr))

    def _film_reference(self, ctx: RunContext, image: MapImage) -> Spectrum:
        """Take the film reference at the darkest place of the map (retried like a QD)."""
        x, y = emptiest_position_um(image.counts, image.x_um, image.y_um,
                                    radius_um=self.film_radius_um)
        ctx.log.info("film reference at (%.2f, %.2f) µm", x, y)
        acquisition = self.spectrum.model_copy(update={"accumulations": self.film_accumulations})

        def take() -> Spectrum:
            ctx.setup.scanner.move_to(x, y)
            return acquisition.run(ctx, label="film_")

        for attempt in range(1, self.max_attempts):
            try:
                return take()
            except InstrumentError as exc:
                ctx.log.warning("film reference attempt %d/%d failed: %s", attempt,
                                self.max_attempts, exc)
                ctx.sleep(self.retry_delay_s)
        return take()  # the last attempt: its error ends the survey

    def _measure(self, ctx: RunContext, target: Target, drift_um: np.ndarray,
                 film: Spectrum | None) -> str | None:
        """Measure one QD; None when completed, else the reason it failed."""
        x, y = target.x_um + drift_um[0], target.y_um + drift_um[1]
        last = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                ctx.setup.scanner.move_to(x, y)
                self.refocus.model_copy(update={"x_um": x, "y_um": y}).run(ctx)
                measured = self.spectrum.acquire(ctx, film=film)
                g2_start_s = ctx.clock.now()
                g2 = self.g2.run(ctx)  # raises when g²(0) could not be computed
                g2_window_s = (g2_start_s, ctx.clock.now())
                problem = measured.problem()
            except Aborted:
                raise
            except (InstrumentError, UserError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}" if not isinstance(exc, InstrumentError) \
                    else str(exc)
                ctx.log.warning("QD %d attempt %d/%d failed: %s", target.qd_id, attempt,
                                self.max_attempts, last)
                if attempt < self.max_attempts:
                    ctx.sleep(self.retry_delay_s)
                continue
            if problem is None:
                self._assess(ctx, target, measured, g2)
                self._truth(ctx, target, measured.exposures_s, g2_window_s, g2)
            return problem
        if last.startswith(f"laser '{ctx.setup.laser.name}'"):
            # The laser itself kept failing: make sure it can still be switched off. If
            # not, the survey stops (this QD is recorded as failed, the run fails, the
            # remaining QDs stay pending for --resume).
            try:
                self._laser_off(ctx)
            except InstrumentError as off_error:
                self._record(ctx, target, f"{last}; then {off_error}")
                raise
        return last

    def _laser_off(self, ctx: RunContext) -> None:
        """Switch the laser off, trying again once after ``retry_delay_s``."""
        try:
            ctx.setup.laser.off()
        except InstrumentError as exc:
            ctx.log.error("laser off failed, trying again in %g s: %s", self.retry_delay_s, exc)
            ctx.sleep(self.retry_delay_s)
            ctx.setup.laser.off()

    @staticmethod
    def _record(ctx: RunContext, target: Target, reason: str | None) -> None:
        """Store the QD's status: completed (``reason`` None) or failed with the reason."""
        ctx.emit(QDStatus(run_id=ctx.run_id, qd_id=target.qd_id,
                          status="completed" if reason is None else "failed",
                          reason=reason or "", t_s=time.time()))

    def _assess(self, ctx: RunContext, target: Target, measured: SpectrumOutcome,
                g2: G2Result | None) -> None:
        """Store the QD's flags (:mod:`micropl.analysis.emitters` decides) from the
        stages' own results: the spectrum's fit and g²(0)."""
        spectrum, fit = measured.spectrum, measured.fit
        choice = None if g2 is None else choose_g2(g2.g2_0, g2.g2_0_err, g2.g2_0_bgcorr,
                                                   g2.g2_0_bgcorr_err)
        lines = self._two_line_test(ctx, spectrum)
        flags = qd_flags(choice, two_line=lines, fit=fit)
        detail = [f"spectrum: {lines.reason}" if lines is not None else "spectrum: not tested"]
        if choice is not None:
            single = is_single_emitter(choice.value, choice.err)
            detail.insert(0, f"g²(0) ({choice.source}) = {choice.value:.3f} ± {choice.err:.3f}"
                             f"{'' if single else ' not'} below {SINGLE_G2_THRESHOLD:g} by "
                             f"{SINGLE_N_SIGMA:g}σ")
        if flags:
            ctx.log.info("QD %d: %s (%s)", target.qd_id, ", ".join(flags), "; ".join(detail))
        ctx.emit(QDFlags(flags=",".join(flags), detail="; ".join(detail), t_s=time.time()))

    @staticmethod
    def _two_line_test(ctx: RunContext, spectrum: Spectrum) -> TwoLineTest | None:
        """One line or two resolved lines in the accumulated spectrum (None: not testable)."""
        try:
            return two_line_test(spectrum.wavelength_nm, spectrum.counts,
                                 model=ctx.analysis.spectrum_model, **spectrum_noise(spectrum))
        except UserError as exc:
            ctx.log.warning("two-line test not made: %s", exc)
            return None

    @staticmethod
    def _truth(ctx: RunContext, target: Target, exposures_s: list[tuple[float, float]],
               g2_window_s: tuple[float, float], g2: G2Result | None) -> None:
        """Simulated setups: store what the simulated emitters gave during this QD's
        measurement (the world computes it; nothing for a real setup)."""
        world = getattr(ctx.setup, "world", None)
        if world is None:
            return
        dark = getattr(getattr(ctx.setup.config, "tagger", None), "dark_cps", (0.0, 0.0))
        truth = world.measured_truth(
            exposures_s, g2_window_s, dark_cps_per_apd=tuple(float(v) for v in dark),
            window_fraction=float(getattr(g2, "window_fraction", 1.0) or 1.0))
        if truth is None:
            ctx.log.warning("QD %d: no truth (nothing excited at the focus)", target.qd_id)
            return
        ctx.emit(QDTruth(t_s=time.time(), **truth))

    # ------------------------------------------------------------------ drift
    def _reference(self, ctx: RunContext, targets: list[Target]) -> tuple[RasterScan, MapImage] | None:
        if not targets:
            return None
        scan = self.drift_scan(ctx.setup.scanner.limits_um, targets[0])
        return scan, scan.run(ctx)

    def drift_scan(self, limits_um: Any, target: Target) -> RasterScan:
        """The reference-area scan around ``target``: the map's settings on a square of
        ``drift_area_um`` cut to the travel, and to whole steps so that its last pixel
        stays inside it too."""
        half = self.drift_area_um / 2
        step = self.scan.step_um
        region = {}
        for axis, centre, (low, high) in (("x", target.x_um, limits_um[0]),
                                          ("y", target.y_um, limits_um[1])):
            start = min(max(low, centre - half), high)
            stop = min(high, centre + half)
            steps = int(np.floor(max(stop - start, 0.0) / step + 1e-9))
            while steps > 0 and start + step * steps > high:  # rounding at the edge
                steps -= 1
            region[f"{axis}_min_um"] = start
            region[f"{axis}_max_um"] = start + step * steps
        return self.scan.model_copy(update={**region, "emit_lines": False})

    def _drift(self, ctx: RunContext, reference: tuple[RasterScan, MapImage]) -> np.ndarray:
        scan, first = reference
        again = scan.run(ctx)
        shift = register_shift_um(first.counts, again.counts, scan.step_um)
        ctx.log.info("drift since the start: (%.3f, %.3f) µm", shift.dx_um, shift.dy_um)
        return np.array([shift.dx_um, shift.dy_um])
