"""``g2``: an HBT measurement until a duration or a target precision of g²(0)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from micropl.acquisition.live import G2Done, G2Start
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits
from micropl.analysis.g2 import G2Result
from micropl.errors import AnalysisInputError


class G2(ProcedureBase):
    """Stream both APDs' time tags; the live core correlates them.

    Tags are read every ``read_interval_s`` of data (≤ 20 ms, so the over-rate
    watchdog acts within 50 ms) and stored raw. With ``target_g2_err`` the
    measurement stops as soon as g²(0) is known to that 1σ error (checked at
    every live update, after at least ``min_duration_s``). ``window_fraction`` is the
    fraction of the period integrated around each peak; the live preview, the precision
    check and the final result all use it (:func:`~micropl.analysis.g2.pulsed_g2`).
    """

    name: ClassVar[str] = "g2"
    title: ClassVar[str] = "g² (HBT)"

    duration_s: float = Field(30.0, gt=0, le=86_400, description="longest acquisition, s")
    target_g2_err: float | None = Field(None, gt=0, le=1,
                                        description="stop when the 1σ error of g²(0) reaches this")
    min_duration_s: float = Field(2.0, ge=0, description="acquire at least this long, s")
    read_interval_s: float = Field(0.02, gt=0, le=0.04, description="tag read period, s")
    update_interval_s: float = Field(0.5, gt=0, le=10, description="precision check period, s")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, %")
    window_fraction: float = Field(1.0, gt=0, le=1,
                                   description="fraction of the period integrated around "
                                               "each peak for g²(0)")

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        return {"power_percent": limits.power_bound()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        limits.refuse_channels(prefix + "tagger apd_channels", limits.apd_channels)
        limits.refuse_g2_bin(prefix.rstrip(". :") or self.name)

    def run(self, ctx: Any) -> G2Result | None:
        tagger = ctx.setup.tagger
        ctx.emit(G2Start(window_fraction=self.window_fraction), kind="g2_start")
        tagger.start(apd_channels(ctx))
        laser_on(ctx, self.power_percent)
        tagger.read()  # discard what arrived before the laser was on
        elapsed, next_check = 0.0, self.update_interval_s
        while elapsed < self.duration_s - 1e-9:
            ctx.sleep(min(self.read_interval_s, self.duration_s - elapsed))
            chunk = tagger.read()
            ctx.emit(chunk, kind="g2")
            elapsed += chunk.duration_s
            if elapsed >= next_check:
                next_check += self.update_interval_s
                ctx.progress("g2", elapsed, self.duration_s)
                if self._precise_enough(ctx, elapsed):
                    break
        tagger.stop()
        ctx.emit(G2Done(integration_s=elapsed), kind="g2")
        live = ctx.live
        if live is None:
            return None
        ctx.sync()
        qd_id = ctx.tags.get("qd_id", -1)
        result = live.latest(ctx.run_id, qd_id, G2Result, "final")
        if result is None:  # the analysis failed: say why instead of finishing quietly
            errors = live.errors_for(ctx.run_id, qd_id)
            raise AnalysisInputError(f"g² after {elapsed:.1f} s: "
                                     + (errors[-1] if errors else "no result"))
        return result

    def _precise_enough(self, ctx: Any, elapsed_s: float) -> bool:
        if self.target_g2_err is None or ctx.live is None or elapsed_s < self.min_duration_s:
            return False
        ctx.sync()
        result = ctx.live.current_g2(ctx.run_id, ctx.tags.get("qd_id", -1))
        return result is not None and result.g2_0_err <= self.target_g2_err
