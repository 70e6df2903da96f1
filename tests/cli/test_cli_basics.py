"""The command line starts, in both spellings, and reports bad usage with exit code 2."""

import subprocess
import sys

from micropl.cli import main


def test_help_via_python_m():
    out = subprocess.run([sys.executable, "-m", "micropl", "--help"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0
    assert "usage: micropl" in out.stdout


def test_unknown_command_is_usage_error(capsys):
    try:
        code = main(["no-such-command"])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_info_instruments_lists_every_driver_and_names_missing_extras(capsys):
    import json

    assert main(["info", "--instruments", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    drivers = {(r["role"], r["driver"]) for r in rows}
    assert ("tagger", "swabian") in drivers and ("camera", "simulated") in drivers
    swabian = next(r for r in rows if r["driver"] == "swabian")
    if not swabian["ready"]:
        assert "micropl[swabian]" in swabian["install"]


def test_info_without_file_or_instruments_is_a_usage_error(capsys):
    assert main(["info"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_progress_bars_on_a_terminal_handle_stages_with_and_without_totals():
    import io

    from rich.console import Console

    from micropl.acquisition import Session, load_setup
    from micropl.acquisition.runner import Progress
    from micropl.cli.output import ProgressDisplay

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        with ProgressDisplay(session, quiet=False, console=console) as display:
            for item in (Progress(1, "changing grating", 0.0, None, 0.0),
                         Progress(1, "cooling camera (10 °C)", 0.0, None, 1.0),
                         Progress(1, "cooling camera (-50 °C)", 0.0, None, 2.0),
                         Progress(1, "QD 1/3", 0.0, 3.0, 3.0),
                         Progress(1, "QD 2/3", 1.0, 3.0, 4.0)):
                session.stream.publish(item)
            import time

            deadline = time.monotonic() + 10  # the display subscriber runs in its own thread
            while time.monotonic() < deadline and not any(
                    task.description == "QD 2/3" for task in display.progress.tasks):
                time.sleep(0.01)
            display.progress.refresh()
    assert set(display.tasks) == {"changing grating", "cooling camera", "qd"}
    assert "QD 2/3" in out.getvalue()
