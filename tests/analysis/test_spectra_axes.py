"""Wavelength axes (grating equation, polynomial) and energy conversions."""

import math

import numpy as np
import pytest

from micropl.analysis.spectra import (
    HC_EV_NM,
    density_per_ev,
    energy_ev_from_wavelength_nm,
    pixel_edges_nm,
    pixel_energy_width_ev,
    polynomial_axis_nm,
    wavelength_nm_from_energy_ev,
)
from micropl.errors import AnalysisInputError
from micropl.grating import wavelength_axis_nm


def test_dispersion_300_gmm_near_515_nm():
    wl = wavelength_axis_nm(1600, 16.0, 515.0, 300, 300.0, 30.0)
    disp = np.diff(wl)
    centre = disp[790:810].mean()
    assert 0.15 <= centre <= 0.20
    assert np.all(disp > 0)
    # the centre wavelength falls on the centre pixel (half-way between 799 and 800)
    assert 0.5 * (wl[799] + wl[800]) == pytest.approx(515.0, abs=1e-5)
    wl_800 = wavelength_axis_nm(1600, 16.0, 515.0, 300, 300.0, 30.0, center_pixel=800)
    assert wl_800[800] == pytest.approx(515.0, abs=1e-10)


def test_grating_equation_against_direct_geometry():
    """Brute force: solve m λ = d (sin α + sin β) for each pixel's diffraction angle.

    Convention (Princeton Instruments / Andor Czerny–Turner calibration): the grating
    angle ψ is measured from the bisector of the incident and diffracted beams, the
    incidence angle is α = ψ − φ/2 and the diffraction angle at the centre pixel is
    β = ψ + φ/2, with φ the inclusion angle; wavelength grows with pixel index.
    """
    n_px, pixel_um, f_mm, phi_deg, g_mm, lam_c = 512, 16.0, 300.0, 24.0, 600.0, 600.0
    wl = wavelength_axis_nm(n_px, pixel_um, lam_c, g_mm, f_mm, phi_deg, center_pixel=100.0)
    d_nm = 1e6 / g_mm
    # grating angle by bisection on the centre wavelength (independent of the closed form)
    lo, hi = -1.0, 1.0
    for _ in range(200):
        psi = 0.5 * (lo + hi)
        lam = d_nm * (math.sin(psi + math.radians(phi_deg / 2)) +
                      math.sin(psi - math.radians(phi_deg / 2)))
        lo, hi = (psi, hi) if lam < lam_c else (lo, psi)
    alpha = psi - math.radians(phi_deg / 2)
    beta = psi + math.radians(phi_deg / 2)
    for i in (0, 100, 300, 511):
        x_mm = (i - 100.0) * pixel_um * 1e-3
        beta_i = beta + math.atan(x_mm / f_mm)
        assert wl[i] == pytest.approx(d_nm * (math.sin(alpha) + math.sin(beta_i)), rel=1e-12)
    # local dispersion = d cos β / (m f) per mm of detector
    disp_nm_per_px = d_nm * math.cos(beta) / f_mm * pixel_um * 1e-3
    assert (wl[101] - wl[99]) / 2 == pytest.approx(disp_nm_per_px, rel=1e-4)


def test_detector_tilt_changes_dispersion_across_chip():
    flat = wavelength_axis_nm(1024, 13.0, 700.0, 1200, 500.0, 20.0)
    tilted = wavelength_axis_nm(1024, 13.0, 700.0, 1200, 500.0, 20.0, detector_tilt_deg=5.0)
    assert np.allclose(flat[511:513].mean(), tilted[511:513].mean(), atol=1e-6)
    d_flat = np.diff(flat)
    d_tilt = np.diff(tilted)
    assert not np.allclose(d_flat[[0, -1]], d_tilt[[0, -1]], rtol=1e-3)


def test_unreachable_wavelength_raises():
    with pytest.raises(AnalysisInputError, match="not reachable"):
        wavelength_axis_nm(100, 16.0, 3000.0, 1200, 300.0, 30.0)
    with pytest.raises(AnalysisInputError):
        wavelength_axis_nm(100, -16.0, 500.0, 300, 300.0, 30.0)


def test_polynomial_axis_ascending_coefficients():
    coeffs = [470.0, 0.09, 1e-6, -2e-10]
    wl = polynomial_axis_nm(1000, coeffs)
    i = np.arange(1000.0)
    assert np.allclose(wl, 470.0 + 0.09 * i + 1e-6 * i**2 - 2e-10 * i**3, rtol=0, atol=1e-10)
    with pytest.raises(AnalysisInputError):
        polynomial_axis_nm(10, [])


def test_energy_conversion_round_trip():
    assert energy_ev_from_wavelength_nm(515.0) == pytest.approx(2.40746, abs=1e-5)
    e = np.linspace(1.5, 3.0, 7)
    assert np.allclose(energy_ev_from_wavelength_nm(wavelength_nm_from_energy_ev(e)), e)


def test_density_per_ev_matches_jacobian_and_conserves_counts():
    wl = np.linspace(470.0, 560.0, 1000)
    counts = np.random.default_rng(3).uniform(10, 100, wl.size)
    dens = density_per_ev(wl, counts)
    # first-order Jacobian: counts / Δλ · λ²/hc
    dl = np.gradient(wl)
    jac = counts / dl * wl**2 / HC_EV_NM
    assert np.allclose(dens, jac, rtol=1e-5)
    # total counts are conserved exactly with the edge widths
    assert np.sum(dens * pixel_energy_width_ev(wl)) == pytest.approx(counts.sum(), rel=1e-12)
    # edges bracket the centres
    edges = pixel_edges_nm(wl)
    assert np.all((edges[:-1] < wl) & (wl < edges[1:]))


def test_bad_axis_is_rejected():
    with pytest.raises(AnalysisInputError, match="monotonic"):
        pixel_edges_nm([500.0, 501.0, 500.5])
    with pytest.raises(AnalysisInputError):
        density_per_ev([500.0, 501.0], [1.0, 2.0, 3.0])
