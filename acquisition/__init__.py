"""Procedures, the runner, the data stream, storage, setup loading and the CLI.

Scripts::

    from micropl.acquisition import load_setup, run
    from micropl.acquisition.procedures import Survey
"""

from micropl.acquisition.session import Session, run
from micropl.acquisition.setup import Setup, load_setup

__all__ = ["Session", "Setup", "load_setup", "run"]
