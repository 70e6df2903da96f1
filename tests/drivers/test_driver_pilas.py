"""NKT PILAS laser driver: exact protocol bytes, interlocks, and a pyvisa-sim session."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError
from pymeasure.test import expected_protocol

from micropl.drivers import pilas
from micropl.drivers.interfaces import Laser
from micropl.drivers.pilas import Pilas, PilasSettings, open_instrument
from micropl.errors import InstrumentError, LimitError

GOOD_RESOURCE = "ASRL2::INSTR"
HOT_RESOURCE = "ASRL3::INSTR"


def settings(**kwargs) -> PilasSettings:
    return PilasSettings(resource="", **kwargs)


@pytest.fixture
def sim_yaml() -> Path:
    return Path(str(resources.files("micropl.simulators").joinpath("visa/pilas.yaml")))


# --------------------------------------------------------------------------- protocol
def test_construction_sends_nothing():
    with expected_protocol(Pilas, []) as laser:
        assert laser.name == "laser"
        assert laser.wavelength_nm == 405.0


def test_emission_query_parses_on_and_off():
    pairs = [(b"ld?", b"pulsed laser emission: on"), (b"ld?", b"pulsed laser emission: off")]
    with expected_protocol(Pilas, pairs) as laser:
        assert laser.emission_on is True
        assert laser.emission_on is False


def test_emission_on_checks_the_diode_temperature_first():
    pairs = [(b"ldtemp?", b"LD temp.:\t\tgood"), (b"ld=1", b"done")]
    with expected_protocol(Pilas, pairs) as laser:
        laser.emission_on = True


def test_emission_on_refused_while_temperature_is_bad():
    with expected_protocol(Pilas, [(b"ldtemp?", b"LD temp.:\t\tbad")]) as laser:
        with pytest.raises(InstrumentError) as info:
            laser.emission_on = True
    assert not isinstance(info.value, LimitError)
    assert str(info.value) == (
        "laser 'laser': emission on refused: laser-diode temperature status is 'bad'"
    )


def test_emission_off_needs_no_temperature_check():
    with expected_protocol(Pilas, [(b"ld=0", b"done")]) as laser:
        laser.emission_on = False


def test_power_get_and_set_in_per_mille():
    pairs = [(b"tune?", b"tune value:\t\t     45.00 %"), (b"tune=455", b"done")]
    with expected_protocol(Pilas, pairs) as laser:
        assert laser.power_percent == pytest.approx(45.0)
        laser.power_percent = 45.5


def test_power_above_the_configured_maximum_is_refused_before_sending():
    with expected_protocol(Pilas, [], settings=settings(max_power_percent=30)) as laser:
        with pytest.raises(LimitError) as info:
            laser.power_percent = 30.1
        assert str(info.value) == (
            "laser 'laser': power 30.1 % refused: allowed 0–30 % (max_power_percent)"
        )
        for bad in (-0.1, math.nan, 101):
            with pytest.raises(LimitError):
                laser.power_percent = bad


def test_power_at_the_maximum_is_allowed():
    with expected_protocol(Pilas, [(b"tune=300", b"done")], settings=settings(max_power_percent=30)) as laser:
        laser.power_percent = 30.0


def test_rep_rate_get_set_and_limits():
    pairs = [(b"f?", b"int. frequency:\t       10000000 Hz"), (b"f=40000000", b"done"),
             (b"f=25", b"done")]
    with expected_protocol(Pilas, pairs) as laser:
        assert laser.rep_rate_hz == 10e6
        laser.rep_rate_hz = 40e6
        laser.rep_rate_hz = 25
        with pytest.raises(LimitError, match="repetition rate 24 Hz refused: range 25–4e\\+07 Hz"):
            laser.rep_rate_hz = 24
        with pytest.raises(LimitError):
            laser.rep_rate_hz = 41e6


def test_trigger_source_and_tune_mode():
    pairs = [
        (b"ts=0", b"done"),
        (b"ts=2", b"done"),
        (b"ts?", b"trigger source: internal"),
        (b"ts?", b"2"),
        (b"tm=0", b"done"),
        (b"tm?", b"tune mode:\tmanual"),
        (b"tm?", b"tune mode:\tauto"),
    ]
    with expected_protocol(Pilas, pairs) as laser:
        laser.trigger_source = "internal"
        laser.trigger_source = "external"
        assert laser.trigger_source == "internal"
        assert laser.trigger_source == "external"
        laser.tune_mode = "manual"
        assert laser.tune_mode == "manual"
        assert laser.tune_mode == "auto"
        with pytest.raises(ValueError):
            laser.trigger_source = "gated"


def test_temperatures():
    # the controller sends the degree sign in latin-1 (the VISA connection is opened
    # with encoding latin-1, see test_sim_session); ProtocolAdapter decodes UTF-8 only
    pairs = [(b"lht?", "laser head temp.:\t     25.3 °C"),
             (b"ldtemp?", b"LD temp.:\t\tgood")]
    with expected_protocol(Pilas, pairs) as laser:
        assert laser.head_temperature_c == pytest.approx(25.3)
        assert laser.diode_temperature_status == "good"


def test_a_setting_not_answered_done_raises():
    with expected_protocol(Pilas, [(b"f=1000", b"error")]) as laser:
        with pytest.raises(InstrumentError, match="'f=1000' failed: reply 'error'"):
            laser.rep_rate_hz = 1000


def test_off_never_refuses_and_confirms():
    pairs = [(b"ld=0", b"done"), (b"ld?", b"pulsed laser emission: off")]
    with expected_protocol(Pilas, pairs) as laser:
        laser.off()


def test_off_tolerates_an_odd_reply_but_checks_the_state():
    pairs = [(b"ld=0", b"busy"), (b"ld?", b"pulsed laser emission: off")]
    with expected_protocol(Pilas, pairs) as laser:
        laser.off()


def test_off_reports_emission_that_stays_on():
    pairs = [(b"ld=0", b"done"), (b"ld?", b"pulsed laser emission: on")]
    with expected_protocol(Pilas, pairs) as laser:
        with pytest.raises(InstrumentError, match="emission still on"):
            laser.off()


def test_unparseable_reply_is_an_error_not_a_value():
    with expected_protocol(Pilas, [(b"ld?", b"pulsed laser emission: maybe")]) as laser:
        with pytest.raises(InstrumentError, match="on/off"):
            laser.emission_on  # noqa: B018


def test_close_twice_is_safe():
    with expected_protocol(Pilas, []) as laser:
        laser.close()
        laser.close()


# --------------------------------------------------------------------------- settings
def test_settings():
    with pytest.raises(ValidationError):
        PilasSettings(resource="x", max_power_percent=120)
    with pytest.raises(ValidationError):
        PilasSettings(resource="x", rep_rate_hz=50e6)
    with pytest.raises(ValidationError):
        PilasSettings(resource="x", colour="blue")
    assert PilasSettings(resource="x").rep_rate_hz == 10e6
    assert pilas.DRIVERS == {"laser": PilasSettings}


# --------------------------------------------------------------------------- pyvisa-sim session
def test_sim_session(sim_yaml):
    laser = open_instrument(
        PilasSettings(resource=GOOD_RESOURCE, visa_library=f"{sim_yaml}@sim", max_power_percent=60)
    )
    try:
        connection = laser.adapter.connection
        assert (connection.write_termination, connection.read_termination) == ("\n", "\n")
        assert connection.baud_rate == 19200
        assert connection.encoding == "latin-1"
        assert isinstance(laser, Laser)
        # open_instrument applied the configured start-up state
        assert laser.tune_mode == "manual"
        assert laser.trigger_source == "internal"
        assert laser.rep_rate_hz == 10e6
        laser.power_percent = 12.5
        assert laser.power_percent == pytest.approx(12.5)
        with pytest.raises(LimitError):
            laser.power_percent = 61
        assert laser.power_percent == pytest.approx(12.5)
        laser.rep_rate_hz = 2.5e6
        assert laser.rep_rate_hz == 2.5e6
        laser.emission_on = True
        assert laser.emission_on is True
        snap = laser.snapshot()
        assert snap["emission_on"] is True and snap["power_percent"] == pytest.approx(12.5)
        assert snap["head_temperature_c"] == pytest.approx(25.3)
        laser.off()
        assert laser.emission_on is False
    finally:
        laser.close()
        laser.close()


def test_sim_hot_head_refuses_emission(sim_yaml):
    laser = Pilas(HOT_RESOURCE, visa_library=f"{sim_yaml}@sim")
    try:
        with pytest.raises(InstrumentError, match="status is 'bad'"):
            laser.emission_on = True
        assert laser.emission_on is False
        laser.off()  # must not raise on a reachable device
    finally:
        laser.close()
