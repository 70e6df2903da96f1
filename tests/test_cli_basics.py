"""The command line starts, in both spellings, and reports bad usage with exit code 2."""

import subprocess
import sys

from micropl.acquisition.cli import main


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
