"""Re-analysis throughput on Dask: QDs per second with 1 and 2 workers, memory per worker.

20 survey-like session files of 30 QDs (600 QDs) are written without the simulator
(``tests/reanalysis_data.py``: accumulated spectrum and frames, 2 s of raw HBT tags per
QD), then re-analysed with the default settings (spectrum fit, frame fits, two-line test,
g² from the raw tags, peak-train fit) on Dask's local process pool with 1 and with 2
workers. Each task reports its worker's peak resident memory (``ru_maxrss``). Also
measured: the bytes read per QD (the file sizes) and the bytes sent per task (the
pickled task and its rows), the figures the cluster estimate in ``docs/reanalysis.md``
rests on. The peer, in the same run: the same tasks in a plain loop in this process
(no Dask), for Dask's overhead.

Run: ``.venv/bin/python benchmarks/bench_reanalysis.py [--sessions 20 --qds 30]``
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from reanalysis_data import write_session  # noqa: E402

from micropl.reanalysis.settings import ReanalysisSettings  # noqa: E402
from micropl.reanalysis.tasks import analyze_chunk, sessions_chunks  # noqa: E402


def measured_chunk(chunk, settings):
    """The task's rows, the worker's pid, its peak resident memory (bytes) and the CPU
    seconds the task took (independent of how loaded the machine is)."""
    cpu = time.process_time()
    rows = analyze_chunk(chunk, settings)
    cpu = time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB
    return rows, os.getpid(), peak, cpu


def run_pool(chunks, settings, workers: int) -> tuple[float, list, dict[int, int]]:
    import dask

    tasks = [dask.delayed(measured_chunk, pure=True)(c, settings) for c in chunks]
    t0 = time.perf_counter()
    results = dask.compute(*tasks, scheduler="processes", num_workers=workers)
    elapsed = time.perf_counter() - t0
    peaks: dict[int, int] = {}
    for _, pid, peak, _ in results:
        peaks[pid] = max(peaks.get(pid, 0), peak)
    rows = sorted((r for rows, _, _, _ in results for r in rows),
                  key=lambda r: (r["session"], r["qd_id"]))
    return elapsed, rows, peaks, sum(cpu for *_, cpu in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--qds", type=int, default=30)
    parser.add_argument("--tags-s", type=float, default=2.0, help="g² tags per QD, s")
    parser.add_argument("--chunk-qds", type=int, default=4)
    parser.add_argument("--peer-sessions", type=int, default=2,
                        help="sessions re-analysed in the plain in-process loop (peer)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-reanalysis-"))
    try:
        t0 = time.perf_counter()
        paths = [write_session(tmp / f"s{i:02d}.h5", args.qds, seed=i, duration_s=args.tags_s)
                 for i in range(args.sessions)]
        print(f"wrote {len(paths)} sessions x {args.qds} QDs in "
              f"{time.perf_counter() - t0:.0f} s")
        n_qds = args.sessions * args.qds
        size = sum(p.stat().st_size for p in paths)
        settings = ReanalysisSettings()
        chunks = sessions_chunks([str(p) for p in paths], args.chunk_qds)
        task_bytes = max(len(pickle.dumps((c, settings))) for c in chunks)
        results = {}
        for workers in (1, 2):
            elapsed, rows, peaks, cpu = run_pool(chunks, settings, workers)
            results[workers] = (elapsed, rows, peaks)
            print(f"{workers} worker(s): {n_qds} QDs in {elapsed:.1f} s = "
                  f"{n_qds / elapsed:.2f} QDs/s; CPU {cpu / n_qds:.3f} s per QD; peak "
                  f"memory per worker "
                  f"{', '.join(f'{p / 2**20:.0f} MiB' for p in sorted(peaks.values()))}",
                  flush=True)
        assert results[1][1] == results[2][1], "1 and 2 workers gave different tables"
        rows = results[1][1]
        row_bytes = len(pickle.dumps(rows)) / len(rows)
        peer_chunks = [c for c in chunks if c.path in {str(p.resolve()) for p in
                                                         paths[:args.peer_sessions]}]
        t0 = time.perf_counter()
        n_peer = sum(len(analyze_chunk(c, settings)) for c in peer_chunks)
        peer = n_peer / (time.perf_counter() - t0)
        one, two = n_qds / results[1][0], n_qds / results[2][0]
        statuses = {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"]
                                                                            for r in rows})}
        print(f"ratio 2 workers / 1 worker: {two / one:.2f} (machine: {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f})")
        print(f"peer, plain loop in this process (no Dask), {n_peer} QDs: {peer:.2f} QDs/s; "
              f"Dask 1 worker / peer: {one / peer:.2f}")
        print(f"read per QD: {size / n_qds / 2**20:.2f} MiB (files {size / 2**20:.0f} MiB); "
              f"sent per task: {task_bytes} B out, {row_bytes * args.chunk_qds:.0f} B back "
              f"({row_bytes:.0f} B per row)")
        print(f"statuses: {statuses}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
