"""The grating equation: the wavelength of each pixel of a Czerny–Turner spectrograph.

Shared by the spectrum analysis, the simulated spectrograph, the config checks and the
real spectrograph drivers (Acton, Shamrock). A leaf module: it imports nothing of micropl
but the shared errors.
"""

from __future__ import annotations

import math

import numpy as np

from micropl.errors import AnalysisInputError

__all__ = ["wavelength_axis_nm"]


def wavelength_axis_nm(
    n_px: int,
    pixel_um: float,
    center_wavelength_nm: float,
    grooves_per_mm: float,
    focal_length_mm: float,
    inclusion_angle_deg: float,
    order: int = 1,
    *,
    center_pixel: float | None = None,
    detector_tilt_deg: float = 0.0,
) -> np.ndarray:
    """Wavelength of each pixel column from the Czerny–Turner grating equation.

    The grating is turned by ``ψ`` from the bisector of the incident and the
    diffracted beam so that ``center_wavelength_nm`` falls on ``center_pixel``.
    With the inclusion (included) angle ``φ`` between the incident and the
    diffracted beam, the incidence angle is ``α = ψ − φ/2`` and the diffraction
    angle at the centre pixel is ``β = ψ + φ/2`` (both from the grating normal),
    the convention of Princeton Instruments (Acton) and Andor (Shamrock)
    spectrograph calibrations, where ``m λ_c / d = sin α + sin β =
    2 sin ψ cos(φ/2)``. A pixel a distance ``x`` from the centre pixel on a
    detector tilted by ``γ`` sees the diffraction angle
    ``β_x = β + atan(x cos γ / (f + x sin γ))`` and the wavelength
    ``λ = d (sin α + sin β_x) / m``: wavelength grows with pixel index and the
    linear dispersion at the centre is ``d cos β / (m f)``. A negative ``φ``
    mirrors the geometry (the diffracted beam on the other side of the
    incident one).

    Parameters
    ----------
    n_px : int
        Number of pixel columns.
    pixel_um : float
        Pixel width along the dispersion direction, in µm.
    center_wavelength_nm : float
        Wavelength set on the spectrograph, in nm (falls on ``center_pixel``).
    grooves_per_mm : float
        Grating groove density in lines/mm.
    focal_length_mm : float
        Focal length of the focusing (camera) mirror in mm.
    inclusion_angle_deg : float
        Included angle ``φ`` between incident and diffracted beams, in degrees
        (``0`` for a Littrow mount; e.g. 15.15 for an Acton SP-2300i).
    order : int, optional
        Diffraction order ``m`` (default 1; a negative order is allowed).
    center_pixel : float, optional
        Pixel index (0-based, may be fractional) where ``center_wavelength_nm``
        falls; default ``(n_px - 1) / 2``.
    detector_tilt_deg : float, optional
        Tilt of the detector plane against the normal of the focal axis, in
        degrees (default 0).

    Returns
    -------
    ndarray of float64, shape (n_px,)
        Wavelength in nm of each pixel centre.

    Raises
    ------
    AnalysisInputError
        For a non-positive size or an impossible geometry (the grating cannot
        send the requested wavelength into the given order).

    Examples
    --------
    >>> wl = wavelength_axis_nm(1600, 16.0, 515.0, 300, 300.0, 30.0)
    >>> round(float(np.diff(wl).mean()), 3)  # nm per pixel
    0.167
    """
    n_px = int(n_px)
    if n_px < 2:
        raise AnalysisInputError(f"wavelength axis: need at least 2 pixels, got {n_px}")
    for name, value in (("pixel_um", pixel_um), ("center_wavelength_nm", center_wavelength_nm),
                        ("grooves_per_mm", grooves_per_mm), ("focal_length_mm", focal_length_mm)):
        if not (np.isfinite(value) and value > 0):
            raise AnalysisInputError(f"wavelength axis: {name} must be > 0, got {value}")
    if order == 0:
        raise AnalysisInputError("wavelength axis: diffraction order 0 has no dispersion")
    groove_nm = 1e6 / float(grooves_per_mm)
    half_phi = math.radians(inclusion_angle_deg) / 2.0
    sin_psi = order * center_wavelength_nm / (2.0 * groove_nm * math.cos(half_phi))
    if not abs(sin_psi) < 1.0:
        raise AnalysisInputError(
            f"wavelength axis: {center_wavelength_nm} nm is not reachable in order {order} "
            f"with {grooves_per_mm} g/mm and inclusion angle {inclusion_angle_deg} deg")
    psi = math.asin(sin_psi)
    alpha = psi - half_phi  # incidence angle
    beta = psi + half_phi  # diffraction angle at the centre pixel
    if center_pixel is None:
        center_pixel = (n_px - 1) / 2.0
    x_mm = (np.arange(n_px, dtype=np.float64) - center_pixel) * pixel_um * 1e-3
    tilt = math.radians(detector_tilt_deg)
    eta = np.arctan2(x_mm * math.cos(tilt), focal_length_mm + x_mm * math.sin(tilt))
    # For a negative order the sign of sin(beta) flips with the order: keep λ
    # increasing with pixel index by mirroring the detector offset.
    sign = 1.0 if order > 0 else -1.0
    return groove_nm * (math.sin(alpha) + np.sin(beta + sign * eta)) / order
