"""The APD over-rate interlock cannot be blinded.

* The sliding 10 ms window against an independent brute force (hypothesis over
  random tag streams cut at random chunk boundaries), and the named cases.
* A chunk whose rate is unknown (overflow, missed events, an inconsistent
  interval) trips it.
* Every procedure that reads the tagger trips on an over-rate in a read whose
  result it discards (a scanner move, the read before the measurement starts):
  laser off before that read returns, run ``aborted`` with the reason, and the
  chunk kept.
* A paused run (laser on, nobody reading) is watched; an idle rate readback
  with the laser on is checked too.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micropl.acquisition import Session, load_setup
from micropl.acquisition.interlock import (
    ApdRateInterlock,
    _channel_window,
    allowed_tags,
)
from micropl.acquisition.procedures import G2, PowerSeries, RasterScan, Refocus, Survey, TimeTrace
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.records import TagChunk, Tagged

pytestmark = pytest.mark.timeout(120)

MS = 1_000_000_000  # ps
WINDOW = 10 * MS
APD1, APD2, SYNC = 1, 2, 3


def chunk(t_ps, channel=APD1, start=None, stop=None, **kw) -> TagChunk:
    t = np.asarray(t_ps, np.int64)
    ch = np.broadcast_to(np.asarray(channel, np.uint8), t.shape).copy()
    start = int(t[0]) if start is None else start
    stop = int(t[-1]) + 1 if stop is None else stop
    return TagChunk(t, ch, start, stop, **kw)


def uniform(rate_cps: float, t0_ps: int, t1_ps: int) -> np.ndarray:
    """Tags at exactly ``rate_cps`` in ``[t0_ps, t1_ps)``, evenly spaced."""
    n = int(round(rate_cps * (t1_ps - t0_ps) * 1e-12))
    return t0_ps + (np.arange(n) * (t1_ps - t0_ps)) // max(n, 1)


def feed(lock: ApdRateInterlock, chunks: list[TagChunk]) -> list[str | None]:
    return [lock.check(c) for c in chunks]


# --------------------------------------------------------------------------- brute force
def brute_force_exceeds(t_ps: np.ndarray, channel: np.ndarray, channels: tuple[int, ...],
                        allowed: int, window_ps: int) -> bool:
    """For every tag, count the tags of its channel in [t, t + window): any above ``allowed``?"""
    for c in channels:
        times = sorted(int(t) for t, ch in zip(t_ps, channel) if ch == c)
        for t in times:
            if sum(1 for u in times if t <= u < t + window_ps) > allowed:
                return True
    return False


#: Tag times on a 2.5 ms grid (so differences of exactly 10 ms are common) plus jitter of
#: ±1 ps (windows that just include or just miss a tag), or anywhere in 60 ms.
_TIMES = st.one_of(
    st.tuples(st.integers(0, 24), st.integers(-1, 1)).map(
        lambda kj: max(0, kj[0] * 2_500_000_000 + kj[1])),
    st.integers(0, 60 * MS))


@st.composite
def tag_streams(draw):
    times = draw(st.lists(_TIMES, min_size=0, max_size=40))
    t = np.sort(np.asarray(times, np.int64))
    channel = np.asarray(draw(st.lists(st.sampled_from([APD1, APD2, SYNC]), min_size=t.size,
                                       max_size=t.size)), np.uint8)
    t_end = int(t[-1]) + 1 if t.size else MS
    cuts = sorted(set(draw(st.lists(st.integers(0, t_end), max_size=8))) | {0, t_end})
    allowed = draw(st.integers(1, 6))
    return t, channel, cuts, allowed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag_streams())
def test_sliding_window_trips_exactly_when_the_brute_force_finds_a_window(stream):
    """After every chunk, the interlock has tripped iff some 10 ms window of the data so far
    holds more than ``allowed`` tags of one APD channel (the sync channel never counts)."""
    t, channel, cuts, allowed = stream
    lock = ApdRateInterlock((APD1, APD2), max_rate_cps=allowed / 0.010)
    assert lock.allowed == allowed
    verdicts = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        inside = (t >= a) & (t < b)
        verdicts.append(lock.check(TagChunk(t[inside], channel[inside], a, b)))
        tripped = any(v is not None for v in verdicts)
        so_far = t < b
        assert tripped == brute_force_exceeds(t[so_far], channel[so_far], (APD1, APD2),
                                              allowed, WINDOW), (a, b)
    first = next((v for v in verdicts if v is not None), None)
    assert first is None or "exceeds the protection threshold" in first


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50 * MS), max_size=60).map(sorted),
       st.integers(1, 20 * MS), st.integers(0, 8))
def test_densest_window_matches_the_brute_force(times, window_ps, allowed):
    t = np.asarray(times, np.int64)
    channel = np.ones(t.size, np.uint8)
    tail, count, start_ps = _channel_window(np.zeros(0, np.int64), t, channel, 1, allowed,
                                            window_ps, 25 * MS)
    expect = max((sum(1 for u in times if s <= u < s + window_ps) for s in times), default=0)
    assert count == (expect if expect > allowed else -1)
    if count >= 0:
        assert int(np.sum((t >= start_ps) & (t < start_ps + window_ps))) == count
    assert tail.tolist() == [u for u in times if u >= 25 * MS]


def test_allowed_tags_is_the_threshold_times_10_ms_in_whole_tags():
    assert allowed_tags(2e6, WINDOW) == 20_000
    assert allowed_tags(1.99999e6, WINDOW) == 19_999
    assert allowed_tags(3e3, WINDOW) == 30  # 3e3 × 0.01 is 29.999999999999996 in floats


# --------------------------------------------------------------------------- named cases
def test_burst_of_3_9_mcps_straddling_a_10_ms_bin_edge_trips_at_2_mcps():
    """3.9 Mcps for 10 ms from 5 ms to 15 ms: each fixed bin [0, 10), [10, 20) ms holds
    only 19 500 tags (the old watchdog's blind spot); the window from 5 ms holds 39 000."""
    t = uniform(3.9e6, 5 * MS, 15 * MS)
    bins = np.bincount(t // WINDOW)
    assert bins.max() <= 20_000  # what fixed 10 ms bins saw
    reason = ApdRateInterlock((APD1, APD2), 2e6).check(chunk(t, start=0, stop=20 * MS))
    assert reason is not None and "APD channel 1" in reason and "3.90 Mcps" in reason
    assert "exceeds the protection threshold 2.00 Mcps" in reason


def test_burst_split_across_two_chunks_trips():
    t = uniform(3.9e6, 15 * MS, 25 * MS)
    first, second = t[t < 20 * MS], t[t >= 20 * MS]
    assert first.size <= 20_000 and second.size <= 20_000  # neither chunk alone
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    verdicts = feed(lock, [chunk(first, start=0, stop=20 * MS),
                           chunk(second, start=20 * MS, stop=40 * MS)])
    assert verdicts[0] is None and verdicts[1] is not None
    assert "exceeds the protection threshold" in verdicts[1]


def test_burst_in_a_short_last_chunk_trips_with_the_tags_before_it():
    """The run's last chunk is 2 ms long; the 10 ms window ending in it reaches back into
    the chunk before (2.5 Mcps for 10 ms)."""
    t = uniform(2.5e6, 30 * MS, 40 * MS)
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    verdicts = feed(lock, [chunk(t[t < 38 * MS], start=20 * MS, stop=38 * MS),
                           chunk(t[t >= 38 * MS], start=38 * MS, stop=40 * MS)])
    assert verdicts == [None, verdicts[1]] and verdicts[1] is not None


def test_short_first_chunk_is_judged_on_the_tags_it_has():
    """A first chunk of 2 ms has no past: its 2 ms at 5 Mcps are 10 000 tags, within the
    20 000 a 10 ms window allows; 20 001 tags in it trip."""
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk(uniform(5e6, 0, 2 * MS), start=0, stop=2 * MS)) is None
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk(np.arange(20_001) * 90, start=0, stop=2 * MS)) is not None


@pytest.mark.parametrize("split_ms", [None, 3, 10, 17])
@pytest.mark.parametrize("extra", [False, True])
def test_just_under_the_threshold_does_not_trip_and_one_tag_more_does(split_ms, extra):
    """2 Mcps steady for 40 ms: exactly 20 000 tags in every 10 ms window, cut anywhere,
    does not trip; one tag more in the middle does."""
    t = uniform(2e6, 0, 40 * MS)
    assert max(np.searchsorted(t, t + WINDOW) - np.arange(t.size)) == 20_000
    if extra:
        t = np.sort(np.append(t, 20 * MS + 250_000))
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    cuts = [0, 40 * MS] if split_ms is None else [0, split_ms * MS, 40 * MS]
    verdicts = [lock.check(chunk(t[(t >= a) & (t < b)], start=a, stop=b))
                for a, b in zip(cuts[:-1], cuts[1:])]
    assert any(v is not None for v in verdicts) == extra
    if extra:
        assert "20001 tags in 10 ms" in next(v for v in verdicts if v)


def test_limit_is_per_apd_channel_and_the_sync_channel_is_free():
    """1.5 Mcps on each APD (3 Mcps summed) and 10 Mcps of sync: no trip at 2 Mcps."""
    t1, t2 = uniform(1.5e6, 0, 20 * MS), uniform(1.5e6, 0, 20 * MS) + 7
    ts = uniform(1e7, 0, 20 * MS) + 3
    t = np.concatenate([t1, t2, ts])
    ch = np.concatenate([np.full(t1.size, APD1), np.full(t2.size, APD2), np.full(ts.size, SYNC)])
    order = np.argsort(t, kind="stable")
    one = TagChunk(t[order], ch[order].astype(np.uint8), 0, 20 * MS)
    assert ApdRateInterlock((APD1, APD2), 2e6).check(one) is None
    reason = ApdRateInterlock((APD1, APD2), 1.4e6).check(one)
    assert reason is not None and "per APD" in reason


def test_a_chunk_checked_twice_is_counted_once():
    """1.5 Mcps: a chunk fed twice (read, then emitted) would hold 30 000 tags per window."""
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    c = chunk(uniform(1.5e6, 0, 10 * MS), start=0, stop=10 * MS)
    assert lock.check(c, read=True) is None
    assert feed(lock, [c, c, c]) == [None, None, None]
    # but a tagger that returns the same chunk again is not trusted
    reason = lock.check(c, read=True)
    assert reason is not None and "before the previous one stopped" in reason


# --------------------------------------------------------------------------- unknown rate
def _chunk(**changes: Any) -> TagChunk:
    values = {"t_ps": np.array([1, 2, 3], np.int64), "channel": np.array([1, 2, 1], np.uint8),
              "t_start_ps": 0, "t_stop_ps": 10, **changes}
    return TagChunk(**values)


UNKNOWN = [
    pytest.param(_chunk(overflow=True, missed_events=1234), "1234 missed events",
                 id="overflow"),
    pytest.param(_chunk(overflow=True), "buffer overflow", id="overflow-no-count"),
    pytest.param(_chunk(missed_events=5), "5 missed events", id="missed-events"),
    pytest.param(_chunk(missed_events=float("nan")), "nan missed events", id="missed-nan"),
    pytest.param(_chunk(t_start_ps=20, t_stop_ps=10, t_ps=np.zeros(0, np.int64),
                        channel=np.zeros(0, np.uint8)), "before its start", id="backwards"),
    pytest.param(_chunk(t_ps=np.array([1, 2, 10], np.int64)), "outside", id="tag-at-stop"),
    pytest.param(_chunk(t_start_ps=2), "outside", id="tag-before-start"),
    pytest.param(_chunk(t_ps=np.array([3, 1, 2], np.int64)), "not sorted", id="unsorted"),
    pytest.param(_chunk(channel=np.array([1, 2], np.uint8)), "channels", id="lengths"),
    pytest.param(_chunk(t_ps=np.array([1.0, 2.0, np.nan])), "float", id="float-times"),
    pytest.param(_chunk(t_stop_ps=float("nan")), "not integer", id="nan-stop"),
    pytest.param(_chunk(t_stop_ps=2**63 - 1), "out of range", id="huge-stop"),
]


@pytest.mark.parametrize(("bad", "says"), UNKNOWN)
def test_a_chunk_whose_rate_is_unknown_trips(bad, says):
    reason = ApdRateInterlock((APD1, APD2), 2e6).check(bad)
    assert reason is not None and says in reason and "rate is unknown" in reason


@pytest.mark.parametrize(("start_ms", "says"), [(9, "before the previous one stopped"),
                                                (11, "the tags between are missing")])
def test_chunks_that_do_not_tile_trip_unless_the_tagger_was_restarted(start_ms, says):
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk([5 * MS], start=0, stop=10 * MS)) is None
    reason = lock.check(chunk([12 * MS], start=start_ms * MS, stop=20 * MS))
    assert reason is not None and says in reason and "rate is unknown" in reason
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk([5 * MS], start=0, stop=10 * MS)) is None
    lock.restart()
    assert lock.check(chunk([12 * MS], start=start_ms * MS, stop=20 * MS)) is None


def test_a_restarted_time_base_drops_the_past():
    """1.5 Mcps for 10 ms, then the time base restarts at 0: not 3 Mcps."""
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk(uniform(1.5e6, 0, 10 * MS), start=0, stop=10 * MS)) is None
    lock.restart()
    assert lock.check(chunk(uniform(1.5e6, 0, 10 * MS), start=0, stop=10 * MS)) is None


def test_windows_span_a_restart_that_keeps_the_time_base():
    """Tagger started again (a procedure hands over to the next) on a continuing clock:
    the 10 ms window still joins the tags before and after the start (3 Mcps, 5-15 ms)."""
    t = uniform(3e6, 5 * MS, 15 * MS)
    lock = ApdRateInterlock((APD1, APD2), 2e6)
    assert lock.check(chunk(t[t < 10 * MS], start=0, stop=10 * MS)) is None
    lock.restart()
    assert lock.check(chunk(t[t >= 10 * MS], start=10 * MS, stop=20 * MS)) is not None


# --------------------------------------------------------------------------- procedures
class Injector:
    """Wraps the simulated tagger's ``read``: the chosen read gets a 3.9 Mcps burst on APD1.

    The burst fills the last 10 ms of that read's interval (the interval is made at least
    12 ms long by letting clock time pass before the read, as a slow read or a slow
    piezo settle would). Records the clock time of every ``laser.off``.
    """

    def __init__(self, setup: Any, pick: Any, rate_cps: float = 3.9e6,
                 channel: int = APD1) -> None:
        self.setup, self.pick, self.rate_cps = setup, pick, rate_cps
        self.reads = 0
        self.moved = False
        self.injected: TagChunk | None = None
        self.off_at: list[float] = []
        tagger, scanner, laser = setup.tagger, setup.scanner, setup.laser
        real_read, real_move, real_off = tagger.read, scanner.move_to, laser.off

        def move_to(*args: Any, **kwargs: Any) -> None:
            real_move(*args, **kwargs)
            self.moved = True

        def off() -> None:
            self.off_at.append(setup.clock.now())
            real_off()

        def read() -> TagChunk:
            self.reads += 1
            due = self.injected is None and self.pick(self)
            self.moved = False
            if not due:
                return real_read()
            setup.clock.sleep(0.012)
            got = real_read()
            burst = uniform(rate_cps, got.t_stop_ps - WINDOW, got.t_stop_ps)
            t = np.concatenate([got.t_ps, burst])
            ch = np.concatenate([got.channel, np.full(burst.size, channel, np.uint8)])
            order = np.argsort(t, kind="stable")
            self.injected = TagChunk(t[order], ch[order], got.t_start_ps, got.t_stop_ps)
            return self.injected

        tagger.read, scanner.move_to, laser.off = read, move_to, off


def after_a_move(n: int = 3):
    """The read that follows the ``n``-th scanner move (its tags are the move's)."""
    moves = {"n": 0}

    def pick(inj: Injector) -> bool:
        if inj.moved:
            moves["n"] += 1
            return moves["n"] == n
        return False

    return pick


def first_read(inj: Injector) -> bool:
    return inj.reads == 1


def dim_spot(setup: Any) -> tuple[float, float]:
    """A place of the sample with no QD within 3 µm (the sample alone stays far below 2 Mcps)."""
    sample = setup.world.sample
    for x in np.arange(5.0, 35.0, 0.5):
        for y in np.arange(5.0, 35.0, 0.5):
            if np.min(np.hypot(sample.x_um - x, sample.y_um - y)) > 3.0:
                return float(x), float(y)
    raise AssertionError("no empty place")


def run_injected(procedure: Any, pick: Any, **overrides: Any) -> tuple[Any, Injector, list]:
    published: list[Tagged] = []
    with load_setup(clock_mode="fast", overrides=overrides or None) as setup:
        x, y = dim_spot(setup)
        setup.scanner.move_to(x, y)
        injector = Injector(setup, pick)
        with Session(setup) as session:
            session.stream.attach("tags", lambda item: published.append(item)
                                  if isinstance(item, Tagged)
                                  and isinstance(item.record, TagChunk) else None)
            result = session.run(procedure)
            session.stream.flush(10)
        assert not setup.laser.emission_on
        assert not setup.world.excitation().rep_rate_hz > 0  # the sample sees no light
    return result, injector, published


def _near(x: float, y: float, half: float = 0.6, step: float = 0.2) -> dict[str, float]:
    return {"x_min_um": x - half, "x_max_um": x + half, "y_min_um": y - half,
            "y_max_um": y + half, "step_um": step}


def _procedures() -> list[Any]:
    with load_setup(clock_mode="fast") as setup:
        x, y = dim_spot(setup)
    targets = [{"qd_id": 0, "x_um": x, "y_um": y}]
    return [
        pytest.param(RasterScan(**_near(x, y), dwell_s=0.005, power_percent=50), after_a_move(),
                     "interlock", id="raster_scan-move"),
        pytest.param(Refocus(x_um=x, y_um=y, size_um=0.6, step_um=0.2, power_percent=50),
                     after_a_move(), "interlock", id="refocus-move"),
        pytest.param(Refocus(x_um=x, y_um=y, size_um=0.6, step_um=0.2, z_scan=True,
                             power_percent=50), after_a_move(2), "interlock",
                     id="refocus-z-move"),
        pytest.param(PowerSeries(powers_percent=[1, 2, 4], dwell_s=0.05), first_read,
                     "interlock", id="power_series-first-read"),
        pytest.param(G2(duration_s=0.5, power_percent=50), first_read, "interlock",
                     id="g2-discarded-read"),
        pytest.param(G2(duration_s=0.5, power_percent=50),
                     lambda inj: inj.reads == 4, "g2", id="g2-emitted-read"),
        pytest.param(TimeTrace(duration_s=0.5, power_percent=50), first_read, "interlock",
                     id="time_trace-discarded-read"),
        pytest.param(TimeTrace(duration_s=0.5, power_percent=50),
                     lambda inj: inj.reads == 3, "trace", id="time_trace-emitted-read"),
        pytest.param(Survey.model_validate({
            "scan": {**_near(x, y, 0.4), "dwell_s": 0.005}, "max_qds": 1,
            "refocus": {"size_um": 0.6, "step_um": 0.2}, "drift_every_n_qds": 0,
            "film_reference": False}), after_a_move(5), "interlock", id="survey-map-move"),
        pytest.param(Survey.model_validate({
            "targets": targets, "refocus": {"size_um": 0.6, "step_um": 0.2},
            "spectrum": {"exposure_s": 0.1, "accumulations": 1, "background_frames": 1},
            "g2": {"duration_s": 0.3, "min_duration_s": 0.1}, "drift_every_n_qds": 0}),
            after_a_move(4), "interlock", id="survey-refocus-move"),
    ]


@pytest.mark.parametrize(("procedure", "pick", "kind"), _procedures())
def test_over_rate_in_any_read_trips_before_the_read_returns(procedure, pick, kind):
    """3.9 Mcps on APD1 for 10 ms in one read (threshold 2 Mcps): the laser goes off at the
    clock time the read ended (no data time later), the run ends ``aborted`` with the
    reason, and the chunk is published once — under the procedure's kind when it emits
    it, else as ``interlock``."""
    result, injector, published = run_injected(procedure, pick)
    assert injector.injected is not None, "the read to inject into never came"
    assert result.status == "aborted", result
    assert "APD channel 1 at 3.90 Mcps" in result.reason
    assert "exceeds the protection threshold 2.00 Mcps" in result.reason
    assert injector.off_at[0] == pytest.approx(injector.injected.t_stop_ps * 1e-12, abs=1e-9)
    mine = [item for item in published if item.record is injector.injected]
    assert [item.kind for item in mine] == [kind]
    assert all(item.record.t_stop_ps <= injector.injected.t_stop_ps for item in published)


@pytest.mark.parametrize("burst", [False, True])
def test_the_configured_apd_channels_are_protected_and_the_sync_input_is_not(burst):
    """APDs on inputs 3 and 4, the laser sync on input 1 (625 kcps after its divider),
    threshold 0.5 Mcps: the sync input never trips it; 3.9 Mcps on input 4 does."""
    overrides = {"tagger": {"apd_channels": [3, 4], "sync_channel": 1},
                 "safety": {"apd_max_rate_cps": 5e5}}
    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        setup.scanner.move_to(*dim_spot(setup))
        injector = Injector(setup, (lambda inj: inj.reads == 5) if burst else (lambda inj: False),
                            channel=4)
        with Session(setup) as session:
            result = session.run(TimeTrace(duration_s=0.3, power_percent=20))
        assert setup.tagger.snapshot()["sync_divider"] == 16
        assert not setup.laser.emission_on
    if not burst:
        assert result.status == "completed", result.reason
    else:
        assert injector.injected is not None and result.status == "aborted"
        assert "APD channel 4 at 3.90 Mcps" in result.reason


@pytest.mark.parametrize("procedure", [
    pytest.param(G2(duration_s=0.5, power_percent=50), id="g2"),
    pytest.param(RasterScan(x_min_um=5, x_max_um=6, y_min_um=5, y_max_um=6, step_um=0.25,
                            dwell_s=0.005, power_percent=50), id="raster_scan"),
])
def test_every_read_overflowing_aborts_with_the_laser_off(procedure):
    """``overflow_every_n_reads: 1``: the first read already cannot tell the rate."""
    with load_setup(clock_mode="fast",
                    overrides={"tagger": {"faults": {"overflow_every_n_reads": 1}}}) as setup:
        with Session(setup) as session:
            result = session.run(procedure)
        assert not setup.laser.emission_on
        assert setup.tagger.snapshot()["reads"] == 1  # nothing read after the trip
    assert result.status == "aborted"
    assert "buffer overflow" in result.reason and "rate is unknown" in result.reason


def test_overflow_of_the_device_buffer_aborts():
    """More tags in one read than ``buffer_tags`` holds (a bright QD, a tiny buffer)."""
    with load_setup(clock_mode="fast", overrides={"tagger": {"buffer_tags": 50}}) as setup:
        sample = setup.world.sample
        k = int(np.argmax(sample.brightness_cps))
        setup.scanner.move_to(float(sample.x_um[k]), float(sample.y_um[k]))
        with Session(setup) as session:
            result = session.run(G2(duration_s=1.0, power_percent=100))
        assert not setup.laser.emission_on
    assert result.status == "aborted"
    assert "buffer overflow" in result.reason and "missed events" in result.reason


def test_a_steady_rate_just_under_the_threshold_in_a_stored_trace_completes():
    """1.5 Mcps on APD1 in every read of a time trace that emits each chunk: the chunks
    pass the interlock in ``read`` and again in ``emit``, counted once (twice would be
    3 Mcps)."""
    with load_setup(clock_mode="fast") as setup:
        setup.scanner.move_to(*dim_spot(setup))
        real_read = setup.tagger.read

        def read() -> TagChunk:
            got = real_read()
            burst = uniform(1.5e6, got.t_start_ps, got.t_stop_ps) + 1
            burst = burst[burst < got.t_stop_ps]
            t = np.concatenate([got.t_ps, burst])
            ch = np.concatenate([got.channel, np.full(burst.size, APD2, np.uint8)])
            order = np.argsort(t, kind="stable")
            return TagChunk(t[order], ch[order], got.t_start_ps, got.t_stop_ps)

        setup.tagger.read = read
        with Session(setup) as session:
            result = session.run(TimeTrace(duration_s=0.3, read_interval_s=0.007,
                                           power_percent=1))
    assert result.status == "completed", result.reason


class _ReadAndCarryOn(ProcedureBase):
    """Reads an over-rate chunk, ignores it and tries to go on (switch the laser on, return)."""

    name: ClassVar[str] = "careless"
    laser_again: bool = False

    def run(self, ctx: Any) -> str:
        ctx.setup.tagger.start(ctx.setup.apd_channels)
        ctx.setup.laser.emission_on = True
        ctx.setup.tagger.read()
        if self.laser_again:
            ctx.setup.laser.emission_on = True
        return "done"


@pytest.mark.parametrize("laser_again", [False, True])
def test_a_procedure_cannot_forget_the_interlock(laser_again):
    """Without a checkpoint after the read the run still ends ``aborted``; switching the
    laser on again after the trip is refused."""
    with load_setup(clock_mode="fast") as setup:
        injector = Injector(setup, first_read)
        with Session(setup) as session:
            result = session.run(_ReadAndCarryOn(laser_again=laser_again))
        assert not setup.laser.emission_on
        assert len(injector.off_at) >= 1
    assert result.status == "aborted" and result.value is None
    assert "exceeds the protection threshold" in result.reason


def test_a_read_returning_no_tag_data_trips():
    with load_setup(clock_mode="fast") as setup:
        setup.tagger.read = lambda: None
        with Session(setup) as session:
            result = session.run(G2(duration_s=0.2, power_percent=10))
        assert not setup.laser.emission_on
    assert result.status == "aborted" and "not tag data" in result.reason


# --------------------------------------------------------------------------- outside runs
@pytest.mark.parametrize(("rates", "tripped"), [
    ({1: 1.9e6, 2: 2.0e6, 3: 9e6}, False),  # at the threshold; the sync input is free
    ({1: 2.1e6, 2: 0.0}, True),
    ({1: 0.0, 2: float("nan")}, True),  # a rate that is not a number is not known
])
def test_rate_readback_outside_runs(rates, tripped):
    from micropl.acquisition.interlock import readback_over_rate

    reason = readback_over_rate(rates, (APD1, APD2), 2e6)
    assert (reason is not None) == tripped
    if tripped:
        assert "above the protection threshold 2.00 Mcps" in reason


def test_idle_gui_readback_switches_the_laser_off_above_the_threshold(qapp):
    """Laser switched on from the instrument panel (no run) onto a bright QD: the idle
    readback poll sees an APD above the threshold and switches the laser off."""
    from micropl.gui.commands import CommandWorker

    with load_setup(clock_mode="fast", overrides={"safety": {"apd_max_rate_cps": 2e4}}) as setup:
        sample = setup.world.sample
        k = int(np.argmax(sample.brightness_cps))
        setup.scanner.move_to(float(sample.x_um[k]), float(sample.y_um[k]))
        with Session(setup) as session:
            worker = CommandWorker(session.runner, poll_interval_s=3600)
            failed, readbacks = [], []
            worker.failed.connect(failed.append)
            worker.readback.connect(readbacks.append)
            try:
                worker._poll()  # laser off: nothing to do
                assert not failed and readbacks
                setup.laser.power_percent = 100
                setup.laser.emission_on = True
                worker._poll()
            finally:
                worker.stop()
            assert not setup.laser.emission_on
            assert failed and "above the protection threshold" in failed[-1]
            assert readbacks[-1].laser_on is False


# --------------------------------------------------------------------------- paused runs
def _paused_trace(setup: Any, session: Any, on_pause: Any) -> Any:
    """A long time trace, paused at its first checkpoint; ``on_pause(watches)`` runs while
    it is paused (``watches`` counts the interlock's reads during the pause), then resume."""
    runner = session.runner
    watches = {"n": 0}
    real_watch = runner.watch_paused

    def watch_paused(control: Any) -> None:
        watches["n"] += 1
        real_watch(control)

    runner.watch_paused = watch_paused
    tagger, reads = setup.tagger, {"n": 0}
    inner_read = tagger.read

    def read() -> TagChunk:  # pause from the run itself (fast mode would finish first)
        reads["n"] += 1
        if reads["n"] == 2:
            runner.pause()
        return inner_read()

    tagger.read = read
    runner.start(TimeTrace(duration_s=0.2, power_percent=20))
    on_pause(watches)
    runner.resume()
    result = runner.wait(60)
    assert result is not None
    return result


def _wait_for(predicate: Any, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_over_rate_while_paused_with_the_laser_on_trips():
    """A paused run keeps the laser on and reads no tags; the interlock reads them itself
    every 0.1 s: 3.9 Mcps while paused switches the laser off and ends the run
    ``aborted``; the chunk is stored as ``interlock``."""
    published: list[Tagged] = []
    with load_setup(clock_mode="fast") as setup:
        setup.scanner.move_to(*dim_spot(setup))
        injector = Injector(setup, lambda inj: watching["on"])
        watching = {"on": False}
        with Session(setup) as session:
            session.stream.attach("tags", lambda item: published.append(item)
                                  if isinstance(item, Tagged) else None)

            def on_pause(watches: dict) -> None:
                _wait_for(lambda: watches["n"] >= 1)  # blocked in the pause, watching
                watching["on"] = True
                _wait_for(lambda: injector.injected is not None)
                _wait_for(lambda: session.runner.state.value == "idle"
                          or not setup.laser.emission_on)
                assert not setup.laser.emission_on  # off while still paused

            result = _paused_trace(setup, session, on_pause)
            session.stream.flush(10)
        assert not setup.laser.emission_on
    assert result.status == "aborted" and "APD channel 1 at 3.90 Mcps" in result.reason
    assert [i.kind for i in published if i.record is injector.injected] == ["interlock"]


def test_tags_read_while_paused_are_handed_to_the_procedure():
    """No over-rate: the tags the interlock read during the pause reach the time trace
    with its next read, so the stored chunks still tile time without a gap."""
    chunks: list[TagChunk] = []
    with load_setup(clock_mode="fast") as setup:
        setup.scanner.move_to(*dim_spot(setup))
        with Session(setup) as session:
            session.stream.attach("tags", lambda item: chunks.append(item.record)
                                  if isinstance(item, Tagged) and item.kind == "trace"
                                  else None)

            def on_pause(watches: dict) -> None:
                _wait_for(lambda: watches["n"] >= 1)  # blocked in the pause, watching
                for _ in range(3):  # three stretches of 50 ms, each read while paused
                    setup.clock.sleep(0.05)
                    n = watches["n"]
                    _wait_for(lambda n=n: watches["n"] >= n + 2)

            result = _paused_trace(setup, session, on_pause)
            session.stream.flush(10)
    assert result.status == "completed", result.reason
    starts = np.array([c.t_start_ps for c in chunks])
    stops = np.array([c.t_stop_ps for c in chunks])
    assert np.array_equal(starts[1:], stops[:-1])  # tiled
    longest = int(np.argmax(stops - starts))
    assert (stops - starts)[longest] >= 150 * MS  # the pause, in one chunk
    assert np.all(np.diff(chunks[longest].t_ps) >= 0) and len(chunks[longest]) > 0


def test_no_tagger_streams_unread_while_a_survey_takes_its_spectrum(monkeypatch):
    """Tags that no procedure reads are tags the interlock never sees: the tagger that
    refocus started is stopped before the spectrum, and restarted by g²."""
    from micropl.simulators.camera import SimCamera

    with load_setup(clock_mode="fast") as setup:
        x, y = dim_spot(setup)
        streaming_during_exposure: list[bool] = []
        acquire = SimCamera.acquire

        def watched(camera: Any) -> Any:
            if setup.laser.emission_on:
                streaming_during_exposure.append(setup.tagger._stream is not None)
            return acquire(camera)

        monkeypatch.setattr(SimCamera, "acquire", watched)
        survey = Survey.model_validate({
            "targets": [{"qd_id": 0, "x_um": x, "y_um": y}],
            "refocus": {"size_um": 0.6, "step_um": 0.2},
            "spectrum": {"exposure_s": 0.1, "accumulations": 2, "background_frames": 1},
            "g2": {"duration_s": 0.2}, "drift_every_n_qds": 0, "film_reference": False})
        with Session(setup) as session:
            result = session.run(survey)
        assert result.status == "completed", result.reason
        assert streaming_during_exposure, "no laser-on exposure was seen"
        assert not any(streaming_during_exposure)
