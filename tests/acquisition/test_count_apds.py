"""count_apds counts exactly the dwell window, however long the sleeps really were."""

from types import SimpleNamespace

import numpy as np
import pytest

from micropl.acquisition.procedures.base import count_apds
from micropl.records import TagChunk


class RegularTagger:
    """A tag every ``spacing_ps`` on channel 1, 2, 3 in turn (3 is not an APD)."""

    def __init__(self, clock, spacing_ps: int) -> None:
        self.clock, self.spacing_ps, self.last_ps = clock, spacing_ps, 0

    def read(self) -> TagChunk:
        now_ps = int(round(self.clock.t * 1e12))
        first = -(-self.last_ps // self.spacing_ps)
        t = np.arange(first, -(-now_ps // self.spacing_ps), dtype=np.int64) * self.spacing_ps
        chunk = TagChunk(t, (t // self.spacing_ps % 3 + 1).astype(np.uint8), self.last_ps, now_ps)
        self.last_ps = now_ps
        return chunk


@pytest.mark.parametrize("overshoot", [1.0, 1.7, 3.0])
def test_counts_cover_the_dwell_not_the_overshoot(overshoot):
    clock = SimpleNamespace(t=0.123)
    tagger = RegularTagger(clock, spacing_ps=1_000_000)  # 1 Mtags/s, 2/3 of them on the APDs
    guarded = []

    def sleep(duration_s):
        clock.t += duration_s * overshoot  # a loaded machine wakes late

    ctx = SimpleNamespace(setup=SimpleNamespace(tagger=tagger, apd_channels=(1, 2)),
                          sleep=sleep, guard=guarded.append)
    counts, covered_s = count_apds(ctx, 0.05)
    # brute force: APD tags in [start, start + 50 ms) on the regular grid
    start_ps = int(round(0.123 * 1e12))
    grid = np.arange(-(-start_ps // 1_000_000), -(-(start_ps + 50_000_000_000) // 1_000_000))
    assert counts == int(((grid % 3) < 2).sum())
    assert covered_s == pytest.approx(0.05)
    assert sum(len(c) for c in guarded) >= counts  # every read went through the interlock
