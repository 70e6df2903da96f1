"""The strict base of every instrument and setup settings model.

A setting that protects the hardware (a power limit, a temperature below which
EM gain is allowed, a count-rate threshold) must not be switched off by a value
that merely *parses*. :class:`StrictSettings` refuses, for every field of every
model derived from it:

* unknown keys (``extra="forbid"``), and models are frozen;
* NaN and ±infinity in any float, also inside tuples, lists and mappings
  (``allow_inf_nan=False``): every comparison with NaN is false, so a NaN limit
  would let everything through;
* booleans where a number is expected (``true`` is not 1 cps), and numbers or
  text where a boolean is expected (``em_gain_advanced: 1``);
* integers beyond the signed 64-bit range (they cannot reach a device).

Integers are still accepted for floats, and numbers written as text (``'2e6'``,
as YAML 1.1 loads ``2e6``) are still parsed. Range limits are declared per field
with ``Field(ge=..., le=...)``; rules between fields are model validators of
each model, so that validating a setup file checks everything that opening its
instruments would check.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["StrictSettings", "check_cooling", "check_range", "kind_problem", "show"]

#: Largest magnitude of an integer setting (signed 64 bit).
INT_LIMIT = 2**63 - 1

#: Longest rendering of a value in an error message, characters.
SHOW_MAX = 40


def show(value: Any, limit: int = SHOW_MAX) -> str:
    """A short rendering of ``value`` for a one-line error message.

    Parameters
    ----------
    value : Any
        The offending value (any size).
    limit : int, optional
        Longest result, characters.

    Returns
    -------
    str
        YAML spelling of booleans and None, integral floats without ``.0``,
        everything else its ``repr``; longer results end in ``...``, and line
        breaks never appear.
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, int):
        text = _show_int(value)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        text = str(int(value))
    elif isinstance(value, str):
        text = repr(value[: limit + 1])
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # e.g. ints beyond Python's digit limit
            text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show_int(value: int) -> str:
    if abs(value) < 10**30:
        return str(value)
    return f"{'-' if value < 0 else ''}an integer of about {value.bit_length() * 0.30103:.0f} digits"


def check_range(name: str, pair: tuple[float, float], unit: str = "") -> None:
    """Refuse a (low, high) pair that is not strictly increasing.

    Raises
    ------
    ValueError
        ``"{name}: low–high unit is empty (need low < high)"``.
    """
    low, high = pair
    if not low < high:
        raise ValueError(f"{name}: {show(low)}–{show(high)}{unit} is empty (need low < high)")


class StrictSettings(BaseModel):
    """Base of every settings model: no unknown keys, no NaN/inf, no bool↔number."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _strict_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is None:
                    continue  # unknown keys are refused by extra="forbid"
                problem = kind_problem(field.annotation, value)
                if problem is not None:
                    raise ValueError(f"{name}: {problem}")
        return data


# --------------------------------------------------------------------------- kind checks
_UNION_TYPES = (typing.Union, types.UnionType)


def kind_problem(annotation: Any, value: Any) -> str | None:
    """Why ``value`` must not be coerced to ``annotation``, or None.

    Only the coercions that pydantic's lax mode allows and that a setup must
    not rely on are reported: a boolean for a number, a non-boolean for a
    boolean, an integer beyond 64 bits. Everything else is left to pydantic.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return kind_problem(args[0], value)
    if origin in _UNION_TYPES:
        if value is None and type(None) in args:
            return None
        problems = [kind_problem(a, value) for a in args if a is not type(None)]
        return None if any(p is None for p in problems) else problems[0]
    if annotation is bool:
        if isinstance(value, bool):
            return None
        return f"expected true or false, got {show(value)}"
    if annotation in (int, float):
        if isinstance(value, bool):
            return f"expected a number, got {show(value)}"
        if isinstance(value, int) and abs(value) > INT_LIMIT:
            return f"{show(value)} is too large (at most {INT_LIMIT:.3g})"
        return None
    if origin in (tuple, list) and isinstance(value, list | tuple):
        return _items_problem(args, value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            problem = kind_problem(args[0], key) or kind_problem(args[1], item)
            if problem is not None:
                return f"{problem} (at key {show(key)})"
    return None


def _items_problem(args: tuple[Any, ...], value: list | tuple) -> str | None:
    if not args:
        return None
    for i, item in enumerate(value):
        if len(args) == 2 and args[1] is Ellipsis:
            item_type = args[0]
        elif len(args) == 1:
            item_type = args[0]
        elif i < len(args):
            item_type = args[i]
        else:
            return None  # a length error, reported by pydantic
        problem = kind_problem(item_type, item)
        if problem is not None:
            return f"{problem} (item {i + 1})"
    return None


# --------------------------------------------------------------------------- shared limits
#: Allowed range of every "EM gain only when colder than" temperature, °C. A cooled
#: EMCCD runs at −60 to −100 °C (PHYSICS.md: cooled to −80 °C); EM gain on a sensor
#: warmer than −20 °C ages the multiplication register, so no setting may allow it.
GAIN_TEMPERATURE_MIN_C = -100.0
GAIN_TEMPERATURE_MAX_C = -20.0

#: Sensor temperatures any camera setting may name (set points, limits), °C.
SENSOR_TEMPERATURE_MIN_C = -150.0
SENSOR_TEMPERATURE_MAX_C = 40.0

#: Largest sensor dimension of a real camera, pixels per axis.
SENSOR_MAX_PX = 8192


def check_cooling(settings: Any) -> None:
    """Camera set points: ``min_temperature_c < max_temperature_c``, target between them.

    Raises
    ------
    ValueError
        Naming the keys and values, °C.
    """
    low, high = settings.min_temperature_c, settings.max_temperature_c
    check_range("min_temperature_c/max_temperature_c", (low, high), " °C")
    target = settings.target_temperature_c
    if not low <= target <= high:
        raise ValueError(f"target_temperature_c: {show(target)} °C is outside "
                         f"min_temperature_c–max_temperature_c {show(low)}–{show(high)} °C")
