"""``trpl``: time-resolved PL — photon delays after the laser sync, and the lifetime fit.

The tagger streams both APDs (the over-rate interlock watches both) and the laser
sync. The delays of one APD's photons after the preceding laser pulse are
histogrammed over one period (:func:`~micropl.analysis.lifetime.decay_histogram`; a
divided sync is unfolded with the pulses per sync tag the tags show) and fitted with a
periodic exponential decay convolved with a Gaussian IRF
(:func:`~micropl.analysis.lifetime.fit_decay`). The raw tags (kind ``trpl``), the
:class:`~micropl.records.DecayHistogram` and the
:class:`~micropl.analysis.lifetime.LifetimeFit` are stored; the fit is returned.

:func:`trpl_lifetimes` reads the fitted lifetime per QD back from a session, for the
summary beside the g² peak-train lifetime.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from micropl.acquisition.context import RunContext
from micropl.acquisition.procedures.base import ProcedureBase, apd_channels, laser_on
from micropl.acquisition.procedures.preflight import Bound, Limits, ParameterError
from micropl.analysis.lifetime import LifetimeFit, decay_histogram, fit_decay
from micropl.drivers.limits import bin_refusal
from micropl.errors import AnalysisInputError
from micropl.records import DecayHistogram

__all__ = ["NO_TRPL", "TimeResolvedPL", "add_trpl_lifetimes", "pulses_per_sync",
           "sync_channel_of", "trpl_lifetimes"]

log = logging.getLogger(__name__)

#: Largest relative deviation of the sync spacing from a whole number of laser periods.
_SYNC_TOLERANCE = 0.01

#: Summary fields of a QD without a TRPL lifetime.
NO_TRPL: dict[str, None] = {"trpl_lifetime_ns": None, "trpl_lifetime_ns_err": None}


def sync_channel_of(channels: tuple[int, ...], apd: tuple[int, int],
                    chosen: int | None = None) -> int | None:
    """The tagger input of the laser sync: ``chosen``, or the only input that is no APD.

    Parameters
    ----------
    channels : tuple of int
        Tagger inputs.
    apd : (int, int)
        The two APD inputs.
    chosen : int, optional
        The input named by the procedure.

    Returns
    -------
    int or None
        None when ``chosen`` is None and the tagger has no input, or several, besides the
        APDs.
    """
    if chosen is not None:
        return int(chosen)
    others = [int(c) for c in channels if int(c) not in apd]
    return others[0] if len(others) == 1 else None


def pulses_per_sync(t_sync_ps: np.ndarray, period_ps: float) -> int:
    """Laser pulses per sync tag, from the median spacing of the sync tags.

    Raises
    ------
    AnalysisInputError
        Fewer than two sync tags, or a spacing that is not a whole number of periods
        (the sync does not come from this laser, or its repetition rate is wrong).
    """
    t = np.asarray(t_sync_ps, np.int64)
    if t.size < 2:
        raise AnalysisInputError(f"trpl: {t.size} laser sync tag(s): is the sync cable "
                                 "connected and the laser on?")
    ratio = float(np.median(np.diff(t))) / float(period_ps)
    n = max(1, int(round(ratio)))
    if abs(ratio - n) > _SYNC_TOLERANCE * n:
        raise AnalysisInputError(
            f"trpl: the sync tags come every {ratio:.3f} laser periods of {period_ps:g} ps, "
            "not a whole number: check the laser repetition rate and the sync input")
    return n


class TimeResolvedPL(ProcedureBase):
    """Histogram one APD's photon delays after the laser sync and fit the PL decay.

    Needs a tagger with a laser sync input (``tagger.sync_channel`` of the simulated
    tagger); refused before the laser goes on without one.
    """

    name: ClassVar[str] = "trpl"
    title: ClassVar[str] = "Time-resolved PL (lifetime)"

    duration_s: float = Field(5.0, gt=0, le=86_400, description="acquisition time, s")
    read_interval_s: float = Field(0.02, gt=0, le=0.04, description="tag read period, s")
    power_percent: float | None = Field(None, ge=0, le=100, description="laser power, %")
    bin_ps: float = Field(100.0, gt=0, le=10_000, description="histogram bin width, ps")
    apd: int = Field(1, ge=1, le=2, description="APD histogrammed (1 or 2 of the HBT pair)")
    sync_channel: int | None = Field(None, ge=0, le=64,
                                     description="tagger input of the laser sync (default: "
                                                 "the only input that is no APD)")
    n_components: int = Field(1, ge=1, le=2, description="exponential components fitted")

    @classmethod
    def field_bounds(cls, limits: Limits) -> dict[str, Bound]:
        return {"power_percent": limits.power_bound()}

    def _check_more(self, limits: Limits, prefix: str) -> None:
        limits.refuse_channels(prefix + "tagger apd_channels", limits.apd_channels)
        sync = sync_channel_of(limits.channels, limits.apd_channels, self.sync_channel)
        if sync is None:
            others = [c for c in limits.channels if c not in limits.apd_channels]
            found = (f"inputs {tuple(others)} besides the APDs: choose one with "
                     "sync_channel" if others else "no laser sync input: set "
                     "tagger.sync_channel in the setup file and connect the laser sync")
            raise ParameterError(f"{prefix}refused: tagger '{limits.tagger}' has {found}")
        if sync in limits.apd_channels:
            raise ParameterError(f"{prefix}sync_channel = {sync} refused: it is an APD input "
                                 f"of tagger '{limits.tagger}' {limits.apd_channels}")
        limits.refuse_channels(prefix + "sync_channel", (sync,))
        allowed = bin_refusal(self.bin_ps, limits.resolution_ps)
        if allowed is not None:
            raise ParameterError(f"{prefix}bin_ps = {self.bin_ps:g} ps refused: tagger "
                                 f"'{limits.tagger}' needs {allowed}")

    def run(self, ctx: RunContext) -> LifetimeFit:
        tagger, laser = ctx.setup.tagger, ctx.setup.laser
        apds = apd_channels(ctx)
        sync = sync_channel_of(tuple(tagger.channels), apds, self.sync_channel)
        period_ps = 1e12 / float(laser.rep_rate_hz)
        channel = apds[self.apd - 1]
        tagger.start((*apds, sync))
        laser_on(ctx, self.power_percent)
        tagger.read()  # discard what arrived before the laser was on
        syncs, photons = [], []
        elapsed = 0.0
        while elapsed < self.duration_s - 1e-9:
            ctx.sleep(min(self.read_interval_s, self.duration_s - elapsed))
            chunk = tagger.read()
            ctx.emit(chunk, kind="trpl")
            syncs.append(chunk.t_ps[chunk.channel == sync])
            photons.append(chunk.t_ps[chunk.channel == channel])
            elapsed += chunk.duration_s
            ctx.progress("trpl", elapsed, self.duration_s)
        tagger.stop()
        t_sync = np.concatenate(syncs) if syncs else np.zeros(0, np.int64)
        t_photon = np.concatenate(photons) if photons else np.zeros(0, np.int64)
        divider = pulses_per_sync(t_sync, period_ps)
        t_ps, counts = decay_histogram(t_sync, t_photon, self.bin_ps, period_ps,
                                       pulses_per_sync=divider)
        ctx.emit(DecayHistogram(t_ps=t_ps, counts=counts, bin_ps=float(self.bin_ps),
                                period_ps=period_ps, channel=int(channel),
                                sync_channel=int(sync), pulses_per_sync=divider,
                                integration_s=elapsed), kind="decay_histogram")
        fit = fit_decay(t_ps, counts, period_ps, n_components=self.n_components)
        ctx.emit(fit, kind="lifetime_fit")
        if not fit.success:
            ctx.log.warning("lifetime fit not trusted: %s", fit.reason)
        return fit


def trpl_lifetimes(reader: Any) -> dict[int, dict[str, float | None]]:
    """The latest TRPL lifetime per QD of a session (the longest component's, in ns).

    Parameters
    ----------
    reader : SessionReader
        An open session file.

    Returns
    -------
    dict of int to dict
        QD id → ``{"trpl_lifetime_ns", "trpl_lifetime_ns_err"}`` (None when the fit was
        not trusted or is not finite); QDs without a TRPL fit are missing.
    """
    if "lifetime_fit" not in reader.tables:
        return {}
    out: dict[int, dict[str, float | None]] = {}
    latest: dict[int, int] = {}
    for stored in reader.records("lifetime_fit"):
        qd_id = int(stored.qd_id)
        if qd_id < 0 or latest.get(qd_id, -1) > int(stored.seq):
            continue
        latest[qd_id] = int(stored.seq)
        fit = stored.record
        ok = bool(fit.success) and fit.tau_ns.size > 0
        tau = float(fit.tau_ns[-1]) if ok else float("nan")
        err = float(fit.tau_err_ns[-1]) if ok else float("nan")
        out[qd_id] = {"trpl_lifetime_ns": tau if np.isfinite(tau) else None,
                      "trpl_lifetime_ns_err": err if np.isfinite(err) else None}
    return out


def add_trpl_lifetimes(reader: Any, qds: list[dict[str, Any]]) -> None:
    """Add ``trpl_lifetime_ns`` and ``trpl_lifetime_ns_err`` to every QD entry of a
    session summary (None for QDs without a trusted TRPL fit), in place.

    Parameters
    ----------
    reader : SessionReader
        The session the summary is of.
    qds : list of dict
        Summary entries, each with its ``"id"``.
    """
    found = trpl_lifetimes(reader)
    for entry in qds:
        entry.update(found.get(int(entry["id"]), NO_TRPL))
