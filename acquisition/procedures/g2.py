"""``g2``: an HBT measurement until a duration or a target precision of g²(0)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.live import G2Done, G2Start
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits
from micropl.acquisition.results import G2Measurement
from micropl.analysis.g2 import G2Result
from micropl.errors import AnalysisInputError, UserError


class G2(ProcedureBase):
    """Stream both APDs' time tags, correlate them, and fit the histogram.

    Tags are read every ``read_interval_s`` of data (≤ 20 ms, so the over-rate
    watchdog acts within 50 ms), stored raw and correlated by the procedure itself
    (:class:`~micropl.acquisition.results.G2Measurement`, with the session's bin and
    side peaks). With ``target_g2_err`` the measurement stops as soon as g²(0) is
    known to that 1σ error (checked every ``update_interval_s`` of data, after at
    least ``min_duration_s``). ``window_fraction`` is the fraction of the period
    integrated around each peak; the precision check, the final result and the live
    preview all use it (:func:`~micropl.analysis.g2.pulsed_g2`).
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

    def run(self, ctx: RunContext) -> G2Result:
        """Acquire, then build and fit the histogram; return g²(0) (kind ``final``).

        Emits the raw tag chunks (kind ``g2``), then the final
        :class:`~micropl.records.G2Histogram`,
        :class:`~micropl.analysis.g2.G2Result` (with background correction) and,
        when the fitter accepts the histogram, the
        :class:`~micropl.analysis.g2.PeakTrainFit` — each once, with the context's
        run and QD.

        Raises
        ------
        AnalysisInputError
            When g²(0) cannot be computed (e.g. no coincidences); the histogram
            is stored first.
        """
        measurement = G2Measurement(ctx.analysis, ctx.setup.laser.rep_rate_hz,
                                    apd_channels(ctx), self.window_fraction)
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
            measurement.add(chunk)
            elapsed += chunk.duration_s
            if elapsed >= next_check:
                next_check += self.update_interval_s
                ctx.progress("g2", elapsed, self.duration_s)
                if self._precise_enough(measurement, elapsed):
                    break
        tagger.stop()
        ctx.emit(G2Done(integration_s=elapsed), kind="g2")
        return self._finish(ctx, measurement, elapsed)

    @staticmethod
    def _finish(ctx: RunContext, measurement: G2Measurement, elapsed_s: float) -> G2Result:
        """Emit the final histogram, g²(0) and peak-train fit; return g²(0)."""
        histogram = measurement.histogram()
        ctx.emit(histogram, kind="final")
        try:
            outcome = measurement.finish(histogram)
        except UserError as exc:  # say why instead of finishing quietly
            raise AnalysisInputError(f"g² after {elapsed_s:.1f} s: "
                                     f"{type(exc).__name__}: {exc}") from exc
        for record in outcome.records()[1:]:
            ctx.emit(record, kind="final")
        return outcome.result

    def _precise_enough(self, measurement: G2Measurement, elapsed_s: float) -> bool:
        """Whether g²(0) (no background correction) reached ``target_g2_err`` (1σ)."""
        if self.target_g2_err is None or elapsed_s < self.min_duration_s:
            return False
        try:
            result = measurement.g2()
        except UserError:  # not computable yet (no side-peak counts)
            return False
        return result.g2_0_err <= self.target_g2_err
