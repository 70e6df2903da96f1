"""Pulsed g²(0) from the areas of the central and side peaks (:func:`pulsed_g2`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from micropl.analysis.g2.comb import _tail_shape
from micropl.analysis.g2.histogram import (
    MIN_SIDE_COUNTS,
    _check_histogram,
    _comb_amplitude,
    _window_weights,
    detect_period_ps,
)
from micropl.analysis.g2.intervals import _bgcorr_interval, poisson_ratio_interval
from micropl.analysis.g2.results import G2Result
from micropl.analysis.g2.shapes import _peak_cdf
from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)


def pulsed_g2(tau_ps: np.ndarray, counts: np.ndarray, *, period_ps: float | None = None,
              rep_rate_hz: float | None = None, n_side: int = 5,
              zero_delay_ps: float | None = None, window_fraction: float = 1.0,
              gap_fraction: float = 0.2, period_source: str | None = None,
              min_significance: float = 3.0, background_correction: bool = True) -> G2Result:
    """g²(0) of a pulsed source from the peak areas of an HBT histogram.

    Parameters
    ----------
    tau_ps : ndarray of float, shape (n,)
        Uniform bin centres in ps. A symmetric cross-correlation (``-W..W``) or a
        start–stop histogram (``0..T``) both work.
    counts : ndarray, shape (n,)
        Raw coincidence counts per bin (Poisson statistics are assumed for the errors).
    period_ps, rep_rate_hz : float, optional
        Repetition period or rate (give at most one). When neither is given the period
        is detected from the histogram (:func:`detect_period_ps`).
    n_side : int
        Side peaks per side averaged for the normalisation (default 5; 4–6 recommended
        because blinking bunches the nearest ones). Fewer are used on a side where the
        histogram ends; at least one side peak in total is required.
    zero_delay_ps : float, optional
        Approximate position of the zero-delay peak; the comb peak nearest it is used.
        By default the peak nearest τ = 0 when the histogram extends at least one period
        to both sides of 0, else the anomalously low peak of the comb.
    window_fraction : float
        Width of each peak window as a fraction of the period (0 < f <= 1, at least one
        bin; default 1, so the windows tile the histogram). Bins cut by a window edge
        count in proportion to their overlap. Narrow windows (e.g. 0.16) leave out more
        background from the raw ratio; the background-corrected value estimates the same
        intrinsic g²(0) for every width.
    gap_fraction : float
        Background bins are those within ``±gap_fraction·P/2`` of the mid-point between
        two peaks (default 0.2, i.e. the central 20 % of each gap). See Notes for how the
        decay tails that reach into the gaps are accounted for.
    period_source : str, optional
        Label stored in the result for a given period (default ``"user"``; pass
        ``"header"`` when the rate came from a file header).
    min_significance : float
        When the zero-delay peak is searched as the lowest peak, it must lie this many σ
        below the median side peak, else the result would be a noise pick.
    background_correction : bool
        Compute ``g2_0_bgcorr`` (a peak-shape fit and a linear solve, ≈10 ms for 10⁴
        bins). False skips it (the fields are NaN), e.g. for frequent live updates.

    Returns
    -------
    G2Result

    Raises
    ------
    AnalysisInputError
        Empty or non-uniform histogram, no periodic peaks, no complete side peak, or no
        significantly low peak to take as zero delay.

    Notes
    -----
    Errors: ``g2_0_ci68`` is the 68.27 % score interval of the ratio of the central and
    the summed side-peak Poisson means (:func:`poisson_ratio_interval`), which stays
    calibrated down to a handful of central counts (and is ``[0, ·]`` at none);
    ``g2_0_err`` is half its width, close to ``g2·√(1/C + 1/ΣS)`` at high counts. The
    background-corrected interval takes the central window's and the gaps' counts
    through the same score interval and the rest by linear propagation
    (``g2_0_bgcorr_ci68``); a negative corrected estimate is reported as 0 with
    ``g2_0_bgcorr_clipped``.

    Background-corrected value (``g2_0_bgcorr``): when the lifetime is a sizeable fraction
    of the period, the exponential tails of the peaks raise the gap level and spill from
    window to window, so the plain "gap mean × window width" subtraction comes out biased
    low. Here the shape of the peaks is first measured: the side-peak windows are folded
    onto one period and fitted with a periodic train of two-sided exponentials convolved
    with a Gaussian IRF on a flat background (lifetime τ and σ; Poisson weights). With this
    shape, the counts of every complete window ``j`` and of the gap bins are written as
    ``Σ_k a_k·F_jk + b·n_j``, where ``a_k`` is the full area of peak ``k``, ``F_jk`` the
    exact fraction of its unit-area shape that falls in the region (bin-integrated),
    ``n_j`` the number of (weighted) bins and ``b`` the flat background per bin; the gap
    bins are those between the used peaks, inside or outside the windows, so a narrow
    window changes only ``F`` and ``n_j``; peaks beyond the
    complete windows are given the mean side-peak area. The square linear system gives
    ``a_k`` and ``b`` as fixed linear combinations of the bin counts, so
    ``g2_0_bgcorr = a_0 / mean(a_side)`` and its error follow by exact linear propagation
    of the Poisson variances (the uncertainty of the fitted shape, a second-order effect,
    is not propagated). For short lifetimes ``F`` is the identity and this reduces to the
    plain gap-mean subtraction. If the shape fit does not converge, ``g2_0_bgcorr`` and the
    background are NaN (a warning is logged).

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.g2 import pulsed_g2, two_sided_exp_irf
    >>> tau = np.arange(-75000.0, 75000.0, 250.0)
    >>> mean = 0.5 + sum((0.1 if k == 0 else 1.0) * 100.0 * two_sided_exp_irf(tau - k * 12500.0, 800.0, 150.0)
    ...              for k in range(-6, 7))
    >>> counts = np.random.default_rng(2).poisson(mean).astype(float)
    >>> res = pulsed_g2(tau, counts, rep_rate_hz=80e6)
    >>> round(res.g2_0, 2), round(res.g2_0_err, 2), res.n_side
    (0.14, 0.01, 5)
    """
    return _pulsed_g2_impl(tau_ps, counts, period_ps=period_ps, rep_rate_hz=rep_rate_hz,
                           n_side=n_side, zero_delay_ps=zero_delay_ps,
                           window_fraction=window_fraction, gap_fraction=gap_fraction,
                           period_source=period_source,
                           min_significance=min_significance,
                           background_correction=background_correction)[0]


def _pulsed_g2_impl(tau_ps, counts, *, period_ps, rep_rate_hz, n_side, zero_delay_ps,
                    window_fraction, gap_fraction, period_source, min_significance,
                    background_correction=True) -> tuple[G2Result, tuple[float, float, float] | None]:
    """:func:`pulsed_g2`, also returning the side-peak shape ``(τ, σ, height)`` or None."""
    tau, c, bin_ps = _check_histogram(tau_ps, counts)
    if period_ps is not None and rep_rate_hz is not None:
        raise AnalysisInputError("give period_ps or rep_rate_hz, not both")
    if not 0 < window_fraction <= 1:
        raise AnalysisInputError(f"window_fraction must be in (0, 1], got {window_fraction}")
    if not 0 < gap_fraction < 1:
        raise AnalysisInputError(f"gap_fraction must be in (0, 1), got {gap_fraction}")
    if int(n_side) < 1:
        raise AnalysisInputError(f"n_side must be >= 1, got {n_side}")
    n_side = int(n_side)
    if rep_rate_hz is not None:
        if not rep_rate_hz > 0:
            raise AnalysisInputError(f"repetition rate must be > 0 Hz, got {rep_rate_hz}")
        period_ps = 1e12 / float(rep_rate_hz)
    if period_ps is not None:
        period = float(period_ps)
        if not period > 2 * bin_ps:
            raise AnalysisInputError(
                f"period {period:.1f} ps is not longer than two bins ({bin_ps:.1f} ps each)")
        source = period_source or "user"
    else:
        period = detect_period_ps(tau, c)
        source = "detected"
    if window_fraction * period < bin_ps:
        raise AnalysisInputError(
            f"window fraction {window_fraction:g} of the {period / 1e3:.4g} ns period is "
            f"narrower than one {bin_ps:.4g} ps bin; give a larger window fraction")
    if period > 0.5 * (tau[-1] - tau[0]):
        raise AnalysisInputError(
            f"histogram ({(tau[-1] - tau[0]) / 1e3:.1f} ns) holds fewer than two periods of "
            f"{period / 1e3:.2f} ns")

    # Comb offset from the phase of the fundamental Fourier component.
    phase = np.angle(_comb_amplitude(tau, c, period))
    offset = (phase / (2 * np.pi) * period) % period
    edge_lo = tau[0] - 0.5 * bin_ps
    edge_hi = tau[-1] + 0.5 * bin_ps
    half = 0.5 * window_fraction * period
    k_min = math.ceil((edge_lo + half - offset) / period)
    k_max = math.floor((edge_hi - half - offset) / period)
    ks = np.arange(k_min, k_max + 1)
    if ks.size < 2:
        raise AnalysisInputError("histogram holds fewer than two complete peaks")
    centres = offset + ks * period
    weights = np.array([_window_weights(tau, bin_ps, p - half, p + half) for p in centres])
    areas = weights @ c

    if zero_delay_ps is not None:
        i0 = int(np.argmin(np.abs(centres - float(zero_delay_ps))))
        if abs(centres[i0] - float(zero_delay_ps)) > period:
            raise AnalysisInputError(
                f"zero delay {zero_delay_ps:.0f} ps is outside the histogram's complete peaks")
        zsource = "user"
    elif centres[0] < -0.5 * period and centres[-1] > 0.5 * period:
        i0 = int(np.argmin(np.abs(centres)))
        zsource = "nearest-zero"
    else:
        i0 = int(np.argmin(areas))
        others = np.delete(areas, i0)
        med = float(np.median(others))
        sig = (med - areas[i0]) / math.sqrt(max(med + areas[i0], 1.0))
        if sig < min_significance:
            raise AnalysisInputError(
                f"no antibunched peak found: the lowest peak is only {sig:.1f} sigma below the "
                "others; give the zero delay explicitly")
        zsource = "lowest-peak"

    left = list(range(max(0, i0 - n_side), i0))
    right = list(range(i0 + 1, min(ks.size, i0 + 1 + n_side)))
    side = left + right
    if not side:
        raise AnalysisInputError("no complete side peak next to the zero-delay peak")
    if len(left) < n_side or len(right) < n_side:
        log.info("pulsed_g2: using %d side peaks left and %d right (asked %d per side)",
                 len(left), len(right), n_side)
    C = float(areas[i0])
    S = areas[side]
    sum_s = float(S.sum())
    mean_s = sum_s / len(side)
    if sum_s < MIN_SIDE_COUNTS:
        raise AnalysisInputError(
            f"too few coincidences for g²(0): the {len(side)} side peaks hold {sum_s:.0f} counts "
            f"in all (at least {MIN_SIDE_COUNTS} are needed); is there an emitter under the "
            "spot, and was the acquisition long enough?")
    g2 = C / mean_s
    # Interval of the ratio of the two Poisson means (central, all side peaks), scaled
    # to the mean side peak; the symmetric 1σ is half its width.
    r_lo, r_hi = poisson_ratio_interval(C, sum_s)
    g2_ci = (r_lo * len(side), r_hi * len(side))
    g2_err = 0.5 * (g2_ci[1] - g2_ci[0])

    # Background from the central part of the gaps between the used peaks, corrected for
    # the exponential tails that every peak (near or far) leaves in the gaps and windows.
    used = [i0, *side]
    gap_mask = np.zeros(tau.size, dtype=bool)
    for i in used:
        for mid in (centres[i] - 0.5 * period, centres[i] + 0.5 * period):
            gap_mask |= np.abs(tau - mid) <= 0.5 * gap_fraction * period
    # Only gaps between the used peaks (inside the span of their full periods), whatever
    # the window width: with narrow windows the gaps lie outside every window.
    span_lo = centres[min(used)] - 0.5 * period
    span_hi = centres[max(used)] + 0.5 * period
    gap_mask &= (tau - 0.5 * bin_ps >= span_lo - 1e-9) & (tau + 0.5 * bin_ps <= span_hi + 1e-9)
    n_gap = int(gap_mask.sum()) if background_correction else 0
    shape = _tail_shape(tau, c, bin_ps, period, centres[side]) if n_gap else None
    if n_gap and shape is None:
        log.warning("pulsed_g2: the side-peak shape fit did not converge; no "
                    "background-corrected g²(0)")
    g2_bg_ci = (float("nan"), float("nan"))
    bg_clipped = False
    if n_gap and shape is not None:
        # Linear model of the window and gap counts: every complete window j holds
        # Σ_k a_k·F_jk + b·n_j, the gaps Σ_k a_k·F_gk + b·n_g, with a_k the area of peak k,
        # F the fraction of its unit-area shape (lifetime and IRF from the side-peak
        # profile) falling in the region, and b the flat background per bin. Peaks outside
        # the complete windows get the mean side area. Solving gives a_k and b as exact
        # linear combinations of the bin counts.
        tl, sg, _height = shape
        n_w = ks.size
        rows = np.vstack([weights, gap_mask[None, :].astype(np.float64)])
        side_all = [i for i in range(n_w) if i != i0]
        n_ext = int(min(math.ceil(40.0 * tl / period) + 1, 1000))
        edges = np.append(tau - 0.5 * bin_ps, tau[-1] + 0.5 * bin_ps)
        design = np.zeros((n_w + 1, n_w + 1))
        for k in range(int(ks[0]) - n_ext, int(ks[-1]) + n_ext + 1):
            col = rows @ np.diff(_peak_cdf(edges - (offset + k * period), tl, sg))
            j = k - int(ks[0])
            if 0 <= j < n_w:
                design[:, j] += col
            else:
                design[:, side_all] += col[:, None] / len(side_all)
        design[:, n_w] = rows.sum(axis=1)
        lin = np.linalg.solve(design, rows)  # (n_w + 1, n): areas a_k, then b
        var_c = np.maximum(c, 0.0)
        bg = float(lin[n_w] @ c)
        bg_err = math.sqrt(max(float(lin[n_w] ** 2 @ var_c), 1.0 / (n_gap * n_gap)))
        # Exact linear error propagation over independent Poisson bins.
        a = lin[i0]
        d = lin[side].mean(axis=0)
        num = float(a @ c)
        den = float(d @ c)
        if den > 0:
            g2_bg = num / den
            gap_w = gap_mask.astype(np.float64)
            central_w = np.where(gap_mask, 0.0, weights[i0])
            g2_bg_ci = _bgcorr_interval(g2_bg, (a - g2_bg * d) / den, [central_w, gap_w], c)
            g2_bg_err = 0.5 * (g2_bg_ci[1] - g2_bg_ci[0])
            if g2_bg < 0:
                log.info("pulsed_g2: background-corrected g²(0) %.4g clipped at 0", g2_bg)
                g2_bg, bg_clipped = 0.0, True
            g2_bg_ci = (max(g2_bg_ci[0], 0.0), max(g2_bg_ci[1], 0.0))
        else:
            g2_bg = g2_bg_err = float("nan")
    else:
        bg = bg_err = g2_bg = g2_bg_err = float("nan")

    side_windows = np.column_stack((centres[side] - half, centres[side] + half))
    return G2Result(
        g2_0=float(g2), g2_0_err=float(g2_err), g2_0_bgcorr=float(g2_bg),
        g2_0_bgcorr_err=float(g2_bg_err), rep_rate_hz=1e12 / period, period_ps=period,
        period_source=source, delay_ps=float(centres[i0]), zero_delay_source=zsource,
        n_side=n_side, n_side_left=len(left), n_side_right=len(right), central_counts=C,
        side_mean_counts=float(mean_s), side_counts=np.asarray(S, dtype=np.float64),
        side_delays_ps=np.asarray(centres[side], dtype=np.float64),
        background_per_bin=bg, background_per_bin_err=bg_err,
        central_window_ps=(float(centres[i0] - half), float(centres[i0] + half)),
        side_windows_ps=side_windows, window_fraction=float(window_fraction), bin_ps=bin_ps,
        g2_0_ci68=(float(g2_ci[0]), float(g2_ci[1])),
        g2_0_bgcorr_ci68=(float(g2_bg_ci[0]), float(g2_bg_ci[1])),
        g2_0_bgcorr_clipped=bool(bg_clipped),
    ), shape
