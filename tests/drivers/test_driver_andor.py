"""Andor SDK2 camera driver against the in-process pylablib fake."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fakes.andor import FakeAndorSDK2Camera
from pylablib.devices.Andor.AndorSDK2 import AndorSDK2LibError

from micropl.drivers import andor_camera
from micropl.drivers.interfaces import Camera
from micropl.errors import InstrumentError, LimitError, MissingExtraError


def make(**fake_kw):
    sdk = FakeAndorSDK2Camera(**fake_kw)
    settings = andor_camera.AndorCameraSettings(driver="andor", name="ixon")
    cam = andor_camera.AndorCamera(sdk, settings)
    sdk.clear_calls()
    return cam, sdk


def test_satisfies_protocol_and_geometry():
    cam, sdk = make(detector_size=(512, 512), pixel_size_m=16e-6)
    assert isinstance(cam, Camera)
    assert cam.sensor_shape == (512, 512)
    assert cam.pixel_um == pytest.approx(16.0)
    assert cam.name == "ixon"


def test_em_gain_calls_sdk_with_advanced_flag():
    cam, sdk = make()
    cam.em_gain = 250
    assert sdk.calls_to("set_EMCCD_gain") == [((250,), {"advanced": False})]
    assert sdk.em_gain == 250
    cam.em_gain_advanced = True
    cam.em_gain = 800
    assert sdk.calls_to("set_EMCCD_gain")[-1] == ((800,), {"advanced": True})
    assert cam.em_gain == 800


@pytest.mark.parametrize(
    ("gain", "advanced", "temperature_c", "match"),
    [
        (301, False, -80.0, "unless em_gain_advanced"),
        (1001, True, -80.0, "1–1000"),
        (0, False, -80.0, "1–1000"),
        (2, False, -50.0, "-60 °C"),
        (300, True, -59.9, "-60 °C"),
    ],
)
def test_em_gain_refused_before_sdk(gain, advanced, temperature_c, match):
    cam, sdk = make(sensor_temperature_c=temperature_c)
    if advanced:
        cam.em_gain_advanced = True
    sdk.clear_calls()
    with pytest.raises(LimitError, match=match) as err:
        cam.em_gain = gain
    assert str(err.value).startswith("camera 'ixon': SET EM GAIN")
    assert sdk.calls_to("set_EMCCD_gain") == []  # never reached the SDK


def test_gain_one_allowed_while_warm():
    cam, sdk = make(sensor_temperature_c=20.0)
    cam.em_gain = 1
    assert sdk.em_gain == 1


def test_fake_refuses_like_sdk_what_driver_refuses():
    """The fake (like the SDK) raises for 301 without advanced mode: the driver's check
    is what keeps that call from being made."""
    _, sdk = make()
    with pytest.raises(AndorSDK2LibError):
        sdk.set_EMCCD_gain(301, advanced=False)
    with pytest.raises(AndorSDK2LibError):
        sdk.set_EMCCD_gain(1001, advanced=True)
    with pytest.raises(ValueError):
        sdk.set_read_mode("roi")  # our name, not an SDK read mode


def test_advanced_off_refused_while_gain_high():
    cam, sdk = make()
    cam.em_gain_advanced = True
    cam.em_gain = 500
    sdk.clear_calls()
    with pytest.raises(LimitError):
        cam.em_gain_advanced = False
    assert sdk.calls == []


def test_read_modes_map_to_sdk():
    cam, sdk = make(detector_size=(1600, 200))
    cam.read_mode = "image"
    cam.roi_rows = (90, 101)
    cam.read_mode = "roi"
    cam.read_mode = "fvb"
    assert [c[0] for c in sdk.calls] == [
        "setup_image_mode", "setup_single_track_mode", "set_read_mode"]
    assert sdk.calls_to("setup_single_track_mode") == [((), {"center": 95, "width": 11})]
    assert sdk.calls_to("set_read_mode") == [(("fvb",), {})]
    with pytest.raises(LimitError):
        cam.read_mode = "single_track"
    with pytest.raises(LimitError):
        cam.roi_rows = (190, 201)  # beyond the 200-row sensor
    with pytest.raises(LimitError):
        cam.roi_rows = (90, 100)  # even height cannot be centred
    assert len(sdk.calls) == 3


def test_exposure_temperature_shutter():
    cam, sdk = make()
    cam.exposure_s = 0.5
    assert sdk.calls_to("set_exposure") == [((0.5,), {})]
    with pytest.raises(LimitError):
        cam.exposure_s = 0
    with pytest.raises(LimitError):
        cam.exposure_s = 601
    cam.target_temperature_c = -70
    assert sdk.calls_to("set_temperature") == [((-70,), {"enable_cooler": True})]
    with pytest.raises(LimitError):
        cam.target_temperature_c = -120  # outside settings and SDK range: the SDK would clamp
    assert len(sdk.calls_to("set_temperature")) == 1
    cam.cooler_on = False
    assert sdk.calls_to("set_cooler") == [((False,), {})]
    cam.set_shutter("open")
    assert sdk.calls_to("setup_shutter") == [(("open",), {"ttl_mode": 0, "open_time": None,
                                                         "close_time": None})]
    with pytest.raises(LimitError):
        cam.set_shutter("half")


def test_cooler_off_refused_with_em_gain():
    cam, sdk = make()
    cam.em_gain = 10
    with pytest.raises(LimitError):
        cam.cooler_on = False
    assert sdk.calls_to("set_cooler") == []


def test_e_per_adu_from_preamp():
    cam, sdk = make(preamp_gains=(1.0, 2.0, 4.0), preamp=2)
    assert cam.e_per_adu == pytest.approx(4.0 / 4.0)
    sdk.preamp = 0
    assert cam.e_per_adu == pytest.approx(4.0)


def test_acquire_single_frame_fvb():
    cam, sdk = make(detector_size=(64, 8))
    cam.exposure_s = 0.1
    cam.em_gain = 50
    sdk.clear_calls()
    frame = cam.acquire()
    names = sdk.call_names()
    assert names[:5] == ["setup_acquisition", "start_acquisition", "wait_for_frame",
                         "read_multiple_images", "stop_acquisition"]
    assert sdk.calls_to("setup_acquisition") == [((), {"mode": "kinetic", "nframes": 1})]
    assert frame.counts.shape == (64,)
    np.testing.assert_array_equal(frame.counts, 500 + np.arange(64))
    assert frame.em_gain == 50 and frame.read_mode == "fvb" and frame.exposure_s == 0.1


def test_acquire_image_shape():
    cam, sdk = make(detector_size=(32, 8))
    cam.read_mode = "image"
    frame = cam.acquire()
    assert frame.counts.shape == (8, 32)


def test_stream_detects_lost_frames(caplog):
    cam, sdk = make(detector_size=(16, 4), buffer_size=4)
    cam.start_stream()
    assert sdk.calls_to("setup_acquisition") == [((), {"mode": "cont", "nframes": None})]
    sdk.advance_frames(3)
    first = cam.read_frames()
    assert [f.index for f in first] == [0, 1, 2]
    sdk.advance_frames(7)  # frames 3..9, but the ring holds only the newest 4
    with caplog.at_level(logging.WARNING):
        second = cam.read_frames()
    assert [f.index for f in second] == [6, 7, 8, 9]
    assert cam.lost_frames == 3
    assert "3 frame(s) lost" in caplog.text
    # each frame carries its own data
    np.testing.assert_array_equal(second[0].counts, 500 + 60 + np.arange(16))
    assert sdk.get_frames_status().skipped == 3
    assert cam.read_frames() == []
    cam.stop()
    assert sdk.call_names()[-1] == "stop_acquisition"


def test_kinetic_series():
    cam, sdk = make(detector_size=(16, 4), buffer_size=10)
    cam.start_stream(n_frames=5)
    assert sdk.calls_to("setup_acquisition") == [((), {"mode": "kinetic", "nframes": 5})]
    sdk.advance_frames(10)  # a kinetic series stops after 5
    assert [f.index for f in cam.read_frames()] == [0, 1, 2, 3, 4]
    assert not sdk.acquisition_in_progress()


def test_read_and_settings_refused_while_not_or_while_streaming():
    cam, sdk = make()
    with pytest.raises(InstrumentError, match="not streaming"):
        cam.read_frames()
    assert sdk.calls_to("read_multiple_images") == []
    cam.start_stream()
    with pytest.raises(InstrumentError, match="streaming"):
        cam.read_mode = "image"
    with pytest.raises(InstrumentError, match="streaming"):
        cam.acquire()
    cam.stop()


def test_fake_refuses_reading_without_acquisition():
    _, sdk = make()
    assert sdk.read_multiple_images() is None
    assert sdk.wait_for_frame() is False
    with pytest.raises(RuntimeError):
        sdk.wait_for_frame(error_on_stopped=True)


def test_close_twice_and_snapshot():
    cam, sdk = make()
    snap = cam.snapshot()
    assert snap["em_gain"] == 1 and snap["read_mode"] == "fvb" and "temperature_c" in snap
    cam.close()
    cam.close()
    assert sdk.call_names().count("close") == 1
    with pytest.raises(InstrumentError):
        cam.exposure_s = 1.0


def test_open_instrument_without_sdk_raises_missing_extra():
    settings = andor_camera.AndorCameraSettings(driver="andor")
    with pytest.raises(MissingExtraError, match="Andor SDK2 library"):
        andor_camera.open_instrument(settings)


def test_settings_forbid_extra_keys():
    with pytest.raises(ValueError):
        andor_camera.AndorCameraSettings(driver="andor", bogus=1)
    assert andor_camera.DRIVERS == {"camera": andor_camera.AndorCameraSettings}
