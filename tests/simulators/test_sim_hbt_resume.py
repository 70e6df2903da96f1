"""The simulated tag stream continues its random walks between reads: the same tags.

A read that ends inside a 10 ms randomness block leaves the state of each walk there
and the next read continues it (instead of walking the block again from its start).
These tests compare, read by read, a stream that resumes with one whose resume state
is thrown away before every read (the computation without resuming), under blinking
emitters, reads of random lengths (inside one block, across blocks, ending exactly on
block boundaries) and excitation that changes between reads.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micropl.simulators import hbt

BLOCK = hbt.BLOCK_PS
PERIOD_PS = 12_500


def _blinking(rng: np.random.Generator, n_emitters: int, t_end_ps: int) -> hbt.Emitters:
    """Emitters with many ON intervals (several per block), cut at block edges too."""
    starts, stops, ptr = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [0]
    for _ in range(n_emitters):
        edges = np.sort(rng.integers(0, t_end_ps, 2 * int(rng.integers(5, 60))))
        s, e = edges[0::2], edges[1::2]
        keep = e > s
        starts.append(s[keep])
        stops.append(e[keep])
        ptr.append(ptr[-1] + int(keep.sum()))
    return hbt.Emitters(np.arange(n_emitters, dtype=np.int64),
                        rng.uniform(0.002, 0.08, n_emitters), rng.uniform(0.0, 0.6, n_emitters),
                        rng.uniform(800.0, 6000.0, n_emitters),
                        np.concatenate(starts).astype(np.int64),
                        np.concatenate(stops).astype(np.int64), np.array(ptr, np.int64))


def _scaled(em: hbt.Emitters, factor: float) -> hbt.Emitters:
    return hbt.Emitters(em.source_id, em.detected_per_pulse_per_apd * factor, em.g2_0,
                        em.lifetime_ps, em.on_start_ps, em.on_stop_ps, em.on_ptr)


def _step_ends(draw_steps: list[int], t_end_ps: int) -> list[int]:
    ends, t = [], 0
    for step in draw_steps:
        t = min(t_end_ps, t + step)
        ends.append(t)
    return ends + [t_end_ps]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_emitters=st.integers(0, 3),
       steps=st.lists(st.one_of(st.integers(1, 3_000_000), st.integers(1, 3 * 10**9),
                                st.just(BLOCK)), min_size=1, max_size=25),
       changes=st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.5, 2.0, 0.0]), min_size=25,
                        max_size=25),
       background=st.sampled_from([0.0, 3e3, 5e4]))
def test_resumed_reads_give_the_tags_of_reads_from_the_block_start(seed, n_emitters, steps,
                                                                   changes, background):
    rng = np.random.default_rng(seed)
    t_end = 4 * BLOCK + 12_345
    em = _blinking(rng, n_emitters, t_end + BLOCK)
    det = hbt.DetectorModel(afterpulse_probability=0.02, crosstalk_probability=0.01)
    resumed = hbt.HbtStream(det, seed=seed)
    fresh = hbt.HbtStream(det, seed=seed)
    for i, end in enumerate(_step_ends(steps, t_end)):
        now = _scaled(em, changes[i % len(changes)])  # the excitation may change
        period = 0 if changes[i % len(changes)] == 0.0 else PERIOD_PS  # laser off
        fresh._state.resume = hbt._no_resume(0)  # forget: walk every block from its start
        a = resumed.advance(end, now, period, background, sync_divider=8)
        b = fresh.advance(end, now, period, background, sync_divider=8)
        np.testing.assert_array_equal(a.t_ps, b.t_ps)
        np.testing.assert_array_equal(a.channel, b.channel)
        np.testing.assert_array_equal(a.counts, b.counts)


@pytest.mark.parametrize("read_s", [0.001, 0.00731, 0.01, 0.02])
def test_chunked_reads_equal_one_read_with_blinking_emitters(read_s):
    rng = np.random.default_rng(4)
    t_end = int(0.08e12)
    em = _blinking(rng, 3, t_end + BLOCK)
    det = hbt.DetectorModel(afterpulse_probability=0.02)
    whole = hbt.HbtStream(det, seed=9).advance(t_end, em, PERIOD_PS, 2e3)
    stream = hbt.HbtStream(det, seed=9)
    parts, resumable = [], 0
    for k in range(1, int(np.ceil(0.08 / read_s)) + 1):
        parts.append(stream.advance(min(t_end, int(k * read_s * 1e12)), em, PERIOD_PS, 2e3))
        src, _, _, _, bg_i, _, _ = stream._state.resume
        resumable += int(bg_i[0] == 1) + int((src >= 0).sum())  # walks left mid-block
    t = np.concatenate([p.t_ps for p in parts])
    np.testing.assert_array_equal(t, whole.t_ps)
    np.testing.assert_array_equal(np.concatenate([p.channel for p in parts]), whole.channel)
    assert whole.t_ps.size > 1000
    assert (resumable > 0) == (read_s not in (0.01, 0.02))  # whole blocks: nothing left
