"""``power_series``: APD count rate against laser power, with a saturation fit."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, count_apds, laser_on
from micropl.acquisition.procedures.preflight import Limits, refuse_outside
from micropl.acquisition.records import PowerSeriesData


class PowerSeries(ProcedureBase):
    """Step the laser power and count; the saturation fit is applied to the result."""

    name: ClassVar[str] = "power_series"
    title: ClassVar[str] = "Power series (saturation)"

    powers_percent: list[float] = Field(
        default_factory=lambda: [1, 2, 4, 7, 10, 15, 20, 30, 45, 60, 80, 100],
        min_length=3, description="laser powers to visit, %")
    dwell_s: float = Field(0.5, gt=0, le=600, description="counting time per power, s")

    def _check_more(self, limits: Limits, prefix: str) -> None:
        for i, power in enumerate(self.powers_percent):
            refuse_outside(f"{prefix}powers_percent[{i}]", power, limits.power_bound())
        limits.refuse_channels(prefix + "tagger apd_channels", limits.apd_channels)

    def run(self, ctx: Any) -> PowerSeriesData:
        ctx.setup.tagger.start(apd_channels(ctx))
        powers, rates = [], []
        for i, power in enumerate(self.powers_percent):
            ctx.checkpoint()
            laser_on(ctx, power)
            counts, duration_s = count_apds(ctx, self.dwell_s)
            powers.append(power)
            rates.append((counts, duration_s))
            ctx.progress("power series", i + 1, len(self.powers_percent))
        ctx.setup.tagger.stop()
        counts = np.array([c for c, _ in rates], float)
        duration = np.array([d for _, d in rates], float)
        data = PowerSeriesData(power_percent=np.asarray(powers, float),
                               rate_cps=counts / duration,
                               rate_err_cps=np.sqrt(np.maximum(counts, 1)) / duration)
        ctx.emit(data, kind="power_series")
        return data
