"""The simulated instruments, registered as the ``simulated`` driver of every role.

This module is registered in the ``micropl.drivers`` entry-point group like any
real driver module (pyproject.toml): it declares ``DRIVERS`` (the settings model
of each role, from :mod:`micropl.simulators.settings`) and
:func:`open_instrument`.

All simulated instruments of a setup look at one :class:`SimulatedWorld` (the
virtual sample and the setup clock), so :func:`open_instrument` takes, besides
the settings, the *open context* that the setup loader hands to every driver
whose ``open_instrument`` has a ``context`` parameter
(:class:`micropl.acquisition.setup.OpenContext`). Of that context this module
uses only ``context.world``: the setup's shared world, built on first use from
the setup's ``sample`` section and clock.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel

from micropl.simulators import settings as sim

__all__ = ["DRIVERS", "REQUIRES", "open_instrument"]

DRIVERS: dict[str, type[BaseModel]] = {
    "laser": sim.SimLaserSettings,
    "spectrograph": sim.SimSpectrographSettings,
    "camera": sim.SimCameraSettings,
    "tagger": sim.SimTaggerSettings,
    "scanner": sim.SimScannerSettings,
}

#: Python modules the simulated instruments need (all installed with micropl).
REQUIRES: tuple[str, ...] = ()

#: Settings model → (module, class) of the simulated instrument (imported when opened).
_CLASSES: dict[type[BaseModel], tuple[str, str]] = {
    sim.SimLaserSettings: ("micropl.simulators.laser", "SimLaser"),
    sim.SimSpectrographSettings: ("micropl.simulators.spectrograph", "SimSpectrograph"),
    sim.SimCameraSettings: ("micropl.simulators.camera", "SimCamera"),
    sim.SimTaggerSettings: ("micropl.simulators.tagger", "SimTimeTagger"),
    sim.SimScannerSettings: ("micropl.simulators.scanner", "SimScanner"),
}


def open_instrument(settings: BaseModel, context: Any) -> Any:
    """Build the simulated instrument of ``settings`` in the setup's shared world.

    Parameters
    ----------
    settings : SimLaserSettings, SimSpectrographSettings, SimCameraSettings, \
SimTaggerSettings or SimScannerSettings
        The role's validated section.
    context : OpenContext
        The setup loader's context; ``context.world`` is the shared
        :class:`~micropl.simulators.world.SimulatedWorld`.

    Returns
    -------
    object
        The instrument, attached to the world (it implements the role's Protocol).
    """
    module_name, class_name = _CLASSES[type(settings)]
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings, context.world)
