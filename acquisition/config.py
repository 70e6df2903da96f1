"""Setup configuration: the YAML schema, its validation and one-line errors.

A setup file names a driver for each instrument role and gives its settings::

    clock: {mode: fast}
    sample: {seed: 1, density_per_um2: 0.1}
    laser: {driver: simulated, power_percent: 20}
    spectrograph: {driver: acton, resource: "ASRL/dev/ttyUSB0::INSTR"}

Each role's section is a pydantic model chosen by its ``driver`` key (a section
without one, or a missing section, means the simulated instrument). The
simulated models live in :mod:`micropl.simulators.settings`; each real driver
module in :mod:`micropl.drivers` declares its own in a ``DRIVERS`` mapping.
Unknown keys are errors, and every error is reported as one line naming the key
path, the bad value and what is allowed (see :func:`format_validation_error`).
"""

from __future__ import annotations

import functools
import importlib
import logging
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from micropl.simulators import settings as sim

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("laser", "spectrograph", "camera", "tagger", "scanner")

#: Modules that declare real drivers (``DRIVERS = {role: SettingsModel}``).
DRIVER_MODULES: tuple[str, ...] = (
    "micropl.drivers.acton",
    "micropl.drivers.pilas",
    "micropl.drivers.mdt693b",
    "micropl.drivers.pi_e727",
    "micropl.drivers.andor_camera",
    "micropl.drivers.picam_camera",
    "micropl.drivers.shamrock",
    "micropl.drivers.swabian",
    "micropl.drivers.picoquant",
    "micropl.drivers.sepia",
)

#: Modules outside ``drivers/`` that provide instruments for a role (replay).
EXTRA_MODULES: tuple[str, ...] = ("micropl.simulators.replay",)

_SIMULATED: dict[str, type[BaseModel]] = {
    "laser": sim.SimLaserSettings,
    "spectrograph": sim.SimSpectrographSettings,
    "camera": sim.SimCameraSettings,
    "tagger": sim.SimTaggerSettings,
    "scanner": sim.SimScannerSettings,
}


class ConfigError(ValueError):
    """A setup file is missing, unreadable or invalid; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockSettings(_Strict):
    """How time passes (DESIGN §4)."""

    mode: Literal["real", "fast"] = Field(
        "real", description="real: wall time; fast: simulators advance virtual time instantly"
    )


class SafetySettings(_Strict):
    """Interlocks watched by the runner."""

    apd_max_rate_cps: float = Field(
        2.0e6, gt=0, le=5.0e7,
        description="count rate of one APD (each on its own, not their sum) above which the "
                    "laser is switched off: more than this × 10 ms tags in any 10 ms of data; "
                    "a tagger overflow counts as above")
    camera_max_temperature_c: float = Field(
        -60.0, le=30, description="warmest sensor temperature allowed while EM gain is used"
    )


# --------------------------------------------------------------------------- driver registry
@functools.cache
def driver_models(role: str) -> tuple[type[BaseModel], ...]:
    """Settings models available for ``role``: simulated first, then real drivers."""
    models: list[type[BaseModel]] = [_SIMULATED[role]]
    for name in DRIVER_MODULES + EXTRA_MODULES:
        module = _import_optional(name)
        if module is not None and role in getattr(module, "DRIVERS", {}):
            models.append(module.DRIVERS[role])
    return tuple(models)


@functools.cache
def driver_module(role: str, driver: str) -> Any:
    """The module that opens ``driver`` for ``role`` (None for simulated)."""
    if driver == "simulated":
        return None
    for name in DRIVER_MODULES + EXTRA_MODULES:
        module = _import_optional(name)
        if module is None:
            continue
        model = getattr(module, "DRIVERS", {}).get(role)
        if model is not None and _driver_name(model) == driver:
            return module
    raise ConfigError(f"{role}.driver: no module provides driver {driver!r}")


def _driver_name(model: type[BaseModel]) -> str:
    annotation = model.model_fields["driver"].annotation
    return annotation.__args__[0]  # Literal["name"]


def _import_optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


@functools.cache
def setup_model() -> type[BaseModel]:
    """The pydantic model of a whole setup file (built from the registered drivers)."""
    fields: dict[str, Any] = {
        "clock": (ClockSettings, ClockSettings()),
        "safety": (SafetySettings, SafetySettings()),
        "sample": (sim.SampleSettings, sim.SampleSettings()),
    }
    for role in ROLES:
        models = driver_models(role)
        if len(models) == 1:
            annotation: Any = models[0]
        else:
            annotation = Annotated[Union[models], Field(discriminator="driver")]  # noqa: UP007
        fields[role] = (annotation, models[0]())
    model = create_model(
        "SetupConfig",
        __config__=ConfigDict(extra="forbid", frozen=True),
        **fields,
    )
    model.__doc__ = "A micropl setup: clock, safety, optional virtual sample and five instruments."
    return model


# --------------------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, *, text: str | None = None,
                overrides: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Read and validate a setup file.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; the packaged ``simulated.yaml`` when None and ``text`` is None.
    text : str, optional
        YAML text to use instead of a file.
    overrides : dict, optional
        Nested values merged over the file's content, e.g. ``{"clock": {"mode": "fast"}}``.

    Returns
    -------
    config : SetupConfig
        The validated configuration.
    text : str
        The YAML text it came from (stored in session files for provenance).

    Raises
    ------
    ConfigError
        With a one-line message naming the file, the key path and the problem.
    """
    source = "<text>"
    if text is None:
        file = Path(path) if path is not None else default_config_path()
        source = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such setup file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read setup file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}not valid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a setup file must be a mapping of sections, "
                          f"got {type(data).__name__}")
    if overrides:
        data = _merge(data, overrides)
    for role in ROLES:  # a section without a driver configures the simulated instrument
        section = data.get(role)
        if isinstance(section, dict) and "driver" not in section:
            data[role] = {"driver": "simulated", **section}
    try:
        return setup_model().model_validate(data), text
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def default_config_path() -> Path:
    """The packaged default setup, ``configs/simulated.yaml``."""
    from importlib.resources import files

    return Path(str(files("micropl.configs").joinpath("simulated.yaml")))


def packaged_config(name: str) -> Path:
    """Path of a setup shipped with micropl (``simulated``, ``lab-example``, ``replay``)."""
    return default_config_path().with_name(f"{name}.yaml")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- error text
_BOUNDS = {
    "less_than_equal": ("le", "is above the maximum"),
    "less_than": ("lt", "must be below"),
    "greater_than_equal": ("ge", "is below the minimum"),
    "greater_than": ("gt", "must be above"),
}


def format_validation_error(exc: ValidationError) -> str:
    """One line for the first error of a pydantic ``ValidationError``.

    Examples: ``camera.em_gain: 5000 is above the maximum 1000``,
    ``sample.density_per_um2: expected a number, got 'lots'``.
    """
    errors = exc.errors(include_url=False)
    # Prefer the error of the union member the user chose (by its driver tag).
    err = errors[0]
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    path = ".".join(loc) or "(top level)"
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        text = f"{_show(value)} {words} {ctx.get(key)}"
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        wanted = "a whole number" if kind.startswith("int") else "a number"
        text = f"expected {wanted}, got {_show(value)}"
    elif kind in ("bool_parsing", "bool_type"):
        text = f"expected true or false, got {_show(value)}"
    elif kind in ("string_type",):
        text = f"expected text, got {_show(value)}"
    elif kind == "extra_forbidden":
        text = "unknown key"
    elif kind == "missing":
        text = "required key is missing"
    elif kind == "literal_error":
        text = f"{_show(value)} is not one of {ctx.get('expected')}"
    elif kind == "union_tag_invalid":
        text = f"driver {_show(ctx.get('tag'))} is not one of {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        text = "needs a 'driver' key"
    elif kind in ("tuple_type", "list_type", "too_short", "too_long"):
        text = f"{err['msg'].lower()}, got {_show(value)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"expected a mapping of keys, got {_show(value)}"
    else:
        msg = err["msg"]
        text = msg.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
        if len(errors) > 1 else ""
    return f"{path}: {text}{more}"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in _all_driver_tags()


@functools.cache
def _all_driver_tags() -> frozenset[str]:
    return frozenset(_driver_name(m) for role in ROLES for m in driver_models(role))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
