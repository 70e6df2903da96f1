"""``time_trace``: stream APD tags for blinking analysis (intensity trace, on/off)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits


class TimeTrace(ProcedureBase):
    """Record the raw tags of both APDs (and the sync channel when the tagger has one).

    The tags are stored; the intensity trace, on/off statistics and FLID are
    computed from them by :mod:`micropl.analysis.blinking`.
    """

    name: ClassVar[str] = "time_trace"
    title: ClassVar[str] = "Time trace (blinking)"

    duration_s: float = Field(10.0, gt=0, le=86_400, description="acquisition time, s")
    read_interval_s: float = Field(0.02, gt=0, le=0.04, description="tag read period, s")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, %")

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        return {"power_percent": limits.power_bound()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        limits.refuse_channels(prefix + "tagger apd_channels", limits.apd_channels)

    def run(self, ctx: RunContext) -> float:
        tagger = ctx.setup.tagger
        tagger.start(tuple(tagger.channels) if len(tagger.channels) > 2 else apd_channels(ctx))
        laser_on(ctx, self.power_percent)
        tagger.read()
        elapsed = 0.0
        while elapsed < self.duration_s - 1e-9:
            ctx.sleep(min(self.read_interval_s, self.duration_s - elapsed))
            chunk = tagger.read()
            ctx.emit(chunk, kind="trace")
            elapsed += chunk.duration_s
            ctx.progress("time trace", elapsed, self.duration_s)
        tagger.stop()
        return elapsed
