"""g² from data files: PTU T2 tag files correlated in bounded memory.

The defaults and bounds of ``micropl analyze g2`` and ``micropl replay`` on a
PTU file: the correlation bin and window, the rate and window a file's header
gives, and the block-by-block cross-correlation that keeps memory and time
bounded for any file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from micropl.analysis.g2 import MAX_ANALYSIS_BINS, G2Accumulator, pulsed_window_ps
from micropl.analysis.tags import (
    MAX_CHANNEL_DISORDER_PS,
    PTU_MAGIC,
    PtuHeader,
    iter_ptu_t2,
    read_ptu_header,
)
from micropl.errors import AnalysisInputError, FileFormatError

__all__ = ["DEFAULT_BIN_PS", "DEFAULT_WINDOW_PS", "MAX_PAIRS", "MAX_TAIL_TAGS",
           "check_replay_rate", "correlate_ptu_stream", "is_ptu_file",
           "pulsed_rate_and_window", "read_ptu_tags", "tag_file_kind"]

#: Correlation bin width of tag files when none is given, ps.
DEFAULT_BIN_PS = 64
DEFAULT_WINDOW_PS = 600_000  # used when neither the rate nor --window-ps is known
#: Most coincidence pairs counted from a PTU file (about 5 s of correlation): denser
#: tags (a corrupt resolution puts them on one time) are refused, not correlated for hours.
MAX_PAIRS = 2_000_000_000
#: Most tags of one channel the correlator keeps for later pairs (32 MB): they lie
#: within the window plus 1 ms of ordering slack, so more means over 1e9 counts/s
#: (tags piled up on one time), not light.
MAX_TAIL_TAGS = 4_000_000


def is_ptu_file(path: Path) -> bool:
    """Whether ``path`` is read as a PTU file (its magic bytes, or the ``.ptu`` suffix).

    Raises
    ------
    FileFormatError
        When ``path`` is a directory.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.g2_files import is_ptu_file
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.bin"
    >>> n = write_ptu_t2(path, [1000, 2000], [1, 2], sync_rate_hz=80e6)
    >>> text = Path(folder.name) / "g2.txt"
    >>> _ = text.write_text("0 1\\n")
    >>> is_ptu_file(path), is_ptu_file(text)
    (True, False)
    >>> folder.cleanup()
    """
    try:
        with open(path, "rb") as fh:
            magic = fh.read(8)
    except IsADirectoryError as exc:
        raise FileFormatError(f"{path}: is a directory") from exc
    return magic == PTU_MAGIC or path.suffix.lower() == ".ptu"


def read_ptu_tags(path: Path):
    """The tags of a PTU file in memory, T2 or T3 (absolute times, ps), as
    :class:`~micropl.analysis.tags.TagData` (what replay serves).

    Raises
    ------
    FileFormatError
        As :func:`~micropl.analysis.tags.read_ptu_t2` or
        :func:`~micropl.analysis.formats.t3.read_ptu_t3_tags` (one line).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.g2_files import read_ptu_tags
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(path, [1000, 2500, 7000], [1, 2, 1], sync_rate_hz=80e6)
    >>> tags = read_ptu_tags(path)
    >>> tags.t_ps.tolist(), tags.channel.tolist(), tags.sync_rate_hz
    ([1000, 2500, 7000], [1, 2, 1], 80000000.0)
    >>> folder.cleanup()
    """
    from micropl.analysis.tags import read_ptu_t2
    from micropl.ptu import T3_RECORD_TYPES

    if read_ptu_header(path, allow_t3=True).record_type in T3_RECORD_TYPES:
        from micropl.analysis.formats.t3 import read_ptu_t3_tags

        return read_ptu_t3_tags(path)
    return read_ptu_t2(path)


def tag_file_kind(path: Path) -> str:
    """How ``micropl analyze g2`` reads ``path``, by its content.

    Returns
    -------
    {"ptu-t2", "ptu-t3", "ttbin", "histogram"}
        PTU files by their record type; ``.ttbin`` by its suffix (Swabian's format
        has no published magic); anything else is a histogram (PHU or text).

    Raises
    ------
    FileFormatError
        A directory; a corrupt PTU header; a ``.ttbin`` file without the ``swabian``
        extra; a legacy PicoQuant file (one line naming the converter).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.g2_files import tag_file_kind
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.errors import FileFormatError
    >>> folder = tempfile.TemporaryDirectory()
    >>> ptu = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(ptu, [1000, 2500], [1, 2], sync_rate_hz=80e6)
    >>> text = Path(folder.name) / "g2.txt"
    >>> _ = text.write_text("-1 10\\n0 2\\n1 11\\n")
    >>> tag_file_kind(ptu), tag_file_kind(text)
    ('ptu-t2', 'histogram')
    >>> legacy = Path(folder.name) / "old.pt3"
    >>> _ = legacy.write_bytes(b"PicoHarp 300" + bytes(52))
    >>> try:
    ...     tag_file_kind(legacy)
    ... except FileFormatError as exc:
    ...     print(str(exc).split(" in the ")[0].replace(folder.name, "DIR"))
    DIR/old.pt3: legacy PicoHarp 300 file (.pt3, T3 time tags)
    >>> folder.cleanup()
    """
    from micropl.analysis.formats.legacy import refuse_known_binary
    from micropl.analysis.formats.ttbin import require_swabian
    from micropl.ptu import T3_RECORD_TYPES

    if is_ptu_file(path):
        header = read_ptu_header(path, allow_t3=True)
        return "ptu-t3" if header.record_type in T3_RECORD_TYPES else "ptu-t2"
    if path.suffix.lower() == ".ttbin":
        require_swabian(path)
        return "ttbin"
    with open(path, "rb") as fh:
        refuse_known_binary(path, fh.read(64), what="histogram")
    return "histogram"


def pulsed_rate_and_window(path: Path, header: PtuHeader, rep_rate_hz: float | None,
                           n_side: int, bin_ps: int, window_ps: int | None = None
                           ) -> tuple[float | None, str, int]:
    """Repetition rate, where it came from, and the correlation half-window of a PTU file.

    Parameters
    ----------
    path : Path
        The file (named in errors).
    header : PtuHeader
        Its header (:func:`~micropl.analysis.tags.read_ptu_header`).
    rep_rate_hz : float or None
        ``--rep-rate``, Hz; None: the header's sync rate, else detected from the data.
    n_side : int
        Side peaks per side.
    bin_ps : int
        Bin width, ps.
    window_ps : int or None
        ``--window-ps``; None: ``n_side + 1`` periods (or :data:`DEFAULT_WINDOW_PS`).

    Returns
    -------
    rate_hz : float or None
    source : {"user", "header", "detected"}
    window_ps : int

    Raises
    ------
    AnalysisInputError
        One line naming the file and the value when the window would need more than
        :data:`~micropl.analysis.g2.MAX_ANALYSIS_BINS` bins, or the period fewer than
        four bins (so memory and time stay bounded for any header).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from micropl.analysis.g2_files import pulsed_rate_and_window
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import read_ptu_header
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> n = write_ptu_t2(path, [1000, 2000], [1, 2], sync_rate_hz=80e6)
    >>> pulsed_rate_and_window(path, read_ptu_header(path), None, 5, 64)
    (80000000.0, 'header', 75008)
    >>> pulsed_rate_and_window(path, read_ptu_header(path), 40e6, 2, 100)
    (40000000.0, 'user', 75000)
    >>> folder.cleanup()
    """
    if bin_ps <= 0:
        raise AnalysisInputError(f"--bin-ps must be > 0, got {bin_ps}")
    if rep_rate_hz is not None:
        rate, source, label = float(rep_rate_hz), "user", "--rep-rate"
    elif header.sync_rate_hz > 0:
        rate, source, label = header.sync_rate_hz, "header", "sync rate in the header"
    else:
        rate, source, label = None, "detected", ""
    if window_ps is None and rate is not None:
        try:
            window_ps = pulsed_window_ps(rate, n_side, bin_ps)
        except AnalysisInputError as exc:
            raise AnalysisInputError(
                f"{path}: {label}: {exc}; give --bin-ps, --window-ps or --rep-rate") from None
    elif window_ps is None:
        window_ps = DEFAULT_WINDOW_PS
    if window_ps <= 0:
        raise AnalysisInputError(f"--window-ps must be > 0, got {window_ps}")
    n_bins = -(-2 * int(window_ps) // int(bin_ps))
    if n_bins > MAX_ANALYSIS_BINS:
        raise AnalysisInputError(
            f"{path}: a ±{window_ps} ps window in {bin_ps} ps bins needs {n_bins} bins "
            f"(max {MAX_ANALYSIS_BINS}); give a larger --bin-ps or a smaller --window-ps")
    return rate, source, int(window_ps)


def check_replay_rate(path: Path, rep_rate_hz: float | None, n_side: int, bin_ps: int,
                      channels: tuple[int, int] | None = None) -> None:
    """Refuse, before a replay starts, a PTU file whose g² would not stay bounded.

    The file is correlated once as the replay's live analysis will (same window, in
    bounded memory), so a rate that gives an unbounded window, a missing channel or
    implausibly dense tags end here with one line instead of in the replay.

    A T3 file is correlated on its photons' absolute times (its sync rate is
    ``1 / MeasDesc_GlobalResolution``).

    Raises
    ------
    AnalysisInputError
        No sync rate in a T2 header and no ``--rep-rate``; as
        :func:`pulsed_rate_and_window` and :func:`correlate_ptu_stream` (one line
        naming the file).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from micropl.analysis.g2_files import check_replay_rate
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.errors import AnalysisInputError
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> t = np.arange(0, 1000) * 12_500
    >>> n = write_ptu_t2(path, np.sort(np.concatenate([t, t + 300])), [1, 2] * 1000, sync_rate_hz=80e6)
    >>> check_replay_rate(path, None, 2, 100)                         # fine: returns None
    >>> try:
    ...     check_replay_rate(path, None, 2, 100, channels=(1, 3))
    ... except AnalysisInputError as exc:
    ...     print(str(exc).replace(str(path), "tags.ptu"))
    channel 3 has no tags in tags.ptu; channels present: 1, 2
    >>> folder.cleanup()
    """
    from micropl.ptu import T3_RECORD_TYPES

    header = read_ptu_header(path, allow_t3=True)
    ch_a, ch_b = channels if channels is not None else (1, 2)
    if header.record_type in T3_RECORD_TYPES:
        from micropl.analysis.formats.t3 import correlate_t3_stream, read_t3_header

        header, timing = read_t3_header(path)
        rate = rep_rate_hz if rep_rate_hz is not None else timing.sync_rate_hz
        _, _, window_ps = pulsed_rate_and_window(path, header, rate, n_side, bin_ps)
        acc, _, _ = correlate_t3_stream(header, timing, int(ch_a), int(ch_b), bin_ps,
                                        window_ps, max_pairs=MAX_PAIRS, max_tail=MAX_TAIL_TAGS)
    else:
        if rep_rate_hz is None and not header.sync_rate_hz > 0:
            raise AnalysisInputError(
                f"{path}: the PTU header has no sync rate; give --rep-rate HZ")
        _, _, window_ps = pulsed_rate_and_window(path, header, rep_rate_hz, n_side, bin_ps)
        acc, _, _ = correlate_ptu_stream(path, header, int(ch_a), int(ch_b), bin_ps,
                                         window_ps)
    if acc.counts.sum() == 0:
        raise AnalysisInputError(
            f"{path}: no coincidences between channels {ch_a} and {ch_b} within ±{window_ps} ps")


def correlate_ptu_stream(path: Path, header: PtuHeader, ch_a: int, ch_b: int, bin_ps: int,
                         window_ps: int) -> tuple[G2Accumulator, np.ndarray, int]:
    """Cross-correlate two channels of a PTU file block by block (bounded memory).

    Parameters
    ----------
    path : Path
        The file (named in errors).
    header : PtuHeader
        Its header.
    ch_a, ch_b : int
        Start and stop channels.
    bin_ps, window_ps : int
        Bin width and half-window, ps.

    Returns
    -------
    acc : G2Accumulator
        The histogram and the tag counts.
    per_channel : ndarray of int64, shape (256,)
        Tags per channel.
    end_units : int
        Time of the last record, in resolution units.

    Raises
    ------
    AnalysisInputError
        A channel without tags; more than :data:`MAX_PAIRS` pairs or
        :data:`MAX_TAIL_TAGS` retained tags; records out of
        order (as :func:`~micropl.analysis.tags.iter_ptu_t2`). One line naming the file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from micropl.analysis.g2_files import correlate_ptu_stream
    >>> from micropl.analysis.ptu_write import write_ptu_t2
    >>> from micropl.analysis.tags import read_ptu_header
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = Path(folder.name) / "tags.ptu"
    >>> t = np.arange(0, 100) * 10_000
    >>> n = write_ptu_t2(path, np.sort(np.concatenate([t, t + 300])), [1, 2] * 100, sync_rate_hz=80e6)
    >>> acc, _, n_tags = correlate_ptu_stream(path, read_ptu_header(path), 1, 2, 100, 1000)
    >>> int(acc.counts.sum()), float(acc.tau_ps[np.argmax(acc.counts)])
    (100, 350.0)
    >>> folder.cleanup()
    """
    acc = G2Accumulator(bin_ps, window_ps, channel_a=ch_a, channel_b=ch_b,
                        max_pairs=MAX_PAIRS, max_tail=MAX_TAIL_TAGS)
    per_channel = np.zeros(256, dtype=np.int64)
    end_units = 0
    for dec in iter_ptu_t2(header):
        end_units = dec.end_units
        if not dec.t_ps.size:
            continue
        per_channel += np.bincount(dec.channel, minlength=256)
        # iter_ptu_t2 refuses tags more than MAX_CHANNEL_DISORDER_PS before the latest
        # one; the promise lets the correlator drop old tags of a silent channel's peer.
        promise = int(dec.t_ps.max()) - MAX_CHANNEL_DISORDER_PS
        try:
            acc.add_arrays(dec.t_ps[dec.channel == ch_a], dec.t_ps[dec.channel == ch_b],
                           t_stop_ps=promise)
        except AnalysisInputError as exc:
            raise FileFormatError(f"{path}: {exc}") from None
    present = ", ".join(str(c) for c in np.flatnonzero(per_channel)) or "none"
    for ch in (ch_a, ch_b):
        if not 0 <= ch < 256 or per_channel[ch] == 0:
            raise AnalysisInputError(
                f"channel {ch} has no tags in {path}; channels present: {present}")
    return acc, per_channel, end_units
