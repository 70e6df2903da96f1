"""``power_series``: APD count rate against laser power, with a saturation fit."""

from __future__ import annotations

import logging
from typing import ClassVar

import numpy as np
from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, count_apds, laser_on
from micropl.acquisition.procedures.preflight import Limits, refuse_outside
from micropl.analysis.saturation import SaturationFit, fit_saturation
from micropl.errors import AnalysisInputError
from micropl.records import PowerSeriesData

log = logging.getLogger(__name__)

#: Different powers the fit with (without) the linear background term needs.
_POWERS_WITH_SLOPE, _POWERS_WITHOUT_SLOPE = 5, 4


class PowerSeries(ProcedureBase):
    """Step the laser power, count, and fit the saturation curve.

    The summed APD rate is fitted with ``A·(1 − exp(−P/P_sat)) + B·P + C``
    (:func:`~micropl.analysis.saturation.fit_saturation`, powers in % of the laser
    setting, Poisson errors of the rates): the QD's saturated rate ``A``, its saturation
    power ``P_sat`` (%), the background that grows linearly with power ``B`` (film PL)
    and the dark counts ``C``. With four different powers the linear term is left out;
    with fewer the run fails after the counts are stored (no fit can be made). The
    :class:`PowerSeriesData` and the :class:`~micropl.analysis.saturation.SaturationFit`
    are emitted (kinds ``power_series`` and ``saturation_fit``); the fit is returned,
    also when its ``success`` is False (``reason`` says why).
    """

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

    def run(self, ctx: RunContext) -> SaturationFit:
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
        fit = saturation_fit(data)
        ctx.emit(fit, kind="saturation_fit")
        if not fit.success:
            ctx.log.warning("saturation fit not trusted: %s", fit.reason)
        return fit


def saturation_fit(data: PowerSeriesData) -> SaturationFit:
    """The saturation fit of a power series (the model the procedure applies).

    Parameters
    ----------
    data : PowerSeriesData
        Rates (counts/s) with their Poisson errors at each power (%).

    Returns
    -------
    SaturationFit
        ``p_sat`` in % (``power_unit``), ``amplitude``, ``slope`` and ``offset`` in
        counts/s (``slope`` per %). With fewer than five different powers, without the
        linear background term.

    Raises
    ------
    AnalysisInputError
        Fewer than four different powers.
    """
    n_powers = np.unique(data.power_percent).size
    if n_powers < _POWERS_WITHOUT_SLOPE:
        raise AnalysisInputError(
            f"power_series: a saturation fit needs at least {_POWERS_WITHOUT_SLOPE} different "
            f"powers_percent, got {n_powers}; the count rates are stored")
    return fit_saturation(data.power_percent, data.rate_cps, data.rate_err_cps,
                          linear_background=n_powers >= _POWERS_WITH_SLOPE, power_unit="%")
