"""Survey statistics over many single QDs (as in the reference paper's Figs. 2b and 4b).

* :func:`fwhm_histogram` — histogram of linewidths in meV.
* :func:`linear_fit_with_scatter` — weighted straight line with errors in both
  coordinates and an intrinsic scatter term (FWHM against peak energy).
* :func:`g2_distribution` — distribution of g²(0) and the fraction of single-photon
  emitters, counting the measurement errors.
* :func:`survey_statistics` — all of the above from per-QD arrays, with failed (NaN)
  entries excluded and counted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from micropl.analysis.emitters import EXCLUDING_FLAGS, excluded_counts, exclusion_text
from micropl.errors import AnalysisInputError

__all__ = [
    "G2Distribution",
    "LinearFit",
    "SurveyStatistics",
    "fwhm_histogram",
    "g2_distribution",
    "linear_fit_with_scatter",
    "survey_statistics",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class LinearFit:
    """Straight line ``y = intercept + slope·x`` with 1σ errors.

    Attributes
    ----------
    slope, slope_err : float
        Slope in units of y per unit of x (meV/eV for FWHM against energy).
    intercept, intercept_err : float
        Value at ``x = 0`` (units of y).
    covariance : ndarray, shape (2, 2)
        Covariance of ``(intercept, slope)``.
    x_ref : float
        Weighted mean of x; ``y_at_x_ref`` and its error are nearly uncorrelated with the
        slope.
    y_at_x_ref, y_at_x_ref_err : float
        Fitted line at ``x_ref``.
    sigma_intrinsic : float
        Scatter about the line beyond the measurement errors (units of y); 0 when the
        measurement errors already explain the scatter.
    red_chi2_measurement : float
        Reduced χ² with the measurement errors only (before the intrinsic term).
    pearson_r, pearson_p : float
        Pearson correlation coefficient of the points and its two-sided p-value.
    n : int
        Points used.
    """

    slope: float
    slope_err: float
    intercept: float
    intercept_err: float
    covariance: np.ndarray
    x_ref: float
    y_at_x_ref: float
    y_at_x_ref_err: float
    sigma_intrinsic: float
    red_chi2_measurement: float
    pearson_r: float
    pearson_p: float
    n: int


@dataclass(frozen=True)
class G2Distribution:
    """Distribution of g²(0) over emitters.

    Attributes
    ----------
    edges : ndarray, shape (n_bins + 1,)
        Histogram bin edges of g²(0) (dimensionless).
    counts : ndarray of int64, shape (n_bins,)
        Emitters per bin.
    n_valid, n_excluded : int
        Emitters used, and those excluded (NaN value or NaN/negative error).
    threshold : float
        g²(0) below which an emitter counts as a single-photon emitter.
    n_single_photon : int
        Emitters with ``g2 < threshold``.
    fraction_single_photon, fraction_single_photon_err : float
        ``n_single_photon / n_valid`` and its binomial (sampling) error.
    n_sigma : float
        Confidence margin used below.
    n_single_photon_confident : int
        Emitters with ``g2 + n_sigma·g2_err < threshold``.
    n_single_photon_expected, n_single_photon_expected_err : float
        Expected number of emitters whose true g²(0) is below the threshold, given Gaussian
        measurement errors: ``Σ Φ((threshold − g2)/g2_err)``, with the Poisson-binomial
        standard deviation ``sqrt(Σ p(1−p))``.
    median : float
        Median g²(0) of the valid emitters.
    """

    edges: np.ndarray
    counts: np.ndarray
    n_valid: int
    n_excluded: int
    threshold: float
    n_single_photon: int
    fraction_single_photon: float
    fraction_single_photon_err: float
    n_sigma: float
    n_single_photon_confident: int
    n_single_photon_expected: float
    n_single_photon_expected_err: float
    median: float


@dataclass(frozen=True)
class SurveyStatistics:
    """Statistics of a QD survey.

    Attributes
    ----------
    n_total : int
        QDs in the input.
    n_spectra_valid, n_spectra_excluded : int
        QDs with a usable spectrum fit (finite energy and FWHM > 0, finite or absent
        errors), and those excluded.
    fwhm_edges_mev : ndarray, shape (n_bins + 1,)
        Histogram edges of the FWHM in meV.
    fwhm_counts : ndarray of int64, shape (n_bins,)
        QDs per FWHM bin.
    fwhm_mean_mev, fwhm_mean_err_mev, fwhm_std_mev, fwhm_median_mev : float
        Mean (with its standard error), standard deviation and median FWHM, meV.
    energy_mean_ev : float
        Mean peak energy, eV.
    fwhm_vs_energy : LinearFit or None
        FWHM (meV) against peak energy (eV): slope in meV/eV. None with fewer than 3 QDs.
    g2 : G2Distribution or None
        The g²(0) distribution (None when no g² values were given).
    excluded : dict of str to int
        QDs left out of all the statistics above by a flag (see
        :data:`micropl.analysis.emitters.EXCLUDING_FLAGS`), per flag; they are not in
        ``n_spectra_valid`` nor in ``n_spectra_excluded``.
    """

    n_total: int
    n_spectra_valid: int
    n_spectra_excluded: int
    fwhm_edges_mev: np.ndarray
    fwhm_counts: np.ndarray
    fwhm_mean_mev: float
    fwhm_mean_err_mev: float
    fwhm_std_mev: float
    fwhm_median_mev: float
    energy_mean_ev: float
    fwhm_vs_energy: LinearFit | None
    g2: G2Distribution | None
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def n_flag_excluded(self) -> int:
        """QDs left out by a flag (e.g. multiple emitters)."""
        return int(sum(self.excluded.values()))

    @property
    def exclusion_text(self) -> str:
        """E.g. "2 excluded: multiple emitters" (the line the report and GUI show)."""
        return exclusion_text(self.excluded)

    @property
    def slope_mev_per_ev(self) -> float:
        """Slope of FWHM against energy in meV/eV (nan when not fitted)."""
        return self.fwhm_vs_energy.slope if self.fwhm_vs_energy else float("nan")

    @property
    def slope_err_mev_per_ev(self) -> float:
        """1σ error of the slope in meV/eV (nan when not fitted)."""
        return self.fwhm_vs_energy.slope_err if self.fwhm_vs_energy else float("nan")

    @property
    def correlation_r(self) -> float:
        """Pearson correlation of FWHM with energy (nan when not fitted)."""
        return self.fwhm_vs_energy.pearson_r if self.fwhm_vs_energy else float("nan")


# --------------------------------------------------------------------------- helpers
def _as_1d(name: str, values, n: int | None = None) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise AnalysisInputError(f"{name} must be a 1D array, got shape {a.shape}")
    if n is not None and a.size != n:
        raise AnalysisInputError(f"{name} has {a.size} entries, expected {n}")
    return a


def _edges(values: np.ndarray, bin_width: float, lo: float | None = None) -> np.ndarray:
    if not bin_width > 0:
        raise AnalysisInputError(f"bin width must be > 0, got {bin_width}")
    start = math.floor((np.min(values) if lo is None else min(lo, np.min(values)))
                       / bin_width) * bin_width
    stop = (math.floor(np.max(values) / bin_width) + 1) * bin_width
    n = max(1, int(round((stop - start) / bin_width)))
    return start + bin_width * np.arange(n + 1)


# --------------------------------------------------------------------------- public API
def fwhm_histogram(fwhm_mev: np.ndarray, bin_mev: float = 5.0) -> tuple[np.ndarray,
                                                                        np.ndarray]:
    """Histogram of linewidths.

    Parameters
    ----------
    fwhm_mev : ndarray, shape (n,)
        FWHM values in meV; non-finite and non-positive values are ignored.
    bin_mev : float
        Bin width in meV; edges are multiples of it.

    Returns
    -------
    edges_mev : ndarray, shape (n_bins + 1,)
        Bin edges in meV.
    counts : ndarray of int64, shape (n_bins,)
        QDs per bin.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.statistics import fwhm_histogram
    >>> edges, counts = fwhm_histogram(np.array([51.0, 53.0, 58.0, 66.0]), bin_mev=5.0)
    >>> edges.tolist(), counts.tolist()
    ([50.0, 55.0, 60.0, 65.0, 70.0], [2, 1, 0, 1])
    """
    f = _as_1d("fwhm_mev", fwhm_mev)
    f = f[np.isfinite(f) & (f > 0)]
    if f.size == 0:
        raise AnalysisInputError("no valid FWHM value")
    edges = _edges(f, bin_mev)
    counts, _ = np.histogram(f, edges)
    return edges, counts.astype(np.int64)


def linear_fit_with_scatter(x: np.ndarray, y: np.ndarray, x_err: np.ndarray | None = None,
                            y_err: np.ndarray | None = None) -> LinearFit:
    """Weighted straight-line fit with errors in x and y and an intrinsic scatter.

    Each point has the effective variance ``σ_y² + slope²·σ_x² + σ_int²``. The slope and
    intercept minimise the weighted χ² (iterated, as the effective variance depends on the
    slope). When the measurement errors alone give ``χ²_red > 1`` — QD-to-QD scatter of
    real linewidths is ≈15 % — ``σ_int`` is raised until ``χ²_red = 1``, so the reported
    errors include the real scatter; otherwise ``σ_int = 0``. Without any errors it
    reduces to ordinary least squares with residual-scaled errors.

    Parameters
    ----------
    x, y : ndarray, shape (n,)
        Coordinates (e.g. peak energy in eV, FWHM in meV). All must be finite.
    x_err, y_err : ndarray, shape (n,), optional
        1σ errors (same units); None means zero.

    Returns
    -------
    LinearFit
        Slope, intercept, covariance, intrinsic scatter and the Pearson correlation.

    Raises
    ------
    AnalysisInputError
        Fewer than 3 points, mismatched lengths, non-finite values or negative errors, or
        all x equal.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.statistics import linear_fit_with_scatter
    >>> x = np.linspace(2.40, 2.50, 30)
    >>> y = 60.0 + 200.0 * (x - 2.45) + np.random.default_rng(0).normal(0.0, 2.0, 30)
    >>> fit = linear_fit_with_scatter(x, y, y_err=np.full(30, 1.0))
    >>> round(fit.slope, -1), round(fit.sigma_intrinsic, 0)
    (200.0, 1.0)
    """
    x = _as_1d("x", x)
    y = _as_1d("y", y, x.size)
    sx = np.zeros_like(x) if x_err is None else _as_1d("x_err", x_err, x.size)
    sy = np.zeros_like(y) if y_err is None else _as_1d("y_err", y_err, x.size)
    if x.size < 3:
        raise AnalysisInputError(f"need at least 3 points for a line with errors, got {x.size}")
    if not all(np.all(np.isfinite(a)) for a in (x, y, sx, sy)) or np.any(sx < 0) or np.any(
            sy < 0):
        raise AnalysisInputError("fit input must be finite with non-negative errors")
    if np.ptp(x) == 0:
        raise AnalysisInputError("all x values are equal: the slope is undefined")
    n = x.size
    scale_y = float(np.std(y)) or 1.0

    def solve(s_int: float):
        b = np.polyfit(x, y, 1)[0]
        for _ in range(50):
            var = sy**2 + (b * sx) ** 2 + s_int**2
            var = np.maximum(var, 1e-24 * scale_y**2)
            w = 1.0 / var
            xm = np.sum(w * x) / np.sum(w)
            sxx = np.sum(w * (x - xm) ** 2)
            b_new = np.sum(w * (x - xm) * y) / sxx
            if abs(b_new - b) <= 1e-12 * (abs(b) + 1e-300):
                b = b_new
                break
            b = b_new
        var = np.maximum(sy**2 + (b * sx) ** 2 + s_int**2, 1e-24 * scale_y**2)
        w = 1.0 / var
        xm = float(np.sum(w * x) / np.sum(w))
        ym = float(np.sum(w * y) / np.sum(w))
        sxx = float(np.sum(w * (x - xm) ** 2))
        chi2 = float(np.sum(w * (y - ym - b * (x - xm)) ** 2))
        return b, xm, ym, 1.0 / sxx, 1.0 / float(np.sum(w)), chi2

    dof = n - 2
    has_errors = bool(np.any(sy > 0) or np.any(sx > 0))
    red0 = solve(0.0)[5] / dof if has_errors else float("inf")
    s_int = 0.0
    if not has_errors:
        # no measurement errors: all scatter is "intrinsic" -> ordinary least squares
        rss = float(np.sum((y - np.polyval(np.polyfit(x, y, 1), x)) ** 2))
        s_int = math.sqrt(rss / dof)
    elif red0 > 1.0:
        resid_std = float(np.std(y - np.polyval(np.polyfit(x, y, 1), x)))
        hi = 10.0 * resid_std + float(np.max(sy)) + 1e-300
        s_int = optimize.brentq(lambda s: solve(s)[5] / dof - 1.0, 0.0, hi,
                                xtol=1e-12 * hi, rtol=1e-12)
    b, xm, ym, var_b, var_ym, _ = solve(s_int)
    # y = ym + b (x − xm); intercept a = ym − b·xm; ym and b are uncorrelated
    a = ym - b * xm
    cov = np.array([[var_ym + xm**2 * var_b, -xm * var_b], [-xm * var_b, var_b]])
    r, p = stats.pearsonr(x, y) if np.ptp(y) > 0 else (float("nan"), float("nan"))
    return LinearFit(slope=float(b), slope_err=math.sqrt(var_b), intercept=float(a),
                     intercept_err=math.sqrt(cov[0, 0]), covariance=cov, x_ref=xm,
                     y_at_x_ref=ym, y_at_x_ref_err=math.sqrt(var_ym),
                     sigma_intrinsic=float(s_int), red_chi2_measurement=float(red0),
                     pearson_r=float(r), pearson_p=float(p), n=int(n))


def g2_distribution(g2_zero: np.ndarray, g2_zero_err: np.ndarray | None = None, *,
                    threshold: float = 0.5, n_sigma: float = 1.0,
                    bin_width: float = 0.05) -> G2Distribution:
    """Distribution of g²(0) and the fraction of single-photon emitters.

    Parameters
    ----------
    g2_zero : ndarray, shape (n,)
        g²(0) per emitter (dimensionless); NaN marks a failed measurement.
    g2_zero_err : ndarray, shape (n,), optional
        1σ errors; NaN or negative marks the entry as failed. None means "no errors"
        (then the confident and expected counts equal the plain count).
    threshold : float
        Single-photon criterion ``g2 < threshold`` (0.5 by default).
    n_sigma : float
        Margin for the confident count ``g2 + n_sigma·err < threshold``.
    bin_width : float
        Histogram bin width; the axis spans at least 0–1.

    Returns
    -------
    G2Distribution
        Histogram, counts and fractions (see its attributes).

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.statistics import g2_distribution
    >>> d = g2_distribution(np.array([0.1, 0.2, 0.45, 0.7, 0.9]), np.array([0.02, 0.05, 0.1, 0.1, 0.1]))
    >>> d.n_valid, d.n_single_photon, d.n_single_photon_confident, round(d.fraction_single_photon, 2)
    (5, 3, 2, 0.6)
    """
    g = _as_1d("g2_zero", g2_zero)
    e = np.zeros_like(g) if g2_zero_err is None else _as_1d("g2_zero_err", g2_zero_err,
                                                           g.size)
    valid = np.isfinite(g) & np.isfinite(e) & (e >= 0)
    n_excl = int(g.size - valid.sum())
    g, e = g[valid], e[valid]
    if g.size == 0:
        raise AnalysisInputError("no valid g²(0) value")
    edges = _edges(np.concatenate([g, [0.0, 1.0 - 1e-9]]), bin_width)
    counts, _ = np.histogram(g, edges)
    single = g < threshold
    n_single = int(single.sum())
    frac = n_single / g.size
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(e > 0, (threshold - g) / np.where(e > 0, e, 1.0), np.inf)
    z = np.where(e > 0, z, np.where(single, np.inf, -np.inf))
    prob = special.ndtr(z)
    return G2Distribution(
        edges=edges, counts=counts.astype(np.int64), n_valid=int(g.size), n_excluded=n_excl,
        threshold=float(threshold), n_single_photon=n_single, fraction_single_photon=frac,
        fraction_single_photon_err=math.sqrt(frac * (1 - frac) / g.size), n_sigma=float(n_sigma),
        n_single_photon_confident=int(np.sum(g + n_sigma * e < threshold)),
        n_single_photon_expected=float(prob.sum()),
        n_single_photon_expected_err=float(math.sqrt(np.sum(prob * (1 - prob)))),
        median=float(np.median(g)))


def _unflagged(flags: Sequence[Sequence[str] | None] | None,
               n: int) -> tuple[np.ndarray, dict[str, int]]:
    """Mask of the QDs no excluding flag leaves out, and the count per flag."""
    if flags is None:
        return np.ones(n, bool), {}
    flags = list(flags)
    if len(flags) != n:
        raise AnalysisInputError(f"flags has {len(flags)} entries, expected {n}")
    kept = np.array([not (f and any(x in EXCLUDING_FLAGS for x in f)) for f in flags], bool)
    return kept, excluded_counts(flags)


def survey_statistics(peak_energy_ev: np.ndarray, fwhm_mev: np.ndarray,
                      peak_energy_err_ev: np.ndarray | None = None,
                      fwhm_err_mev: np.ndarray | None = None,
                      g2_zero: np.ndarray | None = None,
                      g2_zero_err: np.ndarray | None = None, *, fwhm_bin_mev: float = 5.0,
                      g2_threshold: float = 0.5, g2_n_sigma: float = 1.0,
                      g2_bin_width: float = 0.05,
                      flags: Sequence[Sequence[str] | None] | None = None) -> SurveyStatistics:
    """Survey statistics from per-QD fit results.

    Parameters
    ----------
    peak_energy_ev : ndarray, shape (n,)
        Peak energy per QD in eV (NaN = failed fit).
    fwhm_mev : ndarray, shape (n,)
        FWHM per QD in meV (NaN or ≤ 0 = failed fit).
    peak_energy_err_ev, fwhm_err_mev : ndarray, shape (n,), optional
        1σ errors; a NaN or negative error excludes the QD from the spectral statistics.
    g2_zero, g2_zero_err : ndarray, shape (n,), optional
        g²(0) per QD and its error (NaN = not measured or failed).
    fwhm_bin_mev : float
        FWHM histogram bin width in meV.
    g2_threshold, g2_n_sigma, g2_bin_width : float
        See :func:`g2_distribution`.
    flags : sequence of (sequence of str or None), shape (n,), optional
        Each QD's flags (``info``'s ``flags``). A QD with a flag of
        :data:`~micropl.analysis.emitters.EXCLUDING_FLAGS` (``multiple_emitters``) is
        left out of every statistic and counted in ``excluded``.

    Returns
    -------
    SurveyStatistics
        Histograms, FWHM-against-energy fit (slope in meV/eV with error, correlation) and
        the g²(0) distribution. Excluded entries are counted, never silently dropped.

    Raises
    ------
    AnalysisInputError
        Mismatched lengths, or no QD with a valid spectrum.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.statistics import survey_statistics
    >>> e = np.array([2.41, 2.44, 2.46, 2.48])
    >>> s = survey_statistics(e, np.array([50.0, 60.0, 65.0, 75.0]), g2_zero=np.array([0.1, 0.3, 0.6, 0.2]))
    >>> s.n_total, round(s.fwhm_mean_mev, 1), s.g2.n_single_photon
    (4, 62.5, 3)
    """
    e = _as_1d("peak_energy_ev", peak_energy_ev)
    n = e.size
    f = _as_1d("fwhm_mev", fwhm_mev, n)
    ee = np.zeros(n) if peak_energy_err_ev is None else _as_1d("peak_energy_err_ev",
                                                               peak_energy_err_ev, n)
    fe = np.zeros(n) if fwhm_err_mev is None else _as_1d("fwhm_err_mev", fwhm_err_mev, n)
    kept, excluded = _unflagged(flags, n)
    valid = (np.isfinite(e) & np.isfinite(f) & (f > 0) & np.isfinite(ee) & np.isfinite(fe)
             & (ee >= 0) & (fe >= 0)) & kept
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise AnalysisInputError(f"none of the {n} QDs has a valid spectrum fit"
                                 + (f" ({exclusion_text(excluded)})" if excluded else ""))
    e, f, ee, fe = e[valid], f[valid], ee[valid], fe[valid]
    edges, counts = fwhm_histogram(f, fwhm_bin_mev)
    line = None
    if n_valid >= 3 and np.ptp(e) > 0:
        line = linear_fit_with_scatter(e, f, ee, fe)
    else:
        log.info("FWHM against energy not fitted: %d valid QDs", n_valid)
    g2 = None
    if g2_zero is not None:
        g2 = g2_distribution(_as_1d("g2_zero", g2_zero, n)[kept],
                             None if g2_zero_err is None else _as_1d("g2_zero_err",
                                                                     g2_zero_err, n)[kept],
                             threshold=g2_threshold, n_sigma=g2_n_sigma,
                             bin_width=g2_bin_width)
    return SurveyStatistics(
        n_total=int(n), n_spectra_valid=n_valid,
        n_spectra_excluded=int(kept.sum() - n_valid), excluded=excluded,
        fwhm_edges_mev=edges, fwhm_counts=counts, fwhm_mean_mev=float(np.mean(f)),
        fwhm_mean_err_mev=float(np.std(f, ddof=1) / math.sqrt(n_valid)) if n_valid > 1
        else float("nan"),
        fwhm_std_mev=float(np.std(f, ddof=1)) if n_valid > 1 else float("nan"),
        fwhm_median_mev=float(np.median(f)), energy_mean_ev=float(np.mean(e)),
        fwhm_vs_energy=line, g2=g2)
