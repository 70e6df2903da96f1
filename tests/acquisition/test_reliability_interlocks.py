"""Safety interlocks on the simulated setup (issue 8: safety interlocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2
from micropl.acquisition.session import Session
from micropl.acquisition.storage import SessionReader
from micropl.errors import LimitError

pytestmark = pytest.mark.timeout(120)

def bright_qd_xy() -> tuple[float, float]:
    with load_setup(clock_mode="fast") as setup:
        truth = setup.world.sample.truth()
    k = int(truth["brightness_cps"].argmax())
    return float(truth["x_um"][k]), float(truth["y_um"][k])


@pytest.mark.parametrize("threshold_cps", [2e4, 5e4])
def test_apd_over_rate_switches_laser_off_within_50_ms(tmp_path, threshold_cps):
    """An APD rate above the protection threshold switches the laser off within 50 ms of
    data (clock) time after the light arrived, and the run is aborted with the reason."""
    x, y = bright_qd_xy()
    with load_setup(clock_mode="fast",
                    overrides={"safety": {"apd_max_rate_cps": threshold_cps}}) as setup:
        laser = setup.laser
        events: list[tuple[str, float]] = []
        real_off = laser.off

        def off():
            real_off()
            events.append(("off", setup.clock.now()))

        laser.off = off
        cls = type(laser)

        def set_emission(self, value, _prop=cls.emission_on):
            _prop.fset(self, value)
            events.append(("on" if value else "off", setup.clock.now()))

        laser.__class__ = type("SpyLaser", (cls,), {"emission_on": property(
            cls.emission_on.fget, set_emission)})
        setup.scanner.move_to(x, y)
        with Session(setup, tmp_path / "s.h5") as session:
            result = session.run(G2(duration_s=30.0, power_percent=100))
        assert laser.emission_on is False
    assert result.status == "aborted" and "exceeds the protection threshold" in result.reason
    t_on = next(t for what, t in events if what == "on")
    t_off = next(t for what, t in events if what == "off" and t >= t_on)
    assert 0 <= t_off - t_on <= 0.050, (t_on, t_off)
    with SessionReader(tmp_path / "s.h5") as reader:
        run = reader.runs()[-1]
        assert run.status == "aborted" and "protection threshold" in run.reason
        assert reader.n_rows("tag_chunk") >= 1  # the data that showed the fault is kept


def test_em_gain_refused_while_warm_and_above_300_without_advanced():
    with load_setup(clock_mode="fast") as setup:
        camera = setup.camera
        assert camera.temperature_c > -60  # just switched on: warm
        with pytest.raises(LimitError, match="EM gain"):
            camera.em_gain = 100
        camera.em_gain = 1  # conventional amplifier is fine warm
        setup.clock.sleep(120.0)  # cool down
        assert camera.temperature_c <= -60
        camera.em_gain = 300
        with pytest.raises(LimitError, match="301"):
            camera.em_gain = 301
        assert camera.em_gain == 300
        camera.em_gain_advanced = True
        camera.em_gain = 1000
        with pytest.raises(LimitError):
            camera.em_gain = 1001
        with pytest.raises(LimitError):
            camera.em_gain_advanced = False  # would leave gain 1000 without advanced mode
        assert camera.em_gain == 1000


@pytest.mark.parametrize(("x", "y", "z"), [(-0.1, 5, 0), (80.1, 5, 0), (5, 81, 0),
                                             (5, 5, 10.5), (float("nan"), 5, 0)])
def test_scanner_refuses_moves_beyond_limits(x, y, z):
    with load_setup(clock_mode="fast") as setup:
        before = tuple(setup.scanner.position_um)
        with pytest.raises(LimitError, match="range"):
            setup.scanner.move_to(x, y, z)
        assert tuple(setup.scanner.position_um) == before


def test_laser_power_above_configured_maximum_refused():
    with load_setup(clock_mode="fast", overrides={"laser": {"max_power_percent": 40.0}}) as s:
        s.laser.power_percent = 40.0
        with pytest.raises(LimitError, match="0–40"):
            s.laser.power_percent = 40.5
        assert s.laser.power_percent == 40.0
        with pytest.raises(LimitError):
            s.laser.power_percent = 60


def test_ctrl_c_in_cli_runs_cleanup(tmp_path):
    """SIGINT during a real-time g² run: exit code 130, the message says the instruments
    were made safe, and the stored run stop record says interrupted (it is written
    after the cleanup switched the laser off)."""
    path = tmp_path / "g2.h5"
    proc = subprocess.Popen([sys.executable, "-m", "micropl", "g2", "--out", str(path),
                             "--param", "duration_s=60", "--param", "power_percent=20"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if path.exists():
            with SessionReader(path) as reader:
                if reader.n_rows("tag_chunk"):
                    break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "micropl: interrupted; instruments were made safe"
    with SessionReader(path) as reader:
        run = reader.runs()[-1]
        assert run.status == "aborted" and "Ctrl-C" in run.reason
