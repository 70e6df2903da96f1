"""Sepia II laser driver against a ctypes-style fake of Sepia2_Lib."""

from __future__ import annotations

import pytest
from fakes.sepia import FakeSepia2Lib

from micropl.drivers import sepia
from micropl.drivers.interfaces import Laser
from micropl.errors import InstrumentError, LimitError, MissingExtraError


def make(**kw):
    lib = FakeSepia2Lib(key_locked=kw.pop("key_locked", False))
    laser = sepia.SepiaLaser(lib, sepia.SepiaSettings(driver="sepia", **kw))
    return laser, lib


def test_open_reads_module_map_and_satisfies_protocol():
    laser, lib = make()
    assert lib.call_names() == ["SEPIA2_USB_OpenDevice", "SEPIA2_FWR_GetModuleMap"]
    assert isinstance(laser, Laser)  # (reads the properties: runtime protocol check)
    assert laser.serial == "1033077" and laser.wavelength_nm == 405.0


def test_10mhz_preset_and_rate_refusal():
    laser, lib = make()
    lib.clear_calls()
    laser.rep_rate_hz = 10e6
    assert lib.calls_to("SEPIA2_SLM_SetPulseParameters") == [((0, 200, 3, 1), {})]
    assert laser.rep_rate_hz == 10e6
    for bad in (12e6, 0.0, 100e6):
        with pytest.raises(LimitError, match="presets 80, 40, 20, 10, 5, 2.5 MHz"):
            laser.rep_rate_hz = bad
    assert len(lib.calls_to("SEPIA2_SLM_SetPulseParameters")) == 1


def test_power_percent_per_mille_and_limit():
    laser, lib = make(max_power_percent=60)
    laser.power_percent = 42.5
    assert lib.calls_to("SEPIA2_SLM_SetIntensityFineStep") == [((0, 200, 425), {})]
    assert laser.power_percent == pytest.approx(42.5)
    with pytest.raises(LimitError, match=r"^laser 'laser': SET POWER 61 % refused: range 0–60 %"):
        laser.power_percent = 61
    with pytest.raises(LimitError):
        laser.power_percent = -1
    assert len(lib.calls_to("SEPIA2_SLM_SetIntensityFineStep")) == 1
    assert lib.SEPIA2_SLM_SetIntensityFineStep(0, 200, 1001) != 0  # the fake refuses too


def test_soft_lock_on_off_and_key_lock():
    laser, lib = make()
    assert not laser.emission_on
    laser.emission_on = True
    assert lib.calls_to("SEPIA2_SCM_SetLaserSoftLock") == [((0, 100, 0), {})]
    assert laser.emission_on
    laser.off()
    assert lib.calls_to("SEPIA2_SCM_SetLaserSoftLock")[-1] == ((0, 100, 1), {})
    assert not laser.emission_on
    locked, _ = make(key_locked=True)
    with pytest.raises(InstrumentError, match="key switch or interlock"):
        locked.emission_on = True


def test_wrong_slot_reports_library_error():
    laser, lib = make(slm_slot=300)
    with pytest.raises(InstrumentError, match=r"SEPIA2_SLM_SetIntensityFineStep failed with "
                                              r"-9003 \(illegal slot number\)"):
        laser.power_percent = 10


def test_close_switches_off_and_is_idempotent():
    laser, lib = make()
    laser.emission_on = True
    laser.close()
    laser.close()
    assert lib.soft_locked
    assert lib.call_names()[-3:] == ["SEPIA2_SCM_SetLaserSoftLock", "SEPIA2_FWR_FreeModuleMap",
                                     "SEPIA2_USB_CloseDevice"]
    assert lib.call_names().count("SEPIA2_USB_CloseDevice") == 1
    laser.off()  # harmless once closed


def test_open_instrument_without_library_raises_missing_extra():
    with pytest.raises(MissingExtraError, match="Sepia2_Lib.dll"):
        sepia.open_instrument(sepia.SepiaSettings(driver="sepia"))


def test_every_sdk_driver_module_imports_without_vendor_packages():
    """Fresh interpreter, vendor modules made unimportable: all six drivers still import
    and expose the driver convention (DRIVERS, REQUIRES, open_instrument)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('TimeTagger', 'pywin32'):\n"
        "    sys.modules[m] = None\n"
        "import importlib\n"
        "for name in ('andor_camera', 'picam_camera', 'shamrock', 'swabian', 'picoquant',"
        " 'sepia'):\n"
        "    mod = importlib.import_module('micropl.drivers.' + name)\n"
        "    assert mod.DRIVERS and callable(mod.open_instrument)\n"
        "    assert isinstance(mod.REQUIRES, tuple)\n"
        "    for model in mod.DRIVERS.values():\n"
        "        assert model.model_config['extra'] == 'forbid' and model.model_config['frozen']\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
