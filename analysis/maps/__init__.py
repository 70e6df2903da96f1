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

Parts
-----
``results`` (the result classes) · ``kernels`` (the compiled 2D Gaussian fitter on
:mod:`micropl.analysis.fitcore`) · ``gauss2d`` (window fits, :func:`fit_gaussian_2d`) ·
``spots`` (:func:`find_spots`, :func:`emptiest_position_um`) · ``registration``
(:func:`register_shift_um`). Import the public names from the package.
"""

from micropl.analysis.maps.gauss2d import (
    fit_gaussian_2d,
)
from micropl.analysis.maps.registration import (
    register_shift_um,
)
from micropl.analysis.maps.results import (
    FWHM_PER_SIGMA,
    Gaussian2DFit,
    ImageShift,
    Noise,  # noqa: F401  (public, not in __all__)
    SpotList,
)
from micropl.analysis.maps.spots import (
    emptiest_position_um,
    find_spots,
)

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

# Session files name the stored record types by their public path (the table's
# ``type_name``, e.g. ``micropl.analysis.spectra.SpectrumFit``): keep it.
for _cls in (Gaussian2DFit, SpotList, ImageShift):
    _cls.__module__ = __name__
del _cls
