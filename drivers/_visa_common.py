"""Helpers shared by the message-based (pymeasure + pyvisa) drivers.

* :class:`AllowedRange` and :func:`refuse_outside` — a pymeasure property
  validator that refuses a value outside a range evaluated at call time, with
  :class:`~micropl.drivers.interfaces.LimitError` raised *before* anything is
  sent to the device;
* :func:`is_visa_timeout` — whether an exception from a VISA read is a timeout;
* :func:`clock_functions` — ``now``/``sleep`` of an injected clock, or wall
  time (``time.monotonic``/``time.sleep``) when there is none;
* :func:`checked_targets_um` — the (x, y[, z]) targets of a scanner move,
  refused with :class:`~micropl.drivers.interfaces.LimitError` outside the
  axis limits before anything is sent;
* :class:`VisaLinkMixin` — connection set-up from the settings, ``write``
  that remembers the last command for error messages, ``close`` safe to
  call twice (placed before pymeasure's ``Instrument`` in the bases);
* :func:`open_visa` — the common part of a message-based driver's
  ``open_instrument``: pyvisa present, backend chosen, failures named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from micropl.drivers.interfaces import Clock
from micropl.drivers.limits import limit_error, range_refusal
from micropl.errors import InstrumentError, MissingExtraError

__all__ = [
    "AllowedRange",
    "VisaLinkMixin",
    "checked_targets_um",
    "clock_functions",
    "is_visa_timeout",
    "open_visa",
    "refuse_outside",
]

T = TypeVar("T")


class VisaLinkMixin:
    """Connection handling shared by the pymeasure drivers.

    Use as ``class Device(VisaLinkMixin, Instrument)`` and call
    :meth:`_open_link` in place of ``Instrument.__init__``.
    """

    adapter: Any
    _closed: bool
    _last_command: str

    def _open_link(
        self,
        adapter: Any,
        name: str,
        settings: Any,
        clock: Clock | None,
        *,
        read_termination: str,
        write_termination: str,
        **kwargs: Any,
    ) -> None:
        """Keep ``settings`` and ``clock`` and open the pymeasure adapter.

        The serial baud rate (``settings.baud_rate``) and the reply timeout
        (``settings.timeout_s``, s) apply unless ``kwargs`` gives
        ``asrl``/``timeout`` itself.
        """
        self.settings = settings
        kwargs.setdefault("asrl", {"baud_rate": settings.baud_rate})
        kwargs.setdefault("timeout", int(settings.timeout_s * 1000))
        super().__init__(  # type: ignore[call-arg]
            adapter,
            name,
            includeSCPI=False,
            read_termination=read_termination,
            write_termination=write_termination,
            **kwargs,
        )
        self._clock = clock
        self._closed = False
        self._last_command = ""

    def write(self, command: str, **kwargs: Any) -> None:
        """Send ``command`` (write termination appended); remember it for error messages."""
        self._last_command = command
        super().write(command, **kwargs)  # type: ignore[misc]

    def close(self) -> None:
        """Close the connection (safe to call twice); outputs are left as they are."""
        if self._closed:
            return
        self._closed = True
        self.adapter.close()


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
    if range_refusal(number, low, high) is not None:
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


def checked_targets_um(
    kind: str,
    name: str,
    limits_um: Sequence[tuple[float, float]],
    x_um: float,
    y_um: float,
    z_um: float | None = None,
) -> dict[str, float]:
    """Targets of a move, checked against the (x, y, z) limits before anything is sent.

    Parameters
    ----------
    kind, name : str
        Instrument role and name used in the message.
    limits_um : sequence of 3 (low, high) pairs
        Inclusive limits of x, y and z in µm.
    x_um, y_um : float
        Target in µm.
    z_um : float, optional
        Target in µm; left out of the result when None.

    Returns
    -------
    dict
        ``{"x": x_um, "y": y_um[, "z": z_um]}``, values as given.

    Raises
    ------
    LimitError
        A target is NaN, infinite or outside its limits; the message reads
        ``kind 'name': move x to 120 µm refused: range 0–100 µm``.
    """
    targets = {"x": x_um, "y": y_um}
    if z_um is not None:
        targets["z"] = z_um
    for axis, value in targets.items():
        low, high = limits_um["xyz".index(axis)]
        number = float(value)
        allowed = range_refusal(number, low, high, "µm")
        if allowed is not None:
            raise limit_error(kind, name, f"move {axis} to {number:g} µm", allowed)
    return targets


def open_visa(kind: str, driver: str, settings: Any, make: Callable[..., T]) -> T:
    """Open a message-based instrument: check pyvisa, pick the backend, name failures.

    Parameters
    ----------
    kind : str
        Instrument role used in messages (``"spectrograph"``, ``"scanner"`` ...).
    driver : str
        Driver name used in the missing-package message.
    settings : pydantic model
        Settings with ``name``, ``resource`` and ``visa_library``.
    make : callable
        Builds the instrument; called with ``visa_library=...`` when the
        settings name a backend, otherwise with no argument.

    Returns
    -------
    object
        What ``make`` returned.

    Raises
    ------
    MissingExtraError
        When pyvisa is not installed.
    InstrumentError
        When ``make`` fails; an InstrumentError from ``make`` passes unchanged,
        any other exception is wrapped in ``kind 'name': cannot open 'resource': ...``.
    """
    try:
        import pyvisa  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"{kind} '{settings.name}': driver '{driver}' needs pyvisa: pip install pyvisa"
        ) from exc
    kwargs: dict[str, Any] = {}
    if settings.visa_library:
        kwargs["visa_library"] = settings.visa_library
    try:
        return make(**kwargs)
    except InstrumentError:
        raise
    except Exception as exc:
        raise InstrumentError(
            f"{kind} '{settings.name}': cannot open {settings.resource!r}: {exc}"
        ) from exc
