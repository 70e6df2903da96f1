"""Helpers shared by the message-based (pymeasure + pyvisa) drivers.

* :class:`AllowedRange` and :func:`refuse_outside` — a pymeasure property
  validator that refuses a value outside a range evaluated at call time, with
  :class:`~micropl.drivers.interfaces.LimitError` raised *before* anything is
  sent to the device;
* :func:`is_visa_timeout` — whether an exception from a VISA read is a timeout;
* :func:`clock_functions` — ``now``/``sleep`` of an injected clock, or wall
  time (``time.monotonic``/``time.sleep``) when there is none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from micropl.drivers.interfaces import Clock, limit_error

__all__ = ["AllowedRange", "clock_functions", "is_visa_timeout", "refuse_outside"]


@dataclass(frozen=True)
class AllowedRange:
    """Allowed range handed to pymeasure validators as the property's ``values``.

    ``bounds`` is called at validation time, so a range that depends on the
    instrument state (the grating in place, a voltage limit read from the
    device, the scanner's travel) is evaluated afresh for every value.

    Attributes
    ----------
    kind : str
        Instrument role used in the message (``"spectrograph"``, ``"laser"`` ...).
    name : str
        Instrument name used in the message.
    action : str
        What was refused, a format string with ``{value}`` (a float), e.g.
        ``"GOTO {value} nm"``.
    unit : str
        Unit of the value, e.g. ``"nm"``.
    bounds : callable
        Returns ``(low, high)``, inclusive, in ``unit``.
    allowed : str
        Text of the allowed range, a format string with ``{low}``, ``{high}``
        and ``{unit}``; default ``"range {low:g}–{high:g} {unit}"``.
    """

    kind: str
    name: str
    action: str
    unit: str
    bounds: Callable[[], tuple[float, float]]
    allowed: str = "range {low:g}–{high:g} {unit}"


def refuse_outside(value: Any, allowed: AllowedRange) -> float:
    """pymeasure validator: return ``value`` as float or raise LimitError naming the range.

    Parameters
    ----------
    value : number
        Value about to be sent.
    allowed : AllowedRange
        The range and the wording of the refusal.

    Returns
    -------
    float
        ``value``, unchanged.

    Raises
    ------
    LimitError
        ``value`` is NaN, infinite or outside ``allowed.bounds()``; the message
        reads ``kind 'name': ACTION refused: range low–high unit``.
    """
    number = float(value)
    low, high = allowed.bounds()
    if not (math.isfinite(number) and low <= number <= high):
        raise limit_error(
            allowed.kind,
            allowed.name,
            allowed.action.format(value=number),
            allowed.allowed.format(low=low, high=high, unit=allowed.unit),
        )
    return number


def is_visa_timeout(exc: BaseException) -> bool:
    """True when ``exc`` is a pyvisa I/O error with the VISA timeout status."""
    try:
        from pyvisa import constants, errors
    except ImportError:  # pragma: no cover - pyvisa is a dependency
        return False
    return (isinstance(exc, errors.VisaIOError)
            and exc.error_code == constants.StatusCode.error_timeout)


def clock_functions(clock: Clock | None) -> tuple[Callable[[], float], Callable[[float], None]]:
    """``(now, sleep)`` of ``clock``, or of wall time when ``clock`` is None.

    Parameters
    ----------
    clock : Clock or None
        An object with ``now() -> float`` (s) and ``sleep(seconds)``.

    Returns
    -------
    tuple of callables
        ``now()`` in s and ``sleep(seconds)``.
    """
    if clock is None:
        return time.monotonic, time.sleep
    return clock.now, clock.sleep
