"""Simulated laser, scanner and spectrograph: protocols, limits, timing and faults."""

from __future__ import annotations

import math

import pytest

from micropl.drivers.interfaces import Laser, Scanner
from micropl.errors import InstrumentError, InstrumentTimeout, LimitError
from micropl.simulators.clock import VirtualClock
from micropl.simulators.faults import FaultInjector
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.scanner import SimScanner
from micropl.simulators.settings import (
    FaultSettings,
    SimLaserSettings,
    SimScannerSettings,
    SimSpectrographSettings,
)
from micropl.simulators.spectrograph import SimSpectrograph
from micropl.simulators.world import SimulatedWorld


def _world():
    return SimulatedWorld(VirtualSample.single(), VirtualClock("fast"))


# --------------------------------------------------------------------------- laser
def test_laser_protocol_limits_and_state():
    world = _world()
    laser = SimLaser(SimLaserSettings(max_power_percent=50.0, power_percent=10.0), world)
    assert isinstance(laser, Laser) and world.laser is laser
    assert laser.wavelength_nm == 405.0 and not laser.emission_on
    laser.power_percent = 50.0
    for bad in (50.1, -1.0):
        with pytest.raises(LimitError, match=r"laser 'laser': power .* refused: range 0–50 %"):
            laser.power_percent = bad
    assert laser.power_percent == 50.0
    laser.rep_rate_hz = 25.0
    laser.rep_rate_hz = 40e6
    for bad in (24.0, 41e6):
        with pytest.raises(LimitError, match="repetition rate"):
            laser.rep_rate_hz = bad
    assert laser.rep_rate_hz == 40e6
    laser.emission_on = True
    laser.off()
    assert not laser.emission_on
    snap = laser.snapshot()
    assert snap["power_percent"] == 50.0 and snap["rep_rate_hz"] == 40e6
    laser.close()
    laser.close()


def test_laser_off_retries_through_timeouts_but_not_a_disconnect():
    world = _world()
    laser = SimLaser(SimLaserSettings(faults=FaultSettings(timeout_every_n_calls=2,
                                                           disconnect_after_s=10.0)), world)
    laser.emission_on = True  # call 1
    laser.off()  # call 2 times out, call 3 succeeds
    assert not laser.emission_on
    with pytest.raises(InstrumentTimeout):
        laser.emission_on = True  # call 4
    assert not laser.emission_on  # a failed call changes nothing
    world.clock.sleep(11.0)
    with pytest.raises(InstrumentError, match="disconnected"):
        laser.off()


# --------------------------------------------------------------------------- scanner
def test_scanner_limits_timing_and_protocol():
    world = _world()
    sc = SimScanner(SimScannerSettings(speed_um_per_s=100.0, settle_s=0.01), world)
    assert isinstance(sc, Scanner) and world.scanner is sc
    assert sc.position_um == (20.0, 20.0, 0.0)
    t0 = world.clock.now()
    sc.move_to(23.0, 24.0)
    assert world.clock.now() - t0 == pytest.approx(5.0 / 100.0 + 0.01)
    assert sc.position_um == (23.0, 24.0, 0.0)
    with pytest.raises(LimitError, match=r"scanner 'scanner': move x = 90 µm refused: "
                                         r"range 0–80 µm"):
        sc.move_to(90.0, 10.0)
    with pytest.raises(LimitError, match=r"move z = -11 µm refused: range -10–10 µm"):
        sc.move_to(10.0, 10.0, -11.0)
    with pytest.raises(LimitError, match="move y"):
        sc.move_to(10.0, math.nan)
    assert sc.position_um == (23.0, 24.0, 0.0)


# --------------------------------------------------------------------------- spectrograph
def test_spectrograph_goto_refusal_move_time_and_gratings():
    world = _world()
    spec = SimSpectrograph(SimSpectrographSettings(name="acton"), world)
    assert [g.grooves_per_mm for g in spec.gratings] == [150, 300, 600, 1200]
    assert [g.slot for g in spec.gratings] == [1, 2, 3, 4]
    with pytest.raises(LimitError) as info:
        spec.center_wavelength_nm = 9999.0
    assert str(info.value) == "spectrograph 'acton': GOTO 9999.0 nm refused: range 0–1400 nm"
    with pytest.raises(LimitError, match="installed slots 1–4"):
        spec.grating = 5
    assert spec.center_wavelength_nm == 515.0 and spec.grating == 2
    t0 = world.clock.now()
    spec.center_wavelength_nm = 615.0
    assert world.clock.now() - t0 == pytest.approx(100.0 / spec.settings.move_speed_nm_per_s)
    t0 = world.clock.now()
    spec.grating = 2  # same slot: no time
    spec.grating = 3
    assert world.clock.now() - t0 == pytest.approx(spec.settings.grating_change_s)


def test_spectrograph_garbled_reply():
    world = _world()
    spec = SimSpectrograph(SimSpectrographSettings(faults=FaultSettings(garble_every_n_calls=2)),
                           world)
    spec.center_wavelength_nm = 520.0
    with pytest.raises(InstrumentError, match="garbled reply"):
        spec.center_wavelength_nm = 530.0
    assert spec.center_wavelength_nm == 520.0


# --------------------------------------------------------------------------- fault injector
def test_fault_injector_counts_timeouts_disconnects_drops_and_overflows():
    clock = VirtualClock("fast")
    f = FaultInjector(FaultSettings(timeout_every_n_calls=3, disconnect_after_s=100.0,
                                    reconnect_after_s=20.0, drop_frame_every_n=2,
                                    overflow_every_n_reads=3), clock, "tagger", "tt")
    outcomes = []
    for _ in range(7):
        try:
            f.check("read")
            outcomes.append("ok")
        except InstrumentTimeout as exc:
            assert str(exc) == "tagger 'tt': read: timed out after 1 s"
            outcomes.append("timeout")
    assert outcomes == ["ok", "ok", "timeout", "ok", "ok", "timeout", "ok"]
    assert clock.now() == pytest.approx(2.0)  # each timeout waited 1 s
    clock.advance_to(100.0)
    assert f.disconnected()
    for _ in range(3):
        with pytest.raises(InstrumentError, match="not responding"):
            f.check("read")
    clock.advance_to(120.0)
    assert not f.disconnected()
    f.check("read")  # call 11
    assert [f.drop_frame() for _ in range(4)] == [False, True, False, True]
    assert [f.overflow() for _ in range(6)] == [False, False, True, False, False, True]


def test_no_faults_by_default():
    f = FaultInjector(FaultSettings(), VirtualClock("fast"), "camera", "cam")
    for _ in range(1000):
        f.check("acquire")
    assert not any(f.drop_frame() or f.overflow() for _ in range(100))
