"""The simulated EMCCD: noise statistics, dark frames, cosmic rays, limits, streaming.

The expected numbers come from the EMCCD noise model (Poisson photoelectrons,
Gamma-distributed EM multiplication with excess-noise factor √2, Gaussian read
noise at the output) and the camera settings, and are estimated here by brute
force from many simulated frames.
"""

from __future__ import annotations

import numpy as np
import pytest

from micropl.drivers.interfaces import Camera
from micropl.errors import InstrumentError, LimitError
from micropl.simulators.camera import SimCamera
from micropl.simulators.clock import VirtualClock
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.scanner import SimScanner
from micropl.simulators.settings import (
    FaultSettings,
    SampleSettings,
    SimCameraSettings,
    SimLaserSettings,
    SimScannerSettings,
    SimSpectrographSettings,
)
from micropl.simulators.spectrograph import SimSpectrograph
from micropl.simulators.world import SimulatedWorld


def _setup(sample=None, *, laser_on=True, power_percent=20.0, **camera_kw):
    sample = sample if sample is not None else VirtualSample.single(x_um=20.0, y_um=20.0)
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(power_percent=power_percent), world)
    SimScanner(SimScannerSettings(), world)
    SimSpectrograph(SimSpectrographSettings(center_wavelength_nm=514.5), world)
    kw = dict(start_temperature_c=-80.0)
    kw.update(camera_kw)
    camera = SimCamera(SimCameraSettings(**kw), world)
    if laser_on:
        laser.emission_on = True
    return world, camera


def _frames(camera, n):
    return np.array([camera.acquire().counts for _ in range(n)], dtype=np.float64)


# --------------------------------------------------------------------------- noise
def test_high_gain_excess_noise_factor_sqrt2():
    """Gain 300, cold: per-pixel variance ≈ 2 × mean in photoelectron units."""
    gain = 300
    world, cam = _setup(sensor_shape=(20, 400), em_gain=gain, exposure_s=0.05,
                        cosmic_rays_per_min=0.0)
    assert isinstance(cam, Camera)
    c = _frames(cam, 400)
    pe = (c - cam.settings.bias_adu) * cam.e_per_adu / gain
    mean, var = pe.mean(axis=0), pe.var(axis=0, ddof=1)
    use = mean > 3.0
    assert use.sum() > 100
    read_pe2 = (cam.settings.read_noise_e / gain) ** 2
    ratio = np.sum(var[use] - read_pe2) / np.sum(mean[use])
    assert ratio == pytest.approx(2.0, rel=0.04)


def test_unit_gain_variance_is_shot_plus_read_noise():
    world, cam = _setup(sensor_shape=(20, 400), em_gain=1, exposure_s=5.0,
                        cosmic_rays_per_min=0.0)
    c = _frames(cam, 400)
    e = (c - cam.settings.bias_adu) * cam.e_per_adu
    mean, var = e.mean(axis=0), e.var(axis=0, ddof=1)
    use = mean > 300
    assert use.sum() > 100
    quantisation_e2 = cam.e_per_adu**2 / 12
    excess = np.mean(var[use] - mean[use] - quantisation_e2)
    assert excess == pytest.approx(cam.settings.read_noise_e**2, rel=0.05)


def test_dark_frames_dark_current_cic_and_cosmic_rays():
    exposure_s, rays_per_min, gain = 100.0, 12.0, 300
    world, cam = _setup(laser_on=False, sensor_shape=(100, 200), read_mode="image",
                        em_gain=gain, exposure_s=exposure_s, cosmic_rays_per_min=rays_per_min)
    n_frames = 30
    c = _frames(cam, n_frames)
    pe = (c - cam.settings.bias_adu) * cam.e_per_adu / gain
    spikes = pe > 50.0  # a Gamma(1..3, 300) dark event never reaches 50 e⁻ equivalents
    expected_rays = rays_per_min * exposure_s / 60 * n_frames
    assert abs(spikes.sum() - expected_rays) < 4 * np.sqrt(expected_rays)
    # each ray is one sharp pixel: its neighbours along the row are plain dark pixels
    f, r, col = np.nonzero(spikes[:, :, 1:-1])
    assert np.all(pe[f, r, col] < 5) and np.all(pe[f, r, col + 2] < 5)
    expected_dark = cam.settings.dark_e_per_px_s * exposure_s + cam.settings.cic_e_per_px
    assert pe[~spikes].mean() == pytest.approx(expected_dark, rel=0.1)


def test_laser_off_fvb_is_dark_only_even_with_a_qd_under_the_spot():
    world, cam = _setup(laser_on=False, sensor_shape=(50, 300), em_gain=200, exposure_s=1.0,
                        cosmic_rays_per_min=0.0)
    pe = (_frames(cam, 20) - cam.settings.bias_adu) * cam.e_per_adu / 200
    expected = 50 * (cam.settings.dark_e_per_px_s * 1.0 + cam.settings.cic_e_per_px)
    assert pe.mean() == pytest.approx(expected, rel=0.15)
    world.laser.emission_on = True
    assert ((_frames(cam, 1) - cam.settings.bias_adu) * cam.e_per_adu / 200).max() > 50


def test_image_mode_spreads_over_a_few_rows_and_roi_matches():
    world, cam = _setup(sensor_shape=(40, 300), em_gain=50, exposure_s=1.0, read_mode="image",
                        cosmic_rays_per_min=0.0)
    img = cam.acquire().counts - cam.settings.bias_adu
    assert img.shape == (40, 300)
    profile = img.sum(axis=1)
    lit = profile > 0.05 * profile.max()
    assert 3 <= lit.sum() <= 10 and abs(np.argmax(profile) - 19.5) <= 1.5
    cam.read_mode = "roi"
    cam.roi_rows = (15, 25)
    roi = cam.acquire().counts
    assert roi.shape == (10, 300)
    cam.read_mode = "fvb"
    fvb = cam.acquire().counts - cam.settings.bias_adu
    assert fvb.shape == (300,)
    # FVB collects what the rows hold (same expected total within shot noise × gain)
    assert fvb.sum() == pytest.approx(img.sum(), rel=0.05)


def test_saturates_at_16_bit():
    world, cam = _setup(sensor_shape=(20, 200), em_gain=300, exposure_s=100.0)
    counts = cam.acquire().counts
    assert counts.max() == 65535 and counts.min() >= 0


# --------------------------------------------------------------------------- limits
def _unchanged(cam):
    return (cam.em_gain, cam.em_gain_advanced, cam.exposure_s, cam.read_mode, cam.roi_rows)


def test_refusals_do_not_change_state():
    world, cam = _setup(sensor_shape=(20, 100), em_gain=100)
    before = _unchanged(cam)
    with pytest.raises(LimitError, match=r"camera 'camera': EM gain 500 refused: maximum 300 "
                                         r"unless advanced mode is on"):
        cam.em_gain = 500
    with pytest.raises(LimitError, match="maximum 1000"):
        cam.em_gain = 1500
    for bad in (0.0, -1.0, 3601.0):
        with pytest.raises(LimitError, match="exposure"):
            cam.exposure_s = bad
    with pytest.raises(LimitError, match="ROI rows"):
        cam.roi_rows = (10, 30)
    with pytest.raises(LimitError, match="read mode"):
        cam.read_mode = "kinetic"
    assert _unchanged(cam) == before
    cam.em_gain_advanced = True
    cam.em_gain = 1000
    with pytest.raises(LimitError, match="lower it first"):
        cam.em_gain_advanced = False
    assert cam.em_gain_advanced and cam.em_gain == 1000


def test_gain_refused_while_warm_and_allowed_once_cooled():
    world, cam = _setup(sensor_shape=(20, 100), start_temperature_c=20.0, em_gain=100)
    assert cam.em_gain == 1  # constructed warm: starts at gain 1
    assert cam.temperature_c == pytest.approx(20.0)
    with pytest.raises(LimitError, match=r"EM gain 100 refused: sensor at 20.0 °C"):
        cam.em_gain = 100
    assert cam.em_gain == 1
    world.clock.sleep(20.0)  # 2 °C/s: now at -20 °C, still too warm
    assert cam.temperature_c == pytest.approx(-20.0)
    with pytest.raises(LimitError):
        cam.em_gain = 2
    world.clock.sleep(40.0)
    assert cam.temperature_c == pytest.approx(-80.0)
    cam.em_gain = 100
    cam.acquire()
    cam.cooler_on = False  # warms at 1 °C/s
    world.clock.sleep(30.0)
    with pytest.raises(LimitError, match="acquire at EM gain 100 refused"):
        cam.acquire()


# --------------------------------------------------------------------------- determinism
def _blinking_world(seed):
    smp = VirtualSample.from_settings(SampleSettings(seed=seed, area_um=(10.0, 10.0),
                                                     density_per_um2=0.3))
    world, cam = _setup(smp, sensor_shape=(20, 200), em_gain=100, exposure_s=0.5)
    world.scanner.move_to(float(smp.x_um[0]), float(smp.y_um[0]))
    return world, cam


def test_same_seed_same_frames_different_seed_different():
    frames = []
    for seed in (5, 5, 6):
        world, cam = _blinking_world(seed)
        frames.append(np.array([cam.acquire().counts for _ in range(5)]))
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


# --------------------------------------------------------------------------- streaming, faults
def test_stream_delivers_consecutive_frames_with_drop_gaps():
    world, cam = _setup(sensor_shape=(10, 100), em_gain=10, exposure_s=0.1, readout_s=0.01,
                        faults=FaultSettings(drop_frame_every_n=4))
    cam.start_stream()
    assert cam.read_frames() == []
    world.clock.sleep(0.105)  # frame 0 exposed 0–0.1 s
    got = cam.read_frames()
    assert [f.index for f in got] == [0]
    world.clock.sleep(1.0)  # frames 1..9 ended by 1.105 s (frame k ends at 0.11 k + 0.1)
    idx = [f.index for f in cam.read_frames()]
    assert idx == [1, 2, 4, 5, 6, 8, 9]  # every 4th frame (3rd and 7th index) lost
    t = [f.t_s for f in got]
    assert t[0] == pytest.approx(0.0)
    with pytest.raises(InstrumentError, match="stop the stream first"):
        cam.exposure_s = 1.0
    cam.stop()
    cam.stop()
    assert cam.read_frames() == []


def test_camera_timeout_and_disconnect_faults():
    world, cam = _setup(sensor_shape=(10, 100), em_gain=10, exposure_s=0.1,
                        faults=FaultSettings(timeout_every_n_calls=3, disconnect_after_s=100.0,
                                             reconnect_after_s=50.0))
    cam.acquire()
    cam.acquire()
    t = world.clock.now()
    with pytest.raises(InstrumentError, match="camera 'camera': acquire: timed out"):
        cam.acquire()
    assert world.clock.now() - t == pytest.approx(1.0)  # a timeout waits
    world.clock.advance_to(120.0)
    with pytest.raises(InstrumentError, match="not responding"):
        cam.acquire()
    world.clock.advance_to(151.0)
    assert cam.acquire().counts.shape == (100,)
