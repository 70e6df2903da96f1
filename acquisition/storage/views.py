"""What a session's rows mean: stored records, runs, QDs and a survey's state.

The dataclasses returned by the reader (:class:`StoredRecord`,
:class:`RunInfo`, :class:`QDInfo`, :class:`SurveyState`, :class:`QDData`) and
the reader's methods that build them (:class:`_SessionViews`, inherited by
:class:`~micropl.acquisition.storage.reader.SessionReader`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from micropl.errors import FileFormatError

__all__ = ["StoredRecord", "RunInfo", "QDInfo", "SurveyState", "QDData"]


@dataclass(frozen=True)
class StoredRecord:
    """A record read back with its envelope.

    Attributes
    ----------
    seq : int
        Session-wide sequence number (append order).
    table : str
        Table it was stored in.
    run_id, qd_id : int
        Run and QD (``-1``: none).
    kind : str
        Role of the data (``"accumulated"``, ``"tags"``...).
    record : object
        The rebuilt record (a dataclass instance).
    """

    seq: int
    table: str
    run_id: int
    qd_id: int
    kind: str
    record: Any


@dataclass(frozen=True)
class RunInfo:
    """A run as stored: start, latest stop and status.

    ``status`` is ``"completed"``, ``"aborted"`` or ``"failed"`` from the
    latest :class:`RunStop`; without one it is ``"running"`` while a writer
    holds the file and ``"interrupted"`` when none does (the writer died).
    ``start_s``/``end_s`` are Unix times (``end_s`` NaN while running).
    """

    run_id: int
    procedure: str
    parameters_json: str
    status: str
    reason: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class QDInfo:
    """A QD selected for measurement, with its latest status.

    ``status`` is ``"completed"``, ``"failed"`` (see ``reason``) or
    ``"pending"`` (no status stored yet). Position and amplitude come from
    the latest :class:`QDTarget` row for the QD.
    """

    qd_id: int
    run_id: int
    x_um: float
    y_um: float
    amplitude: float
    snr: float
    status: str
    reason: str


@dataclass(frozen=True)
class SurveyState:
    """A stored survey's progress, as :meth:`SessionReader.survey_state` reads it.

    Attributes
    ----------
    run_id : int
        The survey run that mapped the sample (or was killed mapping it).
    parameters : dict
        That run's parameters.
    spots : SpotList or None
        The spots found in its map; None when the map did not finish.
    map_lines : list of MapLine
        Its stored map lines (kind ``map``), in append order.
    qds : list of QDInfo
        Every stored selected QD with its latest status.
    open_runs : list of int
        Runs without a stop record (interrupted).
    film : Spectrum or None
        The newest stored film reference.
    """

    run_id: int
    parameters: dict[str, Any]
    spots: Any
    map_lines: list[Any]
    qds: list[QDInfo]
    open_runs: list[int]
    film: Any


@dataclass(frozen=True)
class QDData:
    """Everything stored for one QD (the logical per-QD group).

    Attributes
    ----------
    info : QDInfo or None
        Target and status (None when the QD has data but no target row).
    records : dict of str to list of StoredRecord
        Per table, that QD's records in append order (tables with none are
        absent). Shorthands below.
    """

    info: QDInfo | None
    records: dict[str, list[StoredRecord]] = field(default_factory=dict)

    def _get(self, table: str) -> list[StoredRecord]:
        return self.records.get(table, [])

    @property
    def spectra(self) -> list[StoredRecord]:
        """``Spectrum`` records (raw accumulations, sums, backgrounds; see ``kind``)."""
        return self._get("spectrum")

    @property
    def frames(self) -> list[StoredRecord]:
        """Raw camera ``Frame`` records."""
        return self._get("frame")

    @property
    def spectrum_fits(self) -> list[StoredRecord]:
        """``SpectrumFit`` records."""
        return self._get("spectrum_fit")

    @property
    def g2_histograms(self) -> list[StoredRecord]:
        """``G2Histogram`` records."""
        return self._get("g2_histogram")

    @property
    def g2_results(self) -> list[StoredRecord]:
        """``G2Result`` records (peak-area g²(0))."""
        return self._get("g2_result")

    @property
    def g2_fits(self) -> list[StoredRecord]:
        """``PeakTrainFit`` and ``CwG2Fit`` records."""
        return sorted(self._get("peak_train_fit") + self._get("cw_g2_fit"), key=lambda r: r.seq)

    @property
    def tag_chunks(self) -> list[StoredRecord]:
        """Raw ``TagChunk`` records."""
        return self._get("tag_chunk")

    @property
    def refocus(self) -> StoredRecord | None:
        """The latest ``RefocusResult``, or None."""
        found = self._get("refocus")
        return found[-1] if found else None


class _SessionViews:
    """The reader's views on the stored rows: runs, QDs, survey state, tags."""

    def runs(self) -> list[RunInfo]:
        """Every run, by run number, with its latest status."""
        starts = self.records("run_start")
        stops: dict[int, StoredRecord] = {}
        for stop in self.records("run_stop"):
            stops[stop.run_id] = stop  # append order: the latest wins
        alive = None
        out = []
        for start in sorted(starts, key=lambda r: r.run_id):
            stop = stops.get(start.run_id)
            if stop is not None:
                status, reason, end = stop.record.status, stop.record.reason, stop.record.t_s
            else:
                if alive is None:
                    alive = self.writer_alive()
                status, reason, end = ("running" if alive else "interrupted"), "", float("nan")
            out.append(RunInfo(start.run_id, start.record.procedure,
                               start.record.parameters_json, status, reason,
                               start.record.t_s, end))
        return out

    def qds(self) -> list[QDInfo]:
        """Every QD selected for measurement, by QD number, with its latest status."""
        targets: dict[int, StoredRecord] = {}
        for target in self.records("qd_target"):
            targets[target.qd_id] = target
        statuses: dict[int, StoredRecord] = {}
        for status in self.records("qd_status"):
            statuses[status.qd_id] = status
        out = []
        for qd_id in sorted(targets):
            t = targets[qd_id].record
            s = statuses.get(qd_id)
            out.append(QDInfo(qd_id, t.run_id, t.x_um, t.y_um, t.amplitude, t.snr,
                              s.record.status if s else "pending",
                              s.record.reason if s else ""))
        return out

    def qd(self, qd_id: int, *, run_id: int | None = None) -> QDData:
        """Everything stored for one QD (optionally from one run only)."""
        info = next((q for q in self.qds() if q.qd_id == qd_id), None)
        records: dict[str, list[StoredRecord]] = {}
        for name, spec in self._specs.items():
            if spec.own_ids:
                continue
            rows = self.rows(name, run_id=run_id, qd_id=qd_id)
            if rows.shape[0]:
                records[name] = self._rebuild(name, rows)
        return QDData(info, records)

    def resume_plan(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """What a resumed survey needs: its parameters and the QDs not yet measured.

        Returns
        -------
        (parameters, pending) or None
            ``parameters``: the parameters of the survey run that mapped the
            sample (see :meth:`survey_state`); ``pending``: ``{qd_id, x_um,
            y_um, amplitude, snr}`` of every stored selected QD without a
            stored status (neither completed nor failed), by QD number. None
            when the file holds no survey run.
        """
        state = self.survey_state()
        if state is None:
            return None
        pending = [{"qd_id": q.qd_id, "x_um": q.x_um, "y_um": q.y_um,
                    "amplitude": q.amplitude, "snr": q.snr}
                   for q in state.qds if q.status == "pending"]
        return state.parameters, pending

    def survey_state(self) -> SurveyState | None:
        """Where a survey stands: the facts a resume is planned from (None: no survey).

        The survey run is the latest ``survey`` run that was not itself a
        resume (whose parameters have no ``targets``), else the latest one.
        """
        surveys = [r for r in self.runs() if r.procedure == "survey"]
        if not surveys:
            return None
        decoded = [(r, self.json_field(r.parameters_json or "{}",
                                       f"run {r.run_id} parameters_json", want=dict))
                   for r in surveys]
        mapping = [(r, p) for r, p in decoded if p.get("targets") is None]
        run, parameters = (mapping or decoded)[-1]
        spots = self.records("spot_list", run_id=run.run_id) if "spot_list" in self._specs \
            else []
        lines = self.records("map_line", run_id=run.run_id, kind="map") \
            if "map_line" in self._specs else []
        return SurveyState(
            run_id=run.run_id, parameters=parameters,
            spots=spots[-1].record if spots else None,
            map_lines=[s.record for s in lines], qds=self.qds(),
            open_runs=[r.run_id for r in self.runs() if r.status in ("running", "interrupted")],
            film=self.film_reference())

    def json_field(self, text: str, field: str, *, want: type | None = None) -> Any:
        """Decode the stored JSON ``text`` of ``field``; one-line FileFormatError if bad."""
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise FileFormatError(f"{self.path}: {field} is not valid JSON "
                                  f"({' '.join(str(exc).split())[:200]})") from None
        if want is not None and not isinstance(value, want):
            raise FileFormatError(f"{self.path}: {field} must be a JSON "
                                  f"{'object' if want is dict else want.__name__}, got "
                                  f"{type(value).__name__}")
        return value

    def film_reference(self) -> Any:
        """The newest stored film reference (kind ``film_accumulated``), a Spectrum, or None."""
        from micropl.records import Spectrum

        stored = self.records(Spectrum, kind="film_accumulated")
        return stored[-1].record if stored else None

    def tags(self, *, qd_id: int | None = None, run_id: int | None = None,
             kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All tags of the selected ``tag_chunk`` rows, concatenated in append order.

        Returns
        -------
        t_ps : ndarray of int64
            Arrival times in ps.
        channel : ndarray of uint8
            Channel of each tag.
        """
        rows = self.rows("tag_chunk", qd_id=qd_id, run_id=run_id, kind=kind)
        self._check_lengths("tag_chunk", rows)
        return (self.concatenated("tag_chunk", "t_ps", rows).astype(np.int64, copy=False),
                self.concatenated("tag_chunk", "channel", rows).astype(np.uint8, copy=False))
