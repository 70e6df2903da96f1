"""Records of the hardware-timed and the spectral (hyperspectral) maps.

:class:`MapTiming` says how a map's pixels were clocked; :class:`SpectralCube` is a
spectrum per pixel with its axes. Both are stored in the session file (tables
``map_timing`` and ``spectral_cube``, see :mod:`micropl.acquisition.storage.schema`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MapTiming", "SpectralCube", "TIMINGS"]

#: The two ways a map's pixels are clocked.
TIMINGS = ("hardware", "software")


@dataclass(frozen=True)
class MapTiming:
    """How the pixels of one map were clocked.

    Attributes
    ----------
    timing : str
        ``"hardware"``: the scanner swept each line at constant speed and its
        trigger output marked the pixel boundaries (counts between markers, or
        one camera exposure per pixel trigger); ``"software"``: a move, a settle
        and a count per pixel.
    reason : str
        Why this timing was used (``"requested"``, or why hardware timing was not
        possible).
    marker_channel : int
        Tagger input of the pixel markers (-1 when none was used).
    dwell_s : float
        Time per pixel, s.
    """

    timing: str
    reason: str
    marker_channel: int
    dwell_s: float


@dataclass(frozen=True, eq=False)
class SpectralCube:
    """A spectrum per map pixel (FVB), with its axes.

    Attributes
    ----------
    x_um : ndarray, shape (n_x,)
        Pixel-centre x positions in µm, ascending.
    y_um : ndarray, shape (n_y,)
        Pixel-centre y positions in µm, ascending.
    wavelength_nm : ndarray, shape (n_wl,)
        Wavelength of each camera column in nm.
    counts : ndarray, shape (n_y, n_x, n_wl)
        Photoelectrons per column and pixel (bias and dark frame removed,
        divided by the EM gain, times e⁻/ADU); NaN for a pixel whose frame was
        lost.
    exposure_s : float
        Exposure per pixel, s.
    dwell_s : float
        Time per pixel, s.
    em_gain : int
        EM gain used.
    read_noise : float
        RMS noise per column independent of the signal, photoelectrons.
    timing : str
        ``"hardware"`` (camera triggered by the scanner's pixel pulses) or
        ``"software"``.
    missing_pixels : int
        Pixels without a frame (lost triggers or frames).
    """

    x_um: np.ndarray
    y_um: np.ndarray
    wavelength_nm: np.ndarray
    counts: np.ndarray
    exposure_s: float
    dwell_s: float
    em_gain: int = 1
    read_noise: float = 0.0
    timing: str = "software"
    missing_pixels: int = 0
