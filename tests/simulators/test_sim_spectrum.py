"""Simulated spectra and maps recover the virtual sample's truth.

The spectrum is fitted here with scipy ``curve_fit`` of a Lorentzian in photon
energy on counts per pixel (density × the pixel's energy width, i.e. the
Jacobian), weighted with the EMCCD variance ≈ 2 × signal; the wavelength axis
is checked against a grating equation written here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import curve_fit

from micropl.drivers.interfaces import Spectrograph
from micropl.simulators.camera import SimCamera
from micropl.simulators.clock import VirtualClock
from micropl.simulators.laser import SimLaser
from micropl.simulators.sample import VirtualSample
from micropl.simulators.scanner import SimScanner
from micropl.simulators.settings import (
    SampleSettings,
    SimCameraSettings,
    SimLaserSettings,
    SimScannerSettings,
    SimSpectrographSettings,
)
from micropl.simulators.spectrograph import SimSpectrograph
from micropl.simulators.world import SimulatedWorld

HC = 1239.84198


def _setup(sample, center_nm, grating=2, **camera_kw):
    world = SimulatedWorld(sample, VirtualClock("fast"))
    laser = SimLaser(SimLaserSettings(), world)
    SimScanner(SimScannerSettings(), world)
    spec = SimSpectrograph(SimSpectrographSettings(grating=grating,
                                                   center_wavelength_nm=center_nm), world)
    kw = dict(start_temperature_c=-80.0)
    kw.update(camera_kw)
    cam = SimCamera(SimCameraSettings(**kw), world)
    laser.emission_on = True
    return world, spec, cam


def _brute_force_axis_nm(n_px, pixel_um, center_nm, g_per_mm, focal_mm, incl_deg):
    """Czerny–Turner grating equation, m λ = d (sin α + sin β), written independently."""
    d_nm = 1e6 / g_per_mm
    half = math.radians(incl_deg) / 2
    out = []
    for i in range(n_px):
        # grating angle θ: λc = 2 d sin θ cos(φ/2)
        theta = math.asin(center_nm / (2 * d_nm * math.cos(half)))
        x_mm = (i - (n_px - 1) / 2) * pixel_um / 1000
        # Princeton Instruments / Andor convention: α = θ − φ/2, β = θ + φ/2.
        beta = theta + half + math.atan(x_mm / focal_mm)
        out.append(d_nm * (math.sin(theta - half) + math.sin(beta)))
    return np.array(out)


def test_wavelength_axis_grating_equation_dispersion_and_protocol():
    smp = VirtualSample.single()
    world, spec, cam = _setup(smp, 515.0)
    assert isinstance(spec, Spectrograph)
    axis = spec.wavelength_axis_nm(1600, 16.0)
    np.testing.assert_allclose(axis, _brute_force_axis_nm(1600, 16.0, 515.0, 300, 300.0, 30.0),
                               rtol=0, atol=1e-6)
    nm_per_px = np.diff(axis).mean()
    assert 0.15 <= nm_per_px <= 0.2
    assert axis[799] < 515.0 < axis[800]
    spec.grating = 4  # 1200 g/mm: four times finer, and the change takes its time
    assert world.clock.now() >= spec.settings.grating_change_s
    assert np.diff(spec.wavelength_axis_nm(1600, 16.0)).mean() < nm_per_px / 3.5


def test_fitted_peak_energy_and_fwhm_within_3_sigma_of_truth():
    energy_ev, fwhm_mev = 2.44, 100.0
    smp = VirtualSample.single(x_um=20.0, y_um=20.0, energy_ev=energy_ev, fwhm_mev=fwhm_mev,
                               brightness_cps=2e4, seed=3)
    gain = 100
    world, spec, cam = _setup(smp, HC / energy_ev, em_gain=gain, exposure_s=1.0,
                              cosmic_rays_per_min=0.0)
    frame = cam.acquire()
    wl = spec.wavelength_axis_nm(cam.sensor_shape[1], cam.pixel_um)
    y = frame.counts - cam.settings.bias_adu
    e = HC / wl
    mid = 0.5 * (wl[1:] + wl[:-1])
    edges = np.concatenate([[2 * wl[0] - mid[0]], mid, [2 * wl[-1] - mid[-1]]])
    de = np.abs(np.diff(HC / edges))  # Jacobian: energy width of each pixel, eV
    adu_per_pe = gain / cam.e_per_adu
    read_adu2 = (cam.settings.read_noise_e / cam.e_per_adu) ** 2
    # fit ±3 FWHM around the peak, where the broad polystyrene background is a straight line
    win = np.abs(e - e[np.argmax(y)]) < 3 * fwhm_mev * 1e-3
    e, y, de = e[win], y[win], de[win]

    def model(e_ev, area, e0, gamma, offset, slope):
        density = area * (gamma / 2 / math.pi) / ((e_ev - e0) ** 2 + (gamma / 2) ** 2)
        return density * de + offset + slope * (e_ev - energy_ev)

    # weights: EMCCD variance ≈ 2 × signal (in ADU: 2·G/e_per_adu·signal) + read noise;
    # first from the data, then from the model (avoids the low-count weighting bias)
    sigma = np.sqrt(2 * adu_per_pe * np.maximum(y, 1.0) + read_adu2)
    p0 = [y.sum(), e[np.argmax(y)], 0.08, 0.0, 0.0]
    for _ in range(2):
        popt, pcov = curve_fit(model, e, y, p0=p0, sigma=sigma, absolute_sigma=True)
        sigma = np.sqrt(2 * adu_per_pe * np.maximum(model(e, *popt), 0.0) + read_adu2)
    err = np.sqrt(np.diag(pcov))
    chi2_red = np.sum(((y - model(e, *popt)) / sigma) ** 2) / (y.size - 5)
    assert 0.8 < chi2_red < 1.25  # the noise really is ≈ 2 × signal
    assert abs(popt[1] - energy_ev) < 3 * err[1]
    assert abs(popt[2] * 1e3 - fwhm_mev) < 3 * err[2] * 1e3
    assert err[1] < 2e-3 and err[2] < 4e-3  # a meaningful test: errors of ~1 meV
    # and the total photoelectrons match the excitation model (brightness × p × 2 × QE)
    p_exc = 1 - math.exp(-20 / 15)
    expected_pe = 2e4 * p_exc * cam.settings.photons_per_apd_count * 0.9
    assert popt[0] / adu_per_pe == pytest.approx(expected_pe, rel=0.05)


def test_blinking_dims_the_spectrum_by_the_on_fraction():
    smp = VirtualSample.single(x_um=20.0, y_um=20.0, blinking=True, seed=4)
    world, spec, cam = _setup(smp, 514.5, em_gain=1, exposure_s=0.2, cosmic_rays_per_min=0.0,
                              read_noise_e=0.0)
    totals, on = [], []
    for _ in range(40):
        t0 = world.clock.now()
        frame = cam.acquire()
        totals.append(frame.counts.sum() - cam.settings.bias_adu * frame.counts.size)
        s, e = smp.on_intervals_s(0, t0, t0 + 0.2)
        on.append(np.sum(e - s) / 0.2)
    totals, on = np.array(totals), np.array(on)
    assert on.min() < 0.7 and on.max() == pytest.approx(1.0)
    slope = np.polyfit(on, totals, 1)
    assert slope[1] < 0.05 * slope[0]  # off → (almost) nothing but background
    assert np.corrcoef(on, totals)[0, 1] > 0.98


def test_map_shows_spots_where_the_qds_are():
    smp = VirtualSample.from_settings(SampleSettings(
        seed=12, area_um=(6.0, 6.0), density_per_um2=0.15, aggregates_per_um2=0.0))
    assert smp.n >= 3
    world, spec, cam = _setup(smp, 514.0, grating=1, sensor_shape=(10, 200), em_gain=100,
                              exposure_s=0.02, cosmic_rays_per_min=0.0)
    step = 0.2
    xs = np.arange(0.0, 6.0 + 1e-9, step)
    image = np.zeros((xs.size, xs.size))
    for iy, y in enumerate(xs):
        for ix, x in enumerate(xs):
            world.scanner.move_to(x, y)
            image[iy, ix] = cam.acquire().counts.sum() - cam.settings.bias_adu * 200
    gx, gy = np.meshgrid(xs, xs)
    dist = np.min(np.hypot(gx[..., None] - smp.x_um, gy[..., None] - smp.y_um), axis=-1)
    peak = image.max()
    iy, ix = np.unravel_index(np.argmax(image), image.shape)
    assert dist[iy, ix] < 0.3  # brightest pixel on a QD
    assert np.all(image[dist > 1.0] < 0.1 * peak)  # dark away from every QD
    for qx, qy in zip(smp.x_um, smp.y_um):  # every interior QD makes a spot
        if 0.3 < qx < 5.7 and 0.3 < qy < 5.7:
            near = np.hypot(gx - qx, gy - qy) < 0.3
            assert image[near].max() > 0.25 * peak
