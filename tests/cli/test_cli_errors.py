"""Every error is one line: OSErrors on the user's paths, failing runs, bugs.

Each case goes through :func:`micropl.cli.main` (stderr captured as
a terminal would see it, log records included) and checks the exit code, that
stderr is exactly one line starting ``micropl:``, that it names the path, and
that no traceback is printed. Tracebacks go to the log file (beside the session
file, or ``--log FILE``) or appear with ``--debug``.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import h5py
import pytest

from micropl.acquisition.storage import writer as storage
from micropl.cli import main
from micropl.errors import AnalysisInputError

#: A quick fast-mode run whose output path is the case under test.
SPECTRUM = ["spectrum", "--fast", "--param", "exposure_s=0.1", "--param", "em_gain=1"]


def one_line(capsys) -> str:
    """The single line on stderr (fails when there are more, or a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("micropl: "), err
    return lines[0]


def _h5py_create_fails(monkeypatch, code: int) -> None:
    """h5py's own create error: an OSError with an errno and no file name, whose text
    names the temporary file the writer builds under."""
    real = h5py.File

    def fake(name, mode="r", *args, **kwargs):
        if mode == "w":
            raise OSError(code, f"Unable to synchronously create file (unable to open file: "
                                f"name = '{name}', errno = {code}, error message = "
                                f"'{os.strerror(code)}')")
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr(storage.h5py, "File", fake)


# --------------------------------------------------------------------------- real paths
def test_parent_is_a_file(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "run.h5"
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "notes.txt" in line and "not a folder" in line


def test_parent_is_a_file_deeper(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "sub" / "run.h5"
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    assert "notes.txt" in one_line(capsys)


def test_name_too_long(tmp_path, capsys):
    out = tmp_path / ("q" * 300 + ".h5")
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "q" * 50 in line and "too long" in line


def test_folder_name_too_long(tmp_path, capsys):
    out = tmp_path / ("d" * 300) / "run.h5"
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert "d" * 50 in line and "too long" in line


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_no_permission_in_sysfs(capsys):
    """sysfs refuses new files even to root: a real EACCES."""
    out = Path("/sys/micropl-run.h5")
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert str(out) in line and "permission" in line.lower()
    assert ".creating" not in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a read-only folder")
def test_read_only_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main([*SPECTRUM, "--out", str(folder / "run.h5")]) == 2
    finally:
        folder.chmod(0o755)
    assert "ro" in one_line(capsys)


# --------------------------------------------------------------------------- injected errnos
@pytest.mark.parametrize(("code", "fragments"), [
    (errno.EACCES, ("permission",)), (errno.EPERM, ("permission", "not permitted")),
    (errno.EROFS, ("read-only",)), (errno.ENOSPC, ("disk is full", "no space")),
    (errno.EDQUOT, ("quota",)), (errno.ENAMETOOLONG, ("shorter", "too long")),
    (errno.ENOTDIR, ("not a folder",)), (errno.EISDIR, ("folder",)),
    (errno.ENOENT, ("check the path", "does not exist")),
], ids=lambda v: errno.errorcode.get(v, v) if isinstance(v, int) else None)
def test_session_file_cannot_be_created(tmp_path, capsys, monkeypatch, code, fragments):
    """The output file cannot be created: one line naming the path given (not h5py's
    temporary name) and what is wrong, exit 2; no file left behind."""
    _h5py_create_fails(monkeypatch, code)
    out = tmp_path / "run.h5"
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    line = one_line(capsys)
    assert str(out) in line and ".creating" not in line
    assert any(f in line.lower() for f in fragments), line
    assert not out.exists() and not out.with_suffix(".log").exists()


@pytest.mark.parametrize(("code", "exit_code", "fragment"), [
    (errno.EACCES, 2, "permission"), (errno.EROFS, 2, "read-only"),
    (errno.ENOSPC, 2, "disk is full"), (errno.ENAMETOOLONG, 2, "shorter"),
    (errno.ELOOP, 2, "symbolic links"), (errno.EIO, 1, "input/output error"),
    (errno.EMFILE, 1, "ulimit"),
], ids=lambda v: errno.errorcode.get(v, v) if isinstance(v, int) and v > 2 else None)
def test_oserror_reaching_the_cli_is_one_line(tmp_path, capsys, monkeypatch, code, exit_code,
                                              fragment):
    """Any OSError a command lets through: one line naming the file and what to do; exit
    2 when it is about the user's path or disk, 1 for the machine (I/O error, limits)."""
    from micropl.cli import run as cli_run

    out = tmp_path / "run.h5"

    def fails(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(out))

    monkeypatch.setattr(cli_run, "execute", fails)
    assert main([*SPECTRUM, "--out", str(out)]) == exit_code
    line = one_line(capsys)
    assert line.startswith(f"micropl: error: {out}: {os.strerror(code)}")
    assert fragment in line.lower()


@pytest.mark.parametrize("exc_type", [PermissionError, FileExistsError])
def test_parent_folder_cannot_be_made(tmp_path, capsys, monkeypatch, exc_type):
    code = errno.EACCES if exc_type is PermissionError else errno.EEXIST

    def refuse(self, *args, **kwargs):
        raise exc_type(code, os.strerror(code), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    out = tmp_path / "new" / "run.h5"
    assert main([*SPECTRUM, "--out", str(out)]) == 2
    assert str(tmp_path / "new") in one_line(capsys)


def test_log_file_that_cannot_be_written_does_not_fail_the_command(tmp_path, capsys):
    """``--log`` into a file's 'folder': said once, the command goes on (exit 0)."""
    (tmp_path / "notes.txt").write_text("a file")
    log_path = tmp_path / "notes.txt" / "micropl.log"
    out = tmp_path / "run.h5"
    assert main(["--log", str(log_path), *SPECTRUM, "--json", "--out", str(out)]) == 0
    line = one_line(capsys)
    assert "log file not written" in line and "notes.txt" in line
    assert out.exists()


# --------------------------------------------------------------------------- run failures
@pytest.fixture
def analysis_fails(monkeypatch):
    """The spectrum procedure's cosmic-ray filter refuses its input."""
    from micropl.acquisition.procedures import spectrum

    def refuse(*args, **kwargs):
        raise AnalysisInputError("cosmic-ray filter: frame holds no finite pixel (test)")

    monkeypatch.setattr(spectrum, "remove_cosmic_rays_spatial", refuse)


def test_failing_analysis_is_one_line_with_the_traceback_beside_the_file(
        tmp_path, capsys, analysis_fails):
    out = tmp_path / "s.h5"
    assert main([*SPECTRUM, "--json", "--out", str(out)]) == 1
    line = one_line(capsys)
    log_path = tmp_path / "s.log"
    assert line == (f"micropl: run failed: AnalysisInputError: cosmic-ray filter: frame holds "
                    f"no finite pixel (test) (traceback in {log_path})")
    text = log_path.read_text()
    assert "Traceback (most recent call last)" in text and "remove_cosmic" in text


def test_failing_analysis_traceback_with_debug(tmp_path, capsys, analysis_fails):
    assert main(["--debug", *SPECTRUM, "--json", "--out", str(tmp_path / "s.h5")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("micropl: run failed: AnalysisInputError")


def test_failing_analysis_traceback_in_the_log_given(tmp_path, capsys, analysis_fails):
    log_path = tmp_path / "logs" / "here.log"
    log_path.parent.mkdir()
    assert main([*SPECTRUM, "--json", "--out", str(tmp_path / "s.h5"),
                 "--log", str(log_path)]) == 1
    assert str(log_path) in one_line(capsys)
    text = log_path.read_text()
    assert "INFO" in text and "Traceback (most recent call last)" in text
    assert not (tmp_path / "s.log").exists()


def test_clean_run_leaves_no_log_file(tmp_path, capsys):
    out = tmp_path / "s.h5"
    assert main([*SPECTRUM, "--json", "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    assert not out.with_suffix(".log").exists()


# --------------------------------------------------------------------------- bugs
def test_bug_in_a_command_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    from micropl.cli import run as cli_run

    def broken(*args, **kwargs):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(cli_run, "execute", broken)
    argv = [*SPECTRUM, "--out", str(tmp_path / "s.h5")]
    assert main(argv) == 1
    line = one_line(capsys)
    assert line.startswith("micropl: internal error: TypeError: unsupported operand")
    assert "--debug" in line
    with pytest.raises(TypeError):
        main(["--debug", *argv])


def test_uncaught_error_in_a_thread_is_one_line(tmp_path, capsys, monkeypatch):
    from micropl.cli import run as cli_run

    def with_a_crashing_thread(*args, **kwargs):
        thread = threading.Thread(target=lambda: 1 / 0, name="helper")
        thread.start()
        thread.join()
        raise RuntimeError("the command failed after its helper thread crashed")

    monkeypatch.setattr(cli_run, "execute", with_a_crashing_thread)
    assert main([*SPECTRUM, "--out", str(tmp_path / "s.h5")]) == 1
    assert "the command failed after" in one_line(capsys)


def test_g2_where_no_emitter_is_one_line(tmp_path, capsys):
    """A g² at a spot without an emitter gives no histogram: the procedure's own analysis
    fails the run, its one line says why, and the log file has it."""
    config = tmp_path / "dark.yaml"
    config.write_text("sample: {density_per_um2: 1.0e-6, aggregates_per_um2: 0.0,\n"
                      "         background: {apd_cps: 0.0}}\n"
                      "tagger: {dark_cps: [0.0, 0.0], afterpulse_probability: 0.0}\n")
    out = tmp_path / "g.h5"
    assert main(["g2", "--fast", "--json", "--config", str(config), "--out", str(out),
                 "--param", "duration_s=1"]) == 1
    line = one_line(capsys)
    assert line.startswith("micropl: run failed:") and "histogram is empty" in line
    assert "histogram is empty" in (tmp_path / "g.log").read_text()
