"""g² histogram files of every layout, picked by content: PHU, text rows, text columns.

:func:`read_histogram` returns the histogram (as
:func:`~micropl.analysis.tags.read_histogram_file`) and what was read: ``format``
(``"phu"``, ``"text-rows"`` or ``"text"``), ``n_points`` (bins) and, for PHU files,
the curve, bin width, ``exposure_s`` (acquisition time) and the sync-input rate.
"""

from __future__ import annotations

from pathlib import Path

from micropl.analysis.formats.legacy import refuse_known_binary
from micropl.analysis.formats.phu import PHU_MAGIC, read_phu
from micropl.analysis.formats.rows import looks_like_rows, read_rows
from micropl.errors import AnalysisInputError, FileFormatError

__all__ = ["LAYOUTS", "histogram_format", "read_histogram"]

#: ``--layout`` choices of a text histogram.
LAYOUTS = ("auto", "columns", "rows")


def histogram_format(path: Path, layout: str = "auto") -> str:
    """``"phu"``, ``"text-rows"`` or ``"text"``: how :func:`read_histogram` reads ``path``.

    Raises
    ------
    FileFormatError
        No such file, a directory, or a known format that is no histogram micropl reads
        (legacy PicoQuant files: one line naming the converter).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.histograms import histogram_format
    >>> folder = tempfile.TemporaryDirectory()
    >>> rows = Path(folder.name) / "rows.csv"
    >>> _ = rows.write_text("tau_ns,-1,0,1,2\\ncounts,10,2,11,9\\n")
    >>> columns = Path(folder.name) / "columns.txt"
    >>> _ = columns.write_text("-1 10\\n0 2\\n1 11\\n2 9\\n")
    >>> histogram_format(rows), histogram_format(columns), histogram_format(rows, "columns")
    ('text-rows', 'text', 'text')
    >>> folder.cleanup()
    """
    if layout not in LAYOUTS:
        raise AnalysisInputError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file" if not path.exists()
                              else f"{path}: not a regular file")
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(PHU_MAGIC):
        return "phu"
    refuse_known_binary(path, head, what="histogram")
    if layout == "rows" or (layout == "auto" and b"\0" not in head and looks_like_rows(path)):
        return "text-rows"
    return "text"


def read_histogram(path: str | Path, *, delay_unit: str | None = None, layout: str = "auto",
                   curve: int | None = None):
    """Read a histogram file of any supported layout.

    Parameters
    ----------
    path : str or Path
        PHU file, or text: columns (delay, counts[, snapshots]) or rows.
    delay_unit : {"ns", "ps"}, optional
        Delay unit of a text file (default: its header, else inferred).
    layout : {"auto", "columns", "rows"}
        Text layout; ``auto`` detects rows (:func:`~.rows.looks_like_rows`).
    curve : int, optional
        Curve of a PHU file with several.

    Returns
    -------
    hist : HistogramData
        Delays (ps) and counts.
    info : dict
        ``format``, ``n_points`` and, for PHU, ``curve``, ``n_curves``, ``bin_ps``,
        ``exposure_s``, ``sync_rate_hz``.

    Raises
    ------
    FileFormatError
        As the format's reader (one line naming the file).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.histograms import read_histogram
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "g2.txt"
    >>> _ = path.write_text("# tau_ns counts\\n-1 10\\n0 2\\n1 11\\n2 9\\n")
    >>> hist, info = read_histogram(path, delay_unit="ns")
    >>> hist.tau_ps.tolist(), hist.counts.tolist()
    ([-1000.0, 0.0, 1000.0, 2000.0], [10.0, 2.0, 11.0, 9.0])
    >>> info
    {'format': 'text', 'exposure_s': None, 'n_points': 4}
    >>> folder.cleanup()
    """
    from micropl.analysis.tags import HistogramData, read_histogram_file

    p = Path(path)
    fmt = histogram_format(p, layout)
    if fmt == "phu":
        c = read_phu(p, curve)
        hist = HistogramData(tau_ps=c.tau_ps, counts=c.counts, delay_unit="ps",
                             unit_source="header", n_snapshots=1, path=str(p))
        info = {"format": "phu", "curve": c.curve, "n_curves": c.n_curves,
                "bin_ps": c.bin_ps, "exposure_s": c.acquisition_time_s,
                "sync_rate_hz": c.sync_rate_hz}
    elif fmt == "text-rows":
        hist = read_rows(p, delay_unit)
        info = {"format": "text-rows", "exposure_s": None}
    else:
        hist = read_histogram_file(p, delay_unit=delay_unit)
        info = {"format": "text", "exposure_s": None}
    if curve is not None and fmt != "phu":
        raise AnalysisInputError(f"{p}: --curve is for PHU files with several curves")
    info["n_points"] = int(hist.tau_ps.size)
    return hist, info
