"""The result of a spectrum fit (:class:`SpectrumFit`) and its model on a pixel axis.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from micropl.analysis.spectra.axes import _energy_edges
from micropl.analysis.spectra.kernels import _model_batch
from micropl.analysis.spectra.profiles import (
    _GL_W,
    _GL_X,
    _MODEL_CODE,
    _PEAK_PARAMS,
    _W_COEFFS,
    _W_LENGTH,
)

_STATUS_MESSAGES = {
    0: "",
    1: "did not converge within the iteration limit",
    2: "singular curvature matrix: parameters are not determined by the data",
    3: "stalled: no step lowers chi-square (parameter at a bound?)",
    4: "non-finite model or chi-square",
    5: "peak energy outside the fitted range",
    6: "no line found: area not positive",
    7: "linewidth at its bound (narrower than a thousandth of a pixel or wider than the range)",
}


def _param_names(model: str, n_peaks: int) -> tuple[str, ...]:
    names: list[str] = []
    for k in range(n_peaks):
        suffix = "" if n_peaks == 1 else f"_{k}"
        names.extend(f"{n}{suffix}" for n in _PEAK_PARAMS[model])
    names.append("background")
    return tuple(names)


@dataclass(frozen=True)
class SpectrumFit:
    """Result of :func:`fit_spectra`.

    Shapes: every per-spectrum field has the batch shape — ``(n_spectra,)``
    for 2-D ``counts`` and ``()`` (0-d arrays; use ``float(...)`` or
    ``.item()``) for 1-D ``counts``. Per-line fields (peak energy, FWHM, area
    and their errors) get a trailing axis of length ``n_peaks`` when
    ``n_peaks > 1``; lines are sorted by increasing peak energy.

    Attributes
    ----------
    model : str
        ``"lorentzian"``, ``"gaussian"`` or ``"voigt"``.
    n_peaks : int
        Number of lines in the model.
    wavelength_nm : ndarray, shape (n_px,)
        The pixel axis of the spectra, in nm (the fitted part is ``roi_nm``).
    peak_energy_ev, peak_energy_err_ev : ndarray
        Line centre and its 1σ error, in eV.
    peak_wavelength_nm, peak_wavelength_err_nm : ndarray
        The same in nm (``λ = hc/E``).
    fwhm_mev, fwhm_err_mev : ndarray
        Full width at half maximum in energy and its 1σ error, in meV (for a
        Voigt: the FWHM of the whole profile).
    area, area_err : ndarray
        Line area (integrated counts of the line over all energies) and error.
    background, background_err : ndarray
        Constant offset in counts per pixel and its error.
    reduced_chi2 : ndarray
        χ² per degree of freedom with the final weights.
    dof : ndarray of int
        Per spectrum, the degrees of freedom ``n_px_fit − n_params``.
    success : ndarray of bool
        True when the fit converged to a valid line.
    message : ndarray of str
        Empty on success, otherwise why the fit failed.
    n_iter : ndarray of int
        Levenberg–Marquardt iterations used.
    errors_scaled : ndarray of bool
        Per spectrum, whether the errors were multiplied by a factor from the
        χ² (see :func:`error_scale`: ``sqrt(reduced_chi2)`` for an unknown
        noise model, ``sqrt(reduced_chi2)`` only when above 1 for a known one).
    param_names : tuple of str
        Names of the fitted parameters (energies and widths in eV).
    params : ndarray, shape (..., n_params)
        Best-fit parameters in that order.
    covariance : ndarray, shape (..., n_params, n_params)
        Their covariance (scaled like the errors).
    saturated : ndarray of bool
        Per spectrum, whether pixels at the detector's ceiling were found
        (see :func:`saturated_spectra`); such a fit has ``quality`` ``"saturated"``.
    quality : ndarray of str
        Per spectrum, one of :data:`QUALITIES`: ``"ok"``, ``"poor fit"`` (a
        known noise model and ``reduced_chi2 >`` :data:`POOR_FIT_CHI2`: the line
        is not the model; errors inflated), ``"failed"`` (no valid line; see
        ``message``) or ``"saturated"``. ``success`` is True for ``"ok"`` and
        ``"poor fit"``.
    roi_nm : ndarray, shape (..., 2)
        Per spectrum, the wavelength range fitted (first and last pixel
        centre, nm).
    """

    model: str
    n_peaks: int
    wavelength_nm: np.ndarray = field(repr=False)
    peak_energy_ev: np.ndarray
    peak_energy_err_ev: np.ndarray
    peak_wavelength_nm: np.ndarray
    peak_wavelength_err_nm: np.ndarray
    fwhm_mev: np.ndarray
    fwhm_err_mev: np.ndarray
    area: np.ndarray
    area_err: np.ndarray
    background: np.ndarray
    background_err: np.ndarray
    reduced_chi2: np.ndarray
    dof: int | np.ndarray
    success: np.ndarray
    message: np.ndarray
    n_iter: np.ndarray
    errors_scaled: bool
    param_names: tuple[str, ...]
    params: np.ndarray
    covariance: np.ndarray = field(repr=False)
    # Defaults for records stored before these fields existed.
    saturated: np.ndarray | None = None
    quality: np.ndarray | None = None
    roi_nm: np.ndarray | None = None

    def __post_init__(self) -> None:
        ok = np.asarray(self.success, dtype=bool)
        if self.saturated is None:
            object.__setattr__(self, "saturated", np.zeros(ok.shape, dtype=bool))
        if self.quality is None:
            object.__setattr__(self, "quality",
                               np.asarray(np.where(ok, "ok", "failed"), dtype=object))
        if self.roi_nm is None:
            wl = np.asarray(self.wavelength_nm, dtype=np.float64)
            span = [float(wl.min()), float(wl.max())] if wl.size else [np.nan, np.nan]
            object.__setattr__(self, "roi_nm", np.broadcast_to(np.asarray(span), ok.shape + (2,)
                                                               ).copy())
        if not isinstance(self.errors_scaled, np.ndarray):  # one flag for the batch
            object.__setattr__(self, "errors_scaled",
                               np.full(ok.shape, bool(self.errors_scaled)))

    def select(self, index: int) -> SpectrumFit:
        """The fit of spectrum ``index`` of a batch, as a single-spectrum result.

        Every per-spectrum field loses its leading batch axis (0-d arrays, or
        ``(n_peaks,)`` per-line fields); the fitted axis and settings are shared.
        """
        if np.asarray(self.success).ndim == 0:
            raise IndexError("select() needs a batch fit (2-D counts)")
        picked = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name != "wavelength_nm" and isinstance(value, np.ndarray):
                picked[f.name] = np.asarray(value[index], dtype=value.dtype)
        return dataclasses.replace(self, **picked)

    def model_counts(self, wavelength_nm=None, index=None) -> np.ndarray:
        """Evaluate the fitted model as counts per pixel on a pixel axis.

        Parameters
        ----------
        wavelength_nm : array_like, shape (n_px,), optional
            Pixel-centre wavelengths in nm; default the fitted axis. Pixel
            widths come from the spacing, so pass the real pixel axis (a finer
            axis gives counts per finer "pixel").
        index : int, optional
            Which spectrum of a batch; default all.

        Returns
        -------
        ndarray
            Shape ``(n_px,)`` for a 1-D fit or when ``index`` is given,
            otherwise ``(n_spectra, n_px)``; counts per pixel.
        """
        return model_counts(self, self.wavelength_nm if wavelength_nm is None else wavelength_nm,
                            index=index)

    def to_dict(self, index=None) -> dict:
        """Plain-python summary of one spectrum's fit (for JSON), NaN as None."""
        def pick(a):
            a = np.asarray(a)
            if index is not None and a.ndim > 0:
                a = a[index]
            v = a.tolist()
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, list):
                return [None if isinstance(x, float) and not math.isfinite(x) else x for x in v]
            return v

        out = {"model": self.model, "n_peaks": self.n_peaks}
        for name in ("peak_energy_ev", "peak_energy_err_ev", "peak_wavelength_nm",
                     "peak_wavelength_err_nm", "fwhm_mev", "fwhm_err_mev", "area", "area_err",
                     "background", "background_err", "reduced_chi2", "success", "message",
                     "n_iter", "dof", "errors_scaled", "saturated", "quality", "roi_nm"):
            out[name] = pick(getattr(self, name))
        return out


def model_counts(fit: SpectrumFit, wavelength_nm, index=None) -> np.ndarray:
    """Counts per pixel of a fitted model on a pixel axis; see :meth:`SpectrumFit.model_counts`.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.spectra import fit_spectra, model_counts, polynomial_axis_nm
    >>> wl = polynomial_axis_nm(300, [500.0, 0.05])
    >>> x = np.arange(300.0)
    >>> clean = 20.0 + 3000.0 / (1.0 + ((x - 150.0) / 4.0) ** 2)
    >>> fit = fit_spectra(wl, np.random.default_rng(0).poisson(clean).astype(float))
    >>> m = model_counts(fit, wl)
    >>> m.shape, bool(np.abs(m - clean).max() < 0.05 * clean.max())
    ((300,), True)
    """
    edges = _energy_edges(wavelength_nm)
    params = np.asarray(fit.params, dtype=np.float64)
    one_d = params.ndim == 1
    params2 = params.reshape(-1, params.shape[-1])
    if index is not None:
        params2 = params2[[index]]
    npp = len(_PEAK_PARAMS[fit.model])
    out = np.empty((params2.shape[0], edges.shape[0] - 1))
    _model_batch(_MODEL_CODE[fit.model], fit.n_peaks, npp, edges,
                 np.ascontiguousarray(params2), _W_COEFFS, _W_LENGTH, _GL_X, _GL_W, out)
    return out[0] if (one_d or index is not None) else out
