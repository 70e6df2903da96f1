"""Statistics over a results table, by group: the paper's numbers with their errors.

For each group (sample label, batch or session):

* the survey statistics of :func:`~micropl.analysis.statistics.survey_statistics` over
  its measured QDs (FWHM histogram, mean FWHM with its standard error, FWHM against peak
  energy with the fitted slope and its 1σ error, the g²(0) distribution); QDs flagged
  ``multiple_emitters`` are left out and counted, failed QDs are counted;
* core-only against core/shell (where the table records it): mean FWHM and mean
  background-corrected g²(0) of each, with standard errors, their difference with its
  error and Welch's t-test p-value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from micropl.analysis.statistics import SurveyStatistics, survey_statistics
from micropl.errors import AnalysisInputError
from micropl.reanalysis.settings import STATUS_FAILED, STATUSES

__all__ = ["GROUP_KEYS", "Comparison", "GroupStatistics", "MeanDifference", "compare_means",
           "group_statistics", "statistics_json"]

#: ``--by`` choices → table column (``label`` is the sample label ``micropl label`` sets).
GROUP_KEYS: dict[str, str] = {"sample": "sample", "label": "sample", "batch": "batch",
                              "session": "session"}
#: Group name of rows without a value in the grouping column.
NO_VALUE = "(none)"


@dataclass(frozen=True)
class MeanDifference:
    """Two means with standard errors, their difference and Welch's t-test.

    ``n_a``/``n_b`` values each; ``mean``/``sem`` nan with fewer than 1/2 values.
    """

    n_a: int
    mean_a: float
    sem_a: float
    n_b: int
    mean_b: float
    sem_b: float
    difference: float
    difference_err: float
    p_value: float


@dataclass(frozen=True)
class Comparison:
    """Core-only (a) against core/shell (b) QDs of a group: FWHM (meV) and g²(0)."""

    fwhm_mev: MeanDifference
    g2_0_bgcorr: MeanDifference


@dataclass(frozen=True)
class GroupStatistics:
    """The statistics of one group of rows.

    Attributes
    ----------
    name : str
        The group's value (:data:`NO_VALUE` when the rows have none).
    n_rows : int
        QDs in the group.
    status_counts : dict of str to int
        QDs per status (``single``, ``multiple_emitters``, ``poor_fit``, ``failed``).
    survey : SurveyStatistics or None
        None when no QD of the group has a valid spectrum fit (see ``problem``).
    comparison : Comparison or None
        None when the group has no core/shell record.
    problem : str or None
        Why ``survey`` is None.
    """

    name: str
    n_rows: int
    status_counts: dict[str, int]
    survey: SurveyStatistics | None
    comparison: Comparison | None
    problem: str | None
    rows: tuple[dict[str, Any], ...]


def _values(rows: Sequence[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in rows], float)


def _mean_sem(x: np.ndarray) -> tuple[int, float, float]:
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(np.mean(x)) if n else math.nan
    sem = float(np.std(x, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return n, mean, sem


def compare_means(a, b) -> MeanDifference:
    """Means of ``a`` and ``b`` (non-finite values dropped), ``b − a`` and Welch's p-value.

    Examples
    --------
    >>> d = compare_means([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    >>> d.difference, round(d.difference_err, 3)
    (1.0, 0.816)
    """
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    na, ma, sa = _mean_sem(a)
    nb, mb, sb = _mean_sem(b)
    p = math.nan
    if na > 1 and nb > 1 and (sa > 0 or sb > 0):  # no test between two constant samples
        p = float(sps.ttest_ind(a[np.isfinite(a)], b[np.isfinite(b)], equal_var=False).pvalue)
    return MeanDifference(na, ma, sa, nb, mb, sb, mb - ma, math.hypot(sa, sb), p)


def _measured(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") != STATUS_FAILED]


def _comparison(rows: Sequence[dict[str, Any]]) -> Comparison | None:
    """Core-only against core/shell among the group's QDs kept in the statistics."""
    kept = [r for r in _measured(rows) if "multiple_emitters" not in _flags(r)]
    core = [r for r in kept if r.get("core_shell") is False]
    shell = [r for r in kept if r.get("core_shell") is True]
    if not core and not shell:
        return None
    return Comparison(compare_means(_values(core, "fwhm_mev"), _values(shell, "fwhm_mev")),
                      compare_means(_values(core, "g2_0_bgcorr"),
                                    _values(shell, "g2_0_bgcorr")))


def _flags(row: dict[str, Any]) -> list[str]:
    text = row.get("flags") or ""
    return [f for f in str(text).split(",") if f]


def group_statistics(rows: Sequence[dict[str, Any]], by: str = "sample", *,
                     fwhm_bin_mev: float = 5.0) -> list[GroupStatistics]:
    """The statistics of each group of ``rows`` (a results table), by group name.

    Parameters
    ----------
    rows : sequence of dict
        Rows of :func:`~micropl.reanalysis.table.read_table`.
    by : {"sample", "label", "batch", "session"}
        Grouping column (``label``: the sample label, as ``sample``).
    fwhm_bin_mev : float
        FWHM histogram bin width, meV.

    Raises
    ------
    AnalysisInputError
        For an unknown ``by``, or an empty table.
    """
    if by not in GROUP_KEYS:
        raise AnalysisInputError(f"--by {by!r}: give one of {', '.join(GROUP_KEYS)}")
    if not rows:
        raise AnalysisInputError("the results table has no rows")
    column = GROUP_KEYS[by]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        value = row.get(column)
        name = NO_VALUE if value is None or value == "" else str(value)
        groups.setdefault(name, []).append(row)
    return [_group(name, groups[name], fwhm_bin_mev) for name in sorted(groups)]


def _group(name: str, rows: list[dict[str, Any]], fwhm_bin_mev: float) -> GroupStatistics:
    counts = {s: 0 for s in STATUSES}
    for r in rows:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    measured = _measured(rows)
    survey, problem = None, None
    if not measured:
        problem = f"all {len(rows)} QDs failed"
    else:
        try:
            survey = survey_statistics(
                _values(measured, "peak_energy_ev"), _values(measured, "fwhm_mev"),
                _values(measured, "peak_energy_err_ev"), _values(measured, "fwhm_err_mev"),
                _values(measured, "g2_0_bgcorr"), _values(measured, "g2_0_bgcorr_err"),
                fwhm_bin_mev=fwhm_bin_mev, flags=[_flags(r) for r in measured])
        except AnalysisInputError as exc:
            problem = str(exc)
    return GroupStatistics(name, len(rows), counts, survey, _comparison(rows), problem,
                           tuple(rows))


def _finite(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def statistics_json(groups: Sequence[GroupStatistics], by: str) -> dict[str, Any]:
    """The statistics as JSON-ready values (NaN as None)."""
    out = []
    for g in groups:
        entry: dict[str, Any] = {"name": g.name, "n_qds": g.n_rows,
                                 "status_counts": g.status_counts, "problem": g.problem}
        s = g.survey
        if s is not None:
            line = s.fwhm_vs_energy
            entry.update({
                "n_valid": s.n_spectra_valid, "excluded": s.excluded,
                "fwhm_mean_mev": _finite(s.fwhm_mean_mev),
                "fwhm_mean_err_mev": _finite(s.fwhm_mean_err_mev),
                "fwhm_std_mev": _finite(s.fwhm_std_mev),
                "fwhm_median_mev": _finite(s.fwhm_median_mev),
                "energy_mean_ev": _finite(s.energy_mean_ev),
                "fwhm_histogram": {"edges_mev": s.fwhm_edges_mev.tolist(),
                                   "counts": s.fwhm_counts.tolist()},
                "slope_mev_per_ev": None if line is None else _finite(line.slope),
                "slope_err_mev_per_ev": None if line is None else _finite(line.slope_err),
                "slope_n": None if line is None else line.n,
                "pearson_r": None if line is None else _finite(line.pearson_r),
                "sigma_intrinsic_mev": None if line is None else _finite(line.sigma_intrinsic),
            })
        if g.comparison is not None:
            entry["core_only_vs_core_shell"] = {
                name: {k: _finite(v) for k, v in vars(d).items()}
                for name, d in (("fwhm_mev", g.comparison.fwhm_mev),
                                ("g2_0_bgcorr", g.comparison.g2_0_bgcorr))}
        out.append(entry)
    return {"by": by, "groups": out}
