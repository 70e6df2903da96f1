"""Reliability under injected instrument faults (issue 8: fault injection).

Each test runs a small survey on the simulated setup in fast mode with one
fault injected through the setup's ``faults:`` hooks (or, for the live fitter
and the disk, at the failing layer itself) and checks, whatever happened:

* the survey either carries on — bounded retries per QD, a failed QD marked
  ``failed`` with a reason naming the instrument — or stops with status
  ``failed`` and the reason;
* nothing is lost: every record published for storage is in the file, per QD
  and per table, and every QD marked completed has its spectrum fit and g²;
* the laser is off afterwards (the simulated laser's emission state is what the
  virtual sample sees, so this is the physical state, not a cached reading).
"""

from __future__ import annotations

import collections
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import Survey
from micropl.acquisition.session import Session, is_stored
from micropl.acquisition.storage import SessionReader
from micropl.records import QDStatus, TagChunk, Tagged

pytestmark = pytest.mark.timeout(120)

INSTRUMENTS = ("laser", "spectrograph", "camera", "tagger", "scanner")

#: A small survey: 10 × 10 µm map, short exposures and g², no drift maps.
SMALL = {
    "scan": {"x_min_um": 0, "x_max_um": 10, "y_min_um": 0, "y_max_um": 10, "step_um": 0.25,
             "dwell_s": 0.005},
    "max_qds": 3,
    "refocus": {"size_um": 1.2, "step_um": 0.15},
    "spectrum": {"exposure_s": 0.2, "accumulations": 2, "background_frames": 1},
    "g2": {"duration_s": 1.0, "min_duration_s": 0.5},
    "drift_every_n_qds": 0,
}


def single_qd_targets(n: int = 3) -> list[dict[str, Any]]:
    """``n`` isolated, non-aggregate QDs of the seeded sample (its truth), as survey targets."""
    with load_setup(clock_mode="fast") as setup:
        truth = setup.world.sample.truth()
    x, y = truth["x_um"], truth["y_um"]
    distance = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(distance, np.inf)
    ok = (~truth["is_aggregate"]) & (distance.min(axis=1) > 2.0) & (x > 2) & (y > 2) \
        & (x < 38) & (y < 38) & (truth["brightness_cps"] > 2e4)
    index = np.flatnonzero(ok)[:n]
    assert index.size == n
    return [{"qd_id": int(i), "x_um": float(x[k]), "y_um": float(y[k])}
            for i, k in enumerate(index)]


TARGETS = single_qd_targets(4)


def survey(targets: bool = True, **changes: Any) -> Survey:
    """The small survey; with ``targets`` it skips the map and measures known QDs."""
    values = {**SMALL, **changes}
    if targets:
        values["targets"] = TARGETS[: values["max_qds"]]
    return Survey.model_validate(values)


class Outcome:
    """What a run left behind: result, published vs stored counts, QD statuses, laser."""

    def __init__(self, result: Any, published: collections.Counter, path: Path,
                 laser_on: bool, calls: dict[str, int]) -> None:
        self.result = result
        self.published = published
        self.path = path
        self.laser_on = laser_on
        self.calls = calls
        with SessionReader(path) as reader:
            self.stored = collections.Counter()
            for table in reader.tables:
                if table == "raw_tags_stored":  # the store's own summary, never published
                    continue
                for stored in reader.records(table):
                    # tags are stored gathered into whole chunks: count tags, not chunks
                    self.stored[(table, stored.qd_id)] += len(stored.record) \
                        if table == "tag_chunk" else 1
            self.status: dict[int, QDStatus] = {}
            for stored in reader.records("qd_status"):
                assert stored.qd_id not in self.status, f"QD {stored.qd_id}: two statuses"
                self.status[stored.qd_id] = stored.record
            self.runs = reader.runs()
            self.fits = {q: [s.record for s in reader.qd(q).spectrum_fits if s.kind ==
                             "accumulated"] for q in self.status}
            self.g2 = {q: [s.record for s in reader.qd(q).g2_results if s.kind == "final"]
                       for q in self.status}

    def check_nothing_lost(self) -> None:
        """Every published, storable record is in the file (same count per table and QD;
        for tag chunks, the same number of tags)."""
        stored_by_key = {k: v for k, v in self.stored.items() if k[0] not in ("run_stop",)}
        published = {k: v for k, v in self.published.items() if k[0] != "run_stop"}
        assert stored_by_key == published

    def check_completed_intact(self) -> None:
        for qd_id, status in self.status.items():
            if status.status == "completed":
                assert self.fits[qd_id] and all(bool(np.all(f.success)) for f in self.fits[qd_id])
                assert self.g2[qd_id] and np.isfinite(self.g2[qd_id][-1].g2_0)
            else:
                assert status.status == "failed" and status.reason, status

    def check_safe(self) -> None:
        assert self.laser_on is False
        assert self.runs and self.runs[-1].status == self.result.status
        if self.result.status != "completed":
            assert self.result.reason and self.runs[-1].reason == self.result.reason


def table_of(item: Any) -> str:
    from micropl.acquisition.storage.codec import _unwrap

    return _unwrap(item)[1].name


def run_with(procedure: Survey, path: Path, overrides: dict[str, Any] | None = None,
             patch: Any = None) -> Outcome:
    """Run ``procedure`` on the fast simulated setup with ``overrides``; count what is published."""
    published: collections.Counter = collections.Counter()

    def count(item: Any) -> None:
        if is_stored(item):
            qd = item.qd_id if isinstance(item, Tagged) else getattr(item, "qd_id", -1)
            record = item.record if isinstance(item, Tagged) else item
            published[(table_of(item), qd)] += len(record) if isinstance(record, TagChunk) \
                else 1

    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        with Session(setup, path) as session:
            session.stream.attach("count", count)  # lossless, like storage
            if patch is not None:
                patch(session)
            result = session.run(procedure)
        laser_on = bool(setup.laser.emission_on)
        excited = setup.world.excitation() if hasattr(setup.world, "excitation") else None
        calls = {role: inst._faults.calls for role, inst in setup.instruments.items()}
    if excited is not None and hasattr(excited, "rep_rate_hz"):
        assert laser_on or excited.rep_rate_hz == 0
    return Outcome(result, published, path, laser_on, calls)


def attempt_failures(caplog: pytest.LogCaptureFixture) -> dict[int, list[str]]:
    """QD → reasons of its failed attempts, from the survey's warnings."""
    out: dict[int, list[str]] = collections.defaultdict(list)
    for rec in caplog.records:
        m = re.search(r"QD (\d+) attempt (\d+)/(\d+) failed: (.*)", rec.getMessage())
        if m:
            out[int(m.group(1))].append(m.group(4))
    return out


def baseline_calls() -> dict[str, int]:
    """Calls per instrument in a fault-free targeted survey of 3 QDs."""
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        assert session.run(survey()).ok
        return {role: inst._faults.calls for role, inst in setup.instruments.items()}


BASELINE = baseline_calls()


# --------------------------------------------------------------------------- per-call faults
def every_n(role: str, density: str) -> int:
    """Fault period in calls: ``sparse`` ≈ 1.3 QD's worth of calls (retries recover),
    ``dense`` ≈ 0.4 QD's worth (attempts keep failing)."""
    per_qd = BASELINE[role] / 3
    return max(2, int(per_qd * (1.3 if density == "sparse" else 0.4)) + 1)


PERIODIC = [pytest.param(role, kind, density,
                         marks=() if (kind, density) in (("timeout_every_n_calls", "sparse"),
                                                         ("garble_every_n_calls", "dense"))
                         else pytest.mark.slow)
            for role in INSTRUMENTS
            for kind in ("timeout_every_n_calls", "garble_every_n_calls")
            for density in ("sparse", "dense")]


@pytest.mark.parametrize(("role", "kind", "density"), PERIODIC)
def test_periodic_fault_is_retried_and_bounded(role, kind, density, tmp_path, caplog):
    """Every Nth call of one instrument times out or returns garbage.

    Sparse faults: each failed attempt is retried and the QD completes. Dense
    faults: each QD is tried at most ``max_attempts`` (2) times, then marked
    failed with the instrument's error as the reason, and the survey goes on.
    """
    caplog.set_level(logging.WARNING)
    n_every = every_n(role, density)
    out = run_with(survey(), tmp_path / "s.h5", {role: {"faults": {kind: n_every}}})
    assert out.calls[role] >= n_every, "the fault never fired"
    fired = "timed out" if kind.startswith("timeout") else "garbled reply"
    failures = attempt_failures(caplog)
    assert any(fired in r and f"{role} '" in r for reasons in failures.values() for r in reasons)
    assert all(len(reasons) <= 2 for reasons in failures.values())  # max_attempts = 2
    assert out.result.status == "completed", out.result.reason
    assert set(out.status) == {t["qd_id"] for t in TARGETS[:3]}
    for qd_id, status in out.status.items():
        if status.status == "failed":
            assert len(failures[qd_id]) == 2 and f"{role} '" in status.reason
            assert fired in status.reason and status.reason == failures[qd_id][-1]
        elif failures.get(qd_id):
            assert len(failures[qd_id]) == 1  # recovered on the retry
    n_failed = sum(s.status == "failed" for s in out.status.values())
    if density == "sparse":
        assert n_failed == 0
    elif BASELINE[role] / 3 >= 5:  # (the spectrograph is called once per QD: never exhausted)
        assert n_failed >= 1
    out.check_nothing_lost()
    out.check_completed_intact()
    out.check_safe()


# --------------------------------------------------------------------------- disconnects
def call_times() -> dict[str, list[float]]:
    """Clock times of every instrument call in the fault-free targeted survey of 3 QDs."""
    times: dict[str, list[float]] = collections.defaultdict(list)
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        t0 = setup.clock.now()
        for role, inst in setup.instruments.items():
            check = inst._faults.check

            def spy(action, _role=role, _check=check):
                times[_role].append(setup.clock.now() - t0)
                return _check(action)

            inst._faults.check = spy
        assert session.run(survey()).ok
    return dict(times)


CALL_TIMES = call_times()


@pytest.mark.parametrize("role", INSTRUMENTS)
def test_disconnect_then_reconnect(role, tmp_path, caplog):
    """The instrument stops answering for 0.5 s of clock time from the middle of the
    survey: the QDs caught in the outage are retried or marked failed ("not
    responding"), and the survey measures the following QDs once it is back."""
    caplog.set_level(logging.WARNING)
    times = CALL_TIMES[role]
    start_s = times[len(times) // 2] - 1e-6
    out = run_with(survey(max_qds=4), tmp_path / "s.h5",
                   {role: {"faults": {"disconnect_after_s": start_s, "reconnect_after_s": 0.5}}})
    failures = attempt_failures(caplog)
    hit = [q for q, reasons in failures.items()
           if any("not responding (disconnected)" in r and f"{role} '" in r for r in reasons)]
    assert hit, "the outage was not met"
    assert all(len(reasons) <= 2 for reasons in failures.values())
    assert out.result.status == "completed", out.result.reason
    order = [t["qd_id"] for t in TARGETS[:4]]
    after = order[order.index(max(hit)) + 1:]
    assert after and all(out.status[q].status == "completed" for q in after), out.status
    for q in hit:
        assert out.status[q].status == "completed" or \
            "not responding" in out.status[q].reason
    out.check_nothing_lost()
    out.check_completed_intact()
    out.check_safe()


@pytest.mark.parametrize("role", ["spectrograph", "camera", "tagger", "scanner"])
def test_permanent_disconnect_fails_each_qd_with_reason(role, tmp_path, caplog):
    """The instrument never answers again: every later QD gets ``max_attempts`` tries
    and is marked failed with "not responding"; the run ends, the laser is off."""
    caplog.set_level(logging.WARNING)
    start_s = CALL_TIMES[role][len(CALL_TIMES[role]) // 2] - 1e-6
    out = run_with(survey(), tmp_path / "s.h5", {role: {"faults": {"disconnect_after_s": start_s}}})
    failures = attempt_failures(caplog)
    failed = [q for q, s in out.status.items() if s.status == "failed"]
    assert failed and failed == sorted(failed)
    assert failed[-1] == TARGETS[2]["qd_id"]  # the last QD too: it never came back
    for q in failed:
        assert f"{role} '" in out.status[q].reason and "not responding" in out.status[q].reason
        assert len(failures[q]) == 2
    # The run ends; when the cleanup itself could not reach the instrument (the
    # tagger's stop), the run is failed with that reason rather than completed.
    if out.result.status == "failed":
        assert "stop failed" in out.result.reason and f"{role} '" in out.result.reason
    else:
        assert out.result.status == "completed"
    out.check_nothing_lost()
    out.check_completed_intact()
    out.check_safe()


def test_permanent_laser_disconnect_stops_the_survey(tmp_path, caplog):
    """A laser that never answers again cannot be switched off by software. The survey
    stops at once rather than going on: the run ends ``failed`` naming the laser-off
    failure, the QD being measured is failed with that reason, the QDs after it stay
    pending (for ``--resume``), and the cleanup's failure is logged as an error."""
    caplog.set_level(logging.WARNING)
    start_s = CALL_TIMES["laser"][len(CALL_TIMES["laser"]) // 2] - 1e-6
    out = run_with(survey(), tmp_path / "s.h5", {"laser": {"faults": {"disconnect_after_s": start_s}}})
    assert out.result.status == "failed"
    assert "laser off failed" in out.result.reason and "not responding" in out.result.reason
    assert out.runs[-1].status == "failed" and out.runs[-1].reason == out.result.reason
    assert any(r.levelno >= logging.ERROR and "laser off failed" in r.getMessage()
               for r in caplog.records)
    failed = [q for q, st in out.status.items() if st.status == "failed"]
    assert len(failed) == 1 and "laser" in out.status[failed[0]].reason
    assert TARGETS[2]["qd_id"] not in out.status or TARGETS[2]["qd_id"] == failed[0]
    out.check_nothing_lost()
    out.check_completed_intact()


@pytest.mark.parametrize(("role", "fault"), [
    ("scanner", {"timeout_every_n_calls": 300}),
    ("tagger", {"garble_every_n_calls": 500}),
    ("scanner", {"disconnect_after_s": 5.0}),
])
def test_fault_during_the_map_stops_the_survey_failed(role, fault, tmp_path):
    """The map has no per-QD retry: a fault while scanning ends the survey ``failed``
    with the instrument's error as the reason; the map lines already taken are kept."""
    out = run_with(survey(targets=False), tmp_path / "s.h5", {role: {"faults": fault}})
    assert out.result.status == "failed"
    assert f"{role} '" in out.result.reason
    assert not out.status  # no QD was reached
    assert out.stored[("map_line", -1)] > 0
    out.check_nothing_lost()
    out.check_safe()


# --------------------------------------------------------------------------- data faults
def test_dropped_camera_frames(tmp_path):
    """The survey takes single acquisitions (not a frame stream), so it is unaffected by
    stream frame drops; a streaming reader sees every drop as a gap in ``Frame.index``."""
    out = run_with(survey(), tmp_path / "s.h5", {"camera": {"faults": {"drop_frame_every_n": 2}}})
    assert out.result.status == "completed"
    assert all(s.status == "completed" for s in out.status.values())
    out.check_nothing_lost()
    out.check_completed_intact()
    out.check_safe()
    with load_setup(clock_mode="fast",
                    overrides={"camera": {"faults": {"drop_frame_every_n": 3}}}) as setup:
        camera = setup.camera
        camera.exposure_s = 0.1
        camera.em_gain = 1
        camera.start_stream()
        setup.clock.sleep(1.2)
        frames = camera.read_frames()
        camera.stop()
    index = [f.index for f in frames]
    assert index == [k for k in range(len(index) + len(index) // 2 + 1) if (k + 1) % 3][
        :len(index)]


def test_tagger_overflow_is_recorded_not_hidden(tmp_path):
    """Every 3rd tagger read overflows: the APD rate is then unknown, so the interlock
    switches the laser off and the survey ends ``aborted`` naming the overflow and its
    missed events; the chunk that overflowed is stored with ``overflow=True`` and its
    ``missed_events``, and nothing published is lost."""
    path = tmp_path / "s.h5"
    out = run_with(survey(), path, {"tagger": {"faults": {"overflow_every_n_reads": 3}}})
    assert out.result.status == "aborted"
    assert "buffer overflow" in out.result.reason and "missed events" in out.result.reason
    out.check_nothing_lost()
    out.check_completed_intact()
    out.check_safe()
    with SessionReader(path) as reader:
        chunks = [s.record for s in reader.records("tag_chunk")]
    flagged = [c for c in chunks if c.overflow]
    assert len(flagged) == 1 and flagged[0].missed_events > 0


def test_exception_in_live_fitter_fails_that_qd_only(tmp_path, monkeypatch):
    """A bug in the spectrum fitter (RuntimeError) while one QD is measured: that QD is
    failed with the error as its reason, the others complete, and storage keeps every
    raw record of it.

    The fitter is broken from the survey's move onto that QD until its move onto the
    next one; the spectrum procedure fits its own spectra, so exactly that QD's meet it.
    """
    import micropl.acquisition.results as live

    bad = TARGETS[1]
    state = {"broken": False}
    real_fit = live.fit_spectra

    def fit(*args, **kwargs):
        if state["broken"]:
            raise RuntimeError("injected fitter bug")
        return real_fit(*args, **kwargs)

    def patch(session):
        scanner = session.setup.scanner
        move_to = scanner.move_to

        def tracking_move_to(x_um, y_um, *args, **kwargs):
            if any(x_um == t["x_um"] and y_um == t["y_um"] for t in TARGETS):
                state["broken"] = (x_um, y_um) == (bad["x_um"], bad["y_um"])
            return move_to(x_um, y_um, *args, **kwargs)

        scanner.move_to = tracking_move_to

    monkeypatch.setattr(live, "fit_spectra", fit)
    out = run_with(survey(), tmp_path / "s.h5", patch=patch)
    assert out.result.status == "completed"
    assert out.status[bad["qd_id"]].status == "failed"
    assert "RuntimeError: injected fitter bug" in out.status[bad["qd_id"]].reason
    assert all(s.status == "completed" for q, s in out.status.items() if q != bad["qd_id"])
    assert out.stored[("spectrum", bad["qd_id"])] > 0
    assert out.stored[("tag_chunk", bad["qd_id"])] > 0
    assert out.stored[("spectrum_fit", bad["qd_id"])] == 0
    out.check_nothing_lost()
    out.check_safe()
