"""The instrument registry: driver modules found through the ``micropl.drivers`` entry points.

Plug-ins are written as tiny installed packages: a module plus a ``*.dist-info``
folder with ``METADATA`` and ``entry_points.txt`` in a temporary directory put on
``sys.path`` (in-process) or ``PYTHONPATH`` (for the ``micropl`` command).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from micropl.acquisition import config, instruments_report
from micropl.acquisition.config import DriverPluginError
from micropl.acquisition.setup import load_setup
from micropl.drivers.interfaces import Laser, Scanner, Spectrograph
from micropl.errors import ConfigError

MICROPL = Path(sys.executable).with_name("micropl")

#: What micropl itself registers: entry-point name → module.
EXPECTED = {
    "simulated": "micropl.simulators.drivers",
    "replay": "micropl.simulators.replay",
    "acton": "micropl.drivers.acton",
    "pilas": "micropl.drivers.pilas",
    "mdt693b": "micropl.drivers.mdt693b",
    "pi_e727": "micropl.drivers.pi_e727",
    "andor": "micropl.drivers.andor_camera",
    "picam": "micropl.drivers.picam_camera",
    "shamrock": "micropl.drivers.shamrock",
    "swabian": "micropl.drivers.swabian",
    "picoquant": "micropl.drivers.picoquant",
    "sepia": "micropl.drivers.sepia",
}

#: A laser driver as a lab would write it; ``open_instrument`` takes the open context.
TOY_LASER = '''
from typing import Literal

from pydantic import Field

from micropl.drivers._settings import StrictSettings
from micropl.drivers.limits import limit_error

REQUIRES = ("numpy",)
PIP_EXTRA = None


class ToyLaserSettings(StrictSettings):
    """A lab's own laser."""

    driver: Literal["toylaser"] = "toylaser"
    name: str = "laser"
    max_power_percent: float = Field(50.0, ge=0.0, le=100.0)


class ToyLaser:
    wavelength_nm = 405.0
    rep_rate_hz = 1.0e7

    def __init__(self, settings, context):
        self.name = settings.name
        self.max_power_percent = settings.max_power_percent
        self.context = context
        self.emission_on = False
        self._power = 0.0
        self.closed = False

    @property
    def power_percent(self):
        return self._power

    @power_percent.setter
    def power_percent(self, value):
        if not 0.0 <= value <= self.max_power_percent:
            raise limit_error("laser", self.name, f"power {value}%",
                              f"range 0–{self.max_power_percent}%")
        self._power = value

    def off(self):
        self.emission_on = False

    def snapshot(self):
        return {"power_percent": self._power}

    def close(self):
        self.closed = True


DRIVERS = {"laser": ToyLaserSettings}


def open_instrument(settings, context):
    return ToyLaser(settings, context)
'''

#: A scanner driver whose ``open_instrument`` takes the settings only.
TOY_SCANNER = '''
from typing import Literal

from micropl.drivers._settings import StrictSettings


class ToyScannerSettings(StrictSettings):
    driver: Literal["toyscanner"] = "toyscanner"
    name: str = "scanner"


class ToyScanner:
    limits_um = ((0.0, 10.0), (0.0, 10.0), (0.0, 10.0))

    def __init__(self, settings):
        self.name = settings.name
        self.position_um = (0.0, 0.0, 0.0)

    def move_to(self, x_um, y_um, z_um=None):
        self.position_um = (x_um, y_um, self.position_um[2] if z_um is None else z_um)

    def snapshot(self):
        return {"position_um": list(self.position_um)}

    def close(self):
        pass


DRIVERS = {"scanner": ToyScannerSettings}


def open_instrument(settings):
    return ToyScanner(settings)
'''


class PluginDir:
    """A temporary folder of installed plug-in distributions."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.modules: list[str] = []
        root.mkdir(exist_ok=True)
        monkeypatch.syspath_prepend(str(root))

    def module(self, source: str, *, entry: str | None = None, value: str | None = None,
               dist: str | None = None) -> str:
        """Write a module and a distribution registering it; returns the module name."""
        name = f"labplug_{uuid.uuid4().hex[:10]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.modules.append(name)
        self.entry_points({entry or name: value or name}, dist=dist or f"{name}-dist")
        return name

    def entry_points(self, entries: dict[str, str], *, dist: str) -> None:
        info = self.root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = "".join(f"{k} = {v}\n" for k, v in entries.items())
        (info / "entry_points.txt").write_text(f"[{config.ENTRY_POINT_GROUP}]\n{lines}")
        config.clear_driver_caches()

    def micropl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the ``micropl`` command with this folder on its path."""
        env = {**os.environ, "PYTHONPATH": str(self.root), "QT_QPA_PLATFORM": "offscreen"}
        return subprocess.run([str(MICROPL), *args], capture_output=True, text=True, env=env,
                              timeout=120, check=False)


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    folder = PluginDir(tmp_path / "site", monkeypatch)
    yield folder
    for name in folder.modules:
        sys.modules.pop(name, None)
    config.clear_driver_caches()


def _setup_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- micropl's own
def test_every_micropl_driver_is_an_entry_point_of_the_group():
    group = importlib.metadata.entry_points(group=config.ENTRY_POINT_GROUP)
    assert EXPECTED.items() <= {(ep.name, ep.value) for ep in group}
    registered = {ep.name: ep.value for ep, _ in config._entry_points()}
    assert registered == EXPECTED  # nothing else registered, nothing twice
    loaded = {p.name: p.module.__name__ for p in config.driver_plugins() if p.module}
    assert loaded == EXPECTED
    for role in config.ROLES:
        tags = [config._driver_name(m) for m in config.driver_models(role)]
        assert tags[0] == "simulated"  # the default of a missing section
        assert {"simulated", "replay"} <= set(tags)
        for tag in tags:
            module = config.driver_module(role, tag)
            assert module.__name__ in EXPECTED.values()
            assert config._driver_name(module.DRIVERS[role]) == tag
    assert config.driver_module("camera", "andor").__name__ == "micropl.drivers.andor_camera"
    assert config.driver_module("tagger", "simulated").__name__ == "micropl.simulators.drivers"
    assert config.driver_module("laser", "replay").__name__ == "micropl.simulators.replay"


def test_a_stale_copy_of_a_distribution_does_not_register_twice(plugins):
    # a second micropl further down the path, with the same entry points and an old one
    plugins.entry_points({"acton": "micropl.drivers.acton_old",
                          "spectro": "micropl.drivers.acton"}, dist="micropl")
    sys.path.remove(str(plugins.root))
    sys.path.append(str(plugins.root))  # the stale copy is last: the first copy wins
    config.clear_driver_caches()
    registered = {ep.name: ep.value for ep, _ in config._entry_points()}
    assert registered == EXPECTED
    assert config.skipped_drivers() == ()


def test_the_simulated_world_is_shared_through_the_open_context():
    with load_setup(clock_mode="fast") as setup:
        assert setup.world is not None
        worlds = {id(inst.world) for inst in setup.instruments.values()}
        assert worlds == {id(setup.world)}
        assert setup.world.clock is setup.clock


# --------------------------------------------------------------------------- a lab's plug-in
def test_a_plugin_driver_validates_and_opens_in_a_setup_file(plugins, tmp_path):
    laser_module = plugins.module(TOY_LASER)
    plugins.module(TOY_SCANNER)
    path = _setup_yaml(tmp_path, """
        clock: {mode: fast}
        laser: {driver: toylaser, max_power_percent: 30}
        scanner: {driver: toyscanner}
        """)
    config.load_config(path)  # the schema accepts it in-process
    with load_setup(path) as setup:
        laser, scanner = setup.laser, setup.scanner
        assert type(laser).__module__ == laser_module
        assert isinstance(laser, Laser) and isinstance(scanner, Scanner)
        assert isinstance(setup.spectrograph, Spectrograph)  # the others stay simulated
        laser.power_percent = 25.0
        assert setup.snapshot()["laser"] == {"power_percent": 25.0}
        with pytest.raises(Exception, match=r"laser 'laser': power 40.0% refused"):
            laser.power_percent = 40.0
        scanner.move_to(1.0, 2.0)
        assert scanner.position_um == (1.0, 2.0, 0.0)
        # the context carries the setup's clock, config and shared world
        assert laser.context.clock is setup.clock
        assert laser.context.config is setup.config
        assert laser.context.world is setup.world is setup.camera.world
    assert laser.closed
    rows = {(r["role"], r["driver"]): r for r in instruments_report.driver_table()}
    assert rows[("laser", "toylaser")]["module"] == laser_module
    assert rows[("laser", "toylaser")]["ready"] is True


def test_the_world_is_built_only_when_a_driver_asks_for_it(plugins, monkeypatch):
    plugins.module(TOY_SCANNER)
    import micropl.acquisition.setup as setup_module

    built = []
    real = setup_module._simulated_world
    monkeypatch.setattr(setup_module, "_simulated_world",
                        lambda *args: built.append(1) or real(*args))
    cfg = config.load_config(text="clock: {mode: fast}\nscanner: {driver: toyscanner}\n")[0]
    context = setup_module.OpenContext(cfg, clock=setup_module.VirtualClock("fast"))
    scanner = setup_module._open("scanner", cfg.scanner, context)  # settings only
    assert scanner.position_um == (0.0, 0.0, 0.0)
    assert context.built_world is None and built == []
    laser = setup_module._open("laser", cfg.laser, context)  # simulated: takes the world
    camera = setup_module._open("camera", cfg.camera, context)
    assert laser.world is camera.world is context.built_world
    assert built == [1]
    for instrument in (laser, camera, scanner):
        instrument.close()


def test_check_config_and_info_see_a_plugin_through_the_command(plugins, tmp_path):
    plugins.module(TOY_LASER)
    path = _setup_yaml(tmp_path, "laser: {driver: toylaser, max_power_percent: 30}\n")
    done = plugins.micropl("check-config", str(path))
    assert done.returncode == 0, done.stderr
    assert "toylaser" in done.stdout
    bad = _setup_yaml(tmp_path, "laser: {driver: toylaser, max_power_percent: 300}\n")
    done = plugins.micropl("check-config", str(bad))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "max_power_percent" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- broken plug-ins
BROKEN = {
    "a bug at import": ("DRIVERS = {}\nraise_me = undefined_name\n",
                        r"import failed: NameError: name 'undefined_name'"),
    "a syntax error": ("def open_instrument(settings:\n", r"import failed: SyntaxError"),
    "its own module missing": ("import {pkg}.helpers_nope\n",
                               r"import failed: No module named '{pkg}.helpers_nope'"),
    "an ImportError of a name": ("from micropl.drivers.interfaces import NoSuchThing\n",
                                 r"import failed: ImportError"),
    "DRIVERS not a mapping": ("DRIVERS = ['laser']\ndef open_instrument(s): pass\n",
                              r"DRIVERS must be a non-empty mapping"),
    "DRIVERS empty": ("DRIVERS = {}\ndef open_instrument(s): pass\n",
                      r"DRIVERS must be a non-empty mapping"),
    "an unknown role": ("from micropl.simulators.settings import SimLaserSettings\n"
                        "DRIVERS = {'lamp': SimLaserSettings}\ndef open_instrument(s): pass\n",
                        r"DRIVERS role 'lamp' is not one of laser, spectrograph"),
    "a model without a driver tag": ("from pydantic import BaseModel\n"
                                     "class S(BaseModel):\n    driver: str = 'x'\n"
                                     "DRIVERS = {'laser': S}\ndef open_instrument(s): pass\n",
                                     r"DRIVERS\['laser'\] must be a pydantic model"),
    "not a model": ("DRIVERS = {'laser': dict}\ndef open_instrument(s): pass\n",
                    r"DRIVERS\['laser'\] must be a pydantic model"),
    "no open_instrument": ("from micropl.simulators.settings import SimLaserSettings\n"
                           "from typing import Literal\n"
                           "class S(SimLaserSettings):\n"
                           "    driver: Literal['mylaser'] = 'mylaser'\n"
                           "DRIVERS = {'laser': S}\nopen_instrument = None\n",
                           r"no open_instrument\(settings\) function"),
    "a driver name taken": ("from micropl.drivers.acton import ActonSettings\n"
                            "DRIVERS = {'spectrograph': ActonSettings}\n"
                            "def open_instrument(s): pass\n",
                            r"spectrograph driver 'acton' is provided twice: by driver "
                            r"plug-in '(acton|labdriver)' .* and by driver plug-in "
                            r"'(acton|labdriver)' .*; rename one driver or uninstall one"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_plugin_is_one_line_naming_it(plugins, case):
    source, message = BROKEN[case]
    package = f"labplug_{uuid.uuid4().hex[:10]}"
    (plugins.root / package).mkdir()
    (plugins.root / package / "__init__.py").write_text("")
    (plugins.root / package / "drv.py").write_text(source.replace("{pkg}", package))
    plugins.modules += [package, f"{package}.drv"]
    plugins.entry_points({"labdriver": f"{package}.drv"}, dist="lab-drivers")
    with pytest.raises(DriverPluginError) as info:
        config.setup_model()
    text = str(info.value)
    assert "\n" not in text
    assert f"driver plug-in 'labdriver' ({package}.drv, entry point of lab-drivers)" in text
    assert re.search(message.replace("{pkg}", package), text), text
    assert isinstance(info.value, ConfigError)  # the CLI's exit code 2
    with pytest.raises(DriverPluginError):  # not cached as a success: the next load fails too
        config.load_config(text="clock: {mode: fast}\n")


def test_a_broken_plugin_through_the_command_is_one_line_and_exit_2(plugins):
    name = plugins.module("DRIVERS = {}\nraise RuntimeError('bad firmware table')\n",
                          entry="brokenlab")
    done = plugins.micropl("check-config", str(config.default_config_path()))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"micropl: error: driver plug-in 'brokenlab' ({name}, entry point of {name}-dist): "
        "import failed: RuntimeError: bad firmware table"]


def test_an_object_entry_point_is_refused(plugins):
    name = plugins.module(TOY_LASER, value=None)
    plugins.entry_points({"toy_object": f"{name}:open_instrument"}, dist="lab-objects")
    with pytest.raises(DriverPluginError, match=r"names a module, without ':object'"):
        config.driver_plugins()


# --------------------------------------------------------------------------- skipped plug-ins
def test_a_missing_vendor_package_skips_the_module_with_its_reason(plugins, tmp_path):
    vendor = f"vendorsdk_{uuid.uuid4().hex[:8]}"
    name = plugins.module(f"import {vendor}\n" + TOY_LASER, entry="vendorlaser")
    skipped = instruments_report.skipped_table()
    assert skipped == [{"entry_point": "vendorlaser", "module": name,
                        "distribution": f"{name}-dist",
                        "reason": f"needs Python package {vendor!r}, which is not installed"}]
    # micropl's own drivers still load, and a setup naming the skipped driver says why
    assert len(config.driver_modules()) == len(EXPECTED)
    path = _setup_yaml(tmp_path, "laser: {driver: toylaser}\n")
    with pytest.raises(ConfigError) as info:
        config.load_config(path)
    assert "toylaser" in str(info.value)
    with pytest.raises(ConfigError, match=rf"not loaded: vendorlaser \(needs Python package "
                                          rf"'{vendor}'"):
        config.driver_module("laser", "toylaser")
    done = plugins.micropl("info", "--instruments")
    assert done.returncode == 0, done.stderr
    assert (f"not loaded: vendorlaser ({name}): needs Python package '{vendor}', which is not "
            "installed") in done.stdout


def test_an_entry_point_to_a_module_that_is_gone_is_skipped(plugins):
    gone = f"labplug_gone_{uuid.uuid4().hex[:8]}"
    plugins.entry_points({"uninstalled": gone}, dist="lab-gone")
    (skipped,) = config.skipped_drivers()
    assert skipped.name == "uninstalled" and skipped.module is None
    assert skipped.skipped == f"module {gone} not found (reinstall the package that declares it)"
    assert config.setup_model() is not None  # the rest of the registry works


def test_no_registered_driver_at_all_is_one_line(monkeypatch):
    monkeypatch.setattr(config, "_entry_points", lambda: [])
    config.clear_driver_caches()
    try:
        with pytest.raises(ConfigError, match=r"no instrument drivers are registered "
                                              r"\(entry-point group micropl.drivers\)"):
            config.load_config(text="clock: {mode: fast}\n")
    finally:
        monkeypatch.undo()
        config.clear_driver_caches()


# --------------------------------------------------------------------------- replay
REPLAY_SCRIPT = """
import sys
from micropl.acquisition import load_setup, run
from micropl.acquisition.config import packaged_config
from micropl.acquisition.procedures import SpectrumAcquisition

out = sys.argv[1]
with load_setup(clock_mode="fast") as setup:
    result = run(SpectrumAcquisition(exposure_s=0.2), setup, out=out)
assert result.ok, result.reason
# a simulated setup does not load the session reader
assert "micropl.acquisition.replay" not in sys.modules, "reader imported"
text = packaged_config("replay").read_text().replace("recorded.h5", out)
with load_setup(text=text) as setup:
    assert setup.world is None
    frame = setup.camera.acquire()
    print("frame", frame.counts.shape, frame.exposure_s, type(setup.camera).__name__)
"""


def test_a_replay_setup_opens_a_session_file_through_its_context(tmp_path):
    """In a fresh process: the replay driver has its context register the session reader."""
    done = subprocess.run([sys.executable, "-c", REPLAY_SCRIPT, str(tmp_path / "rec.h5")],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0.2 ReplayCamera" in done.stdout  # the recorded frame, its exposure
