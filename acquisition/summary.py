"""The summary of a session file: runs, QDs, fits, flags and agreement with the truth.

:func:`session_summary` is what ``micropl info`` prints and the demo report
shows; it works on a file that is still being written.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Any

import numpy as np

from micropl.acquisition.procedures.trpl import add_trpl_lifetimes
from micropl.acquisition.storage import SessionReader
from micropl.analysis.emitters import (
    EXCLUDING_FLAGS,
    choose_g2,
    excluded_counts,
    exclusion_text,
    qd_flags,
    spectral_jitter,
    two_line_test,
)
from micropl.errors import UserError

__all__ = ["session_summary", "truth_agreement", "truth_agreement_line",
           "TRUTH_MATCH_UM", "TRUTH_N_SIGMA"]

log = logging.getLogger(__name__)

#: Largest distance between a QD's position and a truth emitter matched to it, µm.
TRUTH_MATCH_UM = 1.0
#: A measured value agrees with the truth when within this many of its σ.
TRUTH_N_SIGMA = 3.0
_TRUTH_RECORD_KEYS = ("index", "distance_um", "n_emitters", "main_fraction", "energy_ev",
                      "fwhm_mev", "g2_0", "g2_0_intrinsic")


# --------------------------------------------------------------------------- summary
def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON output cannot hold) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _iso(t_s: float) -> str | None:
    if not math.isfinite(t_s):
        return None
    return _dt.datetime.fromtimestamp(t_s, _dt.UTC).isoformat(timespec="seconds")


def _latest_per_qd(rows: np.ndarray, prefer_kind: str) -> dict[int, int]:
    """Row index of the latest row per QD, preferring rows of ``prefer_kind``."""
    best: dict[int, tuple[bool, int, int]] = {}
    preferred = prefer_kind.encode()
    for i, (qd_id, seq, kind) in enumerate(zip(rows["qd_id"], rows["seq"], rows["kind"])):
        key = (kind == preferred, int(seq), i)
        if qd_id >= 0 and (int(qd_id) not in best or key > best[int(qd_id)]):
            best[int(qd_id)] = key
    return {qd: key[2] for qd, key in best.items()}


def _main_line(values: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The strongest line of a (possibly multi-peak) fit, as floats."""
    flat = {k: np.asarray(v, dtype=float).ravel() for k, v in values.items()}
    area = flat.pop("area")
    k = 0
    if area.size > 1 and np.isfinite(area).any():
        k = int(np.nanargmax(area))
    return {name: _num(v[k]) if v.size > k else None for name, v in flat.items()}


def _fits(reader: SessionReader) -> dict[int, dict[str, Any]]:
    """The accumulated spectrum's fit per QD (main line), its quality fields when
    stored, and the spectral jitter of the frames it sums."""
    if "spectrum_fit" not in reader.tables:
        return {}
    rows = reader.rows("spectrum_fit")
    pick = _latest_per_qd(rows, "accumulated")
    if not pick:
        return {}
    qd_ids = list(pick)
    chosen = rows[[pick[q] for q in qd_ids]]
    names = ("peak_energy_ev", "peak_energy_err_ev", "fwhm_mev", "fwhm_err_mev", "area",
             "success")
    columns = {n: reader.values("spectrum_fit", n, chosen) for n in names}
    stored = {c.name for c in reader.spec("spectrum_fit").columns}
    quality = {n: reader.values("spectrum_fit", n, chosen)
               for n in ("quality", "saturated") if n in stored}
    jitter = _jitter(reader, rows, pick)
    out = {}
    for i, qd_id in enumerate(qd_ids):
        line = _main_line({n: columns[n][i] for n in names if n != "success"})
        line["fit_success"] = bool(np.all(columns["success"][i]))
        line["_fit_fields"] = {n: v[i] for n, v in quality.items()}
        line.update(jitter.get(qd_id, _NO_JITTER))
        out[qd_id] = line
    return out


_NO_JITTER: dict[str, Any] = {"spectral_jitter_mev": None, "spectral_jitter_err_mev": None,
                              "frame_energy_std_mev": None, "n_frames": 0}


def _jitter(reader: SessionReader, rows: np.ndarray,
            accumulated: dict[int, int]) -> dict[int, dict[str, Any]]:
    """Spectral jitter per QD from the per-frame fits summed into its latest accumulated
    spectrum (the frame fits stored between its previous accumulated fit and that one)."""
    kinds = rows["kind"]
    frames = np.flatnonzero(kinds == b"frame")
    if frames.size == 0:
        return {}
    seq, qd = rows["seq"].astype(np.int64), rows["qd_id"].astype(np.int64)
    acc = kinds == b"accumulated"
    out = {}
    for qd_id, i in accumulated.items():
        if kinds[i] != b"accumulated":
            continue
        earlier = np.flatnonzero(acc & (qd == qd_id) & (seq < seq[i]))
        after = int(seq[earlier].max()) if earlier.size else -1
        mine = frames[(qd[frames] == qd_id) & (seq[frames] > after) & (seq[frames] < seq[i])]
        if mine.size < 2:
            continue
        energy = reader.values("spectrum_fit", "peak_energy_ev", rows[mine])
        err = reader.values("spectrum_fit", "peak_energy_err_ev", rows[mine])
        area = reader.values("spectrum_fit", "area", rows[mine])
        ok = reader.values("spectrum_fit", "success", rows[mine])
        e, s = [], []
        for k in range(mine.size):
            line = _main_line({"peak_energy_ev": energy[k], "peak_energy_err_ev": err[k],
                               "area": area[k]})
            good = bool(np.all(ok[k]))
            e.append(line["peak_energy_ev"] if good and line["peak_energy_ev"] else np.nan)
            s.append(line["peak_energy_err_ev"] if good and line["peak_energy_err_ev"]
                     is not None else np.nan)
        j = spectral_jitter(e, s)
        if j is not None:
            out[qd_id] = {"spectral_jitter_mev": _num(j.jitter_mev),
                          "spectral_jitter_err_mev": _num(j.jitter_err_mev),
                          "frame_energy_std_mev": _num(j.std_mev), "n_frames": j.n_frames}
    return out


def _g2(reader: SessionReader) -> dict[int, dict[str, Any]]:
    """Peak-area g²(0) (raw and background-corrected), and the peak-train fit's
    background-free g²(0) and lifetime, per QD."""
    out: dict[int, dict[str, Any]] = {}
    if "g2_result" in reader.tables:
        rows = reader.rows("g2_result")
        for qd, i in _latest_per_qd(rows, "final").items():
            out[qd] = {"g2_0": _num(rows["g2_0"][i]), "g2_0_err": _num(rows["g2_0_err"][i]),
                       "g2_0_bgcorr": _num(rows["g2_0_bgcorr"][i]),
                       "g2_0_bgcorr_err": _num(rows["g2_0_bgcorr_err"][i])}
    if "peak_train_fit" in reader.tables:
        rows = reader.rows("peak_train_fit")
        for qd, i in _latest_per_qd(rows, "final").items():
            out.setdefault(qd, dict(_NO_G2)).update({
                "g2_0_fit": _num(rows["g2_0"][i]), "g2_0_fit_err": _num(rows["g2_0_err"][i]),
                "lifetime_ns": _num(rows["lifetime_ns"][i]),
                "lifetime_ns_err": _num(rows["lifetime_ns_err"][i])})
    return out


_NO_G2: dict[str, None] = dict.fromkeys(
    ("g2_0", "g2_0_err", "g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_fit", "g2_0_fit_err",
     "lifetime_ns", "lifetime_ns_err"))


def _truth_match(truth: dict[str, np.ndarray] | None, x_um: float,
                 y_um: float) -> dict[str, Any] | None:
    """Old simulated sessions (no truth record): the nearest emitter's static values.

    Its ``energy_ev`` and ``fwhm_mev`` are the sample's means (not averaged over the
    exposure), ``g2_0_intrinsic`` its own g²(0); the raw g²(0) expected is not known.
    """
    if not truth or "x_um" not in truth or "y_um" not in truth or truth["x_um"].size == 0:
        return None
    distance = np.hypot(truth["x_um"] - x_um, truth["y_um"] - y_um)
    k = int(np.argmin(distance))
    if not distance[k] <= TRUTH_MATCH_UM:
        return None

    def value(key: str) -> float | None:
        return _num(truth[key][k]) if key in truth else None

    return {"index": k, "distance_um": _num(distance[k]), "x_um": value("x_um"),
            "y_um": value("y_um"), "energy_ev": value("energy_ev"),
            "fwhm_mev": value("fwhm_mev"), "g2_0": None, "g2_0_intrinsic": value("g2_0"),
            "exposure_averaged": False, **_emitter_labels(truth, k)}


def _emitter_labels(truth: dict[str, np.ndarray] | None, k: int) -> dict[str, Any]:
    """The sample's batch label (e.g. ``"14nm"``) and core/shell flag of emitter ``k``.

    None where the truth does not record them (sessions from before batches).
    """
    out: dict[str, Any] = {"batch": None, "core_shell": None}
    if not truth or not 0 <= k < truth["x_um"].size:
        return out
    if "batch" in truth:
        label = truth["batch"][k]
        out["batch"] = (label.decode("utf-8", "replace") if isinstance(label, bytes)
                        else str(label)) or None
    if "core_shell" in truth:
        out["core_shell"] = bool(truth["core_shell"][k])
    return out


def _truth_records(reader: SessionReader,
                   truth: dict[str, np.ndarray] | None) -> dict[int, dict[str, Any]]:
    """The stored truth of what was measured, per QD (latest record)."""
    if "qd_truth" not in reader.tables:
        return {}
    out = {}
    for r in reader.records("qd_truth"):
        t = r.record
        entry: dict[str, Any] = {k: _num(getattr(t, k)) for k in _TRUTH_RECORD_KEYS}
        entry["index"], entry["n_emitters"] = int(t.index), int(t.n_emitters)
        k = int(t.index)
        for key in ("x_um", "y_um"):
            entry[key] = _num(truth[key][k]) if truth and key in truth \
                and 0 <= k < truth[key].size else None
        entry["exposure_averaged"] = True
        entry.update(_emitter_labels(truth, k))
        out[r.qd_id] = entry
    return out


def _stored_flags(reader: SessionReader) -> dict[int, dict[str, Any]]:
    if "qd_flags" not in reader.tables:
        return {}
    return {r.qd_id: {"flags": r.record.flag_list, "flags_detail": r.record.detail or None}
            for r in reader.records("qd_flags")}


def _computed_flags(reader: SessionReader, entry: dict[str, Any],
                    fit_fields: dict[str, Any]) -> dict[str, Any]:
    """Flags of a QD measured before flags were stored: from its g²(0), the stored
    accumulated spectrum (one or two lines) and its fit's quality fields."""
    choice = choose_g2(entry["g2_0"], entry["g2_0_err"], entry["g2_0_bgcorr"],
                       entry["g2_0_bgcorr_err"])
    lines = None
    if entry["status"] == "completed":
        spectra = [r.record for r in reader.records("spectrum", qd_id=entry["id"])
                   if r.kind == "accumulated"]
        if spectra:
            sp = spectra[-1]
            noise = ({"noise_factor": 2.0 if sp.em_gain > 1 else 1.0,
                      "read_noise": float(sp.read_noise)} if sp.counts_unit == "e"
                     else {"noise_factor": None})
            try:
                lines = two_line_test(sp.wavelength_nm, sp.counts, **noise)
            except UserError as exc:
                log.info("QD %d: two-line test not made: %s", entry["id"], exc)
    flags = qd_flags(choice, two_line=lines, fit=_FitFields(fit_fields))
    detail = None if lines is None else f"computed by info; spectrum: {lines.reason}"
    return {"flags": flags, "flags_detail": detail}


class _FitFields:
    """The stored quality fields of a fit, as attributes (for ``fit_flags``)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)


def truth_agreement(qds: list[dict[str, Any]],
                    n_sigma: float = TRUTH_N_SIGMA) -> dict[str, Any] | None:
    """Share of the single QDs within ``n_sigma`` of the truth of what was measured.

    Counts the completed QDs without an excluding flag whose truth is
    exposure-averaged, for energy, FWHM, raw g²(0) (against the raw value expected)
    and background-corrected g²(0) (against the intrinsic value).

    Returns
    -------
    dict or None
        ``n_single``, ``excluded`` (flag → count), ``n_sigma`` and per quantity
        (``energy``, ``fwhm``, ``g2_0``, ``g2_0_bgcorr``) ``{"n", "within", "fraction"}``;
        None when no QD has such a truth.
    """
    pairs = {"energy": ("peak_energy_ev", "peak_energy_err_ev", "energy_ev"),
             "fwhm": ("fwhm_mev", "fwhm_err_mev", "fwhm_mev"),
             "g2_0": ("g2_0", "g2_0_err", "g2_0"),
             "g2_0_bgcorr": ("g2_0_bgcorr", "g2_0_bgcorr_err", "g2_0_intrinsic")}
    done = [q for q in qds if q["status"] == "completed" and q.get("truth")
            and q["truth"].get("exposure_averaged")]
    if not done:
        return None
    excluded = excluded_counts(q.get("flags") for q in done)
    single = [q for q in done if not any(f in EXCLUDING_FLAGS for f in q.get("flags") or [])]
    out: dict[str, Any] = {"n_single": len(single), "excluded": excluded,
                           "n_sigma": n_sigma}
    for name, (key, err_key, truth_key) in pairs.items():
        pulls = [(q[key] - q["truth"][truth_key]) / q[err_key] for q in single
                 if q.get(key) is not None and q.get(err_key) and q["truth"].get(truth_key)
                 is not None]
        within = int(sum(abs(p) <= n_sigma for p in pulls))
        out[name] = {"n": len(pulls), "within": within,
                     "fraction": within / len(pulls) if pulls else None}
    return out


def truth_agreement_line(agreement: dict[str, Any]) -> str:
    """One line for the end of the demo: the within-3σ shares and the exclusions."""
    def pct(name: str) -> str:
        a = agreement[name]
        return "—" if a["fraction"] is None else f"{100 * a['fraction']:.0f}% ({a['within']}/" \
                                                  f"{a['n']})"

    return (f"truth of what was measured, {agreement['n_single']} single QDs within "
            f"{agreement['n_sigma']:g}σ: energy {pct('energy')}, FWHM {pct('fwhm')}, "
            f"g²(0) raw {pct('g2_0')}, background-corrected {pct('g2_0_bgcorr')}; "
            f"{exclusion_text(agreement['excluded'])}")


def session_summary(reader: SessionReader) -> dict[str, Any]:
    """JSON-ready summary of a session: metadata, runs and QDs with their results.

    Returns
    -------
    dict
        ``file``, ``software_version``, ``created``, ``simulated``,
        ``being_written``, ``resume_count``, ``n_rows`` (per table), ``runs``
        (``run_id``, ``procedure``, ``status``, ``reason``, ``start``, ``end``
        as ISO 8601 UTC or null) and ``qds`` (``id``, ``run_id``, ``x_um``,
        ``y_um``, ``status``, ``reason``, ``peak_energy_ev``,
        ``peak_energy_err_ev``, ``fwhm_mev``, ``fwhm_err_mev``, ``fit_success``,
        ``g2_0``, ``g2_0_err`` (peak-area ratio), ``g2_0_bgcorr``,
        ``g2_0_bgcorr_err``, ``g2_0_fit``, ``g2_0_fit_err``, ``lifetime_ns``,
        ``lifetime_ns_err`` (peak-train fit), ``spectral_jitter_mev``,
        ``spectral_jitter_err_mev`` (std of the per-frame peak energies with the
        per-frame fit noise subtracted in quadrature), ``frame_energy_std_mev``,
        ``n_frames`` — null when not measured — ``flags`` (list: ``multiple_emitters``,
        ``poor_fit``, ``saturated``; see :mod:`micropl.analysis.emitters`) with
        ``flags_detail``, and, for simulated sessions, ``truth``: the truth of what
        was measured (``energy_ev`` and ``fwhm_mev`` averaged over the exposure,
        ``g2_0`` the raw value expected with background and dark counts,
        ``g2_0_intrinsic``, ``index``, ``distance_um``, ``n_emitters``,
        ``main_fraction``, ``x_um``, ``y_um``, ``exposure_averaged: true``); for old
        simulated files the nearest emitter within :data:`TRUTH_MATCH_UM` with its
        static values (``exposure_averaged: false``, ``g2_0`` null), or null),
        ``excluded`` (flag → completed QDs it leaves out of the statistics) and, for
        simulated sessions, ``truth_agreement`` (:func:`truth_agreement`).
    """
    reader.refresh()
    runs = [{
        "run_id": r.run_id,
        "procedure": r.procedure,
        "status": r.status,
        "reason": r.reason or None,
        "start": _iso(r.start_s),
        "end": _iso(r.end_s),
        "parameters": _finite(reader.json_field(r.parameters_json,
                                                f"run {r.run_id} parameters_json"))
        if r.parameters_json else None,
    } for r in reader.runs()]
    fits = _fits(reader)
    g2 = _g2(reader)
    truth = reader.truth if reader.simulated else None
    measured_truth = _truth_records(reader, truth) if reader.simulated else {}
    stored_flags = _stored_flags(reader)
    empty_fit = {"peak_energy_ev": None, "peak_energy_err_ev": None, "fwhm_mev": None,
                 "fwhm_err_mev": None, "fit_success": None, "_fit_fields": {}, **_NO_JITTER}
    qds = []
    for q in reader.qds():
        entry: dict[str, Any] = {
            "id": q.qd_id, "run_id": q.run_id, "x_um": _num(q.x_um), "y_um": _num(q.y_um),
            "status": q.status, "reason": q.reason or None,
        }
        entry.update(fits.get(q.qd_id, empty_fit))
        fit_fields = entry.pop("_fit_fields")
        entry.update(_NO_G2)
        entry.update(g2.get(q.qd_id, {}))
        if q.qd_id in stored_flags:
            entry.update(stored_flags[q.qd_id])
        else:
            entry.update(_computed_flags(reader, entry, fit_fields))
        if reader.simulated:
            entry["truth"] = measured_truth.get(q.qd_id) or _truth_match(truth, q.x_um, q.y_um)
        qds.append(entry)
    add_trpl_lifetimes(reader, qds)  # beside the g² peak-train lifetime_ns
    summary_extra: dict[str, Any] = {
        "excluded": excluded_counts(q["flags"] for q in qds if q["status"] == "completed")}
    if reader.simulated:
        summary_extra["truth_agreement"] = truth_agreement(qds)
    return {
        "file": str(reader.path),
        "software_version": reader.software_version,
        "created": reader.created,
        "sample": reader.sample or None,
        "simulated": reader.simulated,
        "being_written": reader.writer_alive(),
        "resume_count": reader.resume_count,
        "n_rows": {t: reader.n_rows(t) for t in reader.tables if reader.n_rows(t)},
        "runs": runs,
        "qds": qds,
        **summary_extra,
    }
