"""Known file formats micropl does not read, refused with one line naming a way on.

* Legacy PicoQuant files (before PTU/PHU): HydraHarp ``.ht2``/``.ht3``/``.hhd``,
  PicoHarp ``.pt2``/``.pt3``/``.phd``, TimeHarp ``.t3r``/``.thd``. They start with
  the instrument's name in ASCII (``HydraHarp``, ``PicoHarp 300``, ``TimeHarp``).
  PicoQuant's acquisition software opens them and saves them as PTU (time tags) or
  PHU (histograms), which micropl reads.
* Swabian Instruments ``.ttbin``: read through the vendor's ``TimeTagger`` module
  (``pip install micropl[swabian]`` with the Time Tagger software); without it,
  one line naming the missing extra.
* PicoQuant PTU and PHU given to the wrong command: the line names the command.
"""

from __future__ import annotations

from pathlib import Path

from micropl.errors import FileFormatError

__all__ = ["LEGACY_PICOQUANT", "refuse_known_binary", "swabian_available"]

#: Leading bytes of the legacy PicoQuant formats → (instrument, what they hold).
LEGACY_PICOQUANT: dict[bytes, str] = {
    b"HydraHarp": "HydraHarp",
    b"PicoHarp 300": "PicoHarp 300",
    b"PicoHarp": "PicoHarp",
    b"TimeHarp": "TimeHarp",
}
_TAG_SUFFIXES = {".ht2": "T2 time tags", ".ht3": "T3 time tags", ".pt2": "T2 time tags",
                 ".pt3": "T3 time tags", ".t3r": "T3 time tags", ".hhd": "histograms",
                 ".phd": "histograms", ".thd": "histograms"}


def legacy_picoquant(path: Path, head: bytes) -> str | None:
    """The refusal line for a legacy PicoQuant file, None for any other file."""
    for magic, instrument in LEGACY_PICOQUANT.items():
        if head.startswith(magic):
            holds = _TAG_SUFFIXES.get(path.suffix.lower(), "data")
            target = "PHU" if holds == "histograms" else "PTU"
            return (f"{path}: legacy {instrument} file ({path.suffix or 'no suffix'}, "
                    f"{holds}) in the pre-PTU format micropl does not read; open it in "
                    f"PicoQuant's {instrument} software and save it as {target}")
    return None


def swabian_available() -> bool:
    """Whether the Swabian ``TimeTagger`` module (the ``swabian`` extra) imports.

    Examples
    --------
    >>> from micropl.analysis.formats.legacy import swabian_available
    >>> isinstance(swabian_available(), bool)  # False unless the extra is installed
    True
    """
    try:
        import TimeTagger  # noqa: F401
    except ImportError:
        return False
    return True


def refuse_known_binary(path: Path, head: bytes, *, what: str) -> None:
    """Refuse a file of a known format that is not a ``what`` file micropl reads.

    Parameters
    ----------
    path : Path
        The file.
    head : bytes
        Its first bytes (at least 16).
    what : {"spectrum", "histogram"}
        What the caller reads.

    Raises
    ------
    FileFormatError
        A legacy PicoQuant file; a PTU file given as a spectrum; a PHU file given as a
        spectrum; a ``.ttbin`` file given as a spectrum or histogram.

    Examples
    --------
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.legacy import refuse_known_binary
    >>> refuse_known_binary(Path("g2.txt"), b"tau_ns counts\\n", what="histogram")  # not refused
    >>> refuse_known_binary(Path("run.ht3"), b"HydraHarp" + bytes(7), what="histogram")
    Traceback (most recent call last):
    ...
    micropl.errors.FileFormatError: run.ht3: legacy HydraHarp file (.ht3, T3 time tags) in the pre-PTU format micropl does not read; open it in PicoQuant's HydraHarp software and save it as PTU
    """
    line = legacy_picoquant(path, head)
    if line is not None:
        raise FileFormatError(line)
    if what == "spectrum" and head.startswith(b"PQTTTR"):
        raise FileFormatError(f"{path}: PicoQuant PTU time-tag file, not a spectrum; "
                              "analyse it with `micropl analyze g2`")
    if what == "spectrum" and head.startswith(b"PQHISTO"):
        raise FileFormatError(f"{path}: PicoQuant PHU histogram file, not a spectrum; "
                              "analyse it with `micropl analyze g2`")
    if path.suffix.lower() == ".ttbin" and what == "spectrum":
        raise FileFormatError(f"{path}: Swabian .ttbin time-tag file, not a spectrum; "
                              "analyse it with `micropl analyze g2`")
