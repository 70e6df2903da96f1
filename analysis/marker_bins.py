"""Counts per pixel of a hardware-timed line, from the tags between pixel markers.

A scanner that clocks its own lines (the PI E-727's wave generator, the simulated
scanner) puts a marker on a tagger input at every pixel boundary: ``n + 1``
markers for a line of ``n`` pixels. Pixel ``i`` holds the photon tags with
``marker[i] <= t < marker[i + 1]``. :func:`counts_between_markers` is the one
function that does this binning; the raster scan and replay call it.

>>> import numpy as np
>>> t = np.array([0, 5, 10, 12, 20, 21, 30], np.int64)
>>> c = np.array([9, 1, 9, 2, 9, 1, 9], np.uint8)
>>> counts_between_markers(t, c, 9, (1, 2)).tolist()
[1, 1, 1]
"""

from __future__ import annotations

import numpy as np

from micropl.errors import AnalysisInputError

__all__ = ["counts_between_markers", "marker_times_ps"]


def marker_times_ps(timestamps_ps: np.ndarray, channels: np.ndarray,
                    marker_channel: int) -> np.ndarray:
    """Times of the marker tags, ps (int64, in stream order).

    Raises
    ------
    AnalysisInputError
        Arrays of different lengths, non-integer or unsorted times.

    Examples
    --------
    >>> import numpy as np
    >>> from micropl.analysis.marker_bins import marker_times_ps
    >>> t = np.array([0, 5, 10, 12, 20], np.int64)
    >>> c = np.array([9, 1, 9, 2, 9], np.uint8)
    >>> marker_times_ps(t, c, 9).tolist()
    [0, 10, 20]
    """
    t, c = _checked(timestamps_ps, channels)
    return t[c == int(marker_channel)]


def counts_between_markers(timestamps_ps: np.ndarray, channels: np.ndarray,
                           marker_channel: int, apd_channels: tuple[int, ...],
                           n_pixels: int | None = None) -> np.ndarray:
    """Photon counts in each interval between consecutive markers.

    Parameters
    ----------
    timestamps_ps : ndarray of int64, shape (n,)
        Tag times in ps, ascending.
    channels : ndarray of int, shape (n,)
        Input channel of each tag.
    marker_channel : int
        The input that carries the pixel markers.
    apd_channels : tuple of int
        The photon inputs counted (summed); the marker input may not be one.
    n_pixels : int, optional
        Pixels expected: then exactly ``n_pixels + 1`` markers are required.

    Returns
    -------
    ndarray of int64, shape (n_markers - 1,)
        Photons with ``marker[i] <= t < marker[i + 1]``.

    Raises
    ------
    AnalysisInputError
        Arrays of different lengths, unsorted times, the marker channel among the
        photon channels, fewer than two markers, or not ``n_pixels + 1`` markers.

    Examples
    --------
    Markers on input 9 at 0, 10, 20 and 30 ps bound three pixels; a photon at a
    marker's time belongs to the pixel that marker opens, and tags before the first
    or after the last marker to none:

    >>> import numpy as np
    >>> from micropl.analysis.marker_bins import counts_between_markers
    >>> t = np.array([-3, 0, 1, 4, 10, 10, 20, 25, 30, 31], np.int64)
    >>> c = np.array([1, 9, 1, 2, 9, 2, 9, 1, 9, 1], np.uint8)
    >>> counts_between_markers(t, c, 9, (1, 2)).tolist()
    [2, 1, 1]
    >>> counts_between_markers(t, c, 9, (1,)).tolist()  # input 1 only
    [1, 0, 1]
    >>> counts_between_markers(t, c, 9, (1, 2), n_pixels=4)
    Traceback (most recent call last):
    ...
    micropl.errors.AnalysisInputError: expected 5 pixel markers on channel 9, found 4
    """
    t, c = _checked(timestamps_ps, channels)
    marker = int(marker_channel)
    photon_channels = tuple(int(ch) for ch in apd_channels)
    if marker in photon_channels:
        raise AnalysisInputError(f"marker channel {marker} is also a photon channel "
                                 f"{photon_channels}")
    markers = t[c == marker]
    if n_pixels is not None and markers.size != int(n_pixels) + 1:
        raise AnalysisInputError(f"expected {int(n_pixels) + 1} pixel markers on channel "
                                 f"{marker}, found {markers.size}")
    if markers.size < 2:
        raise AnalysisInputError(f"need at least 2 markers on channel {marker}, "
                                 f"found {markers.size}")
    photons = t[np.isin(c, photon_channels)]
    edges = np.searchsorted(photons, markers, side="left")
    return np.diff(edges).astype(np.int64)


def _checked(timestamps_ps: np.ndarray, channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(timestamps_ps)
    c = np.asarray(channels)
    if t.ndim != 1 or c.shape != t.shape:
        raise AnalysisInputError(f"timestamps {t.shape} and channels {c.shape}: need two "
                                 "1-D arrays of the same length")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise AnalysisInputError(f"timestamps must be integer ps, got {t.dtype}")
    t = t.astype(np.int64, copy=False)
    if t.size > 1 and np.any(np.diff(t) < 0):
        raise AnalysisInputError("timestamps are not in ascending order")
    return t, c
