"""Moved into a package (split into parts in the next commit)."""

from micropl.analysis.maps.gauss2d import *  # noqa: F403
from micropl.analysis.maps.gauss2d import __all__  # noqa: F401
