"""The session storage package: its public names and the dependency order of its parts."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import micropl.acquisition.storage as storage

#: Each part may import only parts of a lower rank (schema → codec → ... → writer).
RANK = {
    "tags": -1,
    "schema": 0,
    "codec": 1,
    "layout": 2,
    "output": 2,
    "locking": 3,
    "recovery": 3,
    "validation": 4,
    "views": 4,
    "reader": 5,
    "writer": 6,
}
PACKAGE = "micropl.acquisition.storage"
FOLDER = Path(storage.__file__).parent


def package_imports(part: str) -> set[str]:
    """Parts of the package that module ``part`` imports (absolute or relative)."""
    tree = ast.parse((FOLDER / f"{part}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level and module:
                found.add(module.split(".")[0])
            elif node.level or module == PACKAGE:
                found.update(a.name for a in node.names)
            elif module.startswith(PACKAGE + "."):
                found.add(module.removeprefix(PACKAGE + ".").split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name.removeprefix(PACKAGE + ".").split(".")[0])
    return found


def test_every_module_of_the_package_has_a_rank():
    modules = {p.stem for p in FOLDER.glob("*.py")} - {"__init__"}
    assert modules == set(RANK)


@pytest.mark.parametrize("part", sorted(RANK))
def test_parts_import_only_lower_parts(part):
    imported = package_imports(part)
    assert imported <= set(RANK), imported - set(RANK)
    higher = {p for p in imported if RANK[p] >= RANK[part]}
    assert not higher, f"{part} imports {sorted(higher)} (same or higher rank)"


@pytest.mark.parametrize("name", storage.__all__)
def test_public_names_come_from_their_part(name):
    obj = getattr(storage, name)
    part = obj.__module__.removeprefix(PACKAGE + ".")
    assert part in RANK, obj.__module__
    assert getattr(importlib.import_module(obj.__module__), name) is obj


def test_readme_script_api_names():
    from micropl.acquisition.storage import (
        OutputExistsError,
        OutputPathError,
    )

    assert issubclass(OutputExistsError, FileExistsError)
    assert issubclass(OutputExistsError, OutputPathError)


def test_storage_imports_no_cli_gui_or_qt():
    code = ("import sys, micropl.acquisition.storage\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('micropl.gui', 'PyQt5', "
            "'pyqtgraph', 'micropl.acquisition.cli', 'micropl.cli')))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == ""
