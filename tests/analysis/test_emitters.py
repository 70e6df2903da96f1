"""One emitter or several, spectral jitter, and the g²(0) a spot should show.

References independent of the code under test: hand-computed verdicts, spectra and
frame series generated here (Lorentzians integrated over the pixels, Poisson noise),
a Monte Carlo of the jitter error, long simulated HBT tag streams analysed by the
peak-area code, and a one-QD survey on the simulated sample's known pair of emitters.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micropl import cli
from micropl.acquisition import load_setup, run
from micropl.acquisition.procedures import G2, SpectrumAcquisition, Survey
from micropl.acquisition.procedures.survey import Target
from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.acquisition.storage.schema import registered_tables
from micropl.acquisition.summary import session_summary, truth_agreement
from micropl.analysis.emitters import (
    FLAG_MULTIPLE,
    choose_g2,
    excluded_counts,
    exclusion_text,
    expected_pulsed_g2,
    is_single_emitter,
    qd_flags,
    spectral_jitter,
    two_line_test,
)
from micropl.analysis.g2 import cross_correlate, pulsed_g2
from micropl.analysis.spectra import fit_spectra
from micropl.analysis.statistics import survey_statistics
from micropl.records import QDStatus, QDTarget, RunStart, RunStop, Spectrum, Tagged
from micropl.simulators.hbt import DetectorModel, simulate_constant_emitters

HC = 1239.84198
WL = np.linspace(470.0, 560.0, 1600)

INFO_KEYS = ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "g2_0",
             "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "spectral_jitter_mev", "status",
             "flags")
TRUTH_KEYS = ("energy_ev", "fwhm_mev", "g2_0", "g2_0_intrinsic")


# --------------------------------------------------------------------------- the g²(0) rule
@pytest.mark.parametrize(("g2", "err", "single"), [
    (0.56, 0.01, False),    # the spot of the issue: a pair
    (0.20, 0.05, True),     # a clean single QD
    (0.40, 0.05, False),    # 0.40 + 2·0.05 = 0.50 is not below 0.5: the boundary
    (0.399, 0.05, True),    # just inside
    (0.45, 0.0, True),      # an exact value below 0.5
    (0.50, 0.0, False),     # two equal ideal emitters
    (0.05, 0.3, False),     # too uncertain to call single
    (-0.02, 0.01, True),    # a background-corrected value may dip below 0
])
def test_single_emitter_rule_by_hand(g2, err, single):
    assert is_single_emitter(g2, err) is single
    flags = qd_flags(choose_g2(g2, err))
    assert (FLAG_MULTIPLE in flags) is (not single)


@pytest.mark.parametrize(("values", "expected"), [
    ((0.56, 0.01, 0.31, 0.02), ("bgcorr", 0.31)),            # corrected preferred
    ((0.56, 0.01, float("nan"), float("nan")), ("raw", 0.56)),  # old files: raw
    ((0.56, 0.01, 0.31, -1.0), ("raw", 0.56)),               # a bad error is not used
    ((0.56, 0.01, None, None), ("raw", 0.56)),
    ((None, None, None, None), None),
])
def test_choose_g2_prefers_the_background_corrected_value(values, expected):
    choice = choose_g2(*values)
    assert (None if choice is None else (choice.source, choice.value)) == expected


def test_unmeasured_g2_gives_no_flag_and_bad_values_are_refused():
    assert qd_flags(None) == []
    with pytest.raises(ValueError):
        is_single_emitter(float("nan"), 0.01)
    with pytest.raises(ValueError):
        is_single_emitter(0.2, -0.01)


def test_exclusion_counts_and_text():
    flags = [["multiple_emitters"], [], None, ["poor_fit"], ["multiple_emitters", "saturated"]]
    assert excluded_counts(flags) == {"multiple_emitters": 2}
    assert exclusion_text(excluded_counts(flags)) == "2 excluded: multiple emitters"


@given(g2=st.floats(-0.2, 1.5), err=st.floats(0.0, 0.5))
@settings(max_examples=200, deadline=None)
def test_rule_is_the_brute_force_inequality(g2, err):
    assert is_single_emitter(g2, err) == (g2 + 2.0 * err < 0.5)


# --------------------------------------------------------------------------- two lines
def lines_spectrum(rng, lines, background=5.0):
    """Counts per pixel of Lorentzian lines in energy (exact pixel integrals), Poisson."""
    edges = np.concatenate([[WL[0] - 0.5 * (WL[1] - WL[0])], 0.5 * (WL[1:] + WL[:-1]),
                            [WL[-1] + 0.5 * (WL[1] - WL[0])]])
    e = HC / edges
    mean = np.full(WL.size, background)
    for energy_ev, fwhm_mev, area in lines:
        cdf = 0.5 + np.arctan(2 * (e - energy_ev) / (fwhm_mev * 1e-3)) / math.pi
        mean += area * np.abs(np.diff(cdf))
    return rng.poisson(mean).astype(float)


@pytest.mark.parametrize(("lines", "two"), [
    ([(2.41, 70.0, 4e4)], False),                            # one line
    ([(2.38, 60.0, 3e4), (2.50, 70.0, 3e4)], True),          # two resolved lines
    ([(2.38, 60.0, 3e4), (2.50, 70.0, 1e4)], True),          # resolved, unequal
    ([(2.41, 70.0, 3e4), (2.44, 70.0, 3e4)], False),         # 30 meV apart: not resolved
    ([(2.41, 70.0, 4e4), (2.53, 70.0, 60.0)], False),        # a second line in the noise
    ([(2.45, 110.0, 6e4)], False),                           # one broad line
])
def test_two_resolved_lines_against_one(lines, two):
    rng = np.random.default_rng(11)
    test = two_line_test(WL, lines_spectrum(rng, lines), noise_factor=1.0)
    assert test.two_lines is two, test.reason
    if two:  # and the lines found are the ones generated
        assert np.allclose(sorted(test.energies_ev), [lines[0][0], lines[1][0]], atol=0.005)


def test_two_line_chi2_matches_a_brute_force_chi2():
    """The χ² the F-test uses is Σ (data − model)²/variance of the fits themselves."""
    rng = np.random.default_rng(5)
    counts = lines_spectrum(rng, [(2.38, 60.0, 3e4), (2.50, 70.0, 3e4)])
    test = two_line_test(WL, counts, noise_factor=1.0)
    for n_peaks, chi2 in ((1, test.chi2_one), (2, test.chi2_two)):
        fit = fit_spectra(WL, counts, n_peaks=n_peaks, noise_factor=1.0, scale_errors="none",
                          roi_nm=None)
        model = np.asarray(fit.model_counts(WL), float).ravel()
        brute = np.sum((counts - model) ** 2 / np.maximum(model, 1e-9))
        assert chi2 == pytest.approx(brute, rel=0.05)


# --------------------------------------------------------------------------- jitter
def test_jitter_of_a_generated_spectral_series_matches_within_its_error():
    rng = np.random.default_rng(21)
    sigma_mev, n = 4.0, 40
    centres = 2.41 + rng.normal(0.0, sigma_mev * 1e-3, n)
    frames = np.stack([lines_spectrum(rng, [(c, 70.0, 8e3)], background=3.0) for c in centres])
    fits = fit_spectra(WL, frames, noise_factor=1.0)
    j = spectral_jitter(fits.peak_energy_ev, fits.peak_energy_err_ev)
    assert j.n_frames == n
    assert j.fit_noise_mev > 0.3  # the fit noise is real here, and is subtracted
    assert abs(j.jitter_mev - sigma_mev) < 3 * j.jitter_err_mev, j
    assert j.std_mev == pytest.approx(np.std(fits.peak_energy_ev * 1e3, ddof=1))
    assert j.std_err_mev == pytest.approx(j.std_mev / math.sqrt(2 * (n - 1)))


def test_jitter_error_covers_the_truth_about_68_percent_of_the_time():
    """Monte Carlo: Gaussian wandering plus known fit noise; the 1σ interval's coverage."""
    rng = np.random.default_rng(2)
    true_mev, noise_mev, n, trials = 3.0, 1.5, 20, 3000
    wander = rng.normal(0.0, true_mev, (trials, n)) + rng.normal(0.0, noise_mev, (trials, n))
    hits = 0
    for row in wander:
        j = spectral_jitter(2.4 + row * 1e-3, np.full(n, noise_mev * 1e-3))
        hits += abs(j.jitter_mev - true_mev) <= j.jitter_err_mev
    assert 0.60 < hits / trials < 0.78


def test_jitter_without_frames_or_with_pure_fit_noise():
    assert spectral_jitter([2.41]) is None
    j = spectral_jitter([2.41, 2.41, 2.41], [1e-3, 1e-3, 1e-3])
    assert j.jitter_mev == 0.0 and j.jitter_err_mev > 0


# --------------------------------------------------------------------------- g²(0) expected
@pytest.mark.parametrize(("rates", "g2s", "background"), [
    ([3.0e4], [0.2], 3000.0),            # one QD on a strong film background
    ([1.5e4], [0.1], 800.0),             # a dim QD
    ([2.5e4, 1.5e4], [0.1, 0.3], 2500.0),  # two QDs in the spot
])
def test_expected_raw_g2_against_a_long_simulated_g2(rates, g2s, background):
    detectors = DetectorModel()
    t, ch = simulate_constant_emitters(40.0, np.array(rates), np.array(g2s),
                                       np.full(len(rates), 4.0), detectors=detectors,
                                       background_cps_per_apd=background, seed=7)
    tau, counts = cross_correlate(t[ch == 0], t[ch == 1], 256, 560_000)
    result = pulsed_g2(tau, counts, period_ps=100_000.0)
    d = np.array(rates) * 1e-7
    raw, intrinsic = expected_pulsed_g2(
        d, g2s, np.ones((d.size, d.size)),
        background_cps=[background + dark for dark in detectors.dark_cps], period_s=1e-7)
    assert abs(result.g2_0 - raw) < 3 * result.g2_0_err, (result.g2_0, raw)
    assert abs(result.g2_0_bgcorr - intrinsic) < 3 * result.g2_0_bgcorr_err
    assert raw - intrinsic > 2 * result.g2_0_err  # the background shows: a real difference


def test_expected_g2_blinking_and_two_equal_emitters_by_hand():
    # Two equal ideal emitters: 1/2; a second one ON only half the time lowers it.
    assert expected_pulsed_g2([0.01, 0.01], [0, 0], [[1, 1], [1, 1]]) == (0.5, 0.5)
    o = [[1.0, 0.5], [0.5, 0.5]]
    raw, _ = expected_pulsed_g2([0.01, 0.01], [0, 0], o)
    assert raw == pytest.approx(2 * 0.5e-4 / (1e-4 + 0.5e-4 + 2 * 0.5e-4))


# --------------------------------------------------------------------------- pair survey
#: The simulated sample's pair: a QD 0.19 µm from a brighter one (QD 27 of the 30-QD demo),
#: and an isolated QD (QD 2 of the demo).
PAIR_UM, SINGLE_UM = (36.677, 22.396), (9.85, 11.59)


@pytest.fixture(scope="module")
def pair_session(tmp_path_factory):
    path = tmp_path_factory.mktemp("pair") / "pair.h5"
    procedure = Survey(targets=[Target(qd_id=0, x_um=PAIR_UM[0], y_um=PAIR_UM[1]),
                                Target(qd_id=1, x_um=SINGLE_UM[0], y_um=SINGLE_UM[1])],
                       film_reference=False, drift_every_n_qds=0,
                       spectrum=SpectrumAcquisition(exposure_s=1.0, accumulations=3),
                       g2=G2(duration_s=10.0)).resuming(film=None, announce=(0, 1))
    with load_setup(clock_mode="fast") as setup:
        result = run(procedure, setup, out=path)
        sample = setup.world.sample
    assert result.status == "completed", result.reason
    with SessionReader(path) as reader:
        summary = session_summary(reader)
    return path, summary, sample


def test_a_pair_of_emitters_in_one_spot_is_flagged_and_excluded(pair_session, qtbot):
    path, summary, sample = pair_session
    pair, single = summary["qds"]
    # Independent of the flags: the sample has two QDs within the PSF at the pair.
    near = np.hypot(sample.x_um - PAIR_UM[0], sample.y_um - PAIR_UM[1]) < 0.4
    assert np.sum(near & ~sample.is_aggregate) == 2
    assert pair["status"] == "completed" and FLAG_MULTIPLE in pair["flags"]
    assert pair["truth"]["n_emitters"] == 2 and pair["truth"]["g2_0_intrinsic"] > 0.45
    assert single["flags"] == [] and single["truth"]["n_emitters"] == 1
    assert summary["excluded"] == {"multiple_emitters": 1}
    # The statistics leave it out and say so.
    qds = summary["qds"]
    stats = survey_statistics([q["peak_energy_ev"] for q in qds], [q["fwhm_mev"] for q in qds],
                              [q["peak_energy_err_ev"] for q in qds],
                              [q["fwhm_err_mev"] for q in qds], [q["g2_0"] for q in qds],
                              [q["g2_0_err"] for q in qds], flags=[q["flags"] for q in qds])
    assert stats.n_spectra_valid == 1 and stats.g2.n_valid == 1
    assert stats.exclusion_text == "1 excluded: multiple emitters"
    # The report draws it (and its title counts it) ...
    from micropl.acquisition import report

    titles = []
    real_suptitle = report.plt.Figure.suptitle

    def spy(fig, text, **kw):
        titles.append(text)
        return real_suptitle(fig, text, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report.plt.Figure, "suptitle", spy)
        report.write_report(path, path.with_suffix(".png"))
    assert "1 excluded: multiple emitters" in titles[0]
    # ... and so does the GUI's statistics line, from the stored records.
    from micropl.gui.bridge import DisplayBuffer
    from micropl.gui.panels.survey_panel import SurveyPanel

    buffer = DisplayBuffer()
    with SessionReader(path) as reader:
        for table in ("qd_target", "spectrum_fit", "g2_result", "qd_flags", "qd_status"):
            for r in reader.records(table):
                spec = reader.spec(table)
                buffer.handle(r.record if spec.own_ids else
                              Tagged(r.record, r.run_id, r.qd_id, r.kind))
    panel = SurveyPanel()
    qtbot.addWidget(panel)
    panel.update_rows(buffer.take().qd_rows)
    assert "1 excluded: multiple emitters" in panel.summary.text()


def test_info_json_carries_every_key_for_a_simulated_session(pair_session, capsys):
    path, *_ = pair_session
    assert cli.main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for q in info["qds"]:
        assert all(k in q for k in INFO_KEYS), sorted(set(INFO_KEYS) - set(q))
        assert all(q["truth"][k] is not None for k in TRUTH_KEYS)
        assert q["spectral_jitter_mev"] is not None and q["n_frames"] == 3
    with SessionReader(path) as reader:
        truth = reader.truth
    for q in info["qds"]:  # the emitter's batch as the sample labels it
        k = q["truth"]["index"]
        assert q["truth"]["batch"] == str(np.asarray(truth["batch"][k]).astype(str))
        assert q["truth"]["batch"] in ("7nm", "14nm", "aggregate")
        assert q["truth"]["core_shell"] is bool(truth["core_shell"][k])
    assert info["truth_agreement"]["n_single"] == 1


def _old_or_real_session(path, *, simulated: bool, old: bool) -> None:
    """A survey file written without the flag and truth tables (old) or without truth
    (a real setup): two frames and an accumulated spectrum, and a g² result."""
    rng = np.random.default_rng(4)
    tables = [t for t in registered_tables() if t.name not in ("qd_flags", "qd_truth")] \
        if old else None
    truth = {"x_um": np.array([10.0]), "y_um": np.array([10.0]),
             "energy_ev": np.array([2.41]), "fwhm_mev": np.array([70.0]),
             "g2_0": np.array([0.3])} if simulated else None
    t, ch = simulate_constant_emitters(5.0, np.array([3e4, 3e4]), np.array([0.1, 0.1]),
                                       np.full(2, 4.0), background_cps_per_apd=300.0, seed=3)
    tau, counts = cross_correlate(t[ch == 0], t[ch == 1], 256, 560_000)
    g2 = pulsed_g2(tau, counts, period_ps=100_000.0)  # two emitters: ≈ 0.55
    frames = [lines_spectrum(rng, [(2.41 + dE, 70.0, 2e4)]) for dE in (0.0, 0.004)]
    with SessionWriter.create(path, truth=truth, tables=tables) as w:
        w.append(RunStart(0, "survey", "{}", 1_700_000_000.0))
        w.append(QDTarget(0, 0, 10.0, 10.0, 50.0, 20.0))
        for counts in frames:
            w.append(Tagged(fit_spectra(WL, counts, noise_factor=1.0), 0, 0, "frame"))
        total = frames[0] + frames[1]
        w.append(Tagged(Spectrum(WL, total, 1.0, accumulations=2, counts_unit="e",
                                 bias_subtracted=True), 0, 0, "accumulated"))
        w.append(Tagged(fit_spectra(WL, total, noise_factor=1.0), 0, 0, "accumulated"))
        w.append(Tagged(g2, 0, 0, "final"))
        w.append(QDStatus(0, 0, "completed", "", 1_700_000_100.0))
        w.append(RunStop(0, "completed", "", 1_700_000_200.0))


@pytest.mark.parametrize(("simulated", "old"), [(True, True), (False, True), (False, False)])
def test_info_json_keys_for_old_and_real_files(tmp_path, capsys, simulated, old):
    path = tmp_path / "s.h5"
    _old_or_real_session(path, simulated=simulated, old=old)
    assert cli.main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    (q,) = info["qds"]
    assert all(k in q for k in INFO_KEYS)
    assert q["flags"] == [FLAG_MULTIPLE]  # computed by info from the stored g²(0)
    assert q["spectral_jitter_mev"] is not None
    if simulated:  # what it cannot know is null; the static truth is there
        assert q["truth"]["g2_0"] is None and q["truth"]["g2_0_intrinsic"] == 0.3
        assert info["truth_agreement"] is None  # no exposure-averaged truth to compare with
    else:
        assert "truth" not in q and "truth_agreement" not in info


def test_truth_agreement_counts_only_single_qds():
    def qd(flags, e_pull, g2_pull):
        return {"status": "completed", "flags": flags, "peak_energy_ev": 2.4 + e_pull * 1e-4,
                "peak_energy_err_ev": 1e-4, "fwhm_mev": 70.0, "fwhm_err_mev": 1.0,
                "g2_0": 0.3 + g2_pull * 0.01, "g2_0_err": 0.01, "g2_0_bgcorr": 0.28,
                "g2_0_bgcorr_err": 0.01,
                "truth": {"energy_ev": 2.4, "fwhm_mev": 70.0, "g2_0": 0.3,
                          "g2_0_intrinsic": 0.28, "exposure_averaged": True}}

    qds = [qd([], 0.5, 0.0), qd([], 4.0, 3.5), qd(["multiple_emitters"], 50.0, 20.0)]
    a = truth_agreement(qds)
    assert a["n_single"] == 2 and a["excluded"] == {"multiple_emitters": 1}
    assert a["energy"]["fraction"] == 0.5 and a["g2_0"]["within"] == 1
    assert a["fwhm"]["fraction"] == 1.0
