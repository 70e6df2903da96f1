"""The live count-rate trace: binning against a brute-force count, bounded memory, and the
trace filling in a live window during a g² run (pytest-qt, fast clock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import G2
from micropl.acquisition.session import Session
from micropl.gui.main_window import MainWindow
from micropl.gui.rate_trace import RateTrace
from micropl.records import TagChunk, Tagged

pytestmark = pytest.mark.timeout(120)
PS = 1_000_000_000_000


def chunk(rng, t0_s: float, duration_s: float, rates=(2e4, 3e4, 5e5)) -> TagChunk:
    """Poisson tags on channels 1, 2 and a sync 3 (written here, not the simulator)."""
    t0, t1 = int(t0_s * PS), int((t0_s + duration_s) * PS)
    times, channels = [], []
    for ch, rate in zip((1, 2, 3), rates):
        n = rng.poisson(rate * duration_s)
        times.append(rng.integers(t0, t1, n))
        channels.append(np.full(n, ch))
    t = np.concatenate(times)
    order = np.argsort(t, kind="stable")
    return TagChunk(t_ps=t[order].astype(np.int64), channel=np.concatenate(channels)[order]
                    .astype(np.int32), t_start_ps=t0, t_stop_ps=t1)


def test_long_chunk_bins_match_a_brute_force_count():
    rng = np.random.default_rng(1)
    c = chunk(rng, 3.0, 1.05, rates=(2e3, 3e3, 5e3))
    trace = RateTrace((1, 2), bin_s=0.1, span_s=60)
    trace.add_chunk(c)
    t, a, b, total = trace.arrays()
    assert t.size == 10  # floor(1.05 / 0.1) equal bins of 0.105 s
    width_s = 1.05 / 10
    for k in range(10):  # brute force: count each tag into its bin by comparisons
        lo = c.t_start_ps + k * width_s * PS
        hi = lo + width_s * PS
        in_bin = [(tt >= lo) and (tt < hi or k == 9) for tt in c.t_ps]
        n1 = sum(1 for ok, ch in zip(in_bin, c.channel) if ok and ch == 1)
        n2 = sum(1 for ok, ch in zip(in_bin, c.channel) if ok and ch == 2)
        assert a[k] == pytest.approx(n1 / width_s)
        assert b[k] == pytest.approx(n2 / width_s)
    assert np.allclose(total, a + b)
    assert t[-1] == 0.0 and t[0] == pytest.approx(-9 * width_s)


def test_short_reads_are_summed_into_one_bin():
    rng = np.random.default_rng(2)
    trace = RateTrace((1, 2), bin_s=0.1, span_s=60)
    chunks = [chunk(rng, 0.02 * i, 0.02) for i in range(12)]
    for c in chunks:
        trace.add_chunk(c)
    t, a, b, _ = trace.arrays()
    assert t.size == 2  # 5 reads make a bin; the last 2 wait for the next ones
    n1 = sum(int(np.sum(c.channel == 1)) for c in chunks[:5])
    assert a[0] == pytest.approx(n1 / 0.1)
    n2 = sum(int(np.sum(c.channel == 2)) for c in chunks[5:10])
    assert b[1] == pytest.approx(n2 / 0.1)


def test_the_trace_is_bounded_to_its_span():
    trace = RateTrace((1, 2), bin_s=0.1, span_s=30)
    for _ in range(2000):
        trace.add_rates({1: 1e3, 2: 2e3}, 0.1)
    t, a, b, total = trace.arrays()
    assert len(trace) == 300 and t.size == 300
    assert t[0] == pytest.approx(-29.9) and t[-1] == 0.0
    assert np.all(total == 3e3)


def test_readback_bins_carry_missing_channels_as_nan():
    trace = RateTrace((1, 2))
    trace.add_rates({1: 500.0}, 0.5)
    trace.add_rates({1: 500.0, 2: 600.0}, 0.0)  # no width: not a bin
    _, a, b, _ = trace.arrays()
    assert a.tolist() == [500.0] and np.isnan(b[0])


def test_trace_fills_in_a_live_window_during_a_g2_run(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    tags: list[TagChunk] = []
    lock = threading.Lock()

    def collect(item):  # an independent subscriber of the same stream
        if isinstance(item, Tagged) and isinstance(item.record, TagChunk):
            with lock:
                tags.append(item.record)

    with load_setup(clock_mode="fast") as setup:
        session = Session(setup)
        window = MainWindow(session)
        qtbot.addWidget(window)
        window.show()
        try:
            session.stream.attach("test-tags", collect, maxlen=None)
            window.docks["rates"].raise_()  # the tab shown (a hidden tab is not drawn)
            sample = setup.world.sample  # at the brightest single emitter
            k = int(np.argmax(np.where(sample.is_aggregate, 0, sample.brightness_cps)))
            setup.scanner.move_to(float(sample.x_um[k]), float(sample.y_um[k]))
            window.start_procedure(G2(duration_s=3.0))
            qtbot.waitUntil(lambda: window.runner.busy, timeout=10_000)
            qtbot.waitUntil(lambda: not window.runner.busy, timeout=60_000)
            qtbot.waitUntil(lambda: (window.drain() or True) and len(window.buffer.trace) >= 25,
                            timeout=10_000)
            t, a, b, total = window.buffer.trace.arrays()
            # 3 s of counting in 0.1 s bins (a readback bin may follow the run).
            assert 28 <= t.size <= 40
            (ta, ya), (_, yb), (_, ys) = window.rate_panel.data()
            assert ta.size == t.size and np.allclose(ys, ya + yb)
            # Counts in the bins = the APD tags of the stream's chunks, counted apart.
            with lock:
                counted = sum(int(np.sum(np.isin(c.channel, (1, 2)))) for c in tags)
                seconds = sum(c.duration_s for c in tags)
            widths = np.diff(np.concatenate([[t[0] - 0.1], t]))
            run_bins = slice(0, int(round(seconds / 0.1)))
            binned = float(np.sum(total[run_bins] * widths[run_bins]))
            assert binned == pytest.approx(counted, rel=0.05)
            assert "kcps" in window.rate_panel.readout.text()
        finally:
            window.ask = lambda question: True
            window.close()
            session.close()
