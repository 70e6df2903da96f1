"""Spot finding, 2D Gaussian fits and drift registration for PL maps.

A PL map is an image of counts per pixel, shape ``(n_y, n_x)``, with pixel-centre
coordinates ``x_um`` (shape ``(n_x,)``) and ``y_um`` (shape ``(n_y,)``). A single QD
appears as a Gaussian spot of about the PSF width (≈0.6 µm FWHM) on a weak background.

* :func:`find_spots` — candidates from a matched filter and
  :func:`skimage.feature.peak_local_max`, each refined by a 2D Gaussian fit on a small
  window, with an SNR cut and an isolation flag.
* :func:`fit_gaussian_2d` — one elliptical Gaussian plus offset on a whole (small) image;
  used by the refocus procedure.
* :func:`register_shift_um` — drift between two maps of the same area by cross-correlation.

Fitting model
-------------
``counts(x, y) = A·exp(−(x−x0)²/(2σx²) − (y−y0)²/(2σy²)) + offset``.
By default (``noise="poisson"``) the parameters are the Poisson maximum-likelihood
estimate, found by a damped Fisher-scoring (Levenberg–Marquardt) iteration compiled with
numba. The 1σ errors are the square roots of the diagonal of the inverse Fisher
information, multiplied by ``sqrt(max(1, χ²_red))`` where χ²_red is Pearson's reduced χ²:
for pure Poisson data the factor is ≈1; for over-dispersed data (blinking during the scan,
EMCCD excess noise) the errors grow accordingly (quasi-Poisson). With
``noise="gaussian"`` it is an unweighted least-squares fit whose covariance is scaled by
the residual variance (as :func:`scipy.optimize.curve_fit` does with
``absolute_sigma=False``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from scipy import ndimage

from micropl.errors import AnalysisInputError

__all__ = [
    "FWHM_PER_SIGMA",
    "Gaussian2DFit",
    "ImageShift",
    "SpotList",
    "emptiest_position_um",
    "find_spots",
    "fit_gaussian_2d",
    "register_shift_um",
]

log = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""Ratio FWHM / σ of a Gaussian (≈2.3548)."""

Noise = Literal["poisson", "gaussian"]

# status codes of the compiled fitter
_OK, _MAX_ITER, _SINGULAR, _NONFINITE = 0, 1, 2, 3
_STATUS_TEXT = {
    _OK: "converged",
    _MAX_ITER: "did not converge within the iteration limit",
    _SINGULAR: "singular Fisher matrix (parameters not constrained by the data)",
    _NONFINITE: "non-finite model or data",
}


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Gaussian2DFit:
    """Result of :func:`fit_gaussian_2d`.

    All positions and widths are in µm, amplitude and offset in counts per pixel.
    Errors are 1σ. When ``success`` is False the values are the last iterate (may be
    meaningless) and ``reason`` says why.

    Attributes
    ----------
    success : bool
        True when the fit converged with the centre inside the image, a width within its
        bounds and a significant amplitude.
    reason : str
        ``"ok"`` or why the fit is not trusted.
    x0_um, x0_err_um, y0_um, y0_err_um : float
        Centre and its error.
    amplitude, amplitude_err : float
        Peak height above the offset (counts per pixel).
    offset, offset_err : float
        Constant background (counts per pixel).
    sigma_x_um, sigma_x_err_um, sigma_y_um, sigma_y_err_um : float
        Gaussian standard deviations along x and y.
    red_chi2 : float
        Reduced χ² (Pearson's for Poisson noise, residual variance ratio otherwise).
    n_iter : int
        Iterations used.
    """

    success: bool
    reason: str
    x0_um: float
    x0_err_um: float
    y0_um: float
    y0_err_um: float
    amplitude: float
    amplitude_err: float
    offset: float
    offset_err: float
    sigma_x_um: float
    sigma_x_err_um: float
    sigma_y_um: float
    sigma_y_err_um: float
    red_chi2: float
    n_iter: int

    @property
    def fwhm_x_um(self) -> float:
        """FWHM along x in µm."""
        return FWHM_PER_SIGMA * self.sigma_x_um

    @property
    def fwhm_y_um(self) -> float:
        """FWHM along y in µm."""
        return FWHM_PER_SIGMA * self.sigma_y_um


@dataclass(frozen=True)
class SpotList:
    """Spots found in a PL map, sorted by amplitude (brightest first).

    Every array has shape ``(n_spots,)``. Errors are 1σ.

    Attributes
    ----------
    x_um, x_err_um, y_um, y_err_um : ndarray of float
        Sub-pixel spot centres in µm and their errors.
    amplitude, amplitude_err : ndarray of float
        Peak height above the local offset, counts per pixel.
    offset : ndarray of float
        Local background under the spot, counts per pixel.
    fwhm_um, fwhm_err_um : ndarray of float
        Mean FWHM ``2.355·(σx+σy)/2`` in µm.
    fwhm_major_um : ndarray of float
        FWHM along the wider axis (x or y) in µm; an unresolved pair shows up here.
    snr : ndarray of float
        ``amplitude / noise_counts``.
    isolated : ndarray of bool
        No other reported spot closer than ``isolation_um`` and a width compatible with a
        single PSF (``fwhm_major_um <= max_width_ratio * psf_fwhm_um``).
    nearest_um : ndarray of float
        Distance in µm to the nearest other source (``inf`` when alone). Sources include
        fitted candidates that pass only one of the SNR and significance cuts, so a
        crowded neighbour that is not reported still counts.
    at_edge : ndarray of bool
        Centre closer than half a PSF FWHM to the map border (fit window truncated).
    noise_counts : float
        Robust standard deviation of the background, counts per pixel.
    background_counts : float
        Median background level, counts per pixel.
    psf_fwhm_um, isolation_um, snr_min : float
        Settings used.
    n_candidates : int
        Local maxima passed to the fitter.
    n_failed_fits : int
        Candidates whose fit failed (not reported).
    n_below_snr : int
        Fitted candidates rejected by the SNR or significance cut.
    n_rejected_not_isolated : int
        Spots removed because ``reject_non_isolated`` was set (0 otherwise).
    """

    x_um: np.ndarray
    x_err_um: np.ndarray
    y_um: np.ndarray
    y_err_um: np.ndarray
    amplitude: np.ndarray
    amplitude_err: np.ndarray
    offset: np.ndarray
    fwhm_um: np.ndarray
    fwhm_err_um: np.ndarray
    fwhm_major_um: np.ndarray
    snr: np.ndarray
    isolated: np.ndarray
    nearest_um: np.ndarray
    at_edge: np.ndarray
    noise_counts: float
    background_counts: float
    psf_fwhm_um: float
    isolation_um: float
    snr_min: float
    n_candidates: int
    n_failed_fits: int
    n_below_snr: int
    n_rejected_not_isolated: int

    def __len__(self) -> int:
        return int(self.x_um.size)


@dataclass(frozen=True)
class ImageShift:
    """Drift of an image relative to a reference image.

    A feature at ``(x, y)`` in the reference appears at ``(x + dx_um, y + dy_um)`` in the
    image, in the coordinates of the index axes (x = column index direction, y = row index
    direction, each multiplied by the pixel size).

    Attributes
    ----------
    dx_um, dy_um : float
        Shift along x (columns) and y (rows) in µm.
    error : float
        Translation-invariant normalised RMS error reported by scikit-image (0 = perfect
        match; values near 1 mean the maps share no structure and the shift is
        meaningless).
    """

    dx_um: float
    dy_um: float
    error: float


# --------------------------------------------------------------------------- compiled fitter
@numba.njit(cache=True, nogil=True)
def _model_jac(p, x, y, circular, mu, jac):
    """Sum of k Gaussians plus offset. Layout: k × [A, x0, y0, sx(, sy)], then offset."""
    npc = 4 if circular else 5
    npar = p.size
    k = (npar - 1) // npc
    c = p[npar - 1]
    for i in range(x.size):
        mu[i] = c
        jac[i, npar - 1] = 1.0
    for j in range(k):
        o = j * npc
        amp = p[o]
        x0 = p[o + 1]
        y0 = p[o + 2]
        sx = p[o + 3]
        sy = p[o + 3] if circular else p[o + 4]
        for i in range(x.size):
            dx = x[i] - x0
            dy = y[i] - y0
            e = math.exp(-0.5 * (dx * dx / (sx * sx) + dy * dy / (sy * sy)))
            ae = amp * e
            mu[i] += ae
            jac[i, o] = e
            jac[i, o + 1] = ae * dx / (sx * sx)
            jac[i, o + 2] = ae * dy / (sy * sy)
            if circular:
                jac[i, o + 3] = ae * (dx * dx + dy * dy) / (sx * sx * sx)
            else:
                jac[i, o + 3] = ae * dx * dx / (sx * sx * sx)
                jac[i, o + 4] = ae * dy * dy / (sy * sy * sy)


@numba.njit(cache=True, nogil=True)
def _objective(z, mu, poisson):
    s = 0.0
    for i in range(z.size):
        if poisson:
            m = max(mu[i], 1e-12)
            s += m - z[i] * math.log(m)
        else:
            r = z[i] - mu[i]
            s += 0.5 * r * r
    return s


@numba.njit(cache=True, nogil=True)
def _grad_hess(z, mu, jac, poisson, g, h):
    npar = g.size
    g[:] = 0.0
    h[:, :] = 0.0
    for i in range(z.size):
        if poisson:
            m = max(mu[i], 1e-12)
            w = 1.0 / m
            gi = 1.0 - z[i] / m
        else:
            w = 1.0
            gi = mu[i] - z[i]
        for a in range(npar):
            g[a] += gi * jac[i, a]
            for b in range(a, npar):
                h[a, b] += w * jac[i, a] * jac[i, b]
    for a in range(npar):
        for b in range(a):
            h[a, b] = h[b, a]


@numba.njit(cache=True, nogil=True)
def _solve(a_in, b_in, out):
    """Gaussian elimination with partial pivoting; returns False when singular."""
    n = b_in.size
    a = a_in.copy()
    b = b_in.copy()
    for k in range(n):
        piv = k
        best = abs(a[k, k])
        for r in range(k + 1, n):
            if abs(a[r, k]) > best:
                best = abs(a[r, k])
                piv = r
        if not best > 0.0 or not math.isfinite(best):
            return False
        if piv != k:
            for c in range(n):
                tmp = a[k, c]
                a[k, c] = a[piv, c]
                a[piv, c] = tmp
            tmp = b[k]
            b[k] = b[piv]
            b[piv] = tmp
        for r in range(k + 1, n):
            f = a[r, k] / a[k, k]
            if f != 0.0:
                for c in range(k, n):
                    a[r, c] -= f * a[k, c]
                b[r] -= f * b[k]
    for k in range(n - 1, -1, -1):
        s = b[k]
        for c in range(k + 1, n):
            s -= a[k, c] * out[c]
        out[k] = s / a[k, k]
    return True


@numba.njit(cache=True, nogil=True)
def _fit_one(z, x, y, p0, lo, hi, circular, poisson, max_iter, p_out, cov_out):
    """Damped Fisher scoring / Gauss–Newton. Returns (status, red_chi2, n_iter)."""
    npar = p0.size
    n = z.size
    mu = np.empty(n)
    jac = np.empty((n, npar))
    g = np.empty(npar)
    h = np.empty((npar, npar))
    step = np.empty(npar)
    p = np.empty(npar)
    pn = np.empty(npar)
    for a in range(npar):
        p[a] = min(max(p0[a], lo[a]), hi[a])
    _model_jac(p, x, y, circular, mu, jac)
    obj = _objective(z, mu, poisson)
    if not math.isfinite(obj):
        p_out[:] = p
        cov_out[:, :] = np.nan
        return _NONFINITE, np.nan, 0
    _grad_hess(z, mu, jac, poisson, g, h)
    lam = 1e-3
    status = _MAX_ITER
    it = 0
    damped = np.empty((npar, npar))
    neg_g = np.empty(npar)
    while it < max_iter:
        it += 1
        for a in range(npar):
            neg_g[a] = -g[a]
            for b in range(npar):
                damped[a, b] = h[a, b]
            damped[a, a] = h[a, a] * (1.0 + lam) + 1e-300
        if not _solve(damped, neg_g, step):
            status = _SINGULAR
            break
        for a in range(npar):
            pn[a] = min(max(p[a] + step[a], lo[a]), hi[a])
        _model_jac(pn, x, y, circular, mu, jac)
        obj_new = _objective(z, mu, poisson)
        if math.isfinite(obj_new) and obj_new <= obj:
            decrease = obj - obj_new
            small_step = True
            for a in range(npar):
                if abs(pn[a] - p[a]) > 1e-7 * (abs(p[a]) + 1e-6):
                    small_step = False
            p[:] = pn
            obj = obj_new
            _grad_hess(z, mu, jac, poisson, g, h)
            lam = max(lam * 0.2, 1e-9)
            if decrease <= 1e-10 * (abs(obj) + 1e-3) or small_step:
                status = _OK
                break
        else:
            lam *= 10.0
            if lam > 1e10:
                # no downhill step exists at any damping: p is a (bounded) minimum
                status = _OK
                break
    # final model, Fisher matrix and covariance
    _model_jac(p, x, y, circular, mu, jac)
    _grad_hess(z, mu, jac, poisson, g, h)
    p_out[:] = p
    chi2 = 0.0
    for i in range(n):
        r = z[i] - mu[i]
        if poisson:
            chi2 += r * r / max(mu[i], 1e-12)
        else:
            chi2 += r * r
    dof = n - npar
    red = chi2 / dof if dof > 0 else np.nan
    unit = np.zeros(npar)
    col = np.empty(npar)
    for a in range(npar):
        unit[:] = 0.0
        unit[a] = 1.0
        if not _solve(h, unit, col):
            cov_out[:, :] = np.nan
            return _SINGULAR, red, it
        for b in range(npar):
            cov_out[b, a] = col[b]
    if poisson:
        scale = max(1.0, red) if math.isfinite(red) else 1.0
    else:
        scale = red if math.isfinite(red) else np.nan
    for a in range(npar):
        for b in range(npar):
            cov_out[a, b] *= scale
    if not math.isfinite(obj):
        return _NONFINITE, red, it
    return status, red, it


@numba.njit(cache=True, nogil=True)
def _fit_batch(z_flat, x_flat, y_flat, starts, p0s, los, his, circular, poisson, max_iter):
    n_fit = starts.size - 1
    npar = p0s.shape[1]
    p_out = np.empty((n_fit, npar))
    cov_out = np.empty((n_fit, npar, npar))
    status = np.empty(n_fit, dtype=np.int64)
    red = np.empty(n_fit)
    n_iter = np.empty(n_fit, dtype=np.int64)
    for k in range(n_fit):
        a = starts[k]
        b = starts[k + 1]
        st, rc, ni = _fit_one(z_flat[a:b], x_flat[a:b], y_flat[a:b], p0s[k], los[k], his[k],
                              circular, poisson, max_iter, p_out[k], cov_out[k])
        status[k] = st
        red[k] = rc
        n_iter[k] = ni
    return p_out, cov_out, status, red, n_iter


# --------------------------------------------------------------------------- helpers
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
    ok = np.array([status[m] == _OK and _component_ok(p[m], err[m], lo_arr[m], hi_arr[m])
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
                    good = sg[0] == _OK and all(
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
    if st != _OK:
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


def register_shift_um(reference_image: np.ndarray, image: np.ndarray,
                      pixel_um: float | tuple[float, float], *,
                      upsample_factor: int = 20) -> ImageShift:
    """Drift between two maps of the same area, by cross-correlation (sub-pixel).

    Both maps are mean-subtracted and tapered with a Hann window before a plain
    (not phase-normalised) cross-correlation, which is robust to shot noise on sparse
    spots; the peak is refined by upsampled DFT
    (:func:`skimage.registration.phase_cross_correlation`).

    Parameters
    ----------
    reference_image : ndarray, shape (n_y, n_x)
        Earlier map (counts per pixel).
    image : ndarray, shape (n_y, n_x)
        Later map of the same area with the same pixel grid.
    pixel_um : float or (float, float)
        Pixel size in µm, one value or ``(pixel_y_um, pixel_x_um)``.
    upsample_factor : int
        Sub-pixel resolution: 1/``upsample_factor`` of a pixel.

    Returns
    -------
    ImageShift
        ``dx_um``, ``dy_um``: where a feature of the reference has moved to in ``image``.
        To correct drift, move the scanner by ``(-dx_um, -dy_um)``.

    Raises
    ------
    AnalysisInputError
        Shapes differ, maps are not 2D or contain non-finite values, or the pixel size
        is not positive.
    """
    from skimage.registration import phase_cross_correlation

    ref = np.asarray(reference_image, dtype=float)
    mov = np.asarray(image, dtype=float)
    if ref.ndim != 2 or ref.shape != mov.shape:
        raise AnalysisInputError(
            f"maps must be 2D with equal shapes, got {ref.shape} and {mov.shape}")
    if min(ref.shape) < 4:
        raise AnalysisInputError(f"maps of shape {ref.shape} are too small to register")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(mov))):
        raise AnalysisInputError("maps contain NaN or infinite counts")
    pix = np.broadcast_to(np.asarray(pixel_um, dtype=float), (2,))
    if not np.all(pix > 0):
        raise AnalysisInputError(f"pixel_um must be positive, got {pixel_um}")
    taper = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    a = (ref - ref.mean()) * taper
    b = (mov - mov.mean()) * taper
    if not (np.any(a) and np.any(b)):
        raise AnalysisInputError("a map is constant: nothing to register")
    shift, error, _ = phase_cross_correlation(a, b, upsample_factor=upsample_factor,
                                              normalization=None)
    # skimage returns the shift that registers `image` onto the reference
    return ImageShift(dx_um=float(-shift[1] * pix[1]), dy_um=float(-shift[0] * pix[0]),
                      error=float(error))
