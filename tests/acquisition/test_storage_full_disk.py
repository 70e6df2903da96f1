"""A session file after a full disk: readable without change, repaired by ``resume``.

A writer subprocess runs under a file-size limit (RLIMIT_FSIZE: writes past it fail
with EFBIG, as writes to a full disk fail with ENOSPC) and appends tag chunks until
an append raises. HDF5 then closes the file with a stored end of file beyond the
file's real size, which plain HDF5 refuses to open.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.acquisition.storage.recovery import _stored_eof
from micropl.records import RunStop, TagChunk, Tagged

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")

N_TAGS = 200_000  # about 0.8 MB compressed per chunk
ROOM_BYTES = 12_000_000  # free space left after the file was created

WRITER = """
import json, resource, signal, sys, time
import numpy as np
from micropl.records import RunStart, Tagged
from micropl.acquisition.storage import SessionWriter
from micropl.records import TagChunk

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
n_tags = int(sys.argv[3])
done = 0
error = ""
with SessionWriter.create(sys.argv[1], config_text="setup: full-disk test") as w:
    w.append(RunStart(0, "g2", "{}", time.time()))
    # The disk fills up a little after the file was created.
    limit = w.path.stat().st_size + int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        for i in range(10_000):
            rng = np.random.default_rng(i)  # random gaps: they do not compress away
            t = np.cumsum(rng.integers(1, 2**30, n_tags)) + i * 10**15
            ch = rng.integers(1, 3, n_tags).astype(np.uint8)
            w.append(Tagged(TagChunk(t, ch, i * 10**15, (i + 1) * 10**15), 0, i))
            done += 1
    except OSError as exc:
        error = str(exc)
print(json.dumps({"done": done, "error": error, "limit": limit}))
"""


def expected_chunk(i: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(i)
    return (np.cumsum(rng.integers(1, 2**30, N_TAGS)) + i * 10**15,
            rng.integers(1, 3, N_TAGS).astype(np.uint8))


@pytest.fixture
def full_disk_file(tmp_path) -> tuple[Path, int, int]:
    path = tmp_path / "s.h5"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), str(ROOM_BYTES),
                           str(N_TAGS)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "File too large" in result["error"]
    assert result["done"] >= 3
    assert path.stat().st_size == result["limit"]
    return path, result["done"], result["limit"]


def test_full_disk_leaves_stored_eof_beyond_the_file(full_disk_file):
    """The state the reader must cope with: HDF5 itself refuses the file."""
    path, _, limit = full_disk_file
    with open(path, "rb") as fh:
        stored = _stored_eof(fh.read(48))
    assert stored is not None and stored > path.stat().st_size == limit
    with pytest.raises(OSError, match="truncated file"):
        h5py.File(path, "r")


def test_reader_reads_every_completed_record_without_modifying(full_disk_file, caplog):
    path, done, _ = full_disk_file
    before = path.read_bytes()
    with SessionReader(path) as reader:
        assert reader.short_by_bytes > 0
        assert reader.n_rows("tag_chunk") == done
        chunks = reader.records("tag_chunk")
        assert [c.qd_id for c in chunks] == list(range(done))
        for i, stored in enumerate(chunks):
            t, ch = expected_chunk(i)
            np.testing.assert_array_equal(stored.record.t_ps, t)
            np.testing.assert_array_equal(stored.record.channel, ch)
        assert [r.status for r in reader.runs()] == ["interrupted"]
        assert reader.config_text == "setup: full-disk test"
    assert "a write failed" in caplog.text
    assert path.read_bytes() == before


def test_info_json_lists_the_completed_records(full_disk_file):
    path, done, _ = full_disk_file
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "micropl", "info", str(path), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["n_rows"]["tag_chunk"] == done
    assert summary["n_rows"]["run_start"] == 1
    assert path.read_bytes() == before


def test_resume_repairs_and_continues_without_loss_or_duplicates(full_disk_file):
    path, done, _ = full_disk_file
    with SessionWriter.resume(path) as writer:
        extra_t, extra_ch = expected_chunk(done)
        writer.append(Tagged(TagChunk(extra_t, extra_ch, 0, 1), 0, done))
        writer.append(RunStop(0, "completed", "", time.time()))
    # The repaired file is sound: plain HDF5 opens it, its stored end of file is its size.
    with open(path, "rb") as fh:
        assert _stored_eof(fh.read(48)) == path.stat().st_size
    with h5py.File(path, "r") as f:
        assert f["tables/tag_chunk/rows"].shape == (done + 1,)
    with SessionReader(path) as reader:
        assert reader.short_by_bytes == 0
        assert reader.resume_count == 1
        seqs = [r.seq for t in reader.tables for r in reader.records(t)]
        assert len(seqs) == len(set(seqs)) == done + 4  # start, chunks, extra, 2 stops
        chunks = reader.records("tag_chunk")
        assert [c.qd_id for c in chunks] == list(range(done + 1))
        for i, stored in enumerate(chunks):
            t, ch = expected_chunk(i)
            np.testing.assert_array_equal(stored.record.t_ps, t)
            np.testing.assert_array_equal(stored.record.channel, ch)
        stops = reader.records("run_stop")
        assert [s.record.status for s in stops] == ["failed", "completed"]
        assert reader.runs()[0].status == "completed"
