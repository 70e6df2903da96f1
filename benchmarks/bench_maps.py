"""Benchmark: spot finding on a 100×100 PL map (target: under 0.2 s), and map timing.

Prints one line per figure, each with the peer measured in the same run:

* ``find_spots`` (candidates + per-spot 2D Gaussian fits with errors) against plain
  :func:`skimage.feature.blob_log` (detection only, no fits) on the same map;
* one 2D Gaussian window fit against :func:`scipy.optimize.curve_fit` on the same window;
* a 100×100 map at 1 ms dwell on the simulated setup in real time, hardware-timed
  (target ≤ 11 s: ≤ 10 % over the 10 s of dwell) against the software-timed map of the
  same region (a move, a settle and a count per pixel), as a ratio. Both scan
  bidirectionally (no fly-back); ``--no-timing`` skips this part.

Run: ``.venv/bin/python benchmarks/bench_maps.py``
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.optimize import curve_fit
from skimage.feature import blob_log
from timing import median_s

from micropl.analysis.maps import FWHM_PER_SIGMA, find_spots, fit_gaussian_2d

PIXEL_UM = 0.2
PSF_FWHM_UM = 0.6


def make_map(rng: np.random.Generator, n_px: int = 100, n_spots: int = 60,
             background: float = 5.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 100×100 map (20×20 µm², 0.15 QD/µm²) of Gaussian spots on a Poisson background."""
    x_um = np.arange(n_px) * PIXEL_UM
    y_um = np.arange(n_px) * PIXEL_UM
    xx, yy = np.meshgrid(x_um, y_um)
    sigma_um = PSF_FWHM_UM / FWHM_PER_SIGMA
    lam = np.full(xx.shape, background)
    for sx, sy, amp in zip(rng.uniform(0, x_um[-1], n_spots), rng.uniform(0, y_um[-1], n_spots),
                           rng.uniform(30, 200, n_spots)):
        lam += amp * np.exp(-((xx - sx) ** 2 + (yy - sy) ** 2) / (2 * sigma_um**2))
    return rng.poisson(lam).astype(float), x_um, y_um




def main() -> None:
    rng = np.random.default_rng(2024)
    image, x_um, y_um = make_map(rng)
    sigma_px = PSF_FWHM_UM / FWHM_PER_SIGMA / PIXEL_UM

    def ours():
        return find_spots(image, x_um, y_um, psf_fwhm_um=PSF_FWHM_UM)

    def peer():
        return blob_log(image - np.median(image), min_sigma=0.7 * sigma_px,
                        max_sigma=1.5 * sigma_px, num_sigma=5, threshold=0.2 * image.std())

    spots = ours()  # compile / warm up
    blobs = peer()
    t_ours = median_s(ours, 21)[0]
    t_peer = median_s(peer, 21)[0]
    print(f"find_spots 100x100 ({len(spots)} spots with fits): {t_ours * 1e3:.1f} ms "
          f"(peer skimage blob_log, {len(blobs)} blobs, no fits: {t_peer * 1e3:.1f} ms, "
          f"ratio {t_ours / t_peer:.2f}) target < 200 ms: "
          f"{'PASS' if t_ours < 0.2 else 'FAIL'}")

    # one window fit against scipy curve_fit
    iy, ix = np.unravel_index(np.argmin(np.hypot(x_um[None, :] - spots.x_um[0],
                                                 y_um[:, None] - spots.y_um[0])), image.shape)
    win = image[iy - 5:iy + 6, ix - 5:ix + 6]
    wx, wy = x_um[ix - 5:ix + 6], y_um[iy - 5:iy + 6]
    gx, gy = np.meshgrid(wx, wy)

    def model(xy, a, x0, y0, sx, sy, c):
        u, v = xy
        return a * np.exp(-((u - x0) ** 2) / (2 * sx**2) - (v - y0) ** 2 / (2 * sy**2)) + c

    p0 = (win.max() - np.median(win), wx[5], wy[5], 0.25, 0.25, np.median(win))

    def ours_fit():
        return fit_gaussian_2d(win, wx, wy, noise="gaussian")

    def peer_fit():
        return curve_fit(model, (gx.ravel(), gy.ravel()), win.ravel(), p0=p0)

    ours_fit()
    peer_fit()
    t_fit = median_s(ours_fit, 201)[0]
    t_cf = median_s(peer_fit, 201)[0]
    print(f"fit_gaussian_2d 11x11 window: {t_fit * 1e6:.0f} us "
          f"(peer scipy curve_fit: {t_cf * 1e6:.0f} us, ratio {t_fit / t_cf:.2f})")


def map_wall_s(timing: str, n_px: int = 100, dwell_s: float = 1e-3
               ) -> tuple[float, str, float, float]:
    """Wall time of an ``n_px × n_px`` map on the simulated setup in real time.

    Returns
    -------
    wall_s : float
        Time of the run, s (pre-flight included).
    timing : str
        The timing the scan used.
    counts : float
        Total counts of the map (a sanity check that both maps saw the sample).
    cpu_s : float
        CPU time of the process during the run (every thread), s.
    """
    from micropl.acquisition import Session, load_setup
    from micropl.acquisition.procedures import RasterScan

    step = 0.2
    scan = RasterScan(x_min_um=5.0, x_max_um=5.0 + step * (n_px - 1), y_min_um=5.0,
                      y_max_um=5.0 + step * (n_px - 1), step_um=step, dwell_s=dwell_s,
                      power_percent=20.0, bidirectional=True, timing=timing)
    with load_setup(clock_mode="real", overrides={"scanner": {"marker_channel": 4}}) as setup:
        with Session(setup) as session:
            t0, c0 = time.perf_counter(), time.process_time()
            result = session.run(scan)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.status != "completed":
        raise SystemExit(f"{timing} map: {result.status}: {result.reason}")
    return wall, result.value.timing, float(result.value.counts.sum()), cpu


def timing_figures() -> None:
    """The hardware-timed 100×100 map against the software-timed one, same run."""
    n_px, dwell_s = 100, 1e-3
    dwell_total = n_px * n_px * dwell_s
    hw, hw_timing, hw_counts, hw_cpu = map_wall_s("hardware", n_px, dwell_s)
    sw, sw_timing, sw_counts, sw_cpu = map_wall_s("software", n_px, dwell_s)
    print(f"map {n_px}x{n_px} at {dwell_s * 1e3:g} ms dwell, real time: {hw_timing}-timed "
          f"{hw:.2f} s ({(hw / dwell_total - 1) * 100:+.1f} % over the {dwell_total:g} s of "
          f"dwell; CPU {hw_cpu:.1f} s; {hw_counts:.0f} counts) against {sw_timing}-timed "
          f"{sw:.2f} s (CPU {sw_cpu:.1f} s; {sw_counts:.0f} counts), ratio {hw / sw:.2f}; "
          f"target <= 11 s: {'PASS' if hw <= 11.0 else 'FAIL'}")


if __name__ == "__main__":
    main()
    if "--no-timing" not in sys.argv:
        timing_figures()
