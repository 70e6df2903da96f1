"""2D Gaussian fits of map windows and of a whole image (:func:`fit_gaussian_2d`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from micropl.analysis.fitcore import MAX_ITER, NONFINITE, OK, SINGULAR
from micropl.analysis.maps.kernels import _fit_batch
from micropl.analysis.maps.results import FWHM_PER_SIGMA, Gaussian2DFit, Noise
from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)


_STATUS_TEXT = {
    OK: "converged",
    MAX_ITER: "did not converge within the iteration limit",
    SINGULAR: "singular Fisher matrix (parameters not constrained by the data)",
    NONFINITE: "non-finite model or data",
}


def _check_axes(image: np.ndarray, x_um: np.ndarray, y_um: np.ndarray):
    image = np.asarray(image, dtype=float)
    x_um = np.asarray(x_um, dtype=float)
    y_um = np.asarray(y_um, dtype=float)
    if image.ndim != 2:
        raise AnalysisInputError(f"map must be 2D (n_y, n_x), got shape {image.shape}")
    n_y, n_x = image.shape
    if x_um.shape != (n_x,) or y_um.shape != (n_y,):
        raise AnalysisInputError(
            f"axes do not match the map: image {image.shape}, x_um {x_um.shape}, "
            f"y_um {y_um.shape} (expected ({n_x},) and ({n_y},))")
    if not (np.all(np.isfinite(x_um)) and np.all(np.isfinite(y_um))):
        raise AnalysisInputError("map axes contain non-finite coordinates")
    if not np.all(np.isfinite(image)):
        raise AnalysisInputError("map contains NaN or infinite counts")
    for name, axis in (("x_um", x_um), ("y_um", y_um)):
        if axis.size > 1:
            d = np.diff(axis)
            if not (np.all(d > 0) or np.all(d < 0)):
                raise AnalysisInputError(f"{name} must be strictly monotonic")
    return image, x_um, y_um


def _pixel_um(axis: np.ndarray) -> float:
    if axis.size < 2:
        return float("nan")
    return float(np.median(np.abs(np.diff(axis))))


def _robust_sigma(values: np.ndarray) -> float:
    """Standard deviation from the MAD, refined by iterative 3σ clipping."""
    v = values[np.isfinite(values)]
    if v.size < 3:
        return float("nan")
    med = np.median(v)
    sigma = 1.4826 * np.median(np.abs(v - med))
    if not sigma > 0:
        sigma = float(np.std(v))
    for _ in range(5):
        keep = np.abs(v - med) < 3.0 * sigma
        if keep.sum() < 3:
            break
        med = float(np.mean(v[keep]))
        new = float(np.std(v[keep], ddof=1)) * 1.0135  # undo the 3σ truncation bias
        if not new > 0 or abs(new - sigma) < 1e-3 * sigma:
            sigma = new if new > 0 else sigma
            break
        sigma = new
    return float(sigma)


def _validate_noise(noise: str, image: np.ndarray) -> bool:
    if noise not in ("poisson", "gaussian"):
        raise AnalysisInputError(f"noise must be 'poisson' or 'gaussian', got {noise!r}")
    poisson = noise == "poisson"
    if poisson and np.any(image < 0):
        raise AnalysisInputError(
            "map has negative counts: Poisson fitting needs raw counts "
            "(use noise='gaussian' for background-subtracted maps)")
    return poisson


def _component_ok(p, err, lo, hi):
    """Per-component acceptance: finite errors, positive amplitude, nothing on a bound."""
    span = hi - lo
    tol = 1e-6 * np.where(np.isfinite(span), span, 1.0)
    at_bound = (np.abs(p - lo) <= tol) | (np.abs(p - hi) <= tol)
    return bool(np.all(np.isfinite(err)) and p[0] > 0 and not np.any(at_bound[1:5]))


def _fit_candidates(image, background, x_um, y_um, peaks, win_um, sigma_psf, noise_c,
                    poisson):
    """Fit every candidate; neighbours whose windows overlap are refitted jointly.

    Returns per-candidate parameters ``(n, 6)`` ``[A, x0, y0, sx, sy, offset]``, their
    errors ``(n, 6)``, the ``(n, 6, 6)`` covariance blocks and an ``ok`` mask.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n_y, n_x = image.shape
    px, py = _pixel_um(x_um), _pixel_um(y_um)
    hy = max(1, int(math.ceil(0.5 * win_um / py)))
    hx = max(1, int(math.ceil(0.5 * win_um / px)))
    s_lo, s_hi = 0.5 * sigma_psf, 2.5 * sigma_psf
    off_lo = 1e-9 if poisson else -np.inf
    n = len(peaks)
    boxes = np.column_stack([np.maximum(peaks[:, 0] - hy, 0), np.minimum(peaks[:, 0] + hy + 1, n_y),
                             np.maximum(peaks[:, 1] - hx, 0), np.minimum(peaks[:, 1] + hx + 1, n_x)])
    amp0 = np.maximum(image[peaks[:, 0], peaks[:, 1]] - background[peaks[:, 0], peaks[:, 1]],
                      noise_c)

    def window(r0, r1, c0, c1):
        wx, wy = np.meshgrid(x_um[c0:c1], y_um[r0:r1])
        return image[r0:r1, c0:c1].ravel(), wx.ravel(), wy.ravel()

    def setup(members, box):
        r0, r1, c0, c1 = box
        xs, ys = x_um[c0:c1], y_um[r0:r1]
        clo = [xs.min() - 0.5 * px, ys.min() - 0.5 * py]
        chi = [xs.max() + 0.5 * px, ys.max() + 0.5 * py]
        p0, lo, hi = [], [], []
        for m in members:
            iy, ix = peaks[m]
            p0 += [amp0[m], x_um[ix], y_um[iy], sigma_psf, sigma_psf]
            lo += [0.0, clo[0], clo[1], s_lo, s_lo]
            hi += [np.inf, chi[0], chi[1], s_hi, s_hi]
        off0 = max(float(np.median(background[r0:r1, c0:c1])), 1e-3)
        return p0 + [off0], lo + [off_lo], hi + [np.inf]

    # single fits, all candidates in one compiled batch
    zs, xs_, ys_, starts, p0s, los, his = [], [], [], [0], [], [], []
    for m in range(n):
        z, wx, wy = window(*boxes[m])
        zs.append(z)
        xs_.append(wx)
        ys_.append(wy)
        starts.append(starts[-1] + z.size)
        p0, lo, hi = setup([m], boxes[m])
        p0s.append(p0)
        los.append(lo)
        his.append(hi)
    lo_arr = np.array(los, dtype=float)
    hi_arr = np.array(his, dtype=float)
    p, cov, status, _, _ = _fit_batch(
        np.concatenate(zs), np.concatenate(xs_), np.concatenate(ys_),
        np.array(starts, dtype=np.int64), np.array(p0s, dtype=float), lo_arr, hi_arr,
        False, poisson, 100)
    with np.errstate(invalid="ignore"):
        err = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
    ok = np.array([status[m] == OK and _component_ok(p[m], err[m], lo_arr[m], hi_arr[m])
                   for m in range(n)], dtype=bool)

    # groups of candidates closer than a window half-width plus one PSF FWHM
    if n > 1:
        link_um = 0.5 * win_um + FWHM_PER_SIGMA * sigma_psf
        pos = np.column_stack([x_um[peaks[:, 1]], y_um[peaks[:, 0]]])
        pairs = np.array(sorted(cKDTree(pos).query_pairs(link_um)), dtype=np.int64)
        if pairs.size:
            graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
            _, labels = connected_components(graph, directed=False)
            for label in np.unique(labels):
                members = np.flatnonzero(labels == label)
                if not 2 <= members.size <= 6:
                    continue  # singles, or crowded clusters (flagged by isolation anyway)
                members = members[np.argsort(-amp0[members], kind="stable")]
                while members.size >= 2:
                    box = (boxes[members, 0].min(), boxes[members, 1].max(),
                           boxes[members, 2].min(), boxes[members, 3].max())
                    z, wx, wy = window(*box)
                    p0, lo, hi = setup(members, box)
                    pg, cg, sg, _, _ = _fit_batch(
                        z, wx, wy, np.array([0, z.size], dtype=np.int64),
                        np.array([p0], float), np.array([lo], float), np.array([hi], float),
                        False, poisson, 200)
                    with np.errstate(invalid="ignore"):
                        eg = np.sqrt(np.diag(cg[0]))
                    lo_g, hi_g = np.array(lo), np.array(hi)
                    comps = []
                    for j in range(members.size):
                        sl = list(range(5 * j, 5 * j + 5)) + [len(p0) - 1]
                        comps.append(sl)
                    good = sg[0] == OK and all(
                        _component_ok(pg[0][sl], eg[sl], lo_g[sl], hi_g[sl]) for sl in comps)
                    if good:
                        for m, sl in zip(members, comps):
                            p[m] = pg[0][sl]
                            err[m] = eg[sl]
                            cov[m] = cg[0][np.ix_(sl, sl)]
                            ok[m] = True
                        break
                    members = members[:-1]  # drop the faintest candidate and retry
    return p, err, cov, ok


# --------------------------------------------------------------------------- public API
def fit_gaussian_2d(image: np.ndarray, x_um: np.ndarray, y_um: np.ndarray, *,
                    noise: Noise = "poisson", circular: bool = False,
                    min_significance: float = 3.0, max_iter: int = 200) -> Gaussian2DFit:
    """Fit one 2D Gaussian plus a constant offset to a small map.

    Parameters
    ----------
    image : ndarray, shape (n_y, n_x)
        Counts per pixel (raw counts when ``noise="poisson"``).
    x_um : ndarray, shape (n_x,)
        Pixel-centre x coordinates in µm (strictly monotonic).
    y_um : ndarray, shape (n_y,)
        Pixel-centre y coordinates in µm (strictly monotonic).
    noise : {"poisson", "gaussian"}
        Poisson maximum likelihood (default) or unweighted least squares.
    circular : bool
        Fit one σ for both axes (then ``sigma_x_um == sigma_y_um``).
    min_significance : float
        The fit fails unless ``amplitude / amplitude_err`` reaches this value.
    max_iter : int
        Iteration limit of the damped Fisher-scoring loop.

    Returns
    -------
    Gaussian2DFit
        Centre, widths, amplitude and offset with 1σ errors, ``success`` and ``reason``.
        The centre is bounded to the scanned area (±½ pixel), so the result never points
        outside the window that was measured; a centre on that bound fails with a reason.

    Raises
    ------
    AnalysisInputError
        Shapes do not match, non-finite values, or negative counts with Poisson noise.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.maps import fit_gaussian_2d
    >>> x = np.arange(20) * 0.1
    >>> y = np.arange(16) * 0.1
    >>> xx, yy = np.meshgrid(x, y)
    >>> img = 5.0 + 400.0 * np.exp(-((xx - 1.0) ** 2 + (yy - 0.7) ** 2) / (2 * 0.25 ** 2))
    >>> fit = fit_gaussian_2d(np.random.default_rng(0).poisson(img).astype(float), x, y)
    >>> bool(fit.success), round(fit.x0_um, 2), round(fit.y0_um, 2)
    (True, 1.0, 0.7)
    """
    image, x_um, y_um = _check_axes(image, x_um, y_um)
    poisson = _validate_noise(noise, image)
    n_y, n_x = image.shape
    npar = 5 if circular else 6
    if n_x < 3 or n_y < 3 or image.size <= npar + 1:
        raise AnalysisInputError(
            f"map of shape {image.shape} is too small for a 2D Gaussian fit (need ≥3×3)")
    px = _pixel_um(x_um)
    py = _pixel_um(y_um)
    xx, yy = np.meshgrid(x_um, y_um)
    # initial guess from a lightly smoothed copy
    smooth = ndimage.gaussian_filter(image, 0.7, mode="nearest")
    border = np.concatenate([image[0], image[-1], image[1:-1, 0], image[1:-1, -1]])
    offset0 = float(np.median(border))
    iy, ix = np.unravel_index(int(np.argmax(smooth)), image.shape)
    amp0 = max(float(smooth[iy, ix]) - offset0, 1e-6)
    above = smooth - offset0 > 0.5 * amp0
    r_half = math.sqrt(max(int(above.sum()), 1) * px * py / math.pi)
    sigma0 = max(r_half / 1.1774, 0.5 * min(px, py))
    x_lo, x_hi = float(x_um.min()) - 0.5 * px, float(x_um.max()) + 0.5 * px
    y_lo, y_hi = float(y_um.min()) - 0.5 * py, float(y_um.max()) + 0.5 * py
    extent = max(x_hi - x_lo, y_hi - y_lo)
    s_lo, s_hi = 0.25 * min(px, py), extent
    off_lo = 1e-9 if poisson else -np.inf
    if circular:
        p0 = [amp0, xx[iy, ix], yy[iy, ix], sigma0, max(offset0, 1e-3)]
        lo = [0.0, x_lo, y_lo, s_lo, off_lo]
        hi = [np.inf, x_hi, y_hi, s_hi, np.inf]
    else:
        p0 = [amp0, xx[iy, ix], yy[iy, ix], sigma0, sigma0, max(offset0, 1e-3)]
        lo = [0.0, x_lo, y_lo, s_lo, s_lo, off_lo]
        hi = [np.inf, x_hi, y_hi, s_hi, s_hi, np.inf]
    z = np.ascontiguousarray(image.ravel())
    p_out, cov_out, status, red, n_iter = _fit_batch(
        z, np.ascontiguousarray(xx.ravel()), np.ascontiguousarray(yy.ravel()),
        np.array([0, z.size], dtype=np.int64), np.array([p0], dtype=float),
        np.array([lo], dtype=float), np.array([hi], dtype=float), circular, poisson, max_iter)
    p = p_out[0]
    err = np.sqrt(np.clip(np.diag(cov_out[0]), 0.0, None))
    if not np.all(np.isfinite(np.diag(cov_out[0]))):
        err = np.full(npar, np.nan)
    st = int(status[0])
    sx = p[3]
    sy = p[3] if circular else p[4]
    sx_err = err[3]
    sy_err = err[3] if circular else err[4]
    reason = "ok"
    tol_x, tol_y = 1e-6 * max(px, 1e-12), 1e-6 * max(py, 1e-12)
    if st != OK:
        reason = _STATUS_TEXT[st]
    elif not (x_lo + tol_x < p[1] < x_hi - tol_x and y_lo + tol_y < p[2] < y_hi - tol_y):
        reason = "centre at the edge of the scanned area: the peak may lie outside it"
    elif not (s_lo * (1 + 1e-6) < min(sx, sy) and max(sx, sy) < s_hi * (1 - 1e-6)):
        reason = "width at its bound: no spot-like peak in the image"
    elif not np.all(np.isfinite(err)):
        reason = "covariance not finite"
    elif not p[0] > min_significance * err[0]:
        reason = (f"amplitude not significant: {p[0]:.3g} ± {err[0]:.3g} "
                  f"(< {min_significance:g}σ)")
    success = reason == "ok"
    if not success:
        log.debug("fit_gaussian_2d failed: %s", reason)
    return Gaussian2DFit(
        success=success, reason=reason,
        x0_um=float(p[1]), x0_err_um=float(err[1]), y0_um=float(p[2]), y0_err_um=float(err[2]),
        amplitude=float(p[0]), amplitude_err=float(err[0]),
        offset=float(p[-1]), offset_err=float(err[-1]),
        sigma_x_um=float(sx), sigma_x_err_um=float(sx_err),
        sigma_y_um=float(sy), sigma_y_err_um=float(sy_err),
        red_chi2=float(red[0]), n_iter=int(n_iter[0]))
