"""Moved into a package (split into parts in the next commit)."""

from micropl.analysis.spectra.fit import *  # noqa: F403
from micropl.analysis.spectra.fit import __all__  # noqa: F401
