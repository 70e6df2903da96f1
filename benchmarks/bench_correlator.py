"""Throughput of micropl's g² cross-correlation against pycorrelate.pcorrelate.

Setup as in DESIGN.md §8: ±550 ns window, 64 ps bins, two independent Poisson streams at
1 Mcps and at 5 Mcps per channel. Throughput is tags of both channels per second of
compute, the median of repeats after a warm-up call (numba compilation excluded).
pycorrelate's ``pcorrelate(t, u, bins)`` visits every bin for every start tag, so it is
timed on a prefix of the same streams; both histograms are checked to be identical on
that prefix. Run: ``python benchmarks/bench_correlator.py``.
"""

from __future__ import annotations

import numpy as np
from timing import median_s

from micropl.analysis.g2 import cross_correlate, histogram_bins

WINDOW_PS = 550_000
BIN_PS = 64


def poisson_stream(rng: np.random.Generator, rate_hz: float, duration_s: float) -> np.ndarray:
    n = rng.poisson(rate_hz * duration_s)
    return np.sort(rng.integers(0, int(duration_s * 1e12), n)).astype(np.int64)




def main() -> None:
    try:
        from pycorrelate import pcorrelate
    except ImportError:  # pragma: no cover - optional peer
        pcorrelate = None
    rng = np.random.default_rng(2024)
    n_bins, span = histogram_bins(BIN_PS, WINDOW_PS)
    edges = (-WINDOW_PS + BIN_PS * np.arange(n_bins + 1)).astype(np.int64)
    print(f"# window ±{WINDOW_PS / 1e3:.0f} ns, {BIN_PS} ps bins ({n_bins} bins), one core")
    for rate_hz, duration_s, peer_tags in ((1e6, 2.0, 4_000), (5e6, 0.5, 4_000)):
        t1 = poisson_stream(rng, rate_hz, duration_s)
        t2 = poisson_stream(rng, rate_hz, duration_s)
        cross_correlate(t1[:1000], t2[:1000], BIN_PS, WINDOW_PS)  # warm-up / compile
        ours_s, _ = median_s(lambda t1=t1, t2=t2: cross_correlate(t1, t2, BIN_PS, WINDOW_PS), 7)
        ours_rate = (t1.size + t2.size) / ours_s / 1e6
        label = f"cross_correlate {rate_hz / 1e6:.0f} Mcps/ch"
        if pcorrelate is None:
            print(f"{label}: {ours_rate:.1f} M tags/s (pycorrelate: not installed)")
            continue
        # Same streams, prefix of peer_tags tags of channel 1 and the matching span of 2.
        p1 = t1[:peer_tags]
        p2 = t2[t2 < p1[-1] + WINDOW_PS + span]
        pcorrelate(p1[:50], p2[:50], edges)  # warm-up / compile
        peer_s, _ = median_s(lambda p1=p1, p2=p2: pcorrelate(p1, p2, edges), 3)
        peer_rate = (p1.size + p2.size) / peer_s / 1e6
        peer_counts = np.rint(pcorrelate(p1, p2, edges) * BIN_PS).astype(np.int64)
        _, our_counts = cross_correlate(p1, p2, BIN_PS, WINDOW_PS)
        same = bool(np.array_equal(peer_counts, our_counts))
        print(f"{label}: {ours_rate:.1f} M tags/s (pycorrelate: {peer_rate:.3f} M tags/s, "
              f"ratio {ours_rate / peer_rate:.0f}x; identical histograms: {same}, "
              f"{int(our_counts.sum())} pairs)")
        if not same:
            raise SystemExit("histograms differ from pycorrelate")


if __name__ == "__main__":
    main()
