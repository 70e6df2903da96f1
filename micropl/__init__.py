"""micropl: acquisition and live analysis for single-QD micro-photoluminescence.

The package is split into layers (see ``DESIGN.md``): ``micropl.drivers``,
``micropl.analysis``, ``micropl.simulators``, ``micropl.acquisition`` and
``micropl.gui``. Each imports only the layers listed before it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("micropl")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
