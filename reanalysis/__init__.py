"""Re-analysis of stored sessions on Dask: re-fit every QD, re-judge it, one table.

* :mod:`~micropl.reanalysis.settings` — the fit settings and selection rules;
* :mod:`~micropl.reanalysis.tasks` — one task per chunk of one session's QDs;
* :mod:`~micropl.reanalysis.schedule` — running the tasks on Dask (local or a cluster);
* :mod:`~micropl.reanalysis.table` — the results table (Parquet or CSV);
* :mod:`~micropl.reanalysis.stats` and :mod:`~micropl.reanalysis.report` — the
  statistics over the table and their figure;
* :mod:`~micropl.reanalysis.labels` — the sample label of a session.
"""

from micropl.reanalysis.settings import ReanalysisSettings

__all__ = ["ReanalysisSettings"]
