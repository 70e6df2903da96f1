"""Unit conversions shared by every layer (a leaf module: it imports nothing of micropl).

Photon energy and vacuum wavelength are related by ``E = hc / λ``; micropl uses
``hc = 1239.84198 eV·nm`` everywhere, so that an energy computed in the
simulator, the fit, the report and the GUI is the same number.

Examples
--------
>>> from micropl.units import energy_ev_from_wavelength_nm, wavelength_nm_from_energy_ev
>>> round(float(energy_ev_from_wavelength_nm(512.0)), 6)
2.421566
>>> round(float(wavelength_nm_from_energy_ev(2.421566)), 3)
512.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["HC_EV_NM", "energy_ev_from_wavelength_nm", "wavelength_nm_from_energy_ev"]

#: Planck constant × speed of light in eV·nm: E[eV] = HC_EV_NM / λ[nm].
HC_EV_NM = 1239.84198


def energy_ev_from_wavelength_nm(wavelength_nm):
    """Photon energy in eV of a vacuum wavelength in nm: ``E = 1239.84198 / λ``.

    Parameters
    ----------
    wavelength_nm : float or array_like
        Wavelength in nm.

    Returns
    -------
    float or ndarray
        Energy in eV, same shape.

    Examples
    --------
    >>> energy_ev_from_wavelength_nm([400.0, 500.0]).round(4).tolist()
    [3.0996, 2.4797]
    """
    return HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)


def wavelength_nm_from_energy_ev(energy_ev):
    """Vacuum wavelength in nm of a photon energy in eV: ``λ = 1239.84198 / E``.

    Parameters
    ----------
    energy_ev : float or array_like
        Photon energy in eV.

    Returns
    -------
    float or ndarray
        Wavelength in nm, same shape.

    Examples
    --------
    >>> round(float(wavelength_nm_from_energy_ev(2.5)), 3)
    495.937
    """
    return HC_EV_NM / np.asarray(energy_ev, dtype=np.float64)
