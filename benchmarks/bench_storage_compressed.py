"""Compressed session files and the demo: bytes per tag, read throughput, wall time.

The tags are the demo's own: ``micropl demo`` (30 QDs, fast mode) runs once; its wall
time is the demo figure (against the 30 s target). Each figure is a ratio against a
peer measured in the same run:

* bytes per tag of the compressed tag columns (and of the whole file), against the
  uncompressed int64 + uint8 layout of format version 1 (the same tags, written by
  the same writer with plain columns), and against the information content of the
  tags (empirical entropy of the inter-arrival times and of the channel);
* read throughput of ``SessionReader.tags()`` on the compressed file, on one core,
  against a plain read pass (h5py, whole datasets) of the uncompressed file.

Run: ``.venv/bin/python benchmarks/bench_storage_compressed.py [--max-qds N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from micropl.acquisition.storage import SessionReader, SessionWriter, schema
from micropl.records import TagChunk, Tagged

REPEATS = 5


def _plain_specs() -> list[schema.TableSpec]:
    """The registered tables with every column plain, as format version 1 stored them."""
    out = []
    for spec in schema.registered_tables():
        cols = tuple(schema.Column(**{**c.to_dict(), "codec": "", "chunk": 0})
                     for c in spec.columns)
        out.append(schema.TableSpec(spec.name, spec.type_name, cols, spec.default_kind,
                                    spec.own_ids, spec.record_type))
    return out


def _write(path: Path, chunks: list[TagChunk], plain: bool) -> int:
    with SessionWriter.create(path, tables=_plain_specs() if plain else None) as w:
        for chunk in chunks:
            w.append(Tagged(chunk, 0, 0, "g2"))
    with h5py.File(path, "r") as f:
        group = f["tables/tag_chunk"]
        return int(group["t_ps"].id.get_storage_size() + group["channel"].id.get_storage_size())


def _entropy_bytes_per_tag(t: np.ndarray, c: np.ndarray) -> float:
    """Empirical entropy of the inter-arrival times (1 ps) and channels, bytes per tag."""
    def h(values: np.ndarray) -> float:
        _, counts = np.unique(values, return_counts=True)
        p = counts / counts.sum()
        return float(-(p * np.log2(p)).sum())
    # exact 1-ps gaps are almost all distinct in a sample: estimate from 2**k-ps bins
    # plus the k uniform low bits (the gaps are smooth at that scale)
    k = 8
    gaps = np.diff(t)
    return (h(gaps >> k) + k + h(c)) / 8.0


def _median_s(run) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-qds", type=int, default=30)
    parser.add_argument("--session", type=Path,
                        help="measure the tags of this session file instead of a new demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        demo = args.session or Path(tmp) / "demo.h5"
        if args.session is None:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "micropl", "demo", "--json", "--max-qds",
                            str(args.max_qds), "--out", str(demo)], check=True,
                           capture_output=True)
            wall = time.perf_counter() - start
            print(f"micropl demo ({args.max_qds} QDs, with its report): {wall:.1f} s wall: "
                  f"ratio to the 30 s target {wall / 30.0:.2f} (load average "
                  f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
        with SessionReader(demo) as r:
            chunks = [s.record for s in r.records(TagChunk)]
            t, c = r.tags()
        n = t.size
        file_b = demo.stat().st_size
        packed, plain = Path(tmp) / "packed.h5", Path(tmp) / "plain.h5"
        packed_b = _write(packed, chunks, plain=False)
        plain_b = _write(plain, chunks, plain=True)
        info_b = _entropy_bytes_per_tag(t, c)
        print(f"demo tags ({n} tags): compressed {packed_b / n:.2f} B/tag, "
              f"int64 + uint8 {plain_b / n:.2f} B/tag: ratio {plain_b / packed_b:.2f} "
              f"(target ≤ 3.5 B/tag)")
        print(f"information content ≈ {info_b:.2f} B/tag: compressed / information "
              f"{packed_b / n / info_b:.2f}")
        print(f"whole session file: {file_b / n:.2f} B per stored tag (target ≲ 4)")

        def compressed() -> None:
            with SessionReader(packed) as r:
                got = r.tags()
            assert got[0].size == n

        def plain_pass() -> None:
            with h5py.File(plain, "r") as f:
                f["tables/tag_chunk/t_ps"][...]
                f["tables/tag_chunk/channel"][...]

        compressed()
        plain_pass()  # both files in the page cache
        t_packed = _median_s(compressed)
        t_plain = _median_s(plain_pass)
        print(f"read on one core: compressed {n / t_packed / 1e6:.0f} M tags/s "
              f"(decompress + undo deltas + checks), plain h5py pass of int64 + uint8 "
              f"{n / t_plain / 1e6:.0f} M tags/s: ratio {t_plain / t_packed:.2f} "
              f"(target ≥ 100 M tags/s)")


if __name__ == "__main__":
    main()
