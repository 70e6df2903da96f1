"""Run every ``benchmarks/bench_*.py`` in turn (``make bench``).

Each benchmark prints its figures beside a peer's figure measured in the same
run, as a ratio. Machines are shared and noisy: the scripts report medians.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n=== {script.stem} ===", flush=True)
        start = time.monotonic()
        code = subprocess.call([sys.executable, str(script)])
        print(f"--- {script.stem}: {time.monotonic() - start:.1f} s, exit {code}", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
