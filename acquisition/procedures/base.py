"""The base of every procedure, and small helpers they share."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.preflight import Bound, Limits, refuse_outside
from micropl.records import TagChunk


class ProcedureBase(BaseModel):
    """A procedure's parameters; subclasses add fields and ``run(ctx)``.

    Field names carry units and ``Field`` limits, which the GUI turns into
    forms with units and ranges.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str] = "procedure"
    title: ClassVar[str] = "Procedure"

    def run(self, ctx: RunContext) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ pre-flight
    def check(self, setup: Any, *, analysis: Any = None) -> None:
        """Refuse parameters the instruments of ``setup`` cannot do, before anything runs.

        :meth:`Runner.start <micropl.acquisition.runner.Runner.start>` calls it.

        Parameters
        ----------
        setup : Setup
            Open instruments (driver calls: not from the GUI thread).
        analysis : AnalysisSettings, optional
            Live analysis settings (for the g² bin).

        Raises
        ------
        ParameterError
            One line naming the parameter, its value and the instrument's limit.
        """
        self.check_limits(Limits.of(setup, analysis))

    def check_limits(self, limits: Limits, prefix: str | None = None) -> None:
        """:meth:`check` against limits already read (a GUI form uses this).

        Parameters
        ----------
        limits : Limits
            What the instruments accept.
        prefix : str, optional
            Prefix of the parameter names in messages (``"survey: spectrum."`` for a
            nested procedure); ``"<name>: "`` by default.
        """
        prefix = f"{self.name}: " if prefix is None else prefix
        for field, bound in self.field_bounds(limits).items():
            if "." in field:
                continue  # a nested procedure checks its own fields
            value = getattr(self, field)
            if value is not None:
                refuse_outside(prefix + field, value, bound)
        self._check_more(limits, prefix)

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        """Instrument range of each bounded field (dotted names for nested models).

        The GUI sets its spin-box ranges from these; :meth:`check_limits` refuses
        values outside them.
        """
        return {}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        """Checks that involve several fields or derived values (none by default)."""


def apd_channels(ctx: RunContext) -> tuple[int, int]:
    """The two HBT channels of the run's setup."""
    return ctx.setup.apd_channels


def count_apds(ctx: RunContext, dwell_s: float, slice_s: float = 0.02) -> tuple[int, float]:
    """Counts of both APDs over exactly ``dwell_s`` of data time, checked by the watchdog.

    The tagger must be started. Tags that arrived before the call (during a move)
    are discarded, once the over-rate interlock has checked them (every read of
    ``ctx.setup.tagger`` is checked). Reads in slices of at most ``slice_s`` so the over-rate
    watchdog acts within 50 ms of data time. Only tags in the first ``dwell_s`` after the
    discarding read are counted: a sleep that overshoots (real clock, loaded machine)
    makes the last read longer, not the count higher.

    Returns
    -------
    counts : int
        Tags of both APD channels within the dwell window.
    duration_s : float
        Data time the counts cover, in s (``dwell_s`` unless the tagger's data ended early).
    """
    tagger = ctx.setup.tagger
    start_ps = int(tagger.read().t_stop_ps)
    stop_ps = start_ps + int(round(dwell_s * 1e12))
    channels = apd_channels(ctx)
    total, reached_ps = 0, start_ps
    left = dwell_s
    while left > 1e-12:
        step = min(slice_s, left)
        ctx.sleep(step)
        chunk: TagChunk = tagger.read()
        ctx.guard(chunk)
        apd = (chunk.channel == channels[0]) | (chunk.channel == channels[1])
        total += int((apd & (chunk.t_ps < stop_ps)).sum())
        reached_ps = max(reached_ps, int(chunk.t_stop_ps))
        left -= step
    return total, (min(reached_ps, stop_ps) - start_ps) * 1e-12


def laser_on(ctx: RunContext, power_percent: float | None = None) -> None:
    """Set the power (when given) and switch the laser on."""
    laser = ctx.setup.laser
    if power_percent is not None:
        laser.power_percent = power_percent
    if not laser.emission_on:
        laser.emission_on = True
