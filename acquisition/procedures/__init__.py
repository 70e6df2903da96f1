"""Procedures: pydantic parameter models with a ``run(ctx)`` method (DESIGN §5).

Scripts, the CLI and the GUI all use these. :data:`PROCEDURES` maps each
procedure's ``name`` to its class.
"""

from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.procedures.g2 import G2
from micropl.acquisition.procedures.hyperspectral import Hyperspectral, SpectralMap
from micropl.acquisition.procedures.power_series import PowerSeries
from micropl.acquisition.procedures.raster_scan import MapImage, RasterScan
from micropl.acquisition.procedures.refocus import Refocus, RefocusResult
from micropl.acquisition.procedures.spectral_series import SpectralSeries
from micropl.acquisition.procedures.spectrum import SpectrumAcquisition
from micropl.acquisition.procedures.survey import Survey
from micropl.acquisition.procedures.time_trace import TimeTrace
from micropl.acquisition.procedures.trpl import TimeResolvedPL

PROCEDURES: dict[str, type[ProcedureBase]] = {
    cls.name: cls
    for cls in (RasterScan, Refocus, SpectrumAcquisition, G2, TimeTrace, PowerSeries,
                SpectralSeries, Survey, TimeResolvedPL, Hyperspectral)
}

__all__ = ["PROCEDURES", "ProcedureBase", "RasterScan", "MapImage", "Refocus", "RefocusResult",
           "SpectrumAcquisition", "G2", "TimeTrace", "PowerSeries", "SpectralSeries", "Survey",
           "TimeResolvedPL", "Hyperspectral", "SpectralMap"]
