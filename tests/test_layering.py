"""The package layers: a lower layer never imports a higher one.

Every module of the package is parsed (``ast``; nothing is imported) and each
import it makes anywhere (top level, inside functions, under ``TYPE_CHECKING``)
is checked against the rules:

* ``drivers``, ``simulators`` and ``analysis`` import neither ``acquisition``,
  ``gui`` nor ``cli``;
* ``drivers`` import no ``analysis``: what drivers share with analysis lives in the
  leaf modules under ``micropl/`` (:data:`LEAF_MODULES`), which import nothing of
  micropl but each other;
* nothing imports ``micropl.cli`` except the command line itself and
  ``micropl/__main__.py`` (tests may);
* ``analysis`` imports no Qt;
* ``reanalysis`` imports neither ``gui`` nor ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Source folder of each package (pyproject.toml ``package-dir``).
PACKAGE_DIRS: dict[str, str] = {
    "micropl": "micropl",
    "micropl.drivers": "drivers",
    "micropl.analysis": "analysis",
    "micropl.simulators": "simulators",
    "micropl.acquisition": "acquisition",
    "micropl.gui": "gui",
    "micropl.configs": "configs",
    "micropl.reanalysis": "reanalysis",
}

#: Packages each low layer must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "micropl.drivers": ("micropl.acquisition", "micropl.gui", "micropl.cli",
                        "micropl.analysis"),
    "micropl.simulators": ("micropl.acquisition", "micropl.gui", "micropl.cli"),
    "micropl.analysis": ("micropl.acquisition", "micropl.gui", "micropl.cli"),
    "micropl.reanalysis": ("micropl.gui", "micropl.cli"),
}

#: Qt bindings (and what wraps them) analysis must not import.
QT_MODULES: tuple[str, ...] = ("PyQt5", "PyQt6", "PySide2", "PySide6", "pyqtgraph", "qtpy")

#: Modules that may import the command line besides its own modules.
CLI_IMPORTERS: frozenset[str] = frozenset({"micropl.__main__"})

#: The shared leaf: every layer may import it, it imports nothing of micropl but itself.
LEAF_MODULES: frozenset[str] = frozenset({"micropl.errors", "micropl.grating", "micropl.ptu",
                                        "micropl.records", "micropl.units"})


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(path: Path) -> str:
    """The dotted module name of a source file of the package."""
    rel = path.relative_to(ROOT)
    for package, folder in sorted(PACKAGE_DIRS.items(), key=lambda kv: -len(kv[1])):
        if rel.parts[0] == folder:
            parts = [package, *rel.with_suffix("").parts[1:]]
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise ValueError(f"{path}: not in a package folder")


def imported_names(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) may import, dotted and absolute.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a submodule);
    relative imports are resolved against ``module``.
    """
    names: set[str] = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*up, node.module] if node.module else up)
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def violations(module: str, names: set[str]) -> list[str]:
    """The rules ``module`` breaks by importing ``names``, one line each."""
    found: list[str] = []
    for low, banned in FORBIDDEN.items():
        if not _within(module, low):
            continue
        for name in sorted(names):
            for package in banned:
                if _within(name, package):
                    found.append(f"{module} imports {name} ({low} must not import {package})")
    if not _within(module, "micropl.cli") and module not in CLI_IMPORTERS:
        found += [f"{module} imports {name} (only the command line imports micropl.cli)"
                  for name in sorted(names) if _within(name, "micropl.cli")]
    if any(_within(module, leaf) for leaf in LEAF_MODULES):
        found += [f"{module} imports {name} (a leaf module imports only the leaf)"
                  for name in sorted(names) if _within(name, "micropl") and name != "micropl"
                  and not any(_within(name, leaf) for leaf in LEAF_MODULES)]
    if _within(module, "micropl.analysis"):
        found += [f"{module} imports {name} (analysis imports no Qt)"
                  for name in sorted(names) if any(_within(name, qt) for qt in QT_MODULES)]
    return found


def _sources() -> list[Path]:
    paths = [p for folder in PACKAGE_DIRS.values() for p in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in paths if "__pycache__" not in p.parts)


def test_the_package_keeps_its_layers():
    sources = _sources()
    assert len(sources) > 50  # the walk found the package, not an empty folder
    found: list[str] = []
    for path in sources:
        module = module_name(path)
        names = imported_names(path.read_text(encoding="utf-8"), module,
                               is_package=path.name == "__init__.py")
        found += violations(module, names)
    assert not found, "layering broken:\n" + "\n".join(found)


def test_module_names_follow_the_package_dirs():
    assert module_name(ROOT / "acquisition" / "replay.py") == "micropl.acquisition.replay"
    assert module_name(ROOT / "micropl" / "cli" / "__init__.py") == "micropl.cli"
    assert module_name(ROOT / "micropl" / "cli" / "analyze" / "g2.py") == "micropl.cli.analyze.g2"
    assert module_name(ROOT / "micropl" / "__main__.py") == "micropl.__main__"


@pytest.mark.parametrize(("module", "source", "is_package"), [
    ("micropl.analysis.g2", "from micropl.acquisition.live import AnalysisSettings", False),
    ("micropl.analysis.g2", "import micropl.gui.app", False),
    ("micropl.analysis.g2", "def f():\n    from micropl.cli import UsageError\n", False),
    ("micropl.analysis.g2", "from micropl import acquisition", False),
    ("micropl.analysis.g2", "from .. import cli", False),
    ("micropl.analysis.g2", "from ..acquisition.records import RunStart", False),
    ("micropl.analysis", "from ..gui import app", True),
    ("micropl.analysis.g2", "if TYPE_CHECKING:\n    from micropl.gui import app\n", False),
    ("micropl.analysis.maps", "from PyQt5 import QtCore", False),
    ("micropl.analysis.maps", "import pyqtgraph as pg", False),
    ("micropl.analysis.maps", "def f():\n    from PyQt5.QtWidgets import QWidget\n", False),
    ("micropl.simulators.replay", "from micropl.acquisition.storage import SessionReader",
     False),
    ("micropl.simulators.replay", "import micropl.acquisition.replay", False),
    ("micropl.drivers.acton", "from micropl.analysis.g2 import pulsed_g2", False),
    ("micropl.drivers.picoquant", "from micropl.analysis import tags", False),
    ("micropl.drivers.thorlabs", "from micropl.analysis.errors import AnalysisInputError",
     False),
    ("micropl.drivers.acton", "from micropl.gui.app import run_gui", False),
    ("micropl.drivers.acton", "from micropl.analysis.spectra import wavelength_axis_nm", False),
    ("micropl.drivers.picoquant", "from micropl.analysis.tags import T2StreamDecoder", False),
    ("micropl.ptu", "from micropl.analysis.errors import AnalysisInputError", False),
    ("micropl.grating", "import micropl.drivers.interfaces", False),
    ("micropl.acquisition.setup", "import micropl.cli.replay", False),
    ("micropl.acquisition.report", "from micropl.cli.info import print_summary", False),
    ("micropl.gui.app", "from micropl import cli", False),
    ("micropl.gui.app", "from micropl.cli import UsageError", False),
    ("micropl", "from . import cli", True),
    ("micropl.reanalysis.tasks", "from micropl.gui.app import run_gui", False),
    ("micropl.reanalysis.schedule", "from micropl.cli import UsageError", False),
])
def test_a_bad_import_is_caught(module, source, is_package):
    assert violations(module, imported_names(source, module, is_package))


@pytest.mark.parametrize(("module", "source", "is_package"), [
    ("micropl.acquisition.summary", "from micropl.analysis.emitters import qd_flags", False),
    ("micropl.gui.app", "from micropl.acquisition.replay import open_replay", False),
    ("micropl.cli.run", "from micropl.cli.output import print_json", False),
    ("micropl.cli.analyze", "from . import g2, spectrum", True),
    ("micropl.__main__", "from micropl.cli import main", False),
    ("micropl.analysis.g2", "from micropl import __version__", False),
    ("micropl.analysis.g2", "from .errors import AnalysisInputError", False),
    ("micropl.simulators.world", "from micropl.analysis.emitters import expected_pulsed_g2",
     False),
    ("micropl.drivers.acton", "from micropl.grating import wavelength_axis_nm", False),
    ("micropl.drivers.picoquant", "from micropl.ptu import T2StreamDecoder", False),
    ("micropl.ptu", "from micropl.errors import AnalysisInputError", False),
    ("micropl.gui.app", "import pyqtgraph as pg", False),
    ("micropl.acquisition.config", "import micropl.cliff", False),
])
def test_an_allowed_import_passes(module, source, is_package):
    assert violations(module, imported_names(source, module, is_package)) == []
