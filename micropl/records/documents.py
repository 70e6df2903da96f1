"""Acquisition-level records: runs, selected QDs and their status, and the data envelope.

The runner emits these on the data stream next to the instrument records of
:mod:`micropl.records.data` (``Frame``, ``Spectrum``, ``TagChunk``,
``MapLine``) and the analysis results (``SpectrumFit``, ``G2Result``...). The
session storage (:mod:`micropl.acquisition.storage`) writes every one of them.

Two kinds of records
--------------------
* **Bookkeeping records** carry their own ``run_id`` (and ``qd_id``):
  :class:`RunStart`, :class:`RunStop`, :class:`QDTarget`, :class:`QDStatus`,
  :class:`InstrumentSnapshot`. Like the bluesky start/stop documents, a run is
  opened by a ``RunStart`` and closed by a ``RunStop`` that carries the exit
  status; a run without a stop is still running (or its writer died).
* **Data records** (instrument records, analysis results, :class:`G2Histogram`,
  :class:`RefocusResult`) say nothing about where they belong. Wrap them in a
  :class:`Tagged` envelope to attach the run, the QD and the role of the data
  (``kind``: ``"accumulation"``, ``"accumulated"``, ``"background"``,
  ``"map_line"``...). A bare data record is stored with ``run_id = -1``,
  ``qd_id = -1`` and its table's default kind.

Times
-----
``t_s`` of the bookkeeping records is wall-clock Unix time in s
(``time.time()``), so that a session file tells when things happened even when
the instruments ran on the virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "NO_ID",
    "RUN_STATUSES",
    "QD_STATUSES",
    "RunStart",
    "RunStop",
    "QDTarget",
    "QDStatus",
    "QDFlags",
    "QDTruth",
    "InstrumentSnapshot",
    "G2Histogram",
    "RefocusResult",
    "PowerSeriesData",
    "DecayHistogram",
    "Tagged",
]

#: Stored ``run_id``/``qd_id`` of data that belongs to no run or no QD.
NO_ID = -1

RunStatus = Literal["completed", "aborted", "failed"]
QDStatusValue = Literal["completed", "failed"]

#: Exit statuses a :class:`RunStop` may carry.
RUN_STATUSES: tuple[str, ...] = ("completed", "aborted", "failed")
#: Statuses a :class:`QDStatus` may carry.
QD_STATUSES: tuple[str, ...] = ("completed", "failed")

_KIND_MAX_BYTES = 32


def _check_id(name: str, value: int, *, allow_none: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < (NO_ID if allow_none else 0):
        raise ValueError(f"{name} must be >= {NO_ID if allow_none else 0}, got {value}")


# --------------------------------------------------------------------------- bookkeeping
@dataclass(frozen=True)
class RunStart:
    """A run (one procedure execution) has started.

    Attributes
    ----------
    run_id : int
        Session-unique run number (``>= 0``).
    procedure : str
        Procedure name, e.g. ``"survey"`` or ``"g2"``.
    parameters_json : str
        The procedure's validated parameters as JSON text.
    t_s : float
        Wall-clock start time, Unix seconds.
    """

    run_id: int
    procedure: str
    parameters_json: str
    t_s: float

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id)
        if not self.procedure:
            raise ValueError("RunStart.procedure must not be empty")


@dataclass(frozen=True)
class RunStop:
    """A run has ended; the stop record carries the exit status.

    Attributes
    ----------
    run_id : int
        The run that ended.
    status : str
        ``"completed"``, ``"aborted"`` (user abort or watchdog) or ``"failed"``
        (an error).
    reason : str
        Why the run aborted or failed (empty for a completed run).
    t_s : float
        Wall-clock end time, Unix seconds.
    """

    run_id: int
    status: RunStatus
    reason: str = ""
    t_s: float = 0.0

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id)
        if self.status not in RUN_STATUSES:
            raise ValueError(f"RunStop.status must be one of {RUN_STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class QDTarget:
    """A quantum dot selected for measurement (a spot found in the PL map).

    Attributes
    ----------
    run_id : int
        The run that selected it.
    qd_id : int
        Session-unique QD number (``>= 0``).
    x_um, y_um : float
        Scanner position of the spot in µm.
    amplitude : float
        Spot amplitude above background in the map, counts per map pixel.
    snr : float
        Amplitude over the map's background noise (dimensionless).
    """

    run_id: int
    qd_id: int
    x_um: float
    y_um: float
    amplitude: float
    snr: float

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id)
        _check_id("qd_id", self.qd_id)


@dataclass(frozen=True)
class QDStatus:
    """The measurement of one QD has ended (the latest status of a QD wins).

    Attributes
    ----------
    run_id : int
        The run that measured it.
    qd_id : int
        The QD.
    status : str
        ``"completed"`` or ``"failed"``.
    reason : str
        Why it failed (empty when completed).
    t_s : float
        Wall-clock time, Unix seconds.
    """

    run_id: int
    qd_id: int
    status: QDStatusValue
    reason: str = ""
    t_s: float = 0.0

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id)
        _check_id("qd_id", self.qd_id)
        if self.status not in QD_STATUSES:
            raise ValueError(f"QDStatus.status must be one of {QD_STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class QDFlags:
    """What a measured QD is: the flags the survey gave it, and why.

    A data record (the :class:`Tagged` envelope says which run and QD), stored
    before the QD's :class:`QDStatus`. The rule is :mod:`micropl.analysis.emitters`
    (e.g. ``multiple_emitters`` when g²(0) + 2σ is not below 0.5, or the spectrum
    holds two resolved lines).

    Attributes
    ----------
    flags : str
        Comma-separated flags (``multiple_emitters``, ``poor_fit``,
        ``saturated``); empty for a clean single QD.
    detail : str
        The numbers behind the verdict, human-readable.
    t_s : float
        Wall-clock time, Unix seconds.
    """

    flags: str = ""
    detail: str = ""
    t_s: float = 0.0

    @property
    def flag_list(self) -> list[str]:
        """The flags as a list."""
        return [f for f in self.flags.split(",") if f]


@dataclass(frozen=True)
class QDTruth:
    """Simulated sessions: what the simulated emitters gave while a QD was measured.

    Computed by the simulated world (``SimulatedWorld.measured_truth``) from the
    exposures and the g² acquisition actually made. A data record (the
    :class:`Tagged` envelope says which run and QD).

    Attributes
    ----------
    index : int
        Sample index of the emitter that gave most of the light.
    distance_um : float
        Its distance from the focus, µm.
    n_emitters : int
        Emitters giving ≥ 1 % of the detected light.
    main_fraction : float
        Share of the light from the main emitter (0–1).
    energy_ev, fwhm_mev : float
        Photon-weighted peak energy over the exposures (eV) and FWHM of the line
        drawn over them (meV): the blinking- and diffusion-averaged truth.
    g2_0 : float
        Raw peak-area g²(0) expected with the film background and dark counts.
    g2_0_intrinsic : float
        g²(0) of the emitters' light alone (the main emitter's own g²(0) when it is alone).
    t_s : float
        Wall-clock time, Unix seconds.
    """

    index: int
    distance_um: float
    n_emitters: int
    main_fraction: float
    energy_ev: float
    fwhm_mev: float
    g2_0: float
    g2_0_intrinsic: float
    t_s: float = 0.0


@dataclass(frozen=True)
class InstrumentSnapshot:
    """Instrument settings at some moment of a run (provenance).

    Attributes
    ----------
    run_id : int
        The run it belongs to (``-1`` for none).
    settings_json : str
        JSON object ``{instrument name: snapshot dict}``.
    t_s : float
        Wall-clock time, Unix seconds.
    """

    run_id: int
    settings_json: str
    t_s: float = 0.0

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id, allow_none=True)


# --------------------------------------------------------------------------- data records
@dataclass(frozen=True, eq=False)
class G2Histogram:
    """An HBT coincidence histogram (APD1 → APD2 delays).

    Attributes
    ----------
    tau_ps : ndarray of float64, shape (n_bins,)
        Bin centres in ps.
    counts : ndarray of int64, shape (n_bins,)
        Coincidences per bin.
    bin_ps : float
        Bin width in ps.
    integration_s : float
        Acquisition time the histogram covers, in s.
    """

    tau_ps: np.ndarray
    counts: np.ndarray
    bin_ps: float
    integration_s: float


@dataclass(frozen=True)
class RefocusResult:
    """Outcome of re-centring the laser spot on a QD (small scan + 2D Gaussian fit).

    Attributes
    ----------
    x_um, y_um : float
        Scanner position after the refocus, µm.
    dx_um, dy_um : float
        Step made (0 when it stayed put), µm.
    x_err_um, y_err_um : float
        1σ errors of the fitted centre, µm (nan when the fit failed).
    z_um : float
        Focus height after the refocus, µm.
    amplitude_cps : float
        Fitted peak rate above the offset, counts/s.
    fwhm_um : float
        Mean fitted spot FWHM, µm.
    moved : bool
        Whether the scanner moved to the fitted centre.
    reason : str
        ``"ok"`` or why it stayed put.
    """

    x_um: float
    y_um: float
    dx_um: float
    dy_um: float
    x_err_um: float
    y_err_um: float
    z_um: float
    amplitude_cps: float
    fwhm_um: float
    moved: bool
    reason: str


@dataclass(frozen=True)
class Tagged:
    """Envelope saying which run, QD and role a data record belongs to.

    Attributes
    ----------
    record : object
        A data record (``Spectrum``, ``TagChunk``, ``SpectrumFit``...).
    run_id : int
        The run that produced it (``-1``: none).
    qd_id : int
        The QD it was measured on (``-1``: none, e.g. a map line).
    kind : str
        Role of the data, at most 32 bytes of UTF-8, e.g. ``"accumulation"``
        (one raw frame of a spectrum), ``"accumulated"`` (their sum),
        ``"background"``, ``"map_line"``. Empty: the table's default kind.
    """

    record: Any
    run_id: int = NO_ID
    qd_id: int = NO_ID
    kind: str = ""

    def __post_init__(self) -> None:
        _check_id("run_id", self.run_id, allow_none=True)
        _check_id("qd_id", self.qd_id, allow_none=True)
        if len(self.kind.encode("utf-8")) > _KIND_MAX_BYTES:
            raise ValueError(f"Tagged.kind must be at most {_KIND_MAX_BYTES} bytes: {self.kind!r}")
        if isinstance(self.record, Tagged):
            raise TypeError("Tagged records cannot be nested")


@dataclass(frozen=True)
class PowerSeriesData:
    """Count rate of both APDs at each laser power.

    Attributes
    ----------
    power_percent : ndarray, shape (n,)
        Laser power settings, %.
    rate_cps : ndarray, shape (n,)
        Summed APD count rate, counts/s.
    rate_err_cps : ndarray, shape (n,)
        Poisson 1σ error of the rate, counts/s.
    """

    power_percent: np.ndarray
    rate_cps: np.ndarray
    rate_err_cps: np.ndarray


@dataclass(frozen=True, eq=False)
class DecayHistogram:
    """Photon delays of one APD after the laser pulse (time-resolved PL).

    Attributes
    ----------
    t_ps : ndarray of float64, shape (n_bins,)
        Bin centres, delay after the preceding laser pulse, ps.
    counts : ndarray of int64, shape (n_bins,)
        Photons per bin.
    bin_ps : float
        Bin width, ps.
    period_ps : float
        Laser repetition period, ps.
    channel : int
        Tagger input of the APD histogrammed.
    sync_channel : int
        Tagger input of the laser sync.
    pulses_per_sync : int
        Laser pulses per sync tag (the sync divider the tags showed).
    integration_s : float
        Data time the histogram covers, s.
    """

    t_ps: np.ndarray
    counts: np.ndarray
    bin_ps: float
    period_ps: float
    channel: int
    sync_channel: int
    pulses_per_sync: int
    integration_s: float
