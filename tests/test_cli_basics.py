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
