"""PICam camera driver against the in-process pylablib fake."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.picam import FakePicamCamera
from pylablib.devices.PrincetonInstruments.picam import PicamError

from micropl.drivers import picam_camera
from micropl.drivers.interfaces import Camera
from micropl.errors import InstrumentError, LimitError, MissingExtraError


def make(**kw):
    sdk = FakePicamCamera(**kw)
    cam = picam_camera.PicamCamera(sdk, picam_camera.PicamCameraSettings(driver="picam"))
    sdk.clear_calls()
    return cam, sdk


def sets(sdk, name):
    return [a[1] for a, k in sdk.calls_to("set_attribute_value") if a[0] == name]


def test_protocol_geometry_and_fvb_roi():
    sdk = FakePicamCamera(detector_size=(1340, 100))
    cam = picam_camera.PicamCamera(sdk, picam_camera.PicamCameraSettings(driver="picam"))
    assert isinstance(cam, Camera)
    assert cam.sensor_shape == (100, 1340) and cam.pixel_um == 16.0
    assert sdk.calls_to("set_roi") == [((0, 1340, 0, 100, 1, 100), {})]  # full vertical binning


def test_exposure_written_in_ms_without_truncation():
    cam, sdk = make()
    cam.exposure_s = 0.25
    assert sdk.calls_to("set_attribute_value") == [(("Exposure Time", 250.0),
                                                    {"truncate": False})]
    with pytest.raises(LimitError):
        cam.exposure_s = 1e4


def test_em_gain_needs_em_port_and_cold_sensor():
    cam, sdk = make(sensor_temperature_c=-70.0)
    with pytest.raises(LimitError, match="adc_quality"):
        cam.em_gain = 100
    cam.adc_quality = "Electron Multiplied"
    cam.em_gain = 100
    assert sets(sdk, "EM Gain") == [100]
    with pytest.raises(LimitError, match="unless em_gain_advanced"):
        cam.em_gain = 301
    with pytest.raises(LimitError):
        cam.em_gain = 1001
    sdk.attrs["Sensor Temperature Reading"].value = -40.0
    with pytest.raises(LimitError, match="-60 °C"):
        cam.em_gain = 50
    assert sets(sdk, "EM Gain") == [100]


def test_fake_out_of_range_value_fails_at_commit_like_picam():
    """What the driver refuses, PICam would only refuse at the next commit (after it was
    stored); the driver check keeps it from ever being written."""
    cam, sdk = make()
    sdk.set_attribute_value("EM Gain", 5000, truncate=False)
    with pytest.raises(PicamError, match="failed to commit"):
        sdk.setup_acquisition(mode="snap", nframes=1)
    sdk.set_attribute_value("EM Gain", 5000)  # pylablib's default silently clips
    assert sdk.attrs["EM Gain"].value == 1000


def test_ccd_without_em_register():
    cam, sdk = make(em_capable=False)
    cam.em_gain = 1
    with pytest.raises(LimitError, match="no EM register"):
        cam.em_gain = 2
    assert sets(sdk, "EM Gain") == []


def test_temperature_and_gains():
    cam, sdk = make()
    cam.target_temperature_c = -75
    assert sets(sdk, "Sensor Temperature Set Point") == [-75.0]
    with pytest.raises(LimitError):
        cam.target_temperature_c = -90  # the camera's own range stops at -80
    assert cam.temperature_status == "Locked"
    cam.analog_gain = "High"
    assert cam.e_per_adu == 1.0
    with pytest.raises(LimitError):
        cam.analog_gain = "Turbo"
    with pytest.raises(LimitError):
        cam.cooler_on = False


def test_read_modes_and_acquire():
    cam, sdk = make(detector_size=(64, 20))
    cam.roi_rows = (5, 9)
    cam.read_mode = "roi"
    assert sdk.calls_to("set_roi")[-1] == ((0, 64, 5, 9, 1, 4), {})
    frame = cam.acquire()
    assert sdk.calls_to("setup_acquisition") == [((), {"mode": "snap", "nframes": 1})]
    assert frame.counts.shape == (1, 64)
    cam.read_mode = "fvb"
    frame = cam.acquire()
    assert frame.counts.shape == (64,)
    np.testing.assert_array_equal(frame.counts, 600 + np.arange(64))


def test_stream_lost_frames():
    cam, sdk = make(detector_size=(8, 4), buffer_size=3)
    cam.start_stream()
    sdk.advance_frames(2)
    assert [f.index for f in cam.read_frames()] == [0, 1]
    sdk.advance_frames(6)
    assert [f.index for f in cam.read_frames()] == [5, 6, 7]
    assert cam.lost_frames == 3
    with pytest.raises(InstrumentError, match="streaming"):
        cam.exposure_s = 1.0
    cam.stop()
    with pytest.raises(InstrumentError, match="not streaming"):
        cam.read_frames()


def test_close_twice():
    cam, sdk = make()
    assert cam.snapshot()["adc_quality"] == "Low Noise"
    cam.close()
    cam.close()
    assert sdk.call_names().count("close") == 1


def test_open_instrument_without_runtime_raises_missing_extra():
    with pytest.raises(MissingExtraError, match="PICam runtime"):
        picam_camera.open_instrument(picam_camera.PicamCameraSettings(driver="picam"))
