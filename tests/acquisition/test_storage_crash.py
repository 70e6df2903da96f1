"""Crash consistency, concurrent reading and resume of session files.

A writer runs in a subprocess and prints ``done <step>`` only after the
append of that step's records returned (i.e. after the flush). The test
SIGKILLs it at random moments and checks that every reported step is intact
and bit-identical, that nothing half-written is visible, and that a resume
neither loses nor duplicates a row.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from record_compare import same

from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.errors import FileFormatError
from micropl.records import Frame, QDStatus, QDTarget, RunStart, RunStop, Spectrum, TagChunk, Tagged

HERE = Path(__file__).resolve().parent
N_PX = 1600


# --------------------------------------------------------------------------- data
def make_step(seed: int, step: int, run_id: int) -> list:
    """The records the writer stores for QD ``step``: deterministic in (seed, step)."""
    rng = np.random.default_rng([seed, step])
    wl = np.linspace(480.0, 560.0, N_PX) + rng.normal(0, 1e-3)
    n_tags = int(rng.integers(50_000, 150_000))
    t_ps = np.cumsum(rng.integers(1, 20_000, n_tags)).astype(np.int64)
    channel = rng.integers(1, 3, n_tags).astype(np.uint8)
    out: list = [
        QDTarget(run_id, step, float(rng.uniform(0, 40)), float(rng.uniform(0, 40)),
                 float(rng.uniform(10, 100)), float(rng.uniform(8, 50))),
        Tagged(Spectrum(wl, rng.normal(300, 20, N_PX), 1.0, t_s=float(step),
                        accumulations=1, em_gain=100), run_id, step, "frame"),
        Tagged(Spectrum(wl, rng.normal(900, 40, N_PX), 1.0, t_s=float(step),
                        accumulations=3, em_gain=100), run_id, step, "accumulated"),
        Tagged(TagChunk(t_ps, channel, 0, int(t_ps[-1]) + 1, missed_events=step), run_id,
               step, "g2"),
    ]
    if step % 4 == 0:
        out.append(Tagged(Frame(rng.normal(500, 10, (16, N_PX)), 0.5, float(step), step), run_id,
                          step, "image"))
    status = "completed" if step % 5 else "failed"
    out.append(QDStatus(run_id, step, status, "" if status == "completed" else f"no line {step}",
                        float(step)))
    return out


def _bare(item):
    return item.record if isinstance(item, Tagged) else item


# --------------------------------------------------------------------------- subprocess
def writer_main(path: str, seed: int, mode: str) -> None:
    """Entry point of the writer subprocess: append steps until killed."""
    if mode == "create":
        writer = SessionWriter.create(path, config_text="setup: simulated\n",
                                      truth={"x_um": np.arange(3.0), "y_um": np.ones(3)})
        first = 0
    else:
        writer = SessionWriter.resume(path)
        with SessionReader(path) as reader:
            first = 1 + max((int(reader.rows(t)["qd_id"].max()) for t in reader.tables
                             if reader.n_rows(t)), default=-1)
    run_id = writer.next_run_id()
    writer.append(RunStart(run_id, "survey", '{"max_qds": 1000}', time.time()))
    print(f"ready {run_id} {first}", flush=True)
    for step in range(first, 100_000):
        records = make_step(seed, step, run_id)
        if step % 2:
            writer.append_many(records)
        else:
            for record in records:
                writer.append(record)
        print(f"done {step}", flush=True)


def start_writer(path: Path, seed: int, mode: str = "create") -> subprocess.Popen:
    code = (f"import sys; sys.path[:0] = [{str(HERE)!r}, {str(HERE.parent)!r}]; import test_storage_crash as t; "
            f"t.writer_main({str(path)!r}, {seed}, {mode!r})")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_at_random(proc: subprocess.Popen, rng: random.Random, max_delay_s: float) -> list[int]:
    """Wait for 'ready', SIGKILL after a random delay; the steps reported done."""
    ready = proc.stdout.readline()
    if not ready.startswith("ready"):
        proc.kill()
        raise AssertionError(f"writer did not start: {ready!r} {proc.stderr.read()}")
    time.sleep(rng.uniform(0.0, max_delay_s))
    os.kill(proc.pid, signal.SIGKILL)
    # Read through the same buffered file object as readline() above (communicate()
    # would read the raw pipe and miss lines already buffered here).
    out = proc.stdout.read()
    proc.stderr.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("done ")]


# --------------------------------------------------------------------------- checks
def in_flight(done: set[int], first: int = 0) -> set[int]:
    """The one step a writer that reported ``done`` may have left half written."""
    return {max(done) + 1 if done else first}


def check_session(path: Path, seed: int, done: set[int],
                  partial_ok: set[int]) -> dict[int, int]:
    """Every reported step intact; every visible row exact; no duplicate. Returns rows per QD.

    Steps in ``partial_ok`` (the step being written at the kill) may be present in part.
    """
    with SessionReader(path) as reader:
        runs = {r.run_id: r for r in reader.runs()}
        per_qd: dict[int, list] = {}
        seqs: list[int] = []
        for table in reader.tables:
            for stored in reader.records(table):
                seqs.append(stored.seq)
                if stored.qd_id >= 0:
                    per_qd.setdefault(stored.qd_id, []).append(stored)
        assert len(seqs) == len(set(seqs)), "duplicate seq numbers"
        unexpected = set(per_qd) - done - partial_ok
        assert not unexpected, f"rows of steps never started: {sorted(unexpected)}"
        counts = {}
        for qd_id, stored_list in per_qd.items():
            run_id = stored_list[0].run_id
            assert run_id in runs
            expected = [_bare(x) for x in make_step(seed, qd_id, run_id)]
            # Match each stored record to a distinct expected one (same type, in order).
            remaining = list(expected)
            for stored in sorted(stored_list, key=lambda s: s.seq):
                match = next((k for k, e in enumerate(remaining) if same(stored.record, e)), None)
                assert match is not None, f"QD {qd_id}: stored {stored.table} differs or repeats"
                remaining.pop(match)
            if qd_id in done:
                assert not remaining, f"QD {qd_id} reported done but lacks {remaining}"
            counts[qd_id] = len(stored_list)
        assert done <= set(per_qd)
        return counts


def test_kill9_keeps_every_completed_record(tmp_path):
    rng = random.Random(1234)
    for trial in range(4):
        path = tmp_path / f"s{trial}.h5"
        done = set(kill_at_random(start_writer(path, seed=trial), rng, max_delay_s=0.7))
        check_session(path, trial, done, in_flight(done))
        # The killed file cannot be opened for writing; reading must not change it.
        before = path.read_bytes()
        with SessionReader(path) as reader:
            assert reader.runs()[0].status == "interrupted"
        assert path.read_bytes() == before
    # A killed writer's file that is then truncated (a cut copy) fails fast, no retries.
    cut = tmp_path / "cut.h5"
    cut.write_bytes(before[: len(before) // 3])
    t0 = time.monotonic()
    with pytest.raises(FileFormatError, match="not a micropl session file"):
        with SessionReader(cut) as reader:
            for table in reader.tables:
                reader.records(table)
    assert time.monotonic() - t0 < 5.0


@pytest.mark.slow
def test_kill9_many_trials(tmp_path):
    rng = random.Random(99)
    n_done = []
    for trial in range(24):
        path = tmp_path / f"s{trial}.h5"
        done = set(kill_at_random(start_writer(path, seed=100 + trial), rng, max_delay_s=1.5))
        check_session(path, 100 + trial, done, in_flight(done))
        n_done.append(len(done))
    assert max(n_done) > 10  # the kills landed in the middle of real writing


def test_resume_after_kill_has_no_loss_or_duplicate(tmp_path):
    rng = random.Random(7)
    path = tmp_path / "s.h5"
    done = set(kill_at_random(start_writer(path, seed=5), rng, max_delay_s=0.5))
    partial = in_flight(done)
    before = check_session(path, 5, done, partial)
    # Resume in another process, write on, kill again.
    done2 = set(kill_at_random(start_writer(path, seed=5, mode="resume"), rng, max_delay_s=0.5))
    assert not done2 & set(before), "the resumed writer must continue after the last QD"
    first = max(before) + 1 if before else 0
    after = check_session(path, 5, done | done2, partial | in_flight(done2, first))
    for qd_id, n in before.items():
        assert after[qd_id] == n, f"QD {qd_id}: {n} rows before resume, {after[qd_id]} after"
    with SessionReader(path) as reader:
        runs = reader.runs()
        assert [r.run_id for r in runs] == [0, 1]
        assert runs[0].status == "failed" and "interrupted" in runs[0].reason
        assert runs[1].status == "interrupted"
        assert reader.resume_count == 1
        np.testing.assert_array_equal(reader.truth["x_um"], np.arange(3.0))
        assert reader.config_text == "setup: simulated\n"
    # A final in-process resume closes run 1 and continues the sequence numbers.
    with SessionWriter.resume(path) as writer:
        assert writer.next_run_id() == 2
        seq = writer.append(RunStop(2, "completed"))
    with SessionReader(path) as reader:
        assert seq == max(int(reader.rows(t)["seq"].max()) for t in reader.tables
                          if reader.n_rows(t))
        assert reader.resume_count == 2
    # A cleanly closed file opens with plain h5py (no SWMR flags left).
    import h5py

    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "micropl-session"


def test_reader_sees_growing_consistent_tables_while_writing(tmp_path):
    path = tmp_path / "live.h5"
    proc = start_writer(path, seed=11)
    try:
        assert proc.stdout.readline().startswith("ready")
        last = -1
        n_reads = 0
        with SessionReader(path) as reader:
            assert reader.writer_alive()
            assert reader.runs()[0].status == "running"
            t_end = time.monotonic() + 1.2
            while time.monotonic() < t_end:
                reader.refresh()
                targets = reader.rows("qd_target")
                n = targets.shape[0]
                assert n >= last, "a table shrank"
                last = n
                # Every visible row is complete and exact, even mid-append.
                for stored in reader.records("spectrum")[-3:] + reader.records("tag_chunk")[-2:]:
                    expected = [_bare(x) for x in make_step(11, stored.qd_id, stored.run_id)]
                    assert any(same(stored.record, e) for e in expected)
                n_reads += 1
        assert last > 3 and n_reads > 3
    finally:
        proc.kill()
        proc.communicate()


def test_second_writer_is_refused(tmp_path):
    from micropl.errors import SessionBusyError

    path = tmp_path / "s.h5"
    with SessionWriter.create(path):
        with pytest.raises(SessionBusyError, match="being written"):
            SessionWriter.resume(path)
    SessionWriter.resume(path).close()  # free again after close
