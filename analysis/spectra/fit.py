"""The batch/live line fitter :func:`fit_spectra`: fit ranges, start values, the compiled
fit and the verdict of each spectrum (see :mod:`micropl.analysis.spectra` for the rules).
"""

from __future__ import annotations

import dataclasses
import logging

import numba
import numpy as np

from micropl.analysis.spectra.axes import (
    HC_EV_NM,
    _check_axis,
    _energy_edges,
    energy_ev_from_wavelength_nm,
    pixel_energy_width_ev,
)
from micropl.analysis.spectra.estimate import _estimate, _start_params
from micropl.analysis.spectra.levmar import _fit_batch_parallel, _fit_batch_serial
from micropl.analysis.spectra.profiles import (
    _GL_W,
    _GL_X,
    _MODEL_CODE,
    _PEAK_PARAMS,
    _W_COEFFS,
    _W_LENGTH,
    MODELS,
    voigt_fwhm,
)
from micropl.analysis.spectra.results import _STATUS_MESSAGES, SpectrumFit, _param_names
from micropl.analysis.spectra.rules import (
    POOR_FIT_CHI2,
    SIGNIFICANCE_SIGMA,
    _saturated_one,
    error_scale,
    resolution_ev,
)
from micropl.errors import AnalysisInputError

log = logging.getLogger(__name__)


def fit_spectra(
    wavelength_nm,
    counts,
    model: str = "lorentzian",
    *,
    variance=None,
    noise_factor: float | None = None,
    read_noise: float = 0.0,
    n_peaks: int = 1,
    roi_nm="auto",
    p0=None,
    scale_errors: str = "auto",
    max_iter: int = 200,
    resolution_mev: float | None = None,
    saturation_counts: float | None = None,
    saturated=None,
) -> SpectrumFit:
    """Fit emission lines in energy to counts per pixel, for one spectrum or a batch.

    The model of pixel ``i`` is ``B + Σ_k A_k ∫_pixel L_k(E) dE`` with ``L_k`` a
    unit-area Lorentzian, Gaussian or Voigt profile in photon energy, ``A_k``
    the line area in counts and ``B`` a constant offset per pixel. Pixel
    energy edges come from the wavelength axis (``E = 1239.84198/λ``).

    Every path (the CLI, the live analysis, the procedures, replay) calls this
    function with these defaults, so the same data give the same numbers.

    Parameters
    ----------
    wavelength_nm : array_like, shape (n_px,)
        Pixel-centre wavelengths in nm, strictly monotonic, shared by all
        spectra.
    counts : array_like, shape (n_px,) or (n_spectra, n_px)
        Counts per pixel, offset (bias) subtracted.
    model : {"lorentzian", "gaussian", "voigt"}
        Line shape in energy. ``"voigt"`` fits separate Lorentzian and Gaussian
        widths and reports the Voigt FWHM.
    variance : array_like, shape like ``counts``, optional
        Known per-pixel variance in counts². Overrides the noise model.
    noise_factor : float or None
        The noise model, when the counts are photoelectrons: variance per
        count of signal, 2 for an EMCCD at high EM gain (excess noise factor
        F² = 2), 1 for Poisson. ``None`` (default): the noise is unknown
        (counts in ADU, a file), Poisson-shaped weights are used and the
        errors are scaled by ``sqrt(reduced_chi2)``; see :func:`error_scale`.
    read_noise : float
        Signal-independent noise in counts rms, added in quadrature
        (variance += read_noise²).
    n_peaks : int
        Number of lines sharing the background (e.g. exciton, trion, phonon
        replicas). Starting values are found by peeling the strongest peaks.
    roi_nm : "auto", None or (float, float)
        The pixels fitted. ``"auto"`` (default): for one line, the range of
        :func:`estimate_line` for each spectrum (± 4 FWHM around the strongest
        line, cut before a neighbouring line); for several lines, the whole
        axis. ``None``: the whole axis. A pair: that wavelength range (nm).
    p0 : array_like, shape (n_params,) or (n_spectra, n_params), optional
        Starting parameters in the order of :attr:`SpectrumFit.param_names`
        (energies and widths in eV), e.g. the previous live fit. Default: the
        robust estimate of :func:`estimate_line` (one line).
    scale_errors : {"auto", "chi2", "inflate", "none"}
        ``"auto"`` applies the one rule of :func:`error_scale`; the other
        values force one behaviour (tests and comparisons only).
    max_iter : int
        Iteration limit of the Levenberg–Marquardt loop.
    resolution_mev : float, optional
        The spectrograph's resolution in meV; a fitted FWHM below
        :func:`resolution_ev` (at least one pixel's energy width) fails.
    saturation_counts : float, optional
        Detector ceiling in the counts' units; see :func:`saturated_spectra`.
    saturated : bool or array_like of bool, shape (n_spectra,), optional
        Spectra known to hold pixels at the ceiling (the camera's ADC ceiling,
        seen on the raw frames).

    Returns
    -------
    SpectrumFit
        Values with 1σ errors; arrays of shape ``(n_spectra,)`` for 2-D
        ``counts``, 0-d arrays for 1-D ``counts`` (a trailing ``(n_peaks,)``
        axis on per-line fields when ``n_peaks > 1``). A failed fit has
        ``success`` False and a reason in ``message``; it does not raise.
        ``quality`` says ``"ok"``, ``"poor fit"``, ``"failed"`` or
        ``"saturated"``.

    Raises
    ------
    AnalysisInputError
        Bad shapes, non-finite values, unknown model, too few pixels, or a
        non-positive explicit variance.

    Notes
    -----
    Weights are ``1 / (noise_factor · max(model, 0) + read_noise²)``
    evaluated on the current model at each iteration (iteratively
    re-weighted least squares), so the result is a stationary point of χ²
    with the final weights — exactly what ``scipy.optimize.curve_fit`` with
    ``sigma = sqrt(variance)`` finds for those weights. Errors are the square
    roots of the diagonal of ``(JᵀWJ)⁻¹``, scaled by :func:`error_scale`.

    A converged fit is still judged (in this order): ``"saturated"`` when
    pixels reach the ceiling; ``"failed"`` when a FWHM is below the
    resolution (a spike, not a line) or an area is below
    :data:`SIGNIFICANCE_SIGMA` (3) times its error (a line consistent with
    zero); ``"poor fit"`` when the noise model is known and
    ``reduced_chi2 >`` :data:`POOR_FIT_CHI2` (3).

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import (
    ...     fit_spectra, polynomial_axis_nm, energy_ev_from_wavelength_nm)
    >>> wl = polynomial_axis_nm(1000, [470.0, 0.09])
    >>> e = energy_ev_from_wavelength_nm(wl)
    >>> de = np.abs(np.gradient(e))
    >>> clean = 20.0 + 5e4 * de * (0.035 / np.pi) / ((e - 2.44) ** 2 + 0.035 ** 2)
    >>> rng = np.random.default_rng(1)
    >>> counts = rng.normal(clean, np.sqrt(2 * clean))
    >>> fit = fit_spectra(wl, counts)             # one live spectrum: 0-d arrays
    >>> bool(fit.success), str(fit.quality), round(float(fit.peak_energy_ev), 2)
    (True, 'ok', 2.44)
    >>> round(float(fit.fwhm_mev) / 10)
    7
    >>> batch = fit_spectra(wl, np.stack([counts, counts]))   # a batch: shape (2,)
    >>> batch.fwhm_mev.shape
    (2,)
    >>> curve = fit.model_counts()                # counts per pixel, shape (1000,)
    """
    if model not in _MODEL_CODE:
        raise AnalysisInputError(f"unknown line model {model!r}; choose one of {', '.join(MODELS)}")
    error_scale(np.ones(1), False, scale_errors)  # validates scale_errors
    n_peaks = int(n_peaks)
    if n_peaks < 1:
        raise AnalysisInputError(f"n_peaks must be >= 1, got {n_peaks}")
    wl = _check_axis(wavelength_nm)
    y = np.asarray(counts, dtype=np.float64)
    one_d = y.ndim == 1
    if y.ndim not in (1, 2) or y.shape[-1] != wl.size:
        raise AnalysisInputError(
            f"counts must have shape ({wl.size},) or (n_spectra, {wl.size}), got {y.shape}")
    y = np.ascontiguousarray(y.reshape(-1, wl.size))
    if not np.all(np.isfinite(y)):
        raise AnalysisInputError("counts contain NaN or infinite values")
    has_var = variance is not None
    if has_var:
        var = np.broadcast_to(np.asarray(variance, dtype=np.float64), y.shape)
        if not np.all(np.isfinite(var)) or np.any(var <= 0):
            raise AnalysisInputError("variance must be finite and > 0 everywhere")
        var = np.ascontiguousarray(var)
    else:  # the kernel reads var[s] only when has_var; pass a small placeholder
        var = np.ones((y.shape[0], 1))
    if noise_factor is not None and not (np.isfinite(noise_factor) and noise_factor > 0):
        raise AnalysisInputError(f"noise_factor must be > 0 or None, got {noise_factor}")
    if not (np.isfinite(read_noise) and read_noise >= 0):
        raise AnalysisInputError(f"read_noise must be >= 0, got {read_noise}")
    for name, value in (("resolution_mev", resolution_mev),
                        ("saturation_counts", saturation_counts)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise AnalysisInputError(f"{name} must be > 0, got {value}")

    npp = len(_PEAK_PARAMS[model])
    n_par = n_peaks * npp + 1
    n_spec = y.shape[0]
    lo, hi, p_init, use_init = _ranges_and_start(model, n_peaks, wl, y, roi_nm, p0, n_par)
    n_fit = hi - lo
    if np.any(n_fit <= n_par):
        raise AnalysisInputError(
            f"{int(n_fit.min())} pixels cannot determine {n_par} parameters of a "
            f"{n_peaks}-line {model} fit")

    nf = 1.0 if noise_factor is None else float(noise_factor)
    rn2 = float(read_noise) ** 2
    p_out = np.empty((n_spec, n_par))
    cov = np.empty((n_spec, n_par, n_par))
    status = np.empty(n_spec, dtype=np.int64)
    chi2 = np.empty(n_spec)
    n_iter = np.empty(n_spec, dtype=np.int64)
    runner = _fit_batch_parallel if n_spec > 1 and numba.get_num_threads() > 1 else \
        _fit_batch_serial
    runner(_MODEL_CODE[model], n_peaks, npp, _energy_edges(wl), y, var, has_var, nf, rn2,
           p_init, use_init, int(max_iter), lo, hi, _W_COEFFS, _W_LENGTH, _GL_X, _GL_W,
           p_out, cov, status, chi2, n_iter)

    dof = n_fit - n_par
    red = chi2 / dof
    noise_known = has_var or noise_factor is not None
    factor, scaled = error_scale(red, noise_known, scale_errors)
    cov = cov * (factor ** 2)[:, None, None]
    sat = _saturation(y, lo, hi, saturation_counts, saturated, n_spec)
    fit = _assemble(model, n_peaks, npp, wl, p_out, cov, status, red, dof, n_iter, scaled,
                    lo, hi)
    total = np.array([np.abs(y[s, lo[s]:hi[s]]).sum() for s in range(n_spec)])
    fit = _judge(fit, wl, sat, noise_known, resolution_mev, total)
    return fit if not one_d else fit.select(0)


def _ranges_and_start(model, n_peaks, wl, y, roi_nm, p0, n_par):
    """Per spectrum: the fitted pixels ``lo … hi − 1`` and the starting parameters."""
    n_spec, n_px = y.shape
    lo = np.zeros(n_spec, dtype=np.int64)
    hi = np.full(n_spec, n_px, dtype=np.int64)
    if isinstance(roi_nm, str):
        if roi_nm != "auto":
            raise AnalysisInputError(f"roi_nm must be 'auto', None or (low, high), "
                                     f"not {roi_nm!r}")
        auto = n_peaks == 1
    elif roi_nm is not None:
        try:
            a, b = sorted(float(v) for v in roi_nm)
        except (TypeError, ValueError):
            raise AnalysisInputError(f"roi_nm must be 'auto', None or (low, high), "
                                     f"not {roi_nm!r}") from None
        keep = np.flatnonzero((wl >= a) & (wl <= b))
        if keep.size == 0:
            raise AnalysisInputError(f"no pixel inside the fit range {a}-{b} nm")
        lo[:], hi[:] = keep[0], keep[-1] + 1
        auto = False
    else:
        auto = False
    width = pixel_energy_width_ev(wl)
    centres = energy_ev_from_wavelength_nm(wl)
    p_init = np.zeros((n_spec, n_par))
    use_init = False
    if p0 is not None:
        p_init = np.array(np.broadcast_to(np.asarray(p0, dtype=np.float64), (n_spec, n_par)))
        if not np.all(np.isfinite(p_init)):
            raise AnalysisInputError("p0 must be finite")
        use_init = True
    if not (auto or (n_peaks == 1 and not use_init)):
        return lo, hi, p_init, use_init
    for s in range(n_spec):
        a, b = int(lo[s]), int(hi[s])
        est = _estimate(y[s, a:b], width[a:b])
        if auto:
            lo[s], hi[s] = a + est.lo, a + est.hi + 1
        if n_peaks == 1 and p0 is None:
            p_init[s] = _start_params(model, est, centres[a:b], width[a:b])
    return lo, hi, p_init, n_peaks == 1 or use_init


def _saturation(y, lo, hi, saturation_counts, saturated, n_spec) -> list[str | None]:
    """Per spectrum, why it is saturated (None when it is not)."""
    known = np.zeros(n_spec, dtype=bool) if saturated is None else \
        np.broadcast_to(np.asarray(saturated, dtype=bool), (n_spec,))
    out: list[str | None] = []
    for s in range(n_spec):
        reason = _saturated_one(y[s, lo[s]:hi[s]], saturation_counts)
        if reason is None and known[s]:
            reason = "pixels at the camera's ADC ceiling"
        out.append(reason)
    return out


def _judge(fit: SpectrumFit, wl, sat: list[str | None], noise_known: bool,
           resolution_mev: float | None, total: np.ndarray) -> SpectrumFit:
    """Quality and reason of each converged fit: saturation, resolution, significance, χ²."""
    ok = np.array(fit.success, dtype=bool)
    msg = np.array(fit.message, dtype=object)
    quality = np.where(ok, "ok", "failed").astype(object)
    n_spec = ok.shape[0]
    e0 = np.asarray(fit.peak_energy_ev, dtype=np.float64).reshape(n_spec, -1)
    fw = np.asarray(fit.fwhm_mev, dtype=np.float64).reshape(n_spec, -1)
    area = np.asarray(fit.area, dtype=np.float64).reshape(n_spec, -1)
    area_err = np.asarray(fit.area_err, dtype=np.float64).reshape(n_spec, -1)
    res_mev = resolution_ev(wl, e0, resolution_mev) * 1e3
    red = np.asarray(fit.reduced_chi2, dtype=np.float64)
    for s in range(n_spec):
        if sat[s] is not None:
            ok[s], quality[s], msg[s] = False, "saturated", f"saturated: {sat[s]}"
            continue
        if not ok[s]:
            continue
        narrow = np.flatnonzero(fw[s] < res_mev[s])
        weak = np.flatnonzero(~((area[s] >= SIGNIFICANCE_SIGMA * area_err[s])
                                & (area[s] > 1e-9 * total[s])))  # or numerically nothing
        if narrow.size:
            k = int(narrow[0])
            ok[s], quality[s] = False, "failed"
            msg[s] = (f"not a line: FWHM {fw[s, k]:.3g} meV is below the resolution "
                      f"{res_mev[s, k]:.3g} meV (a spike or noise)")
        elif weak.size:
            k = int(weak[0])
            ok[s], quality[s] = False, "failed"
            msg[s] = (f"no significant line: area {area[s, k]:.3g} is below "
                      f"{SIGNIFICANCE_SIGMA:g} sigma ({area_err[s, k]:.3g})")
        elif noise_known and red[s] > POOR_FIT_CHI2:
            quality[s] = "poor fit"
            msg[s] = (f"poor fit: reduced chi2 {red[s]:.3g} > {POOR_FIT_CHI2:g} with the stated "
                      f"noise model (the line is not a {fit.model}); errors scaled by "
                      f"sqrt(chi2)")
    if np.any(quality != "ok"):
        log.debug("spectrum fits: %s", dict(zip(*np.unique(quality.astype(str),
                                                           return_counts=True))))
    return dataclasses.replace(fit, success=ok, message=msg, quality=quality,
                               saturated=np.array([r is not None for r in sat]))


def _assemble(model, n_peaks, npp, wl, p, cov, status, red, dof, n_iter, scaled, lo, hi):
    n_spec = p.shape[0]
    if n_peaks > 1:  # sort the lines by energy so that index k means the same line everywhere
        order = np.argsort(p[:, 0:n_peaks * npp:npp], axis=1)
        perm = np.empty((n_spec, n_peaks * npp + 1), dtype=np.int64)
        for k in range(npp):
            perm[:, k:n_peaks * npp:npp] = order * npp + k
        perm[:, -1] = n_peaks * npp
        rows = np.arange(n_spec)[:, None]
        p = p[rows, perm]
        cov = cov[rows[:, :, None], perm[:, :, None], perm[:, None, :]]
    err = np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
    idx = np.arange(n_peaks) * npp
    e0 = p[:, idx]
    e0_err = err[:, idx]
    if model == "voigt":
        fl, fg = p[:, idx + 1], p[:, idx + 2]
        root = np.sqrt(0.2166 * fl * fl + fg * fg)
        d_fl = 0.5346 + 0.2166 * fl / root
        d_fg = fg / root
        c_ll = cov[:, idx + 1, idx + 1]
        c_gg = cov[:, idx + 2, idx + 2]
        c_lg = cov[:, idx + 1, idx + 2]
        fwhm = voigt_fwhm(fl, fg)
        fwhm_err = np.sqrt(np.abs(d_fl ** 2 * c_ll + d_fg ** 2 * c_gg + 2 * d_fl * d_fg * c_lg))
        a_idx = idx + 3
    else:
        fwhm = p[:, idx + 1]
        fwhm_err = err[:, idx + 1]
        a_idx = idx + 2
    area, area_err = p[:, a_idx], err[:, a_idx]
    bkg, bkg_err = p[:, -1], err[:, -1]
    ok = status == 0
    msg = np.array([_STATUS_MESSAGES.get(int(s), f"status {s}") for s in status], dtype=object)
    if np.any(~ok):
        log.debug("spectrum fits failed: %d of %d", int((~ok).sum()), n_spec)

    def arr(a):
        return np.asarray(a[:, 0] if n_peaks == 1 and a.ndim == 2 else a)

    roi = np.stack([np.minimum(wl[lo], wl[hi - 1]), np.maximum(wl[lo], wl[hi - 1])], axis=1)
    return SpectrumFit(
        model=model,
        n_peaks=n_peaks,
        wavelength_nm=np.asarray(wl),
        peak_energy_ev=arr(e0),
        peak_energy_err_ev=arr(e0_err),
        peak_wavelength_nm=arr(HC_EV_NM / e0),
        peak_wavelength_err_nm=arr(HC_EV_NM * e0_err / e0 ** 2),
        fwhm_mev=arr(fwhm * 1e3),
        fwhm_err_mev=arr(fwhm_err * 1e3),
        area=arr(area),
        area_err=arr(area_err),
        background=bkg,
        background_err=bkg_err,
        reduced_chi2=red,
        dof=np.asarray(dof, dtype=np.int64),
        success=ok,
        message=msg,
        n_iter=n_iter,
        errors_scaled=np.asarray(scaled, dtype=bool),
        param_names=_param_names(model, n_peaks),
        params=p,
        covariance=cov,
        roi_nm=roi,
    )
