"""Procedures own their results, through a small typed RunContext; emit never waits on storage.

* The context's surface is the documented one, and no procedure (nor replay) reaches
  past it (an AST scan of their ``ctx.<name>`` uses).
* A g² stage emits its final histogram, g²(0) and peak-train fit exactly once each,
  with the run and QD, equal to the analysis API on the stored histogram; a spectrum
  stage one fit per frame and one for the sum. They do so without the live core.
* The precision stop (``target_g2_err``) is where an independent correlation of the
  stored tags says the target was reached.
* A stalled storage writer does not hold the procedure; over its memory budget the
  run fails and every record emitted is still stored; a writer thread that dies fails
  the run at its end instead of a silent success.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from micropl.acquisition import Session, load_setup
from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures import G2, SpectrumAcquisition, Survey
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.replay import Replay, open_replay, replay_source_of
from micropl.acquisition.results import AnalysisSettings
from micropl.acquisition.runner import RunState
from micropl.acquisition.storage import SessionReader
from micropl.analysis.g2 import (
    G2Result,
    PeakTrainFit,
    cross_correlate,
    fit_peak_train,
    pulsed_g2,
    pulsed_window_ps,
)
from micropl.analysis.spectra import SpectrumFit, fit_spectra
from micropl.errors import AnalysisInputError, InstrumentError
from micropl.records import G2Histogram, Spectrum, TagChunk, Tagged

REPO = Path(__file__).resolve().parents[2]
#: The documented surface of RunContext (context.py's table).
SURFACE = {"setup", "emit", "checkpoint", "sleep", "progress", "log", "run_id", "qd_id",
           "scoped", "guard", "clock", "analysis"}
QD_UM = (7.9, 10.4)  # a bright single QD of the simulated sample


def _deadline_wait(predicate, timeout_s: float = 120.0) -> bool:
    event = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return True
        event.wait(0.01)
    return predicate()


# ------------------------------------------------------------------ the surface
def test_run_context_surface_is_the_documented_one_with_docstrings():
    public = {name for name in dir(RunContext) if not name.startswith("_")}
    instance_attributes = {"setup", "run_id", "log"}
    assert public | instance_attributes == SURFACE
    assert not {"live", "sync", "tags"} & (public | instance_attributes)
    for name in public:
        doc = getattr(RunContext, name).__doc__ or ""
        assert doc.strip(), name


def _ctx_uses(path: Path) -> set[str]:
    """Attribute names read on any name called ``ctx``/``qctx``/``self._ctx`` in a module."""
    uses = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute):
            continue
        base = node.value
        if isinstance(base, ast.Name) and base.id in ("ctx", "qctx"):
            uses.add(node.attr)
        elif isinstance(base, ast.Attribute) and base.attr == "_ctx":
            uses.add(node.attr)
    return uses


@pytest.mark.parametrize("module", sorted(
    [p.name for p in (REPO / "acquisition" / "procedures").glob("*.py")] + ["../replay.py"]))
def test_procedures_use_only_the_context_surface(module):
    path = REPO / "acquisition" / "procedures" / module
    uses = _ctx_uses(path)
    assert uses <= SURFACE, f"{module} uses ctx.{sorted(uses - SURFACE)}"


# ------------------------------------------------------------------ procedures own results
class _Collect:
    def __init__(self) -> None:
        self.items: list[Tagged] = []

    def __call__(self, item: Any) -> None:
        if isinstance(item, Tagged):
            self.items.append(item)

    def of(self, record_type: type, kind: str | None = None) -> list[Tagged]:
        return [i for i in self.items if isinstance(i.record, record_type)
                and (kind is None or i.kind == kind)]


@pytest.fixture
def setup():
    with load_setup(clock_mode="fast") as s:
        yield s


def _without_live_core(session: Session) -> None:
    """Detach the live preview core: procedures must not need it."""
    for worker in list(session.stream._workers):
        if worker.subscription.name == "live-analysis":
            session.stream.unsubscribe(worker.subscription)


class _Scoped(ProcedureBase):
    """Runs a nested procedure in a context scoped to a QD."""

    name: ClassVar[str] = "scoped"
    qd_id: int = 4
    inner: Any = None

    def run(self, ctx: RunContext) -> Any:
        return self.inner.run(ctx.scoped(qd_id=self.qd_id))


def test_g2_stage_emits_each_final_record_once_with_run_and_qd_without_the_live_core(setup):
    seen = _Collect()
    with Session(setup) as session:
        _without_live_core(session)
        session.stream.attach("collect", seen)  # lossless
        setup.scanner.move_to(*QD_UM)
        result = session.run(_Scoped(inner=G2(duration_s=2.0, window_fraction=0.5)))
        session.stream.flush(30)
    assert result.ok, result.reason
    finals = {t: seen.of(t, "final") for t in (G2Histogram, G2Result, PeakTrainFit)}
    for record_type, items in finals.items():
        assert len(items) == 1, record_type.__name__
        assert (items[0].run_id, items[0].qd_id) == (result.run_id, 4)
    assert not seen.of(G2Result, "live")  # no live core: no previews, the result still there
    hist = finals[G2Histogram][0].record
    ref = pulsed_g2(hist.tau_ps, hist.counts, rep_rate_hz=setup.laser.rep_rate_hz,
                    window_fraction=0.5, background_correction=True)
    assert result.value == finals[G2Result][0].record
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
        assert getattr(result.value, key) == pytest.approx(getattr(ref, key), rel=1e-12), key
    peak = fit_peak_train(hist.tau_ps, hist.counts, period_ps=ref.period_ps,
                          delay_ps=ref.delay_ps)
    assert finals[PeakTrainFit][0].record.lifetime_ns == pytest.approx(peak.lifetime_ns,
                                                                       rel=1e-12)
    # The histogram is the correlation of the stored g² tags (an independent call).
    chunks = [i.record for i in seen.of(TagChunk, "g2")]
    t = np.concatenate([c.t_ps for c in chunks])
    ch = np.concatenate([c.channel for c in chunks])
    window_ps = pulsed_window_ps(setup.laser.rep_rate_hz, 5, 128)
    _, counts = cross_correlate(t[ch == 1], t[ch == 2], 128, window_ps)
    np.testing.assert_array_equal(counts, hist.counts)
    assert hist.integration_s == pytest.approx(sum(c.duration_s for c in chunks))


def test_spectrum_stage_fits_every_frame_and_the_sum_once(setup):
    seen = _Collect()
    with Session(setup) as session:
        _without_live_core(session)
        session.stream.attach("collect", seen)
        setup.scanner.move_to(*QD_UM)
        result = session.run(SpectrumAcquisition(exposure_s=0.5, accumulations=3))
        session.stream.flush(30)
    assert result.ok, result.reason
    for kind, n in (("frame", 3), ("accumulated", 1)):
        spectra = [i.record for i in seen.of(Spectrum, kind)]
        fits = [i.record for i in seen.of(SpectrumFit, kind)]
        assert len(spectra) == len(fits) == n, kind
        for spectrum, fit in zip(spectra, fits):
            ref = fit_spectra(spectrum.wavelength_nm, spectrum.counts, noise_factor=2.0
                              if spectrum.em_gain > 1 else 1.0,
                              read_noise=float(spectrum.read_noise))
            assert float(fit.peak_energy_ev) == pytest.approx(float(ref.peak_energy_ev),
                                                              rel=1e-12)
            assert float(fit.fwhm_err_mev) == pytest.approx(float(ref.fwhm_err_mev), rel=1e-9)
    assert not seen.of(SpectrumFit, "film_frame")


def test_precision_stop_is_where_an_independent_correlation_reaches_the_target(setup):
    target, update_s, min_s = 0.12, 0.5, 1.0
    seen = _Collect()
    with Session(setup) as session:
        session.stream.attach("collect", seen)
        setup.scanner.move_to(*QD_UM)
        result = session.run(G2(duration_s=60.0, target_g2_err=target, min_duration_s=min_s,
                                update_interval_s=update_s))
        session.stream.flush(30)
    assert result.ok, result.reason
    chunks = [i.record for i in seen.of(TagChunk, "g2")]
    elapsed = np.cumsum([c.duration_s for c in chunks])
    assert elapsed[-1] < 60.0 - 1e-6, "never reached the target"
    assert result.value.g2_0_err > 0
    # Brute force: at every check point, the raw g²(0) of all the tags so far.
    rate = setup.laser.rep_rate_hz
    window_ps = pulsed_window_ps(rate, 5, 128)
    next_check, stop_at = update_s, None
    for n, t_s in enumerate(elapsed, start=1):
        if t_s < next_check:
            continue
        next_check += update_s
        if t_s < min_s:
            continue
        t = np.concatenate([c.t_ps for c in chunks[:n]])
        ch = np.concatenate([c.channel for c in chunks[:n]])
        tau, counts = cross_correlate(t[ch == 1], t[ch == 2], 128, window_ps)
        try:
            err = pulsed_g2(tau, counts, rep_rate_hz=rate).g2_0_err
        except AnalysisInputError:
            continue
        if err <= target:
            stop_at = n
            break
    assert stop_at == len(chunks)


# ------------------------------------------------------------------ storage never waited on
class _Then(ProcedureBase):
    """Runs ``inner``, then signals that the procedure itself finished."""

    name: ClassVar[str] = "then"
    done: ClassVar[threading.Event] = threading.Event()
    inner: Any = None

    def run(self, ctx: RunContext) -> Any:
        value = self.inner.run(ctx)
        self.done.set()
        return value


def _stall_writer(session: Session, release: threading.Event, stored: list[int]) -> None:
    real = session.writer.append_many

    def stalled(items):
        release.wait(300)
        stored.append(len(items))
        return real(items)

    session.writer.append_many = stalled


def test_a_stalled_writer_does_not_hold_the_procedure(setup, tmp_path):
    release, done, stored = threading.Event(), threading.Event(), []
    with Session(setup, tmp_path / "s.h5") as session:
        _stall_writer(session, release, stored)
        setup.scanner.move_to(*QD_UM)
        _Then.done = done
        session.runner.start(_Then(inner=G2(duration_s=1.0, target_g2_err=0.5,
                                            min_duration_s=0.2, update_interval_s=0.1)))
        try:
            assert done.wait(120), "the procedure waited for the writer"
            assert session.runner.busy  # the run's end waits for storage, the procedure did not
        finally:
            release.set()
        result = session.runner.wait(120)
    assert result is not None and result.ok, result
    with SessionReader(tmp_path / "s.h5") as reader:
        assert len(reader.records(G2Result, kind="final")) == 1


def test_over_the_storage_budget_the_run_fails_and_nothing_is_lost(setup, tmp_path):
    release, stored = threading.Event(), []
    emitted = _Collect()
    with Session(setup, tmp_path / "s.h5", storage_queue_mb=0.2) as session:
        _stall_writer(session, release, stored)
        session.stream.attach("collect", emitted)
        setup.scanner.move_to(*QD_UM)
        session.runner.start(G2(duration_s=30.0))
        try:
            assert _deadline_wait(lambda: session.runner.state is RunState.STOPPING)
        finally:
            release.set()
        result = session.runner.wait(120)
        session.stream.flush(60)
    assert result.status == "failed" and "storage cannot keep up" in result.reason
    assert setup.laser.emission_on is False
    chunks = emitted.of(TagChunk, "g2")
    assert 0 < len(chunks) < 1500  # stopped long before the 30 s of data
    with SessionReader(tmp_path / "s.h5") as reader:  # stored gathered: compare the tags
        stored_t = [r.record.t_ps for r in reader.records("tag_chunk", kind="g2")]
        emitted_t = np.concatenate([c.record.t_ps for c in chunks])
        assert np.array_equal(np.concatenate(stored_t), emitted_t)
        assert reader.runs()[-1].status == "failed"


def test_a_writer_thread_that_dies_fails_the_run(setup, tmp_path):
    with Session(setup, tmp_path / "s.h5") as session:
        def dies(items):
            raise SystemExit("writer thread ended")

        session.writer.append_many = dies
        result = session.run(G2(duration_s=0.5))
    assert result.status == "failed"
    assert "storage" in result.reason and "writer thread ended" in result.reason
    assert setup.laser.emission_on is False


# ------------------------------------------------------------------ a retried g² stage
class _FlakyG2(G2):
    """A g² whose first attempt loses the tagger after ``fail_after`` reads."""

    name: ClassVar[str] = "g2"
    calls: ClassVar[list[int]] = []

    def run(self, ctx: RunContext) -> G2Result:
        self.calls.append(1)
        if len(self.calls) > 1:
            return super().run(ctx)
        raw = ctx.setup.tagger.instrument
        real, reads = raw.read, []

        def read(*args, **kwargs):
            reads.append(1)
            if len(reads) > 20:
                raise InstrumentError(f"tagger '{raw.name}': injected disconnect")
            return real(*args, **kwargs)

        raw.read = read
        try:
            return super().run(ctx)
        finally:
            del raw.read


def test_a_retried_g2_stage_histograms_only_its_own_attempt_and_replays_the_same(setup,
                                                                                  tmp_path):
    from micropl.acquisition.procedures.survey import Target

    _FlakyG2.calls = []
    path = tmp_path / "s.h5"
    survey = Survey(targets=[Target(qd_id=0, x_um=QD_UM[0], y_um=QD_UM[1])],
                    film_reference=False, drift_every_n_qds=0, retry_delay_s=0.0,
                    refocus={"size_um": 0.8, "step_um": 0.2},
                    spectrum=SpectrumAcquisition(exposure_s=0.2, accumulations=1,
                                                 background_frames=1),
                    g2=_FlakyG2(duration_s=1.0))
    with Session(setup, path) as session:
        result = session.run(survey)
    assert result.ok and result.value["n_completed"] == 1, result
    assert len(_FlakyG2.calls) == 2
    with SessionReader(path) as reader:
        stored = sorted(reader.records("tag_chunk", kind="g2")
                        + reader.records("refocus"), key=lambda r: r.seq)
        final = reader.records(G2Histogram, kind="final")
        g2 = reader.records(G2Result, kind="final")
    assert len(final) == len(g2) == 1
    last_refocus = max(i for i, r in enumerate(stored) if r.kind == "refocus")
    second = [r.record for r in stored[last_refocus + 1:]]
    first = [r for r in stored[:last_refocus] if r.kind == "g2"]
    assert first and second and all(isinstance(c, TagChunk) for c in second)
    t = np.concatenate([c.t_ps for c in second])
    ch = np.concatenate([c.channel for c in second])
    _, counts = cross_correlate(t[ch == 1], t[ch == 2], 128,
                                pulsed_window_ps(setup.laser.rep_rate_hz, 5, 128))
    np.testing.assert_array_equal(final[0].record.counts, counts)
    # Replay re-derives the same result from the stored raw records.
    replayed = tmp_path / "replayed.h5"
    with open_replay(path) as replay_setup, Session(replay_setup, replayed) as session:
        source = replay_source_of(replay_setup)
        again = session.run(Replay.for_source(source, AnalysisSettings()))
    assert again.ok, again.reason
    with SessionReader(replayed) as reader:
        redone = reader.records(G2Result, kind="final")
    assert len(redone) == 1
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
        assert getattr(redone[0].record, key) == getattr(g2[0].record, key), key


def test_a_run_whose_records_are_not_stored_by_its_end_is_not_completed(setup, tmp_path):
    """The writer is stalled past the end-of-run wait: the run fails naming storage
    (not a silent success); once the writer goes on, every record is still written."""
    release, stored = threading.Event(), []
    with Session(setup, tmp_path / "s.h5") as session:
        _stall_writer(session, release, stored)
        session.runner.STORE_TIMEOUT_S = 0.2
        setup.scanner.move_to(*QD_UM)
        try:
            result = session.run(G2(duration_s=0.3))
        finally:
            release.set()
    assert result.status == "failed"
    assert result.reason.startswith("storage did not handle the run's records within 0.2 s")
    with SessionReader(tmp_path / "s.h5") as reader:
        assert reader.runs()[-1].status == "failed"
        assert len(reader.records(G2Result, kind="final")) == 1
