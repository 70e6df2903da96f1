"""``kill -9`` during a CLI survey, then ``--resume`` (issue 8: crashes); a full disk.

A ``micropl survey --fast`` subprocess is SIGKILLed at a random moment. After
each kill: the session file opens; every QD stored as completed is intact
(its spectra, accumulated spectrum fit, and final g²); ``--resume`` completes
the survey; afterwards every selected QD has exactly one status, no row is
duplicated, and the QDs completed before the kill are unchanged.
"""

from __future__ import annotations

import collections
import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from micropl.acquisition.storage import SessionReader

pytestmark = pytest.mark.timeout(600)

PARAMS = ["scan.x_max_um=10", "scan.y_max_um=10", "scan.step_um=0.25",
          "refocus.size_um=1.2", "refocus.step_um=0.15", "spectrum.exposure_s=0.2",
          "spectrum.accumulations=2", "spectrum.background_frames=1", "g2.duration_s=1",
          "g2.min_duration_s=0.5", "drift_every_n_qds=0"]


def cli(*args: str, timeout_s: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "micropl", *args], capture_output=True,
                          text=True, timeout=timeout_s, **kwargs)


def survey_args(path: Path, max_qds: int) -> list[str]:
    out = ["survey", "--fast", "--json", "--out", str(path), "--max-qds", str(max_qds)]
    for p in PARAMS:
        out += ["--param", p]
    return out


def snapshot(path: Path) -> dict:
    """Per QD: status, and the count and bytes digest of every stored record of it."""
    with SessionReader(path) as reader:
        seqs = [s.seq for t in reader.tables for s in reader.records(t)]
        assert len(seqs) == len(set(seqs)), "duplicate rows"
        statuses = collections.Counter(s.qd_id for s in reader.records("qd_status"))
        qds = {}
        for info in reader.qds():
            data = reader.qd(info.qd_id, run_id=None)
            if info.status == "completed":
                fits = [s.record for s in data.spectrum_fits if s.kind == "accumulated"]
                g2 = [s.record for s in data.g2_results if s.kind == "final"]
                assert data.spectra and fits and g2, f"QD {info.qd_id} completed but incomplete"
                assert all(bool(np.all(f.success)) for f in fits)
                assert np.isfinite(g2[-1].g2_0)
            digest = {t: [(s.seq, s.run_id) for s in rows] for t, rows in data.records.items()}
            qds[info.qd_id] = (info.status, digest)
        return {"qds": qds, "statuses": statuses, "runs": reader.runs()}


def kill_trial(tmp: Path, rng: random.Random, max_qds: int = 3,
               max_delay_s: float = 2.0) -> dict:
    """One survey killed at a random moment, checked, resumed and checked again."""
    path = tmp / "s.h5"
    proc = subprocess.Popen([sys.executable, "-m", "micropl", *survey_args(path, max_qds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Wait until the file exists (the interpreter start is not of interest), then a
    # random delay across the survey (a full run takes about 1–3 s after that).
    t0 = time.monotonic()
    while not path.exists() and proc.poll() is None and time.monotonic() - t0 < 60:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, max_delay_s))
    finished = proc.poll() is not None
    if not finished:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    before = snapshot(path)  # the file opens, completed QDs are intact
    if not before["qds"]:
        # Killed during the map: nothing selected yet; there is no survey point to resume.
        resumed = None
    else:
        resumed = cli("survey", "--fast", "--json", "--resume", str(path))
        assert resumed.returncode == 0, resumed.stderr
        assert "Traceback" not in resumed.stderr
    after = snapshot(path)
    for qd_id, (status, digest) in before["qds"].items():
        if status in ("completed", "failed"):
            assert after["qds"][qd_id] == (status, digest), f"QD {qd_id} changed on resume"
    if resumed is not None:
        assert all(s in ("completed", "failed") for s, _ in after["qds"].values())
        assert set(after["statuses"]) == set(after["qds"])
        assert all(n == 1 for n in after["statuses"].values()), after["statuses"]
        summary = json.loads(resumed.stdout)
        assert summary
    return {"killed": not finished, "qds_before": len(before["qds"]),
            "done_before": sum(s != "pending" for s, _ in before["qds"].values()),
            "resumed": resumed is not None}


def run_trials(tmp_path: Path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    results = []
    for k in range(n):
        d = tmp_path / f"t{k}"
        d.mkdir()
        results.append(kill_trial(d, rng))
    return results


def test_kill_9_then_resume_few(tmp_path):
    results = run_trials(tmp_path, 3, seed=8)
    assert sum(r["killed"] for r in results) >= 2


@pytest.mark.slow
def test_kill_9_then_resume_many(tmp_path):
    results = run_trials(tmp_path, 30, seed=2024)
    killed = [r for r in results if r["killed"]]
    assert len(killed) >= 20
    # The kills must land in every phase: during the map, and between/within QDs.
    assert any(not r["resumed"] for r in killed)
    assert any(r["resumed"] and 0 < r["done_before"] < r["qds_before"] for r in killed)
    print("kill trials:", json.dumps(results))


# --------------------------------------------------------------------------- full disk
def _limit_file_size(limit_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes then fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def _full_disk_run(tmp_path: Path, limit_bytes: int = 6_000_000
                   ) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path / "s.h5"
    proc = subprocess.run([sys.executable, "-m", "micropl", *survey_args(path, 3)],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(limit_bytes))
    return proc, path


def test_full_disk_stops_the_run_without_traceback(tmp_path):
    """Writes beyond a file-size limit fail (EFBIG, as a full disk fails with ENOSPC):
    the run stops with a non-zero exit code, the storage failure is named, and no
    traceback is printed."""
    proc, _ = _full_disk_run(tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "subscriber 'storage' failed" in proc.stderr and "File too large" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("micropl: ")


def test_full_disk_file_still_opens(tmp_path):
    """HDF5's stored end of file lies beyond the file's size after the failed write;
    the reader still opens it (without modifying it) with every complete row."""
    proc, path = _full_disk_run(tmp_path)
    assert proc.returncode == 1, proc.stderr
    before = path.read_bytes()
    snap = snapshot(path)
    assert path.read_bytes() == before
    assert [r.status for r in snap["runs"]] == ["interrupted"]
    with SessionReader(path) as reader:
        assert reader.short_by_bytes > 0
        assert reader.n_rows("map_line") > 0


def test_full_disk_then_info_and_resume(tmp_path):
    """The disk fills up after the QDs were selected: ``info --json`` lists the rows
    complete before it, ``--resume`` repairs the file and completes the survey, the
    records stored before are unchanged and none is duplicated."""
    proc, path = _full_disk_run(tmp_path, limit_bytes=5_000_000)  # compressed: ~6 MB in all
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    before = snapshot(path)
    assert len(before["qds"]) == 3  # the failure came after the QDs were selected
    with SessionReader(path) as reader:
        counts = {t: reader.n_rows(t) for t in reader.tables if reader.n_rows(t)}
        seqs_before = {t: [r.seq for r in reader.records(t)] for t in counts}
    info = cli("info", str(path), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["n_rows"] == counts
    resumed = cli("survey", "--fast", "--json", "--resume", str(path))
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    after = snapshot(path)
    assert all(s in ("completed", "failed") for s, _ in after["qds"].values())
    assert all(n == 1 for n in after["statuses"].values()), after["statuses"]
    for qd_id, (status, digest) in before["qds"].items():
        if status in ("completed", "failed"):
            assert after["qds"][qd_id] == (status, digest)
    with SessionReader(path) as reader:
        assert reader.short_by_bytes == 0
        for table, seqs in seqs_before.items():  # every earlier row kept, in order
            assert [r.seq for r in reader.records(table)][: len(seqs)] == seqs


# --------------------------------------------------------------------------- long run
def _bench():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_long_run.py"
    spec = importlib.util.spec_from_file_location("bench_long_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_long_run_scaled_down_loses_no_record(tmp_path):
    """8 s of real time (the hour, scaled down): every published record is stored."""
    r = _bench().long_run(8.0, tmp_path / "long.h5")
    assert r["runs"] >= 2 and r["failed_runs"] == 0
    assert r["published"] == r["stored"] > 0
    assert r["published_tags"] == r["stored_tags"] > 0
    assert r["rss_growth_mb"] < 50.0
