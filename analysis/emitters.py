"""Is a spot one emitter? How much did its line wander? What g²(0) should it show?

Pure functions over numbers; the survey, ``micropl info``, the statistics, the
report and the GUI all call these, so every path calls a spot the same thing.

The single-emitter rule
-----------------------
``n`` independent, equally bright ideal single-photon emitters give
``g²(0) = 1 − 1/n``: two give 0.5 (see ``simulators/hbt.py`` and any text on
photon antibunching). A single CsPbBr3 QD has g²(0) ≈ 0.05–0.4 (``PHYSICS.md``,
"Single-QD dynamics"; the paper reports stronger antibunching for core/shell
QDs), always below 0.5. So a spot is called a single emitter only when its
g²(0) is below 0.5 *with confidence*::

    single  ⇔  g²(0) + 2σ < 0.5        (one-sided, 97.7 %)

Which g²(0): the background-corrected peak-area ratio ``g2_0_bgcorr`` (the
uncorrelated background — film, dark counts — taken from the gaps between the
peaks is removed), because the question is how many emitters made the light,
and background coincidences raise the raw ratio towards 1 even for one QD.
When the corrected value is missing (not computed, or an old file), the raw
``g2_0`` is used: it lies above the corrected one, so the fallback can only
call a spot multiple more often, never single more often. A spot whose g²(0)
fails the rule is flagged ``multiple_emitters`` and left out of the
single-QD statistics.

A spectrum that holds two resolved lines is flagged too (:func:`two_lines`):
the two-line fit must lower χ² significantly (F-test, p < 10⁻⁶ against the
one-line fit), both lines must carry significant area (≥ 5σ), have widths
above the pixel size, and be separated by more than their mean FWHM.

Spectral jitter
---------------
:func:`spectral_jitter`: the standard deviation of the per-frame peak
energies, with its error ``s/√(2(n−1))`` (χ² distribution of a Gaussian
variance), and the jitter proper, with the mean per-frame fit variance
subtracted in quadrature: ``√(s² − ⟨σ_fit²⟩)`` (0 when the fit noise explains
the scatter).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "SINGLE_G2_THRESHOLD",
    "SINGLE_N_SIGMA",
    "EXCLUDING_FLAGS",
    "FLAG_MULTIPLE",
    "FLAG_POOR_FIT",
    "FLAG_SATURATED",
    "G2Choice",
    "SpectralJitter",
    "TwoLineTest",
    "choose_g2",
    "is_single_emitter",
    "qd_flags",
    "fit_flags",
    "two_lines",
    "two_line_test",
    "spectral_jitter",
    "expected_pulsed_g2",
    "excluded_counts",
    "exclusion_text",
]

log = logging.getLogger(__name__)

#: g²(0) of two equally bright ideal single-photon emitters: a single emitter is below.
SINGLE_G2_THRESHOLD = 0.5
#: Margin (in σ of g²(0)) by which a single emitter must be below the threshold.
SINGLE_N_SIGMA = 2.0
#: A spot that is more than one emitter (g²(0) rule or two resolved lines).
FLAG_MULTIPLE = "multiple_emitters"
#: The spectrum fit's quality is "poor fit".
FLAG_POOR_FIT = "poor_fit"
#: The spectrum was saturated.
FLAG_SATURATED = "saturated"
#: Flags that leave a QD out of the single-QD statistics.
EXCLUDING_FLAGS: tuple[str, ...] = (FLAG_MULTIPLE,)
#: p-value below which the two-line fit is preferred (F-test).
TWO_LINE_P_MAX = 1e-6
#: Area significance each of the two lines needs, in σ.
TWO_LINE_MIN_SIGNIFICANCE = 5.0

_REASON_TEXT = {FLAG_MULTIPLE: "multiple emitters", FLAG_POOR_FIT: "poor fit",
                FLAG_SATURATED: "saturated"}


def _finite(value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- g²(0)
@dataclass(frozen=True)
class G2Choice:
    """The g²(0) a verdict is based on.

    Attributes
    ----------
    value, err : float
        g²(0) and its 1σ error (dimensionless).
    source : str
        ``"bgcorr"`` (background-corrected) or ``"raw"`` (peak-area ratio).
    """

    value: float
    err: float
    source: str


def choose_g2(g2_0=None, g2_0_err=None, g2_0_bgcorr=None,
              g2_0_bgcorr_err=None) -> G2Choice | None:
    """The g²(0) the single-emitter rule uses: background-corrected, else raw.

    Parameters
    ----------
    g2_0, g2_0_err : float or None
        Raw peak-area ratio and its 1σ error.
    g2_0_bgcorr, g2_0_bgcorr_err : float or None
        Background-corrected value and its 1σ error.

    Returns
    -------
    G2Choice or None
        None when neither value has a finite value and a finite, non-negative error.

    Examples
    --------
    >>> choose_g2(0.56, 0.01, 0.31, 0.02)
    G2Choice(value=0.31, err=0.02, source='bgcorr')
    >>> choose_g2(0.56, 0.01, float("nan"), float("nan"))
    G2Choice(value=0.56, err=0.01, source='raw')
    >>> choose_g2(None, None) is None
    True
    """
    for value, err, source in ((g2_0_bgcorr, g2_0_bgcorr_err, "bgcorr"),
                               (g2_0, g2_0_err, "raw")):
        v, e = _finite(value), _finite(err)
        if v is not None and e is not None and e >= 0:
            return G2Choice(v, e, source)
    return None


def is_single_emitter(g2: float, g2_err: float, *, threshold: float = SINGLE_G2_THRESHOLD,
                      n_sigma: float = SINGLE_N_SIGMA) -> bool:
    """Whether a g²(0) shows one emitter with confidence: ``g2 + n_sigma·g2_err < threshold``.

    Parameters
    ----------
    g2, g2_err : float
        g²(0) and its 1σ error (dimensionless); both finite, the error ≥ 0.
    threshold : float
        0.5: two equal ideal emitters.
    n_sigma : float
        Confidence margin in σ (2: one-sided 97.7 %).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        A non-finite value or a negative error.

    Examples
    --------
    >>> is_single_emitter(0.56, 0.01)
    False
    >>> is_single_emitter(0.2, 0.05)
    True
    >>> is_single_emitter(0.4, 0.05)   # 0.4 + 0.1 is not below 0.5
    False
    """
    if not (math.isfinite(g2) and math.isfinite(g2_err) and g2_err >= 0):
        raise ValueError(f"g²(0) = {g2} ± {g2_err}: need a finite value and error ≥ 0")
    return bool(g2 + n_sigma * g2_err < threshold)


# --------------------------------------------------------------------------- spectra
@dataclass(frozen=True)
class TwoLineTest:
    """One line against two lines, for one spectrum.

    Attributes
    ----------
    two_lines : bool
        True when the spectrum holds two resolved lines (all criteria below).
    chi2_one, chi2_two : float
        χ² of the one- and two-line fits (with the noise model's weights).
    dof_one, dof_two : int
        Their degrees of freedom.
    p_value : float
        F-test probability that the χ² drop is chance (nan when not computed).
    energies_ev, fwhms_mev, significances : tuple of float
        The two lines' peak energies (eV), FWHMs (meV) and area/area_err.
    separation_mev : float
        ``|E₂ − E₁|`` in meV.
    reason : str
        Which criterion failed, or "two resolved lines".
    """

    two_lines: bool
    chi2_one: float
    chi2_two: float
    dof_one: int
    dof_two: int
    p_value: float
    energies_ev: tuple[float, ...]
    fwhms_mev: tuple[float, ...]
    significances: tuple[float, ...]
    separation_mev: float
    reason: str


def _chi2(fit) -> float:
    return float(np.asarray(fit.reduced_chi2).ravel()[0]) * int(fit.dof)


def two_lines(one, two, *, pixel_mev: float = 0.0, p_max: float = TWO_LINE_P_MAX,
              min_significance: float = TWO_LINE_MIN_SIGNIFICANCE) -> TwoLineTest:
    """Decide from a one-line and a two-line fit of one spectrum whether it holds two lines.

    Criteria, all needed: the two-line fit succeeded (the one-line fit's χ² is used
    even when it did not converge); the F-test of the χ² drop
    (3 more parameters) gives ``p < p_max``; both lines have ``area/area_err ≥
    min_significance``; both FWHMs exceed ``2·pixel_mev`` (not a spike); and the
    separation exceeds the mean FWHM of the two lines (resolved, not a
    shoulder).

    Parameters
    ----------
    one, two : SpectrumFit
        Fits of the same spectrum with ``n_peaks=1`` and ``n_peaks=2`` (one
        spectrum each; errors of ``two`` as the fitter gives them).
    pixel_mev : float
        Width of one pixel in energy near the lines, meV.
    p_max, min_significance : float
        Thresholds (see above).

    Returns
    -------
    TwoLineTest

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.emitters import two_lines
    >>> from micropl.analysis.spectra import fit_spectra, polynomial_axis_nm
    >>> wl = polynomial_axis_nm(300, [500.0, 0.02])
    >>> x = np.arange(300.0)
    >>> y = np.random.default_rng(0).poisson(10.0 + 2000.0 / (1.0 + ((x - 130.0) / 3.0) ** 2)
    ...                                  + 1500.0 / (1.0 + ((x - 170.0) / 3.0) ** 2)).astype(float)
    >>> one = fit_spectra(wl, y, noise_factor=1.0, roi_nm=(500.0, 505.98))
    >>> two = fit_spectra(wl, y, noise_factor=1.0, n_peaks=2, roi_nm=(500.0, 505.98))
    >>> test = two_lines(one, two)
    >>> test.two_lines, round(test.separation_mev, 1)
    (True, 3.9)
    """
    chi2_1, chi2_2 = _chi2(one), _chi2(two)
    dof_1, dof_2 = int(one.dof), int(two.dof)
    e = tuple(float(v) for v in np.asarray(two.peak_energy_ev, float).ravel()[:2])
    w = tuple(float(v) for v in np.asarray(two.fwhm_mev, float).ravel()[:2])
    a = np.asarray(two.area, float).ravel()[:2]
    ae = np.asarray(two.area_err, float).ravel()[:2]
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = tuple(float(v) for v in np.where(ae > 0, a / ae, np.nan))
    sep = abs(e[1] - e[0]) * 1e3 if len(e) == 2 else float("nan")

    def verdict(ok: bool, p: float, reason: str) -> TwoLineTest:
        return TwoLineTest(ok, chi2_1, chi2_2, dof_1, dof_2, p, e, w, sig, sep, reason)

    # A one-line fit that did not converge still bounds what one line can do; the
    # two-line fit must have converged.
    if not bool(np.all(two.success)) or len(e) != 2:
        return verdict(False, float("nan"), "the two-line fit failed")
    extra = dof_1 - dof_2
    if extra <= 0 or dof_2 <= 0 or not (chi2_2 > 0 and math.isfinite(chi2_1)):
        return verdict(False, float("nan"), "no degrees of freedom")
    f_stat = (chi2_1 - chi2_2) / extra / (chi2_2 / dof_2)
    p = float(stats.f.sf(f_stat, extra, dof_2)) if f_stat > 0 else 1.0
    if not p < p_max:
        return verdict(False, p, f"one line is enough (p = {p:.2g})")
    if not all(math.isfinite(s) and s >= min_significance for s in sig):
        return verdict(False, p, "a line is not significant")
    if not all(math.isfinite(x) and x > 2 * pixel_mev for x in w):
        return verdict(False, p, "a line is narrower than two pixels")
    if not sep > 0.5 * (w[0] + w[1]):
        return verdict(False, p, f"lines {sep:.1f} meV apart are not resolved")
    return verdict(True, p, "two resolved lines")


def two_line_test(wavelength_nm, counts, *, noise_factor: float | None = 2.0,
                  read_noise: float = 0.0, model: str = "lorentzian") -> TwoLineTest:
    """Fit one spectrum with one and with two lines and apply :func:`two_lines`.

    Parameters
    ----------
    wavelength_nm, counts : array_like, shape (n_px,)
        The spectrum (photoelectrons, background subtracted, as the live core fits it).
    noise_factor, read_noise : float
        Noise model of :func:`~micropl.analysis.spectra.fit_spectra`.
    model : str
        Line shape.

    Returns
    -------
    TwoLineTest

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.emitters import two_line_test
    >>> from micropl.analysis.spectra import polynomial_axis_nm
    >>> wl = polynomial_axis_nm(300, [500.0, 0.02])
    >>> x = np.arange(300.0)
    >>> y = np.random.default_rng(0).poisson(10.0 + 2000.0 / (1.0 + ((x - 130.0) / 3.0) ** 2)).astype(float)
    >>> two_line_test(wl, y, noise_factor=1.0).two_lines                     # one line only
    False
    """
    from micropl.analysis.spectra import HC_EV_NM, fit_spectra

    # Both fits over the whole axis: the F-test compares χ² over the same pixels (the
    # automatic range of fit_spectra follows the strongest line and would stop before a
    # second one).
    noise = {"noise_factor": noise_factor, "read_noise": read_noise, "roi_nm": None,
             "scale_errors": "none" if noise_factor is not None else "auto"}
    one = fit_spectra(wavelength_nm, counts, model=model, n_peaks=1, **noise)
    two = fit_spectra(wavelength_nm, counts, model=model, n_peaks=2, **noise)
    wl = np.asarray(wavelength_nm, float)
    energy = HC_EV_NM / wl
    pixel_mev = float(np.median(np.abs(np.diff(energy)))) * 1e3 if wl.size > 1 else 0.0
    return two_lines(one, two, pixel_mev=pixel_mev)


# --------------------------------------------------------------------------- flags
def fit_flags(fit) -> list[str]:
    """``poor_fit`` / ``saturated`` from a spectrum fit's optional quality fields.

    Reads ``quality`` (``"poor fit"`` → ``poor_fit``) and ``saturated`` with
    defaults, so fits without these fields give no flag.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.emitters import fit_flags
    >>> from micropl.analysis.spectra import fit_spectra, polynomial_axis_nm
    >>> wl = polynomial_axis_nm(200, [500.0, 0.05])
    >>> x = np.arange(200.0)
    >>> y = np.random.default_rng(0).poisson(20.0 + 3000.0 / (1.0 + ((x - 100.0) / 3.0) ** 2)).astype(float)
    >>> fit_flags(fit_spectra(wl, y, noise_factor=1.0)), fit_flags(fit_spectra(wl, np.minimum(y, 1500.0)))
    ([], ['saturated'])
    """
    if fit is None:
        return []
    out = []
    quality = getattr(fit, "quality", None)
    if quality is not None:
        quality = np.asarray(quality).ravel()
        if any(str(q) == "poor fit" for q in quality):
            out.append(FLAG_POOR_FIT)
        if any(str(q) == "saturated" for q in quality):
            out.append(FLAG_SATURATED)
    saturated = getattr(fit, "saturated", None)
    if saturated is not None and bool(np.any(saturated)) and FLAG_SATURATED not in out:
        out.append(FLAG_SATURATED)
    return out


def qd_flags(g2: G2Choice | None, *, two_line: TwoLineTest | bool | None = None,
             fit=None) -> list[str]:
    """Every flag of a QD, in a fixed order.

    Parameters
    ----------
    g2 : G2Choice or None
        From :func:`choose_g2` (None: not measured; no g²(0) flag).
    two_line : TwoLineTest, bool or None
        The two-line verdict (None: not tested).
    fit : SpectrumFit, optional
        The accumulated spectrum's fit, for :func:`fit_flags`.

    Returns
    -------
    list of str

    Examples
    --------
    >>> qd_flags(choose_g2(0.56, 0.01))
    ['multiple_emitters']
    >>> qd_flags(choose_g2(0.2, 0.05), two_line=False)
    []
    """
    flags = []
    multiple = g2 is not None and not is_single_emitter(g2.value, g2.err)
    multiple |= bool(two_line.two_lines if isinstance(two_line, TwoLineTest) else two_line)
    if multiple:
        flags.append(FLAG_MULTIPLE)
    flags.extend(f for f in fit_flags(fit) if f not in flags)
    return flags


def excluded_counts(flags_per_qd: Iterable[Sequence[str] | None],
                    excluding: Sequence[str] = EXCLUDING_FLAGS) -> dict[str, int]:
    """How many QDs each excluding flag leaves out (a QD counts once, for its first flag).

    Examples
    --------
    >>> excluded_counts([["multiple_emitters"], [], None, ["poor_fit"]])
    {'multiple_emitters': 1}
    """
    out: dict[str, int] = {}
    for flags in flags_per_qd:
        hit = next((f for f in excluding if flags and f in flags), None)
        if hit is not None:
            out[hit] = out.get(hit, 0) + 1
    return out


def exclusion_text(counts: Mapping[str, int]) -> str:
    """The line the statistics, report and GUI print, e.g. "2 excluded: multiple emitters".

    Examples
    --------
    >>> exclusion_text({"multiple_emitters": 2})
    '2 excluded: multiple emitters'
    >>> exclusion_text({})
    '0 excluded'
    """
    total = int(sum(counts.values()))
    if not total:
        return "0 excluded"
    parts = [_REASON_TEXT.get(k, k.replace("_", " ")) + ("" if len(counts) == 1 else f" {v}")
             for k, v in counts.items() if v]
    return f"{total} excluded: {', '.join(parts)}"


# --------------------------------------------------------------------------- jitter
@dataclass(frozen=True)
class SpectralJitter:
    """Scatter of the per-frame peak energies of one QD.

    Attributes
    ----------
    n_frames : int
        Frames with a usable fit.
    std_mev, std_err_mev : float
        Standard deviation (ddof = 1) of the per-frame peak energies and its
        error ``s/√(2(n−1))``, meV.
    fit_noise_mev : float
        rms of the per-frame fit errors, meV.
    jitter_mev, jitter_err_mev : float
        ``√max(s² − fit_noise², 0)`` (fit noise subtracted in quadrature) and
        its error, meV.
    """

    n_frames: int
    std_mev: float
    std_err_mev: float
    fit_noise_mev: float
    jitter_mev: float
    jitter_err_mev: float


def spectral_jitter(peak_energy_ev, peak_energy_err_ev=None) -> SpectralJitter | None:
    """Spectral jitter from per-frame fits.

    Parameters
    ----------
    peak_energy_ev : array_like, shape (n,)
        Per-frame peak energies, eV (non-finite entries are dropped).
    peak_energy_err_ev : array_like, shape (n,), optional
        Their 1σ fit errors, eV (None: no fit noise subtracted).

    Returns
    -------
    SpectralJitter or None
        None with fewer than 2 usable frames.

    Notes
    -----
    ``s²`` has the relative error ``√(2/(n−1))``; with ``J² = s² − f²`` and
    ``σ(J²) = max(s², f²)·√(2/(n−1))`` (the true scatter is at least the fit
    noise ``f``, so a series that happens to scatter less is not taken as exact),
    the error of ``J`` is ``√(J² + σ(J²)) − J`` (≈ σ(J²)/2J far from 0, √σ(J²) at 0).

    Examples
    --------
    >>> j = spectral_jitter([2.400, 2.402, 2.398, 2.401, 2.399])
    >>> round(j.std_mev, 2), round(j.std_err_mev, 2), j.n_frames
    (1.58, 0.56, 5)
    """
    e = np.asarray(peak_energy_ev, float).ravel()
    err = np.zeros_like(e) if peak_energy_err_ev is None else \
        np.asarray(peak_energy_err_ev, float).ravel()
    if err.shape != e.shape:
        raise ValueError(f"{err.size} errors for {e.size} peak energies")
    ok = np.isfinite(e) & np.isfinite(err) & (err >= 0)
    e, err = e[ok] * 1e3, err[ok] * 1e3
    n = int(e.size)
    if n < 2:
        return None
    s = float(np.std(e, ddof=1))
    s_err = s / math.sqrt(2.0 * (n - 1))
    f = float(np.sqrt(np.mean(err ** 2)))
    j2 = max(s * s - f * f, 0.0)
    j2_err = max(s * s, f * f) * math.sqrt(2.0 / (n - 1))  # the scatter is at least f
    j = math.sqrt(j2)
    return SpectralJitter(n, s, s_err, f, j, math.sqrt(j2 + j2_err) - j)


# --------------------------------------------------------------------------- g²(0) expected
def expected_pulsed_g2(detected_per_pulse, g2_intrinsic, on_overlap, *,
                       background_cps=(0.0, 0.0), period_s: float = 1e-7,
                       window_s: float | None = None) -> tuple[float, float]:
    """The pulsed peak-area g²(0) expected from emitters and a flat background.

    Per laser pulse, emitter ``i`` (while ON) gives ``d_i`` detected photons per
    APD; ``O_ik`` is the fraction of the time both ``i`` and ``k`` are ON
    (``O_ii`` its ON fraction); APD ``j`` also counts ``B_j`` uncorrelated
    counts/s (film background + dark counts). The coincidences per pulse in a
    peak window of width ``W`` are, for the central peak and a side peak,

    * ``C = Σ g_i d_i² O_ii + Σ_{i≠k} d_i d_k O_ik + S (B₁ + B₂) W + B₁ B₂ W T``
    * ``A = Σ d_i² O_ii + Σ_{i≠k} d_i d_k O_ik + S (B₁ + B₂) W + B₁ B₂ W T``

    with ``S = Σ d_i O_ii`` and ``T`` the period (side peaks are far closer than
    blinking times, so a side peak sees the same ON correlation). The raw value is
    ``C/A``; the intrinsic value drops the background terms. Dead time,
    afterpulsing and crosstalk are neglected (< 1 % at survey rates).

    Parameters
    ----------
    detected_per_pulse : array_like, shape (m,)
        ``d_i``, photons per pulse per APD while ON.
    g2_intrinsic : array_like, shape (m,)
        Each emitter's own g²(0).
    on_overlap : array_like, shape (m, m)
        ``O_ik`` (0–1), symmetric.
    background_cps : (float, float)
        ``B₁, B₂``, uncorrelated counts/s per APD.
    period_s : float
        Laser period ``T``, s.
    window_s : float, optional
        Peak window ``W``, s (default: the whole period).

    Returns
    -------
    (raw, intrinsic) : (float, float)
        nan when no emitter gives light.

    Examples
    --------
    One ideal emitter without background, and two equal ones:

    >>> expected_pulsed_g2([0.01], [0.0], [[1.0]])
    (0.0, 0.0)
    >>> expected_pulsed_g2([0.01, 0.01], [0.0, 0.0], [[1, 1], [1, 1]])
    (0.5, 0.5)
    >>> raw, intrinsic = expected_pulsed_g2([0.003], [0.2], [[1.0]], background_cps=(400, 400))
    >>> round(raw, 3), intrinsic
    (0.221, 0.2)
    """
    d = np.asarray(detected_per_pulse, float).ravel()
    g = np.asarray(g2_intrinsic, float).ravel()
    o = np.asarray(on_overlap, float).reshape(d.size, d.size)
    diag = np.diag(o)
    pair = float(d @ o @ d - np.sum(d * d * diag))
    own = float(np.sum(d * d * diag))
    own_g = float(np.sum(g * d * d * diag))
    s = float(np.sum(d * diag))
    w = period_s if window_s is None else float(window_s)
    b1, b2 = (float(b) for b in background_cps)
    bg = s * (b1 + b2) * w + b1 * b2 * w * period_s
    if not own + pair > 0:
        return float("nan"), float("nan")
    return (own_g + pair + bg) / (own + pair + bg), (own_g + pair) / (own + pair)
