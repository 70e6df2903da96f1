"""The records that flow between layers (a leaf: it imports nothing of micropl but itself).

* :mod:`~micropl.records.data`: what instruments produce (``Frame``, ``Spectrum``,
  ``TagChunk``, ``MapLine``, ``Grating``);
* :mod:`~micropl.records.documents`: the run documents (``RunStart``, ``RunStop``,
  ``QDTarget``, ``QDStatus``...) and the ``Tagged`` envelope.
"""

from micropl.records.data import Frame, Grating, MapLine, ReadMode, Spectrum, TagChunk
from micropl.records.documents import (
    NO_ID,
    QD_STATUSES,
    RUN_STATUSES,
    DecayHistogram,
    G2Histogram,
    InstrumentSnapshot,
    PowerSeriesData,
    QDFlags,
    QDStatus,
    QDTarget,
    QDTruth,
    RefocusResult,
    RunStart,
    RunStop,
    Tagged,
)

__all__ = ["ReadMode", "Grating", "Frame", "Spectrum", "TagChunk", "MapLine", "NO_ID",
           "RUN_STATUSES", "QD_STATUSES", "RunStart", "RunStop", "QDTarget", "QDStatus", "QDFlags",
           "QDTruth", "InstrumentSnapshot", "G2Histogram", "RefocusResult", "PowerSeriesData",
           "DecayHistogram", "Tagged"]
