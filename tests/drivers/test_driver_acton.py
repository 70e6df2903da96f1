"""Acton SpectraPro driver: exact protocol bytes, limits, and a pyvisa-sim session."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from fakes.clock import FakeClock
from pydantic import ValidationError
from pymeasure.adapters import ProtocolAdapter
from pymeasure.test import expected_protocol

from micropl.drivers import acton
from micropl.drivers.acton import (
    ActonSettings,
    SpectraPro,
    open_instrument,
    parse_gratings,
)
from micropl.drivers.interfaces import Spectrograph
from micropl.errors import InstrumentError, InstrumentTimeout, LimitError
from micropl.grating import wavelength_axis_nm
from micropl.records import Grating

CONNECT = [(b"NO-ECHO", b" ok")]
GRATINGS_REPLY = [
    (b"?GRATINGS", b""),
    (None, b"\x1a1  150 g/mm BLZ=  500NM "),
    (None, b" 2  300 g/mm BLZ=  1.6UM"),
    (None, b">3 1200 g/mm BLZ=  750NM "),
    (None, b" 4  Not Installed     "),
    (None, b" ok"),
]
SIM_RESOURCE = "ASRL1::INSTR"


def settings(**kwargs) -> ActonSettings:
    return ActonSettings(resource="", **kwargs)



@pytest.fixture
def sim_yaml() -> Path:
    path = resources.files("micropl.simulators").joinpath("visa/acton.yaml")
    return Path(str(path))


@pytest.fixture
def sim(sim_yaml: Path):
    sp = SpectraPro(SIM_RESOURCE, "spectrograph", visa_library=f"{sim_yaml}@sim")
    yield sp
    sp.close()


# --------------------------------------------------------------------------- protocol
def test_connect_sends_no_echo_only():
    with expected_protocol(SpectraPro, CONNECT) as sp:
        assert sp.name == "spectrograph"


def test_no_echo_accepted_while_echo_is_still_on():
    # the serial port echoes the command until NO-ECHO has been processed
    with expected_protocol(SpectraPro, [(b"NO-ECHO", b"NO-ECHO ok")]):
        pass


def test_center_wavelength_get():
    with expected_protocol(SpectraPro, CONNECT + [(b"?NM", b" 546.074 nm  ok")]) as sp:
        assert sp.center_wavelength_nm == pytest.approx(546.074)


def test_center_wavelength_set_sends_goto_and_waits_for_ok():
    pairs = CONNECT + [(b"515.250 GOTO", b" ok")]
    with expected_protocol(SpectraPro, pairs, settings=settings(range_grooves_per_mm=None)) as sp:
        sp.center_wavelength_nm = 515.25


def test_goto_and_grating_raise_the_adapter_timeout_for_that_command_only():
    pairs = CONNECT + [(b"600.000 GOTO", b" ok"), (b"?NM", b" 600.000 nm  ok")]
    pairs += GRATINGS_REPLY + [(b"3 GRATING", b" ok"), (b"?GRATING", b" 3  ok")]
    adapter = ProtocolAdapter(pairs)

    class Connection:
        def __init__(self) -> None:
            self._timeout = 2000
            self.history: list[int] = []

        @property
        def timeout(self) -> int:
            return self._timeout

        @timeout.setter
        def timeout(self, value: int) -> None:
            self.history.append(value)
            self._timeout = value

        def close(self) -> None:
            pass

    adapter.connection = Connection()
    sp = SpectraPro(
        adapter,
        settings=settings(range_grooves_per_mm=None, move_timeout_s=45, grating_timeout_s=25),
    )
    sp.center_wavelength_nm = 600
    assert adapter.connection.history == [45000, 2000]
    assert sp.center_wavelength_nm == 600.0
    assert adapter.connection.history == [45000, 2000]  # ?NM kept the normal timeout
    sp.grating = 3
    assert sp.grating == 3
    assert adapter.connection.history == [45000, 2000, 25000, 2000]


def test_goto_out_of_range_is_refused_before_anything_is_sent():
    with expected_protocol(SpectraPro, CONNECT, settings=settings(range_grooves_per_mm=None)) as sp:
        with pytest.raises(LimitError) as info:
            sp.center_wavelength_nm = 9999
        assert str(info.value) == (
            "spectrograph 'spectrograph': GOTO 9999.0 nm refused: range 0–1400 nm"
        )
        for bad in (-1.0, math.nan, math.inf):
            with pytest.raises(LimitError):
                sp.center_wavelength_nm = bad


def test_range_scales_with_the_grating_in_place():
    # 1400 nm at 1200 g/mm -> 5600 nm at 300 g/mm: 5000 nm is allowed, 6000 nm is not
    pairs = CONNECT + GRATINGS_REPLY + [
        (b"?GRATING", b" 2  ok"),
        (b"5000.000 GOTO", b" ok"),
        (b"?GRATING", b" 2  ok"),
    ]
    with expected_protocol(SpectraPro, pairs) as sp:
        sp.center_wavelength_nm = 5000
        with pytest.raises(LimitError, match="range 0–5600 nm"):
            sp.center_wavelength_nm = 6000


def test_range_of_the_1200_grating_is_the_manual_range():
    pairs = CONNECT + GRATINGS_REPLY + [(b"?GRATING", b" 3  ok")]
    with expected_protocol(SpectraPro, pairs) as sp:
        with pytest.raises(LimitError, match="GOTO 1500.0 nm refused: range 0–1400 nm"):
            sp.center_wavelength_nm = 1500


def test_grating_get_and_set_with_long_timeout():
    pairs = CONNECT + [(b"?GRATING", b" 1  ok")] + GRATINGS_REPLY + [(b"2 GRATING", b" ok")]
    with expected_protocol(SpectraPro, pairs) as sp:
        assert sp.grating == 1
        sp.grating = 2


def test_grating_not_installed_is_refused_before_sending():
    with expected_protocol(SpectraPro, CONNECT + GRATINGS_REPLY) as sp:
        with pytest.raises(LimitError) as info:
            sp.grating = 4
        assert str(info.value) == (
            "spectrograph 'spectrograph': GRATING 4 refused: installed slots 1, 2, 3"
        )
        for bad in (0, 2.5, math.nan):
            with pytest.raises(LimitError):
                sp.grating = bad


def test_a_gap_in_the_turret_is_refused():
    reply = [(b"?GRATINGS", b"\x1a1  150 g/mm BLZ=  500NM"), (None, b" 2  Not Installed"),
             (None, b" 3  600 g/mm BLZ=  500NM"), (None, b" ok")]
    with expected_protocol(SpectraPro, CONNECT + reply + [(b"3 GRATING", b" ok")]) as sp:
        with pytest.raises(LimitError, match="installed slots 1, 3"):
            sp.grating = 2
        sp.grating = 3


def test_gratings_are_parsed_from_the_multi_line_reply():
    with expected_protocol(SpectraPro, CONNECT + GRATINGS_REPLY) as sp:
        gratings = sp.gratings
    assert gratings == [
        Grating(1, 150.0, 500.0),
        Grating(2, 300.0, 1600.0),
        Grating(3, 1200.0, 750.0),
    ]


def test_parse_gratings_handles_arrow_blaze_units_and_empty_slots():
    reply = (
        "\x1a1  600 g/mm BLZ=  1.6UM \n 2  150 g/mm BLZ=    2UM \n 3  Not Installed     \n"
        " 4  Not Installed"
    )
    assert parse_gratings(reply) == [Grating(1, 600.0, 1600.0), Grating(2, 150.0, 2000.0)]
    only_density = parse_gratings(" 1  1800 g/mm")
    assert only_density[0].grooves_per_mm == 1800.0 and math.isnan(only_density[0].blaze_nm)


def test_model_and_serial():
    pairs = CONNECT + [(b"MODEL", b" SP-2-300i  ok"), (b"SERIAL", b" 23001234 ok")]
    with expected_protocol(SpectraPro, pairs) as sp:
        assert sp.model == "SP-2-300i"
        assert sp.serial == "23001234"


def test_unknown_command_raises_naming_the_command():
    with expected_protocol(SpectraPro, CONNECT + [(b"?FOO", b"?FOO ?")]) as sp:
        with pytest.raises(InstrumentError, match=r"command '\?FOO' not understood"):
            sp.ask("?FOO")


def test_failed_goto_raises_instead_of_returning():
    pairs = CONNECT + [(b"500.000 GOTO", b"500.000 GOTO ?")]
    with expected_protocol(SpectraPro, pairs, settings=settings(range_grooves_per_mm=None)) as sp:
        with pytest.raises(InstrumentError, match="GOTO"):
            sp.center_wavelength_nm = 500


def test_non_blocking_move_polls_until_done():
    clock = FakeClock()
    pairs = CONNECT + [
        (b"700.000 >NM", b" ok"),
        (b"MONO-?DONE", b" 0 ok"),
        (b"MONO-?DONE", b" 0 ok"),
        (b"MONO-?DONE", b" 1 ok"),
    ]
    with expected_protocol(
        SpectraPro, pairs, settings=settings(range_grooves_per_mm=None), clock=clock
    ) as sp:
        sp.start_move_nm(700)
        sp.wait_until_done(timeout_s=5, poll_s=0.2)
    assert clock.sleeps == [0.2, 0.2]


def test_non_blocking_move_times_out_on_the_clock():
    clock = FakeClock()
    pairs = CONNECT + [(b"MONO-?DONE", b" 0 ok")] * 4
    with expected_protocol(SpectraPro, pairs, clock=clock) as sp:
        with pytest.raises(InstrumentTimeout, match="spectrograph 'spectrograph': move not done"):
            sp.wait_until_done(timeout_s=0.3, poll_s=0.1)
    assert clock.t == pytest.approx(0.3)


def test_non_blocking_move_out_of_range_is_refused():
    with expected_protocol(SpectraPro, CONNECT, settings=settings(range_grooves_per_mm=None)) as sp:
        with pytest.raises(LimitError, match=">NM 2000.0 nm refused"):
            sp.start_move_nm(2000)


def test_wavelength_axis_uses_current_grating_and_centre():
    pairs = CONNECT + [(b"?NM", b" 515.000 nm  ok")] + GRATINGS_REPLY + [(b"?GRATING", b" 2  ok")]
    with expected_protocol(SpectraPro, pairs) as sp:
        axis = sp.wavelength_axis_nm(1601, 16.0)
    # the driver uses the one grating equation of the analysis layer, with its settings
    expected = wavelength_axis_nm(1601, 16.0, 515.0, 300.0, 300.0, 15.15)
    np.testing.assert_allclose(axis, expected, rtol=0, atol=1e-12)
    assert axis[800] == pytest.approx(515.0, abs=1e-9)


def test_close_twice_is_safe():
    with expected_protocol(SpectraPro, CONNECT) as sp:
        sp.close()
        sp.close()


# --------------------------------------------------------------------------- grating equation
def _axis(center_nm, grooves, n_px, pixel_um, focal_mm, gamma_deg, delta_deg=0.0, order=1):
    """The axis the driver computes (``SpectraPro.wavelength_axis_nm`` calls this)."""
    return wavelength_axis_nm(n_px, pixel_um, center_nm, grooves, focal_mm, gamma_deg, order,
                              detector_tilt_deg=delta_deg)


def _pixel_position_mm(wavelength_nm, center_nm, grooves, focal_mm, gamma_deg, delta_deg):
    """Independent inverse: where a wavelength lands on the (tilted) detector.

    Diffraction angle from the grating equation, then intersection of that ray
    (from the focusing mirror, ideal lens of focal length f) with the detector
    line through (0, f) tilted by delta.
    """
    d = 1e6 / grooves
    half = math.radians(gamma_deg) / 2
    psi = math.asin(center_nm / (2 * d * math.cos(half)))
    alpha, beta_c = psi - half, psi + half
    beta = np.arcsin(np.asarray(wavelength_nm) / d - math.sin(alpha))
    theta = beta - beta_c
    delta = math.radians(delta_deg)
    # ray (s sin th, s cos th) meets detector point (u cos d, f + u sin d)
    return focal_mm * np.tan(theta) / (math.cos(delta) - math.sin(delta) * np.tan(theta))


@pytest.mark.parametrize(
    ("center_nm", "grooves", "gamma_deg", "delta_deg"),
    [(515.0, 300.0, 15.15, 0.0), (760.0, 1200.0, 24.66, 3.0), (400.0, 150.0, 8.59, -2.0)],
)
def test_grating_equation_against_ray_geometry(center_nm, grooves, gamma_deg, delta_deg):
    n_px, pixel_um, focal = 1024, 13.0, 300.0
    axis = _axis(center_nm, grooves, n_px, pixel_um, focal, gamma_deg, delta_deg)
    x_expected_mm = (np.arange(n_px) - (n_px - 1) / 2) * pixel_um * 1e-3
    x_mm = _pixel_position_mm(axis, center_nm, grooves, focal, gamma_deg, delta_deg)
    np.testing.assert_allclose(x_mm, x_expected_mm, atol=1e-9)
    assert np.all(np.diff(axis) > 0)


def test_dispersion_matches_textbook_formula_and_physics_numbers():
    # linear dispersion at the centre: dλ/dx = d cos β / (m f)
    center, grooves, focal, gamma = 515.0, 300.0, 300.0, 15.15
    axis = _axis(center, grooves, 1601, 16.0, focal, gamma)
    d = 1e6 / grooves
    half = math.radians(gamma) / 2
    beta = math.asin(center / (2 * d * math.cos(half))) + half
    nm_per_px = d * math.cos(beta) / focal * 16e-3
    assert (axis[801] - axis[799]) / 2 == pytest.approx(nm_per_px, rel=1e-6)
    # PHYSICS.md: 300 g/mm, 16 µm pixels, 300 mm -> ≈0.15–0.2 nm/pixel
    assert 0.15 <= nm_per_px <= 0.2


def test_negative_order_and_unreachable_wavelength():
    axis_m1 = _axis(500.0, 600.0, 11, 16.0, 300.0, 15.0, order=-1)
    assert axis_m1[5] == pytest.approx(500.0)
    # unreachable centre: the driver names itself and the setting
    pairs = CONNECT + [(b"?NM", b" 1400.000 nm  ok")] + GRATINGS_REPLY + [(b"?GRATING", b" 2  ok")]
    with expected_protocol(SpectraPro, pairs,
                           settings=settings(focal_length_mm=300.0, inclusion_angle_deg=15.0,
                                             diffraction_order=5)) as sp:
        with pytest.raises(InstrumentError,
                           match=r"^spectrograph 'spectrograph': no wavelength axis at 1400 nm "
                                 r"with 300 g/mm: .*not reachable"):
            sp.wavelength_axis_nm(11, 16.0)


# --------------------------------------------------------------------------- settings / module
def test_settings_validate_and_forbid_unknown_keys():
    with pytest.raises(ValidationError):
        ActonSettings(resource="x", foo=1)
    with pytest.raises(ValidationError, match="wavelength_range_nm"):
        ActonSettings(resource="x", wavelength_range_nm=(500, 400))
    with pytest.raises(ValidationError):
        ActonSettings(resource="x", diffraction_order=0)
    assert acton.DRIVERS == {"spectrograph": ActonSettings}
    assert "pyvisa" in acton.REQUIRES


def test_open_instrument_reports_a_missing_resource_as_instrument_error(sim_yaml):
    bad = ActonSettings(resource="not a resource", visa_library=f"{sim_yaml}@sim")
    with pytest.raises(InstrumentError, match="spectrograph 'spectrograph': cannot open"):
        open_instrument(bad)


def test_a_reply_without_ok_ends_in_an_error_not_a_hang():
    pairs = CONNECT + [(b"?NM", b"")] + [(None, b"")] * 31
    with expected_protocol(SpectraPro, pairs) as sp:
        with pytest.raises(InstrumentError, match="no 'ok' within 32 reply lines to '\\?NM'"):
            sp.center_wavelength_nm  # noqa: B018


# --------------------------------------------------------------------------- pyvisa-sim session
def test_sim_terminations_and_serial_settings(sim):
    connection = sim.adapter.connection
    assert connection.write_termination == "\r"
    assert connection.read_termination == "\r\n"
    assert connection.baud_rate == 9600


def test_sim_session_round_trips(sim):
    assert isinstance(sim, Spectrograph)
    assert sim.model == "SP-2-300i"
    assert [g.grooves_per_mm for g in sim.gratings] == [150.0, 300.0, 1200.0]
    sim.grating = 2
    assert sim.grating == 2
    sim.center_wavelength_nm = 515.0
    assert sim.center_wavelength_nm == pytest.approx(515.0)
    axis = sim.wavelength_axis_nm(1600, 16.0)
    assert axis.shape == (1600,)
    assert axis[0] < 515.0 < axis[-1]
    assert 0.15 < np.diff(axis).mean() < 0.2
    sim.grating = 3
    with pytest.raises(LimitError, match="range 0–1400 nm"):
        sim.center_wavelength_nm = 1500.0
    sim.start_move_nm(600.0)
    sim.wait_until_done(timeout_s=2.0)
    snap = sim.snapshot()
    assert snap["grating"] == 3 and snap["grooves_per_mm"] == 1200.0
    assert snap["center_wavelength_nm"] == pytest.approx(515.0)
    with pytest.raises(InstrumentError, match="'BOGUS' not understood"):
        sim.ask("BOGUS")
    # the session continues after an error
    assert sim.grating == 3


def test_sim_open_instrument(sim_yaml):
    inst = open_instrument(
        ActonSettings(resource=SIM_RESOURCE, visa_library=f"{sim_yaml}@sim", name="mono")
    )
    try:
        assert inst.name == "mono"
        assert inst.settings.focal_length_mm == 300.0
        assert inst.serial == "23001234"
    finally:
        inst.close()
        inst.close()
