"""The default virtual sample tells the reference paper's story.

The paper (``../shared/seed/paper.txt``, summarised in ``PHYSICS.md``) studied two
batches of CsPbBr3 QDs, 7 nm and 14 nm with ≈15 % size spread, emitting at
≈2.48–2.50 eV and ≈2.40–2.41 eV (514–516 nm). Their single-QD FWHM grows
linearly with energy: ≈70 meV at 2.40 eV, 73 meV for the 14 nm QDs, ≈95–110 meV
at 2.44 eV and ≈130 meV at 2.50 eV (600 meV/eV), with ±15 % QD-to-QD scatter.
Core/shell QDs have a mean FWHM of ≈60–70 meV, and the narrowest of hundreds
reached 35 meV at 2.44 eV.

Every reference here is computed in this file, independently of the simulator:
the paper's numbers, its confinement law, a piecewise-linear trend through its
values, scipy's log-normal and regressions, and a fast survey whose fitted lines
are sorted by the batch of the QD they belong to.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from micropl.acquisition import load_setup, run
from micropl.acquisition.config import load_config
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.acquisition.summary import session_summary
from micropl.analysis.statistics import survey_statistics
from micropl.cli import main
from micropl.errors import ConfigError
from micropl.simulators.sample import VirtualSample, core_shell_fwhm_cdf
from micropl.simulators.settings import BatchSettings, SampleSettings

HC_EV_NM = 1239.84198
#: The paper's linewidths (eV, meV): 70 @ 2.40, 73 @ 2.41 (14 nm), 100 @ 2.44, 130 @ 2.50.
PAPER_POINTS = ((2.40, 70.0), (2.41, 73.0), (2.44, 100.0), (2.50, 130.0))
#: The paper's slope of FWHM against energy, (130 − 70) meV / (2.50 − 2.40) eV.
PAPER_SLOPE = 600.0
#: ±5 meV on each end value of the paper's trend is ±100 meV/eV on the slope.
PAPER_SLOPE_TOL = 100.0
#: The documented core/shell model: median 0.55 × the trend, log-normal, 15 % rms.
CS_RATIO, CS_SIGMA = 0.55, 0.15


def paper_trend_mev(energy_ev):
    """Piecewise-linear FWHM through :data:`PAPER_POINTS`, continued with the end slopes."""
    e = np.asarray(energy_ev, dtype=np.float64)
    knots = np.array([p[0] for p in PAPER_POINTS])
    widths = np.array([p[1] for p in PAPER_POINTS])
    out = np.interp(e, knots, widths)
    lo = (widths[1] - widths[0]) / (knots[1] - knots[0])
    hi = (widths[-1] - widths[-2]) / (knots[-1] - knots[-2])
    out = np.where(e < knots[0], widths[0] + lo * (e - knots[0]), out)
    return np.where(e > knots[-1], widths[-1] + hi * (e - knots[-1]), out)


def paper_film(seed: int, **kw) -> VirtualSample:
    """The default sample (both batches), denser: ≈320 QDs on 40 × 40 µm."""
    kw.setdefault("density_per_um2", 0.2)
    return VirtualSample.from_settings(SampleSettings(seed=seed, aggregates_per_um2=0.0, **kw))


def core_shell_film(seed: int, density_per_um2: float, both: bool = False) -> VirtualSample:
    """A film of core/shell QDs (moist toluene): the 14 nm batch, or both batches mixed."""
    batches = [BatchSettings(label="14nm", edge_nm_mean=14.0, core_shell_fraction=1.0)]
    if both:
        batches = [BatchSettings(label="7nm", fraction=0.5, edge_nm_mean=7.0,
                                 core_shell_fraction=1.0),
                   batches[0].model_copy(update={"fraction": 0.5})]
    return VirtualSample.from_settings(SampleSettings(
        seed=seed, density_per_um2=density_per_um2, aggregates_per_um2=0.0, batches=batches,
        layout="mixed"))


# --------------------------------------------------------------------------- the two batches
def test_default_sample_holds_the_papers_two_core_only_batches():
    for settings in (SampleSettings(), load_config()[0].sample):  # code and simulated.yaml
        batches = {b.name: b for b in settings.film_batches}
        assert set(batches) == {"7nm", "14nm"}
        assert batches["7nm"].edge_nm_mean == 7.0 and batches["14nm"].edge_nm_mean == 14.0
        for b in batches.values():
            assert b.edge_nm_spread == 0.15 and b.fraction == 0.5
            assert b.core_shell_fraction == 0.0  # the paper's Fig. 2b: dry solvents
        assert settings.layout == "side_by_side"


@pytest.mark.parametrize(("label", "energy_range_ev", "fwhm_mean_mev"), [
    ("14nm", (HC_EV_NM / 516.0, HC_EV_NM / 514.0), 73.0),  # 514–516 nm, 73 meV
    ("7nm", (2.48, 2.50), 130.0),                           # ≈130 meV at 2.50 eV
])
def test_each_batch_emits_and_is_as_wide_as_in_the_paper(label, energy_range_ev, fwhm_mean_mev):
    films = [paper_film(seed) for seed in range(4)]
    energy = np.concatenate([f.energy_ev[f.batch == label] for f in films])
    edge = np.concatenate([f.edge_nm[f.batch == label] for f in films])
    fwhm = np.concatenate([f.fwhm_mev[f.batch == label] for f in films])
    n_all = sum(int(np.sum(~f.is_aggregate)) for f in films)
    assert abs(energy.size - n_all / 2) < 4 * math.sqrt(n_all / 4)  # half the QDs
    np.testing.assert_allclose(energy, 2.383 + 5.2 / edge**2, rtol=0, atol=1e-12)
    assert energy_range_ev[0] <= np.median(energy) <= energy_range_ev[1]
    assert 0.13 < np.std(edge) / np.mean(edge) < 0.17  # ≈15 % size spread
    assert abs(np.mean(fwhm) / fwhm_mean_mev - 1) < 0.06
    # ±15 % QD-to-QD scatter around the trend, where the paper gives its values
    inside = (energy >= 2.40) & (energy <= 2.50)
    assert inside.sum() > 200
    ratio = fwhm[inside] / paper_trend_mev(energy[inside])
    assert abs(np.median(ratio) - 1) < 0.04
    assert 0.12 < np.std(np.log(ratio)) < 0.18


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_linewidth_rises_with_energy_at_the_papers_slope(seed):
    film = paper_film(seed)
    fit = stats.linregress(film.energy_ev, film.fwhm_mev)
    assert film.n > 250
    assert abs(fit.slope - PAPER_SLOPE) < PAPER_SLOPE_TOL, (fit.slope, fit.stderr)
    assert fit.slope > 10 * fit.stderr  # the trend is resolved, not "no trend"
    assert fit.rvalue > 0.8


def test_layout_side_by_side_puts_each_batch_in_its_stripe_mixed_mixes_them():
    three = [BatchSettings(label="a", fraction=0.25, edge_nm_mean=7.0),
             BatchSettings(label="b", fraction=0.25, edge_nm_mean=10.0),
             BatchSettings(label="c", fraction=0.5, edge_nm_mean=14.0)]
    side = VirtualSample.from_settings(SampleSettings(seed=3, density_per_um2=1.0,
                                                      batches=three))
    mixed = VirtualSample.from_settings(SampleSettings(seed=3, density_per_um2=1.0,
                                                       batches=three, layout="mixed"))
    qd = ~side.is_aggregate
    for lo, hi, label in ((0, 10, "a"), (10, 20, "b"), (20, 40, "c")):
        here = qd & (side.x_um >= lo) & (side.x_um < hi)
        assert np.all(side.batch[here] == label) and here.sum() > 100
    np.testing.assert_array_equal(side.x_um, mixed.x_um)  # same places, other batches
    for label, share in (("a", 0.25), ("b", 0.25), ("c", 0.5)):
        in_batch = mixed.batch[qd] == label
        n = int(qd.sum())
        assert abs(in_batch.sum() - share * n) < 4 * math.sqrt(n * share * (1 - share))
        left = np.mean(mixed.x_um[qd][in_batch] < 20)
        assert 0.4 < left < 0.6  # spread over the whole area
    assert np.all(side.batch[side.is_aggregate] == "aggregate")


# --------------------------------------------------------------------------- core/shell
def test_core_shell_narrowest_of_a_few_hundred_reaches_35_to_40_mev_near_2p44_ev():
    narrowest, at_ev, means = [], [], []
    for seed in range(100, 130):
        film = core_shell_film(seed, 0.1875)  # ≈300 core/shell QDs of the 14 nm batch
        k = int(np.argmin(film.fwhm_mev))
        narrowest.append(film.fwhm_mev[k])
        at_ev.append(film.energy_ev[k])
        means.append(np.mean(film.fwhm_mev))
        # the shell takes its QD far below a core-only QD at the same energy
        assert np.median(film.fwhm_mev / paper_trend_mev(film.energy_ev)) < 0.6
    narrowest, at_ev = np.array(narrowest), np.array(at_ev)
    in_range = np.mean((narrowest >= 35.0) & (narrowest <= 40.0))
    assert in_range >= 0.6, np.round(narrowest, 1)  # the model: 70 % of the seeds
    assert np.mean(narrowest <= 40.0) >= 0.75       # the model: 83 %
    assert np.all(narrowest >= 33.0)                # never below the floor
    assert np.mean(np.abs(at_ev - 2.44) <= 0.02) >= 0.8, np.round(at_ev, 3)
    assert 60.0 <= np.mean(means) <= 70.0           # the paper: a mean of ≈60–70 meV


def _scipy_cdf(fwhm_mev, energy_ev):
    return stats.lognorm(s=CS_SIGMA, scale=CS_RATIO * paper_trend_mev(energy_ev)).cdf(fwhm_mev)


def test_core_shell_widths_follow_the_documented_distribution():
    films = [core_shell_film(seed, 1.0, both=True) for seed in range(20)]  # ≈32 000 QDs
    energy = np.concatenate([f.energy_ev for f in films])
    fwhm = np.concatenate([f.fwhm_mev for f in films])
    for limit_mev in (35.0, 40.0, 50.0, 70.0):
        expected = float(np.sum(_scipy_cdf(limit_mev, energy)))
        seen = int(np.sum(fwhm <= limit_mev))
        assert abs(seen - expected) < 4 * math.sqrt(expected) + 2, (limit_mev, seen, expected)
    # the whole distribution: the probability transform is uniform
    assert stats.kstest(_scipy_cdf(fwhm, energy), "uniform").pvalue > 1e-3
    # the model's own CDF (what docs and users quote) is the same function
    grid_e = np.linspace(2.39, 2.65, 27)
    for w in (33.0, 35.0, 40.0, 60.0, 100.0):
        np.testing.assert_allclose(core_shell_fwhm_cdf(w, grid_e), _scipy_cdf(w, grid_e),
                                   rtol=1e-9, atol=1e-15)
    assert core_shell_fwhm_cdf(32.9, 2.44) == 0.0
    # at 2.44 eV a core/shell line is ≤ 35 meV with probability ≈1.3e-3 (was 3e-4)
    assert 1.0e-3 < float(core_shell_fwhm_cdf(35.0, 2.44)) < 1.6e-3


# --------------------------------------------------------------------------- truth
def test_truth_keeps_every_key_and_labels_each_emitter_with_its_batch(tmp_path):
    film = VirtualSample.from_settings(SampleSettings(seed=2, aggregates_per_um2=0.01))
    truth = film.truth()
    assert set(truth) >= {"x_um", "y_um", "z_um", "edge_nm", "core_shell", "is_aggregate",
                          "energy_ev", "fwhm_mev", "brightness_cps", "lifetime_ns", "g2_0",
                          "blinks", "batch"}
    assert all(v.shape == (film.n,) for v in truth.values())
    assert set(truth["batch"][~truth["is_aggregate"]]) == {"7nm", "14nm"}
    assert np.all(truth["batch"][truth["is_aggregate"]] == "aggregate")
    truth["batch"][0] = "changed"  # a copy
    assert film.batch[0] != "changed"
    assert VirtualSample.single().truth()["batch"].tolist() == [""]
    # a session file keeps the labels
    path = tmp_path / "s.h5"
    with SessionWriter.create(path, truth=film.truth()):
        pass
    with SessionReader(path) as reader:
        stored = reader.truth
    labels = [b.decode() if isinstance(b, bytes) else str(b) for b in stored["batch"]]
    assert labels == film.batch.tolist()
    np.testing.assert_array_equal(stored["core_shell"], film.core_shell)


# --------------------------------------------------------------------------- settings
def _check_config_line(tmp_path, capsys, text: str) -> str:
    path = tmp_path / "setup.yaml"
    path.write_text(text, encoding="utf-8")
    capsys.readouterr()
    code = main(["check-config", str(path)])
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = captured.err.splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


_TWO = ("sample:\n  batches:\n    - {edge_nm_mean: 7.0, fraction: %s}\n"
        "    - {edge_nm_mean: 14.0, fraction: %s}\n")


@pytest.mark.parametrize(("text", "expected"), [
    (_TWO % (0.5, 0.3), "sample.batches: the fractions add up to 0.5 + 0.3 = 0.8, not 1"),
    (_TWO % (0.7, 0.7), "add up to 0.7 + 0.7 = 1.4, not 1"),
    (_TWO % (0, 1), "fraction"),
    (_TWO % (".nan", 0.5), "fraction"),
    ("sample:\n  batches:\n    - {fraction: 0.5}\n    - {fraction: 0.5}\n",
     "sample.batches: the label '14nm' is used twice"),
    ("sample:\n  batches:\n    - {label: a b}\n",
     "sample.batches[0].label: 'a b' must be 1–32 letters, digits or _.+-"),
    ("sample:\n  batches:\n    - {label: 5}\n", "sample.batches[0].label: expected text"),
    ("sample:\n  batches: []\n", "sample.batches"),
    ("sample:\n  batches:\n" + "    - {fraction: 0.1}\n" * 9, "sample.batches"),
    ("sample:\n  batch: {edge_nm_mean: 7}\n  batches: [{edge_nm_mean: 14}]\n",
     "sample: batch and batches are both given"),
    ("sample:\n  batch: {edge_nm_mean: 7, fraction: 0.5}\n",
     "sample.batch: fraction 0.5: a film of one batch has fraction 1"),
    ("sample:\n  layout: halves\n", "sample.layout"),
    ("sample:\n  batches:\n    - {edge_nm_mean: 7, size: 3}\n", "size"),
])
def test_bad_batch_settings_are_one_line_errors(tmp_path, capsys, text, expected):
    line = _check_config_line(tmp_path, capsys, text)
    assert expected in line, line


def test_a_one_batch_file_still_loads_and_gives_a_film_of_that_batch():
    config, _ = load_config(text="sample:\n  batch: {edge_nm_mean: 7.0, core_shell_fraction: "
                                 "0.5}\n")
    film = VirtualSample.from_settings(config.sample)
    assert set(film.batch[~film.is_aggregate]) == {"7nm"}
    assert 0.3 < np.mean(film.core_shell[~film.is_aggregate]) < 0.7
    with pytest.raises(ConfigError, match="sample.batches"):
        load_config(text="sample:\n  batches:\n    - {label: x, fraction: 0.5}\n")


# --------------------------------------------------------------------------- the demo's view
def test_both_batches_fall_in_the_survey_window_and_on_the_camera():
    survey = Survey()
    with load_setup(clock_mode="fast") as setup:
        film = setup.world.sample
        laser = setup.laser.settings
        p_exc = 1 - math.exp(-laser.power_percent / laser.saturation_power_percent)
        spectrograph = setup.spectrograph
        camera = setup.camera.settings
        axis_nm = spectrograph.axis_nm(camera.sensor_shape[1], camera.pixel_um)
    e_lo, e_hi = HC_EV_NM / axis_nm.max(), HC_EV_NM / axis_nm.min()
    for label in ("7nm", "14nm"):
        mine = film.batch == label
        rate = 2 * film.brightness_cps[mine] * p_exc  # both APDs at the scan power
        assert np.all((rate >= survey.min_rate_cps) & (rate <= survey.max_rate_cps))
        energy, fwhm_ev = film.energy_ev[mine], film.fwhm_mev[mine] / 1e3
        assert e_lo < np.min(energy - 2 * fwhm_ev) and np.max(energy + 2 * fwhm_ev) < e_hi
    both = [film.brightness_cps[film.batch == b] for b in ("7nm", "14nm")]
    assert stats.ks_2samp(*both).pvalue > 1e-3  # one brightness distribution


def test_a_fast_survey_across_the_batches_finds_both_and_resolves_the_slope(tmp_path):
    path = tmp_path / "survey.h5"
    procedure = Survey(
        scan=RasterScan(x_min_um=15.0, x_max_um=25.0, y_min_um=2.0, y_max_um=12.0,
                        step_um=0.2, dwell_s=0.005),
        max_qds=8, spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
        g2=G2(duration_s=2.0), film_accumulations=2, drift_every_n_qds=0)
    with load_setup(clock_mode="fast") as setup:
        result = run(procedure, setup, out=path)
        film = setup.world.sample
    assert result.status == "completed", result.reason
    with SessionReader(path) as reader:
        qds = [q for q in session_summary(reader)["qds"]
               if q["status"] == "completed" and q["truth"] is not None]
    label = np.array([film.batch[q["truth"]["index"]] for q in qds])
    energy = np.array([q["peak_energy_ev"] for q in qds])
    fwhm = np.array([q["fwhm_mev"] for q in qds])
    assert np.sum(label == "7nm") >= 2 and np.sum(label == "14nm") >= 2, label
    # the fitted lines fall into two groups: the 7 nm QDs above, the 14 nm ones below 2.44 eV
    assert np.all(energy[label == "7nm"] > 2.44) and np.all(energy[label == "14nm"] < 2.44)
    assert np.mean(fwhm[label == "7nm"]) > np.mean(fwhm[label == "14nm"]) + 25.0
    statistics = survey_statistics(
        energy, fwhm, np.array([q["peak_energy_err_ev"] for q in qds]),
        np.array([q["fwhm_err_mev"] for q in qds]))
    slope, err = statistics.slope_mev_per_ev, statistics.slope_err_mev_per_ev
    assert slope > 3 * err, (slope, err)
    assert abs(slope - PAPER_SLOPE) < 3 * err, (slope, err)
