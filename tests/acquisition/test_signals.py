"""SIGINT, SIGTERM and SIGHUP stop a run cleanly; further signals never cut the cleanup short.

The end-to-end tests run the real CLI (and the script API) in a subprocess on the
real-time simulated setup, wait until the run is acquiring by polling the SWMR
session file (or the log file), send the signal(s) and check: the exit code is
128 + N, the stored run is ``aborted`` with the signal in its reason, the file was
closed cleanly (``micropl info`` reads it, no writer holds it) and the laser was
off after the cleanup, as read back from the instrument in the run's last
instrument snapshot.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from micropl.acquisition import signals as sig
from micropl.acquisition.runner import Runner
from micropl.acquisition.setup import load_setup
from micropl.acquisition.signals import Interrupted, SignalGuard
from micropl.acquisition.storage import SessionReader
from micropl.cli import main

DEADLINE_S = 120.0  # generous: 2 cores shared by many processes


@pytest.fixture(autouse=True)
def _pytest_survives_a_stray_signal():
    """In-process tests send real signals: should a guard fail to hold one, it must fail
    the test, not end pytest (SIGTERM, SIGHUP) or look like a Ctrl-C."""
    def stray(signum, frame):
        raise AssertionError(f"{signal.Signals(signum).name} reached an unguarded handler")

    previous = {s: signal.signal(s, stray) for s in sig.STOP_SIGNALS}
    yield
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _default_dispositions() -> None:
    # The child must not inherit an ignored SIGINT/SIGHUP from how the tests were started.
    for signum in sig.STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def _spawn(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_dispositions)


def _micropl(*args: str, cwd: Path) -> subprocess.Popen:
    return _spawn([sys.executable, "-m", "micropl", *args], cwd)


def _poll(proc: subprocess.Popen, ready, what: str) -> None:
    """Poll ``ready()`` until true; fail if the process ended first or the deadline passed."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < DEADLINE_S:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
        if ready():
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {what} within {DEADLINE_S} s")


def _has_rows(path: Path, table: str) -> bool:
    if not path.exists():
        return False
    with SessionReader(path) as reader:
        return reader.n_rows(table) > 0


def _check_stopped_cleanly(path: Path, signame: str, capsys) -> None:
    """Stored run aborted naming the signal; file closed; laser read back as off."""
    with SessionReader(path) as reader:
        assert not reader.writer_alive()
        run = reader.runs()[-1]
        assert run.status == "aborted", run
        assert signame in run.reason, run.reason
        stop = reader.records("run_stop", run_id=run.run_id)[-1]
        snapshots = reader.records("instrument_snapshot", run_id=run.run_id)
        final = snapshots[-1]
        assert len(snapshots) >= 2 and final.seq < stop.seq
        # Stored after every record of the run but its stop record: read after the cleanup.
        for table in ("tag_chunk", "spectrum", "map_line", "frame"):
            rows = reader.records(table, run_id=run.run_id) if reader.n_rows(table) else []
            assert all(r.seq < final.seq for r in rows), table
        laser = json.loads(final.record.settings_json)["laser"]
        assert laser["emission_on"] is False
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["being_written"] is False
    assert summary["runs"][-1]["status"] == "aborted"


def _last_line(err: str) -> str:
    lines = err.strip().splitlines()
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- end to end
_G2 = ["g2", "--param", "duration_s=600"]


@pytest.fixture(scope="module")
def recorded_g2(tmp_path_factory) -> Path:
    """30 s of tags recorded in fast mode, to replay in real time.

    (No emitter sits at the start position, so the run's g² fit fails: exit 1.
    The tags are what the replay needs.)
    """
    path = tmp_path_factory.mktemp("recorded") / "g2.h5"
    assert main(["g2", "--fast", "--out", str(path), "--json", "--param", "duration_s=30",
                 "--param", "min_duration_s=30"]) in (0, 1)
    assert _has_rows(path, "tag_chunk")
    return path


@pytest.mark.parametrize(("signame", "command", "table"), [
    ("SIGTERM", _G2, "tag_chunk"),
    ("SIGHUP", _G2, "tag_chunk"),
    ("SIGINT", _G2, "tag_chunk"),
    ("SIGTERM", ["survey"], "map_line"),
    pytest.param("SIGHUP", ["scan"], "map_line", marks=pytest.mark.slow),
    pytest.param("SIGTERM", ["demo", "--json"], "map_line", marks=pytest.mark.slow),
    ("SIGHUP", ["replay", "RECORDED", "--speed", "1"], "tag_chunk"),
], ids=lambda v: v if isinstance(v, str) else (v[0] if isinstance(v, list) else None))
def test_stop_signal_ends_the_cli_run_cleanly(tmp_path, capsys, request, signame, command,
                                              table):
    """A signal while the run acquires: exit 128 + N after the same cleanup as Ctrl-C."""
    signum = int(getattr(signal, signame))
    path = tmp_path / "run.h5"
    if "RECORDED" in command:
        command = [str(request.getfixturevalue("recorded_g2")) if c == "RECORDED" else c
                   for c in command]
    proc = _micropl(*command, "--out", str(path), cwd=tmp_path)
    _poll(proc, lambda: _has_rows(path, table), f"a stored {table} row")
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 128 + signum, err
    assert "Traceback" not in err
    summary = "interrupted" if signame == "SIGINT" else f"terminated by {signame}"
    assert _last_line(err) == f"micropl: {summary}; instruments were made safe"
    _check_stopped_cleanly(path, signame, capsys)


def test_second_signals_during_the_cleanup_are_logged_and_ignored(tmp_path, capsys):
    """Ctrl-C, then Ctrl-C, SIGTERM and SIGHUP while the cleanup waits for an exposure.

    The spectrum's 4 s background exposure cannot be cut, so the cleanup lasts
    until it ends; the later signals arrive during it (the log shows the first
    was handled before they are sent). They are logged and ignored: the
    first signal decides the exit code and the reason, and the cleanup
    completes.
    """
    path, log_path = tmp_path / "s.h5", tmp_path / "s.log"
    proc = _micropl("--log", str(log_path), "spectrum", "--out", str(path), "--param",
                    "em_gain=1", "--param", "exposure_s=4", cwd=tmp_path)
    _poll(proc, lambda: _has_rows(path, "run_start"), "the run's start record")
    os.kill(proc.pid, signal.SIGINT)
    _poll(proc, lambda: log_path.exists() and "SIGINT received" in log_path.read_text(),
          "the first signal in the log")
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert _last_line(err) == "micropl: interrupted; instruments were made safe"
    log_text = log_path.read_text()
    # Two SIGINTs in a row may reach the process as one; SIGTERM and SIGHUP cannot merge.
    for name in ("SIGTERM", "SIGHUP"):
        assert f"{name} ignored: the cleanup after SIGINT is still running" in err
        assert f"{name} ignored" in log_text
    _check_stopped_cleanly(path, "SIGINT", capsys)
    with SessionReader(path) as reader:
        assert "Ctrl-C" in reader.runs()[-1].reason


def test_script_api_stops_on_sigterm_with_exit_code_143(tmp_path, capsys):
    """``micropl.acquisition.run`` in a script's main thread: the same cleanup, exit 143."""
    path = tmp_path / "script.h5"
    script = textwrap.dedent(f"""
        from micropl.acquisition import load_setup, run
        from micropl.acquisition.procedures import G2
        with load_setup() as setup:
            run(G2(duration_s=600), setup, out={str(path)!r})
        print("not reached")
    """)
    proc = _spawn([sys.executable, "-c", script], tmp_path)
    _poll(proc, lambda: _has_rows(path, "tag_chunk"), "a stored tag chunk")
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=DEADLINE_S)
    assert proc.returncode == 143, err
    assert "not reached" not in out and "Traceback" not in err
    _check_stopped_cleanly(path, "SIGTERM", capsys)


# --------------------------------------------------------------------------- in process
class _Blocking:
    """A procedure that switches the laser on and blocks with no checkpoint until released."""

    name = "blocking"

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def run(self, ctx) -> None:
        ctx.setup.laser.emission_on = True
        self.started.set()
        if not self.release.wait(DEADLINE_S):
            raise TimeoutError("never released")


def test_laser_goes_off_before_the_procedure_reaches_a_checkpoint():
    """SIGTERM in a script's main thread (``Runner.run``): the laser is switched off from
    the main thread while the procedure is still inside its (uncheckpointed) call; the
    run then ends aborted and the handlers in place before are back."""
    swallow = signal.signal(signal.SIGTERM, lambda *_: None)  # never let SIGTERM end pytest
    before = signal.getsignal(signal.SIGTERM)
    seen: dict[str, bool] = {}
    procedure = _Blocking()

    def operator() -> None:
        procedure.started.wait(DEADLINE_S)
        os.kill(os.getpid(), signal.SIGTERM)
        t0 = time.monotonic()
        while setup.laser.emission_on and time.monotonic() - t0 < DEADLINE_S:
            time.sleep(0.01)
        seen["off_while_blocked"] = not setup.laser.emission_on and not procedure.release.is_set()
        procedure.release.set()

    try:
        with load_setup(clock_mode="fast") as setup:
            runner = Runner(setup)
            helper = threading.Thread(target=operator, daemon=True)
            helper.start()
            with pytest.raises(Interrupted) as info:
                runner.run(procedure)
            helper.join(DEADLINE_S)
            result = runner.wait(DEADLINE_S)
        assert seen == {"off_while_blocked": True}
        assert info.value.exit_code == 143 and info.value.problems == []
        assert (result.status, result.reason) == ("aborted", "terminated by SIGTERM")
        assert signal.getsignal(signal.SIGTERM) is before
    finally:
        signal.signal(signal.SIGTERM, swallow)


def test_no_run_starts_once_a_signal_was_received():
    """A signal before the run (e.g. while the setup loads): no run starts, Interrupted."""
    procedure = _Blocking()
    with load_setup(clock_mode="fast") as setup, SignalGuard() as guard:
        signal.raise_signal(signal.SIGHUP)
        assert guard.received == signal.SIGHUP
        runner = Runner(setup)
        with pytest.raises(Interrupted) as info:
            runner.run(procedure)
    assert info.value.exit_code == 129 and "SIGHUP" in info.value.reason
    assert not procedure.started.is_set() and not runner.busy


def test_guard_records_the_first_signal_and_ignores_the_rest(caplog):
    previous = {s: signal.getsignal(s) for s in sig.STOP_SIGNALS}
    with SignalGuard() as guard:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.raise_signal(signum)  # would raise KeyboardInterrupt / end pytest unguarded
        assert guard.received == signal.SIGINT
        assert guard.ignored == [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
        assert sig.active_guard() is guard
    assert {s: signal.getsignal(s) for s in sig.STOP_SIGNALS} == previous
    assert sig.active_guard() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("ignored: the cleanup after SIGINT" in m for m in warnings) == 3


def test_a_signal_ignored_at_start_stays_ignored():
    """``nohup`` ignores SIGHUP: micropl keeps ignoring it (as Python does for SIGINT)."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with SignalGuard() as guard:
            signal.raise_signal(signal.SIGHUP)
            assert guard.received is None
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_guard_outside_the_main_thread_installs_nothing():
    states: list[tuple[bool, object]] = []

    def work() -> None:
        with SignalGuard() as guard:
            states.append((guard.installed, sig.active_guard()))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(DEADLINE_S)
    assert states == [(False, None)]


@pytest.mark.parametrize(("signame", "code", "fragment"), [
    ("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "terminated by SIGTERM"),
    ("SIGHUP", 129, "terminated by SIGHUP"),
])
def test_interrupted_names_the_signal(signame, code, fragment):
    exc = Interrupted(int(getattr(signal, signame)))
    assert isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Exception)
    assert exc.exit_code == code and fragment in exc.reason and exc.name == signame


def test_signal_after_the_run_still_ends_the_command_as_asked(monkeypatch, capsys):
    """SIGTERM arriving after the run ended (while the summary prints): exit 143, one line."""
    from micropl.cli import run as cli_run

    def finished_then_terminated(args) -> int:
        signal.raise_signal(signal.SIGTERM)
        return 0

    monkeypatch.setattr(cli_run, "run_command", finished_then_terminated)
    assert main(["g2", "--fast", "--out", "unused.h5"]) == 143
    assert capsys.readouterr().err == "micropl: terminated by SIGTERM; instruments were made safe\n"


def test_final_snapshot_reads_the_laser_back(tmp_path):
    """The run's last snapshot is read from the instruments after the cleanup: when the
    laser stops answering and cannot be switched off, it says ``emission_on: true``."""
    from micropl.acquisition.session import Session

    overrides = {"laser": {"faults": {"disconnect_after_s": 1.0}}}

    class LaserOnThenWait:
        name = "laser-on"

        def run(self, ctx) -> None:
            ctx.setup.laser.emission_on = True
            ctx.sleep(2.0)

    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        with Session(setup, tmp_path / "f.h5") as session:
            result = session.run(LaserOnThenWait())
    assert result.status == "failed" and "laser off failed" in result.reason
    with SessionReader(tmp_path / "f.h5") as reader:
        final = reader.records("instrument_snapshot", run_id=result.run_id)[-1]
    assert json.loads(final.record.settings_json)["laser"]["emission_on"] is True


def test_cleanup_that_cannot_switch_the_laser_off_is_not_called_safe(tmp_path, capsys,
                                                                      monkeypatch):
    """SIGTERM to ``main`` (in this process) after the laser stopped answering: exit 143,
    and the last line says the cleanup is incomplete instead of 'made safe'."""
    from micropl.errors import InstrumentError
    from micropl.simulators.laser import SimLaser

    broken = threading.Event()
    real_off = SimLaser.off

    def off(self) -> None:
        if broken.is_set():
            raise InstrumentError(f"laser '{self.name}': emission off: not responding (test)")
        real_off(self)

    monkeypatch.setattr(SimLaser, "off", off)
    path = tmp_path / "g2.h5"
    failures: list[str] = []

    def operator() -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < DEADLINE_S:
            if _has_rows(path, "tag_chunk"):
                broken.set()
                os.kill(os.getpid(), signal.SIGTERM)  # main's guard holds SIGTERM now
                return
            time.sleep(0.05)
        failures.append("no tag chunk stored")

    helper = threading.Thread(target=operator, daemon=True)
    helper.start()
    code = main(["g2", "--json", "--out", str(path), "--param", "duration_s=600"])
    helper.join(DEADLINE_S)
    assert failures == [] and code == 143
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _last_line(err) == ("micropl: terminated by SIGTERM; cleanup incomplete: laser off "
                               "failed: laser 'laser': emission off: not responding (test): "
                               "check the instruments by hand")
    with SessionReader(path) as reader:
        run = reader.runs()[-1]
        final = reader.records("instrument_snapshot", run_id=run.run_id)[-1]
    assert run.status == "aborted" and "laser off failed" in run.reason
    assert json.loads(final.record.settings_json)["laser"]["emission_on"] is True


@pytest.mark.parametrize(("signame", "command", "line"), [
    ("SIGTERM", "g2", "micropl: terminated by SIGTERM; instruments were made safe"),
    ("SIGINT", "g2", "micropl: interrupted; instruments were made safe"),
    ("SIGHUP", "info", "micropl: terminated by SIGHUP"),
    ("SIGINT", "info", "micropl: interrupted"),
])
def test_signal_while_the_commands_load_is_one_line(tmp_path, capsys, monkeypatch, signame,
                                                     command, line):
    """A signal while the sub-commands are imported and parsed: one line, 128 + N, and an
    instrument command opens nothing (no session file)."""
    from micropl import cli

    signum = int(getattr(signal, signame))
    real_build = cli.build_parser

    def build_then_signal():
        parser = real_build()
        signal.raise_signal(signum)  # unguarded: SIGINT would raise, SIGTERM end pytest
        return parser

    monkeypatch.setattr(cli, "build_parser", build_then_signal)
    path = tmp_path / "run.h5"
    argv = ["g2", "--fast", "--out", str(path)] if command == "g2" else ["info", str(path)]
    assert main(argv) == 128 + signum
    assert capsys.readouterr().err == line + "\n"
    assert not path.exists()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_sighup_after_the_terminal_is_gone(tmp_path, capsys):
    """A dropped SSH session: the terminal closes, then SIGHUP arrives. Writes to the dead
    terminal (the progress bar's last frame, the final line) fail; the cleanup still
    completes and the exit code is still 129 (not 1, nor Python's 120)."""
    master, slave = os.openpty()
    path = tmp_path / "g2.h5"
    proc = subprocess.Popen([sys.executable, "-m", "micropl", *_G2, "--out", str(path)],
                            cwd=tmp_path, stdin=slave, stdout=slave, stderr=slave,
                            preexec_fn=_default_dispositions)
    os.close(slave)
    try:
        t0 = time.monotonic()
        while not _has_rows(path, "tag_chunk"):
            assert proc.poll() is None, f"ended early (exit {proc.returncode})"
            assert time.monotonic() - t0 < DEADLINE_S, "no tag chunk stored"
            with contextlib.suppress(OSError):  # keep the terminal's buffer drained
                if select.select([master], [], [], 0.05)[0]:
                    os.read(master, 65536)
    finally:
        os.close(master)  # the terminal is gone
    os.kill(proc.pid, signal.SIGHUP)
    assert proc.wait(DEADLINE_S) == 129
    _check_stopped_cleanly(path, "SIGHUP", capsys)
