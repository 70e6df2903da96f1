"""Moved into a package (split into parts in the next commit)."""

from micropl.analysis.g2.pulsed import *  # noqa: F403
from micropl.analysis.g2.pulsed import __all__  # noqa: F401
