"""Which instrument drivers exist and whether what they need is installed here.

:func:`driver_table` lists every driver that a setup file can name (those
declared by the modules registered in the ``micropl.drivers`` entry-point group,
:data:`micropl.acquisition.config.ENTRY_POINT_GROUP`: the simulated, replay and
real drivers of micropl and any lab's plug-in) with what it needs to open an
instrument:

* ``REQUIRES`` — Python modules, checked with :func:`importlib.util.find_spec`
  (found, not imported);
* ``VENDOR_LIBRARIES`` — vendor shared libraries (DLL / .so), checked with
  :func:`ctypes.util.find_library` for the names that apply to this operating
  system (never loaded);
* ``PIP_EXTRA`` — the optional extra of micropl that installs the Python package
  (``pip install 'micropl[<extra>]'``).

:func:`skipped_table` lists the registered modules that could not be loaded
because a Python package they import is not installed, with that reason.

Nothing here opens, loads or talks to hardware. ``micropl info --instruments``
prints these tables.
"""

from __future__ import annotations

import ctypes.util
import functools
import importlib.util
import os
from typing import Any

from micropl.acquisition import config as _config

__all__ = ["driver_table", "skipped_table", "library_available", "module_available"]


def module_available(name: str) -> bool:
    """True when the Python module ``name`` can be found (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a bad name
        return False


def _applies_here(library: str) -> bool:
    lower = library.lower()
    if lower.endswith(".dll"):
        return os.name == "nt"
    if ".so" in lower or lower.endswith(".dylib"):
        return os.name != "nt"
    return True


def _short_name(library: str) -> str:
    """``libandor.so`` → ``andor``; ``atmcd64d.dll`` → ``atmcd64d`` (find_library's form)."""
    base = os.path.basename(library)
    for suffix in (".dll", ".dylib"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    if ".so" in base:
        base = base[: base.index(".so")]
    if base.startswith("lib") and os.name != "nt":
        base = base[3:]
    return base


@functools.cache
def library_available(library: str) -> bool | None:
    """Whether a vendor shared library can be found here, without loading it.

    Parameters
    ----------
    library : str
        File name such as ``"libandor.so"`` or ``"atmcd64d.dll"``.

    Returns
    -------
    bool or None
        None when the library is for another operating system (a ``.dll`` on
        Linux, a ``.so`` on Windows); otherwise whether
        :func:`ctypes.util.find_library` finds it.
    """
    if not _applies_here(library):
        return None
    return ctypes.util.find_library(_short_name(library)) is not None


def _driver_name(model: Any) -> str:
    annotation = model.model_fields["driver"].annotation
    return str(annotation.__args__[0])


def _row(role: str, model: Any, module: Any) -> dict[str, Any]:
    requires = tuple(getattr(module, "REQUIRES", ()) or ())
    vendor = tuple(getattr(module, "VENDOR_LIBRARIES", ()) or ())
    extra = getattr(module, "PIP_EXTRA", None)
    modules = {name: module_available(name) for name in requires}
    libraries = {name: library_available(name) for name in vendor}
    here = [ok for ok in libraries.values() if ok is not None]
    vendor_ok = (not vendor) or any(here)
    return {
        "role": role,
        "driver": _driver_name(model),
        "module": module.__name__,
        "settings": model.__name__,
        "requires": list(requires),
        "requires_available": modules,
        "vendor_libraries": list(vendor),
        "vendor_libraries_available": libraries,
        "pip_extra": extra,
        "install": f"pip install 'micropl[{extra}]'" if extra else None,
        "ready": all(modules.values()) and vendor_ok,
    }


def driver_table() -> list[dict[str, Any]]:
    """Every driver a setup file can name, with what it needs and whether that is here.

    Returns
    -------
    list of dict
        One dict per (role, driver), in role order (laser, spectrograph, camera,
        tagger, scanner), simulated first. Keys:

        ``role``, ``driver``, ``module``, ``settings`` (settings model name);
        ``requires`` (Python modules) and ``requires_available``
        (``{module: bool}``, from :func:`importlib.util.find_spec`);
        ``vendor_libraries`` and ``vendor_libraries_available``
        (``{library: bool or None}``, None = for another operating system);
        ``pip_extra`` (str or None) and ``install`` (the pip command, or None);
        ``ready``: every Python module found and, when vendor libraries are
        listed, at least one of those for this operating system found.
    """
    modules = _config.driver_modules()
    rows: list[dict[str, Any]] = []
    for role in _config.ROLES:
        for model in _config.driver_models(role):
            module = next(m for m in modules if m.DRIVERS.get(role) is model)
            rows.append(_row(role, model, module))
    return rows


def skipped_table() -> list[dict[str, str]]:
    """The registered driver modules that were not loaded, and why.

    Returns
    -------
    list of dict
        One dict per skipped entry point, in registration order, with keys
        ``entry_point``, ``module``, ``distribution`` and ``reason`` (for
        example ``needs Python package 'TimeTagger', which is not installed``).
    """
    return [{"entry_point": p.name, "module": p.module_name, "distribution": p.distribution,
             "reason": str(p.skipped)} for p in _config.skipped_drivers()]
