"""Render the setup-file reference (``configs/README.md``) from the pydantic models.

The reference is generated so it cannot drift from the code; a test checks that
the committed file is current. Regenerate with::

    python -m micropl.acquisition.config_docs > configs/README.md
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from micropl.acquisition.config import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    ROLES,
    ClockSettings,
    SafetySettings,
    StorageSettings,
    driver_models,
)
from micropl.simulators.settings import SampleSettings

_HEADER = """# Setup files: configuration reference

A setup file is YAML with one section per instrument role plus `clock`, `safety`,
`storage` and (for simulated instruments) `sample`. Every instrument section names its `driver`;
the remaining keys depend on the driver. Unknown keys are errors, and every error is
one line naming the key path, the bad value and what is allowed, e.g.
`camera.em_gain: 5000 is above the maximum 1000` (exit code 2).

Protective settings cannot be switched off by a value that merely parses: NaN, `.inf`
and `true`/`false` are refused for every number (and numbers for every `true`/`false`
key), each `safety` key has the range shown below, and rules between keys (channels,
(low, high) ranges, initial power below the maximum, sensor size, sample size) are
checked here, so a file `micropl check-config` calls valid opens without a
configuration error. A key given twice in a section, a section given twice, YAML
aliases (`*name`), nesting deeper than {depth} levels, files above {size} and empty files are
refused too. Numbers may be written `2e6` or `2.0e6`.

Files shipped here:

| file | what it is |
|---|---|
| `simulated.yaml` | the default: every instrument simulated on one seeded virtual sample |
| `lab-example.yaml` | a lab setup with real drivers (checked without hardware by `micropl check-config`) |
| `replay.yaml` | recorded data served through the instrument interfaces |

Check a file with `micropl check-config FILE`. Units are in the key names
(`_nm`, `_um`, `_s`, `_hz`, `_cps`, `_c` for °C, `_percent`).

This page is generated from the code by `python -m micropl.acquisition.config_docs`.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args if a is not Ellipsis)}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return "; ".join(str(v.model_dump()) for v in value)
    return f"`{value!r}`" if value is not None else "`null`"


def _limits(field: Any) -> str:
    own = _bounds_text(field.metadata)
    if own:
        return own
    return _item_limits(field.annotation)


def _bounds_text(metadata: Any) -> str:
    parts = []
    flat = []
    for meta in metadata:  # a Field(...) inside Annotated carries its bounds in .metadata
        flat += list(getattr(meta, "metadata", None) or [meta])
    for meta in flat:
        for key, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, key, None)
            if value is not None:
                parts.append(f"{sym} {value:g}" if isinstance(value, float | int) else "")
    return ", ".join(p for p in parts if p)


def _item_limits(annotation: Any) -> str:
    """Bounds declared on the items of a tuple, list or mapping (``Annotated`` items)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        args = (args[1],)
    elif origin not in (tuple, list):
        return ""
    items = [_bounds_text(typing.get_args(a)[1:]) if typing.get_origin(a) is typing.Annotated
             else "" for a in args if a is not Ellipsis]
    if not any(items):
        return ""
    if len(set(items)) == 1:
        return f"each {items[0]}"
    return "; ".join(f"item {i}: {text or 'any'}" for i, text in enumerate(items, 1))


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((key, annotation))
            lines.append(f"| `{key}` | section | | | see below |")
            continue
        doc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{key}` | {_type_name(annotation)} | {_default(field)} | "
                     f"{_limits(field)} | {doc} |")
    out = lines + [""]
    for key, sub in nested:
        out += [f"#### `{key}`", ""] + _table(sub, key)
    return out


def render_markdown() -> str:
    """The whole reference page as Markdown text."""
    out = [_HEADER.replace("{depth}", str(MAX_YAML_DEPTH))
           .replace("{size}", f"{MAX_CONFIG_BYTES / 1e6:g} MB")]
    for title, model, prefix in (("clock", ClockSettings, "clock"),
                                 ("safety", SafetySettings, "safety"),
                                 ("storage", StorageSettings, "storage"),
                                 ("sample (simulated setups)", SampleSettings, "sample")):
        out += [f"## `{title}`", "", (model.__doc__ or "").strip().splitlines()[0], ""]
        out += _table(model, prefix)
    for role in ROLES:
        out += [f"## `{role}`", ""]
        for model in driver_models(role):
            driver = model.model_fields["driver"].annotation.__args__[0]
            summary = (model.__doc__ or "").strip().splitlines()[0]
            out += [f"### `{role}: {{driver: {driver}}}`", "", summary, ""]
            out += _table(model, role)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_markdown())
