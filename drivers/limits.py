"""The limit rules: one function decides each kind of limit.

Drivers call them when a value is sent; the pre-flight check of the procedures
(:mod:`micropl.acquisition.procedures.preflight`) calls them with the limits the
instruments report, so both refuse the same values. An out-of-range value raises
:class:`~micropl.errors.LimitError` before anything is sent to the device.
"""

from __future__ import annotations

import math

from micropl.errors import LimitError
from micropl.records import Grating

__all__ = ["line_refusal", "EM_GAIN_MAX", "EM_GAIN_MAX_ADVANCED", "limit_error", "range_refusal",
           "em_gain_refusal", "grating_refusal", "channels_refusal", "bin_refusal"]

#: Largest EM gain without advanced mode (EMCCD ageing protection).
EM_GAIN_MAX = 300


#: Largest EM gain with advanced mode on.
EM_GAIN_MAX_ADVANCED = 1000


def limit_error(kind: str, name: str, action: str, allowed: str) -> LimitError:
    """Build the standard refusal message ``kind 'name': action refused: allowed``."""
    return LimitError(f"{kind} '{name}': {action} refused: {allowed}")


def range_refusal(value: float, low: float, high: float, unit: str = "") -> str | None:
    """Whether ``value`` lies in the inclusive range ``[low, high]``.

    Parameters
    ----------
    value : float
        The value to check (NaN and infinities are refused).
    low, high : float
        Inclusive bounds, in ``unit``.
    unit : str
        Unit for the message, e.g. ``"µm"``.

    Returns
    -------
    str or None
        None when allowed, else the allowed range as text (``"range 0–80 µm"``).
    """
    number = float(value)
    if math.isfinite(number) and low <= number <= high:
        return None
    return f"range {low:g}–{high:g}" + (f" {unit}" if unit else "")


def em_gain_refusal(gain: int, advanced: bool, *, maximum: int = EM_GAIN_MAX_ADVANCED,
                    normal_maximum: int = EM_GAIN_MAX) -> str | None:
    """Whether a camera accepts EM gain ``gain`` (the temperature is checked apart).

    Parameters
    ----------
    gain : int
        Requested EM gain (1 = conventional amplifier).
    advanced : bool
        Whether advanced EM gain mode is on.
    maximum : int
        Largest gain the camera can do at all.
    normal_maximum : int
        Largest gain without advanced mode.

    Returns
    -------
    str or None
        None when allowed, else what is allowed, e.g. ``"maximum 300 unless advanced
        mode is on"``.
    """
    if gain < 1:
        return "minimum 1"
    if gain > maximum:
        return f"maximum {maximum}"
    if gain > normal_maximum and not advanced:
        return f"maximum {normal_maximum} unless advanced mode is on"
    return None


def grating_refusal(slot: int, gratings: list[Grating] | tuple[Grating, ...]) -> str | None:
    """Whether turret slot ``slot`` holds one of ``gratings``.

    Returns
    -------
    str or None
        None when installed, else the installed slots (``"installed slots 1, 2, 3"``).
    """
    slots = [int(g.slot) for g in gratings]
    if int(slot) in slots:
        return None
    return "installed slots " + ", ".join(str(s) for s in slots)


def channels_refusal(wanted: tuple[int, ...], available: tuple[int, ...]) -> str | None:
    """Whether a time tagger with inputs ``available`` can stream ``wanted``.

    Returns
    -------
    str or None
        None when every wanted channel exists (and at least one is wanted), else
        the available channels as text.
    """
    if wanted and all(int(c) in available for c in wanted):
        return None
    return f"available channels {tuple(available)}"


def bin_refusal(bin_ps: float, resolution_ps: float) -> str | None:
    """Whether a histogram bin of ``bin_ps`` can be made from tags of ``resolution_ps``.

    Returns
    -------
    str or None
        None for a whole multiple of the resolution (at least one), else the rule.
    """
    ratio = float(bin_ps) / float(resolution_ps)
    if math.isfinite(ratio) and ratio >= 1 - 1e-9 and abs(ratio - round(ratio)) <= 1e-6:
        return None
    return f"a whole multiple of the resolution {resolution_ps:g} ps"


# --------------------------------------------------------------------------- hardware lines
def line_refusal(start_um: float, stop_um: float, n_pixels: int, dwell_s: float,
                 limits_um: tuple[float, float]) -> str | None:
    """Whether a hardware-timed line sweep is possible in the x range ``limits_um``.

    Parameters
    ----------
    start_um, stop_um : float
        Edges of the sweep in µm: the start of the first pixel and the end of
        the last (either direction).
    n_pixels : int
        Pixels in the line (at least 1).
    dwell_s : float
        Time per pixel in s (positive, finite).
    limits_um : (float, float)
        Allowed x range in µm.

    Returns
    -------
    str or None
        None when allowed, else what is allowed (``"range 0–80 µm"``, ...).
    """
    if int(n_pixels) != n_pixels or n_pixels < 1:
        return "at least 1 pixel"
    if not (math.isfinite(float(dwell_s)) and dwell_s > 0):
        return "a positive dwell time"
    if start_um == stop_um:
        return "a sweep of non-zero length"
    for edge in (start_um, stop_um):
        allowed = range_refusal(edge, limits_um[0], limits_um[1], "µm")
        if allowed is not None:
            return allowed
    return None
