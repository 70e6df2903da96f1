"""Poisson confidence intervals of counts and of ratios of counts.
"""

from __future__ import annotations

import math

import numpy as np

from micropl.errors import AnalysisInputError


def poisson_interval(count: float, z: float = 1.0) -> tuple[float, float]:
    """Score interval of the mean of a Poisson count.

    The set of means ``μ`` with ``(count − μ)²/μ <= z²``:
    ``count + z²/2 ± z·√(count + z²/4)``. For ``z = 1`` it is the 68.27 % interval; its
    coverage averaged over means of 1–20 counts is 68 %, and it stays sensible at a
    count of 0 (``[0, z²]``).

    Parameters
    ----------
    count : float
        Observed count (>= 0; a window area with fractional edge bins is accepted).
    z : float
        Half-width in standard deviations (1 for 68.27 %).

    Returns
    -------
    (low, high) : tuple of float
        Interval of the mean, in counts.

    Examples
    --------
    >>> from micropl.analysis.g2 import poisson_interval
    >>> tuple(round(v, 3) for v in poisson_interval(0))
    (0.0, 1.0)
    >>> tuple(round(v, 3) for v in poisson_interval(100))
    (90.488, 110.512)
    """
    c = max(float(count), 0.0)
    half = z * math.sqrt(c + 0.25 * z * z)
    centre = c + 0.5 * z * z
    return max(centre - half, 0.0), centre + half


def poisson_ratio_interval(count_a: float, count_b: float, z: float = 1.0
                           ) -> tuple[float, float]:
    """Interval of the ratio ``μ_a/μ_b`` of the means of two independent Poisson counts.

    Given their sum ``N``, ``count_a`` is binomial with ``p = μ_a/(μ_a + μ_b)``; the
    Wilson score interval of ``p`` is mapped to the ratio ``p/(1 − p)``. This is the
    standard conditional interval for a ratio of Poisson means; it stays calibrated down
    to a handful of counts in ``count_a`` (and tends to :func:`poisson_interval` divided
    by ``count_b`` when ``count_b`` is large).

    Parameters
    ----------
    count_a, count_b : float
        Observed counts (>= 0, ``count_b > 0``).
    z : float
        Half-width in standard deviations (1 for 68.27 %).

    Returns
    -------
    (low, high) : tuple of float
        Interval of ``μ_a/μ_b`` (dimensionless).

    Raises
    ------
    AnalysisInputError
        When ``count_b`` is not positive.

    Examples
    --------
    >>> from micropl.analysis.g2 import poisson_ratio_interval
    >>> tuple(round(v, 3) for v in poisson_ratio_interval(5, 100))
    (0.032, 0.079)
    """
    a = max(float(count_a), 0.0)
    b = float(count_b)
    if not b > 0:
        raise AnalysisInputError(f"ratio interval needs a positive denominator count, got {b}")
    n = a + b
    p = a / n
    z2n = z * z / n
    centre = (p + 0.5 * z2n) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + 0.25 * z2n / n) / (1.0 + z2n)
    lo = max(centre - half, 0.0)
    hi = min(centre + half, 1.0)
    return lo / (1.0 - lo), (hi / (1.0 - hi) if hi < 1.0 else math.inf)


def _bgcorr_interval(value: float, grad: np.ndarray, regions: list[np.ndarray],
                     c: np.ndarray) -> tuple[float, float]:
    """68 % interval of the background-corrected g²(0), unclipped.

    ``value`` is a ratio of linear combinations of the bin counts ``c`` and ``grad`` its
    gradient with respect to them. The regions whose counts may be low — the central
    window and the background gaps, each given by its bin weights (disjoint) — enter
    through the Poisson score interval of their summed count (:func:`poisson_interval`),
    scaled by the gradient per count of the region; the other bins (side peaks) through
    the linear propagation of their Poisson variances. The parts add in quadrature, on
    each side separately.
    """
    var_c = np.maximum(c, 0.0)
    var_other = float(grad * grad @ var_c)
    down2 = up2 = 0.0
    for w in regions:
        inside = w > 0
        if not np.any(inside):
            continue
        wi = w[inside]
        var_other -= float(grad[inside] ** 2 @ var_c[inside])
        beta = float(grad[inside] @ wi) / float(wi @ wi)  # g²(0) per count of the region
        count = float(wi @ c[inside])
        mu_lo, mu_hi = poisson_interval(count)
        shifts = (beta * (mu_lo - count), beta * (mu_hi - count))
        down2 += min(shifts) ** 2
        up2 += max(shifts) ** 2
    var_other = max(var_other, 0.0)
    return value - math.sqrt(down2 + var_other), value + math.sqrt(up2 + var_other)
