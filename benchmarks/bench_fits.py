"""Benchmark of the spectrum line fitter against scipy ``curve_fit`` and lmfit.

Prints one line per figure: batch Lorentzian fits per second on all cores, the
latency of a single live fit (p50, p99), time per fit against a curve_fit loop
and an lmfit loop on the same data with the same model and weights, and the
largest disagreement with both peers in units of the reported 1σ.

Run: ``.venv/bin/python benchmarks/bench_fits.py`` (≈30 s on 2 cores).
"""

from __future__ import annotations

import time

import numba
import numpy as np
from scipy.optimize import curve_fit
from timing import median_s

from micropl.analysis.spectra import HC_EV_NM, fit_spectra, pixel_edges_nm

N_PX = 1000
WL = np.linspace(470.0, 560.0, N_PX)
EDGES = HC_EV_NM / pixel_edges_nm(WL)


def lorentz_pixels(edges, e0, fwhm, area, bkg):
    """Counts per pixel of a Lorentzian in energy, integrated over each pixel, plus offset."""
    cdf = np.arctan(2.0 * (edges - e0) / fwhm) / np.pi
    return area * np.abs(np.diff(cdf)) + bkg


def make_spectra(n: int, seed: int = 0):
    """EMCCD-like spectra: Poisson photo-electrons with Gamma EM multiplication (F² = 2)."""
    rng = np.random.default_rng(seed)
    truth = np.column_stack([rng.uniform(2.40, 2.50, n), rng.uniform(0.035, 0.13, n),
                             rng.uniform(2e4, 8e4, n), rng.uniform(5.0, 40.0, n)])
    clean = np.array([lorentz_pixels(EDGES, *t) for t in truth])
    n_e = rng.poisson(clean)
    counts = rng.gamma(np.maximum(n_e, 1), 1.0) * (n_e > 0)
    return truth, counts




def _guess(counts):
    """Crude starting values for the peers (what a user would write)."""
    e = 0.5 * (EDGES[1:] + EDGES[:-1])
    bkg = np.percentile(counts, 10)
    j = int(np.argmax(counts))
    return np.array([e[j], 0.07, max(counts.sum() - bkg * counts.size, 1.0), bkg])


def peer_curve_fit(counts, sigma, tight=False):
    kw = {"xtol": 1e-14, "ftol": 1e-14, "gtol": 1e-14, "maxfev": 20000} if tight else {}
    popt, pcov = curve_fit(lorentz_pixels, EDGES, counts, p0=_guess(counts), sigma=sigma,
                           absolute_sigma=True, **kw)
    return popt, np.sqrt(np.diag(pcov))


def peer_lmfit(model, counts, sigma, tight=False):
    g = _guess(counts)
    kw = {"fit_kws": {"xtol": 1e-14, "ftol": 1e-14, "gtol": 1e-14}} if tight else {}
    res = model.fit(counts, x=EDGES, e0=g[0], fwhm=g[1], area=g[2], bkg=g[3], weights=1 / sigma,
                    scale_covar=False, **kw)
    names = ("e0", "fwhm", "area", "bkg")
    return (np.array([res.params[k].value for k in names]),
            np.array([res.params[k].stderr for k in names]))


def main() -> None:
    import lmfit

    n_batch = 20000
    truth, counts = make_spectra(n_batch)
    fit_spectra(WL, counts[:64])          # compile / load the numba cache before timing
    fit_spectra(WL, counts[0])

    t_batch, _ = median_s(lambda: fit_spectra(WL, counts), 3)
    batch = fit_spectra(WL, counts)
    rate = n_batch / t_batch
    print(f"lorentzian batch fits, {N_PX} px, {numba.get_num_threads()} threads: "
          f"{rate:,.0f} fits/s (success {batch.success.mean():.4f}, "
          f"median {np.median(batch.n_iter):.0f} iterations)")

    lat = []
    for i in range(2000):
        t0 = time.perf_counter()
        fit_spectra(WL, counts[i])
        lat.append(time.perf_counter() - t0)
    lat_ms = np.array(lat) * 1e3
    print(f"single live fit latency: p50 {np.percentile(lat_ms, 50):.3f} ms, "
          f"p99 {np.percentile(lat_ms, 99):.3f} ms (target p99 < 1 ms)")

    # peers: the same model (pixel-integrated Lorentzian) and the same weights
    sigma = np.sqrt(2.0 * np.maximum(batch.model_counts(WL), 0.0) + 1e-3 * 2.0)
    n_peer = 200
    t0 = time.perf_counter()
    for i in range(n_peer):
        peer_curve_fit(counts[i], sigma[i])
    t_cf = (time.perf_counter() - t0) / n_peer
    lm_model = lmfit.Model(lambda x, e0, fwhm, area, bkg: lorentz_pixels(x, e0, fwhm, area, bkg))
    n_lm = 100
    t0 = time.perf_counter()
    for i in range(n_lm):
        peer_lmfit(lm_model, counts[i], sigma[i])
    t_lm = (time.perf_counter() - t0) / n_lm
    t_ours_batch = t_batch / n_batch
    t_ours_single = float(np.median(lat))
    print(f"time per fit, batch: {t_ours_batch * 1e6:.1f} us "
          f"(curve_fit loop: {t_cf * 1e6:.0f} us, ratio {t_cf / t_ours_batch:.1f}x; "
          f"lmfit loop: {t_lm * 1e6:.0f} us, ratio {t_lm / t_ours_batch:.1f}x)")
    print(f"time per fit, single live call: {t_ours_single * 1e6:.1f} us "
          f"(curve_fit: {t_cf * 1e6:.0f} us, ratio {t_cf / t_ours_single:.1f}x; "
          f"lmfit: {t_lm * 1e6:.0f} us, ratio {t_lm / t_ours_single:.1f}x)")

    # agreement in units of our 1σ, tight peer tolerances
    worst_cf = np.zeros(2)
    worst_lm = np.zeros(2)
    n_agree = 30
    for i in range(n_agree):
        mine = batch.params[i]
        err = np.sqrt(np.diag(batch.covariance[i]))
        v, e = peer_curve_fit(counts[i], sigma[i], tight=True)
        worst_cf = np.maximum(worst_cf, [np.max(np.abs(v - mine) / err),
                                         np.max(np.abs(e - err) / err)])
        v, e = peer_lmfit(lm_model, counts[i], sigma[i], tight=True)
        worst_lm = np.maximum(worst_lm, [np.max(np.abs(v - mine) / err),
                                         np.max(np.abs(e - err) / err)])
    print(f"agreement over {n_agree} spectra, max |diff|/sigma: curve_fit values "
          f"{worst_cf[0]:.2e}, errors {worst_cf[1]:.2e}; lmfit values {worst_lm[0]:.2e}, "
          f"errors {worst_lm[1]:.2e} (limit 1e-2)")
    pull = (batch.peak_energy_ev - truth[:, 0]) / batch.peak_energy_err_ev
    pull_w = (batch.fwhm_mev - truth[:, 1] * 1e3) / batch.fwhm_err_mev
    print(f"pulls over {n_batch} spectra: peak energy mean {pull.mean():+.3f} std "
          f"{pull.std():.3f}; fwhm mean {pull_w.mean():+.3f} std {pull_w.std():.3f}")


if __name__ == "__main__":
    main()
