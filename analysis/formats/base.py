"""The spectral series every spectrum reader returns, and the checks they share.

A reader turns a file into a :class:`SpectralSeries`: one wavelength axis (nm,
ascending) and one or more frames of counts (a kinetic series gives several).
:func:`finish_series` applies the rules every format obeys, so a file in any
format is refused for the same reasons with the same one-line messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from micropl.errors import FileFormatError

__all__ = ["MAX_BINARY_SPECTRUM_BYTES", "MAX_SPECTRUM_VALUES", "SpectralSeries",
           "check_binary_size", "check_values", "finish_series", "wavelength_from_range"]

#: Largest binary spectrum file (SIF, SPE) read, bytes (64 MiB: 8000 frames of 2000 px
#: in float32). The whole file is held once.
MAX_BINARY_SPECTRUM_BYTES = 64 * 1024 * 1024
#: Most count values (frames × pixels) one file may give (64 MB as float64).
MAX_SPECTRUM_VALUES = 8 * 1024 * 1024


@dataclass(frozen=True, eq=False)
class SpectralSeries:
    """Spectra read from a file: one wavelength axis, one or more frames.

    Attributes
    ----------
    wavelength_nm : ndarray of float64, shape (n_points,)
        Strictly increasing wavelengths, nm.
    counts : ndarray of float64, shape (n_frames, n_points)
        Counts per pixel of each frame, in the order of ``wavelength_nm``.
    format : str
        What was read: ``"sif"``, ``"spe2"``, ``"spe3"``, ``"asc"`` or ``"text"``.
    path : str
        The file.
    exposure_s : float or None
        Exposure time per frame (per accumulation), s, when the file records it.
    accumulations : int or None
        Accumulations summed into each frame, when recorded.
    gain : float or None
        EM gain (Andor ``GainDAC``), when recorded.
    calibration : {"file", "user"}
        Where the wavelength axis came from: the file, or ``wavelength_nm_range``.
    metadata : dict
        Further values the file records (detector, temperature...), JSON-ready.
    """

    wavelength_nm: np.ndarray
    counts: np.ndarray
    format: str
    path: str
    exposure_s: float | None = None
    accumulations: int | None = None
    gain: float | None = None
    calibration: str = "file"
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        """Frames in the series."""
        return int(self.counts.shape[0])

    @property
    def n_points(self) -> int:
        """Pixels (points) per frame."""
        return int(self.wavelength_nm.size)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(wavelength_nm, counts)`` of frame ``index`` (0-based).

        Raises
        ------
        FileFormatError
            ``index`` outside ``0 .. n_frames - 1`` (one line naming the file).
        """
        if not 0 <= int(index) < self.n_frames:
            raise FileFormatError(
                f"{self.path}: frame {index} does not exist; the file holds {self.n_frames} "
                f"frame(s), 0 to {self.n_frames - 1}")
        return self.wavelength_nm, self.counts[int(index)]

    def describe(self) -> dict:
        """What was read, JSON-ready: ``format``, ``n_points``, ``n_frames``,
        ``wavelength_min_nm``, ``wavelength_max_nm``, ``exposure_s`` (null when not
        recorded), ``accumulations``, ``gain``, ``calibration``."""
        return {"format": self.format, "n_points": self.n_points, "n_frames": self.n_frames,
                "wavelength_min_nm": float(self.wavelength_nm[0]),
                "wavelength_max_nm": float(self.wavelength_nm[-1]),
                "exposure_s": self.exposure_s, "accumulations": self.accumulations,
                "gain": self.gain, "calibration": self.calibration}


def check_binary_size(path: Path, what: str) -> int:
    """The size of a binary spectrum file, refused above :data:`MAX_BINARY_SPECTRUM_BYTES`.

    Raises
    ------
    FileFormatError
        Empty or too large (one line naming the file and the size).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.base import check_binary_size
    >>> from micropl.errors import FileFormatError
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "frame.spe"
    >>> _ = path.write_bytes(bytes(4200))
    >>> check_binary_size(path, "SPE")
    4200
    >>> _ = path.write_bytes(b"")
    >>> try:
    ...     check_binary_size(path, "SPE")
    ... except FileFormatError as exc:
    ...     print(str(exc).replace(folder.name, "DIR"))
    DIR/frame.spe: file is empty
    >>> folder.cleanup()
    """
    size = path.stat().st_size
    if size == 0:
        raise FileFormatError(f"{path}: file is empty")
    if size > MAX_BINARY_SPECTRUM_BYTES:
        raise FileFormatError(
            f"{path}: {size} bytes is too large for a {what} spectrum file (max "
            f"{MAX_BINARY_SPECTRUM_BYTES} bytes); is it the right file?")
    return size


def check_values(path: Path, what: str, n_frames: int, n_points: int) -> None:
    """Refuse a header that claims more values than :data:`MAX_SPECTRUM_VALUES`.

    Raises
    ------
    FileFormatError
        No frame or no point, or more than :data:`MAX_SPECTRUM_VALUES` values.

    Examples
    --------
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.base import check_values
    >>> check_values(Path("run.sif"), "SIF", 10, 1024)  # 10 frames of 1024 px: accepted
    >>> check_values(Path("run.sif"), "SIF", 100_000, 100_000)
    Traceback (most recent call last):
    ...
    micropl.errors.FileFormatError: run.sif: SIF header claims 100000 frames of 100000 points, more than the 8388608 values micropl reads from one file
    """
    if n_frames < 1 or n_points < 1:
        raise FileFormatError(f"{path}: {what} header gives {n_frames} frame(s) of "
                              f"{n_points} points; the header is corrupt")
    if n_frames * n_points > MAX_SPECTRUM_VALUES:
        raise FileFormatError(
            f"{path}: {what} header claims {n_frames} frames of {n_points} points, more "
            f"than the {MAX_SPECTRUM_VALUES} values micropl reads from one file")


def wavelength_from_range(path: Path, n_points: int,
                          wavelength_nm_range: tuple[float, float]) -> np.ndarray:
    """A linear axis from ``LOW`` to ``HIGH`` nm over ``n_points`` pixels.

    Raises
    ------
    FileFormatError
        A range that is not two positive, finite, different numbers.

    Examples
    --------
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.base import wavelength_from_range
    >>> wavelength_from_range(Path("run.spe"), 5, (900.0, 902.0)).tolist()
    [900.0, 900.5, 901.0, 901.5, 902.0]
    >>> wavelength_from_range(Path("run.spe"), 5, (900.0, 900.0))
    Traceback (most recent call last):
    ...
    micropl.errors.FileFormatError: run.spe: --wavelength-nm-range 900 900: give two different positive wavelengths (nm) for the first and the last pixel
    """
    lo, hi = (float(v) for v in wavelength_nm_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi > 0 and lo != hi):
        raise FileFormatError(
            f"{path}: --wavelength-nm-range {lo:g} {hi:g}: give two different positive "
            "wavelengths (nm) for the first and the last pixel")
    return np.linspace(lo, hi, n_points)


def finish_series(path: Path | str, wavelength_nm: np.ndarray, counts: np.ndarray,
                  fmt: str, **fields) -> SpectralSeries:
    """Check a read axis and frames and return them as a :class:`SpectralSeries`.

    A descending axis is flipped (with the frames). Refused, with one line naming the
    file: non-finite values, fewer than 3 points, non-positive or non-monotonic
    wavelengths, all counts zero, frames of another length than the axis.

    Examples
    --------
    >>> from micropl.analysis.formats.base import finish_series
    >>> series = finish_series("run.txt", [903.0, 902.0, 901.0], [5.0, 7.0, 9.0], "text")
    >>> series.wavelength_nm.tolist(), series.counts.tolist()  # flipped to ascending
    ([901.0, 902.0, 903.0], [[9.0, 7.0, 5.0]])
    >>> finish_series("run.txt", [901.0, 902.0, 902.0], [5.0, 7.0, 9.0], "text")
    Traceback (most recent call last):
    ...
    micropl.errors.FileFormatError: run.txt: wavelength is not strictly monotonic (point 3)
    """
    p = str(path)
    wl = np.asarray(wavelength_nm, dtype=np.float64).ravel()
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim == 1:
        c = c[np.newaxis, :]
    if c.ndim != 2 or c.shape[1] != wl.size:
        raise FileFormatError(f"{p}: {c.shape[-1]} counts per frame but {wl.size} wavelengths")
    if not np.all(np.isfinite(wl)):
        raise FileFormatError(f"{p}: non-finite wavelength (nan/inf) in the calibration")
    if not np.all(np.isfinite(c)):
        frame, px = (int(v[0]) for v in np.nonzero(~np.isfinite(c)))
        raise FileFormatError(f"{p}: non-finite count (nan/inf) in frame {frame}, pixel {px}")
    if wl.size < 3:
        raise FileFormatError(f"{p}: only {wl.size} data points; need at least 3")
    if np.all(c == 0):
        raise FileFormatError(f"{p}: all counts are zero")
    if np.any(wl <= 0):
        raise FileFormatError(f"{p}: wavelengths must be positive (nm)")
    step = np.diff(wl)
    if np.all(step < 0):
        wl, c = wl[::-1].copy(), c[:, ::-1].copy()
    elif not np.all(step > 0):
        bad = int(np.flatnonzero(step * np.sign(step.sum()) <= 0)[0]) + 2
        raise FileFormatError(f"{p}: wavelength is not strictly monotonic (point {bad})")
    return SpectralSeries(wavelength_nm=wl, counts=c, format=fmt, path=p, **fields)
