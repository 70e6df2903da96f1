"""Settings of the virtual sample and the simulated instruments (pydantic models).

These models are the ``sample`` section and the ``driver: simulated`` variants
of each instrument section of a setup YAML. Unknown keys are errors. Defaults
follow ``PHYSICS.md``; units are in the key names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
class BatchSettings(_Strict):
    """The QD batch spin-coated on the sample."""

    edge_nm_mean: float = Field(14.0, ge=3.0, le=30.0, description="mean cube edge length, nm")
    edge_nm_spread: float = Field(
        0.15, ge=0.0, le=0.5, description="relative standard deviation of the edge length"
    )
    core_shell_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="fraction of QDs that became core/shell (moist toluene)"
    )


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
    area_um: tuple[float, float] = Field(
        (40.0, 40.0), description="(width, height) of the populated area, starting at (0, 0), µm"
    )
    density_per_um2: float = Field(0.1, gt=0.0, le=5.0, description="QD surface density, 1/µm²")
    batch: BatchSettings = BatchSettings()
    background: BackgroundSettings = BackgroundSettings()
    aggregates_per_um2: float = Field(
        0.003, ge=0.0, le=1.0, description="density of bright, non-antibunched aggregates, 1/µm²"
    )
    brightness_cps_mean: float = Field(
        3.0e4, gt=0.0, description="mean detected rate per APD of a QD at saturation, counts/s"
    )
    lifetime_ns_range: tuple[float, float] = Field(
        (2.0, 10.0), description="range of PL lifetimes, ns"
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

    @model_validator(mode="after")
    def _positive_area(self) -> SampleSettings:
        if min(self.area_um) <= 0:
            raise ValueError(f"area_um: {self.area_um} must be two positive lengths")
        return self


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
    wavelength_range_nm: tuple[float, float] = (0.0, 1400.0)
    move_speed_nm_per_s: float = Field(100.0, gt=0, description="turret drive speed, nm/s")
    grating_change_s: float = Field(10.0, ge=0, description="time to change grating, s")
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _grating_installed(self) -> SimSpectrographSettings:
        if self.grating > len(self.gratings):
            raise ValueError(f"grating: {self.grating} is not installed (slots 1–{len(self.gratings)})")
        return self


class SimCameraSettings(_Strict):
    """Simulated EMCCD camera."""

    driver: Literal["simulated"] = "simulated"
    name: str = "camera"
    sensor_shape: tuple[int, int] = Field((200, 1600), description="(rows, columns) of pixels")
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
        -60.0, description="EM gain above 1 is refused while warmer than this, °C"
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


class SimTaggerSettings(_Strict):
    """Simulated time tagger with two APDs in an HBT arrangement."""

    driver: Literal["simulated"] = "simulated"
    name: str = "tagger"
    apd_channels: tuple[int, int] = (1, 2)
    sync_channel: int | None = Field(None, ge=1, le=8, description="laser sync input, or none")
    dark_cps: tuple[float, float] = (150.0, 200.0)
    dead_time_ns: float = Field(22.0, ge=0)
    jitter_fwhm_ps: float = Field(350.0, ge=0)
    afterpulse_probability: float = Field(0.005, ge=0, le=0.2)
    afterpulse_delay_ns: float = Field(100.0, gt=0, description="mean afterpulse delay, ns")
    channel_delay_ps: int = Field(3000, description="extra cable delay of the second APD, ps")
    crosstalk_probability: float = Field(
        0.0, ge=0, le=0.1, description="breakdown-flash crosstalk per detection (artefact)"
    )
    crosstalk_delay_ns: float = Field(30.0, gt=0)
    buffer_tags: int = Field(
        32_000_000, gt=0, description="tags the device buffer holds before it overflows"
    )
    faults: FaultSettings = FaultSettings()


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
    faults: FaultSettings = FaultSettings()

    @model_validator(mode="after")
    def _start_inside(self) -> SimScannerSettings:
        for axis, (value, (low, high)) in zip("xyz", zip(self.start_um, self.limits_um)):
            if low >= high:
                raise ValueError(f"limits_um: {axis} range {low}–{high} is empty")
            if not low <= value <= high:
                raise ValueError(f"start_um: {axis} = {value} µm is outside {low}–{high} µm")
        return self
