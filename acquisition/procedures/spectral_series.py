"""``spectral_series``: consecutive spectra for spectral diffusion (peak energy vs time)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.procedures.preflight import Bound, Limits
from micropl.acquisition.procedures.spectrum import SpectrumAcquisition


class SpectralSeries(ProcedureBase):
    """``n_spectra`` frames in a row, each published and fitted live.

    The fitted peak energies against the frames' times give the spectral
    diffusion trace.
    """

    name: ClassVar[str] = "spectral_series"
    title: ClassVar[str] = "Spectral series (diffusion)"

    n_spectra: int = Field(50, ge=2, le=100_000, description="number of spectra")
    spectrum: SpectrumAcquisition = Field(
        default_factory=lambda: SpectrumAcquisition(exposure_s=0.2, accumulations=1))

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        return {f"spectrum.{k}": v
                for k, v in SpectrumAcquisition.field_bounds(limits).items()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        self.spectrum.check_limits(limits, prefix + "spectrum.")

    def run(self, ctx: RunContext) -> int:
        # One background frame, then every frame is published and fitted on its own.
        self.spectrum.model_copy(update={"accumulations": self.n_spectra}).run(ctx)
        return self.n_spectra
