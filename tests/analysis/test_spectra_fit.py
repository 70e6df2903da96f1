"""fit_spectra: honest errors on EMCCD-like data, agreement with curve_fit and lmfit, models."""

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.special import erf, voigt_profile, wofz

from micropl.analysis.spectra import (
    HC_EV_NM,
    faddeeva,
    fit_spectra,
    line_profile_per_ev,
    pixel_edges_nm,
)
from micropl.errors import AnalysisInputError

WL = np.linspace(470.0, 560.0, 1000)          # ≈0.09 nm/pixel, 1000 pixels
EDGES_EV = HC_EV_NM / pixel_edges_nm(WL)


# -------------------------------------------------------------- independent numpy models
def lorentz_pixels(edges, e0, fwhm, area, bkg):
    cdf = 0.5 + np.arctan(2 * (edges - e0) / fwhm) / np.pi
    return area * np.abs(np.diff(cdf)) + bkg


def gauss_pixels(edges, e0, fwhm, area, bkg):
    s = fwhm / (2 * np.sqrt(2 * np.log(2)))
    cdf = 0.5 * (1 + erf((edges - e0) / (s * np.sqrt(2))))
    return area * np.abs(np.diff(cdf)) + bkg


GL_X = np.array([-np.sqrt(0.6), 0.0, np.sqrt(0.6)])
GL_W = np.array([5 / 9, 8 / 9, 5 / 9])


def voigt_pixels(edges, e0, fl, fg, area, bkg, nodes=(GL_X, GL_W)):
    mid = 0.5 * (edges[1:] + edges[:-1])
    half = 0.5 * np.abs(np.diff(edges))
    s = fg / (2 * np.sqrt(2 * np.log(2)))
    x, w = nodes
    vals = sum(wk * voigt_profile(mid + half * xk - e0, s, fl / 2) for xk, wk in zip(x, w))
    return area * half * vals + bkg


def emccd_counts(rng, clean, read_noise=0.0):
    """Physical EMCCD: Poisson photo-electrons, Gamma EM multiplication (gain-normalised)."""
    n_e = rng.poisson(clean)
    out = rng.gamma(np.maximum(n_e, 1), 1.0) * (n_e > 0)
    return out + rng.normal(0.0, read_noise, clean.shape) if read_noise else out


def truths(rng, n):
    return (rng.uniform(2.40, 2.50, n), rng.uniform(0.035, 0.130, n),
            rng.uniform(2e4, 8e4, n), rng.uniform(5.0, 40.0, n))


# -------------------------------------------------------------- honest errors
def _pulls(fit, e0, fwhm):
    assert fit.success.all(), set(fit.message)
    pe = (fit.peak_energy_ev - e0) / fit.peak_energy_err_ev
    pf = (fit.fwhm_mev - fwhm * 1e3) / fit.fwhm_err_mev
    return pe, pf


def _check(pull):
    assert 0.7 <= pull.std() <= 1.3, pull.std()
    assert abs(pull.mean()) <= 0.5, pull.mean()


def test_honest_errors_gamma_poisson_emccd():
    rng = np.random.default_rng(11)
    n = 60
    e0, fwhm, area, bkg = truths(rng, n)
    clean = np.array([lorentz_pixels(EDGES_EV, *t) for t in zip(e0, fwhm, area, bkg)])
    counts = emccd_counts(rng, clean, read_noise=0.3)
    assert np.var(counts - clean) / clean.mean() == pytest.approx(2.0, rel=0.05)
    fit = fit_spectra(WL, counts, noise_factor=2.0, read_noise=0.3)
    assert fit.peak_energy_ev.shape == (n,)
    pe, pf = _pulls(fit, e0, fwhm)
    _check(pe)
    _check(pf)
    pa = (fit.area - area) / fit.area_err
    pb = (fit.background - bkg) / fit.background_err
    _check(pa)
    _check(pb)
    assert 0.85 < np.median(fit.reduced_chi2) < 1.15


def test_honest_errors_gaussian_noise_var_2x_signal():
    rng = np.random.default_rng(12)
    n = 50
    e0, fwhm, area, bkg = truths(rng, n)
    clean = np.array([lorentz_pixels(EDGES_EV, *t) for t in zip(e0, fwhm, area, bkg)])
    counts = rng.normal(clean, np.sqrt(2 * clean))
    pe, pf = _pulls(fit_spectra(WL, counts), e0, fwhm)
    _check(pe)
    _check(pf)


def test_wrong_noise_model_is_corrected_by_chi2_scaling():
    """Data with var = 2×signal but weights assuming Poisson: scaling by √χ²_red restores pulls."""
    rng = np.random.default_rng(13)
    n = 50
    e0, fwhm, area, bkg = truths(rng, n)
    clean = np.array([lorentz_pixels(EDGES_EV, *t) for t in zip(e0, fwhm, area, bkg)])
    counts = rng.normal(clean, np.sqrt(2 * clean))
    raw = fit_spectra(WL, counts, noise_factor=1.0, scale_errors="none")
    pe_raw, _ = _pulls(raw, e0, fwhm)
    assert pe_raw.std() > 1.25              # underestimated errors are detectable
    assert np.median(raw.reduced_chi2) == pytest.approx(2.0, rel=0.1)
    auto = fit_spectra(WL, counts, noise_factor=None)   # unknown noise: auto-scaled
    assert auto.errors_scaled.all()
    pe, pf = _pulls(auto, e0, fwhm)
    _check(pe)
    _check(pf)


# -------------------------------------------------------------- agreement with peers
def _reference_sigma(model_fn, params):
    m = model_fn(EDGES_EV, *params)
    return np.sqrt(2.0 * np.maximum(m, 0.0) + 0.3**2)


@pytest.mark.parametrize("model,fn", [("lorentzian", lorentz_pixels), ("gaussian", gauss_pixels)])
def test_agrees_with_curve_fit_and_lmfit(model, fn):
    lmfit = pytest.importorskip("lmfit")
    rng = np.random.default_rng(21)
    e0, fwhm, area, bkg = truths(rng, 6)
    for t in zip(e0, fwhm, area, bkg):
        counts = emccd_counts(rng, fn(EDGES_EV, *t), read_noise=0.3)
        fit = fit_spectra(WL, counts, model, noise_factor=2.0, read_noise=0.3, roi_nm=None,
                          scale_errors="none")  # the whole axis, absolute_sigma
        assert fit.success
        mine = np.asarray(fit.params)
        mine_err = np.sqrt(np.diag(fit.covariance))
        # the same weights: the noise model on the fitted model
        sigma = _reference_sigma(fn, mine)
        start = np.array([t[0] + 0.005, t[1] * 1.2, t[2] * 0.8, t[3] + 3])
        popt, pcov = curve_fit(lambda x, *p: fn(x, *p), EDGES_EV, counts, p0=start, sigma=sigma,
                               absolute_sigma=True, xtol=1e-14, ftol=1e-14, gtol=1e-14,
                               maxfev=20000)
        perr = np.sqrt(np.diag(pcov))
        assert np.all(np.abs(popt - mine) < 0.01 * mine_err), (popt - mine) / mine_err
        assert np.all(np.abs(perr - mine_err) < 0.01 * mine_err)

        lm_model = lmfit.Model(lambda x, e0, fwhm, area, bkg: fn(x, e0, fwhm, area, bkg))
        res = lm_model.fit(counts, x=EDGES_EV, e0=start[0], fwhm=start[1], area=start[2],
                           bkg=start[3], weights=1 / sigma, scale_covar=False,
                           fit_kws={"xtol": 1e-14, "ftol": 1e-14, "gtol": 1e-14})
        lv = np.array([res.params[k].value for k in ("e0", "fwhm", "area", "bkg")])
        le = np.array([res.params[k].stderr for k in ("e0", "fwhm", "area", "bkg")])
        assert np.all(np.abs(lv - mine) < 0.01 * mine_err)
        assert np.all(np.abs(le - mine_err) < 0.01 * mine_err)


def test_voigt_agrees_with_curve_fit_on_scipy_voigt_profile():
    rng = np.random.default_rng(31)
    truth = (2.45, 0.040, 0.050, 6e4, 20.0)
    counts = emccd_counts(rng, voigt_pixels(EDGES_EV, *truth))
    fit = fit_spectra(WL, counts, "voigt", noise_factor=2.0, roi_nm=None,
                      scale_errors="none")  # the whole axis, as curve_fit gets it
    assert fit.success, fit.message
    mine = np.asarray(fit.params)
    err = np.sqrt(np.diag(fit.covariance))
    assert np.all(np.abs(mine - truth) < 4 * err)
    sigma = np.sqrt(2 * np.maximum(voigt_pixels(EDGES_EV, *mine), 0) + 1e-3 * 2)
    popt, pcov = curve_fit(lambda x, *p: voigt_pixels(x, *p), EDGES_EV, counts,
                           p0=np.array(truth) * [1, 1.1, 0.9, 1.1, 1], sigma=sigma,
                           absolute_sigma=True, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    assert np.all(np.abs(popt - mine) < 0.01 * err)
    assert np.allclose(np.sqrt(np.diag(pcov)), err, rtol=0.01)
    # reported FWHM is the whole profile's, with a propagated error
    f_true = 0.5346 * 40 + np.sqrt(0.2166 * 40**2 + 50**2)
    assert abs(float(fit.fwhm_mev) - f_true) < 4 * float(fit.fwhm_err_mev)


def test_faddeeva_and_voigt_profile_match_scipy():
    x = np.concatenate([np.linspace(-80, 80, 2001), [-1e4, 1e3]])
    y = np.logspace(-5, 2.5, 60)
    z = (x[None, :] + 1j * y[:, None]).ravel()
    ref = wofz(z)
    got = faddeeva(z)
    assert np.max(np.abs(got - ref) / np.abs(ref)) < 1e-9
    e = np.linspace(2.3, 2.6, 501)
    prof = line_profile_per_ev(e, 2.45, 0.03, "voigt", fwhm_gauss_ev=0.05)
    s = 0.05 / (2 * np.sqrt(2 * np.log(2)))
    assert np.allclose(prof, voigt_profile(e - 2.45, s, 0.015), rtol=1e-9, atol=0)


# -------------------------------------------------------------- models and shapes
def test_narrow_line_few_points_exact_pixel_integration():
    """A 0.2 meV line on 0.1 meV pixels: the CDF model recovers the width, unbiased."""
    wl = np.linspace(1320.0, 1328.0, 81)          # 0.1 nm ≈ 0.07 meV per point
    edges = HC_EV_NM / pixel_edges_nm(wl)
    rng = np.random.default_rng(5)
    truth = (HC_EV_NM / 1324.4, 0.2e-3, 2e4, 400.0)
    clean = lorentz_pixels(edges, *truth)
    counts = rng.normal(clean, np.sqrt(clean))
    fit = fit_spectra(wl, counts, noise_factor=1.0)
    assert fit.success
    assert abs(float(fit.fwhm_mev) - 0.2) < 4 * float(fit.fwhm_err_mev)
    assert abs(float(fit.peak_energy_ev) - truth[0]) < 4 * float(fit.peak_energy_err_ev)


def test_multi_peak_shares_background_and_sorts_lines():
    rng = np.random.default_rng(7)
    lines = [(2.430, 0.030, 3e4), (2.470, 0.040, 5e4)]
    clean = 15.0 + sum(lorentz_pixels(EDGES_EV, e, f, a, 0.0) for e, f, a in lines)
    counts = np.stack([emccd_counts(rng, clean) for _ in range(3)])
    fit = fit_spectra(WL, counts, n_peaks=2)
    assert fit.success.all()
    assert fit.peak_energy_ev.shape == (3, 2)
    assert np.all(np.diff(fit.peak_energy_ev, axis=1) > 0)
    for k, (e, f, a) in enumerate(lines):
        assert np.all(np.abs(fit.peak_energy_ev[:, k] - e) < 5 * fit.peak_energy_err_ev[:, k])
        assert np.all(np.abs(fit.fwhm_mev[:, k] - f * 1e3) < 5 * fit.fwhm_err_mev[:, k])
        assert np.all(np.abs(fit.area[:, k] - a) < 5 * fit.area_err[:, k])
    assert np.all(np.abs(fit.background - 15.0) < 5 * fit.background_err)


def test_single_spectrum_gives_0d_arrays_and_model_counts():
    rng = np.random.default_rng(8)
    clean = lorentz_pixels(EDGES_EV, 2.44, 0.07, 5e4, 20.0)
    counts = emccd_counts(rng, clean)
    fit = fit_spectra(WL, counts)
    assert fit.peak_energy_ev.shape == () and fit.success.shape == ()
    assert float(fit.peak_wavelength_nm) == pytest.approx(HC_EV_NM / float(fit.peak_energy_ev))
    curve = fit.model_counts()
    assert curve.shape == WL.shape
    assert np.max(np.abs(curve - clean)) < 0.05 * clean.max()
    batch = fit_spectra(WL, np.stack([counts, counts]))
    assert batch.fwhm_mev.shape == (2,)
    assert batch.model_counts(WL).shape == (2, WL.size)
    assert np.allclose(batch.model_counts(WL, index=1), curve)
    assert float(batch.fwhm_mev[0]) == pytest.approx(float(fit.fwhm_mev), rel=1e-12)


def test_roi_and_explicit_variance_and_p0():
    rng = np.random.default_rng(9)
    clean = lorentz_pixels(EDGES_EV, 2.44, 0.05, 5e4, 20.0)
    counts = rng.normal(clean, np.sqrt(2 * clean))
    a = fit_spectra(WL, counts, variance=2 * clean)
    b = fit_spectra(WL, counts, p0=a.params, variance=2 * clean)
    assert float(b.fwhm_mev) == pytest.approx(float(a.fwhm_mev), rel=1e-6)
    c = fit_spectra(WL, counts, roi_nm=(490.0, 530.0))
    inside = int(np.count_nonzero((WL >= 490.0) & (WL <= 530.0)))
    assert c.roi_nm[0] >= 490.0 and c.roi_nm[1] <= 530.0 and int(c.dof) == inside - 4
    assert abs(float(c.peak_energy_ev) - 2.44) < 4 * float(c.peak_energy_err_ev)


def test_failures_are_reported_not_raised():
    flat = np.full(WL.size, 100.0)
    fit = fit_spectra(WL, flat)
    assert not fit.success and "no significant line" in fit.message.item()
    line = lorentz_pixels(EDGES_EV, 2.44, 0.05, 3e4, 10.0)
    fit = fit_spectra(WL, np.stack([flat, line]))
    assert fit.success.tolist() == [False, True]
    assert fit.message[0] and fit.message[1] == ""
    fit = fit_spectra(WL, line, max_iter=1, p0=[2.30, 0.2, 1e3, 50.0])
    assert not fit.success and "iteration limit" in fit.message.item()


def test_bad_input_raises():
    with pytest.raises(AnalysisInputError, match="model"):
        fit_spectra(WL, np.ones(WL.size), "sinc")
    with pytest.raises(AnalysisInputError, match="shape"):
        fit_spectra(WL, np.ones(10))
    with pytest.raises(AnalysisInputError, match="NaN"):
        fit_spectra(WL, np.full(WL.size, np.nan))
    with pytest.raises(AnalysisInputError, match="pixels cannot"):
        fit_spectra(WL[:4], np.ones(4))
    with pytest.raises(AnalysisInputError, match="variance"):
        fit_spectra(WL, np.ones(WL.size), variance=np.zeros(WL.size))
