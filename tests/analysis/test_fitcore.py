"""The shared fit core (micropl.analysis.fitcore) against independent references.

The compiled linear algebra is checked against numpy's LAPACK routines, the
Levenberg–Marquardt loop against :func:`scipy.optimize.least_squares` (tight tolerances)
on models written here: an exponential decay, a Gaussian peak on a background, a model
pressed against a bound, a model with an undetermined parameter and one with two
degenerate parameters; and a loop stopped by its iteration limit. The fitters of the
spectrum, map and peak-train analyses share the core: each one's singular and
non-converging cases end with the core's flags.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from micropl.analysis import fitcore
from micropl.analysis.fitcore import (
    MAX_ITER,
    NONFINITE,
    OK,
    SINGULAR,
    STALLED,
    covariance_from_jacobian,
    damped_step,
    gn_decrement,
    invert,
    invert_spd,
    lm_fit,
    solve_lu,
    solve_normal,
    solve_spd,
)


def _spd(rng: np.random.Generator, n: int, cond: float = 1e3) -> np.ndarray:
    """A random symmetric positive-definite matrix of condition number ``cond``."""
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.geomspace(1.0, 1.0 / cond, n)) @ q.T


# --------------------------------------------------------------------------- linear algebra
@pytest.mark.parametrize("n", [1, 2, 4, 7, 13])
def test_the_solvers_agree_with_lapack(n):
    rng = np.random.default_rng(n)
    a = _spd(rng, n)
    b = rng.normal(size=n)
    ref = np.linalg.solve(a, b)
    for solver in (solve_spd, solve_lu, solve_normal):
        x = np.empty(n)
        assert solver(a, b, x)
        np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-12)
    inv = np.empty((n, n))
    for inverse in (invert_spd, invert):
        assert inverse(a, inv)
        np.testing.assert_allclose(inv, np.linalg.inv(a), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.floats(0.0, 10.0), st.integers(0, 2**31 - 1))
def test_solve_normal_matches_lapack_on_any_symmetric_matrix(n, log_cond, seed):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(n, n))
    a = m + m.T + np.diag(np.geomspace(1.0, 10.0 ** -log_cond, n))   # symmetric, indefinite
    b = rng.normal(size=n)
    x = np.empty(n)
    ok = solve_normal(a, b, x)
    if np.linalg.cond(a) < 1e10:
        assert ok
        np.testing.assert_allclose(a @ x, b, atol=1e-6 * np.abs(b).max() * np.linalg.cond(a))


def test_cholesky_refuses_an_indefinite_matrix_and_elimination_takes_it():
    a = np.array([[1.0, 2.0], [2.0, 1.0]])      # symmetric, eigenvalues 3 and −1
    b = np.array([1.0, 0.0])
    x = np.empty(2)
    assert not solve_spd(a, b, x)
    assert not invert_spd(a, np.empty((2, 2)))
    assert solve_normal(a, b, x)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-14)
    inv = np.empty((2, 2))
    assert invert(a, inv)
    np.testing.assert_allclose(inv, np.linalg.inv(a), rtol=1e-14)


@pytest.mark.parametrize("a", [
    np.zeros((3, 3)),
    np.ones((3, 3)),                                         # rank 1
    np.array([[1.0, 0.0], [0.0, 0.0]]),                      # an undetermined parameter
    np.array([[4.0, 2.0], [2.0, 1.0]]),                      # two degenerate parameters
    np.array([[1.0, np.nan], [np.nan, 1.0]]),
])
def test_a_singular_matrix_is_refused_by_every_solver(a):
    n = a.shape[0]
    b = np.ones(n)
    assert not solve_spd(a, b, np.empty(n))
    assert not solve_lu(a, b, np.empty(n))
    assert not solve_normal(a, b, np.empty(n))
    assert not invert(a, np.empty((n, n)))
    assert gn_decrement(a, b, np.empty((n, n)), np.empty(n)) == -1.0


def test_the_damped_step_is_marquardts():
    rng = np.random.default_rng(3)
    h = _spd(rng, 4)
    h[2, :] = h[:, 2] = 0.0                                  # a parameter without influence
    g = rng.normal(size=4)
    g[2] = 0.0
    for lam in (0.0 + 1e-12, 1e-3, 1.0, 1e6):
        step = np.empty(4)
        assert damped_step(h, g, lam, np.empty((4, 4)), step)
        d = np.diag(h).copy()
        d[d <= 0] = 1.0
        np.testing.assert_allclose(step, np.linalg.solve(h + lam * np.diag(d), g),
                                   rtol=1e-8, atol=1e-12)
        assert step[2] == 0.0
    # larger damping, shorter step (towards gradient descent)
    s1, s2 = np.empty(4), np.empty(4)
    damped_step(h, g, 1e-3, np.empty((4, 4)), s1)
    damped_step(h, g, 10.0, np.empty((4, 4)), s2)
    assert np.linalg.norm(s2) < np.linalg.norm(s1)


def test_the_decrement_is_g_hinv_g():
    rng = np.random.default_rng(4)
    jac = rng.normal(size=(30, 3))
    w = rng.uniform(0.5, 2.0, 30)
    r = rng.normal(size=30)
    h = jac.T @ (w[:, None] * jac)
    g = jac.T @ (w * r)
    step = np.empty(3)
    dec = gn_decrement(h, g, np.empty((3, 3)), step)
    np.testing.assert_allclose(dec, g @ np.linalg.solve(h, g), rtol=1e-12)
    np.testing.assert_allclose(step, np.linalg.solve(h, g), rtol=1e-10)


def test_the_flags_are_distinct():
    assert len({OK, MAX_ITER, SINGULAR, STALLED, NONFINITE}) == 5
    assert OK == 0


# --------------------------------------------------------------------------- the LM loop
T = np.linspace(0.0, 10.0, 60)


def _decay(p):
    e = np.exp(-T / p[1])
    return p[0] * e + p[2], np.column_stack([e, p[0] * T * e / p[1] ** 2, np.ones_like(T)])


def _gauss(p):
    x = (T - p[1]) / p[2]
    e = np.exp(-0.5 * x * x)
    return (p[0] * e + p[3],
            np.column_stack([e, p[0] * e * x / p[2], p[0] * e * x * x / p[2], np.ones_like(T)]))


def _idle(p):
    """A decay whose third parameter does nothing: its Jacobian column is zero."""
    m, j = _decay([p[0], p[1], 0.0])
    j[:, 2] = 0.0
    return m, j


def _product(p):
    """Amplitude ``a·b``: the two parameters are degenerate."""
    e = np.exp(-T / p[2])
    return p[0] * p[1] * e, np.column_stack([p[1] * e, p[0] * e, p[0] * p[1] * T * e / p[2] ** 2])


CASES = {
    # model, truth, start, lower, upper
    "decay": (_decay, [50.0, 2.0, 3.0], [30.0, 1.2, 1.0], [0.0, 0.01, -np.inf],
              [np.inf, np.inf, np.inf]),
    "gauss": (_gauss, [80.0, 4.0, 0.8, 5.0], [40.0, 4.8, 1.5, 1.0], [0.0, 0.0, 0.05, 0.0],
              [np.inf, 10.0, 5.0, np.inf]),
    "at a bound": (_decay, [50.0, 2.0, 0.0], [30.0, 1.2, 1.0], [0.0, 0.01, 0.0],
                   [np.inf, np.inf, np.inf]),
}


def _data(model, truth, seed):
    rng = np.random.default_rng(seed)
    clean = model(np.asarray(truth, dtype=float))[0]
    c = rng.poisson(clean).astype(float)
    return c, np.sqrt(np.maximum(c, 1.0))


def _scipy(model, c, sigma, p0, lower, upper):
    res = optimize.least_squares(lambda q: (model(q)[0] - c) / sigma, p0,
                                 jac=lambda q: model(q)[1] / sigma[:, None],
                                 bounds=(lower, upper), method="trf", x_scale="jac",
                                 xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10_000)
    return res.x, 2.0 * res.cost


def _chi2(model, p, c, sigma):
    r = (model(p)[0] - c) / sigma
    return float(r @ r)


#: With the background's lower bound active at the minimum, projected steps stop short
#: of it (up to 0.3σ): a known limit of the loop, kept so that the g² numbers stay as
#: they were. Strict: when the loop learns to hold parameters on bounds, these pass.
BOUND_ACTIVE = pytest.mark.xfail(strict=True, reason="projected steps stop short of a "
                                 "minimum on a bound")


@pytest.mark.parametrize(("name", "seed"), [
    (name, seed) if (name, seed) not in {("at a bound", 0), ("at a bound", 1)}
    else pytest.param(name, seed, marks=BOUND_ACTIVE)
    for name in CASES for seed in (0, 1, 2)])
def test_lm_fit_finds_the_minimum_scipy_finds(name, seed):
    model, truth, p0, lower, upper = CASES[name]
    c, sigma = _data(model, truth, seed)
    free = np.ones(len(p0), dtype=bool)
    p, m, jac, ok = lm_fit(model, p0, lower, upper, c, sigma, free)
    ref, chi_ref = _scipy(model, c, sigma, p0, lower, upper)
    assert ok
    chi = _chi2(model, p, c, sigma)
    assert chi <= chi_ref + 1e-5                            # as low as scipy's
    np.testing.assert_allclose(m, model(p)[0], rtol=1e-14)  # what it returns belongs to p
    np.testing.assert_allclose(jac, model(p)[1], rtol=1e-14)
    cov = covariance_from_jacobian(jac / sigma[:, None])
    err = np.sqrt(np.diag(cov))
    inside = (p > np.asarray(lower) + 1e-6) & (p < np.asarray(upper) - 1e-6)
    # the two minimisers agree to a small fraction of the 1σ error (the loop stops when a
    # step moves every parameter by less than 1e-2 σ)
    assert np.all(np.abs(p - ref)[inside] <= 5e-3 * err[inside])
    if name == "at a bound":
        assert abs(p[2] - ref[2]) <= 5e-3 * err[2]          # on the bound, or inside, alike
        if seed in (0, 1):
            assert p[2] == 0.0 and ref[2] < 1e-9             # the bound is active
    # the covariance is the inverse of JᵀJ (independent formula)
    jw = model(p)[1] / sigma[:, None]
    np.testing.assert_allclose(cov, np.linalg.inv(jw.T @ jw), rtol=1e-8)


def test_lm_fit_keeps_fixed_parameters():
    model, truth, p0, lower, upper = CASES["decay"]
    c, sigma = _data(model, truth, 5)
    free = np.array([True, True, False])
    p, _m, jac, ok = lm_fit(model, [10.0, 0.5, 3.0], lower, upper, c, sigma, free)
    assert ok and p[2] == 3.0
    ref = optimize.least_squares(lambda q: (model([q[0], q[1], 3.0])[0] - c) / sigma,
                                 [10.0, 0.5], method="trf", xtol=1e-15, ftol=1e-15,
                                 gtol=1e-15, bounds=([0.0, 0.01], [np.inf, np.inf]))
    cov = covariance_from_jacobian(jac / sigma[:, None], free)
    assert np.all(np.abs(p[:2] - ref.x) <= 5e-3 * np.sqrt(np.diag(cov))[:2])
    assert np.all(cov[2] == 0.0) and np.all(cov[:, 2] == 0.0)
    jw = jac[:, :2] / sigma[:, None]
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(jw.T @ jw), rtol=1e-8)


def test_an_undetermined_parameter_does_not_stop_the_fit():
    c, sigma = _data(_decay, [50.0, 2.0, 0.0], 6)
    p, _m, jac, ok = lm_fit(_idle, [10.0, 0.5, 7.0], [0.0, 0.01, -np.inf],
                            [np.inf] * 3, c, sigma, np.ones(3, dtype=bool))
    assert ok and p[2] == 7.0                               # never moved
    jw = jac / sigma[:, None]
    a = jw.T @ jw
    assert not invert(a, np.empty((3, 3)))                   # the core calls it singular
    ref = optimize.least_squares(lambda q: (_decay([q[0], q[1], 0.0])[0] - c) / sigma,
                                 [10.0, 0.5], method="trf", xtol=1e-15, ftol=1e-15,
                                 gtol=1e-15)
    cov = covariance_from_jacobian(jw)                       # finite for the others
    assert np.all(np.abs(p[:2] - ref.x) <= 5e-3 * np.sqrt(np.diag(cov))[:2])
    np.testing.assert_allclose(cov[:2, :2], np.linalg.inv(a[:2, :2]), rtol=1e-6)
    assert cov[2, 2] == 0.0


def test_degenerate_parameters_reach_scipys_chi2():
    c, sigma = _data(_product, [5.0, 10.0, 2.0], 7)
    p0, lower, upper = [2.0, 2.0, 0.5], [0.0, 0.0, 0.01], [np.inf] * 3
    p, _m, _jac, ok = lm_fit(_product, p0, lower, upper, c, sigma, np.ones(3, dtype=bool))
    ref, chi_ref = _scipy(_product, c, sigma, p0, lower, upper)
    assert ok
    assert _chi2(_product, p, c, sigma) <= chi_ref + 1e-5
    assert p[0] * p[1] == pytest.approx(ref[0] * ref[1], rel=1e-4)   # only a·b is determined
    assert p[2] == pytest.approx(ref[2], rel=1e-4)


def test_the_iteration_limit_is_reported():
    model, truth, p0, lower, upper = CASES["gauss"]
    c, sigma = _data(model, truth, 8)
    free = np.ones(4, dtype=bool)
    _p, _m, _j, ok = lm_fit(model, p0, lower, upper, c, sigma, free, max_iter=2)
    assert not ok
    p, _m, _j, ok = lm_fit(model, p0, lower, upper, c, sigma, free)
    assert ok
    assert _chi2(model, p, c, sigma) <= _scipy(model, c, sigma, p0, lower, upper)[1] + 1e-5


def test_a_model_that_is_never_finite_does_not_move():
    def bad(p):
        return np.full(T.size, np.nan), np.ones((T.size, 2))
    p, _m, _j, ok = lm_fit(bad, [1.0, 2.0], [-np.inf] * 2, [np.inf] * 2, np.ones(T.size),
                           np.ones(T.size), np.ones(2, dtype=bool))
    assert ok and p.tolist() == [1.0, 2.0]   # no step is downhill: returned where it began


# --------------------------------------------------------------------------- the fitters share it
def test_the_fitters_import_the_core_and_have_no_solver_of_their_own():
    from micropl.analysis.g2 import refit
    from micropl.analysis.maps import kernels as map_kernels
    from micropl.analysis.spectra import levmar

    for module in (levmar, map_kernels):
        assert module.damped_step is fitcore.damped_step
        assert not hasattr(module, "_solve")
    assert levmar.invert_spd is fitcore.invert_spd and levmar.gn_decrement is fitcore.gn_decrement
    assert map_kernels.invert is fitcore.invert
    assert refit.lm_fit is fitcore.lm_fit
    assert not hasattr(refit, "_lm_solve")


def test_the_spectrum_fit_reports_the_cores_flags():
    from micropl.analysis.spectra import fit_spectra, polynomial_axis_nm
    from micropl.analysis.spectra.results import _STATUS_MESSAGES

    wl = polynomial_axis_nm(200, [500.0, 0.05])
    rng = np.random.default_rng(9)
    x = np.arange(200)
    counts = rng.poisson(20.0 + 3000.0 * np.exp(-0.5 * ((x - 90) / 4.0) ** 2)).astype(float)
    stopped = fit_spectra(wl, counts, max_iter=1)
    assert str(stopped.message) == _STATUS_MESSAGES[MAX_ITER]
    flat = fit_spectra(wl, np.zeros(200), roi_nm=(500.0, 509.95))
    assert not bool(flat.success)


def test_the_map_fit_reports_the_cores_flags():
    from micropl.analysis.maps import fit_gaussian_2d

    x = np.arange(15) * 0.2
    y = np.arange(12) * 0.2
    xx, yy = np.meshgrid(x, y)
    img = np.random.default_rng(10).poisson(
        4.0 + 200.0 * np.exp(-((xx - 1.4) ** 2 + (yy - 1.1) ** 2) / (2 * 0.25 ** 2))).astype(float)
    fit = fit_gaussian_2d(img, x, y, max_iter=1)
    assert not fit.success and "iteration limit" in fit.reason
    fit = fit_gaussian_2d(img, x, y)
    assert fit.success and fit.n_iter > 1
