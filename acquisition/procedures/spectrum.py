"""``spectrum``: a QD spectrum with background frame, cosmic-ray removal and its own fits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import Field
from scipy.ndimage import median_filter

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.acquisition.results import fit_spectrum_records
from micropl.analysis.spectra import SpectrumFit
from micropl.analysis.spectrum_preprocess import (
    frame_noise_rms,
    remove_cosmic_rays_spatial,
    remove_cosmic_rays_temporal,
)
from micropl.errors import AnalysisInputError, InstrumentTimeout, UserError
from micropl.records import Spectrum

#: ADC ceiling of a camera that does not state one (``adc_max_adu``): 16 bits, ADU.
ADC_MAX_ADU_16BIT = 65535


def saturated_pixel_count(camera: object, raw_counts: np.ndarray) -> int:
    """Raw pixels of a frame at the camera's ADC ceiling (``camera.adc_max_adu``, else
    16 bits)."""
    ceiling = getattr(camera, "adc_max_adu", ADC_MAX_ADU_16BIT)
    return int(np.count_nonzero(np.asarray(raw_counts) >= ceiling))


@dataclass(frozen=True)
class SpectrumOutcome:
    """What a spectrum acquisition produced.

    Attributes
    ----------
    spectrum : Spectrum
        The accumulated spectrum (e⁻ or ADU per pixel, wavelengths in nm).
    fit : SpectrumFit or None
        Its line fit (emitted with kind ``accumulated``); None when not fitted.
    fit_error : str
        Why there is no fit ("" when there is one).
    exposures_s : list of (float, float)
        Clock-time start and end of each raw frame's exposure, s.
    """

    spectrum: Spectrum
    fit: SpectrumFit | None
    fit_error: str
    exposures_s: list[tuple[float, float]]

    def problem(self) -> str | None:
        """Why the accumulated spectrum's fit failed (one line), or None when it succeeded."""
        fit = self.fit
        if fit is not None and bool(np.all(fit.success)):
            return None
        if fit is None:
            message = f"no fit: {self.fit_error}" if self.fit_error else "no fit"
        else:
            message = str(np.asarray(fit.message).ravel()[0])
        return f"spectrum fit failed: {message}"


class SpectrumAcquisition(ProcedureBase):
    """Acquire ``accumulations`` FVB frames at the current position.

    Each frame is published raw (ADU) and as a processed :class:`Spectrum` in
    detected photoelectrons (background frame subtracted, divided by the EM
    gain, cosmic rays removed), followed by its fit. The accumulated spectrum
    (temporal cosmic-ray removal, then the sum) and its fit end the stage.

    Given a ``film`` spectrum (the laser-on spectrum of the bare film next to
    the QD, see :class:`~micropl.acquisition.procedures.survey.Survey`), its
    share per frame is subtracted too, and its noise added to the spectra's
    signal-independent noise.
    """

    name: ClassVar[str] = "spectrum"
    title: ClassVar[str] = "Spectrum"

    center_wavelength_nm: float | None = Field(
        None, ge=0, le=1400, description="spectrograph centre wavelength, nm (None: keep)")
    grating: int | None = Field(None, ge=1, le=8, description="turret slot (None: keep)")
    exposure_s: float = Field(1.0, ge=1e-4, le=3600, description="exposure per frame, s")
    accumulations: int = Field(5, ge=1, le=10_000, description="frames summed")
    em_gain: int | None = Field(None, ge=1, le=1000,
                                description="EM gain (None: the setup file's camera.em_gain)")
    background: bool = Field(True, description="take a background frame with the laser off")
    background_frames: int = Field(2, ge=1, le=100, description="frames averaged for it")
    remove_cosmics: bool = Field(True, description="remove cosmic-ray spikes")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, %")
    cooldown_timeout_s: float = Field(900.0, gt=0, description="longest wait for the camera "
                                      "to cool before EM gain is applied, s")

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        bounds = {"exposure_s": limits.exposure_bound(), "em_gain": limits.em_gain_bound(),
                  "power_percent": limits.power_bound(), "grating": limits.grating_bound()}
        centre = limits.wavelength_bound()
        if centre is not None:  # of the grating in place; the check uses the one chosen
            bounds["center_wavelength_nm"] = centre
        return bounds

    def check_limits(self, limits: Limits, prefix: str | None = None) -> None:
        prefix = f"{self.name}: " if prefix is None else prefix
        if self.grating is not None:
            limits.refuse_grating(prefix + "grating", self.grating)
        bounds = self.field_bounds(limits)
        bounds.pop("center_wavelength_nm", None)
        for field, bound in bounds.items():
            if field != "em_gain" and getattr(self, field) is not None:
                refuse_outside(prefix + field, getattr(self, field), bound)
        gain = self.em_gain or limits.em_gain_default
        if gain is not None:
            name = "em_gain" if self.em_gain else "em_gain (None: the setup's camera.em_gain)"
            limits.refuse_em_gain(prefix + name, int(gain))
        centre = limits.wavelength_bound(self.grating)
        if centre is None:
            return
        if self.center_wavelength_nm is not None:
            refuse_outside(prefix + "center_wavelength_nm", self.center_wavelength_nm, centre)
        elif self.grating is not None and limits.center_wavelength_nm is not None:
            refuse_outside(prefix + "grating", self.grating, centre,
                           f"the centre wavelength in place, {limits.center_wavelength_nm:g} nm",
                           tested=limits.center_wavelength_nm)

    def run(self, ctx: RunContext, *, film: Spectrum | None = None,
            label: str = "") -> Spectrum:
        """Acquire and fit (see :meth:`acquire`); the accumulated spectrum."""
        return self.acquire(ctx, film=film, label=label).spectrum

    def acquire(self, ctx: RunContext, *, film: Spectrum | None = None,
                label: str = "") -> SpectrumOutcome:
        """Acquire the frames, sum them and fit each frame and the sum.

        ``label`` prefixes the kinds of the published records (``"film_"``: a
        film reference, stored but not fitted). Each processed frame's
        :class:`~micropl.analysis.spectra.SpectrumFit` is emitted right after
        it (kind ``frame``), the accumulated spectrum's last (kind
        ``accumulated``): :func:`~micropl.acquisition.results.fit_spectrum_records`
        with the session's line shape (``ctx.analysis.spectrum_model``). A fit
        the fitter refuses (or fails on) is logged and left out
        (:attr:`SpectrumOutcome.fit_error`; a survey records it as the QD's failure
        reason); the acquisition goes on.
        """
        setup = ctx.setup
        camera, spectrograph = setup.camera, setup.spectrograph
        if self.grating is not None and spectrograph.grating != self.grating:
            ctx.progress("changing grating")
            spectrograph.grating = self.grating
        if self.center_wavelength_nm is not None:
            spectrograph.center_wavelength_nm = self.center_wavelength_nm
        camera.read_mode = "fvb"
        camera.exposure_s = self.exposure_s
        gain = int(self.em_gain or getattr(setup.config.camera, "em_gain", None)
                   or camera.em_gain)
        if gain > 1:
            self._wait_until_cold(ctx)
        camera.em_gain = gain
        n_px = int(camera.sensor_shape[1])
        wavelength_nm = spectrograph.wavelength_axis_nm(n_px, camera.pixel_um)
        e_per_count = camera.e_per_adu / gain
        noise_factor = 2.0 if gain > 1 else 1.0

        background_adu, frame_noise_adu, background_noise_adu = self._background(ctx, label)
        frame_noise_e = frame_noise_adu * e_per_count
        background_noise_e = background_noise_adu * e_per_count
        film_per_frame, film_noise_e = self._film_per_frame(film, wavelength_nm)
        # Signal-independent noise of one background- (and film-) subtracted frame.
        read_noise_e = float(np.sqrt(frame_noise_e ** 2 + background_noise_e ** 2
                                     + film_noise_e ** 2))
        unit = "e" if self.background else "adu"
        scale = e_per_count if self.background else 1.0

        laser_on(ctx, self.power_percent)
        frames = []
        exposures_s: list[tuple[float, float]] = []
        n_saturated = 0
        t_first = setup.clock.now()
        for i in range(self.accumulations):
            ctx.checkpoint()
            frame = camera.acquire()
            ctx.emit(frame, kind=f"{label}raw")
            exposures_s.append((float(frame.t_s), float(frame.t_s + frame.exposure_s)))
            saturated = saturated_pixel_count(camera, frame.counts)
            if saturated:
                ctx.log.warning("spectrum frame %d: %d pixel(s) at the ADC ceiling; lower the "
                                "exposure, EM gain or power", i + 1, saturated)
            n_saturated += saturated
            counts = (np.asarray(frame.counts, float) - background_adu) * scale
            if self.remove_cosmics:
                counts, _ = remove_cosmic_rays_spatial(counts, noise_factor=noise_factor,
                                                       read_noise=read_noise_e)
            counts = counts - film_per_frame
            frames.append(counts)
            processed = Spectrum(wavelength_nm=wavelength_nm, counts=counts,
                                 exposure_s=self.exposure_s, t_s=frame.t_s, accumulations=1,
                                 em_gain=gain, bias_subtracted=self.background,
                                 counts_unit=unit, read_noise=read_noise_e,
                                 saturated_pixels=saturated)
            ctx.emit(processed, kind=f"{label}frame")
            if not label:
                self._fit(ctx, processed, "frame")
            ctx.progress("spectrum", i + 1, self.accumulations)
        stack = np.asarray(frames)
        if self.remove_cosmics and len(frames) >= 2:
            stack, _ = remove_cosmic_rays_temporal(stack, noise_factor=noise_factor,
                                                   read_noise=read_noise_e)
        total = stack.sum(axis=0)
        spectrum = Spectrum(wavelength_nm=wavelength_nm, counts=total, exposure_s=self.exposure_s,
                            t_s=t_first, accumulations=self.accumulations, em_gain=gain,
                            bias_subtracted=self.background, counts_unit=unit,
                            read_noise=self._sum_noise(frame_noise_e, background_noise_e,
                                                       film_noise_e),
                            saturated_pixels=n_saturated)
        ctx.emit(spectrum, kind=f"{label}accumulated")
        if label:
            return SpectrumOutcome(spectrum, None, "not fitted (film reference)", exposures_s)
        fit, error = self._fit(ctx, spectrum, "accumulated")
        return SpectrumOutcome(spectrum, fit, error, exposures_s)

    @staticmethod
    def _fit(ctx: RunContext, spectrum: Spectrum, kind: str) -> tuple[SpectrumFit | None, str]:
        """Fit one processed spectrum, emit the fit with ``kind``; (fit, "") or (None, why)."""
        try:
            fit = fit_spectrum_records([spectrum], ctx.analysis.spectrum_model)[0]
        except UserError as exc:
            ctx.log.warning("%s spectrum not fitted: %s", kind, exc)
            return None, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a fitter bug: logged with its traceback,
            # and the reason of this spectrum's (a survey's QD's) failure; the data are kept
            ctx.log.error("%s spectrum not fitted: %s: %s", kind, type(exc).__name__, exc,
                          exc_info=exc)
            return None, f"{type(exc).__name__}: {exc}"
        ctx.emit(fit, kind=kind)
        return fit, ""

    def _sum_noise(self, frame_noise: float, background_noise: float,
                   film_noise: float) -> float:
        """Signal-independent noise of the sum of the accumulations.

        Each frame's own noise adds in quadrature, but the one mean background
        and the one film reference subtracted from every frame add coherently.
        """
        n = self.accumulations
        return float(np.sqrt(n * frame_noise ** 2 + (n * background_noise) ** 2
                             + (n * film_noise) ** 2))

    def _film_per_frame(self, film: Spectrum | None,
                        wavelength_nm: np.ndarray) -> tuple[np.ndarray | float, float]:
        """The film reference's share of one frame (e⁻ per pixel) and its noise (e⁻ rms).

        The reference is scaled to one frame's exposure; its noise is the mean over
        the pixels of its shot noise (excess factor 2 with EM gain) and its
        signal-independent noise, scaled the same way.
        """
        if film is None:
            return 0.0, 0.0
        if film.counts_unit != "e" or not self.background:
            raise AnalysisInputError("a film reference needs background-subtracted spectra in "
                                     "photoelectrons (background: true)")
        if film.counts.shape != wavelength_nm.shape \
                or not np.allclose(film.wavelength_nm, wavelength_nm):
            raise AnalysisInputError("the film reference was taken with another wavelength "
                                     "axis (grating or centre wavelength changed)")
        share = self.exposure_s / (film.exposure_s * film.accumulations)
        excess = 2.0 if film.em_gain > 1 else 1.0
        variance = excess * np.mean(np.maximum(film.counts, 0.0)) + film.read_noise ** 2
        return np.asarray(film.counts, float) * share, float(share * np.sqrt(variance))

    def _background(self, ctx: RunContext, label: str) -> tuple[np.ndarray | float, float, float]:
        """Mean background frame (ADU), one frame's signal-independent noise and
        the noise of the mean background (both ADU rms per pixel)."""
        if not self.background:
            return 0.0, 0.0, 0.0
        setup = ctx.setup
        was_on = setup.laser.emission_on
        setup.laser.off()
        frames = []
        for _ in range(self.background_frames):
            ctx.checkpoint()
            frame = setup.camera.acquire()
            ctx.emit(frame, kind=f"{label}background")
            frames.append(np.asarray(frame.counts, float))
        if was_on:
            setup.laser.emission_on = True
        stack = np.asarray(frames)
        if len(frames) >= 2:
            noise = frame_noise_rms(stack)
        else:
            resid = stack[0] - median_filter(stack[0], size=7, mode="nearest")
            noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        if self.remove_cosmics:  # a cosmic ray in the background would become a dip
            level = np.median(stack)
            if len(frames) >= 2:
                stack, _ = remove_cosmic_rays_temporal(stack - level, noise_factor=1.0,
                                                       read_noise=noise)
            else:
                stack, _ = remove_cosmic_rays_spatial(stack - level, noise_factor=1.0,
                                                      read_noise=noise)
            stack = stack + level
        mean = stack.mean(axis=0)
        return mean, float(noise), float(noise / np.sqrt(len(frames)))

    def _wait_until_cold(self, ctx: RunContext) -> None:
        camera = ctx.setup.camera
        limit = ctx.setup.config.safety.camera_max_temperature_c
        if not camera.cooler_on:
            camera.cooler_on = True
        start = ctx.clock.now()
        while camera.temperature_c > limit:
            if ctx.clock.now() - start > self.cooldown_timeout_s:
                raise InstrumentTimeout(
                    f"camera '{camera.name}': still at {camera.temperature_c:.1f} °C after "
                    f"{self.cooldown_timeout_s:.0f} s of cooling; EM gain needs ≤ {limit:.0f} °C")
            ctx.progress(f"cooling camera ({camera.temperature_c:.0f} °C)")
            ctx.sleep(1.0)
