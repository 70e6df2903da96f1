"""Robust first estimate of the strongest line and the automatic fit range.

The one rule of every path for ``roi_nm="auto"``: :func:`estimate_line` and
:func:`main_line_roi_nm`; the start values of a one-line fit come from the same estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from micropl.analysis.spectra.axes import _check_axis, pixel_energy_width_ev
from micropl.analysis.spectra.profiles import _SQRT_PI
from micropl.errors import AnalysisInputError

#: Half-width of the automatic fit range, in FWHM of the line's first estimate.
ROI_FWHM_MULTIPLE = 4.0


#: Fewest pixels on each side of the line's centre in the automatic fit range.
ROI_MIN_HALF_PX = 8


_SMOOTHING_PASSES = 6


@dataclass(frozen=True)
class LineEstimate:
    """Robust first estimate of the strongest line of one spectrum (see :func:`estimate_line`).

    Attributes
    ----------
    index : int
        Pixel of the line's maximum.
    fwhm_px : float
        Estimated FWHM in pixels.
    height : float
        Peak height above the background, counts per pixel (smoothed).
    background : float
        Background level, counts per pixel.
    lo, hi : int
        The automatic fit range: pixels ``lo … hi`` (inclusive).
    """

    index: int
    fwhm_px: float
    height: float
    background: float
    lo: int
    hi: int


def _half_width_px(g: np.ndarray, j: int, half: float, step: int) -> tuple[float, bool]:
    """Distance in pixels from ``j`` to where ``g`` falls below ``half`` for two pixels."""
    n = g.size
    i = j
    while 0 <= i + step < n:
        nxt = i + step
        if g[nxt] < half and not (0 <= nxt + step < n and g[nxt + step] >= half):
            drop = g[i] - g[nxt]
            frac = (g[i] - half) / drop if drop > 0 else 0.0
            return abs(i - j) + float(frac), True
        i = nxt
    return abs(i - j) + 0.5, False


def _line_signal(y: np.ndarray, width_ev: np.ndarray, background: float,
                 sigma_px: float) -> np.ndarray:
    """The 3-pixel running median, background removed, as a density per eV (scaled to
    counts per typical pixel), smoothed by a Gaussian of ``sigma_px`` (none below 1)."""
    med = median_filter(y, size=3, mode="nearest") if y.size >= 3 else y
    sig = (med - background) * (float(np.median(width_ev)) / width_ev)
    return gaussian_filter1d(sig, sigma_px, mode="nearest") if sigma_px >= 1.0 else sig


def estimate_line(wavelength_nm, counts) -> LineEstimate:
    """Robust first estimate of the strongest line and the automatic fit range.

    The spectrum is cleared of single-pixel spikes by a 3-pixel running
    median (a cosmic ray or a noise spike narrower than the resolution does
    not move the estimate), converted to a density per eV, smoothed with a
    Gaussian of FWHM/6 (none for lines narrower than 6 pixels; the width is
    iterated from 1 pixel until it settles), and its maximum above the
    background (the 10th percentile) taken. The FWHM is where the smoothed density stays below
    half maximum for two pixels on each side. The fit range is the centre
    ± :data:`ROI_FWHM_MULTIPLE` × FWHM (at least :data:`ROI_MIN_HALF_PX`
    pixels), clipped to the data, and cut at the valley before a neighbouring
    line (a rise of more than a quarter of the line's height and 5σ of the
    smoothed noise).

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel wavelengths in nm.
    counts : array_like, shape (n_px,)
        Counts per pixel.

    Returns
    -------
    LineEstimate

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import estimate_line
    >>> x = np.arange(200.0)
    >>> counts = 10.0 + 1000.0 / (1.0 + ((x - 80.0) / 3.0) ** 2)         # FWHM 6 pixels
    >>> est = estimate_line(500.0 + 0.05 * x, counts)
    >>> est.index, round(est.fwhm_px), (est.lo, est.hi)
    (80, 7, (50, 110))
    """
    wl = _check_axis(wavelength_nm)
    y = np.asarray(counts, dtype=np.float64)
    if y.shape != wl.shape:
        raise AnalysisInputError(f"counts shape {y.shape} does not match the axis {wl.shape}")
    if not np.all(np.isfinite(y)):
        raise AnalysisInputError("counts contain NaN or infinite values")
    return _estimate(y, pixel_energy_width_ev(wl))


def _estimate(y: np.ndarray, width_ev: np.ndarray) -> LineEstimate:
    n = y.size
    med = median_filter(y, size=3, mode="nearest") if n >= 3 else y
    background = float(np.percentile(gaussian_filter1d(med, 2.0, mode="nearest"), 10))
    # Smoothing matched to the line's width (FWHM/6), iterated from 1 pixel: noise makes
    # the first width too small, and the smoother curve then shows more of the line.
    sigma = 1.0
    for _ in range(_SMOOTHING_PASSES):
        g = _line_signal(y, width_ev, background, sigma)
        fwhm_px = _fwhm_px(g, int(np.argmax(g)))
        new = fwhm_px / 6.0
        if abs(new - sigma) <= 0.1 * sigma or (new < 1.0 and sigma <= 1.0):
            break
        sigma = new
    g = _line_signal(y, width_ev, background, sigma)
    j = int(np.argmax(g))
    height = float(g[j])
    if not height > 0:
        return LineEstimate(j, max(n / 4.0, 1.0), 0.0, background, 0, n - 1)
    fwhm_px = _fwhm_px(g, j)
    noise_px = 1.4826 * float(np.median(np.abs(np.diff(y)))) / math.sqrt(2.0)
    rise = max(0.25 * height, 5.0 * noise_px / math.sqrt(2.0 * _SQRT_PI * max(sigma, 0.5)))
    half_range = max(ROI_FWHM_MULTIPLE * fwhm_px, float(ROI_MIN_HALF_PX))
    lo = _range_end(g, j, -1, half_range, height, rise)
    hi = _range_end(g, j, +1, half_range, height, rise)
    return LineEstimate(j, fwhm_px, height, background, lo, hi)


def _fwhm_px(g: np.ndarray, j: int) -> float:
    half = 0.5 * g[j]
    left, left_ok = _half_width_px(g, j, half, -1)
    right, right_ok = _half_width_px(g, j, half, +1)
    if left_ok and not right_ok:
        right = left
    elif right_ok and not left_ok:
        left = right
    return max(left + right, 1.0)


def _range_end(g: np.ndarray, j: int, step: int, half_range: float, height: float,
               rise: float) -> int:
    """Last pixel of the range on one side: the reach, the data's end or a valley."""
    n = g.size
    reach = int(math.ceil(half_range))
    end = min(max(j + step * reach, 0), n - 1)
    i = j
    while i != end and g[i] >= 0.5 * height:  # the line itself
        i += step
    low_i, low = i, g[i]
    while i != end:
        i += step
        if g[i] < low:
            low_i, low = i, g[i]
        elif g[i] > low + rise:
            return low_i  # a neighbouring line rises beyond this valley
    return end


def main_line_roi_nm(wavelength_nm, counts) -> tuple[float, float]:
    """Wavelength range that the automatic fit of the strongest line uses.

    The one rule of every path (``fit_spectra(roi_nm="auto")``, the CLI, the
    live analysis): see :func:`estimate_line`.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel wavelengths in nm.
    counts : array_like, shape (n_px,)
        Counts per pixel.

    Returns
    -------
    (float, float)
        ``(low_nm, high_nm)``: the wavelengths of the first and last pixel fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import main_line_roi_nm
    >>> x = np.arange(200.0)
    >>> counts = 10.0 + 1000.0 / (1.0 + ((x - 80.0) / 3.0) ** 2)
    >>> tuple(round(v, 2) for v in main_line_roi_nm(500.0 + 0.05 * x, counts))
    (502.5, 505.5)
    """
    wl = _check_axis(wavelength_nm)
    est = estimate_line(wl, counts)
    a, b = wl[est.lo], wl[est.hi]
    return float(min(a, b)), float(max(a, b))


def _start_params(model: str, est: LineEstimate, centres_ev: np.ndarray,
                  width_ev: np.ndarray) -> np.ndarray:
    """Starting parameters of a one-line fit from a :class:`LineEstimate`."""
    j = est.index
    fwhm = est.fwhm_px * float(width_ev[j])
    height = max(est.height, 1e-12) / float(np.median(width_ev))  # counts per eV
    e0 = float(centres_ev[j])
    if model == "lorentzian":
        return np.array([e0, fwhm, height * fwhm * 0.5 * math.pi, est.background])
    if model == "gaussian":
        return np.array([e0, fwhm, height * fwhm * 1.0644670194312262, est.background])
    return np.array([e0, fwhm / 1.637, fwhm / 1.637, height * fwhm * 1.3, est.background])
