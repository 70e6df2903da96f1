"""Results of the g² analyses: :class:`G2Result`, :class:`PeakTrainFit` and :class:`CwG2Fit`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class G2Result:
    """Pulsed g²(0) from peak areas of an HBT histogram.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Raw area ratio central / mean side, and its symmetric 1σ error: half the width of
        ``g2_0_ci68``.
    g2_0_bgcorr, g2_0_bgcorr_err : float
        Ratio of the central to the mean side-peak area after removing the flat
        background and the decay tails that spill between windows (method in
        :func:`pulsed_g2`), clipped at 0, and half the width of its unclipped 68 %
        interval. NaN when no gap bins were available or the peak-shape fit failed.
        It estimates the same intrinsic g²(0) for every ``window_fraction``.
    rep_rate_hz, period_ps : float
        Repetition rate and period used.
    period_source : str
        ``"user"``, ``"header"`` or ``"detected"``.
    delay_ps : float
        Position of the zero-delay (central) peak in ps.
    zero_delay_source : str
        ``"user"``, ``"nearest-zero"`` (comb peak nearest τ = 0) or ``"lowest-peak"``
        (the anomalously low peak of the comb).
    n_side : int
        Side peaks per side asked for.
    n_side_left, n_side_right : int
        Side peaks actually used on each side (fewer when the histogram ends).
    central_counts : float
        Counts ``C`` in the central window.
    side_mean_counts : float
        Mean counts per side window, ``ΣS / (n_left + n_right)``.
    side_counts : ndarray of float, shape (n_left + n_right,)
        Counts of each side window, ordered by delay.
    side_delays_ps : ndarray of float, shape (n_left + n_right,)
        Centre of each side peak in ps.
    background_per_bin, background_per_bin_err : float
        Flat background counts per histogram bin from the gaps between peaks, corrected
        for the peak tails, and its 1σ error (NaN without gap bins).
    central_window_ps : tuple of float
        ``(start, stop)`` of the central window in ps.
    side_windows_ps : ndarray of float, shape (n_left + n_right, 2)
        ``(start, stop)`` of each side window in ps.
    window_fraction : float
        Window width as a fraction of the period.
    bin_ps : float
        Histogram bin width in ps.
    g2_0_ci68 : tuple of float
        ``(low, high)`` 68.27 % interval of g²(0): the Wilson score interval of the
        ratio of the central to the summed side-peak Poisson means
        (:func:`poisson_ratio_interval`), calibrated down to a few central counts and
        ``[0, ·]`` when the central window is empty.
    g2_0_bgcorr_ci68 : tuple of float
        ``(low, high)`` 68 % interval of the background-corrected value (the central
        count's part from :func:`poisson_interval`, the background's and side peaks'
        in quadrature), both ends clipped at 0. NaN when ``g2_0_bgcorr`` is.
    g2_0_bgcorr_clipped : bool
        The background-corrected estimate came out negative (more background than
        counts in the central window) and ``g2_0_bgcorr`` is reported as 0.
    """

    g2_0: float
    g2_0_err: float
    g2_0_bgcorr: float
    g2_0_bgcorr_err: float
    rep_rate_hz: float
    period_ps: float
    period_source: str
    delay_ps: float
    zero_delay_source: str
    n_side: int
    n_side_left: int
    n_side_right: int
    central_counts: float
    side_mean_counts: float
    side_counts: np.ndarray
    side_delays_ps: np.ndarray
    background_per_bin: float
    background_per_bin_err: float
    central_window_ps: tuple[float, float]
    side_windows_ps: np.ndarray
    window_fraction: float
    bin_ps: float
    # Defaults: session files written before these fields existed still load.
    g2_0_ci68: tuple[float, float] = (float("nan"), float("nan"))
    g2_0_bgcorr_ci68: tuple[float, float] = (float("nan"), float("nan"))
    g2_0_bgcorr_clipped: bool = False

    def as_dict(self) -> dict:
        """JSON-ready dictionary (arrays become lists)."""
        out = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        return out


@dataclass(frozen=True, eq=False)
class PeakTrainFit:
    """Fit of a pulsed HBT histogram by a comb of exponential peaks with a Gaussian IRF.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Central amplitude / side amplitude, and 1σ error.
    lifetime_ns, lifetime_ns_err : float
        Shared decay constant of the peaks in ns, and 1σ error.
    delay_ps, delay_ps_err : float
        Position of the zero-delay peak in ps, and 1σ error.
    irf_sigma_ps, irf_sigma_ps_err : float
        Gaussian instrument-response σ in ps, and 1σ error.
    side_amplitude, side_amplitude_err : float
        Height of the (unconvolved) side peaks in counts per bin.
    background_per_bin, background_per_bin_err : float
        Flat background in counts per bin.
    period_ps : float
        Comb period used (fixed).
    chi2_red : float
        Reduced χ² with Poisson weights; errors are scaled by √χ²_red when it exceeds 1.
    model : ndarray of float, shape (n,)
        Best-fit model per bin.
    success : bool
        Whether the optimiser converged.
    """

    g2_0: float
    g2_0_err: float
    lifetime_ns: float
    lifetime_ns_err: float
    delay_ps: float
    delay_ps_err: float
    irf_sigma_ps: float
    irf_sigma_ps_err: float
    side_amplitude: float
    side_amplitude_err: float
    background_per_bin: float
    background_per_bin_err: float
    period_ps: float
    chi2_red: float
    model: np.ndarray
    success: bool


@dataclass(frozen=True, eq=False)
class CwG2Fit:
    """Fit of a CW antibunching histogram.

    Attributes
    ----------
    g2_0, g2_0_err : float
        Deconvolved g²(0) and its 1σ error.
    tau0_ns, tau0_ns_err : float
        Antibunching time constant τ₀ in ns.
    delay_ps, delay_ps_err : float
        Position τ_d of the dip in ps.
    irf_sigma_ps, irf_sigma_ps_err : float
        Gaussian IRF σ in ps (error 0 when fixed).
    norm_counts_per_bin, norm_counts_per_bin_err : float
        Coincidences per bin for uncorrelated light (g² = 1); error 0 when it was
        computed from rates × bin × duration.
    normalisation : str
        ``"fit"`` (long-delay level) or ``"rates"``.
    g2_tau : ndarray of float, shape (n,)
        The histogram divided by the normalisation.
    model : ndarray of float, shape (n,)
        Best-fit counts per bin.
    chi2_red : float
        Reduced χ² (errors scaled by √χ²_red when it exceeds 1).
    """

    g2_0: float
    g2_0_err: float
    tau0_ns: float
    tau0_ns_err: float
    delay_ps: float
    delay_ps_err: float
    irf_sigma_ps: float
    irf_sigma_ps_err: float
    norm_counts_per_bin: float
    norm_counts_per_bin_err: float
    normalisation: str
    g2_tau: np.ndarray
    model: np.ndarray
    chi2_red: float
