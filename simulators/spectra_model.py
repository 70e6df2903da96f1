"""What the camera sees: the optical spectrum under the laser spot, per pixel column.

Each excited emitter contributes a Lorentzian line **in photon energy**. Over an
exposure ``[t0, t1)`` the exposure is cut into up to 16 segments; in each segment
the line sits at ``energy_ev + mean spectral-diffusion offset`` and carries
``rate × ON time in the segment`` photons (blinking), where

    rate = detected_per_pulse_per_apd × rep_rate_hz × photons_per_apd_count

is the photon rate reaching the sensor. The photons falling on a pixel are the
integral of the line over the pixel's energy range, computed exactly from the
Lorentzian CDF ``F(E) = 1/2 + atan(2 (E − E0)/Γ)/π``, so the Jacobian
``|dE/dλ|`` is built in. The polystyrene background is a broad Gaussian in
wavelength (``background.center_nm``, FWHM ``background.width_nm``) carrying
``background.camera_photons_per_s × power_percent/100`` photons/s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from micropl.simulators.sample import VirtualSample
from micropl.simulators.world import Excitation
from micropl.units import HC_EV_NM

__all__ = ["lorentzian_cdf", "sensor_photons_per_column", "MAX_SEGMENTS"]

#: Most segments an exposure is cut into for blinking and spectral diffusion.
MAX_SEGMENTS = 16
_SEGMENT_S = 0.05


def lorentzian_cdf(energy_ev, peak_energy_ev, fwhm_ev):
    """Cumulative distribution of a unit-area Lorentzian in energy.

    Parameters
    ----------
    energy_ev : array_like
        Energies in eV.
    peak_energy_ev, fwhm_ev : float or array_like
        Peak energy and FWHM in eV (broadcast against ``energy_ev``).

    Returns
    -------
    ndarray
        ``1/2 + atan(2 (E − E0)/Γ)/π``, between 0 and 1.
    """
    e = np.asarray(energy_ev, dtype=np.float64)
    return 0.5 + np.arctan(2.0 * (e - peak_energy_ev) / fwhm_ev) / math.pi


def sensor_photons_per_column(
    sample: VirtualSample,
    excitation: Excitation,
    edges_nm: np.ndarray,
    t0_s: float,
    t1_s: float,
    photons_per_apd_count: float,
) -> np.ndarray:
    """Expected photons reaching each pixel column of the sensor during an exposure.

    Parameters
    ----------
    sample : VirtualSample
        The emitters (blinking and spectral diffusion are read from it).
    excitation : Excitation
        Excitation during the exposure.
    edges_nm : ndarray, shape (n_px + 1,)
        Wavelengths of the pixel-column boundaries in nm, monotonic.
    t0_s, t1_s : float
        Exposure start and end (clock time, s).
    photons_per_apd_count : float
        Photons reaching the sensor per count detected on one APD.

    Returns
    -------
    ndarray, shape (n_px,)
        Expected photons per column (before the quantum efficiency).
    """
    edges_nm = np.asarray(edges_nm, dtype=np.float64)
    out = np.zeros(edges_nm.size - 1)
    duration_s = float(t1_s - t0_s)
    if duration_s <= 0 or excitation.power_percent <= 0:
        return out
    edges_ev = HC_EV_NM / edges_nm
    rates = excitation.detected_cps_per_apd * photons_per_apd_count
    for i, rate in zip(excitation.indices, rates):
        i = int(i)
        if rate <= 0:
            continue
        dynamic = bool(sample.blinks[i]) or (
            sample.spectral_diffusion_mev > 0 and not sample.is_aggregate[i])
        n_seg = int(np.clip(np.ceil(duration_s / _SEGMENT_S), 1, MAX_SEGMENTS)) if dynamic else 1
        seg = np.linspace(t0_s, t1_s, n_seg + 1)
        photons = np.empty(n_seg)
        offsets = np.empty(n_seg)
        for k in range(n_seg):
            starts, stops = sample.on_intervals_s(i, seg[k], seg[k + 1])
            photons[k] = rate * float(np.sum(stops - starts))
            offsets[k] = sample.mean_energy_offset_ev(i, seg[k], seg[k + 1])
        if not np.any(photons > 0):
            continue
        fwhm_ev = sample.fwhm_mev[i] * 1e-3
        cdf = lorentzian_cdf(edges_ev[None, :], sample.energy_ev[i] + offsets[:, None], fwhm_ev)
        out += photons @ np.abs(np.diff(cdf, axis=1))
    bg = sample.background
    total_bg = bg.camera_photons_per_s * excitation.power_percent / 100.0 * duration_s
    if total_bg > 0:
        sigma_nm = bg.width_nm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        out += total_bg * np.abs(np.diff(ndtr((edges_nm - bg.center_nm) / sigma_nm)))
    return out
