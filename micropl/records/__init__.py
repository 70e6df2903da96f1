"""The records that flow between layers (a leaf: it imports nothing of micropl but itself).

* :mod:`~micropl.records.data`: what instruments produce (``Frame``, ``Spectrum``,
  ``TagChunk``, ``MapLine``, ``Grating``);
* :mod:`~micropl.records.scans`: how a map was timed (``MapTiming``) and the spectral
  cube of a hyperspectral map (``SpectralCube``);
* :mod:`~micropl.records.points`: points of interest marked by hand;
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
from micropl.records.points import POI_KIND, PointOfInterest, current_points
from micropl.records.scans import TIMINGS, MapTiming, SpectralCube

__all__ = ["MapTiming", "SpectralCube", "TIMINGS", "PointOfInterest", "current_points",
           "POI_KIND", "ReadMode", "Grating", "Frame", "Spectrum", "TagChunk", "MapLine", "NO_ID",
           "RUN_STATUSES", "QD_STATUSES", "RunStart", "RunStop", "QDTarget", "QDStatus", "QDFlags",
           "QDTruth", "InstrumentSnapshot", "G2Histogram", "RefocusResult", "PowerSeriesData",
           "DecayHistogram", "Tagged"]
