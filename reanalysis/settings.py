"""The settings of a re-analysis: fit model, g² window, background correction, rules.

Every field left ``None`` means "what the session itself used": the model of the stored
spectrum fit, the window fraction, bin width and side peaks of the stored g² result
(else the survey's parameters, else the live core's defaults). The selection rules are
those of :mod:`micropl.analysis.emitters`, with its thresholds as defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from micropl.analysis.emitters import (
    FLAG_MULTIPLE,
    FLAG_POOR_FIT,
    SINGLE_G2_THRESHOLD,
    SINGLE_N_SIGMA,
)

__all__ = ["ReanalysisSettings", "STATUSES", "STATUS_SINGLE", "STATUS_MULTIPLE",
           "STATUS_FAILED", "STATUS_POOR_FIT"]

#: A QD whose g²(0) shows one emitter and whose spectrum holds one line, fitted well.
STATUS_SINGLE = "single"
#: The g²(0) rule or the two-line test found more than one emitter.
STATUS_MULTIPLE = FLAG_MULTIPLE
#: The spectrum fit's quality is "poor fit" (one emitter otherwise).
STATUS_POOR_FIT = FLAG_POOR_FIT
#: No usable data, or the spectrum or g² analysis failed (see ``reason``).
STATUS_FAILED = "failed"
#: Every status a re-analysed QD can get, in the order they are judged.
STATUSES: tuple[str, ...] = (STATUS_FAILED, STATUS_MULTIPLE, STATUS_POOR_FIT, STATUS_SINGLE)


class ReanalysisSettings(BaseModel):
    """What a re-analysis fits and how it judges each QD.

    Attributes
    ----------
    model : {"lorentzian", "gaussian", "voigt"} or None
        Line shape of the spectrum fit (None: the stored fit's model).
    window_fraction : float or None
        Fraction of the period integrated around each g² peak, 0 < f <= 1 (None: the
        stored g² result's, else the survey's ``g2.window_fraction``).
    g2_bin_ps : int or None
        g² histogram bin width, ps (None: the stored result's, else 128).
    n_side : int or None
        Side peaks per side for g²(0) (None: the stored result's, else 5).
    bgcorr : bool
        Judge single emitters on the background-corrected g²(0) (the survey's rule);
        False: on the raw peak-area ratio.
    single_threshold, single_n_sigma : float
        The single-emitter rule ``g²(0) + n_sigma·σ < threshold``.
    two_line_test : bool
        Flag spectra holding two resolved lines as multiple emitters.
    peak_train : bool
        Also fit the whole g² peak train (background-free g²(0) and lifetime).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["lorentzian", "gaussian", "voigt"] | None = None
    window_fraction: float | None = Field(None, gt=0, le=1)
    g2_bin_ps: int | None = Field(None, ge=1, le=100_000)
    n_side: int | None = Field(None, ge=1, le=20)
    bgcorr: bool = True
    single_threshold: float = Field(SINGLE_G2_THRESHOLD, gt=0, le=2)
    single_n_sigma: float = Field(SINGLE_N_SIGMA, ge=0, le=10)
    two_line_test: bool = True
    peak_train: bool = True

    def describe(self) -> dict[str, object]:
        """The settings as JSON-ready values (None: the session's own)."""
        return self.model_dump(mode="json")
