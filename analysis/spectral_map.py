"""Peak-energy and FWHM maps of a spectral (hyperspectral) map.

Each pixel's spectrum of the cube is fitted by the batch fitter
(:func:`micropl.analysis.spectra.fit_spectra`, one call for the whole cube), so a
pixel gets the same numbers, with the same 1σ errors, as the same spectrum
fitted on any other path. :func:`fit_spectral_cube` is the one function that
turns a cube into maps; the hyperspectral procedure, the report and the GUI
call it (or read what it stored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from micropl.analysis.spectra import fit_spectra
from micropl.errors import AnalysisInputError

__all__ = ["SpectralMapFit", "fit_spectral_cube"]


@dataclass(frozen=True, eq=False)
class SpectralMapFit:
    """The line fitted in every pixel of a spectral map.

    Attributes
    ----------
    x_um, y_um : ndarray
        Pixel-centre axes, µm (shapes ``(n_x,)``, ``(n_y,)``).
    peak_energy_ev, peak_energy_err_ev : ndarray, shape (n_y, n_x)
        Peak energy and its 1σ error, eV; NaN where the fit did not succeed or
        the pixel has no spectrum.
    fwhm_mev, fwhm_err_mev : ndarray, shape (n_y, n_x)
        FWHM and its 1σ error, meV; NaN likewise.
    area, area_err : ndarray, shape (n_y, n_x)
        Line area (photoelectrons) and its error; NaN likewise.
    reduced_chi2 : ndarray, shape (n_y, n_x)
        χ²/dof of each fit (NaN without a spectrum).
    quality : ndarray of str, shape (n_y, n_x)
        ``"ok"``, ``"poor fit"``, ``"failed"``, ``"saturated"`` (see
        :data:`micropl.analysis.spectra.QUALITIES`) or ``"missing"`` (no spectrum).
    model : str
        Line shape fitted.
    """

    x_um: np.ndarray
    y_um: np.ndarray
    peak_energy_ev: np.ndarray
    peak_energy_err_ev: np.ndarray
    fwhm_mev: np.ndarray
    fwhm_err_mev: np.ndarray
    area: np.ndarray
    area_err: np.ndarray
    reduced_chi2: np.ndarray
    quality: np.ndarray
    model: str = "lorentzian"

    @property
    def ok(self) -> np.ndarray:
        """Pixels whose fit is ``"ok"``, shape (n_y, n_x)."""
        return self.quality == "ok"


def fit_spectral_cube(x_um, y_um, wavelength_nm, counts, *, model: str = "lorentzian",
                      noise_factor: float | None = 2.0, read_noise: float = 0.0,
                      resolution_mev: float | None = None) -> SpectralMapFit:
    """Fit one line in every pixel of a spectral cube (one batch call).

    Parameters
    ----------
    x_um, y_um : array_like
        Pixel-centre axes, µm, shapes ``(n_x,)`` and ``(n_y,)``.
    wavelength_nm : array_like, shape (n_wl,)
        Wavelength of each camera column, nm.
    counts : array_like, shape (n_y, n_x, n_wl)
        Photoelectrons per column (bias and dark removed); a pixel whose values
        are all NaN has no spectrum (lost frame) and is reported ``"missing"``.
    model : str
        Line model of :func:`~micropl.analysis.spectra.fit_spectra`.
    noise_factor : float or None
        Variance per photoelectron: 2 for an EMCCD at high gain, 1 at gain 1,
        None when unknown (errors scaled by χ²).
    read_noise : float
        Signal-independent noise per column, photoelectrons rms.
    resolution_mev : float, optional
        Spectrograph resolution (a narrower fitted line fails).

    Returns
    -------
    SpectralMapFit

    Raises
    ------
    AnalysisInputError
        Shapes that do not match, or a pixel with some (not all) values NaN.

    Examples
    --------
    A 3 × 2 map of Lorentzian lines (FWHM 0.2 nm) whose centre moves across the map;
    one pixel lost its frame (all NaN):

    >>> import numpy as np
    >>> from micropl.analysis.spectra import wavelength_nm_from_energy_ev
    >>> from micropl.analysis.spectral_map import fit_spectral_cube
    >>> wl = np.linspace(899.0, 901.0, 81)
    >>> centre = np.array([[899.8, 900.0, 900.2], [900.1, 900.3, 900.5]])  # nm, (n_y, n_x)
    >>> mean = 20 + 2000 / (1 + ((wl - centre[..., None]) / 0.1) ** 2)
    >>> cube = np.random.default_rng(3).poisson(mean).astype(float)
    >>> cube[1, 2] = np.nan
    >>> fit = fit_spectral_cube([0.0, 0.5, 1.0], [0.0, 0.5], wl, cube, noise_factor=1.0)
    >>> fit.quality.tolist()
    [['ok', 'ok', 'ok'], ['ok', 'ok', 'missing']]
    >>> wavelength_nm_from_energy_ev(fit.peak_energy_ev).round(2).tolist()
    [[899.8, 900.0, 900.2], [900.1, 900.3, nan]]
    >>> fit.fwhm_mev.round(1).tolist()
    [[0.3, 0.3, 0.3], [0.3, 0.3, nan]]
    """
    x = np.asarray(x_um, float)
    y = np.asarray(y_um, float)
    wl = np.asarray(wavelength_nm, float)
    cube = np.asarray(counts, float)
    if cube.shape != (y.size, x.size, wl.size):
        raise AnalysisInputError(f"spectral cube of shape {cube.shape}: expected "
                                 f"(n_y, n_x, n_wl) = ({y.size}, {x.size}, {wl.size})")
    flat = cube.reshape(-1, wl.size)
    nan = np.isnan(flat)
    missing = nan.all(axis=1)
    if np.any(nan.any(axis=1) & ~missing):
        raise AnalysisInputError("spectral cube: a pixel has some NaN columns; a lost frame "
                                 "must be NaN in every column")
    shape = (y.size, x.size)
    out = {name: np.full(flat.shape[0], np.nan) for name in
           ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "area",
            "area_err", "reduced_chi2")}
    quality = np.full(flat.shape[0], "missing", dtype=object)
    have = np.flatnonzero(~missing)
    if have.size:
        fit = fit_spectra(wl, flat[have], model, noise_factor=noise_factor,
                          read_noise=read_noise, resolution_mev=resolution_mev)
        good = np.asarray(fit.success, bool)
        for name in out:
            values = np.asarray(getattr(fit, name), float).reshape(-1)
            if name != "reduced_chi2":
                values = np.where(good, values, np.nan)
            out[name][have] = values
        quality[have] = np.asarray(fit.quality).reshape(-1)
    return SpectralMapFit(x_um=x, y_um=y, model=model,
                          quality=quality.astype(str).reshape(shape),
                          **{name: v.reshape(shape) for name, v in out.items()})
