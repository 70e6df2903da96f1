"""Tests for micropl.analysis.maps: spot finding, 2D Gaussian fits, drift registration."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import curve_fit, minimize

from micropl.analysis.maps import (
    FWHM_PER_SIGMA,
    find_spots,
    fit_gaussian_2d,
    register_shift_um,
)
from micropl.errors import AnalysisInputError

PIXEL_UM = 0.2
PSF_FWHM_UM = 0.6
SIGMA_UM = PSF_FWHM_UM / FWHM_PER_SIGMA


def render(x_um, y_um, spots_xy_um, amplitudes, background):
    """Expected counts per pixel: Gaussian spots of 0.6 µm FWHM on a flat background."""
    xx, yy = np.meshgrid(x_um, y_um)
    lam = np.full(xx.shape, float(background))
    for (sx, sy), amp in zip(spots_xy_um, amplitudes):
        lam += amp * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * SIGMA_UM**2))
    return lam


def separated_positions(rng, n, lo_um, hi_um, min_sep_um):
    """Random positions with a minimum pairwise separation (rejection sampling)."""
    pts: list[tuple[float, float]] = []
    while len(pts) < n:
        p = rng.uniform(lo_um, hi_um, 2)
        if all(np.hypot(p[0] - q[0], p[1] - q[1]) >= min_sep_um for q in pts):
            pts.append((float(p[0]), float(p[1])))
    return np.array(pts)


def axes(n=100):
    return np.arange(n) * PIXEL_UM, np.arange(n) * PIXEL_UM


def test_isolated_spots_found_with_honest_errors():
    rng = np.random.default_rng(11)
    x, y = axes()
    pulls_x, pulls_y, pulls_amp = [], [], []
    for _ in range(6):
        truth = separated_positions(rng, 20, 1.0, 18.8, 2.0)
        amps = rng.uniform(40, 150, len(truth))
        img = rng.poisson(render(x, y, truth, amps, background=8.0))
        spots = find_spots(img, x, y, psf_fwhm_um=PSF_FWHM_UM, snr_min=5.0)
        assert len(spots) == len(truth), "every spot found, no extra ones"
        assert np.all(np.diff(spots.amplitude) <= 0), "sorted by brightness"
        assert spots.isolated.all()
        for (tx, ty), ta in zip(truth, amps):
            d = np.hypot(spots.x_um - tx, spots.y_um - ty)
            k = int(np.argmin(d))
            assert d[k] < 0.1
            pulls_x.append((spots.x_um[k] - tx) / spots.x_err_um[k])
            pulls_y.append((spots.y_um[k] - ty) / spots.y_err_um[k])
            pulls_amp.append((spots.amplitude[k] - ta) / spots.amplitude_err[k])
        np.testing.assert_allclose(spots.fwhm_um, PSF_FWHM_UM, rtol=0.15)
        # noise estimate ≈ sqrt(background) of the Poisson background
        assert spots.noise_counts == pytest.approx(np.sqrt(8.0), rel=0.15)
    for pulls in (pulls_x, pulls_y, pulls_amp):
        pulls = np.asarray(pulls)
        assert len(pulls) == 120
        assert 0.75 < np.std(pulls) < 1.25
        assert abs(np.mean(pulls)) < 0.3
        assert np.max(np.abs(pulls)) < 5


def test_snr_threshold_and_no_false_spots_on_blank_maps():
    rng = np.random.default_rng(5)
    x, y = axes()
    for background in (0.5, 3.0, 20.0, 200.0):
        for _ in range(3):
            img = rng.poisson(np.full((100, 100), background))
            spots = find_spots(img, x, y, snr_min=5.0)
            assert len(spots) == 0, f"false spots on blank map (background {background})"
    # a faint spot (SNR ≈ 3) is rejected by the SNR cut, a bright one (SNR ≈ 15) kept
    bg = 20.0
    truth = np.array([[5.0, 5.0], [15.0, 15.0]])
    amps = np.array([3.0, 15.0]) * np.sqrt(bg)
    img = rng.poisson(render(x, y, truth, amps, bg))
    spots = find_spots(img, x, y, snr_min=5.0)
    assert len(spots) == 1
    assert np.hypot(spots.x_um[0] - 15, spots.y_um[0] - 15) < 0.1
    assert spots.snr[0] == pytest.approx(15.0, rel=0.25)
    low = find_spots(img, x, y, snr_min=1.5, min_significance=2.0)
    assert len(low) >= 2


@pytest.mark.parametrize("angle_deg", [0.0, 35.0, 90.0])
def test_close_pair_is_not_isolated(angle_deg):
    rng = np.random.default_rng(int(angle_deg) + 3)
    x, y = axes(60)
    c = np.array([6.0, 6.0])
    u = np.array([np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))])
    pair = np.array([c - 0.2 * u, c + 0.2 * u])  # 0.4 µm apart
    single = np.array([[2.5, 9.0]])
    truth = np.vstack([pair, single])
    img = rng.poisson(render(x, y, truth, [100.0, 100.0, 100.0], 5.0))
    spots = find_spots(img, x, y, psf_fwhm_um=PSF_FWHM_UM)
    near_pair = np.hypot(spots.x_um - c[0], spots.y_um - c[1]) < 0.6
    assert near_pair.any(), "the pair is reported"
    assert not spots.isolated[near_pair].any(), "a 0.4 µm pair is never an isolated QD"
    near_single = np.hypot(spots.x_um - 2.5, spots.y_um - 9.0) < 0.1
    assert near_single.sum() == 1 and spots.isolated[near_single].all()
    strict = find_spots(img, x, y, reject_non_isolated=True)
    assert len(strict) == 1
    assert strict.n_rejected_not_isolated >= 1


def test_resolved_pair_within_isolation_distance_is_flagged():
    rng = np.random.default_rng(8)
    x, y = axes(50)
    truth = np.array([[4.0, 5.0], [4.8, 5.0]])  # resolved but closer than 1.5 FWHM
    img = rng.poisson(render(x, y, truth, [120.0, 80.0], 4.0))
    spots = find_spots(img, x, y)
    assert len(spots) == 2
    assert not spots.isolated.any()
    np.testing.assert_allclose(spots.nearest_um, 0.8, atol=0.1)
    # with a smaller isolation distance (and a permissive width test) they count as isolated
    loose = find_spots(img, x, y, isolation_um=0.5, max_width_ratio=1.5)
    assert loose.isolated.all()


def test_fit_matches_scipy_curve_fit_on_same_window():
    rng = np.random.default_rng(21)
    x = np.arange(11) * PIXEL_UM
    y = np.arange(13) * PIXEL_UM
    xx, yy = np.meshgrid(x, y)

    def model(xy, a, x0, y0, sx, sy, c):
        gx, gy = xy
        return a * np.exp(-((gx - x0) ** 2) / (2 * sx**2) - (gy - y0) ** 2 / (2 * sy**2)) + c

    truth = (80.0, 1.03, 1.21, 0.26, 0.29, 6.0)
    img = rng.poisson(model((xx, yy), *truth)).astype(float)
    p0 = (60.0, 1.0, 1.2, 0.25, 0.25, 5.0)
    xy = (xx.ravel(), yy.ravel())

    # unweighted least squares: identical to curve_fit(absolute_sigma=False)
    ours = fit_gaussian_2d(img, x, y, noise="gaussian")
    popt, pcov = curve_fit(model, xy, img.ravel(), p0=p0)
    perr = np.sqrt(np.diag(pcov))
    got = [ours.amplitude, ours.x0_um, ours.y0_um, ours.sigma_x_um, ours.sigma_y_um,
           ours.offset]
    got_err = [ours.amplitude_err, ours.x0_err_um, ours.y0_err_um, ours.sigma_x_err_um,
               ours.sigma_y_err_um, ours.offset_err]
    assert ours.success, ours.reason
    np.testing.assert_allclose(got, popt, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_err, perr, rtol=1e-3)

    # Poisson maximum likelihood: same optimum as a generic minimiser of the Poisson NLL
    pois = fit_gaussian_2d(img, x, y, noise="poisson")
    assert pois.success, pois.reason

    def nll(p):
        mu = model(xy, *p)
        return np.sum(mu - img.ravel() * np.log(mu)) if np.all(mu > 0) else np.inf

    ref = minimize(nll, popt, method="Nelder-Mead",
                   options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000, "maxfev": 20000})
    got = [pois.amplitude, pois.x0_um, pois.y0_um, pois.sigma_x_um, pois.sigma_y_um,
           pois.offset]
    assert nll(got) <= ref.fun + 1e-6
    np.testing.assert_allclose(got, ref.x, rtol=1e-3, atol=1e-4)
    # truth within a few σ
    assert abs(pois.x0_um - truth[1]) < 4 * pois.x0_err_um
    assert abs(pois.y0_um - truth[2]) < 4 * pois.y0_err_um


def test_fit_gaussian_2d_refocus_cases():
    rng = np.random.default_rng(2)
    x = np.linspace(-1.0, 1.0, 21)
    y = np.linspace(-1.0, 1.0, 21)
    good = fit_gaussian_2d(rng.poisson(render(x, y, [[0.13, -0.21]], [200.0], 10.0)), x, y)
    assert good.success and good.reason == "ok"
    assert abs(good.x0_um - 0.13) < 4 * good.x0_err_um
    assert abs(good.y0_um + 0.21) < 4 * good.y0_err_um
    assert good.fwhm_x_um == pytest.approx(PSF_FWHM_UM, rel=0.1)
    assert good.red_chi2 == pytest.approx(1.0, abs=0.3)
    # peak outside the scan window: the fit must not report a centre outside the window
    outside = fit_gaussian_2d(rng.poisson(render(x, y, [[1.8, 0.0]], [200.0], 10.0)), x, y)
    assert not outside.success
    assert -1.1 <= outside.x0_um <= 1.1
    # nothing there
    blank = fit_gaussian_2d(rng.poisson(np.full((21, 21), 10.0)), x, y)
    assert not blank.success
    assert blank.reason != "ok"


def test_register_shift_recovers_drift():
    rng = np.random.default_rng(4)
    x, y = axes(80)
    truth = separated_positions(rng, 25, 0.5, 15.5, 1.2)
    amps = rng.uniform(40, 120, len(truth))
    ref = rng.poisson(render(x, y, truth, amps, 5.0))
    for dx, dy in [(0.37, -0.23), (-1.13, 0.71), (0.05, 0.0)]:
        moved = rng.poisson(render(x, y, truth + [dx, dy], amps, 5.0))
        shift = register_shift_um(ref, moved, PIXEL_UM)
        assert shift.dx_um == pytest.approx(dx, abs=0.05)
        assert shift.dy_um == pytest.approx(dy, abs=0.05)


def test_bad_input_is_reported():
    x, y = axes(20)
    img = np.ones((20, 20))
    with pytest.raises(AnalysisInputError):
        find_spots(img, x[:-1], y)
    with pytest.raises(AnalysisInputError):
        find_spots(img - 5.0, x, y)
    with pytest.raises(AnalysisInputError):
        find_spots(np.full((20, 20), np.nan), x, y)
    with pytest.raises(AnalysisInputError):
        register_shift_um(img, np.ones((20, 21)), PIXEL_UM)
    with pytest.raises(AnalysisInputError):
        fit_gaussian_2d(np.ones((2, 2)), x[:2], y[:2])
    # background-subtracted maps are fine with Gaussian noise
    rng = np.random.default_rng(0)
    sub = rng.normal(0, 1, (40, 40)) + render(*axes(40), [[4.0, 4.0]], [30.0], 0.0)
    spots = find_spots(sub, *axes(40), noise="gaussian")
    assert len(spots) == 1 and abs(spots.x_um[0] - 4.0) < 0.1


def test_descending_axes_and_rectangular_map():
    rng = np.random.default_rng(6)
    x = 10.0 - np.arange(70) * PIXEL_UM  # scanner moving towards −x
    y = np.arange(40) * PIXEL_UM + 3.0
    truth = np.array([[5.0, 6.0], [8.1, 4.2]])
    img = rng.poisson(render(x, y, truth, [80.0, 60.0], 6.0))
    spots = find_spots(img, x, y)
    assert len(spots) == 2
    for tx, ty in truth:
        d = np.hypot(spots.x_um - tx, spots.y_um - ty)
        k = int(np.argmin(d))
        assert abs(spots.x_um[k] - tx) < 4 * spots.x_err_um[k]
        assert abs(spots.y_um[k] - ty) < 4 * spots.y_err_um[k]


def test_emptiest_position_is_the_darkest_disc_found_by_brute_force():
    from micropl.analysis.maps import emptiest_position_um

    rng = np.random.default_rng(3)
    x_um, y_um = np.arange(0, 20, 0.2), np.arange(0, 16, 0.2)
    rate = np.full((y_um.size, x_um.size), 50.0)
    xx, yy = np.meshgrid(x_um, y_um)
    for cx, cy in rng.uniform(0, 20, (40, 2)):  # bright spots
        rate += 2000 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.25 ** 2))
    image = rng.poisson(rate).astype(float)
    x0, y0 = emptiest_position_um(image, x_um, y_um, radius_um=1.0)
    # Brute force: mean of the map within 1 µm of every pixel centre that has the whole
    # disc inside the map; the answer's disc must be as dark as the darkest (within noise).
    means = {}
    for iy in range(image.shape[0]):
        for ix in range(image.shape[1]):
            cx, cy = x_um[ix], y_um[iy]
            if 1.0 <= cx <= x_um[-1] - 1.0 and 1.0 <= cy <= y_um[-1] - 1.0:
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= 1.0
                means[(cx, cy)] = image[disc].mean()
    darkest = min(means.values())
    nearest = min(means, key=lambda c: np.hypot(c[0] - x0, c[1] - y0))
    assert means[nearest] <= darkest + 4 * np.sqrt(50.0 / 78)
    assert means[nearest] < 52.0  # no emitter in it: the 50 counts/px of the film only
