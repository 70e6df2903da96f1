"""Drift between two maps of the same area by cross-correlation (:func:`register_shift_um`).
"""

from __future__ import annotations

import numpy as np

from micropl.analysis.maps.results import ImageShift
from micropl.errors import AnalysisInputError


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

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.maps import register_shift_um
    >>> x = np.arange(40) * 0.2
    >>> xx, yy = np.meshgrid(x, x)
    >>> ref = np.exp(-((xx - 3.0) ** 2 + (yy - 4.0) ** 2) / 0.3) + np.exp(-((xx - 5.0) ** 2 + (yy - 2.0) ** 2) / 0.3)
    >>> moved = np.exp(-((xx - 3.4) ** 2 + (yy - 3.8) ** 2) / 0.3) + np.exp(-((xx - 5.4) ** 2 + (yy - 1.8) ** 2) / 0.3)
    >>> shift = register_shift_um(ref, moved, 0.2)
    >>> round(shift.dx_um, 2), round(shift.dy_um, 2)
    (0.38, -0.19)
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
