"""The Examples sections of the analysis docstrings run and print what they say.

Every module of ``micropl.analysis`` (the packages and each of their parts) is imported
by its dotted name and its docstring examples are run with :mod:`doctest`. pytest's
``--doctest-modules`` is not used: with the package-dir layout of pyproject.toml it
would import the files under the names of their folders.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

import micropl.analysis

#: Fewest modules the walk must find (38 when written: the packages, their parts, the core).
MIN_MODULES = 35
#: Fewest examples (docstrings with ``>>>``) over the whole of analysis.
MIN_EXAMPLES = 60

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(micropl.analysis.__path__,
                                                        "micropl.analysis."))


MODULES = _module_names()


def _tests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, name) if t.examples]


def test_the_walk_finds_every_analysis_module():
    assert len(MODULES) >= MIN_MODULES
    for expected in ("micropl.analysis.spectra.fit", "micropl.analysis.g2.peak_train",
                     "micropl.analysis.maps.spots", "micropl.analysis.fitcore"):
        assert expected in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _tests(name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"


def test_the_examples_cover_the_public_functions():
    n_examples = sum(len(_tests(name)) for name in MODULES)
    assert n_examples >= MIN_EXAMPLES
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if inspect.isfunction(obj) and ">>>" not in (inspect.getdoc(obj) or ""):
                missing.append(f"{name}.{attr}")
    assert not missing, "public functions without an Examples section: " + ", ".join(missing)
