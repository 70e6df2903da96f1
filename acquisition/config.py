"""Setup configuration: the YAML schema, its validation and one-line errors.

A setup file names a driver for each instrument role and gives its settings::

    clock: {mode: fast}
    sample: {seed: 1, density_per_um2: 0.1}
    laser: {driver: simulated, power_percent: 20}
    spectrograph: {driver: acton, resource: "ASRL/dev/ttyUSB0::INSTR"}

Each role's section is a pydantic model chosen by its ``driver`` key (a section
without one, or a missing section, means the simulated instrument). The models
come from the driver registry: every module registered in the ``micropl.drivers``
entry-point group (:data:`ENTRY_POINT_GROUP`; micropl's real drivers, its
simulated instruments in :mod:`micropl.simulators.drivers`, its replay instruments
in :mod:`micropl.simulators.replay`, and any lab's own package) declares its
models in a ``DRIVERS`` mapping.
Unknown keys are errors, and every error is reported as one line naming the key
path, the bad value and what is allowed (see :func:`format_validation_error`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.metadata
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from micropl.drivers._settings import (
    GAIN_TEMPERATURE_MAX_C,
    GAIN_TEMPERATURE_MIN_C,
    StrictSettings,
    show,
)
from micropl.errors import ConfigError, UserError
from micropl.grating import wavelength_axis_nm
from micropl.simulators import settings as sim

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("laser", "spectrograph", "camera", "tagger", "scanner")

class DriverPluginError(ConfigError):
    """A module registered in the ``micropl.drivers`` entry-point group is broken.

    Raised when it fails to import for another reason than a missing third-party
    package, or when its ``DRIVERS``/``open_instrument`` declarations are invalid;
    the message is one line naming the entry point and the module.
    """


#: Largest setup file read, bytes (the packaged ones are a few kB).
MAX_CONFIG_BYTES = 1_000_000

#: Deepest nesting of YAML collections in a setup file (the schema needs 4).
MAX_YAML_DEPTH = 32

#: Longest error message, characters (the rest is cut).
MAX_MESSAGE_CHARS = 400

#: Allowed APD protection thresholds, counts/s. Below 1 kcps the dark counts and the
#: background alone would trip it; above 10 Mcps an SPCM-type APD (saturating in the
#: Mcps range, damaged at ~10–30 Mcps; PHYSICS.md) is no longer protected.
APD_MAX_RATE_RANGE_CPS = (1.0e3, 1.0e7)

_Strict = StrictSettings


class ClockSettings(_Strict):
    """How time passes (DESIGN §4)."""

    mode: Literal["real", "fast"] = Field(
        "real", description="real: wall time; fast: simulators advance virtual time instantly"
    )


class SafetySettings(_Strict):
    """Interlocks watched by the runner."""

    apd_max_rate_cps: float = Field(
        2.0e6, ge=APD_MAX_RATE_RANGE_CPS[0], le=APD_MAX_RATE_RANGE_CPS[1],
        description="count rate of one APD (each on its own, not their sum) above which the "
        "laser is switched off, counts/s: more than this × 10 ms tags in any 10 ms of data; a "
        "tagger overflow counts as above (below 1 kcps the dark counts trip it; above 10 Mcps "
        "APDs are damaged)",
    )
    camera_max_temperature_c: float = Field(
        -60.0, ge=GAIN_TEMPERATURE_MIN_C, le=GAIN_TEMPERATURE_MAX_C,
        description="warmest sensor temperature allowed while EM gain is used, °C "
        "(a cooled EMCCD runs at −60 to −100 °C; EM gain warmer than −20 °C ages the sensor)",
    )


class StorageSettings(_Strict):
    """What the session file keeps (micropl.acquisition.storage.tags)."""

    raw_tags: Literal["all", "none", "around-peaks"] = Field(
        "all", description="raw time tags stored: all; none; around-peaks: of the g² "
        "streams only the APD tags that form a coincidence within the g² window (the "
        "histogram is unchanged; the file records the setting and the count dropped)",
    )


# --------------------------------------------------------------------------- driver registry
#: Entry-point group of the modules that provide instruments. Each entry point names a
#: module (``name = "package.module"``, no ``:object``) that declares
#: ``DRIVERS = {role: SettingsModel}`` (each model has a ``driver: Literal["tag"]`` field),
#: ``open_instrument(settings)`` or ``open_instrument(settings, context)`` (see
#: :class:`micropl.acquisition.setup.OpenContext`) and optionally ``REQUIRES``,
#: ``VENDOR_LIBRARIES`` and ``PIP_EXTRA`` (listed by ``micropl info --instruments``).
#: micropl declares its own in pyproject.toml ``[project.entry-points."micropl.drivers"]``,
#: the simulated and replay instruments included; a lab's package adds its own the same way.
ENTRY_POINT_GROUP = "micropl.drivers"


@dataclass(frozen=True)
class DriverPlugin:
    """One module registered in the :data:`ENTRY_POINT_GROUP` entry-point group.

    Attributes
    ----------
    name : str
        The entry point's name.
    module_name : str
        The module it names.
    distribution : str
        The installed distribution that declares it.
    module : module or None
        The imported module; None when it was skipped.
    skipped : str or None
        Why it was skipped (a Python package it needs is not installed, or the
        module is not there), None when it is loaded.
    """

    name: str
    module_name: str
    distribution: str
    module: Any = None
    skipped: str | None = None

    @property
    def label(self) -> str:
        """How messages name it: entry point, module and distribution."""
        return (f"driver plug-in {self.name!r} ({self.module_name}, entry point of "
                f"{self.distribution})")


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, str]]:
    """The group's entry points of every distribution on ``sys.path``, in path order.

    A distribution can be seen twice (a stale copy further down the path, or an
    egg-info folder of a source checkout); an entry point whose name or value was
    already seen is dropped, so the first copy wins.
    """
    names: set[str] = set()
    values: set[str] = set()
    out: list[tuple[importlib.metadata.EntryPoint, str]] = []
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            if ep.name in names or ep.value in values:
                log.debug("driver entry point %s = %s of %s: already registered, ignored",
                          ep.name, ep.value, dist.metadata["Name"])
                continue
            names.add(ep.name)
            values.add(ep.value)
            out.append((ep, str(dist.metadata["Name"] or "?")))
    return out


def _import_plugin(ep: importlib.metadata.EntryPoint, distribution: str) -> DriverPlugin:
    """Import the module an entry point names; skip it only when a package is missing.

    Raises
    ------
    DriverPluginError
        When the module fails to import for another reason (a bug inside it is
        reported, not swallowed) or its declarations are invalid.
    """
    plugin = DriverPlugin(ep.name, ep.value, distribution)
    if ep.attr:
        raise DriverPluginError(f"{plugin.label}: names {ep.value!r}; an entry point of "
                                f"{ENTRY_POINT_GROUP} names a module, without ':object'")
    try:
        module = importlib.import_module(ep.module)
    except ModuleNotFoundError as exc:
        reason = _missing_reason(ep.module, exc.name or "")
        if reason is None:
            raise DriverPluginError(f"{plugin.label}: import failed: {exc}") from exc
        log.info("%s skipped: %s", plugin.label, reason)
        return dataclasses.replace(plugin, skipped=reason)
    except Exception as exc:  # a bug inside the plug-in: named in one line, chained
        raise DriverPluginError(f"{plugin.label}: import failed: "
                                f"{type(exc).__name__}: {_one_line(str(exc))}") from exc
    _check_declarations(plugin, module)
    return dataclasses.replace(plugin, module=module)


def _missing_reason(module_name: str, missing: str) -> str | None:
    """Why a module whose import lacks ``missing`` is skipped; None when that is a bug.

    The module itself (or its package) not there: a stale entry point, skipped. A
    package outside the module's own top-level package: a vendor or optional
    package not installed, skipped. A missing module of its own package: a bug.
    """
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        return f"module {module_name} not found (reinstall the package that declares it)"
    if missing and missing.split(".")[0] != module_name.split(".")[0]:
        return f"needs Python package {missing!r}, which is not installed"
    return None


def _check_declarations(plugin: DriverPlugin, module: Any) -> None:
    """``DRIVERS`` maps known roles to settings models with a driver tag; ``open_instrument``."""
    drivers = getattr(module, "DRIVERS", None)
    if not isinstance(drivers, Mapping) or not drivers:
        raise DriverPluginError(f"{plugin.label}: DRIVERS must be a non-empty mapping "
                                "{role: settings model}")
    for role, model in drivers.items():
        if role not in ROLES:
            raise DriverPluginError(f"{plugin.label}: DRIVERS role {role!r} is not one of "
                                    f"{', '.join(ROLES)}")
        if not (isinstance(model, type) and issubclass(model, BaseModel)
                and _literal_tag(model) is not None):
            raise DriverPluginError(f"{plugin.label}: DRIVERS[{role!r}] must be a pydantic "
                                    "model with a field driver: Literal['<name>']")
    if not callable(getattr(module, "open_instrument", None)):
        raise DriverPluginError(f"{plugin.label}: no open_instrument(settings) function")


def _literal_tag(model: type[BaseModel]) -> str | None:
    """The model's driver name (its ``driver: Literal["name"]`` field), or None."""
    field = model.model_fields.get("driver")
    if field is None or get_origin(field.annotation) is not Literal:
        return None
    args = get_args(field.annotation)
    return args[0] if len(args) == 1 and isinstance(args[0], str) else None


@functools.cache
def driver_plugins() -> tuple[DriverPlugin, ...]:
    """Every module registered in :data:`ENTRY_POINT_GROUP`, loaded or skipped (cached).

    Raises
    ------
    DriverPluginError
        A broken plug-in, or two modules that provide the same driver for a role.
    ConfigError
        When no driver is registered at all (micropl's metadata is missing).
    """
    plugins = tuple(_import_plugin(ep, dist) for ep, dist in _entry_points())
    owners: dict[tuple[str, str], DriverPlugin] = {}
    for plugin in plugins:
        for role, model in (plugin.module.DRIVERS.items() if plugin.module else ()):
            key = (role, _driver_name(model))
            if key in owners:
                raise DriverPluginError(f"{role} driver {key[1]!r} is provided twice: by "
                                        f"{owners[key].label} and by {plugin.label}; rename "
                                        "one driver or uninstall one package")
            owners[key] = plugin
    if not owners:
        raise ConfigError(f"no instrument drivers are registered (entry-point group "
                          f"{ENTRY_POINT_GROUP}); reinstall micropl: pip install -e .")
    return plugins


def driver_modules() -> tuple[Any, ...]:
    """The loaded driver modules, in registration order."""
    return tuple(p.module for p in driver_plugins() if p.module is not None)


def skipped_drivers() -> tuple[DriverPlugin, ...]:
    """The registered modules that were skipped, each with its reason."""
    return tuple(p for p in driver_plugins() if p.module is None)


def clear_driver_caches() -> None:
    """Forget the registry and every schema built from it (after installing a plug-in)."""
    importlib.invalidate_caches()
    for cached in (driver_plugins, driver_models, driver_module, setup_model, _all_driver_tags):
        cached.cache_clear()


@functools.cache
def driver_models(role: str) -> tuple[type[BaseModel], ...]:
    """Settings models available for ``role``: simulated first (the default), then the rest."""
    models = [m.DRIVERS[role] for m in driver_modules() if role in m.DRIVERS]
    models.sort(key=lambda model: _driver_name(model) != "simulated")  # stable
    if not models:
        raise ConfigError(f"{role}: no registered driver provides this role"
                          f"{_skipped_hint()}")
    return tuple(models)


@functools.cache
def driver_module(role: str, driver: str) -> Any:
    """The module whose ``open_instrument`` opens ``driver`` for ``role``."""
    for module in driver_modules():
        model = module.DRIVERS.get(role)
        if model is not None and _driver_name(model) == driver:
            return module
    raise ConfigError(f"{role}.driver: no module provides driver {driver!r}{_skipped_hint()}")


def _skipped_hint() -> str:
    skipped = skipped_drivers()
    if not skipped:
        return ""
    return "; not loaded: " + ", ".join(f"{p.name} ({p.skipped})" for p in skipped)


def _driver_name(model: type[BaseModel]) -> str:
    annotation = model.model_fields["driver"].annotation
    return annotation.__args__[0]  # Literal["name"]


class _SetupBase(StrictSettings):
    """Rules between the sections of a setup (each section checks its own)."""

    @model_validator(mode="after")
    def _cross_section(self) -> Any:
        _check_simulated_optics(self)
        _check_apd_channels(getattr(self, "tagger", None))
        return self


def _check_simulated_optics(config: Any) -> None:
    """The simulated camera images the simulated spectrograph: both, and a valid axis."""
    camera, spectrograph = getattr(config, "camera", None), getattr(config, "spectrograph", None)
    if camera is None or spectrograph is None or camera.driver != "simulated":
        return
    if spectrograph.driver != "simulated":
        raise ValueError(f"camera: the simulated camera needs the simulated spectrograph, "
                         f"not spectrograph driver {show(spectrograph.driver)}")
    n_cols = camera.sensor_shape[1]
    grating = spectrograph.gratings[spectrograph.grating - 1]
    what = (f"spectrograph/camera: {n_cols} columns of {show(camera.pixel_um)} µm at "
            f"{show(spectrograph.center_wavelength_nm)} nm with grating {spectrograph.grating} "
            f"and focal_length_mm {show(spectrograph.focal_length_mm)}")
    try:
        edges_nm = wavelength_axis_nm(
            n_cols + 1, camera.pixel_um, spectrograph.center_wavelength_nm,
            grating.grooves_per_mm, spectrograph.focal_length_mm,
            spectrograph.inclusion_angle_deg, center_pixel=n_cols / 2.0)
    except UserError as exc:
        raise ValueError(f"{what}: no wavelength axis ({exc})") from None
    if not (edges_nm[0] > 0 and bool(np.all(np.diff(edges_nm) > 0))):
        raise ValueError(f"{what}: the sensor reaches beyond the diffracted spectrum "
                         f"({edges_nm[0]:.0f}–{edges_nm[-1]:.0f} nm); use fewer columns, "
                         "smaller pixel_um or a longer focal_length_mm")


def _check_apd_channels(tagger: Any) -> None:
    """A real tagger's first two channels are the HBT APDs (``Setup.apd_channels``)."""
    if tagger is None or hasattr(tagger, "apd_channels") or not hasattr(tagger, "channels"):
        return
    channels = tuple(tagger.channels)
    if len(channels) < 2 or channels[0] == channels[1]:
        raise ValueError(f"tagger.channels: {show(channels)} must start with the two "
                         "different APD inputs of the HBT")
    if getattr(tagger, "device", None) in ("hydraharp", "multiharp") and 0 in channels[:2]:
        raise ValueError(f"tagger.channels: {show(channels)}: channel 0 is the sync input; "
                         "list the two APD inputs first")


@functools.cache
def setup_model() -> type[BaseModel]:
    """The pydantic model of a whole setup file (built from the registered drivers)."""
    fields: dict[str, Any] = {
        "clock": (ClockSettings, ClockSettings()),
        "safety": (SafetySettings, SafetySettings()),
        "storage": (StorageSettings, StorageSettings()),
        "sample": (sim.SampleSettings, sim.SampleSettings()),
    }
    for role in ROLES:
        models = driver_models(role)
        if len(models) == 1:
            annotation: Any = models[0]
        else:
            annotation = Annotated[Union[models], Field(discriminator="driver")]  # noqa: UP007
        fields[role] = (annotation, models[0]())
    model = create_model("SetupConfig", __base__=_SetupBase, **fields)
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
        source = _one_line(str(file))
        text = _read_setup_file(file, source)
    elif len(text) > MAX_CONFIG_BYTES:
        raise _error(source, f"{len(text) / 1e6:.1f} MB of setup text, more than a setup file "
                     f"may have ({MAX_CONFIG_BYTES / 1e6:g} MB)")
    data = None if _blank(text) else parse_yaml(text, source)
    if data is None:
        raise _error(source, "empty setup file; give at least one section, e.g. "
                     "'clock: {mode: real}' (configs/README.md lists them)")
    if not isinstance(data, dict):
        raise _error(source, f"a setup file must be a mapping of sections, "
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
        raise _error(source, format_validation_error(exc)) from None
    except RecursionError:
        raise _error(source, "nested too deeply") from None


def _blank(text: str) -> bool:
    """True when ``text`` holds only whitespace and comments."""
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _read_setup_file(file: Path, source: str) -> str:
    """The text of a setup file, refusing files larger than ``MAX_CONFIG_BYTES``."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise _error(source, "no such setup file") from None
    except OSError as exc:
        raise _error(source, f"cannot read setup file: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise _error(source, f"larger than {MAX_CONFIG_BYTES / 1e6:g} MB, too large for a setup "
                     "file; is it the right file?")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error(source, f"not UTF-8 text (byte {exc.start}); is it a setup file?") from None


def _error(source: str, text: str) -> ConfigError:
    """A one-line ``ConfigError``: ``SOURCE: TEXT``, without line breaks, cut to length."""
    line = _one_line(f"{source}: {text}")
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return ConfigError(line)


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


# --------------------------------------------------------------------------- YAML
class _YamlRefused(yaml.YAMLError):
    """A construct refused in setup files (alias, duplicate key, deep nesting)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SetupLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader, hardened for setup files.

    * a key that appears twice in one mapping (or a section twice) is an error
      naming the key and both lines, instead of the last one silently winning;
    * aliases (``*name``) are refused, so no alias bomb can expand;
    * collections nest at most ``MAX_YAML_DEPTH`` deep;
    * numbers in exponent notation without a dot or exponent sign (``2e6``,
      ``2.0e6``, YAML 1.2 floats) are read as numbers, not as text.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YamlRefused(f"line {event.start_mark.line + 1}: alias *{show(event.anchor)} "
                               "is not allowed in a setup file; write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise _YamlRefused(f"line {mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} "
                                   "levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    earlier = first_line.get(key)
                except TypeError:  # unhashable key: refused by SafeLoader below
                    continue
                line = key_node.start_mark.line + 1
                if earlier is not None:
                    raise _YamlRefused(f"line {line}: duplicate key {show(key)} (first at line "
                                       f"{earlier}); each key may appear once in a section")
                first_line[key] = line
        return super().construct_mapping(node, deep=deep)


SetupLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                            SetupLoader.construct_mapping)
SetupLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str = "<text>") -> Any:
    """Parse setup YAML with :class:`SetupLoader`.

    Parameters
    ----------
    text : str
        YAML text (at most ``MAX_CONFIG_BYTES`` characters are expected).
    source : str, optional
        File name used in messages.

    Returns
    -------
    Any
        The document (None for an empty one).

    Raises
    ------
    ConfigError
        One line naming the source, the line and the problem.
    """
    loader = None
    try:
        loader = SetupLoader(text)  # the reader already refuses control characters
        return loader.get_single_data()
    except _YamlRefused as exc:
        raise _error(source, exc.message) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
            where = f"character {exc.position + 1}: "
            problem = f"control character #x{exc.character:04x} is not allowed"
        raise _error(source, f"{where}not valid YAML ({_cut(problem, 80)})") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of 5000 digits
        raise _error(source, f"not a usable value: {_cut(str(exc), 80)}") from None
    except RecursionError:
        raise _error(source, "nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _cut(text: str, limit: int) -> str:
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    path = _key_path(p for p in err["loc"] if not _is_union_tag(p))
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        text = f"{_show(value)} {words} {_show_limit(ctx.get(key))}"
    elif kind == "finite_number":
        text = f"expected a finite number, got {_show(value)}"
    elif kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float",
                  "int_parsing_size"):
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
        text = f"driver {_show(ctx.get('tag'))} is not one of {_cut(str(ctx.get('expected_tags')), 120)}"
    elif kind == "union_tag_not_found":
        text = "needs a 'driver' key"
    elif kind in ("tuple_type", "list_type", "too_short", "too_long"):
        text = f"{err['msg'].lower()}, got {_show(value)}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        text = f"expected a mapping of keys, got {_show(value)}"
    else:
        text = _cut(err["msg"].removeprefix("Value error, "), 240)
        key = re.match(r"([a-z][a-z0-9_]*): ", text)
        if kind == "value_error" and key and path:
            path, text = f"{path}.{key.group(1)}", text[key.end():]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" \
        if len(errors) > 1 else ""
    return f"{path}: {text}{more}" if path else f"{text}{more}"


def _key_path(parts: Any) -> str:
    """``camera.sensor_shape[1]``: keys joined by dots, list positions in brackets."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = str(part)
            if not re.fullmatch(r"[A-Za-z0-9_\-]{1,40}", name):
                name = show(name)
            out += f".{name}" if out else name
    return out


def _show_limit(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else _show(value)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in _all_driver_tags()


@functools.cache
def _all_driver_tags() -> frozenset[str]:
    return frozenset(_driver_name(m) for role in ROLES for m in driver_models(role))


def _show(value: Any) -> str:
    """A value as shown in a message: short, one line (see :func:`~micropl.drivers._settings.show`)."""
    return show(value)
