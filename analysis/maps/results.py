"""Results of the map analyses: :class:`Gaussian2DFit`, :class:`SpotList`, :class:`ImageShift`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""Ratio FWHM / σ of a Gaussian (≈2.3548)."""


Noise = Literal["poisson", "gaussian"]


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
