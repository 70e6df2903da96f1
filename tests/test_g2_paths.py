"""g²(0) numbers a spectroscopist can trust on every path: API, CLI, live core, procedure.

The histograms here come from a generator written in this file (Poisson counts per bin
of a comb of two-sided exponential peaks on a flat background, integrated over each bin
in closed form), independent of the project's simulator and of its peak model.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats
from test_tags_ptu import encode_hh2, ptu_bytes

from micropl.acquisition import Session, load_setup
from micropl.acquisition.live import LiveAnalysis
from micropl.acquisition.procedures import G2, Survey
from micropl.analysis.g2 import (
    G2Accumulator,
    G2Result,
    poisson_interval,
    poisson_ratio_interval,
    pulsed_g2,
)
from micropl.analysis.tags import read_histogram_file
from micropl.cli import main
from micropl.errors import AnalysisInputError
from micropl.records import G2Histogram

PERIOD = 12_500.0  # ps (80 MHz)
BIN = 250.0
DELAY = 1_300.0  # zero-delay peak position, ps
SIDE = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)

# ---------------------------------------------------------------------------
# Independent generator
# ---------------------------------------------------------------------------


def _edges(n_periods: float = 6.5) -> np.ndarray:
    n = int(round(2 * n_periods * PERIOD / BIN))
    return -n_periods * PERIOD + BIN * np.arange(n + 1)


def expected_counts(edges, *, area, g2, lifetime_ps, bg_per_bin, n_peaks=14):
    """Mean counts per bin: peaks ``exp(-|t|/τ)/(2τ)`` of area ``area`` (``g2·area`` at
    the zero delay) every period, plus ``bg_per_bin``; exact bin integrals."""
    def cdf(x):
        return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0.0) / lifetime_ps),
                        1.0 - 0.5 * np.exp(-np.maximum(x, 0.0) / lifetime_ps))
    mu = np.full(edges.size - 1, float(bg_per_bin))
    for k in range(-n_peaks, n_peaks + 1):
        mu += area * (g2 if k == 0 else 1.0) * np.diff(cdf(edges - DELAY - k * PERIOD))
    return mu


def window_area(edges, mu, centre, fraction):
    """Expected counts in ``centre ± fraction·P/2`` (edge bins in proportion)."""
    lo, hi = centre - 0.5 * fraction * PERIOD, centre + 0.5 * fraction * PERIOD
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    return float(overlap @ mu) / BIN


def raw_truth(edges, mu, fraction):
    """Expected central window area over the expected mean side-window area."""
    side = np.mean([window_area(edges, mu, DELAY + k * PERIOD, fraction) for k in SIDE])
    return window_area(edges, mu, DELAY, fraction) / side


def centres(edges):
    return 0.5 * (edges[1:] + edges[:-1])


def write_histogram(path, tau_ps, counts):
    path.write_text("delay_ps,counts\n" + "\n".join(f"{t:.1f},{int(c)}"
                                                    for t, c in zip(tau_ps, counts)))
    return path


def write_snapshots(path, tau_ps, counts, rng, n_snapshots=3):
    """The sps-quality layout: tab-separated, no header, delay in ns, one column per
    acquisition snapshot (the counts split at random among them)."""
    parts = np.array([rng.multinomial(int(c), [1 / n_snapshots] * n_snapshots)
                      for c in counts])
    path.write_text("\n".join("\t".join([f"{t / 1e3:.3f}", *map(str, row)])
                               for t, row in zip(tau_ps, parts)))
    return path


def cli_json(capsys, *args):
    code = main(["analyze", "g2", *map(str, args), "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


# ---------------------------------------------------------------------------
# Identical channels
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_ptu(tmp_path_factory):
    rng = np.random.default_rng(5)
    t = np.sort(rng.integers(0, 10**10, 4000))
    events = [(int(x), "photon", 1 + i % 2) for i, x in enumerate(t)]
    path = tmp_path_factory.mktemp("ptu") / "two.ptu"
    path.write_bytes(ptu_bytes(encode_hh2(events), resolution_s=1e-12, sync_rate=10_000_000))
    return path


@pytest.mark.parametrize("channels", [("1", "1"), ("2", "2")])
def test_identical_channels_refused_by_the_cli(small_ptu, capsys, channels):
    code = main(["analyze", "g2", str(small_ptu), "--channels", *channels])
    out = capsys.readouterr()
    assert code == 2 and out.out == ""
    assert out.err.count("\n") == 1 and f"--channels {channels[0]} {channels[1]}" in out.err
    assert "different" in out.err and "Traceback" not in out.err


def test_identical_channels_refused_by_the_correlator_and_the_live_core():
    with pytest.raises(AnalysisInputError, match="different"):
        G2Accumulator(64, 100_000, channel_a=3, channel_b=3)
    with pytest.raises(AnalysisInputError, match="different"):
        LiveAnalysis(lambda item: None, channels=(1, 1))
    assert G2Accumulator(64, 100_000, channel_a=2, channel_b=1).channel_a == 2


# ---------------------------------------------------------------------------
# Window fraction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.16, 0.3, 0.6, 0.9])
def test_narrow_window_keeps_a_valid_background_corrected_value(fraction):
    rng = np.random.default_rng(int(fraction * 100))
    edges = _edges()
    mu = expected_counts(edges, area=4000, g2=0.2, lifetime_ps=800, bg_per_bin=3.0)
    counts = rng.poisson(mu)
    full = pulsed_g2(centres(edges), counts, period_ps=PERIOD)
    narrow = pulsed_g2(centres(edges), counts, period_ps=PERIOD, window_fraction=fraction)
    assert narrow.window_fraction == fraction
    assert np.isfinite(narrow.g2_0_bgcorr) and np.isfinite(narrow.g2_0_bgcorr_err)
    # raw ratios differ (less background in a narrow window); both corrected values
    # estimate the intrinsic 0.2
    assert narrow.g2_0 < full.g2_0
    assert abs(narrow.g2_0 - raw_truth(edges, mu, fraction)) < 3 * narrow.g2_0_err
    for r in (full, narrow):
        assert abs(r.g2_0_bgcorr - 0.2) < 3 * r.g2_0_bgcorr_err
    diff = abs(narrow.g2_0_bgcorr - full.g2_0_bgcorr)
    assert diff < 2 * max(narrow.g2_0_bgcorr_err, full.g2_0_bgcorr_err)


def test_window_fraction_out_of_range_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    edges = _edges()
    f = write_histogram(tmp_path / "h.csv", centres(edges), rng.poisson(expected_counts(
        edges, area=500, g2=0.2, lifetime_ps=800, bg_per_bin=1.0)))
    for bad in ("0", "1.5", "-0.2", "0.01"):
        code = main(["analyze", "g2", str(f), "--window-fraction", bad])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "window fraction" in err.replace("-", " ")
    with pytest.raises(ValueError):
        G2(window_fraction=0)
    assert Survey(g2=G2(window_fraction=0.16)).g2.window_fraction == 0.16


# ---------------------------------------------------------------------------
# Pulls: API and CLI (given and detected period), raw and background-corrected
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pull_sample(tmp_path_factory):
    """120 histograms with known truth, as arrays and as files ``analyze g2`` reads (a
    CSV in ps with a header, and the tab-separated multi-snapshot layout in ns)."""
    rng = np.random.default_rng(2024)
    folder = tmp_path_factory.mktemp("pulls")
    edges = _edges()
    tau = centres(edges)
    cases = []
    for i in range(120):
        g2 = float(rng.uniform(0.05, 1.0))
        fraction = (1.0, 0.16)[i % 2]
        mu = expected_counts(edges, area=float(rng.uniform(800, 3000)), g2=g2,
                             lifetime_ps=float(rng.uniform(400, 1500)),
                             bg_per_bin=float(rng.uniform(0.2, 2.0)))
        counts = rng.poisson(mu)
        if i % 4 < 2:
            path = write_histogram(folder / f"h{i}.csv", tau, counts)
        else:
            path = write_snapshots(folder / f"h{i}.tsv", tau, counts, rng)
        cases.append(dict(g2=g2, fraction=fraction, raw=raw_truth(edges, mu, fraction),
                          counts=counts, file=path))
    return tau, cases


def _pull_stats(pulls):
    pulls = np.asarray(pulls)
    return float(pulls.mean()), float(pulls.std(ddof=1))


def test_pulls_api_and_cli_with_given_period(pull_sample, capsys):
    tau, cases = pull_sample
    raw, bg = [], []
    for case in cases:
        r = pulsed_g2(tau, case["counts"], rep_rate_hz=1e12 / PERIOD,
                      window_fraction=case["fraction"])
        res = cli_json(capsys, case["file"], "--rep-rate", 1e12 / PERIOD,
                       "--window-fraction", case["fraction"])
        # the CLI gives exactly the API's numbers on the same data
        for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err"):
            assert res[key] == pytest.approx(getattr(r, key), rel=1e-12), key
        assert res["g2_0_ci68"] == pytest.approx(list(r.g2_0_ci68), rel=1e-12)
        assert res["window_fraction"] == case["fraction"]
        raw.append((res["g2_0"] - case["raw"]) / res["g2_0_err"])
        bg.append((res["g2_0_bgcorr"] - case["g2"]) / res["g2_0_bgcorr_err"])
    for pulls in (raw, bg):
        mean, std = _pull_stats(pulls)
        assert 0.8 <= std <= 1.2 and abs(mean) < 0.3, (mean, std)


def test_pulls_with_detected_period(pull_sample, capsys):
    """No rate given: the period and zero delay come from the data, without a bias."""
    tau, cases = pull_sample
    raw, bg = [], []
    for case in cases[::2]:  # the full windows
        res = cli_json(capsys, case["file"])
        assert res["period_source"] == "detected"
        assert res["period_ps"] == pytest.approx(PERIOD, rel=2e-3)
        raw.append((res["g2_0"] - case["raw"]) / res["g2_0_err"])
        bg.append((res["g2_0_bgcorr"] - case["g2"]) / res["g2_0_bgcorr_err"])
    for pulls in (raw, bg):
        mean, std = _pull_stats(pulls)
        assert 0.75 <= std <= 1.25 and abs(mean) < 0.35, (mean, std)


def test_uncorrelated_light_gives_one_with_detected_and_given_period():
    """g²(0) = 1 (no antibunching): detection of the period must not bias it."""
    rng = np.random.default_rng(77)
    edges = _edges()
    tau = centres(edges)
    given, detected = [], []
    for _ in range(40):
        mu = expected_counts(edges, area=2000, g2=1.0, lifetime_ps=700, bg_per_bin=0.5)
        counts = rng.poisson(mu)
        for out, kw in ((given, {"period_ps": PERIOD}), (detected, {})):
            r = pulsed_g2(tau, counts, **kw)
            out.append((r.g2_0_bgcorr - 1.0) / r.g2_0_bgcorr_err)
    for pulls in (given, detected):
        assert abs(np.mean(pulls)) < 0.5, np.mean(pulls)


@pytest.mark.parametrize("seed", range(12))
def test_period_detected_on_a_sparse_wide_histogram(seed):
    """About 0.6 counts per bin over ±600 ns (the PTU default window without a sync
    rate): the autocorrelation's first noisy bump used to give a period 4 % short."""
    rng = np.random.default_rng(100 + seed)
    bin_ps = 64.0
    edges = -600_000 + bin_ps * np.arange(int(1_200_000 / bin_ps) + 1)
    mu = expected_counts(edges, area=120.0, g2=1.0, lifetime_ps=800.0, bg_per_bin=0.0,
                         n_peaks=50)
    counts = rng.poisson(mu)
    r = pulsed_g2(centres(edges), counts, background_correction=False)
    assert r.period_source == "detected"
    assert r.period_ps == pytest.approx(PERIOD, rel=5e-4)
    assert abs(r.delay_ps - DELAY) < 300


# ---------------------------------------------------------------------------
# Low counts: the 68 % interval covers the truth 68 % of the time
# ---------------------------------------------------------------------------


def _low_count_histogram(rng, edges, bg_max):
    mu_central = float(rng.uniform(1.0, 20.0))
    g2 = float(rng.uniform(0.05, 0.5))
    mu = expected_counts(edges, area=mu_central / g2, g2=g2, lifetime_ps=600.0,
                         bg_per_bin=float(rng.uniform(0.0, bg_max)))
    return g2, mu, rng.poisson(mu)


def test_raw_interval_coverage_at_low_counts():
    """2000 histograms with 1-20 expected central counts: the 68 % interval covers the
    truth 68 % of the time, as often when the count fluctuated low as when it was high
    (the error from the observed count covers 61 % and 77 % there)."""
    rng = np.random.default_rng(1)
    edges = _edges()
    tau = centres(edges)
    rows = []
    for _ in range(2000):
        _g2, mu, counts = _low_count_histogram(rng, edges, 0.05)
        truth = raw_truth(edges, mu, 1.0)
        r = pulsed_g2(tau, counts, period_ps=PERIOD, zero_delay_ps=DELAY,
                      background_correction=False)
        lo, hi = r.g2_0_ci68
        assert lo <= r.g2_0 <= hi
        old_err = r.g2_0 * math.sqrt(1 / max(r.central_counts, 1) + 1 / r.side_counts.sum())
        low = r.central_counts < window_area(edges, mu, DELAY, 1.0)
        rows.append((lo <= truth <= hi, abs(r.g2_0 - truth) <= old_err, low))
    hits, old_hits, low = np.array(rows).T.astype(bool)
    assert 0.65 <= hits.mean() <= 0.71, hits.mean()
    for part in (low, ~low):
        assert 0.64 <= hits[part].mean() <= 0.74, hits[part].mean()
    assert old_hits[low].mean() < 0.64 and old_hits[~low].mean() > 0.73


def test_background_corrected_interval_coverage_at_low_counts():
    rng = np.random.default_rng(9)
    edges = _edges()
    tau = centres(edges)
    hits = []
    for _ in range(600):
        g2, _mu, counts = _low_count_histogram(rng, edges, 0.05)
        r = pulsed_g2(tau, counts, period_ps=PERIOD, zero_delay_ps=DELAY)
        lo, hi = r.g2_0_bgcorr_ci68
        hits.append(lo <= g2 <= hi)
    assert 0.63 <= np.mean(hits) <= 0.73, np.mean(hits)


def _hand_histogram(central: int, side: int, bg_per_bin: float = 0.0):
    """Exact counts: one bin per peak holds the peak, every bin ``bg_per_bin``."""
    edges = _edges()
    tau = centres(edges)
    counts = np.full(tau.size, bg_per_bin)
    for k in range(-6, 7):
        i = int(np.argmin(np.abs(tau - DELAY - k * PERIOD)))
        counts[i] += central if k == 0 else side
    return tau, counts


def test_five_central_counts_where_fourteen_were_expected():
    tau, counts = _hand_histogram(central=5, side=1000)
    truth = 14 / 1000
    r = pulsed_g2(tau, counts, period_ps=PERIOD, zero_delay_ps=DELAY)
    assert r.g2_0 == pytest.approx(0.005)
    lo, hi = r.g2_0_ci68
    assert lo < r.g2_0 < hi and hi - r.g2_0 > r.g2_0 - lo  # longer on the high side
    assert r.g2_0_err == pytest.approx(0.5 * (hi - lo))
    # The observed count is 2.5σ low (exact Poisson tail P(C <= 5 | 14) = 0.6 %): the
    # interval at that level reaches the truth; the old √C error put it at 4σ.
    z_exact = -stats.norm.ppf(stats.poisson.cdf(5, 14))
    lo_z, hi_z = poisson_ratio_interval(5, 10 * 1000, z=z_exact + 0.15)
    assert lo_z * 10 <= truth <= hi_z * 10
    assert (truth - r.g2_0) / (0.005 * math.sqrt(1 / 5 + 1 / 10_000)) > z_exact + 1.3
    # the same interval on the background-corrected value (no background here)
    assert not r.g2_0_bgcorr_clipped
    assert r.g2_0_bgcorr_ci68[1] > r.g2_0_bgcorr > r.g2_0_bgcorr_ci68[0] >= 0


def test_zero_central_counts_give_an_interval_from_zero():
    tau, counts = _hand_histogram(central=0, side=400)
    r = pulsed_g2(tau, counts, period_ps=PERIOD, zero_delay_ps=DELAY)
    assert r.g2_0 == 0.0
    lo, hi = r.g2_0_ci68
    assert lo == 0.0 and hi == pytest.approx(poisson_ratio_interval(0, 4000)[1] * 10)
    assert 0.5 / 400 < hi < 1.5 / 400  # about one count's worth
    assert r.g2_0_err == pytest.approx(hi / 2) and r.g2_0_err > 0
    assert lo <= 0.5 / 400 <= hi  # half a count expected: covered


def test_background_corrected_value_clipped_at_zero_is_flagged(tmp_path, capsys):
    # 1 background count per bin everywhere, central window emptied below it
    tau, counts = _hand_histogram(central=0, side=3000, bg_per_bin=1.0)
    window = np.abs(tau - DELAY) < 0.5 * PERIOD
    counts[window] = 0.0
    r = pulsed_g2(tau, counts, period_ps=PERIOD, zero_delay_ps=DELAY)
    assert r.g2_0_bgcorr_clipped and r.g2_0_bgcorr == 0.0
    lo, hi = r.g2_0_bgcorr_ci68
    assert lo == 0.0 and hi >= 0.0 and r.g2_0_bgcorr_err > 0
    res = cli_json(capsys, write_histogram(tmp_path / "c.csv", tau, counts),
                   "--rep-rate", 1e12 / PERIOD, "--zero-delay-ps", DELAY)
    assert res["g2_0_bgcorr_clipped"] is True and res["g2_0_bgcorr"] == 0.0
    tau, counts = _hand_histogram(central=300, side=3000, bg_per_bin=1.0)
    assert not pulsed_g2(tau, counts, period_ps=PERIOD).g2_0_bgcorr_clipped


@pytest.mark.parametrize("count", [0, 1, 3, 7, 15])
def test_poisson_interval_matches_brute_force_score_set(count):
    mus = np.linspace(1e-6, 60, 600_001)
    inside = mus[(count - mus) ** 2 / mus <= 1.0]
    lo, hi = poisson_interval(count)
    assert lo == pytest.approx(inside.min() if count else 0.0, abs=2e-4)
    assert hi == pytest.approx(inside.max(), abs=2e-4)


# ---------------------------------------------------------------------------
# Real data: the authors' least-squares values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, ref, ref_err", [
    ("g2_pulsed80MHz_10uW_12000cps.tsv", 0.512, 0.030),
    ("g2_pulsed80MHz_30uW_7000cps.tsv", 0.676, 0.040),
])
def test_real_data_background_corrected_matches_the_authors(shared_data, capsys, name, ref,
                                                            ref_err):
    path = shared_data / "sps-quality" / name
    h = read_histogram_file(path)
    r = pulsed_g2(h.tau_ps, h.counts)
    assert abs(r.g2_0_bgcorr - ref) < ref_err, (r.g2_0_bgcorr, r.g2_0_bgcorr_err)
    assert r.g2_0_bgcorr_ci68[0] < ref < r.g2_0_bgcorr_ci68[1]
    assert r.g2_0 > ref + 2 * r.g2_0_err  # the raw ratio includes the background
    res = cli_json(capsys, path)
    assert res["g2_0_bgcorr"] == pytest.approx(r.g2_0_bgcorr, rel=1e-12)
    # a narrow window (as FitMyData's 0.16) estimates the same value
    narrow = pulsed_g2(h.tau_ps, h.counts, window_fraction=0.16)
    assert abs(narrow.g2_0_bgcorr - ref) < ref_err + narrow.g2_0_bgcorr_err


# ---------------------------------------------------------------------------
# Same numbers on every path: procedure, stored result, API, CLI, replay
# ---------------------------------------------------------------------------


def test_procedure_live_storage_api_and_cli_agree(tmp_path, capsys):
    from micropl.acquisition.storage import SessionReader

    path = tmp_path / "g2.h5"
    with load_setup(clock_mode="fast") as setup, Session(setup, path) as session:
        setup.scanner.move_to(7.9, 10.4)
        run = session.run(G2(duration_s=1.0, window_fraction=0.4))
        assert run.ok, run.reason
        session.stream.flush(30)
        result = run.value
        hist = session.live.latest(run.run_id, -1, G2Histogram, "final")
        rate = setup.laser.rep_rate_hz
        n_side = session.live.settings.n_side
    assert isinstance(result, G2Result) and result.window_fraction == 0.4
    api = pulsed_g2(hist.tau_ps, hist.counts, rep_rate_hz=rate, n_side=n_side,
                    window_fraction=0.4)
    res = cli_json(capsys, write_histogram(tmp_path / "h.csv", hist.tau_ps, hist.counts),
                   "--rep-rate", rate, "--n-side", n_side, "--window-fraction", 0.4,
                   "--delay-unit", "ps")
    with SessionReader(path) as reader:
        stored = [s.record for s in reader.records("g2_result") if s.kind == "final"]
    assert len(stored) == 1
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_ci68",
                "g2_0_bgcorr_ci68", "g2_0_bgcorr_clipped", "window_fraction"):
        value = getattr(result, key)
        assert getattr(api, key) == pytest.approx(value, rel=1e-12), key
        assert getattr(stored[0], key) == pytest.approx(value, rel=1e-12), key
        expected = list(value) if isinstance(value, tuple) else value
        assert res[key] == pytest.approx(expected, rel=1e-9), key
    assert np.isfinite(result.g2_0_bgcorr)
    # Replay of the recording re-derives the final g² with the window the run used.
    replayed = tmp_path / "replayed.h5"
    assert main(["replay", str(path), "--out", str(replayed), "--json"]) == 0
    capsys.readouterr()
    with SessionReader(replayed) as reader:
        again = [s.record for s in reader.records("g2_result") if s.kind == "final"]
    assert len(again) == 1
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "window_fraction"):
        assert getattr(again[0], key) == pytest.approx(getattr(result, key), rel=1e-12), key


def _chunks(t1, t2, n_parts=2):
    """Two detectors' tags as the tagger delivers them: merged, in ``n_parts`` chunks."""
    from micropl.records import TagChunk

    t_ps = np.concatenate([t1, t2])
    order = np.argsort(t_ps, kind="stable")
    channel = np.concatenate([np.ones(t1.size), np.full(t2.size, 2)]).astype(np.uint8)[order]
    t_ps = t_ps[order]
    cut = np.linspace(0, t_ps.size, n_parts + 1).astype(int)
    bounds = [0, *(int(t_ps[c - 1]) for c in cut[1:-1]), int(t_ps[-1]) + 1]
    return [TagChunk(t_ps=t_ps[cut[i]:cut[i + 1]], channel=channel[cut[i]:cut[i + 1]],
                     t_start_ps=bounds[i], t_stop_ps=bounds[i + 1]) for i in range(n_parts)]


def _measure(settings, t1, t2, window_fraction):
    """The G2 procedure's own analysis of two detectors' tags: the precision check
    after the last chunk and the final outcome."""
    from micropl.acquisition.results import G2Measurement

    measurement = G2Measurement(settings, 1e7, (1, 2), window_fraction)
    for chunk in _chunks(t1, t2):
        measurement.add(chunk)
    return measurement.g2(), measurement.finish()


def test_pulls_through_the_procedure_measurement():
    """The G2 procedure's final result (its own G2Measurement): pulls on photon-level
    simulations (no background, so raw and corrected both estimate g²(0) = 0.2 for
    every window)."""
    from test_g2_pulsed import simulate_hbt_tags

    from micropl.acquisition.results import AnalysisSettings

    rng = np.random.default_rng(41)
    settings = AnalysisSettings(g2_bin_ps=500)
    raw, bg = [], []
    for run_id in range(60):
        t1, t2 = simulate_hbt_tags(rng, g2_0=0.2, lifetime_ps=3_000, n_pulses=2_000_000,
                                   click_prob=6e-3)
        _check, outcome = _measure(settings, t1, t2, (1.0, 0.3)[run_id % 2])
        final = outcome.result
        raw.append((final.g2_0 - 0.2) / final.g2_0_err)
        bg.append((final.g2_0_bgcorr - 0.2) / final.g2_0_bgcorr_err)
    for pulls in (raw, bg):
        mean, std = _pull_stats(pulls)
        assert 0.75 <= std <= 1.25 and abs(mean) < 0.35, (mean, std)


def test_live_preview_precision_check_and_final_give_the_api_numbers():
    """The live core's preview (``live``), the procedure's precision check and its
    ``final`` result are the API's numbers on the same histogram."""
    from test_g2_pulsed import simulate_hbt_tags

    from micropl.acquisition.live import G2Done, G2Start
    from micropl.acquisition.results import AnalysisSettings
    from micropl.records import Tagged

    rng = np.random.default_rng(31)
    t1, t2 = simulate_hbt_tags(rng, g2_0=0.2, lifetime_ps=3_000, n_pulses=3_000_000,
                               click_prob=6e-3, dark_hz=20_000.0)
    published = []
    live = LiveAnalysis(published.append, rep_rate_hz=1e7, channels=(1, 2))
    live.handle([Tagged(G2Start(window_fraction=0.3), run_id=1, qd_id=-1, kind="g2_start")])
    for chunk in _chunks(t1, t2):
        live.handle([Tagged(chunk, run_id=1, qd_id=-1, kind="g2")])
    preview = live.preview_g2(1, -1)
    live.handle([Tagged(G2Done(integration_s=0.3), run_id=1, qd_id=-1, kind="g2")])
    assert live.preview_g2(1, -1) is None  # the preview ended with the measurement
    assert not [i for i in published if i.kind != "live"]  # previews only, never a result
    check, outcome = _measure(AnalysisSettings(), t1, t2, 0.3)
    final, hist = outcome.result, outcome.histogram
    api = pulsed_g2(hist.tau_ps, hist.counts, rep_rate_hz=1e7, window_fraction=0.3)
    assert final.window_fraction == check.window_fraction == preview.window_fraction == 0.3
    for key in ("g2_0", "g2_0_err", "g2_0_ci68"):
        assert getattr(check, key) == pytest.approx(getattr(api, key), rel=1e-12)
        assert getattr(preview, key) == pytest.approx(getattr(api, key), rel=1e-12)
    for key in ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_ci68",
                "g2_0_bgcorr_ci68"):
        assert getattr(final, key) == pytest.approx(getattr(api, key), rel=1e-12)
    assert abs(final.g2_0_bgcorr - 0.2) < 3 * final.g2_0_bgcorr_err
    previews = [item.record for item in published
                if isinstance(item.record, G2Result) and item.kind == "live"]
    assert previews and all(p.window_fraction == 0.3 for p in previews)


def test_human_output_gives_the_interval_and_the_window(tmp_path, capsys):
    rng = np.random.default_rng(3)
    edges = _edges()
    f = write_histogram(tmp_path / "h.csv", centres(edges), rng.poisson(expected_counts(
        edges, area=400, g2=0.1, lifetime_ps=800, bg_per_bin=0.5)))
    assert main(["analyze", "g2", str(f), "--window-fraction", "0.16"]) == 0
    out = capsys.readouterr().out
    assert "68% interval" in out and "window: 0.16 of the period" in out
