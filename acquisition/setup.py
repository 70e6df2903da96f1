"""Loading a setup: the one place where instruments are constructed (DESIGN §3).

>>> from micropl.acquisition import load_setup
>>> setup = load_setup(clock_mode="fast")          # the simulated setup
>>> setup.laser.emission_on
False
>>> setup.close()
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from micropl.acquisition.config import ROLES, driver_module, load_config
from micropl.drivers.interfaces import Camera, Clock, Laser, Scanner, Spectrograph, TimeTagger
from micropl.errors import InstrumentError
from micropl.simulators.clock import VirtualClock

log = logging.getLogger(__name__)

__all__ = ["Setup", "OpenContext", "load_setup", "describe_config"]


@dataclass
class Setup:
    """The instruments of one setup, by role, with their clock and provenance.

    Attributes
    ----------
    config : SetupConfig
        The validated configuration.
    config_text : str
        The YAML text it came from.
    source : str
        Where the configuration came from (file path or ``<text>``).
    world : SimulatedWorld or None
        The virtual sample and its coupling, for simulated setups.
    """

    config: Any
    config_text: str
    source: str
    clock: Clock
    laser: Laser
    spectrograph: Spectrograph
    camera: Camera
    tagger: TimeTagger
    scanner: Scanner
    world: Any = None
    _closed: bool = field(default=False, repr=False)

    @property
    def instruments(self) -> dict[str, Any]:
        """Role → instrument."""
        return {role: getattr(self, role) for role in ROLES}

    @property
    def apd_channels(self) -> tuple[int, int]:
        """The two HBT (APD) channels of the tagger: its settings' ``apd_channels``."""
        channels = getattr(self.config.tagger, "apd_channels", None) or self.tagger.channels[:2]
        return int(channels[0]), int(channels[1])

    @property
    def simulated(self) -> bool:
        """True when any instrument is simulated (the session then stores the truth)."""
        return self.world is not None

    def truth(self) -> dict[str, Any] | None:
        """The virtual sample's truth arrays, or None for a real setup."""
        return None if self.world is None else self.world.sample.truth()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every instrument's current settings, for provenance."""
        out: dict[str, dict[str, Any]] = {}
        for role, instrument in self.instruments.items():
            try:
                out[role] = instrument.snapshot()
            except InstrumentError as exc:
                out[role] = {"error": str(exc)}
        return out

    def snapshot_json(self) -> str:
        """:meth:`snapshot` as JSON text."""
        return json.dumps(self.snapshot(), default=_jsonable, sort_keys=True)

    def make_safe(self) -> list[str]:
        """Laser off, camera and tagger stopped; the scanner stays where it is.

        Every step is tried even when an earlier one fails. Returns the
        failures (each also logged as an error), so the caller can report them
        with the run's status; an empty list means the setup is safe.
        """
        problems: list[str] = []
        for what, action in (
            ("laser off", self.laser.off),
            ("camera stop", self.camera.stop),
            ("tagger stop", self.tagger.stop),
        ):
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - cleanup must try every step
                log.error("cleanup: %s failed: %s", what, exc)
                problems.append(f"{what} failed: {exc}")
        return problems

    def close(self) -> None:
        """Make safe and close every instrument (idempotent)."""
        if self._closed:
            return
        self.make_safe()
        for role, instrument in self.instruments.items():
            try:
                instrument.close()
            except InstrumentError as exc:
                log.error("closing %s failed: %s", role, exc)
        self._closed = True

    def __enter__(self) -> Setup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_setup(path: str | Path | None = None, *, text: str | None = None,
               clock_mode: str | None = None, overrides: dict[str, Any] | None = None) -> Setup:
    """Validate a setup file and build its instruments.

    Parameters
    ----------
    path : str or Path, optional
        Setup YAML; the packaged simulated setup by default.
    text : str, optional
        YAML text instead of a file.
    clock_mode : {"real", "fast"}, optional
        Override the file's clock mode (``--fast``).
    overrides : dict, optional
        Nested values merged over the file.

    Returns
    -------
    Setup
        Open instruments. Use as a context manager, or call :meth:`Setup.close`.

    Raises
    ------
    ConfigError
        For an invalid file (one line).
    InstrumentError
        When an instrument cannot be opened (MissingExtraError names the extra).
    """
    merged = dict(overrides or {})
    if clock_mode is not None:
        merged = {**merged, "clock": {"mode": clock_mode}}
    config, config_text = load_config(path, text=text, overrides=merged or None)
    source = "<text>" if text is not None else str(path or "simulated.yaml")
    clock = VirtualClock(config.clock.mode)
    context = OpenContext(config, clock)
    opened: dict[str, Any] = {}
    try:
        for role in ROLES:
            settings = getattr(config, role)
            opened[role] = _open(role, settings, context)
    except BaseException:
        for instrument in opened.values():
            try:
                instrument.close()
            except InstrumentError as exc:
                log.error("closing after a failed setup: %s", exc)
        raise
    return Setup(config=config, config_text=config_text, source=source, clock=clock,
                 world=context.built_world, **opened)


class OpenContext:
    """What :func:`load_setup` hands to a driver's ``open_instrument(settings, context)``.

    A driver module whose ``open_instrument`` has a parameter named ``context``
    receives this object (others are called with the settings alone). The
    simulated instruments take their shared world from it; the replay
    instruments have it register the session-file reader.

    Parameters
    ----------
    config : SetupConfig
        The whole validated setup (read it, do not change it).
    clock : Clock
        The setup's clock (``sleep``/``now``, real or fast; DESIGN §4).
    """

    def __init__(self, config: Any, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self._world: Any = None

    @property
    def world(self) -> Any:
        """The setup's one :class:`~micropl.simulators.world.SimulatedWorld`, built on first use.

        Built from the setup's ``sample`` section and :attr:`clock`; every
        instrument asking for it gets the same world.
        """
        if self._world is None:
            self._world = _simulated_world(self.config, self.clock)
        return self._world

    @property
    def built_world(self) -> Any:
        """The world if a driver asked for it, else None (a setup without simulation)."""
        return self._world

    def load_session_reader(self) -> None:
        """Register the session-file (HDF5) reader with the replay instruments.

        Session files are read by the acquisition layer, which simulators cannot
        import; the replay driver calls this before it opens a session file.
        """
        # Importing the replay module registers that reader with the replay instruments.
        import micropl.acquisition.replay  # noqa: F401


def _simulated_world(config: Any, clock: Clock) -> Any:
    from micropl.simulators.sample import VirtualSample
    from micropl.simulators.world import SimulatedWorld

    return SimulatedWorld(VirtualSample.from_settings(config.sample), clock)


def _open(role: str, settings: Any, context: OpenContext) -> Any:
    """Open one instrument with its registered driver module's ``open_instrument``."""
    opener = driver_module(role, settings.driver).open_instrument
    if _takes_context(opener):
        return opener(settings, context=context)
    return opener(settings)


def _takes_context(function: Any) -> bool:
    """True when ``function`` has a parameter named ``context``."""
    try:
        return "context" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # no signature (a builtin): settings only
        return False


def describe_config(config: Any) -> list[dict[str, Any]]:
    """What :func:`load_setup` would build, one row per role, without opening anything."""
    rows = []
    for role in ROLES:
        settings = getattr(config, role)
        details = settings.model_dump(exclude={"driver", "name", "faults"})
        rows.append({"role": role, "driver": settings.driver, "name": settings.name,
                     "settings": details})
    return rows


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__dict__"):
        return vars(value)
    return str(value)
