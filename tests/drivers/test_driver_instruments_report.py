"""micropl.acquisition.instruments_report: every driver and whether its needs are met here."""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import os

import pytest

from micropl.acquisition import config, instruments_report
from micropl.acquisition.instruments_report import driver_table, library_available


def test_every_registered_driver_is_listed_once_with_its_module():
    rows = driver_table()
    pairs = [(r["role"], r["driver"]) for r in rows]
    assert len(pairs) == len(set(pairs))
    expected = {("laser", "pilas"), ("laser", "sepia"), ("spectrograph", "acton"),
                ("spectrograph", "shamrock"), ("camera", "andor"), ("camera", "picam"),
                ("tagger", "swabian"), ("tagger", "picoquant"), ("scanner", "mdt693b"),
                ("scanner", "pi_e727")}
    assert expected <= set(pairs)
    for role in config.ROLES:
        assert (role, "simulated") in pairs
        # the table lists exactly what the setup schema accepts for the role
        listed = {d for r, d in pairs if r == role}
        assert listed == {config._driver_name(m) for m in config.driver_models(role)}
    for row in rows:
        module = importlib.import_module(row["module"])
        assert module.DRIVERS[row["role"]].__name__ == row["settings"]
        assert config.driver_module(row["role"], row["driver"]) is module
    simulated = [r["module"] for r in rows if r["driver"] == "simulated"]
    assert simulated == ["micropl.simulators.drivers"] * len(config.ROLES)


def test_requirements_match_find_spec_and_find_library():
    for row in driver_table():
        module = importlib.import_module(row["module"])
        assert row["requires"] == list(getattr(module, "REQUIRES", ()))
        for name, ok in row["requires_available"].items():
            assert ok == (importlib.util.find_spec(name) is not None)
        for name, ok in row["vendor_libraries_available"].items():
            if name.lower().endswith(".dll") and os.name != "nt":
                assert ok is None  # not applicable on this OS
            else:
                assert isinstance(ok, bool)


def test_installed_and_missing_packages_are_told_apart():
    rows = {(r["role"], r["driver"]): r for r in driver_table()}
    acton = rows[("spectrograph", "acton")]
    assert acton["requires_available"] == {"pymeasure": True, "pyvisa": True}
    assert acton["ready"] is True
    swabian = rows[("tagger", "swabian")]
    assert swabian["pip_extra"] == "swabian"
    assert swabian["install"] == "pip install 'micropl[swabian]'"
    have_tt = importlib.util.find_spec("TimeTagger") is not None
    assert swabian["requires_available"] == {"TimeTagger": have_tt}
    assert swabian["ready"] is have_tt
    picoquant = rows[("tagger", "picoquant")]
    assert "libhh400.so" in picoquant["vendor_libraries"]
    assert "hhlib64.dll" in picoquant["vendor_libraries"]


def test_a_missing_module_makes_the_driver_not_ready(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args):
        return None if name == "pyvisa" else real(name, *args)

    monkeypatch.setattr(instruments_report.importlib.util, "find_spec", fake)
    rows = {(r["role"], r["driver"]): r for r in driver_table()}
    assert rows[("spectrograph", "acton")]["requires_available"]["pyvisa"] is False
    assert rows[("spectrograph", "acton")]["ready"] is False
    assert rows[("spectrograph", "simulated")]["ready"] is True


@pytest.mark.skipif(os.name == "nt", reason="checks a POSIX shared library")
def test_library_lookup_finds_libc_and_not_a_vendor_library():
    assert library_available("libc.so.6") is (ctypes.util.find_library("c") is not None)
    assert library_available("libmicropl-no-such-vendor.so") is False
    assert library_available("atmcd64d.dll") is None


def test_nothing_is_opened(monkeypatch):
    """The report never calls a driver's open_instrument nor loads a library."""
    def refuse(*args, **kwargs):
        raise AssertionError("hardware or library access")

    for module in config.driver_modules():
        monkeypatch.setattr(module, "open_instrument", refuse)
    monkeypatch.setattr(ctypes, "CDLL", refuse)
    library_available.cache_clear()
    assert len(driver_table()) >= 15
