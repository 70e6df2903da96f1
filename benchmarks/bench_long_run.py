"""Long unattended run: memory growth and lost records (issue 8: long runs).

A real-time (wall-clock) session on the simulated setup repeats spectrum + g²
measurements at one QD for ``--duration-s`` seconds (3600 for the full hour;
CI runs a scaled-down duration). It reports the growth of the resident set
size (VmRSS, from /proc/self/status) between the end of the first measurement
and the end of the session, and the records published for storage against the
rows found in the file afterwards. There is no peer library for this figure;
each line compares with the issue's budget instead (50 MB growth, 0 lost).

Usage: ``python benchmarks/bench_long_run.py [--duration-s 3600] [--out FILE.h5]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2, SpectrumAcquisition
from micropl.acquisition.session import Session, is_stored
from micropl.acquisition.storage import SessionReader
from micropl.records import TagChunk, Tagged

BUDGET_MB = 50.0


def rss_mb() -> float:
    """Resident set size of this process, in MB (from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def long_run(duration_s: float, out: Path, clock_mode: str = "real") -> dict[str, float]:
    """Measure for ``duration_s`` of wall time; figures of memory and record counts."""
    published = {"n": 0, "tags": 0}

    def count(item: object) -> None:
        if is_stored(item):
            record = item.record if isinstance(item, Tagged) else item
            if isinstance(record, TagChunk):  # stored gathered into chunks: count tags
                published["tags"] += len(record)
            else:
                published["n"] += 1

    # The camera starts cold: a cool-down is not what this measures.
    with load_setup(clock_mode=clock_mode,
                    overrides={"camera": {"start_temperature_c": -80.0}}) as setup:
        with Session(setup, out) as session:
            session.stream.attach("count", count)
            truth = setup.world.sample.truth()
            k = int(truth["brightness_cps"].argsort()[len(truth["brightness_cps"]) // 2])
            setup.scanner.move_to(float(truth["x_um"][k]), float(truth["y_um"][k]))
            spectrum = SpectrumAcquisition(exposure_s=0.5, accumulations=2)
            g2 = G2(duration_s=5.0)
            rss0, t0, n_runs, failed = None, time.monotonic(), 0, 0
            while time.monotonic() - t0 < duration_s:
                for procedure in (spectrum, g2):
                    failed += not session.run(procedure).ok
                    n_runs += 1
                if rss0 is None:
                    rss0 = rss_mb()
            rss1 = rss_mb()
            session.stream.flush(60.0)
    with SessionReader(out) as reader:
        rows = sum(reader.n_rows(t) for t in reader.tables
                   if t not in ("tag_chunk", "raw_tags_stored"))
        tags = int(reader.tags()[0].size)
    return {"duration_s": time.monotonic() - t0, "runs": n_runs, "failed_runs": failed,
            "rss_growth_mb": rss1 - (rss0 or rss1), "rss_end_mb": rss1,
            "published": published["n"], "stored": rows,
            "published_tags": published["tags"], "stored_tags": tags}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0,
                        help="wall time of the session, s (3600 for the full hour)")
    parser.add_argument("--out", type=Path, help="session file (default: a temporary file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "long.h5"
        r = long_run(args.duration_s, out)
    print(f"long run duration: {r['duration_s']:.0f} s ({r['runs']} runs, "
          f"{r['failed_runs']} failed)")
    print(f"long run RSS growth: {r['rss_growth_mb']:.1f} MB (budget: {BUDGET_MB:.0f} MB, "
          f"ratio {r['rss_growth_mb'] / BUDGET_MB:.2f}); RSS at end {r['rss_end_mb']:.0f} MB")
    lost = r["published"] - r["stored"]
    print(f"long run records: {r['stored']} stored of {r['published']} published "
          f"(lost {lost}; budget 0); tags: {r['stored_tags']} stored of "
          f"{r['published_tags']} published (lost {r['published_tags'] - r['stored_tags']})")


if __name__ == "__main__":
    main()
