"""Time-resolved PL: on the simulated setup in fast mode the fitted lifetime agrees with
the simulator's truth within errors and with an independent scipy fit of the same stored
histogram; the histogram and fit are stored and read back; a tagger without a laser sync
is refused before the laser goes on."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from record_compare import same
from scipy import optimize, stats

from micropl.acquisition import load_setup
from micropl.acquisition.procedures import PROCEDURES, TimeResolvedPL
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.procedures.preflight import ParameterError
from micropl.acquisition.procedures.trpl import (
    NO_TRPL,
    add_trpl_lifetimes,
    pulses_per_sync,
    trpl_lifetimes,
)
from micropl.acquisition.session import run
from micropl.acquisition.storage import SessionReader
from micropl.acquisition.summary import session_summary
from micropl.analysis.lifetime import LifetimeFit, decay_histogram
from micropl.errors import AnalysisInputError
from micropl.records import DecayHistogram, QDTarget, TagChunk
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.tagger import SimTimeTagger

pytestmark = pytest.mark.timeout(300)

SYNC = 3
WITH_SYNC = {"tagger": {"sync_channel": SYNC}}


def trpl_run(path, procedure: ProcedureBase, *, lifetime_ns: float = 5.0, seed: int = 1,
             overrides: dict | None = None):
    """Run ``procedure`` on one QD under the focus; returns the result, the truth and the
    tagger's snapshot. ``seed`` is the setup's sample seed (it seeds the photon stream)."""
    overrides = {**(overrides or WITH_SYNC), "sample": {"seed": seed}}
    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        setup.world.sample = VirtualSample.single(x_um=20.0, y_um=20.0, g2_0=0.05,
                                                  lifetime_ns=lifetime_ns, seed=seed)
        result = run(procedure, setup, out=path)
        return result, setup.world.sample.truth(), setup.tagger.snapshot()


def scipy_lifetime(t_ps, counts, period_ps):
    """Independent Poisson ML fit: scipy's exponentially modified Gaussian (``exponnorm``)
    for the pulse and the two before it, plus a constant, minimised with Nelder–Mead."""
    t = np.asarray(t_ps, float)
    n = np.asarray(counts, float)
    bin_ps = float(t[1] - t[0])

    def mu(theta):
        area, tau, t0, sigma, bg = theta
        pdf = sum(stats.exponnorm.pdf(t + k * period_ps, tau / sigma, loc=t0, scale=sigma)
                  for k in (0, 1, 2))
        return area * bin_ps * pdf + bg

    def nll(theta):
        if theta[1] <= 0 or theta[3] <= 0 or theta[0] <= 0 or theta[4] < 0:
            return np.inf
        m = np.maximum(mu(theta), 1e-300)
        return float(np.sum(m - n * np.log(m)))

    peak = int(np.argmax(n))
    x0 = [n.sum(), 4_000.0, t[peak] - 200.0, 200.0, max(np.median(n), 0.1)]
    res = optimize.minimize(nll, x0, method="Nelder-Mead",
                            options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 20000,
                                     "maxfev": 20000})
    assert res.success, res.message
    return res.x[1] * 1e-3  # ns


@pytest.mark.parametrize(("lifetime_ns", "seed"), [(5.0, 1), (2.5, 2), (8.0, 3)])
def test_lifetime_is_the_simulators_and_scipys(tmp_path, lifetime_ns, seed):
    path = tmp_path / "trpl.h5"
    result, truth, tagger = trpl_run(path, TimeResolvedPL(duration_s=2.0, power_percent=30),
                                     lifetime_ns=lifetime_ns, seed=seed)
    assert result.status == "completed", result.reason
    fit = result.value
    assert isinstance(fit, LifetimeFit) and fit.success, fit.reason
    true_tau = float(truth["lifetime_ns"][0])
    assert true_tau == lifetime_ns
    assert abs(fit.tau_ns[0] - true_tau) < 3 * fit.tau_err_ns[0]
    assert 0 < fit.tau_err_ns[0] < 0.02 * true_tau
    # the IRF is the APD jitter: 350 ps FWHM
    assert fit.irf_sigma_ps == pytest.approx(350.0 / 2.3548, rel=0.1)
    with SessionReader(path) as reader:
        (hist,) = reader.records(DecayHistogram)
        (stored,) = reader.records(LifetimeFit)
        chunks = [s.record for s in reader.records(TagChunk) if s.kind == "trpl"]
    assert same(stored.record, fit) and stored.kind == "lifetime_fit"
    h = hist.record
    assert h.pulses_per_sync == tagger["sync_divider"] == 16
    assert (h.channel, h.sync_channel, h.period_ps) == (1, SYNC, 100_000.0)
    # the histogram is what the stored raw tags give
    t = np.concatenate([c.t_ps for c in chunks])
    ch = np.concatenate([c.channel for c in chunks])
    _, again = decay_histogram(t[ch == SYNC], t[ch == 1], h.bin_ps, h.period_ps,
                               pulses_per_sync=16)
    np.testing.assert_array_equal(again, h.counts)
    assert h.counts.sum() > 20_000
    # an independent fit of the stored histogram finds the same lifetime
    tau_scipy = scipy_lifetime(h.t_ps, h.counts, h.period_ps)
    assert abs(tau_scipy - fit.tau_ns[0]) < 0.1 * fit.tau_err_ns[0]


def test_trpl_is_registered_with_its_form_fields():
    assert PROCEDURES["trpl"] is TimeResolvedPL
    fields = TimeResolvedPL.model_fields
    assert {"duration_s", "power_percent", "bin_ps", "apd", "sync_channel"} <= set(fields)


# --------------------------------------------------------------------------- pre-flight
@pytest.fixture
def switched_on(monkeypatch):
    """Every emission-on and tagger start of a simulated instrument."""
    seen: list[str] = []
    emission = SimLaser.emission_on

    def set_emission(self, value):
        if value:
            seen.append("laser on")
        emission.fset(self, value)

    monkeypatch.setattr(SimLaser, "emission_on", property(emission.fget, set_emission))
    start = SimTimeTagger.start

    def started(self, channels):
        seen.append("tagger start")
        return start(self, channels)

    monkeypatch.setattr(SimTimeTagger, "start", started)
    return seen


@pytest.mark.parametrize(("overrides", "procedure", "parts"), [
    ({}, TimeResolvedPL(duration_s=1.0),
     ["trpl: refused: tagger 'tagger' has no laser sync input",
      "set tagger.sync_channel in the setup file"]),
    (WITH_SYNC, TimeResolvedPL(duration_s=1.0, sync_channel=2),
     ["trpl: sync_channel = 2 refused: it is an APD input"]),
    (WITH_SYNC, TimeResolvedPL(duration_s=1.0, sync_channel=5),
     ["trpl: sync_channel = (5,) refused: tagger 'tagger'", "available"]),
    (WITH_SYNC, TimeResolvedPL(duration_s=1.0, bin_ps=2.5),
     ["trpl: bin_ps = 2.5 ps refused", "whole multiple of the resolution 1 ps"]),
    ({"tagger": {"sync_channel": SYNC}, "laser": {"max_power_percent": 50.0}},
     TimeResolvedPL(duration_s=1.0, power_percent=60),
     ["trpl: power_percent = 60 %", "0–50 %"]),
], ids=["no-sync-input", "sync-is-an-apd", "sync-input-missing", "bin-not-multiple",
        "power-above-limit"])
def test_refused_before_the_laser_goes_on(tmp_path, switched_on, overrides, procedure, parts):
    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        with pytest.raises(ParameterError) as info:
            run(procedure, setup)
        assert not setup.laser.emission_on
    message = str(info.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    assert switched_on == []


@pytest.mark.parametrize(("sync", "reason"), [
    (np.array([0]), "1 laser sync tag"),
    (np.arange(0, 10_000_000, 150_000), "1.500 laser periods"),
])
def test_sync_that_does_not_match_the_laser_is_refused(sync, reason):
    with pytest.raises(AnalysisInputError, match=reason):
        pulses_per_sync(sync, 100_000.0)


def test_pulses_per_sync_reads_the_divider_through_jitter_and_gaps():
    rng = np.random.default_rng(0)
    sync = np.arange(0, 400) * 1_600_000 + rng.integers(-30, 30, 400)
    sync = np.sort(np.delete(sync, [20, 21, 90]))
    assert pulses_per_sync(sync, 100_000.0) == 16


# --------------------------------------------------------------------------- summary hook
class _TrplOnQD(ProcedureBase):
    """A QD target, then a TRPL on it (as a survey step would)."""

    name: ClassVar[str] = "trpl_on_qd"

    def run(self, ctx: Any) -> LifetimeFit:
        ctx.emit(QDTarget(run_id=ctx.run_id, qd_id=4, x_um=20.0, y_um=20.0, amplitude=1.0,
                          snr=10.0))
        return TimeResolvedPL(duration_s=1.0, power_percent=30).run(ctx.scoped(qd_id=4))


def test_session_summary_hook_gives_the_trpl_lifetime_per_qd(tmp_path):
    path = tmp_path / "qd.h5"
    result, truth, _ = trpl_run(path, _TrplOnQD())
    assert result.status == "completed", result.reason
    with SessionReader(path) as reader:
        assert [q.qd_id for q in reader.qds()] == [4]
        found = trpl_lifetimes(reader)
        qds = [{"id": 4, "lifetime_ns": None}, {"id": 9}]
        add_trpl_lifetimes(reader, qds)
    assert found[4]["trpl_lifetime_ns"] == pytest.approx(float(result.value.tau_ns[0]))
    assert found[4]["trpl_lifetime_ns_err"] == pytest.approx(float(result.value.tau_err_ns[0]))
    assert abs(qds[0]["trpl_lifetime_ns"] - truth["lifetime_ns"][0]) \
        < 3 * qds[0]["trpl_lifetime_ns_err"]
    assert {k: qds[1][k] for k in NO_TRPL} == NO_TRPL  # no TRPL on that QD: null fields
    with SessionReader(path) as reader:
        summary = session_summary(reader)
    (qd,) = summary["qds"]
    assert qd["trpl_lifetime_ns"] == pytest.approx(float(result.value.tau_ns[0]))
