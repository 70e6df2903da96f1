"""Shamrock/Kymera spectrograph driver against the pylablib fake."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.andor import FakeAndorSDK2Camera
from fakes.shamrock import FakeShamrockSpectrograph
from pylablib.devices.Andor.Shamrock import ShamrockLibError

from micropl.drivers import shamrock
from micropl.drivers.interfaces import Spectrograph
from micropl.errors import InstrumentError, LimitError, MissingExtraError


def make(**kw):
    sdk = FakeShamrockSpectrograph()
    spec = shamrock.ShamrockSpectrograph(sdk, shamrock.ShamrockSettings(driver="shamrock", **kw))
    sdk.clear_calls()
    return spec, sdk


def test_protocol_and_gratings():
    spec, sdk = make()
    assert isinstance(spec, Spectrograph)
    assert [g.grooves_per_mm for g in spec.gratings] == [150, 300, 600, 1200]
    assert spec.gratings[1].slot == 2 and spec.gratings[1].blaze_nm == 500.0


def test_wavelength_in_nm_sent_in_m():
    spec, sdk = make()
    spec.center_wavelength_nm = 515.0
    (args, _), = sdk.calls_to("set_wavelength")
    assert args[0] == pytest.approx(515e-9)
    assert spec.center_wavelength_nm == pytest.approx(515.0)


def test_wavelength_outside_grating_limits_refused_before_sdk():
    spec, sdk = make()
    spec.grating = 4  # 1200 g/mm reaches 1500 nm in the fake
    with pytest.raises(LimitError, match=r"^spectrograph 'spectrograph': GOTO 1450\.0 nm"):
        spec.center_wavelength_nm = 1450.0  # beyond the configured 1400 nm
    with pytest.raises(LimitError):
        spec.center_wavelength_nm = -5
    assert sdk.calls_to("set_wavelength") == []
    with pytest.raises(ShamrockLibError):  # the fake (like the SDK) refuses beyond its limit
        sdk.set_wavelength(1600e-9)


def test_grating_calls_and_refusal():
    spec, sdk = make()
    spec.grating = 2
    assert sdk.calls_to("set_grating") == [((2,), {"force": False})]
    assert spec.grating == 2
    for bad in (0, 5):
        with pytest.raises(LimitError):
            spec.grating = bad
    assert len(sdk.calls_to("set_grating")) == 1
    with pytest.raises(ValueError):
        sdk.set_grating(5)


def test_wavelength_axis_from_sdk_calibration():
    spec, sdk = make()
    spec.grating = 2  # 300 g/mm
    spec.center_wavelength_nm = 515.0
    axis = spec.wavelength_axis_nm(1600, 16.0)
    assert sdk.calls_to("set_number_pixels") == [((1600,), {})]
    (args, _), = sdk.calls_to("set_pixel_width")
    assert args[0] == pytest.approx(16e-6)
    assert axis.shape == (1600,)
    assert np.all(np.diff(axis) > 0)
    assert axis[799:801].mean() == pytest.approx(515.0, abs=0.2)
    # PHYSICS.md: 300 g/mm, 16 µm pixels, ~300 mm focal length -> 0.15-0.2 nm/pixel
    assert 0.15 < np.median(np.diff(axis)) < 0.2
    # independent check: linear dispersion d(lambda)/dx = cos(beta) / (G f)
    g, f = 300e3, 0.303
    half = np.radians(-30.0) / 2
    psi = np.arcsin(g * 515e-9 / (2 * np.cos(half)))
    expected_nm_per_px = np.cos(psi + half) / (g * f) * 16e-6 * 1e9
    assert np.diff(axis)[799] == pytest.approx(expected_nm_per_px, rel=1e-3)


def test_pixels_from_camera_agrees_with_explicit_axis():
    spec, sdk = make()
    cam = FakeAndorSDK2Camera(detector_size=(512, 512), pixel_size_m=16e-6)
    sdk.setup_pixels_from_camera(cam)
    by_camera = sdk.get_calibration() * 1e9
    np.testing.assert_allclose(spec.wavelength_axis_nm(512, 16.0), by_camera)


def test_bad_calibration_arguments_refused():
    spec, sdk = make()
    with pytest.raises(LimitError):
        spec.wavelength_axis_nm(0, 16.0)
    assert sdk.calls_to("set_number_pixels") == []


def test_close_twice():
    spec, sdk = make()
    assert spec.snapshot()["grooves_per_mm"] == 150
    spec.close()
    spec.close()
    assert sdk.call_names().count("close") == 1
    with pytest.raises(InstrumentError):
        spec.grating = 1


def test_open_instrument_without_sdk_raises_missing_extra():
    with pytest.raises(MissingExtraError, match="Shamrock library"):
        shamrock.open_instrument(shamrock.ShamrockSettings(driver="shamrock"))


def test_fake_sdk_calibration_uses_the_grating_convention_of_the_analysis():
    """The fake's SDK calibration (α = ψ − γ/2, β = ψ + γ/2 with Andor's signed deviation
    angle) equals micropl's one grating equation for the same optical parameters."""
    from micropl.grating import wavelength_axis_nm

    spec, sdk = make()
    spec.grating = 2
    spec.center_wavelength_nm = 515.0
    axis = spec.wavelength_axis_nm(1024, 13.0)
    f_m, deviation_deg, tilt_deg = sdk.get_optical_parameters()
    grooves = sdk.gratings[1][0]
    expected = wavelength_axis_nm(1024, 13.0, 515.0, grooves, f_m * 1e3, deviation_deg,
                                  detector_tilt_deg=tilt_deg)
    np.testing.assert_allclose(axis, expected, rtol=0, atol=1e-9)
