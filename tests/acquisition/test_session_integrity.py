"""No session is ever lost or mixed (issue 8: safety and data integrity).

* Creating any output file is exclusive: of two writers racing for one path
  exactly one wins, the other gets one line and exit 2; no command overwrites.
* Output-path problems are one line naming the path, exit 2, no temp file left.
* ``survey --resume`` runs on the setup the file records, refuses a differing
  ``--config``, ``--param`` and ``--out``; is locked before anything else; resumes
  a survey killed during its map, after its QD list, and a killed resume.
* A corrupted session file is refused with one line by info, export, replay and
  ``--resume``; reading stays bounded whatever the file claims.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from micropl import cli
from micropl.acquisition.storage import (
    OutputExistsError,
    OutputPathError,
    SessionLock,
    SessionReader,
    SessionWriter,
    write_new_file,
)
from micropl.errors import SessionBusyError
from micropl.records import QDStatus, QDTarget, RunStart, RunStop, Spectrum, TagChunk, Tagged

pytestmark = pytest.mark.timeout(600)

SMALL = ["scan.x_max_um=6", "scan.y_max_um=6", "scan.step_um=0.3", "refocus.size_um=1.2",
         "refocus.step_um=0.15", "spectrum.exposure_s=0.2", "spectrum.accumulations=2",
         "spectrum.background_frames=1", "g2.duration_s=1", "g2.min_duration_s=0.5",
         "drift_every_n_qds=0", "film_accumulations=2"]


def main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("micropl:")]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- exclusive create
def test_twenty_thread_races_for_one_session_path_lose_no_session(tmp_path):
    """Two writers created at the same instant (barrier) for one path, 20 times: each
    time exactly one wins, the other gets OutputExistsError, the file is the winner's."""
    for k in range(20):
        path = tmp_path / f"race{k}.h5"
        barrier = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def create(name: str, path: Path = path, barrier: threading.Barrier = barrier,
                   outcome: dict = outcome) -> None:
            barrier.wait()
            try:
                with SessionWriter.create(path, config_text=name) as w:
                    w.append(RunStart(0, "g2", "{}", 1.0))
                outcome[name] = "won"
            except OutputExistsError as exc:
                outcome[name] = str(exc)

        threads = [threading.Thread(target=create, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [n for n, o in outcome.items() if o == "won"]
        assert len(winners) == 1, outcome
        loser = ({"a", "b"} - set(winners)).pop()
        assert str(outcome[loser]) == f"{path}: already exists; choose another file name " \
                                      f"(or resume it)"
        with SessionReader(path) as r:
            assert r.config_text == winners[0] and r.n_rows("run_start") == 1
        assert leftovers(tmp_path) == []


def test_two_processes_racing_for_one_out_one_wins(tmp_path):
    """Two real ``micropl g2 --out SAME`` processes released together (barrier: both
    wait for one byte on stdin): one exit 0, one exit 2 with one line; one session."""
    path = tmp_path / "same.h5"
    code = ("import sys; from micropl.cli import main; sys.stdin.read(1); "
            "sys.exit(main(sys.argv[1:]))")
    args = ["g2", "--fast", "--json", "--out", str(path), "--param", "duration_s=0.5",
            "--param", "min_duration_s=0.2"]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        p.stdin.write("x")
        p.stdin.flush()
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 2], [1, 2]), results  # the winner's g² may be poor (1), never lost
    loser = results[[p.returncode for p in procs].index(2)][1]
    assert "already exists" in one_line_error(loser) and str(path) in loser
    with SessionReader(path) as r:
        assert len(r.runs()) == 1
    assert leftovers(tmp_path) == []


def test_exclusive_placement_when_the_file_appears_meanwhile(tmp_path):
    """The early check passed, then another process created the file: the placement
    itself refuses (no overwrite), the other file is unchanged, no temp file is left."""
    target = tmp_path / "x.csv"

    def write(tmp: Path) -> None:
        tmp.write_text("mine\n")
        target.write_text("theirs\n")  # the other writer, between check and placement

    with pytest.raises(OutputExistsError, match="already exists"):
        write_new_file(target, write)
    assert target.read_text() == "theirs\n" and leftovers(tmp_path) == []


@pytest.fixture(scope="module")
def small_session(tmp_path_factory):
    """A hand-made session with a survey run, spectra and tags (no instruments)."""
    path = tmp_path_factory.mktemp("session") / "s.h5"
    wl = np.linspace(500, 520, 64)
    with SessionWriter.create(path, config_text="clock: {mode: fast}\n",
                              instruments={"laser": {"rep_rate_hz": 1e7}},
                              truth={"x_um": [1.0], "y_um": [2.0]}) as w:
        w.append(RunStart(0, "survey", '{"max_qds": 2}', 1.0))
        w.append(QDTarget(0, 0, 1.0, 2.0, 3.0, 9.0))
        w.append(QDTarget(0, 1, 5.0, 6.0, 3.0, 9.0))
        w.append(Tagged(Spectrum(wl, np.arange(64.0), 1.0), 0, 0, "accumulated"))
        w.append(Tagged(TagChunk(np.arange(0, 10**12, 10**9, dtype=np.int64),
                                 np.tile(np.array([1, 2], np.uint8), 500), 0, 10**12),
                        0, 0, "g2"))
        w.append(QDStatus(0, 0, "completed", ""))
        w.append(RunStop(0, "completed", "", 2.0))
    return path


OVERWRITE_CASES = {
    "survey": ["survey", "--fast", "--out", "{f}"],
    "scan": ["scan", "--fast", "--out", "{f}"],
    "spectrum": ["spectrum", "--fast", "--out", "{f}"],
    "g2": ["g2", "--fast", "--out", "{f}"],
    "demo": ["demo", "--out", "{f}"],
    "demo-report": ["demo", "--out", "{d}/new.h5", "--report", "{f}"],
    "replay-out": ["replay", "{s}", "--out", "{f}"],
    "simulate-spectrum": ["simulate", "spectrum", "--out", "{f}"],
    "simulate-tags": ["simulate", "tags", "--out", "{f}", "--duration", "0.1"],
    "export-ptu": ["export", "{s}", "--ptu", "{d}"],
    "export-csv": ["export", "{s}", "--csv", "{d}"],
}
EXPORT_NAMES = {"export-ptu": "qd0_run0.ptu", "export-csv": "qd0_run0_accumulated_seq3.csv"}


@pytest.mark.parametrize("case", sorted(OVERWRITE_CASES))
def test_no_command_overwrites_an_existing_file(case, tmp_path, small_session, capsys):
    existing = tmp_path / EXPORT_NAMES.get(case, "existing.out")
    existing.write_bytes(b"precious")
    argv = [a.format(f=existing, d=tmp_path, s=small_session) for a in OVERWRITE_CASES[case]]
    rc, _, err = main(capsys, *argv)
    assert rc == 2, err
    line = one_line_error(err)
    assert f"{existing}: already exists; choose another" in line, line
    assert existing.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing.name]  # nothing else


def test_export_writes_every_file_it_would_not_overwrite(tmp_path, small_session, capsys):
    rc, out, err = main(capsys, "export", str(small_session), "--ptu", str(tmp_path / "p"),
                        "--csv", str(tmp_path / "c"), "--json")
    assert rc == 0, err
    written = json.loads(out)
    assert [Path(p).name for p in written["ptu"]] == ["qd0_run0.ptu"]
    assert [Path(p).name for p in written["csv"]] == [EXPORT_NAMES["export-csv"]]
    rc, _, err = main(capsys, "export", str(small_session), "--csv", str(tmp_path / "c"))
    assert rc == 2 and "already exists" in one_line_error(err)


# --------------------------------------------------------------------------- output paths
def _path_cases(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    return {"parent-is-a-file": a_file / "s.h5", "deep-under-a-file": a_file / "d" / "s.h5",
            "name-too-long": tmp_path / ("n" * 300 + ".h5")}


@pytest.mark.parametrize("command", ["g2", "simulate-spectrum", "replay"])
@pytest.mark.parametrize("case", ["parent-is-a-file", "deep-under-a-file", "name-too-long"])
def test_bad_output_paths_are_one_line_exit_2(command, case, tmp_path, small_session,
                                              capsys):
    out = _path_cases(tmp_path)[case]
    argv = {"g2": ["g2", "--fast", "--out", str(out)],
            "simulate-spectrum": ["simulate", "spectrum", "--out", str(out)],
            "replay": ["replay", str(small_session), "--out", str(out)]}[command]
    rc, _, err = main(capsys, *argv)
    assert rc == 2, err
    line = one_line_error(err)
    assert str(out)[:60] in line or "--out" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_placement_failure_is_one_line_and_leaves_no_temp_file(code, tmp_path, monkeypatch):
    """A folder that refuses the new name (no permission, read-only, full): one line
    naming the file, and the temporary file is removed (for sessions too)."""
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    with pytest.raises(OutputPathError) as info:
        SessionWriter.create(tmp_path / "s.h5")
    assert str(info.value).startswith(f"{tmp_path / 's.h5'}: cannot be written (")
    with pytest.raises(OutputPathError):
        write_new_file(tmp_path / "x.csv", lambda tmp: tmp.write_text("1"))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- resume
def _survey_file(path: Path, *, seed: int, stop_at: str) -> Path:
    """A fast survey on a sample of ``seed`` stopped (aborted) when the first record
    named by ``stop_at`` is published: ``QDTarget`` (after the QD list) or ``QDStatus``."""
    import yaml

    from micropl.acquisition.config import default_config_path
    from micropl.acquisition.session import Session
    from micropl.acquisition.setup import load_setup
    from micropl.cli.run import build_procedure

    data = yaml.safe_load(default_config_path().read_text())
    data["sample"]["seed"] = seed
    text = yaml.safe_dump(data)
    survey = build_procedure("survey", SMALL, {"max_qds": 2})
    with load_setup(text=text, clock_mode="fast") as setup:
        with Session(setup, path) as session:
            def stop(item) -> None:
                record = getattr(item, "record", item)
                if type(record).__name__ == stop_at:
                    session.runner.abort("test stop")
            session.on(stop, maxlen=None)
            result = session.run(survey)
    assert result.status == "aborted"
    return path


@pytest.fixture(scope="module")
def seed7_pending(tmp_path_factory):
    """A seed-7 survey stopped after its first QD: one QD left pending."""
    return _survey_file(tmp_path_factory.mktemp("seed7") / "s.h5", seed=7, stop_at="QDStatus")


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_resume_without_config_uses_the_recorded_setup(seed7_pending, tmp_path, capsys,
                                                       monkeypatch):
    path = _copy(seed7_pending, tmp_path / "s.h5")
    with SessionReader(path) as r:
        stored_text = r.config_text
        pending = [q.qd_id for q in r.qds() if q.status == "pending"]
    assert "seed: 7" in stored_text and pending
    from micropl.cli import run as cli_run

    used = []
    real = cli_run.load_setup
    monkeypatch.setattr(cli_run, "load_setup",
                        lambda config=None, **kw: used.append((config, kw)) or real(config, **kw))
    rc, out, err = main(capsys, "survey", "--fast", "--json", "--resume", str(path))
    assert rc == 0, err
    assert used == [(None, {"text": stored_text, "clock_mode": "fast"})]
    summary = json.loads(out)
    assert all(q["status"] != "pending" for q in summary["qds"])
    for q in summary["qds"]:  # measured on the seed-7 sample: each QD is a seed-7 emitter
        assert q["truth"] is not None, q


def test_resume_with_a_differing_config_is_refused(seed7_pending, tmp_path, capsys):
    path = _copy(seed7_pending, tmp_path / "s.h5")
    before = path.read_bytes()
    other = tmp_path / "other.yaml"
    from micropl.acquisition.config import default_config_path

    other.write_text(default_config_path().read_text())  # seed 1
    rc, _, err = main(capsys, "survey", "--resume", str(path), "--config", str(other))
    assert rc == 2
    line = one_line_error(err)
    assert "--config differs from the setup this session was recorded with: " \
           "sample.seed 1 vs 7" in line, line
    assert path.read_bytes() == before


@pytest.mark.parametrize("extra", [["--param", "max_qds=3"], ["--out", "x.h5"]])
def test_resume_refuses_param_and_out(extra, seed7_pending, capsys):
    rc, _, err = main(capsys, "survey", "--resume", str(seed7_pending), *extra)
    assert rc == 2
    assert "cannot be given with --resume" in one_line_error(err)


def test_resume_of_a_busy_file_is_refused_first(seed7_pending, tmp_path, capsys):
    """While another resume (or writer) holds the file, a resume gets one line, exit 2,
    and touches nothing; and of two concurrent SessionWriter.resume calls one wins."""
    path = _copy(seed7_pending, tmp_path / "s.h5")
    before = path.read_bytes()
    with SessionLock.acquire(path):
        rc, _, err = main(capsys, "survey", "--fast", "--resume", str(path))
    assert rc == 2 and "being written by another process" in one_line_error(err)
    assert path.read_bytes() == before
    for _ in range(5):
        outcome: list[str] = []
        attempted = threading.Semaphore(0)
        barrier = threading.Barrier(2)

        def resume(outcome: list = outcome, attempted: threading.Semaphore = attempted,
                   barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                writer = SessionWriter.resume(path)
            except SessionBusyError:
                outcome.append("busy")
                attempted.release()
                return
            outcome.append("won")
            attempted.release()
            # hold the file until the other attempt is over (or a generous deadline)
            deadline = time.monotonic() + 60
            while len(outcome) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            writer.close()

        threads = [threading.Thread(target=resume) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert sorted(outcome) == ["busy", "won"], outcome
    with SessionReader(path) as r:
        assert r.n_rows("run_start") == 1  # resumes add no run, and nothing was lost


def test_resume_after_the_qd_list_before_any_qd(tmp_path, capsys):
    path = _survey_file(tmp_path / "s.h5", seed=1, stop_at="QDTarget")
    with SessionReader(path) as r:
        assert r.n_rows("spot_list") == 1 and r.n_rows("qd_status") == 0
    rc, out, err = main(capsys, "survey", "--fast", "--json", "--resume", str(path))
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["qds"] and all(q["status"] != "pending" for q in summary["qds"])
    assert [r["status"] for r in summary["runs"]] == ["aborted", "completed"]


# --------------------------------------------------------------------------- kill -9
def _poll_rows(path: Path, table: str, n: int, proc: subprocess.Popen,
               deadline_s: float = 240) -> bool:
    """Wait until ``table`` of the live file has ``n`` rows (False: the run ended)."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < deadline_s:
        if path.exists():
            try:
                with SessionReader(path) as r:
                    if table in r.tables and r.n_rows(table) >= n:
                        return True
            except Exception:  # noqa: BLE001 - the file may be mid-creation; poll again
                pass
        time.sleep(0.05)
    return False


def _kill_in_map(path: Path, n_lines: int) -> bool:
    """A real-clock survey subprocess, kill -9 once ``n_lines`` map lines are stored."""
    args = ["survey", "--json", "--out", str(path), "--max-qds", "2"]
    for p in SMALL:
        args += ["--param", p]
    proc = subprocess.Popen([sys.executable, "-m", "micropl", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reached = _poll_rows(path, "map_line", n_lines, proc)
    killed = reached and proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    return killed


def _resume_completes(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "micropl", "survey", "--fast", "--json",
                           "--resume", str(path)], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    runs = [r["status"] for r in summary["runs"]]
    assert runs[-1] == "completed" and "interrupted" not in runs and "running" not in runs
    assert all(q["status"] in ("completed", "failed") for q in summary["qds"])
    with SessionReader(path) as r:
        statuses = [s.qd_id for s in r.records("qd_status")]
        assert len(statuses) == len(set(statuses)) == len(summary["qds"])
        assert r.n_rows("spot_list") >= 1
    return summary


def test_kill_9_during_the_map_then_resume_redoes_the_map(tmp_path):
    path = tmp_path / "s.h5"
    assert _kill_in_map(path, 2), "the survey ended before the kill"
    with SessionReader(path) as r:
        assert r.n_rows("spot_list") == 0 and r.n_rows("qd_target") == 0
        assert [x.status for x in r.runs()] == ["interrupted"]
    summary = _resume_completes(path)
    assert summary["qds"], "the redone map selected no QD"
    assert summary["runs"][0]["status"] == "failed"  # the killed run, closed on resume


@pytest.mark.slow
def test_kill_9_during_the_map_many(tmp_path):
    outcomes = []
    for k, n_lines in enumerate((1, 5, 10, 15, 20)):
        path = tmp_path / f"s{k}.h5"
        killed = _kill_in_map(path, n_lines)
        summary = _resume_completes(path)
        outcomes.append({"lines": n_lines, "killed": killed, "qds": len(summary["qds"])})
    print("map kill trials:", json.dumps(outcomes))
    assert sum(o["killed"] for o in outcomes) >= 4


def test_killed_resume_resumed_again(tmp_path, seed7_pending):
    """A resume that is itself killed -9 (while measuring) resumes again to the end."""
    path = _copy(seed7_pending, tmp_path / "s.h5")
    proc = subprocess.Popen([sys.executable, "-m", "micropl", "survey", "--json", "--resume",
                             str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reached = _poll_rows(path, "run_start", 2, proc)  # the resumed run has started
    if reached and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(60)
    summary = _resume_completes(path)
    assert len(summary["runs"]) >= 2


# --------------------------------------------------------------------------- corrupt files
def _edit_rows(path: Path, table: str, edit) -> None:
    with h5py.File(path, "r+") as f:
        ds = f[f"tables/{table}/rows"]
        rows = ds[:]
        edit(rows, f[f"tables/{table}"])
        ds[:] = rows


def _set_json(path: Path, table: str, column: str, text: bytes) -> None:
    with h5py.File(path, "r+") as f:
        group = f[f"tables/{table}"]
        rows = group["rows"][:]
        values = group[column]
        start = values.shape[0]
        values.resize((start + len(text),))
        values[start:] = np.frombuffer(text, np.uint8)
        rows[f"{column}_offset"][0] = start
        rows[f"{column}_size"][0] = len(text)
        group["rows"][:] = rows


def _corrupt(case: str, path: Path) -> None:
    if case == "lengths-disagree":
        _edit_rows(path, "spectrum", lambda r, g: r["counts_size"].__setitem__(0, 10))
    elif case == "tags-lengths-disagree":
        _edit_rows(path, "tag_chunk", lambda r, g: r["channel_size"].__setitem__(0, 5))
    elif case == "negative-size":
        _edit_rows(path, "spectrum", lambda r, g: r["counts_size"].__setitem__(0, -64))
    elif case == "offset-outside":
        _edit_rows(path, "spectrum", lambda r, g: r["counts_offset"].__setitem__(0, 10**6))
    elif case == "huge-claimed-values":
        def huge(r, g):
            g["t_ps"].resize((10**12,))
            g["channel"].resize((10**12,))
            r["t_ps_size"][0] = r["channel_size"][0] = 10**11
        _edit_rows(path, "tag_chunk", huge)
    elif case == "row-count-beyond-data":
        with h5py.File(path, "r+") as f:
            f["tables/run_start/rows"].resize((10**9,))
    elif case == "bad-parameters-json":
        _set_json(path, "run_start", "parameters_json", b'{"max_qds": 2')
    elif case == "bad-instruments-json":
        with h5py.File(path, "r+") as f:
            del f["instruments_json"]
            f.create_dataset("instruments_json", data="[1, 2", dtype=h5py.string_dtype())
    elif case == "bad-config-yaml":
        with h5py.File(path, "r+") as f:
            del f["config_text"]
            f.create_dataset("config_text", data="laser: [", dtype=h5py.string_dtype())
    elif case == "truth-lengths-disagree":
        with h5py.File(path, "r+") as f:
            del f["truth/y_um"]
            f["truth/y_um"] = np.arange(5.0)
    else:
        raise AssertionError(case)


CORRUPT = ["lengths-disagree", "tags-lengths-disagree", "negative-size", "offset-outside",
           "huge-claimed-values", "row-count-beyond-data", "bad-parameters-json",
           "bad-instruments-json", "bad-config-yaml", "truth-lengths-disagree"]
#: Which command reads the damaged part (those must refuse; the others may succeed).
READS = {
    "info": {"row-count-beyond-data", "bad-parameters-json", "truth-lengths-disagree"},
    "export": {"lengths-disagree", "tags-lengths-disagree", "negative-size",
               "offset-outside", "huge-claimed-values", "bad-instruments-json"},
    "replay": set(CORRUPT) - {"bad-config-yaml", "truth-lengths-disagree"},
    "resume": {"row-count-beyond-data", "bad-parameters-json", "bad-config-yaml"},
}


@pytest.mark.parametrize("command", sorted(READS))
@pytest.mark.parametrize("case", CORRUPT)
def test_corrupted_session_files_are_refused_with_one_line(case, command, small_session,
                                                           tmp_path, capsys):
    path = _copy(small_session, tmp_path / "bad.h5")
    _corrupt(case, path)
    argv = {"info": ["info", str(path), "--json"],
            "export": ["export", str(path), "--ptu", str(tmp_path / "p"),
                       "--csv", str(tmp_path / "c")],
            "replay": ["replay", str(path), "--out", str(tmp_path / "r.h5"), "--json"],
            "resume": ["survey", "--fast", "--resume", str(path)]}[command]
    t0 = time.monotonic()
    rc, _, err = main(capsys, *argv)
    assert time.monotonic() - t0 < 120
    assert "Traceback" not in err
    if case in READS[command]:
        assert rc == 2, err
        line = one_line_error(err)
        assert str(path) in line, line
    assert rc in (0, 1, 2)
    assert not (tmp_path / "r.h5").exists() or rc == 0
