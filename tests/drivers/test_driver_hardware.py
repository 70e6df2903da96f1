"""Read-only checks of the message-based drivers against real instruments.

Skipped by default (marker ``hardware``). Run one driver at a time against the
instrument at ``--device-address``, for example::

    pytest -m hardware -k acton  --device-address "ASRL/dev/ttyUSB0::INSTR"
    pytest -m hardware -k pilas  --device-address "ASRL/dev/ttyUSB1::INSTR"
    pytest -m hardware -k mdt693b --device-address "ASRL/dev/ttyACM0::INSTR"
    pytest -m hardware -k e727   --device-address "TCPIP::192.168.0.27::50000::SOCKET"

Nothing moves and no emission or voltage changes. On connect the drivers send
``NO-ECHO`` (Acton) and ``echo=0`` (MDT693B), which only change the echo.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from micropl.drivers.interfaces import Laser, Scanner, Spectrograph

pytestmark = pytest.mark.hardware


def test_acton_reads_model_wavelength_and_gratings(device_address):
    from micropl.drivers.acton import ActonSettings, open_instrument

    sp = open_instrument(ActonSettings(resource=device_address))
    try:
        assert sp.model.startswith("SP")
        assert 0.0 <= sp.center_wavelength_nm <= 10000.0
        gratings = sp.gratings
        assert gratings and all(g.grooves_per_mm > 0 for g in gratings)
        assert sp.grating in [g.slot for g in gratings]
        axis = sp.wavelength_axis_nm(1024, 13.0)
        assert np.all(np.diff(axis) > 0)
        assert isinstance(sp, Spectrograph)
    finally:
        sp.close()


def test_pilas_reads_state_and_temperatures(device_address):
    from micropl.drivers.pilas import Pilas, PilasSettings

    laser = Pilas(device_address, settings=PilasSettings(resource=device_address))
    try:
        assert isinstance(laser.emission_on, bool)
        assert 0.0 <= laser.power_percent <= 100.0
        assert 25.0 <= laser.rep_rate_hz <= 40e6
        assert laser.diode_temperature_status in ("good", "bad")
        assert 0.0 < laser.head_temperature_c < 80.0
        assert isinstance(laser, Laser)
    finally:
        laser.close()


def test_mdt693b_reads_limit_and_voltages(device_address):
    from micropl.drivers.mdt693b import MDT693B, Mdt693bSettings

    settings = Mdt693bSettings(resource=device_address, um_per_volt=(1.0, 1.0, 1.0))
    scanner = MDT693B(device_address, settings=settings)
    try:
        assert scanner.voltage_limit_v in (75.0, 100.0, 150.0)
        volts = scanner.voltages_v
        assert all(-1.0 <= v <= scanner.voltage_limit_v + 1.0 for v in volts)
        assert isinstance(scanner, Scanner)
    finally:
        scanner.close()


def test_e727_reads_identity_travel_and_position(device_address):
    from micropl.drivers.pi_e727 import E727, E727Settings

    scanner = E727(device_address, settings=E727Settings(resource=device_address))
    try:
        assert "E-727" in scanner.identity
        assert all(low < high for low, high in scanner.travel_um)
        assert all(math.isfinite(p) for p in scanner.position_um)
        assert scanner.error_code >= 0
        assert isinstance(scanner, Scanner)
    finally:
        scanner.close()
