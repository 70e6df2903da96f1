"""Spot finding on a PL map (:func:`find_spots`) and the emptiest place of a map.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from micropl.analysis.maps.gauss2d import (
    _check_axes,
    _fit_candidates,
    _pixel_um,
    _robust_sigma,
    _validate_noise,
)
from micropl.analysis.maps.results import FWHM_PER_SIGMA, Noise, SpotList
from micropl.errors import AnalysisInputError


def find_spots(image: np.ndarray, x_um: np.ndarray, y_um: np.ndarray, *,
               psf_fwhm_um: float = 0.6, snr_min: float = 5.0,
               isolation_um: float | None = None, max_width_ratio: float = 1.2,
               reject_non_isolated: bool = False, window_um: float | None = None,
               noise: Noise = "poisson", min_significance: float = 5.0,
               max_candidates: int = 2000) -> SpotList:
    """Find QD spots in a PL map with sub-pixel positions and 1σ errors.

    Steps:

    1. A slowly varying background is estimated with a median filter of ≈3 PSF FWHM and
       subtracted; the per-pixel noise is a robust standard deviation (MAD, then 3σ
       clipping) of that residual, first over the whole map and then again with discs of
       one FWHM around every candidate masked out.
    2. The residual is smoothed with a Gaussian of half the PSF σ (a compromise between
       the matched filter and resolution of close pairs) and its
       local maxima (:func:`skimage.feature.peak_local_max`) above a conservative level
       (half the SNR threshold, converted to the filtered scale) are the candidates.
    3. Each candidate is fitted with an elliptical Gaussian plus offset on a square window
       of ``window_um`` (default 2.5 PSF FWHM) — see the module notes for the noise model.
       σx, σy are bounded to 0.5–2.5 times the PSF σ, the centre to the window. Groups of
       2–6 candidates closer than half a window plus one FWHM are then refitted jointly
       (a sum of Gaussians on the union of their windows) so that resolved neighbours do
       not bias each other; when a joint fit fails, its faintest member is left out and
       the fit retried. Fits that do not converge or hit a bound are dropped (counted in ``n_failed_fits``); two
       candidates that converge to within a quarter FWHM of each other are merged.
    4. ``snr = amplitude / noise_counts``; spots with ``snr < snr_min`` are dropped, and so
       are spots whose fitted amplitude is below ``min_significance`` times its own 1σ
       error (this guards dim, discrete backgrounds where a per-pixel SNR means little).
       For Poisson noise, ``noise_counts`` is at least ``sqrt(mean background)``.
    5. Isolation: a spot is ``isolated`` when no other source lies within
       ``isolation_um`` and its wider axis is at most ``max_width_ratio`` times the PSF
       FWHM (sources include fitted candidates that pass only one of the two cuts in 4).
       Two QDs closer than the PSF are usually one local maximum; the pair then
       shows up as an elongated spot and is flagged by the width test.

    Parameters
    ----------
    image : ndarray, shape (n_y, n_x)
        Counts per pixel.
    x_um : ndarray, shape (n_x,)
        Pixel-centre x coordinates in µm, regularly spaced (ascending or descending).
    y_um : ndarray, shape (n_y,)
        Pixel-centre y coordinates in µm, regularly spaced.
    psf_fwhm_um : float
        Expected spot FWHM in µm.
    snr_min : float
        Minimum ``amplitude / noise_counts``.
    isolation_um : float, optional
        Minimum distance to any other spot for ``isolated``; default ``1.5 * psf_fwhm_um``
        (a neighbour at one FWHM still adds 6 % of its peak at the centre).
    max_width_ratio : float
        Largest ``fwhm_major_um / psf_fwhm_um`` of an isolated spot.
    reject_non_isolated : bool
        Drop non-isolated spots instead of only flagging them.
    window_um : float, optional
        Side of the square fit window in µm.
    noise : {"poisson", "gaussian"}
        Noise model of the fits (see :func:`fit_gaussian_2d`).
    min_significance : float
        Minimum ``amplitude / amplitude_err``.
    max_candidates : int
        Upper limit on the number of candidates fitted (brightest first).

    Returns
    -------
    SpotList
        Spot arrays sorted by amplitude, brightest first.

    Raises
    ------
    AnalysisInputError
        Mismatched shapes, non-finite values, a map smaller than 3×3, non-positive
        settings, or negative counts with Poisson noise.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.maps import find_spots
    >>> x = np.arange(50) * 0.2
    >>> y = np.arange(40) * 0.2
    >>> xx, yy = np.meshgrid(x, y)
    >>> s = 0.6 / 2.3548
    >>> img = 3.0 + sum(a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s * s))
    ...             for a, x0, y0 in [(300.0, 2.0, 2.0), (200.0, 7.0, 5.0)])
    >>> spots = find_spots(np.random.default_rng(0).poisson(img).astype(float), x, y)
    >>> len(spots.x_um), np.round(np.sort(spots.x_um), 1).tolist()
    (2, [2.0, 7.0])
    """
    from skimage.feature import peak_local_max

    image, x_um, y_um = _check_axes(image, x_um, y_um)
    poisson = _validate_noise(noise, image)
    if not psf_fwhm_um > 0 or not snr_min >= 0 or not max_width_ratio > 0:
        raise AnalysisInputError(
            f"psf_fwhm_um must be > 0 and snr_min >= 0 (got {psf_fwhm_um}, {snr_min})")
    n_y, n_x = image.shape
    if n_x < 3 or n_y < 3:
        raise AnalysisInputError(f"map of shape {image.shape} is too small (need ≥3×3)")
    px, py = _pixel_um(x_um), _pixel_um(y_um)
    iso_um = 1.5 * psf_fwhm_um if isolation_um is None else float(isolation_um)
    win_um = 2.5 * psf_fwhm_um if window_um is None else float(window_um)
    sigma_psf = psf_fwhm_um / FWHM_PER_SIGMA
    # matched filter narrower than the PSF (σ/2): keeps pairs ≈1.3 FWHM apart resolved
    sig_px = (0.5 * sigma_psf / py, 0.5 * sigma_psf / px)

    # 1. background and noise
    size = (max(3, int(round(3 * psf_fwhm_um / py)) | 1), max(3, int(round(3 * psf_fwhm_um / px)) | 1))
    background = ndimage.median_filter(image, size=size, mode="reflect")
    residual = image - background
    noise0 = _robust_sigma(residual)
    if not noise0 > 0:
        noise0 = math.sqrt(max(float(np.median(image)), 1.0))

    # 2. matched filter and candidates
    filtered = ndimage.gaussian_filter(residual, sig_px, mode="reflect")
    yy_k, xx_k = np.mgrid[-8:9, -8:9].astype(float)
    psf_img = np.exp(-0.5 * ((xx_k * px) ** 2 + (yy_k * py) ** 2) / sigma_psf**2)
    gain = float(ndimage.gaussian_filter(psf_img, sig_px, mode="constant")[8, 8])
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    noise_gain = float(np.sqrt(np.sum(ndimage.gaussian_filter(delta, sig_px,
                                                              mode="constant") ** 2)))
    level = 0.5 * snr_min * noise0 * gain
    level = max(level, 3.0 * noise0 * noise_gain)
    peaks = peak_local_max(filtered, min_distance=1, threshold_abs=level,
                           exclude_border=False, num_peaks=max_candidates)
    n_cand = int(len(peaks))

    # refined noise with candidate discs masked
    if n_cand:
        mask = np.zeros(image.shape, dtype=bool)
        mask[peaks[:, 0], peaks[:, 1]] = True
        r_px = (psf_fwhm_um / py, psf_fwhm_um / px)
        ry, rx = int(math.ceil(r_px[0])), int(math.ceil(r_px[1]))
        dy_k, dx_k = np.mgrid[-ry:ry + 1, -rx:rx + 1]
        disc = (dy_k / r_px[0]) ** 2 + (dx_k / r_px[1]) ** 2 <= 1.0
        mask = ndimage.binary_dilation(mask, structure=disc)
        if (~mask).sum() >= 20:
            noise_c = _robust_sigma(residual[~mask])
            mean_bg = float(np.mean(image[~mask]))
        else:
            noise_c = noise0
            mean_bg = float(np.median(image))
    else:
        noise_c = noise0
        mean_bg = float(np.mean(image))
    if not noise_c > 0:
        noise_c = noise0
    if poisson:
        # Poisson floor: the variance of raw counts is at least their mean; the robust
        # estimators are biased low on the discrete values of a dim background
        noise_c = max(noise_c, math.sqrt(max(mean_bg, 0.0)))

    empty = np.zeros(0)
    if n_cand == 0:
        return SpotList(empty, empty, empty, empty, empty, empty, empty, empty, empty, empty,
                        empty, np.zeros(0, bool), empty, np.zeros(0, bool),
                        float(noise_c), float(np.median(background)), float(psf_fwhm_um),
                        iso_um, float(snr_min), 0, 0, 0, 0)

    # 3. windows and fits (single, then joint fits of neighbouring candidates)
    p, err, cov, ok = _fit_candidates(
        image, background, x_um, y_um, peaks, win_um, sigma_psf, noise_c, poisson)
    n_failed = int((~ok).sum())
    p, err, cov = p[ok], err[ok], cov[ok]

    # merge duplicates (candidates converging on the same spot): keep the brightest
    order = np.argsort(-p[:, 0], kind="stable")
    p, err, cov = p[order], err[order], cov[order]
    keep = np.ones(len(p), dtype=bool)
    merge_um = 0.25 * psf_fwhm_um
    for i in range(len(p)):
        if not keep[i]:
            continue
        d = np.hypot(p[i + 1:, 1] - p[i, 1], p[i + 1:, 2] - p[i, 2])
        keep[i + 1:][d < merge_um] = False
    p, err, cov = p[keep], err[keep], cov[keep]

    # 4. SNR and significance cuts
    snr = p[:, 0] / noise_c
    passes_snr = snr >= snr_min
    passes_sig = p[:, 0] >= min_significance * err[:, 0]
    good = passes_snr & passes_sig
    # sources that count as neighbours for isolation: anything passing either cut
    neighbours = p[passes_snr | passes_sig, 1:3]
    n_below = int((~good).sum())
    p, err, cov, snr = p[good], err[good], cov[good], snr[good]

    # 5. isolation
    d = np.hypot(p[:, None, 1] - neighbours[None, :, 0], p[:, None, 2] - neighbours[None, :, 1])
    d[d == 0.0] = np.inf  # the spot itself
    nearest = d.min(axis=1) if neighbours.size else np.full(len(p), np.inf)
    sx, sy = p[:, 3], p[:, 4]
    fwhm = FWHM_PER_SIGMA * 0.5 * (sx + sy)
    var_mean = 0.25 * (cov[:, 3, 3] + cov[:, 4, 4] + 2 * cov[:, 3, 4])
    fwhm_err = FWHM_PER_SIGMA * np.sqrt(np.clip(var_mean, 0, None))
    fwhm_major = FWHM_PER_SIGMA * np.maximum(sx, sy)
    isolated = (nearest > iso_um) & (fwhm_major <= max_width_ratio * psf_fwhm_um)
    edge = 0.5 * psf_fwhm_um
    at_edge = ((p[:, 1] < x_um.min() + edge) | (p[:, 1] > x_um.max() - edge)
               | (p[:, 2] < y_um.min() + edge) | (p[:, 2] > y_um.max() - edge))
    n_rej = 0
    if reject_non_isolated:
        n_rej = int((~isolated).sum())
        sel = isolated
        p, err, snr, nearest = p[sel], err[sel], snr[sel], nearest[sel]
        fwhm, fwhm_err, fwhm_major = fwhm[sel], fwhm_err[sel], fwhm_major[sel]
        isolated, at_edge = isolated[sel], at_edge[sel]
    return SpotList(
        x_um=p[:, 1].copy(), x_err_um=err[:, 1].copy(), y_um=p[:, 2].copy(),
        y_err_um=err[:, 2].copy(), amplitude=p[:, 0].copy(), amplitude_err=err[:, 0].copy(),
        offset=p[:, 5].copy(), fwhm_um=fwhm, fwhm_err_um=fwhm_err, fwhm_major_um=fwhm_major,
        snr=snr, isolated=isolated, nearest_um=nearest, at_edge=at_edge,
        noise_counts=float(noise_c), background_counts=float(np.median(background)),
        psf_fwhm_um=float(psf_fwhm_um), isolation_um=iso_um, snr_min=float(snr_min),
        n_candidates=n_cand, n_failed_fits=n_failed, n_below_snr=n_below,
        n_rejected_not_isolated=n_rej)


def emptiest_position_um(image: np.ndarray, x_um: np.ndarray, y_um: np.ndarray, *,
                         radius_um: float = 1.5) -> tuple[float, float]:
    """The centre of the darkest disc of a PL map: where to measure the bare film.

    The map is averaged over discs of ``radius_um`` (a box of the same area, for
    speed) and the darkest one that lies wholly inside the map is returned.

    Parameters
    ----------
    image : ndarray, shape (n_y, n_x)
        PL map, counts per pixel.
    x_um, y_um : ndarray, shapes (n_x,) and (n_y,)
        Pixel centres, µm.
    radius_um : float
        Radius of the disc that must be free of emitters, µm.

    Returns
    -------
    (x_um, y_um) : tuple of float
        Centre of the darkest disc.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.maps import emptiest_position_um
    >>> x = np.arange(30) * 0.2
    >>> y = np.arange(30) * 0.2
    >>> xx, yy = np.meshgrid(x, y)
    >>> img = 10.0 + 500.0 * np.exp(-((xx - 1.0) ** 2 + (yy - 1.0) ** 2) / 0.5)
    >>> tuple(round(v, 1) for v in emptiest_position_um(img, x, y, radius_um=1.0))
    (5.0, 4.8)
    """
    from scipy.ndimage import uniform_filter

    image, x_um, y_um = _check_axes(image, x_um, y_um)
    if not radius_um > 0:
        raise AnalysisInputError(f"radius_um must be > 0, got {radius_um}")
    pitch = np.nanmin([_pixel_um(x_um), _pixel_um(y_um)])
    side = max(1, int(round(radius_um * math.sqrt(math.pi) / pitch)) if math.isfinite(pitch)
               else 1)
    if side > min(image.shape):
        raise AnalysisInputError(f"the map ({image.shape[1]} × {image.shape[0]} px) is "
                                 f"smaller than a disc of {radius_um} µm radius")
    mean = uniform_filter(image, size=side, mode="nearest")
    half = side // 2
    inner = mean[half:image.shape[0] - (side - 1 - half), half:image.shape[1] - (side - 1 - half)]
    iy, ix = np.unravel_index(int(np.argmin(inner)), inner.shape)
    return float(x_um[ix + half]), float(y_um[iy + half])
