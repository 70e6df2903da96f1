"""File readers stay bounded: adversarial PTU, histogram and spectrum files.

Every adversarial file must end ``micropl analyze g2 FILE`` and ``micropl replay FILE``
with a result (exit 0) or one line on stderr naming the file (exit 2), in bounded memory
and time. The in-process sweep checks every case (tracemalloc peak of the Python and
numpy heaps); a few cases run in a subprocess whose peak RSS is read from ``wait4``;
the full subprocess sweep over both commands is marked slow.
"""

from __future__ import annotations

import math
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from ptu_writer import hbt_block, write_records

from micropl.analysis.spectrum_files import (
    MAX_TEXT_FILE_BYTES,
    MAX_TEXT_LINE_CHARS,
    read_spectrum_file,
)
from micropl.analysis.tags import (
    MAX_PTU_RECORDS,
    MAX_PTU_RECORDS_IN_MEMORY,
    iter_ptu_t2,
    read_histogram_file,
    read_ptu_header,
    read_ptu_t2,
)
from micropl.cli import main
from micropl.errors import FileFormatError

GB = 1 << 30
#: Peak RSS allowed for any adversarial file, bytes.
RSS_LIMIT = 1 * GB
#: Extra heap (tracemalloc) allowed in-process for one case, bytes.
HEAP_LIMIT = 400 * 1024 * 1024
#: Generous upper bound on one subprocess, s (not a speed assertion).
TIME_LIMIT_S = 120

OVF_MAX = (1 << 31) | (63 << 25) | ((1 << 25) - 1)  # one record = 2**25 - 1 wraps


def _photon(channel_field: int, t_units: int) -> int:
    return (channel_field << 25) | t_units


def _good(n_blocks: int = 5, seed: int = 1) -> np.ndarray:
    return np.tile(hbt_block(np.random.default_rng(seed), n_photons=1500), n_blocks)


def _backwards() -> np.ndarray:
    rec = _good()
    # after a channel-1 photon late in its wrap, one at time 0 of that wrap: time goes back
    late = np.flatnonzero(((rec >> 25) == 0) & ((rec & 0x01FFFFFF) > 1_000_000))
    mid = int(late[late.size // 2]) + 1
    return np.concatenate((rec[:mid], [_photon(0, 0)], rec[mid:])).astype("<u4")


def _overflow_flood() -> np.ndarray:
    rec = _good(2)
    return np.concatenate((rec, np.full(40_000, OVF_MAX, dtype="<u4"), rec)).astype("<u4")


def _twelve_days() -> np.ndarray:
    rec = _good(2)
    return np.concatenate((rec, np.full(1000, OVF_MAX, dtype="<u4"), rec)).astype("<u4")


def _year_gap() -> np.ndarray:
    rec = _good(2)
    return np.concatenate((rec, [OVF_MAX], rec)).astype("<u4")


def _cross_channel_backwards() -> np.ndarray:
    # at 0.1 µs resolution, input 2 one wrap-length (3.4 s) before input 1's last photon
    rec = _good(2)
    return np.concatenate((rec, [_photon(0, (1 << 25) - 1), _photon(1, 5)])).astype("<u4")


def _equal_times() -> np.ndarray:
    # 60 000 photons per channel, all at one time, no overflow: 3.6e9 pairs at delay 0
    return np.tile(np.array([_photon(0, 7), _photon(1, 7)], dtype="<u4"), 60_000)


def _channel_63() -> np.ndarray:
    rec = _good()
    photons = (rec >> 31) == 0
    rec = rec.copy()
    rec[photons] = (rec[photons] & 0x01FFFFFF) | (62 << 25)  # every photon on input 63
    return rec


def _zeros() -> np.ndarray:
    return np.zeros(200_000, dtype="<u4")  # zeroed sectors: input 1 at wrap time 0


NO_RATE = {"replay": ("refused", "no sync rate")}

#: name -> (records, header keywords, expected outcome of analyze g2: "ok", "refused" or
#: "either"; a substring the refusal must contain[, {"replay": (outcome, substring)} when
#: replay differs]).
CASES: dict[str, tuple] = {
    "sync-0": (_good, {"sync_rate": 0}, "ok", "", NO_RATE),
    "sync-4kHz": (_good, {"sync_rate": 4000}, "refused", "4000 Hz"),
    "sync-1Hz": (_good, {"sync_rate": 1}, "refused", "1 Hz"),
    "sync-1e12Hz": (_good, {"sync_rate": 1e12}, "refused", "shorter than"),
    "sync-2^62Hz": (_good, {"sync_rate": 2**62}, "refused", "shorter than"),
    "sync-nan": (_good, {"sync_rate": math.nan}, "ok", "", NO_RATE),
    "sync-inf": (_good, {"sync_rate": math.inf}, "ok", "", NO_RATE),
    "sync-negative": (_good, {"sync_rate": -80_000_000}, "ok", "", NO_RATE),
    "count-above": (_good, {"n_records": 10**6}, "refused", "truncated"),
    "count-2^62": (_good, {"n_records": 2**62}, "refused", "truncated"),
    "count-below": (_good, {"n_records": 5000}, "ok", ""),
    "count-negative": (_good, {"n_records": -5}, "ok", ""),
    "count-absent": (_good, {"n_records": None}, "ok", ""),
    "time-backwards": (_backwards, {}, "refused", "backwards"),
    "overflow-flood": (_overflow_flood, {}, "refused", "64-bit"),
    "overflow-12-days": (_twelve_days, {}, "refused", "beyond 1e+06 s"),
    "overflow-2^63": (_overflow_flood, {"resolution_s": 5e-7}, "refused", "64-bit"),
    "year-gap": (_year_gap, {}, "ok", ""),
    "cross-channel-backwards": (_cross_channel_backwards, {"resolution_s": 1e-7}, "refused",
                                "from another channel"),
    "resolution-1e-300": (_good, {"resolution_s": 1e-300}, "refused", "resolution"),
    "resolution-0": (_good, {"resolution_s": 0.0}, "refused", "resolution"),
    "resolution-nan": (_good, {"resolution_s": math.nan}, "refused", "resolution"),
    "resolution-1ms": (_good, {"resolution_s": 1e-3}, "refused", "resolution"),
    "resolution-0.1ps": (_good, {"resolution_s": 1e-13}, "either", ""),
    "resolution-500ns": (_good, {"resolution_s": 5e-7}, "either", ""),
    "channel-63-only": (_channel_63, {}, "refused", "channels present: 63"),
    "equal-times": (_equal_times, {}, "refused", "dense"),
    "zeroed-records": (_zeros, {}, "refused", "channel 2 has no tags"),
}


def _write_case(tmp_path: Path, name: str) -> Path:
    make, header_kw = CASES[name][:2]
    return write_records(tmp_path / f"{name}.ptu", make(), **header_kw)


def _check_outcome(path: Path, rc: int, out: str, err: str, expect: str, needle: str) -> None:
    assert rc in (0, 2), (rc, err[-2000:])
    assert "Traceback" not in err
    if rc == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("micropl:")]
        assert len(lines) == 1, err
        assert str(path) in lines[0] or path.name in lines[0], lines[0]
        assert needle in lines[0], lines[0]
    if expect == "ok":
        assert rc == 0, err
        assert "g2(0) =" in out or '"g2_0"' in out
    elif expect == "refused":
        assert rc == 2, out


# ---------------------------------------------------------------------------
# In-process sweep: every case, heap measured with tracemalloc
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_analyze_g2_adversarial_ptu_in_bounded_heap(tmp_path, capsys, name):
    path = _write_case(tmp_path, name)
    expect, needle = CASES[name][2:4]
    capsys.readouterr()
    tracemalloc.start()
    try:
        rc = main(["analyze", "g2", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    _check_outcome(path, rc, out, err, expect, needle)
    assert peak < HEAP_LIMIT, f"{name}: heap peak {peak / 1e6:.0f} MB"


def test_sync_rate_refusal_names_file_value_and_remedy(tmp_path, capsys):
    path = _write_case(tmp_path, "sync-4kHz")
    assert main(["analyze", "g2", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    for part in (str(path), "4000 Hz", "250 µs", "46875000 bins", "--bin-ps"):
        assert part in err, err


def test_streamed_g2_equals_in_memory_correlation(tmp_path, capsys):
    """Block-wise decoding and correlation give the exact histogram of the whole file."""
    import json

    from micropl.analysis.g2 import cross_correlate

    path = write_records(tmp_path / "ok.ptu", _good(40), sync_rate=80_000_000)
    header = read_ptu_header(path)
    blocks = list(iter_ptu_t2(header, block_records=1000))
    assert len(blocks) > 50
    data = read_ptu_t2(path)
    np.testing.assert_array_equal(np.concatenate([b.t_ps for b in blocks]), data.t_ps)
    assert main(["analyze", "g2", str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    _, counts = cross_correlate(data.channel_tags(1), data.channel_tags(2), 64,
                                got["window_ps"])
    assert got["n_tags"] == int(np.count_nonzero(data.channel != 0))
    assert got["central_counts"] > 0
    from micropl.analysis.g2 import pulsed_g2

    tau = -got["window_ps"] + (np.arange(counts.size) + 0.5) * 64
    ref = pulsed_g2(tau, counts, rep_rate_hz=80e6, n_side=5)
    assert got["g2_0"] == pytest.approx(ref.g2_0, rel=1e-12)


def test_read_ptu_t2_refuses_more_records_than_it_holds_in_memory(tmp_path):
    path = write_records(tmp_path / "big.ptu", _good(1))
    with pytest.raises(FileFormatError, match="streams files of any size"):
        read_ptu_t2(path, max_records=100)
    assert MAX_PTU_RECORDS_IN_MEMORY * 9 < 300e6  # the tags it may hold: under 300 MB


def test_replay_of_a_long_gap_has_a_bounded_time_line(tmp_path):
    from micropl.simulators.replay import MAX_PTU_CHUNKS, ReplayTaggerSettings, ptu_source

    path = write_records(tmp_path / "gap.ptu", _year_gap())
    source = ptu_source(path, ReplayTaggerSettings(source=path))
    assert source.duration_s > 1000  # 2**50 ps ≈ 1126 s
    assert len(source.events) <= MAX_PTU_CHUNKS + 1
    n = sum(len(e.record) for e in source.events)
    assert n == int(np.count_nonzero(read_ptu_t2(path).channel != 0))


# ---------------------------------------------------------------------------
# Subprocesses: peak RSS of the real command
# ---------------------------------------------------------------------------


def _limit_address_space() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (6 * GB, 6 * GB))


def run_measured(argv: list[str], cwd: Path) -> tuple[int, str, str, int, float]:
    """Run ``python -m micropl ARGV``; returns rc, stdout, stderr, peak RSS (bytes), s."""
    out_path, err_path = cwd / "stdout.txt", cwd / "stderr.txt"
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "micropl", *argv], stdout=out,
                                stderr=err, cwd=cwd, preexec_fn=_limit_address_space)
    deadline = t0 + TIME_LIMIT_S
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            pytest.fail(f"{argv} still running after {TIME_LIMIT_S} s")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - t0
    return (proc.returncode, out_path.read_text(errors="replace"),
            err_path.read_text(errors="replace"), usage.ru_maxrss * 1024, elapsed)


def _big_valid(tmp_path: Path, n_records: int) -> Path:
    block = hbt_block(np.random.default_rng(3))
    reps = -(-n_records // block.size)
    return write_records(tmp_path / "big.ptu", np.tile(block, reps), sync_rate=80_000_000)


SUBPROCESS_CASES = [
    ("analyze", "sync-4kHz"),
    ("replay", "sync-4kHz"),
    ("analyze", "equal-times"),
    ("replay", "time-backwards"),
]


def _expected(name: str, command: str) -> tuple[str, str]:
    case = CASES[name]
    other = case[4] if len(case) > 4 else {}
    return other.get(command, case[2:4])


def _subprocess_case(tmp_path: Path, command: str, path: Path, expect: str,
                     needle: str) -> tuple[int, float]:
    argv = ["analyze", "g2", str(path)] if command == "analyze" else \
        ["replay", str(path), "--out", str(tmp_path / "replay.h5")]
    rc, out, err, rss, elapsed = run_measured(argv, tmp_path)
    if command == "replay" and rc == 0:
        assert "g2(0) =" in out, out
        assert expect != "refused", out
    else:
        _check_outcome(path, rc, out, err, expect, needle)
    if rc != 0:
        assert not (tmp_path / "replay.h5").exists()
    print(f"{command} {path.name}: rc {rc}, peak RSS {rss / 1e6:.0f} MB, {elapsed:.1f} s")
    assert rss < RSS_LIMIT, f"{command} {path.name}: peak RSS {rss / 1e6:.0f} MB"
    return rc, rss


@pytest.mark.parametrize(("command", "name"), SUBPROCESS_CASES)
def test_subprocess_peak_rss_below_1_gb(tmp_path, command, name):
    expect, needle = _expected(name, command)
    _subprocess_case(tmp_path, command, _write_case(tmp_path, name), expect, needle)


def test_subprocess_big_valid_file_is_streamed(tmp_path):
    """120 MB of records (30 M): analyze streams it; replay refuses it in one line."""
    path = _big_valid(tmp_path, 30_000_000)
    assert path.stat().st_size > 120e6
    rc, _ = _subprocess_case(tmp_path, "analyze", path, "ok", "")
    assert rc == 0
    rc, _ = _subprocess_case(tmp_path, "replay", path, "refused", "")
    assert rc == 2


@pytest.mark.slow
@pytest.mark.parametrize("command", ["analyze", "replay"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_subprocess_sweep_every_case(tmp_path, command, name):
    expect, needle = _expected(name, command)
    _subprocess_case(tmp_path, command, _write_case(tmp_path, name), expect, needle)


@pytest.mark.slow
def test_subprocess_big_file_near_the_memory_cap(tmp_path):
    """Replay of a file just under the in-memory cap, and analyze of a 2 GB file."""
    path = _big_valid(tmp_path, MAX_PTU_RECORDS_IN_MEMORY - 100_000)
    rc, _ = _subprocess_case(tmp_path, "replay", path, "ok", "")
    assert rc == 0
    path.unlink()
    path = _big_valid(tmp_path, 500_000_000)
    rc, _ = _subprocess_case(tmp_path, "analyze", path, "ok", "")
    assert rc == 0


# ---------------------------------------------------------------------------
# Text readers
# ---------------------------------------------------------------------------


def _sparse_file(path: Path, size: int, head: bytes = b"1,2\n3,4\n5,6\n") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)  # sparse: costs no disk
    return path


@pytest.mark.parametrize("reader", ["histogram", "spectrum"])
@pytest.mark.parametrize("kind", ["2GB-file", "100MB-line", "long-line-in-cap", "many-rows",
                                  pytest.param("many-rows-at-cap", marks=pytest.mark.slow)])
def test_text_readers_bounded(tmp_path, reader, kind):
    read = read_histogram_file if reader == "histogram" else read_spectrum_file
    path = tmp_path / f"{kind}.txt"
    if kind == "2GB-file":
        _sparse_file(path, 2 * GB)
    elif kind == "100MB-line":
        _sparse_file(path, 100 << 20, head=b"1,2\n" + b"1," * (1 << 20))
    elif kind == "long-line-in-cap":
        path.write_bytes(b"1 2\n2 3\n3 4\n" + b"7 " * (MAX_TEXT_LINE_CHARS // 2 + 8) + b"\n")
    else:  # many short rows (up to the size cap): parsed, in bounded memory
        size = MAX_TEXT_FILE_BYTES if kind == "many-rows-at-cap" else MAX_TEXT_FILE_BYTES // 16
        rows = np.arange(1, size // 16 + 1, dtype=np.int64)
        np.savetxt(path, np.c_[rows, rows % 97 + 1], fmt="%7d,%7d")
        assert path.stat().st_size <= MAX_TEXT_FILE_BYTES
    tracemalloc.start()
    try:
        try:
            result = read(path)
        except FileFormatError as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_TEXT_FILE_BYTES, f"{kind}: heap peak {peak / 1e6:.0f} MB"
    if kind.startswith("many-rows"):
        assert not isinstance(result, Exception), result
        n = path.stat().st_size // 16
        assert (result.counts.size if reader == "histogram" else result[0].size) == n
    else:
        assert isinstance(result, FileFormatError)
        msg = str(result)
        assert str(path) in msg and "\n" not in msg
        assert ("bytes" in msg) if kind != "long-line-in-cap" else ("characters" in msg)


def test_text_file_cap_is_exit_2_in_the_cli(tmp_path, capsys):
    path = _sparse_file(tmp_path / "huge.csv", MAX_TEXT_FILE_BYTES + 1)
    assert main(["analyze", "g2", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "too large" in err


def test_large_histogram_is_refused_not_analysed(tmp_path, capsys):
    """A valid histogram file of 300 000 bins: one line, not gigabytes of fitting."""
    n = 300_000
    tau_ns = (np.arange(n) - n // 2) * 0.064
    counts = np.ones(n, dtype=np.int64)
    np.savetxt(tmp_path / "h.csv", np.c_[tau_ns, counts], fmt="%.3f,%d", header="delay_ns,c",
               comments="")
    assert main(["analyze", "g2", str(tmp_path / "h.csv"), "--rep-rate", "80e6"]) == 2
    err = capsys.readouterr().err
    assert "300000 bins" in err and "h.csv" in err


def test_header_with_a_flood_of_tags_is_refused_in_bounded_heap(tmp_path, capsys):
    """A header of 400 000 tags (19 MB) before Header_End: refused, not parsed to the end."""
    from ptu_writer import tag

    flood = tag("File_Comment", 7, index=0) * 400_000
    path = write_records(tmp_path / "flood.ptu", _good(1), extra=flood)
    tracemalloc.start()
    try:
        rc = main(["analyze", "g2", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert rc == 2 and "Header_End" in err and str(path) in err, err
    assert peak < HEAP_LIMIT


@pytest.mark.parametrize("channels", [("300", "2"), ("-1", "2"), ("1", "64")])
def test_channel_argument_out_of_range_is_one_line(tmp_path, capsys, channels):
    path = write_records(tmp_path / "ok.ptu", _good(1))
    assert main(["analyze", "g2", str(path), "--channels", *channels]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no tags" in err and "channels present: 1, 2" in err


def _sparse_ptu(path: Path, n_records: int) -> Path:
    """A PTU file of ``n_records`` zero records, sparse on disk (costs no space)."""
    from ptu_writer import header

    with open(path, "wb") as fh:
        fh.write(header(n_records=n_records))
        fh.truncate(fh.tell() + 4 * n_records)
    return path


def test_more_records_than_micropl_reads_is_refused_from_the_header(tmp_path, capsys):
    path = _sparse_ptu(tmp_path / "huge.ptu", MAX_PTU_RECORDS + 1)
    assert main(["analyze", "g2", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and f"more than the {MAX_PTU_RECORDS}" in err


@pytest.mark.parametrize("command", ["analyze", "replay"])
def test_subprocess_2_gb_file_of_zeros(tmp_path, command):
    """2 GB of zeroed records (input 1 at time 0, piling up): one line, bounded memory."""
    path = _sparse_ptu(tmp_path / "zeros.ptu", 500_000_000)
    rc, _ = _subprocess_case(tmp_path, command, path, "refused",
                             "implausibly dense" if command == "analyze" else "")
    assert rc == 2


@pytest.mark.parametrize("kind", ["spe2-frames", "phu-bins", "t3-records"])
def test_lab_formats_with_lying_headers_in_a_subprocess(tmp_path, kind):
    """SPE, PHU and PTU T3 headers that claim 2**31 frames, 2**30 bins or more records
    than the file holds: one line, exit 2, and the peak RSS stays low (nothing is
    allocated from the claim)."""
    from lab_writers import write_phu, write_spe2, write_t3

    rng = np.random.default_rng(9)
    if kind == "spe2-frames":
        path = write_spe2(tmp_path / "lie.spe", rng.poisson(50, (1, 512)), (900.0, 0.1),
                          frames_claim=2**31 - 1)
        argv = ["analyze", "spectrum", str(path)]
    elif kind == "phu-bins":
        path = write_phu(tmp_path / "lie.phu", [rng.poisson(50, 512).astype(np.uint32)],
                         bins_claim=[1 << 30])
        argv = ["analyze", "g2", str(path), "--rep-rate", "80e6"]
    else:
        nsync = np.arange(0, 10_000, 7)
        path = write_t3(tmp_path / "lie.ptu", nsync, np.full(nsync.size, 5),
                        np.tile([1, 2], nsync.size // 2 + 1)[:nsync.size], period_s=12.5e-9,
                        resolution_s=16e-12, n_records=MAX_PTU_RECORDS - 1)
        argv = ["analyze", "g2", str(path)]
    rc, out, err, rss, _ = run_measured(argv, tmp_path)
    assert rc == 2 and err.count("\n") == 1 and str(path) in err and "Traceback" not in err
    assert rss < RSS_LIMIT, f"peak RSS {rss / 1e6:.0f} MB"
