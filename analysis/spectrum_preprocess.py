"""Camera-frame preprocessing before a spectrum fit.

* :func:`mean_frame` — average a stack of dark/background frames, with the
  variance of the mean from their scatter;
* :func:`frame_noise_rms` — the signal-independent noise of one frame, from the
  scatter of a stack of dark/background frames;
* :func:`subtract_background_frame` — subtract a dark or background frame and
  propagate the variance;
* :func:`remove_cosmic_rays_spatial` — single-frame spikes, found against a
  running median of the neighbouring pixels;
* :func:`remove_cosmic_rays_temporal` — spikes in one accumulation, found
  against the per-pixel median across accumulations;
* :func:`combine_accumulations` — sum or average accumulations, with variance;
* :func:`noise_model_from_scatter` — the noise model of a spectrum in unknown
  units (a file), from its pixel-to-pixel scatter, to judge outliers with.

Noise model used to judge outliers: ``variance = noise_factor · max(signal, 0)
+ read_noise²`` in counts² (``noise_factor`` 2 for an EMCCD at high gain, 1 for
Poisson), with counts bias-subtracted and in photo-electron-equivalent units.
The outlier tests take the reference signal as at least ``4 · noise_factor``
counts (a few photoelectrons): where the local level is near zero, shot noise
has a far longer tail than a Gaussian's, and a pixel holding a few photons is
not a cosmic ray (which brings 10³–10⁴ e⁻).
All functions take and return numpy arrays; pixels run along the last axis.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from micropl.errors import AnalysisInputError

__all__ = [
    "combine_accumulations",
    "frame_noise_rms",
    "mean_frame",
    "noise_model_from_scatter",
    "remove_cosmic_rays_spatial",
    "remove_cosmic_rays_temporal",
    "subtract_background_frame",
]


def _finite(name: str, a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        raise AnalysisInputError(f"{name} is empty")
    if not np.all(np.isfinite(a)):
        raise AnalysisInputError(f"{name} contains NaN or infinite values")
    return a


def _outlier_sigma(reference: np.ndarray, noise_factor: float, read_noise: float
                   ) -> np.ndarray:
    """Noise of one pixel around a reference level of at least a few photoelectrons."""
    return np.sqrt(_noise_variance(np.maximum(reference, _FLOOR_PHOTOELECTRONS * noise_factor),
                                   noise_factor, read_noise))


#: The outlier tests' reference level is at least this many photoelectrons.
_FLOOR_PHOTOELECTRONS = 4.0


def _noise_variance(signal: np.ndarray, noise_factor: float, read_noise: float) -> np.ndarray:
    if not (noise_factor > 0 and read_noise >= 0):
        raise AnalysisInputError(
            f"noise_factor must be > 0 and read_noise >= 0, got {noise_factor}, {read_noise}")
    return noise_factor * np.maximum(signal, 0.0) + read_noise ** 2 + 1e-12


def mean_frame(frames) -> tuple[np.ndarray, np.ndarray]:
    """Average a stack of frames (e.g. darks), with the variance of the mean.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ...)
        At least two frames, in counts.

    Returns
    -------
    mean : ndarray, shape (...)
        Per-pixel mean in counts.
    variance : ndarray, shape (...)
        Variance of that mean (sample variance / n_frames) in counts².

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import mean_frame
    >>> mean, sem = mean_frame(np.array([[10.0, 20.0], [12.0, 24.0], [14.0, 22.0]]))
    >>> mean.tolist(), sem.round(3).tolist()
    ([12.0, 22.0], [1.333, 1.333])
    """
    f = _finite("frames", frames)
    if f.ndim < 2 or f.shape[0] < 2:
        raise AnalysisInputError(f"need a stack of at least 2 frames, got shape {f.shape}")
    return f.mean(axis=0), f.var(axis=0, ddof=1) / f.shape[0]


def frame_noise_rms(frames, *, clip_quantile: float = 0.995) -> float:
    """Signal-independent noise of one frame, from a stack of dark or background frames.

    The per-pixel sample variance across the frames, averaged over the pixels,
    leaving out the largest ``1 − clip_quantile`` of them (cosmic rays). An
    average of variances is unbiased whatever the noise's shape, but for the
    clipped tail (a few % low for the clock-induced charge of an EMCCD); the
    median of per-pixel standard deviations is not: with two frames it reads
    about 0.67σ for Gaussian noise and about 0.5σ for an EMCCD's skewed
    clock-induced charge, and outlier cuts set from it then clip genuine noise.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ...)
        At least two frames, in counts.
    clip_quantile : float
        Pixels whose variance is above this quantile are left out.

    Returns
    -------
    float
        Noise of one frame, counts rms per pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import frame_noise_rms
    >>> dark = np.random.default_rng(0).normal(100.0, 3.0, (20, 512))
    >>> round(frame_noise_rms(dark), 1)
    3.0
    """
    f = _finite("frames", frames)
    if f.ndim < 2 or f.shape[0] < 2:
        raise AnalysisInputError(f"need a stack of at least 2 frames, got shape {f.shape}")
    if not 0.5 <= clip_quantile <= 1.0:
        raise AnalysisInputError(f"clip_quantile must be in [0.5, 1], got {clip_quantile}")
    variance = f.var(axis=0, ddof=1).ravel()
    kept = variance[variance <= np.quantile(variance, clip_quantile)]
    return float(np.sqrt(np.mean(kept)))


def subtract_background_frame(counts, background, *, counts_variance=None,
                              background_variance=None, noise_factor: float = 2.0,
                              read_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Subtract a dark or background frame and propagate the variance.

    Parameters
    ----------
    counts : array_like, shape (..., n_px)
        Raw frame(s) in counts, including the offset that ``background`` holds.
    background : array_like, broadcastable to ``counts``
        Dark/background frame in counts (e.g. from :func:`mean_frame`).
    counts_variance : array_like, optional
        Variance of ``counts``; default from the noise model applied to the
        background-subtracted signal.
    background_variance : array_like, optional
        Variance of ``background`` (e.g. from :func:`mean_frame`); default 0
        (a noiseless reference such as a long average).
    noise_factor, read_noise : float
        Noise model used when ``counts_variance`` is not given.

    Returns
    -------
    corrected : ndarray, shape like ``counts``
        ``counts − background``.
    variance : ndarray, shape like ``counts``
        Variance of ``corrected`` in counts² (the sum of both variances).

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import subtract_background_frame
    >>> net, var = subtract_background_frame([110.0, 150.0], [100.0, 100.0], noise_factor=1.0)
    >>> net.tolist(), var.round(6).tolist()
    ([10.0, 50.0], [10.0, 50.0])
    """
    c = _finite("counts", counts)
    b = _finite("background", background)
    try:
        corrected = c - b
    except ValueError as exc:
        raise AnalysisInputError(
            f"background shape {b.shape} does not match counts shape {c.shape}") from exc
    if corrected.shape != c.shape:
        raise AnalysisInputError(
            f"background shape {b.shape} does not broadcast to counts shape {c.shape}")
    if counts_variance is None:
        var_c = _noise_variance(corrected, noise_factor, read_noise)
    else:
        var_c = np.broadcast_to(_finite("counts_variance", counts_variance), c.shape)
    var_b = 0.0 if background_variance is None else _finite("background_variance",
                                                             background_variance)
    variance = np.broadcast_to(var_c + var_b, c.shape).copy()
    if np.any(variance < 0):
        raise AnalysisInputError("variances must be >= 0")
    return corrected, variance


def remove_cosmic_rays_spatial(counts, *, threshold: float = 6.0, window_px: int = 7,
                               neighbour_fraction: float = 0.3, noise_factor: float = 2.0,
                               read_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Replace single-pixel spikes in one frame by the running median.

    A pixel is a cosmic-ray hit when (1) it stands more than ``threshold``
    standard deviations (noise model on the running median) above the median
    of its ``window_px`` neighbours, and (2) its neighbours do not share the
    excess: each adjacent pixel's excess over the median is below
    ``neighbour_fraction`` of the pixel's. A real line a few pixels wide
    (FWHM ≥ 2 px) raises its neighbours by ≳ 50 % of its peak, so it is kept.

    Parameters
    ----------
    counts : array_like, shape (n_px,) or (n_rows, n_px)
        Background-subtracted counts; each row is treated independently.
    threshold : float
        Detection threshold in standard deviations.
    window_px : int
        Odd width of the running median, in pixels (≥ 3).
    neighbour_fraction : float
        Largest neighbour excess, as a fraction of the pixel's, for a spike.
    noise_factor, read_noise : float
        Noise model (see module docstring).

    Returns
    -------
    cleaned : ndarray, shape like ``counts``
        Counts with spikes replaced by the running median.
    mask : ndarray of bool, shape like ``counts``
        True where a pixel was replaced.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import remove_cosmic_rays_spatial
    >>> y = np.random.default_rng(0).poisson(100.0, 200).astype(float)
    >>> y[50] += 5000.0                                                  # a one-pixel cosmic ray
    >>> clean, hit = remove_cosmic_rays_spatial(y, noise_factor=1.0)
    >>> np.flatnonzero(hit).tolist(), bool(abs(clean[50] - 100.0) < 40.0)
    ([50], True)
    """
    c = _finite("counts", counts)
    if c.ndim not in (1, 2) or c.shape[-1] < 3:
        raise AnalysisInputError(f"counts must be (n_px,) or (n_rows, n_px), got {c.shape}")
    if window_px < 3 or window_px % 2 == 0:
        raise AnalysisInputError(f"window_px must be odd and >= 3, got {window_px}")
    c2 = c.reshape(-1, c.shape[-1])
    med = median_filter(c2, size=(1, window_px), mode="nearest")
    sigma = _outlier_sigma(med, noise_factor, read_noise)
    excess = c2 - med
    left = np.concatenate([np.full((c2.shape[0], 1), -np.inf), excess[:, :-1]], axis=1)
    right = np.concatenate([excess[:, 1:], np.full((c2.shape[0], 1), -np.inf)], axis=1)
    neighbours = np.maximum(left, right)
    mask = (excess > threshold * sigma) & (neighbours < neighbour_fraction * excess)
    cleaned = np.where(mask, med, c2)
    return cleaned.reshape(c.shape), mask.reshape(c.shape)


def remove_cosmic_rays_temporal(frames, *, threshold: float = 6.0, noise_factor: float = 2.0,
                                read_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Replace pixels that jump up in one accumulation only.

    Each pixel of each frame is compared with that pixel's median across the
    frames (with two frames, the lower of the two); a pixel more than
    ``threshold`` standard deviations above it is replaced by the median.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ..., n_px)
        At least two background-subtracted accumulations of the same scene.
    threshold : float
        Detection threshold in standard deviations of one frame.
    noise_factor, read_noise : float
        Noise model (see module docstring).

    Returns
    -------
    cleaned : ndarray, shape like ``frames``
    mask : ndarray of bool, shape like ``frames``
        True where a value was replaced.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import remove_cosmic_rays_temporal
    >>> frames = np.random.default_rng(0).poisson(100.0, (5, 100)).astype(float)
    >>> frames[2, 40] += 3000.0
    >>> clean, hit = remove_cosmic_rays_temporal(frames, noise_factor=1.0)
    >>> [tuple(map(int, ij)) for ij in np.argwhere(hit)], bool(clean[2, 40] < 200.0)
    ([(2, 40)], True)
    """
    f = _finite("frames", frames)
    if f.ndim < 2 or f.shape[0] < 2:
        raise AnalysisInputError(f"need at least 2 accumulations, got shape {f.shape}")
    ref = f.min(axis=0) if f.shape[0] == 2 else np.median(f, axis=0)
    sigma = _outlier_sigma(ref, noise_factor, read_noise)
    mask = (f - ref) > threshold * sigma
    cleaned = np.where(mask, ref, f)
    return cleaned, mask


def combine_accumulations(frames, *, mode: str = "sum", variance=None,
                          noise_factor: float = 2.0,
                          read_noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sum or average accumulations, with the variance of the result.

    Parameters
    ----------
    frames : array_like, shape (n_frames, ..., n_px)
        Accumulations in counts (cleaned of cosmic rays if needed).
    mode : {"sum", "mean"}
        Sum (keeps shot-noise statistics of counts) or mean.
    variance : array_like, shape like ``frames``, optional
        Per-frame variance; default from the noise model on each frame.
    noise_factor, read_noise : float
        Noise model used when ``variance`` is not given.

    Returns
    -------
    combined : ndarray, shape (..., n_px)
    variance : ndarray, shape (..., n_px)
        Variance of ``combined`` in counts².

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import combine_accumulations
    >>> frames = np.array([[10.0, 20.0, 30.0], [12.0, 18.0, 30.0]])
    >>> total, var = combine_accumulations(frames, noise_factor=1.0)
    >>> total.tolist(), var.round(6).tolist()
    ([22.0, 38.0, 60.0], [22.0, 38.0, 60.0])
    >>> mean, var = combine_accumulations(frames, mode="mean", noise_factor=1.0)
    >>> mean.tolist(), var.round(6).tolist()
    ([11.0, 19.0, 30.0], [5.5, 9.5, 15.0])
    """
    f = _finite("frames", frames)
    if f.ndim < 2:
        raise AnalysisInputError(f"frames must be a stack (n_frames, ..., n_px), got {f.shape}")
    if mode not in ("sum", "mean"):
        raise AnalysisInputError(f"mode must be 'sum' or 'mean', not {mode!r}")
    var = (_noise_variance(f, noise_factor, read_noise) if variance is None
           else np.broadcast_to(_finite("variance", variance), f.shape))
    total, var_total = f.sum(axis=0), var.sum(axis=0)
    if mode == "mean":
        n = f.shape[0]
        return total / n, var_total / n ** 2
    return total, var_total


def noise_model_from_scatter(counts) -> tuple[float, float]:
    """Noise model ``(noise_factor, read_noise)`` of one spectrum from its own scatter.

    For spectra in unknown units (a file in ADU), so that
    :func:`remove_cosmic_rays_spatial` can judge outliers as it does on
    photoelectrons. The residual of each pixel from the mean of its two
    neighbours, ``r = y_i − (y_{i−1} + y_{i+1})/2``, has 1.5 times the
    pixel's variance where the signal is smooth; its median square (÷ 0.455,
    the median of χ²₁) in the lowest third of the signal (the running
    median) and in the highest tenth gives ``variance = noise_factor ·
    signal + read_noise²`` through the two points. A line's own curvature
    only raises the estimate, which makes the outlier test more cautious.

    Parameters
    ----------
    counts : array_like, shape (n_px,)
        Counts per pixel (offset subtracted), at least 9 pixels.

    Returns
    -------
    noise_factor : float
        Variance per count of signal (> 0).
    read_noise : float
        Signal-independent noise, counts rms.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectrum_preprocess import noise_model_from_scatter
    >>> rng = np.random.default_rng(0)
    >>> level = np.linspace(50.0, 2000.0, 2000)
    >>> counts = 2.0 * rng.poisson(level / 2.0) + rng.normal(0.0, 10.0, level.size)  # F = 2, σ_read 10
    >>> tuple(round(v, 1) for v in noise_model_from_scatter(counts))        # rough, from one spectrum
    (1.8, 7.2)
    """
    y = _finite("counts", counts)
    if y.ndim != 1 or y.size < 9:
        raise AnalysisInputError(f"counts must be one spectrum of at least 9 pixels, "
                                 f"got shape {y.shape}")
    r2 = (y[1:-1] - 0.5 * (y[:-2] + y[2:])) ** 2 / (1.5 * 0.4549)
    signal = median_filter(y, size=7, mode="nearest")[1:-1]
    order = np.argsort(signal, kind="stable")
    low = order[:max(r2.size // 3, 3)]
    high = order[-max(r2.size // 10, 3):]
    v_low, v_high = float(np.median(r2[low])), float(np.median(r2[high]))
    s_low, s_high = float(np.median(signal[low])), float(np.median(signal[high]))
    slope = (v_high - v_low) / (s_high - s_low) if s_high > s_low else 0.0
    noise_factor = max(slope, 1e-6)
    read_noise = float(np.sqrt(max(v_low - noise_factor * max(s_low, 0.0), 0.0)))
    return noise_factor, read_noise
