"""Swabian Instruments ``.ttbin`` time tags, read through the vendor's module.

The format is Swabian's own; its reader is ``TimeTagger.FileReader`` from the Time
Tagger software (``pip install micropl[swabian]``). Without it, one line names the
missing extra. Tags are read in blocks of :data:`TTBIN_BLOCK_EVENTS` and correlated
as PTU tags are.

Only records of event type 0 (time tags) are correlated; overflow and missed-event
records are counted and logged. The vendor module is not installed where micropl's
tests run: they check this path with a stand-in ``FileReader`` of the documented API
(``hasData``, ``getData``, ``getTimestamps``, ``getChannels``, ``getEventTypes``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from micropl.analysis.formats.legacy import swabian_available
from micropl.analysis.g2 import G2Accumulator
from micropl.errors import AnalysisInputError, FileFormatError

log = logging.getLogger(__name__)

__all__ = ["TTBIN_BLOCK_EVENTS", "correlate_ttbin", "require_swabian"]

#: Events read from a .ttbin file at a time.
TTBIN_BLOCK_EVENTS = 1 << 20


def require_swabian(path: Path) -> None:
    """Refuse a ``.ttbin`` file when the vendor module is missing (one line).

    Raises
    ------
    FileFormatError
        The ``TimeTagger`` module does not import.

    Examples
    --------
    >>> from pathlib import Path
    >>> from micropl.analysis.formats.legacy import swabian_available
    >>> from micropl.analysis.formats.ttbin import require_swabian
    >>> from micropl.errors import FileFormatError
    >>> try:
    ...     require_swabian(Path("run.ttbin"))
    ...     refused = None
    ... except FileFormatError as exc:
    ...     refused = str(exc)
    >>> (refused is None) == swabian_available()  # refused exactly when the extra is missing
    True
    >>> refused is None or "pip install 'micropl[swabian]'" in refused
    True
    """
    if not swabian_available():
        raise FileFormatError(
            f"{path}: Swabian .ttbin file; reading it needs the 'swabian' extra (the "
            "Time Tagger software's TimeTagger module): pip install 'micropl[swabian]', "
            "or export the tags from the Time Tagger software as text")


def correlate_ttbin(path: Path, ch_a: int, ch_b: int, bin_ps: int, window_ps: int
                    ) -> tuple[G2Accumulator, float]:
    """Cross-correlate two channels of a ``.ttbin`` file; the histogram and the span (s).

    Raises
    ------
    FileFormatError
        The vendor module is missing or cannot read the file; a channel has no tags.

    Examples
    --------
    A file that cannot be read is one line naming it; without the ``swabian`` extra
    the line names the extra, before the file is opened:

    >>> from pathlib import Path
    >>> from micropl.analysis.formats.legacy import swabian_available
    >>> from micropl.analysis.formats.ttbin import correlate_ttbin
    >>> from micropl.errors import FileFormatError
    >>> try:
    ...     correlate_ttbin(Path("missing.ttbin"), 1, 2, bin_ps=100, window_ps=50_000)
    ... except FileFormatError as exc:
    ...     message = str(exc)
    >>> message.startswith("missing.ttbin: ")
    True
    >>> swabian_available() or "the 'swabian' extra" in message
    True
    """
    from micropl.analysis.g2_files import MAX_PAIRS, MAX_TAIL_TAGS

    require_swabian(path)
    import TimeTagger

    try:
        reader = TimeTagger.FileReader(str(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise FileFormatError(f"{path}: the TimeTagger module cannot read it ({exc})") from None
    acc = G2Accumulator(bin_ps, window_ps, channel_a=ch_a, channel_b=ch_b,
                        max_pairs=MAX_PAIRS, max_tail=MAX_TAIL_TAGS)
    first = last = None
    n_other = 0
    while reader.hasData():
        buf = reader.getData(TTBIN_BLOCK_EVENTS)
        t = np.asarray(buf.getTimestamps(), dtype=np.int64)
        ch = np.asarray(buf.getChannels(), dtype=np.int64)
        kind = np.asarray(buf.getEventTypes()) if hasattr(buf, "getEventTypes") else None
        if not t.size:
            continue
        first = int(t[0]) if first is None else first
        last = int(t[-1])
        if kind is not None:  # 0: a time tag; else overflow begin/end or missed events
            n_other += int(np.count_nonzero(kind != 0))
            t, ch = t[kind == 0], ch[kind == 0]
        try:
            acc.add_arrays(t[ch == ch_a], t[ch == ch_b], t_stop_ps=last)
        except AnalysisInputError as exc:
            raise FileFormatError(f"{path}: {exc}") from None
    if n_other:
        log.warning("%s: %d overflow or missed-event records: tags are missing there, so "
                    "the rates are low; the g² ratio is unaffected", path, n_other)
    for ch, n in ((ch_a, acc.n_tags_a), (ch_b, acc.n_tags_b)):
        if n == 0:
            raise FileFormatError(f"{path}: channel {ch} has no tags")
    return acc, (last - first) * 1e-12 if first is not None else 0.0
