"""Settings of the virtual sample and the simulated instruments (pydantic models).

These models are the ``sample`` section and the ``driver: simulated`` variants
of each instrument section of a setup YAML. Unknown keys are errors. Defaults
follow ``PHYSICS.md``; units are in the key names.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from micropl.drivers._camera_common import EM_GAIN_MAX
from micropl.drivers._settings import (
    GAIN_TEMPERATURE_MAX_C,
    GAIN_TEMPERATURE_MIN_C,
    SENSOR_MAX_PX,
    StrictSettings,
    check_range,
    show,
)

#: Most emitters (QDs plus aggregates) a virtual sample may hold: area × density.
MAX_EMITTERS = 1_000_000

#: Inputs of the simulated time tagger (channels 1–8).
SIM_TAGGER_INPUTS = 8

_Strict = StrictSettings
NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]


# --------------------------------------------------------------------------- faults
class FaultSettings(_Strict):
    """Faults injected into a simulated instrument (all off by default).

    Later reliability tests rely on these hooks.
    """

    timeout_every_n_calls: int = Field(0, ge=0, description="every Nth call times out (0 = never)")
    disconnect_after_s: float | None = Field(
        None, gt=0, description="clock time after which the instrument stops answering"
    )
    reconnect_after_s: float | None = Field(
        None, gt=0, description="clock time after a disconnect when it answers again"
    )
    garble_every_n_calls: int = Field(0, ge=0, description="every Nth reply is garbled")
    drop_frame_every_n: int = Field(0, ge=0, description="camera: every Nth frame is lost")
    overflow_every_n_reads: int = Field(
        0, ge=0, description="tagger: every Nth read reports a buffer overflow"
    )


# --------------------------------------------------------------------------- sample
_LABEL = re.compile(r"[A-Za-z0-9_.+-]{1,32}")


class BatchSettings(_Strict):
    """One QD batch in the film: its share of the QDs, size distribution and surface."""

    label: str | None = Field(
        None, description="name of the batch in the sample's truth (`batch`); default "
        "'<edge_nm_mean>nm', e.g. '14nm'; letters, digits and _.+- only"
    )
    fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="share of the film's QDs drawn from this batch; "
        "the fractions of all batches add up to 1"
    )
    edge_nm_mean: float = Field(14.0, ge=3.0, le=30.0, description="mean cube edge length, nm")
    edge_nm_spread: float = Field(
        0.15, ge=0.0, le=0.5, description="relative standard deviation of the edge length"
    )
    core_shell_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="fraction of QDs that became core/shell (moist toluene)"
    )

    @field_validator("label")
    @classmethod
    def _label_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and not _LABEL.fullmatch(value):
            raise ValueError(f"{show(value)} must be 1–32 letters, digits or _.+- "
                             "(no spaces)")
        return value

    @property
    def name(self) -> str:
        """The batch's label: ``label``, or ``"<edge_nm_mean>nm"`` (e.g. ``"14nm"``)."""
        return self.label if self.label is not None else f"{self.edge_nm_mean:g}nm"


#: Most batches one film may mix.
MAX_BATCHES = 8


def paper_batches() -> list[BatchSettings]:
    """The two batches of the setup's reference paper, mixed half and half.

    Mean edge lengths 7 nm and 14 nm with 15 % size spread (PHYSICS.md), all
    core-only (dry solvents).
    """
    return [BatchSettings(label="7nm", fraction=0.5, edge_nm_mean=7.0),
            BatchSettings(label="14nm", fraction=0.5, edge_nm_mean=14.0)]


class BackgroundSettings(_Strict):
    """Weak, broad polystyrene background under the laser spot."""

    apd_cps: float = Field(400.0, ge=0.0, description="detected background per APD at full power, counts/s")
    camera_photons_per_s: float = Field(
        3000.0, ge=0.0, description="background photons/s reaching the camera at full power"
    )
    center_nm: float = Field(500.0, gt=300.0, lt=1100.0, description="centre of the broad band, nm")
    width_nm: float = Field(150.0, gt=0.0, description="FWHM of the broad band, nm")


class SampleSettings(_Strict):
    """The seeded virtual sample shared by all simulated instruments."""

    seed: int = Field(1, ge=0, description="random seed; same seed, same sample and data")
    area_um: tuple[Positive, Positive] = Field(
        (40.0, 40.0), description="(width, height) of the populated area, starting at (0, 0), µm; "
        f"(density_per_um2 + aggregates_per_um2) × area at most {MAX_EMITTERS:.0e} emitters"
    )
    density_per_um2: float = Field(0.1, gt=0.0, le=5.0, description="QD surface density, 1/µm²")
    batches: list[BatchSettings] = Field(
        default_factory=paper_batches, min_length=1, max_length=MAX_BATCHES,
        description="QD batches mixed in the film (1–8), each a section with the keys label "
        "(name in the truth, default '<edge_nm_mean>nm'), fraction (share of the QDs, > 0–1; "
        "the fractions add up to 1), edge_nm_mean (mean cube edge, 3–30 nm, default 14), "
        "edge_nm_spread (relative rms of the edge, 0–0.5, default 0.15) and "
        "core_shell_fraction (share of core/shell QDs, 0–1, default 0); default: the paper's "
        "7 nm and 14 nm batches, half each, core-only (see layout)"
    )
    batch: BatchSettings | None = Field(
        None, description="a film of this one batch only, instead of batches (older setup "
        "files); its fraction must stay 1"
    )
    layout: Literal["side_by_side", "mixed"] = Field(
        "side_by_side", description="where the batches lie: side_by_side: each batch fills "
        "its own stripe of the area along x, in the order listed, its width ∝ its fraction "
        "(the same QD density everywhere; like the paper's separate films, default); mixed: "
        "all batches mixed in one film over the whole area"
    )
    background: BackgroundSettings = BackgroundSettings()
    aggregates_per_um2: float = Field(
        0.003, ge=0.0, le=1.0, description="density of bright, non-antibunched aggregates, 1/µm²"
    )
    brightness_cps_mean: float = Field(
        3.0e4, gt=0.0, description="mean detected rate per APD of a QD at saturation, counts/s"
    )
    lifetime_ns_range: tuple[Positive, Positive] = Field(
        (2.0, 10.0), description="(shortest, longest) PL lifetime, ns; 0 < shortest < longest"
    )
    blink_on_s_mean: float = Field(0.3, gt=0.0, description="mean bright-state duration, s")
    blink_off_s_mean: float = Field(0.05, gt=0.0, description="mean dark-state duration, s")
    spectral_diffusion_mev: float = Field(
        3.0, ge=0.0, description="rms wandering of the peak energy, meV"
    )
    spectral_diffusion_tau_s: float = Field(
        0.5, gt=0.0, description="correlation time of the spectral diffusion (Ornstein–Uhlenbeck), s"
    )
    z_spread_um: float = Field(0.05, ge=0.0, description="rms height of the QDs around z = 0, µm")

    @property
    def film_batches(self) -> tuple[BatchSettings, ...]:
        """The batches in the film: ``(batch,)`` when ``batch`` is given, else ``batches``."""
        return (self.batch,) if self.batch is not None else tuple(self.batches)

    @model_validator(mode="after")
    def _check(self) -> SampleSettings:
        check_range("lifetime_ns_range", self.lifetime_ns_range, " ns")
        self._check_batches()
        width_um, height_um = self.area_um
        expected = (self.density_per_um2 + self.aggregates_per_um2) * width_um * height_um
        if not expected <= MAX_EMITTERS:
            raise ValueError(
                f"area_um {show(width_um)} × {show(height_um)} µm with density_per_um2 "
                f"{show(self.density_per_um2)} (+ aggregates_per_um2 {show(self.aggregates_per_um2)})"
                f" makes {expected:.3g} emitters, at most {MAX_EMITTERS:.0e}: "
                "use a smaller area or density")
        return self

    def _check_batches(self) -> None:
        if self.batch is not None and "batches" in self.model_fields_set:
            raise ValueError("batch and batches are both given: list every batch under "
                             "batches (batch is a film of one batch)")
        if self.batch is not None and self.batch.fraction != 1.0:
            raise ValueError(f"batch: fraction {show(self.batch.fraction)}: a film of one "
                             "batch has fraction 1 (mix batches under batches)")
        batches = self.film_batches
        names = [b.name for b in batches]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"batches: the label {show(twice[0])} is used twice; give each "
                             "batch its own label")
        total = math.fsum(b.fraction for b in batches)
        if abs(total - 1.0) > 1e-6:
            parts = " + ".join(show(b.fraction) for b in batches)
            raise ValueError(f"batches: the fractions add up to {parts} = {total:.6g}, not 1")


# --------------------------------------------------------------------------- instruments
class SimLaserSettings(_Strict):
    """Simulated pulsed diode laser."""

    driver: Literal["simulated"] = "simulated"
    name: str = "laser"
    wavelength_nm: float = Field(405.0, gt=0)
    rep_rate_hz: float = Field(10e6, ge=25.0, le=40e6, description="repetition rate, Hz")
    power_percent: float = Field(20.0, ge=0.0, le=100.0, description="initial power setting, %")
    max_power_percent: float = Field(100.0, gt=0.0, le=100.0, description="refuse settings above")
    saturation_power_percent: float = Field(
        15.0, gt=0.0, description="P_sat of the excitation probability 1 − exp(−P/P_sat), %"
    )
    spot_fwhm_um: float = Field(0.6, gt=0.0, description="excitation spot FWHM in the sample, µm")
    objective_na: float = Field(
        1.3, gt=0.0, lt=1.515, description="numerical aperture of the oil objective (sets the defocus)"
    )
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _check(self) -> SimLaserSettings:
        if self.power_percent > self.max_power_percent:
            raise ValueError(f"power_percent: {show(self.power_percent)} % is above "
                             f"max_power_percent {show(self.max_power_percent)} %")
        return self


class GratingSettings(_Strict):
    grooves_per_mm: float = Field(gt=0, le=3600)
    blaze_nm: float = Field(500.0, gt=0)


def _default_gratings() -> list[GratingSettings]:
    return [GratingSettings(grooves_per_mm=g, blaze_nm=500.0) for g in (150, 300, 600, 1200)]


class SimSpectrographSettings(_Strict):
    """Simulated Czerny–Turner spectrograph with a grating turret."""

    driver: Literal["simulated"] = "simulated"
    name: str = "spectrograph"
    focal_length_mm: float = Field(300.0, gt=0)
    inclusion_angle_deg: float = Field(30.0, ge=0, lt=90)
    gratings: list[GratingSettings] = Field(default_factory=_default_gratings, min_length=1)
    grating: int = Field(2, ge=1, description="initial 1-based turret slot")
    center_wavelength_nm: float = Field(515.0, ge=0, le=1400)
    wavelength_range_nm: tuple[NonNegative, NonNegative] = Field(
        (0.0, 1400.0), description="allowed centre wavelengths (low, high), nm; low < high"
    )
    move_speed_nm_per_s: float = Field(100.0, gt=0, description="turret drive speed, nm/s")
    grating_change_s: float = Field(10.0, ge=0, description="time to change grating, s")
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _grating_installed(self) -> SimSpectrographSettings:
        if self.grating > len(self.gratings):
            raise ValueError(f"grating: {self.grating} is not installed (slots 1–{len(self.gratings)})")
        check_range("wavelength_range_nm", self.wavelength_range_nm, " nm")
        low, high = self.wavelength_range_nm
        center = self.center_wavelength_nm
        if not low <= center <= high:
            raise ValueError(f"center_wavelength_nm: {show(center)} nm is outside "
                             f"wavelength_range_nm {show(low)}–{show(high)} nm")
        grooves = self.gratings[self.grating - 1].grooves_per_mm
        reach_nm = 2e6 / grooves * math.cos(math.radians(self.inclusion_angle_deg) / 2)
        if center >= reach_nm:
            raise ValueError(f"center_wavelength_nm: {show(center)} nm is beyond the reach of "
                             f"grating {self.grating} ({show(grooves)} g/mm, below "
                             f"{reach_nm:.0f} nm)")
        return self


class SimCameraSettings(_Strict):
    """Simulated EMCCD camera."""

    driver: Literal["simulated"] = "simulated"
    name: str = "camera"
    sensor_shape: tuple[
        Annotated[int, Field(ge=1, le=SENSOR_MAX_PX)], Annotated[int, Field(ge=2, le=SENSOR_MAX_PX)]
    ] = Field((200, 1600), description=f"(rows, columns) of pixels: 1–{SENSOR_MAX_PX} rows, "
              f"2–{SENSOR_MAX_PX} columns (a wavelength axis needs two)")
    pixel_um: float = Field(16.0, gt=0)
    exposure_s: float = Field(1.0, gt=0, le=3600)
    em_gain: int = Field(100, ge=1, le=1000)
    em_gain_advanced: bool = False
    read_mode: Literal["fvb", "image", "roi"] = "fvb"
    read_noise_e: float = Field(50.0, ge=0, description="read noise before gain, e⁻ rms")
    cic_e_per_px: float = Field(0.005, ge=0, description="clock-induced charge, e⁻/pixel/frame")
    dark_e_per_px_s: float = Field(0.0002, ge=0, description="dark current, e⁻/pixel/s")
    bias_adu: float = Field(500.0, ge=0, description="bias offset, ADU")
    e_per_adu: float = Field(10.0, gt=0, description="pre-amplifier sensitivity, e⁻/ADU")
    quantum_efficiency: float = Field(0.9, gt=0, le=1)
    cosmic_rays_per_min: float = Field(3.0, ge=0, description="cosmic-ray hits per minute of exposure")
    start_temperature_c: float = Field(20.0, ge=-100, le=40)
    target_temperature_c: float = Field(-80.0, ge=-100, le=20)
    cooling_rate_c_per_s: float = Field(2.0, gt=0)
    max_gain_temperature_c: float = Field(
        -60.0, ge=GAIN_TEMPERATURE_MIN_C, le=GAIN_TEMPERATURE_MAX_C,
        description="EM gain above 1 is refused while warmer than this, °C",
    )
    readout_s: float = Field(0.01, ge=0, description="readout time per frame, s")
    photons_per_apd_count: float = Field(
        2.0, gt=0, description="QD photons reaching the sensor per count detected on one APD"
    )
    spot_rows_fwhm: float = Field(
        4.0, gt=0, description="vertical FWHM of the spot image on the sensor, rows"
    )
    stream_buffer_frames: int = Field(
        256, ge=1, description="frames the camera buffer holds while streaming; older ones are lost"
    )
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _check(self) -> SimCameraSettings:
        if self.em_gain > EM_GAIN_MAX and not self.em_gain_advanced:
            raise ValueError(f"em_gain: {self.em_gain} is above {EM_GAIN_MAX}; "
                             "higher gain needs em_gain_advanced: true")
        return self


class SimTaggerSettings(_Strict):
    """Simulated time tagger with two APDs in an HBT arrangement."""

    driver: Literal["simulated"] = "simulated"
    name: str = "tagger"
    apd_channels: tuple[
        Annotated[int, Field(ge=1, le=SIM_TAGGER_INPUTS)],
        Annotated[int, Field(ge=1, le=SIM_TAGGER_INPUTS)],
    ] = Field((1, 2), description=f"inputs of the two APDs: two different inputs 1–{SIM_TAGGER_INPUTS}")
    sync_channel: int | None = Field(None, ge=1, le=SIM_TAGGER_INPUTS,
                                     description="laser sync input (not an APD input), or none")
    dark_cps: tuple[Annotated[float, Field(ge=0, le=1e6)], Annotated[float, Field(ge=0, le=1e6)]] = Field(
        (150.0, 200.0), description="dark count rate of each APD, counts/s (0–1e6)")
    dead_time_ns: float = Field(22.0, ge=0, le=1e6, description="APD dead time, ns")
    jitter_fwhm_ps: float = Field(350.0, ge=0, le=1e6, description="timing jitter FWHM, ps")
    afterpulse_probability: float = Field(0.005, ge=0, le=0.2)
    afterpulse_delay_ns: float = Field(100.0, gt=0, le=1e6, description="mean afterpulse delay, ns")
    channel_delay_ps: int = Field(3000, ge=-1_000_000, le=1_000_000,
                                  description="extra cable delay of the second APD, ps")
    crosstalk_probability: float = Field(
        0.0, ge=0, le=0.1, description="breakdown-flash crosstalk per detection (artefact)"
    )
    crosstalk_delay_ns: float = Field(30.0, gt=0, le=1e6, description="crosstalk delay, ns")
    buffer_tags: int = Field(
        32_000_000, gt=0, description="tags the device buffer holds before it overflows"
    )
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _check(self) -> SimTaggerSettings:
        apd1, apd2 = self.apd_channels
        if apd1 == apd2:
            raise ValueError(f"apd_channels: both APDs on input {apd1}; use two different inputs")
        if self.sync_channel is not None and self.sync_channel in (apd1, apd2):
            raise ValueError(f"sync_channel: {self.sync_channel} is also an APD input "
                             f"(apd_channels {apd1}, {apd2})")
        return self


class SimScannerSettings(_Strict):
    """Simulated closed-loop piezo scanner."""

    driver: Literal["simulated"] = "simulated"
    name: str = "scanner"
    limits_um: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] = (
        (0.0, 80.0),
        (0.0, 80.0),
        (-10.0, 10.0),
    )
    start_um: tuple[float, float, float] = (20.0, 20.0, 0.0)
    speed_um_per_s: float = Field(500.0, gt=0)
    settle_s: float = Field(0.002, ge=0)
    drift_um_per_min: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hardware_lines: bool = Field(True, description="clock x lines in hardware (pixel "
                                 "markers, camera triggers); false: software-timed maps only")
    marker_channel: int | None = Field(None, ge=1, le=SIM_TAGGER_INPUTS,
                                       description="tagger input wired to the pixel trigger "
                                       "output, or none")
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _start_inside(self) -> SimScannerSettings:
        for axis, (value, (low, high)) in zip("xyz", zip(self.start_um, self.limits_um)):
            check_range(f"limits_um: {axis}", (low, high), " µm")
            if not low <= value <= high:
                raise ValueError(f"start_um: {axis} = {value} µm is outside {low}–{high} µm")
        return self
