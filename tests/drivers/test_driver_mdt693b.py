"""Thorlabs MDT693B driver: exact protocol bytes, µm calibration, and a pyvisa-sim session."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from fakes.clock import FakeClock
from pydantic import ValidationError
from pymeasure.test import expected_protocol

from micropl.drivers import mdt693b
from micropl.drivers.interfaces import Scanner
from micropl.drivers.mdt693b import MDT693B, Mdt693bSettings, open_instrument
from micropl.errors import InstrumentError, LimitError

# 20 µm over 75 V on x and y; z mounted the other way round, 10 µm over 75 V from 5 µm
CAL = {"um_per_volt": (20 / 75, 20 / 75, -10 / 75), "offset_um": (0.0, 0.0, 5.0)}


def settings(**kwargs) -> Mdt693bSettings:
    return Mdt693bSettings(resource="", **{**CAL, **kwargs})


def connect(limit: bytes = b"[ 150]\r") -> list[tuple[bytes, bytes]]:
    # replies are read up to the prompt '>', which is the read termination
    return [(b"echo=0", b""), (b"vlimit?", limit)]



@pytest.fixture
def sim_yaml() -> Path:
    return Path(str(resources.files("micropl.simulators").joinpath("visa/mdt693b.yaml")))


# --------------------------------------------------------------------------- protocol
def test_connect_switches_echo_off_and_reads_the_limit_switch():
    with expected_protocol(MDT693B, connect(), settings=settings()) as scanner:
        assert scanner.voltage_limit_v == 150.0
        # full 0–150 V range: x, y 0–40 µm, z 5 µm down to -15 µm
        assert scanner.limits_um == ((0.0, 40.0), (0.0, 40.0), (-15.0, 5.0))


def test_echo_of_the_first_command_is_tolerated():
    pairs = [(b"echo=0", b"echo=0\r"), (b"vlimit?", b"[ 100]\r")]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        assert scanner.voltage_limit_v == 100.0


def test_max_voltage_setting_narrows_the_limits():
    with expected_protocol(MDT693B, connect(), settings=settings(max_voltage_v=75)) as scanner:
        assert scanner.limits_um == ((0.0, 20.0), (0.0, 20.0), (-5.0, 5.0))


def test_unexpected_voltage_limit_is_an_error():
    with pytest.raises(InstrumentError, match="unexpected voltage limit 120 V"):
        with expected_protocol(MDT693B, connect(b"[ 120]\r"), settings=settings()):
            pass


def test_axis_voltage_get_and_set():
    pairs = connect() + [
        (b"xvoltage?", b"[  24.80]\r"),
        (b"yvoltage=12.500", b""),
        (b"zvoltage?", b"[   0.00]\r"),
    ]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        assert scanner.ch_x.voltage_v == pytest.approx(24.8)
        scanner.ch_y.voltage_v = 12.5
        assert scanner.ch_z.voltage_v == 0.0


def test_voltage_above_limit_is_refused_before_sending():
    with expected_protocol(MDT693B, connect(b"[  75]\r"), settings=settings()) as scanner:
        with pytest.raises(LimitError) as info:
            scanner.ch_x.voltage_v = 75.5
        assert str(info.value) == "scanner 'scanner': x voltage 75.5 V refused: range 0–75 V"
        for bad in (-0.1, math.nan):
            with pytest.raises(LimitError):
                scanner.ch_z.voltage_v = bad


def test_move_to_converts_um_to_volts():
    pairs = connect() + [
        (b"xvoltage=37.500", b""),   # 10 µm / (20/75 µm/V)
        (b"yvoltage=75.000", b""),   # 20 µm
        (b"zvoltage=30.000", b""),   # z = 5 - 10/75 V -> 1 µm at 30 V
    ]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        scanner.move_to(10.0, 20.0, 1.0)
        assert scanner.target_um == (10.0, 20.0, 1.0)


def test_move_to_without_z_leaves_z_alone():
    pairs = connect() + [(b"xvoltage=0.000", b""), (b"yvoltage=150.000", b"")]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        scanner.move_to(0.0, 40.0)
        x, y, z = scanner.target_um
        assert (x, y) == (0.0, 40.0) and math.isnan(z)


def test_move_outside_refused_before_anything_is_sent():
    # y is fine but x is outside: nothing at all may be written
    with expected_protocol(MDT693B, connect(), settings=settings(max_voltage_v=75)) as scanner:
        with pytest.raises(LimitError) as info:
            scanner.move_to(20.5, 10.0)
        assert str(info.value) == "scanner 'scanner': move x to 20.5 µm refused: range 0–20 µm"
        with pytest.raises(LimitError, match="move z to 6 µm"):
            scanner.move_to(1.0, 1.0, 6.0)
        with pytest.raises(LimitError):
            scanner.move_to(math.nan, 1.0)


def test_position_from_read_back_voltages():
    pairs = connect() + [
        (b"xvoltage?", b"[  37.50]\r"),
        (b"yvoltage?", b"[   0.00]\r"),
        (b"zvoltage?", b"[  75.00]\r"),
    ]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        assert scanner.position_um == pytest.approx((10.0, 0.0, -5.0))


def test_settling_wait_uses_the_clock():
    clock = FakeClock()
    pairs = connect() + [(b"xvoltage=3.750", b""), (b"yvoltage=3.750", b"")]
    with expected_protocol(MDT693B, pairs, settings=settings(settle_s=0.05), clock=clock) as sc:
        sc.move_to(1.0, 1.0)
    assert clock.t == pytest.approx(0.05)


def test_error_reply_raises():
    pairs = connect() + [(b"xvoltage=1.000", b"CMD_NOT_DEFINED\r")]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        with pytest.raises(InstrumentError, match="'xvoltage=1.000' failed: reply 'CMD_NOT_DEFINED'"):
            scanner.ch_x.voltage_v = 1.0


def test_garbled_value_is_an_error():
    pairs = connect() + [(b"xvoltage?", b"[ ??? ]\r")]
    with expected_protocol(MDT693B, pairs, settings=settings()) as scanner:
        with pytest.raises(InstrumentError, match="expected a \\[number\\]"):
            scanner.ch_x.voltage_v  # noqa: B018


def test_calibration_round_trip():
    with expected_protocol(MDT693B, connect(), settings=settings()) as scanner:
        for axis in "xyz":
            for um in (-12.0, 0.0, 3.3, 40.0):
                assert scanner.volt_to_um(axis, scanner.um_to_volt(axis, um)) == pytest.approx(um)


def test_close_twice_is_safe():
    with expected_protocol(MDT693B, connect(), settings=settings()) as scanner:
        scanner.close()
        scanner.close()


def test_settings():
    with pytest.raises(ValidationError, match="must be non-zero"):
        Mdt693bSettings(resource="x", um_per_volt=(0.2, 0.0, 0.1))
    with pytest.raises(ValidationError):
        Mdt693bSettings(resource="x")  # calibration is required
    with pytest.raises(ValidationError):
        Mdt693bSettings(resource="x", um_per_volt=(1, 1, 1), max_voltage_v=200)
    assert mdt693b.DRIVERS == {"scanner": Mdt693bSettings}


# --------------------------------------------------------------------------- pyvisa-sim session
def test_sim_session(sim_yaml):
    scanner = open_instrument(
        Mdt693bSettings(resource="ASRL4::INSTR", visa_library=f"{sim_yaml}@sim", **CAL,
                        max_voltage_v=75)
    )
    try:
        connection = scanner.adapter.connection
        assert (connection.write_termination, connection.read_termination) == ("\r", ">")
        assert connection.baud_rate == 115200
        assert isinstance(scanner, Scanner)
        assert scanner.limits_um == ((0.0, 20.0), (0.0, 20.0), (-5.0, 5.0))
        rng = np.random.default_rng(3)
        for _ in range(5):
            target = tuple(rng.uniform(low, high) for low, high in scanner.limits_um)
            scanner.move_to(*target)
            # the read-back has 0.01 V resolution in the simulator (0.1 V on the device)
            assert scanner.position_um == pytest.approx(target, abs=0.01 * 20 / 75)
        with pytest.raises(LimitError):
            scanner.move_to(25.0, 0.0)
        snap = scanner.snapshot()
        assert snap["voltage_limit_v"] == 150.0 and snap["max_voltage_v"] == 75.0
        with pytest.raises(InstrumentError, match="CMD_NOT_DEFINED"):
            scanner.ask("bogus?")
        assert scanner.ch_x.voltage_v >= 0.0  # still in step after the error
    finally:
        scanner.close()
        scanner.close()


def test_sim_75v_switch(sim_yaml):
    scanner = MDT693B("ASRL5::INSTR", settings=Mdt693bSettings(resource="ASRL5::INSTR", **CAL),
                      visa_library=f"{sim_yaml}@sim")
    try:
        assert scanner.voltage_limit_v == 75.0
        assert scanner.limits_um[0] == (0.0, 20.0)
        scanner.move_to(20.0, 20.0, -5.0)
        assert scanner.voltages_v == pytest.approx((75.0, 75.0, 75.0))
    finally:
        scanner.close()
