"""Points of interest: places on the sample marked, named and kept by hand.

A :class:`PointOfInterest` goes through the session's stream like any record,
so the session file stores it (table ``point_of_interest``); the newest record
of a name wins, and one with ``removed`` set takes the name off the list
(:func:`current_points`). The GUI marks, names, goes to and measures them (a
survey of these points, like the QDs a survey finds).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PointOfInterest", "current_points", "POI_KIND"]

#: Kind of the :class:`~micropl.records.Tagged` envelope of a point.
POI_KIND = "poi"


@dataclass(frozen=True)
class PointOfInterest:
    """A named place on the sample.

    Attributes
    ----------
    name : str
        Unique name on the list (e.g. ``"P1"``, ``"bright QD near the mark"``).
    x_um, y_um, z_um : float
        Scanner position, µm.
    note : str
        Free text.
    removed : bool
        True: this name is taken off the list.
    t_s : float
        Wall-clock time of the change, Unix seconds.
    """

    name: str
    x_um: float
    y_um: float
    z_um: float
    note: str = ""
    removed: bool = False
    t_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a point of interest needs a name")


def current_points(records: Iterable[PointOfInterest]) -> dict[str, PointOfInterest]:
    """The list that ``records`` (in stored order) leave: name → its newest point."""
    points: dict[str, PointOfInterest] = {}
    for point in records:
        if point.removed:
            points.pop(point.name, None)
        else:
            points[point.name] = point
    return points
