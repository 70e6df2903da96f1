"""The runner on the simulated setup: pause, resume, abort, failures and interlocks.

After every ending — completed, aborted, failed, tripped — the laser is off.
"""

from typing import Any, ClassVar

import numpy as np
import pytest

from micropl.acquisition import Session, load_setup
from micropl.acquisition.procedures import G2, RasterScan
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.errors import LimitError
from micropl.records import RunStart, RunStop


@pytest.fixture
def setup():
    with load_setup(clock_mode="fast") as s:
        yield s


def _bright_qd(setup) -> tuple[float, float]:
    sample = setup.world.sample
    ok = ~sample.is_aggregate & (sample.x_um > 2) & (sample.y_um > 2)
    k = int(np.flatnonzero(ok)[np.argmax(sample.brightness_cps[ok])])
    return float(sample.x_um[k]), float(sample.y_um[k])


class _Wait(ProcedureBase):
    """Laser on, then checkpointed sleeps until aborted (or n steps)."""

    name: ClassVar[str] = "wait"
    steps: int = 10_000

    def run(self, ctx: Any) -> int:
        ctx.setup.laser.emission_on = True
        for i in range(self.steps):
            ctx.sleep(0.01)
            ctx.progress("waiting", i, self.steps)
        return self.steps


class _Broken(ProcedureBase):
    name: ClassVar[str] = "broken"

    def run(self, ctx: Any) -> None:
        ctx.setup.laser.emission_on = True
        ctx.setup.scanner.move_to(1e6, 0.0)  # refused by the driver


def test_completed_run_publishes_start_and_stop_documents_and_leaves_laser_off(setup):
    docs = []
    with Session(setup) as session:
        session.stream.attach("docs", lambda r: docs.append(r)
                              if isinstance(r, RunStart | RunStop) else None)
        result = session.run(_Wait(steps=5))
        session.stream.flush(10)
    assert result.status == "completed" and result.value == 5
    assert [type(d).__name__ for d in docs] == ["RunStart", "RunStop"]
    assert docs[1].status == "completed"
    assert not setup.laser.emission_on


def test_pause_resume_abort_from_a_script(setup):
    setup.clock.mode = "real"  # wall-time sleeps so the run is still going when we act
    with Session(setup) as session:
        runner = session.runner
        runner.start(_Wait())
        assert runner.wait(0.1) is None
        runner.pause()
        assert runner.state.value == "paused"
        t_paused = setup.clock.now()
        assert runner.wait(0.3) is None  # still paused, not finished
        assert setup.laser.emission_on
        runner.resume()
        assert runner.state.value == "running"
        runner.abort("enough")
        result = runner.wait(5)
    assert result is not None and result.status == "aborted" and result.reason == "enough"
    assert result.ended_s >= t_paused
    assert not setup.laser.emission_on


def test_instrument_error_fails_the_run_with_the_drivers_reason_and_laser_off(setup):
    with Session(setup) as session:
        result = session.run(_Broken())
    assert result.status == "failed"
    assert "refused" in result.reason and "scanner" in result.reason
    assert not setup.laser.emission_on
    with pytest.raises(LimitError):
        setup.scanner.move_to(1e6, 0.0)


def test_apd_over_rate_switches_the_laser_off_within_50_ms_of_data_time(setup):
    x, y = _bright_qd(setup)
    setup.scanner.move_to(x, y)
    laser_off_at, chunks = [], []
    laser = setup.laser
    original_off = laser.off

    def off() -> None:
        laser_off_at.append(setup.clock.now())
        original_off()

    laser.off = off  # record the clock time of the interlock
    with Session(setup) as session:
        session.runner.apd_max_rate_cps = 2e4  # the QD gives more than this
        session.stream.attach("tags", lambda item: chunks.append(item.record)
                              if getattr(item, "kind", "") == "g2" else None)
        result = session.run(G2(duration_s=5, power_percent=100))
        session.stream.flush(10)
    assert result.status == "aborted"
    assert "exceeds the protection threshold" in result.reason
    assert not setup.laser.emission_on
    # Onset: the first 10 ms of data in which one APD counted above the threshold,
    # found here independently from the recorded tags (the tagger's time base is the
    # clock, in ps). The QD blinks, so this need not be the first chunk.
    t_ps = np.concatenate([c.t_ps for c in chunks])
    channel = np.concatenate([c.channel for c in chunks])
    t0_ps = chunks[0].t_start_ps
    onset_s = np.inf
    for ch in (1, 2):
        bins = np.bincount((t_ps[channel == ch] - t0_ps) // 10_000_000_000)
        over = np.flatnonzero(bins > 2e4 * 0.010)
        if over.size:
            onset_s = min(onset_s, (t0_ps + over[0] * 10_000_000_000) * 1e-12)
    assert np.isfinite(onset_s)
    assert chunks[-1].t_stop_ps * 1e-12 == pytest.approx(laser_off_at[0], abs=1e-6)
    assert 0 < laser_off_at[0] - onset_s <= 0.050


def test_map_from_raster_scan_has_a_spot_where_a_qd_is(setup):
    x, y = _bright_qd(setup)
    scan = RasterScan(x_min_um=x - 1.5, x_max_um=x + 1.5, y_min_um=y - 1.5, y_max_um=y + 1.5,
                      step_um=0.1, dwell_s=0.005)
    with Session(setup) as session:
        result = session.run(scan)
    image = result.value
    row, col = np.unravel_index(np.argmax(image.counts), image.counts.shape)
    assert abs(image.x_um[col] - x) <= 0.15 and abs(image.y_um[row] - y) <= 0.15
    assert image.counts.max() > 10 * np.median(image.counts)
