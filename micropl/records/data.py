"""The records instruments produce: camera frames, spectra, time tags, map lines.

Records are frozen dataclasses holding numpy arrays; they are the only things
that flow between layers. Units are in the names (``_nm``, ``_s``, ``_ps``, ``_um``).
Time tags are int64 picoseconds with a uint8 channel number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ReadMode", "Grating", "Frame", "Spectrum", "TagChunk", "MapLine"]

ReadMode = Literal["fvb", "image", "roi"]


@dataclass(frozen=True)
class Grating:
    """One slot of a spectrograph turret.

    Attributes
    ----------
    slot : int
        1-based turret position.
    grooves_per_mm : float
        Groove density in lines/mm.
    blaze_nm : float
        Blaze wavelength in nm (``nan`` when unknown).
    """

    slot: int
    grooves_per_mm: float
    blaze_nm: float = float("nan")


@dataclass(frozen=True)
class Frame:
    """One camera readout.

    Attributes
    ----------
    counts : ndarray
        Raw ADU, shape ``(n_px,)`` in FVB mode or ``(n_rows, n_px)`` in image/ROI
        mode. Includes the bias offset.
    exposure_s : float
        Exposure time in s.
    t_s : float
        Clock time at the start of the exposure, in s.
    index : int
        Frame number since the acquisition started (gaps mean lost frames).
    em_gain : int
        EM gain used for this frame (1 = conventional amplifier).
    read_mode : str
        ``"fvb"``, ``"image"`` or ``"roi"``.
    """

    counts: np.ndarray
    exposure_s: float
    t_s: float
    index: int = 0
    em_gain: int = 1
    read_mode: ReadMode = "fvb"


@dataclass(frozen=True)
class Spectrum:
    """A camera frame placed on the spectrograph's wavelength axis.

    Attributes
    ----------
    wavelength_nm : ndarray, shape (n_px,)
        Wavelength of each pixel column in nm.
    counts : ndarray, shape (n_px,)
        Counts per pixel, in ``counts_unit``.
    exposure_s : float
        Exposure per accumulation in s.
    t_s : float
        Clock time at the start of acquisition in s.
    accumulations : int
        Number of frames summed into ``counts``.
    em_gain : int
        EM gain used.
    bias_subtracted : bool
        Whether a background/bias frame was already subtracted.
    counts_unit : str
        ``"adu"`` for raw camera units, ``"e"`` for detected photoelectrons
        (bias removed, divided by the EM gain, times ``e_per_adu``), which is
        what the fitter's EMCCD noise model (variance ≈ 2 × signal) expects.
    read_noise : float
        RMS noise per pixel that does not depend on the signal (read noise of
        the frame and of the subtracted background), in ``counts_unit``.
    saturated_pixels : int
        Raw pixels at the camera's ADC ceiling in the frames behind ``counts``
        (summed over the accumulations); the fit of a saturated spectrum is
        flagged ``"saturated"``.
    """

    wavelength_nm: np.ndarray
    counts: np.ndarray
    exposure_s: float
    t_s: float = 0.0
    accumulations: int = 1
    em_gain: int = 1
    bias_subtracted: bool = False
    counts_unit: str = "adu"
    read_noise: float = 0.0
    saturated_pixels: int = 0


@dataclass(frozen=True)
class TagChunk:
    """Time tags recorded over one interval.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Arrival times in ps, sorted ascending, on the tagger's time base.
    channel : ndarray of uint8, shape (n,)
        Input channel of each tag (1-based, as the hardware labels them).
    t_start_ps, t_stop_ps : int
        The interval ``[t_start_ps, t_stop_ps)`` this chunk covers. Consecutive
        chunks tile time without gaps, so an empty chunk still means
        "nothing arrived during this interval".
    overflow : bool
        True when the hardware buffer overflowed during the interval and some
        tags are missing.
    missed_events : int
        Number of tags known to be lost (0 when unknown or none).
    """

    t_ps: np.ndarray
    channel: np.ndarray
    t_start_ps: int
    t_stop_ps: int
    overflow: bool = False
    missed_events: int = 0

    @property
    def duration_s(self) -> float:
        """Covered interval in s."""
        return (self.t_stop_ps - self.t_start_ps) * 1e-12

    def __len__(self) -> int:
        return int(self.t_ps.shape[0])


@dataclass(frozen=True)
class MapLine:
    """One line of a raster scan.

    Attributes
    ----------
    line_index : int
        Row number in the map (0-based).
    y_um : float
        Scanner y position of the line in µm.
    x_um : ndarray, shape (n_x,)
        Scanner x positions in µm, in acquisition order.
    counts : ndarray, shape (n_x,)
        Counts per pixel (APD sum or camera integrated counts).
    dwell_s : float
        Dwell time per pixel in s.
    """

    line_index: int
    y_um: float
    x_um: np.ndarray
    counts: np.ndarray
    dwell_s: float
    source: str = "apd"
