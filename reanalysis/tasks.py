"""One re-analysis task: a chunk of one session's QDs, re-fitted from the stored raw data.

A task opens its session file read-only where it lies (:class:`SessionReader`, which
never writes), and for each QD

* fits the latest accumulated spectrum (the processed spectrum the procedure fitted:
  background frame and film reference subtracted, cosmic rays removed) and the frames
  summed into it with the procedures' own fit,
  :func:`~micropl.acquisition.results.fit_spectrum_records`;
* correlates the QD's raw time tags chunk by chunk and computes g²(0) and the peak-train
  fit as the ``g2`` procedure does (:class:`~micropl.acquisition.results.G2Measurement`);
* re-judges the QD with the rules of :mod:`micropl.analysis.emitters` (single-emitter
  rule, two-line test, fit flags): ``single``, ``multiple_emitters``, ``poor_fit`` or
  ``failed`` (:data:`~micropl.reanalysis.settings.STATUSES`).

A QD whose analysis raises is a row with status ``failed``, its ``reason`` and
``task_error`` true; the other QDs go on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micropl.acquisition.results import (
    AnalysisSettings,
    G2Measurement,
    fit_spectrum_records,
    spectrum_noise,
)
from micropl.acquisition.storage import SessionReader
from micropl.analysis.emitters import (
    FLAG_MULTIPLE,
    FLAG_POOR_FIT,
    choose_g2,
    fit_flags,
    is_single_emitter,
    spectral_jitter,
    two_line_test,
)
from micropl.errors import AnalysisInputError
from micropl.reanalysis.labels import read_sample
from micropl.reanalysis.settings import (
    STATUS_FAILED,
    STATUS_MULTIPLE,
    STATUS_POOR_FIT,
    STATUS_SINGLE,
    ReanalysisSettings,
)

log = logging.getLogger(__name__)

__all__ = ["QDChunk", "analyze_chunk", "judge", "plan_session", "sessions_chunks",
           "DEFAULT_CHUNK_QDS"]

#: QDs per task by default: a few seconds of work, one file open per task.
DEFAULT_CHUNK_QDS = 4
#: Defaults of the live core (:class:`~micropl.acquisition.live.AnalysisSettings`).
_LIVE_MODEL, _LIVE_BIN_PS, _LIVE_N_SIDE, _LIVE_WINDOW = "lorentzian", 128, 5, 1.0


@dataclass(frozen=True)
class QDChunk:
    """A task: some QDs of one session.

    Attributes
    ----------
    session : str
        The session file as given (the table's ``session`` column).
    path : str
        Its absolute path, which the workers open (the same on every node of a
        cluster over a shared file system).
    qd_ids : tuple of int
        The QDs re-analysed.
    """

    session: str
    path: str
    qd_ids: tuple[int, ...]


def plan_session(session: str | os.PathLike[str], chunk_qds: int = DEFAULT_CHUNK_QDS
                 ) -> list[QDChunk]:
    """The tasks of one session: its selected QDs in chunks of ``chunk_qds``.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        When ``session`` is missing or a folder.
    FileFormatError
        When it is not a readable micropl session file.
    """
    if chunk_qds < 1:
        raise AnalysisInputError(f"QDs per task must be >= 1, got {chunk_qds}")
    path = Path(session)
    with SessionReader(path) as reader:
        qd_ids = [q.qd_id for q in reader.qds()]
    absolute = str(path.expanduser().resolve())
    return [QDChunk(str(session), absolute, tuple(qd_ids[i:i + chunk_qds]))
            for i in range(0, len(qd_ids), chunk_qds)]


def analyze_chunk(chunk: QDChunk, settings: ReanalysisSettings) -> list[dict[str, Any]]:
    """Re-analyse the QDs of ``chunk``: one row per QD, never raising for one QD.

    Returns
    -------
    list of dict
        The rows (:data:`micropl.reanalysis.table.COLUMNS`), in the order of
        ``chunk.qd_ids``. When the file cannot be read at all, every QD's row says so.
    """
    try:
        with SessionReader(chunk.path) as reader:
            context = _SessionContext.of(reader)
            return [_guarded_row(reader, context, chunk, qd_id, settings)
                    for qd_id in chunk.qd_ids]
    except Exception as exc:  # noqa: BLE001 - every QD's row names the error
        log.info("%s: %s", chunk.session, exc, exc_info=exc)
        return [_error_row(chunk.session, qd_id, exc) for qd_id in chunk.qd_ids]


def _guarded_row(reader: SessionReader, context: _SessionContext, chunk: QDChunk,
                 qd_id: int, settings: ReanalysisSettings) -> dict[str, Any]:
    try:
        return _qd_row(reader, context, chunk.session, qd_id, settings)
    except Exception as exc:  # noqa: BLE001 - the row names the error; the others go on
        log.info("%s QD %d: %s", chunk.session, qd_id, exc, exc_info=exc)
        row = _error_row(chunk.session, qd_id, exc)
        row["sample"] = context.sample or None
        return row


def _error_row(session: str, qd_id: int, exc: BaseException) -> dict[str, Any]:
    return {"session": session, "qd_id": int(qd_id), "status": STATUS_FAILED,
            "reason": f"{type(exc).__name__}: {' '.join(str(exc).split())}",
            "task_error": True}


# --------------------------------------------------------------------------- the session
@dataclass(frozen=True)
class _SessionContext:
    """What every QD of a session shares: label, instruments, stored g² settings."""

    sample: str
    software_version: str
    rep_rate_hz: float | None
    channels: tuple[int, int]
    survey_window: float | None
    truth: dict[str, np.ndarray] | None
    qds: dict[int, Any]

    @classmethod
    def of(cls, reader: SessionReader) -> _SessionContext:
        instruments = reader.instruments
        laser = instruments.get("laser") if isinstance(instruments.get("laser"), dict) else {}
        tagger = instruments.get("tagger") if isinstance(instruments.get("tagger"), dict) \
            else {}
        rate = laser.get("rep_rate_hz")
        channels = tagger.get("apd_channels") or (1, 2)
        return cls(sample=read_sample(reader), software_version=reader.software_version,
                   rep_rate_hz=float(rate) if isinstance(rate, int | float) and rate > 0
                   else None,
                   channels=(int(channels[0]), int(channels[1])),
                   survey_window=_survey_window(reader),
                   truth=reader.truth if reader.simulated else None,
                   qds={q.qd_id: q for q in reader.qds()})


def _survey_window(reader: SessionReader) -> float | None:
    """``g2.window_fraction`` of the session's latest survey run (None: no survey, or not
    stored). Only the runs' parameters are read (not the map)."""
    for run in reversed(reader.runs()):
        if run.procedure != "survey" or not run.parameters_json:
            continue
        parameters = reader.json_field(run.parameters_json, f"run {run.run_id} parameters_json")
        g2 = parameters.get("g2") if isinstance(parameters, dict) else None
        value = g2.get("window_fraction") if isinstance(g2, dict) else None
        if isinstance(value, int | float) and 0 < value <= 1:
            return float(value)
    return None


# --------------------------------------------------------------------------- one QD
def _qd_row(reader: SessionReader, context: _SessionContext, session: str, qd_id: int,
            settings: ReanalysisSettings) -> dict[str, Any]:
    info = context.qds.get(qd_id)
    row: dict[str, Any] = {
        "session": session, "sample": context.sample or None, "qd_id": int(qd_id),
        "run_id": None if info is None else int(info.run_id),
        "x_um": None if info is None else _num(info.x_um),
        "y_um": None if info is None else _num(info.y_um),
        "stored_status": "pending" if info is None else info.status,
        "stored_reason": None if info is None or not info.reason else info.reason,
        "task_error": False,
        **_truth_labels(reader, context, qd_id)}
    spectra = reader.records("spectrum", qd_id=qd_id)
    accumulated = [s for s in spectra if s.kind == "accumulated"]
    if not accumulated:
        return {**row, "status": STATUS_FAILED, "reason": "no accumulated spectrum stored"}
    latest = accumulated[-1]
    row["run_id"] = latest.run_id
    fits = reader.records("spectrum_fit", qd_id=qd_id, run_id=latest.run_id,
                          kind="accumulated") if "spectrum_fit" in reader.tables else []
    stored_model = str(fits[-1].record.model) if fits else _LIVE_MODEL
    spectrum_part, problems, flags, two = _spectrum(spectra, latest,
                                                    settings.model or stored_model, settings)
    row.update(spectrum_part)
    g2_part, g2_problem, choice = _g2(reader, context, latest.run_id, qd_id, settings)
    row.update(g2_part)
    if g2_problem:
        problems.append(g2_problem)
    if choice is not None:
        row["g2_rule_source"] = choice.source
    status, reason, all_flags = judge(problems, choice, two_lines=two, fit_flag_list=flags,
                                      settings=settings)
    row.update(status=status, reason=reason, flags=",".join(all_flags))
    return row


def judge(problems: Sequence[str], choice: Any, *, two_lines: bool,
          fit_flag_list: Sequence[str], settings: ReanalysisSettings
          ) -> tuple[str, str | None, list[str]]:
    """A QD's status, the reason of a failure, and its flags.

    Parameters
    ----------
    problems : sequence of str
        Why its analysis failed (empty: it did not).
    choice : G2Choice or None
        The g²(0) the single-emitter rule uses (:func:`~micropl.analysis.emitters.choose_g2`).
    two_lines : bool
        The two-line test found two resolved lines.
    fit_flag_list : sequence of str
        :func:`~micropl.analysis.emitters.fit_flags` of the spectrum fit.
    settings : ReanalysisSettings
        The rule's threshold and margin.

    Returns
    -------
    (status, reason, flags)
        ``failed`` (with the problems as reason), else ``multiple_emitters`` when the
        g²(0) rule (:func:`~micropl.analysis.emitters.is_single_emitter`) fails or two
        lines were found, else ``poor_fit``, else ``single``.
    """
    multiple = bool(two_lines)
    if choice is not None:
        multiple |= not is_single_emitter(choice.value, choice.err,
                                          threshold=settings.single_threshold,
                                          n_sigma=settings.single_n_sigma)
    flags = ([FLAG_MULTIPLE] if multiple else []) + [f for f in fit_flag_list
                                                     if f != FLAG_MULTIPLE]
    if problems:
        return STATUS_FAILED, "; ".join(problems), flags
    if FLAG_MULTIPLE in flags:
        return STATUS_MULTIPLE, None, flags
    if FLAG_POOR_FIT in flags:
        return STATUS_POOR_FIT, None, flags
    return STATUS_SINGLE, None, flags


def _truth_labels(reader: SessionReader, context: _SessionContext, qd_id: int
                  ) -> dict[str, Any]:
    """Batch label and core/shell flag of the QD's main emitter (simulated sessions)."""
    out: dict[str, Any] = {"batch": None, "core_shell": None}
    truth = context.truth
    if not truth or "qd_truth" not in reader.tables:
        return out
    records = reader.records("qd_truth", qd_id=qd_id)
    if not records:
        return out
    k = int(records[-1].record.index)
    if "batch" in truth and 0 <= k < truth["batch"].size:
        label = truth["batch"][k]
        out["batch"] = (label.decode("utf-8", "replace") if isinstance(label, bytes)
                        else str(label)) or None
    if "core_shell" in truth and 0 <= k < truth["core_shell"].size:
        out["core_shell"] = bool(truth["core_shell"][k])
    return out


def _spectrum(spectra: Sequence[Any], latest: Any, model: str, settings: ReanalysisSettings
              ) -> tuple[dict[str, Any], list[str], list[str], bool]:
    """Fit of the accumulated spectrum, the jitter of its frames and the two-line test.

    Returns
    -------
    (values, problems, flags, two_lines)
    """
    sp = latest.record
    noise = spectrum_noise(sp)
    fit = fit_spectrum_records([sp], model)[0]
    values: dict[str, Any] = {
        "model": model,
        "peak_energy_ev": _first(fit.peak_energy_ev),
        "peak_energy_err_ev": _first(fit.peak_energy_err_ev),
        "fwhm_mev": _first(fit.fwhm_mev), "fwhm_err_mev": _first(fit.fwhm_err_mev),
        "fit_success": bool(np.all(fit.success)),
        "reduced_chi2": _first(fit.reduced_chi2),
        "fit_quality": str(np.asarray(fit.quality).ravel()[0]),
        **_jitter(spectra, latest, model)}
    problems: list[str] = []
    if not values["fit_success"]:
        problems.append(f"spectrum fit failed: {np.asarray(fit.message).ravel()[0]}")
    two = False
    values["two_lines"] = None
    if settings.two_line_test and not problems:
        try:
            test = two_line_test(sp.wavelength_nm, sp.counts, model=model, **noise)
        except AnalysisInputError as exc:
            log.info("two-line test not made: %s", exc)
        else:
            two = bool(test.two_lines)
            values["two_lines"] = two
    return values, problems, fit_flags(fit), two


def _jitter(spectra: Sequence[Any], latest: Any, model: str) -> dict[str, Any]:
    """Spectral jitter of the frames summed into ``latest`` (as ``info`` computes it)."""
    earlier = [s.seq for s in spectra if s.kind == "accumulated" and s.run_id == latest.run_id
               and s.seq < latest.seq]
    after = max(earlier) if earlier else -1
    frames = [s.record for s in spectra if s.kind == "frame" and s.run_id == latest.run_id
              and after < s.seq < latest.seq]
    out = {"spectral_jitter_mev": None, "spectral_jitter_err_mev": None,
           "frame_energy_std_mev": None, "n_frames": len(frames)}
    if len(frames) < 2:
        return out
    energy, err = [], []
    for one in fit_spectrum_records(frames, model):  # the procedures' batch fit
        good = bool(np.all(one.success))
        energy.append(_first(one.peak_energy_ev) if good else math.nan)
        e = _first(one.peak_energy_err_ev) if good else None
        err.append(math.nan if e is None else e)
    energy = [math.nan if v is None else v for v in energy]
    j = spectral_jitter(energy, err)
    if j is None:
        return out
    return {**out, "spectral_jitter_mev": _num(j.jitter_mev),
            "spectral_jitter_err_mev": _num(j.jitter_err_mev),
            "frame_energy_std_mev": _num(j.std_mev)}


def _g2(reader: SessionReader, context: _SessionContext, run_id: int, qd_id: int,
        settings: ReanalysisSettings) -> tuple[dict[str, Any], str | None, Any]:
    """g²(0) of the QD's raw tags of ``run_id``: (values, problem or None, G2Choice)."""
    stored = [r.record for r in reader.records("g2_result", qd_id=qd_id, run_id=run_id)
              if r.kind == "final"] if "g2_result" in reader.tables else []
    last = stored[-1] if stored else None
    window = settings.window_fraction or _stored(last, "window_fraction") \
        or context.survey_window or _LIVE_WINDOW
    bin_ps = int(settings.g2_bin_ps or _stored(last, "bin_ps") or _LIVE_BIN_PS)
    n_side = int(settings.n_side or _stored(last, "n_side") or _LIVE_N_SIDE)
    rate = _stored(last, "rep_rate_hz") or context.rep_rate_hz
    values: dict[str, Any] = {"window_fraction": float(window), "g2_bin_ps": bin_ps,
                              "n_side": n_side, "rep_rate_hz": rate, "n_tags": 0,
                              **dict.fromkeys(_G2_KEYS)}
    chunks = _g2_chunks(reader, run_id, qd_id)
    values["n_tags"] = int(sum(c.t_ps.size for c in chunks))
    if not chunks or values["n_tags"] == 0:
        return values, "no g² tags stored", None
    if rate is None:
        return values, "no repetition rate known (no g² result, no laser snapshot)", None
    measurement = G2Measurement(AnalysisSettings(g2_bin_ps=bin_ps, n_side=n_side), rate,
                                context.channels, window_fraction=float(window))
    try:
        for chunk in chunks:
            measurement.add(chunk)
        outcome = measurement.finish()  # the g² procedure's own final result
    except AnalysisInputError as exc:
        return values, f"g²: {exc}", None
    result, train = outcome.result, outcome.peak_train
    values.update(g2_0=_num(result.g2_0), g2_0_err=_num(result.g2_0_err),
                  g2_0_bgcorr=_num(result.g2_0_bgcorr),
                  g2_0_bgcorr_err=_num(result.g2_0_bgcorr_err))
    if settings.peak_train and train is not None:
        values.update(g2_0_fit=_num(train.g2_0), g2_0_fit_err=_num(train.g2_0_err),
                      lifetime_ns=_num(train.lifetime_ns),
                      lifetime_ns_err=_num(train.lifetime_ns_err))
    choice = choose_g2(result.g2_0, result.g2_0_err, result.g2_0_bgcorr,
                       result.g2_0_bgcorr_err) if settings.bgcorr \
        else choose_g2(result.g2_0, result.g2_0_err)
    return values, None, choice


_G2_KEYS = ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_fit",
            "g2_0_fit_err", "lifetime_ns", "lifetime_ns_err")


def _g2_chunks(reader: SessionReader, run_id: int, qd_id: int) -> list[Any]:
    """The tag chunks of the QD's last g² measurement in ``run_id``: those stored before
    its final histogram (where the live core finished it) and after the one before."""
    if "tag_chunk" not in reader.tables:
        return []
    chunks = [r for r in reader.records("tag_chunk", qd_id=qd_id, run_id=run_id)
              if r.kind == "g2"]
    ends = sorted(r.seq for r in reader.records("g2_histogram", qd_id=qd_id, run_id=run_id)
                  if r.kind == "final") if "g2_histogram" in reader.tables else []
    if ends:
        stop = ends[-1]
        start = ends[-2] if len(ends) > 1 else -1
        chunks = [c for c in chunks if start < c.seq < stop]
    return [c.record for c in chunks]


def _stored(record: Any, name: str) -> Any:
    if record is None:
        return None
    value = getattr(record, name, None)
    if isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value) \
            and value > 0:
        return value
    return None


def _first(values: Any) -> float | None:
    flat = np.asarray(values, dtype=float).ravel()
    return _num(flat[0]) if flat.size else None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def sessions_chunks(sessions: Iterable[str | os.PathLike[str]],
                    chunk_qds: int = DEFAULT_CHUNK_QDS) -> list[QDChunk]:
    """Every task of ``sessions`` (each checked to be a readable session file first)."""
    return [chunk for s in sessions for chunk in plan_session(s, chunk_qds)]
