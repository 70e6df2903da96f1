"""Browsing a session file read-only: stored records fed through the display buffer."""

from __future__ import annotations

from micropl.acquisition.storage import SessionReader, StoredRecord
from micropl.gui.bridge import DisplayBuffer, QDCurves, Source
from micropl.records import Tagged

__all__ = ["load_session", "qd_curves"]

#: (table, kind filter) of what the panels show, bookkeeping first.
_TABLES: tuple[tuple[str, str | None], ...] = (
    ("run_start", None), ("run_stop", None), ("qd_target", None), ("qd_status", None),
    ("map_line", None), ("refocus", None), ("spectrum", "accumulated"),
    ("spectrum_fit", "accumulated"), ("g2_histogram", "final"), ("g2_result", "final"),
    ("peak_train_fit", None), ("point_of_interest", None),
)
_OWN_IDS = {"run_start", "run_stop", "qd_target", "qd_status"}


def _stored(reader: SessionReader, table: str, kind: str | None, **ids: int) -> list[StoredRecord]:
    if table not in reader.tables:
        return []
    return reader.records(table, kind=kind, **ids)


def _envelope(item: StoredRecord) -> object:
    if item.table in _OWN_IDS:
        return item.record
    return Tagged(item.record, run_id=item.run_id, qd_id=item.qd_id, kind=item.kind)


def load_session(reader: SessionReader, buffer: DisplayBuffer) -> int:
    """Feed every record the panels show into ``buffer``, in the order they were stored.

    Returns
    -------
    int
        Number of records fed.
    """
    items: list[StoredRecord] = []
    for table, kind in _TABLES:
        items.extend(_stored(reader, table, kind))
    items.sort(key=lambda r: r.seq)
    for item in items:
        buffer.handle(_envelope(item))
    return len(items)


def qd_curves(reader: SessionReader, run_id: int, qd_id: int) -> QDCurves:
    """The newest accumulated spectrum, fit, final g² histogram and result of a QD."""
    def last(table: str, kind: str | None) -> object | None:
        found = _stored(reader, table, kind, run_id=run_id, qd_id=qd_id)
        return found[-1].record if found else None

    target = last("qd_target", None)
    x, y = (float(target.x_um), float(target.y_um)) if target is not None else (float("nan"),) * 2
    return QDCurves(source=Source(run_id, qd_id, x, y),
                    spectrum=last("spectrum", "accumulated"),
                    fit=last("spectrum_fit", "accumulated"),
                    histogram=last("g2_histogram", "final"), g2=last("g2_result", "final"),
                    lifetime=last("peak_train_fit", None))
