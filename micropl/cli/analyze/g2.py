"""``micropl analyze g2 FILE``: g²(0) of a time-tag file or of a histogram file.

The file is read by content: a PTU T2 file is cross-correlated (channel A start,
channel B stop) and analysed as a pulsed HBT histogram; a PTU T3 file too, on the
photons' absolute times (sync number × period + delay), and its delays after the sync
give the PL decay, fitted for ``lifetime_ns`` (:func:`~micropl.analysis.lifetime.fit_decay`);
a Swabian ``.ttbin`` file is correlated through the vendor module (the ``swabian``
extra); a PicoQuant ``.phu`` curve (``--curve K`` when there are several) or a text
file (columns: delay, counts...; or rows: FitMyData's delays row and counts row,
``--layout``) is read as a histogram. ``--json`` says what was read: ``format``
(``ptu-t2``, ``ptu-t3``, ``ttbin``, ``phu``, ``text``, ``text-rows``), ``n_points``
(histogram bins) and ``exposure_s`` (acquisition time, null when not recorded). The result
is printed for a person, or as one JSON object with ``--json``: ``g2_0``, ``g2_0_err``
(half the 68 % interval ``g2_0_ci68``), ``g2_0_bgcorr``, ``g2_0_bgcorr_err``,
``g2_0_bgcorr_ci68``, ``g2_0_bgcorr_clipped`` and ``window_fraction``
(``--window-fraction``) among the others. ``--channels A A`` is refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from micropl.analysis.formats.histograms import LAYOUTS, read_histogram
from micropl.analysis.g2 import (
    G2Result,
    check_channel_pair,
    pulsed_g2,
)
from micropl.analysis.g2_files import (
    DEFAULT_BIN_PS,
    DEFAULT_WINDOW_PS,
    correlate_ptu_stream,
    pulsed_rate_and_window,
    tag_file_kind,
)
from micropl.analysis.tags import read_ptu_header
from micropl.cli.output import print_json
from micropl.errors import AnalysisInputError, FileFormatError, UserError
from micropl.ptu import T2_RECORD_TYPES

log = logging.getLogger(__name__)

def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``analyze g2``."""
    parser = subparsers.add_parser(
        "g2", help="g²(0) from a PTU T2 file or an HBT histogram file",
        description="Compute pulsed g²(0) = central peak area / mean side-peak area from a "
                    "PicoQuant PTU T2 file (the two channels are cross-correlated) or from a "
                    "histogram text file (delay, counts[, more snapshot columns]).")
    parser.add_argument("file", type=Path,
                        help="PTU (T2 or T3), .ttbin, .phu or histogram text file")
    parser.add_argument("--channels", nargs=2, type=int, metavar=("A", "B"), default=(1, 2),
                        help="input channels to correlate, start and stop (default 1 2)")
    parser.add_argument("--rep-rate", type=float, metavar="HZ", dest="rep_rate_hz",
                        help="laser repetition rate in Hz (default: PTU sync rate, else "
                             "detected from the histogram)")
    parser.add_argument("--n-side", type=int, default=5, metavar="N",
                        help="side peaks per side (default 5)")
    parser.add_argument("--bin-ps", type=int, default=None, metavar="B",
                        help=f"correlation bin width in ps for tag files (default {DEFAULT_BIN_PS})")
    parser.add_argument("--window-ps", type=int, default=None, metavar="W",
                        help="correlation half-window in ps for tag files (default (n_side+1) "
                             f"periods, or {DEFAULT_WINDOW_PS} ps when the rate is unknown)")
    parser.add_argument("--window-fraction", type=float, default=1.0, metavar="F",
                        help="fraction of the period integrated around each peak, 0 < F <= 1 "
                             "(default 1: the windows tile the histogram; narrow windows, "
                             "e.g. 0.16, leave out more background; the background-corrected "
                             "g2(0) estimates the same value for every F)")
    parser.add_argument("--zero-delay-ps", type=float, default=None, metavar="T",
                        help="approximate position of the zero-delay peak in ps")
    parser.add_argument("--delay-unit", choices=("ns", "ps"), default=None,
                        help="delay unit of a histogram file (default: header or inferred)")
    parser.add_argument("--layout", choices=LAYOUTS, default="auto",
                        help="layout of a text histogram: columns (delay, counts...) or rows "
                             "(a delays row, then counts rows); default: detected")
    parser.add_argument("--curve", type=int, default=None, metavar="K",
                        help="curve of a PHU file that holds several (0-based)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                        help="save a figure of the histogram with the windows shaded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the analysis; returns the exit code (errors raise and become exit 2)."""
    path: Path = args.file
    if not path.exists():
        raise FileFormatError(f"{path}: no such file")
    if args.n_side < 1:
        raise AnalysisInputError(f"--n-side must be >= 1, got {args.n_side}")
    if args.rep_rate_hz is not None and not args.rep_rate_hz > 0:
        raise AnalysisInputError(f"--rep-rate must be > 0 Hz, got {args.rep_rate_hz}")
    if not 0 < args.window_fraction <= 1:
        raise AnalysisInputError(
            f"--window-fraction must be in (0, 1], got {args.window_fraction}")
    try:
        check_channel_pair(*args.channels)
    except UserError as exc:
        raise AnalysisInputError(f"--channels {args.channels[0]} {args.channels[1]}: {exc}; "
                                 "give the two APD channels") from None
    info: dict = {"file": str(path)}
    kind = tag_file_kind(path)
    if kind in ("ptu-t2", "ptu-t3", "ttbin"):
        correlate = {"ptu-t2": _correlate_ptu, "ptu-t3": _correlate_t3,
                     "ttbin": _correlate_ttbin}[kind]
        tau_ps, counts, rate, rate_source, bin_ps = correlate(args, path, info)
    else:
        if args.bin_ps is not None or args.window_ps is not None:
            log.info("--bin-ps/--window-ps ignored for a histogram file")
        hist, read_info = read_histogram(path, delay_unit=args.delay_unit,
                                         layout=args.layout, curve=args.curve)
        tau_ps, counts = hist.tau_ps, hist.counts
        rate, rate_source = args.rep_rate_hz, "user"
        bin_ps = float(np.median(np.diff(tau_ps)))
        info.update(kind="histogram", delay_unit=hist.delay_unit, n_snapshots=hist.n_snapshots,
                    **read_info)
    info["n_points"] = int(np.size(tau_ps))
    try:
        result = pulsed_g2(tau_ps, counts, rep_rate_hz=rate, n_side=args.n_side,
                           zero_delay_ps=args.zero_delay_ps, period_source=rate_source,
                           window_fraction=args.window_fraction)
    except UserError as exc:
        raise AnalysisInputError(f"{path}: {exc}") from exc
    info["bin_ps"] = bin_ps
    if args.plot is not None:
        _plot(args.plot, tau_ps, counts, result, path)
    if args.json:
        out = {**info, **result.as_dict()}
        print_json(out)
    else:
        sys.stdout.write(_human(result, info) + "\n")
    return 0


def _correlate_ptu(args: argparse.Namespace, path: Path, info: dict):
    """Stream the file's records into the correlation (bounded memory for any size)."""
    header = read_ptu_header(path)
    ch_a, ch_b = (int(c) for c in args.channels)
    bin_ps = int(args.bin_ps) if args.bin_ps is not None else DEFAULT_BIN_PS
    rate, source, window_ps = pulsed_rate_and_window(
        path, header, args.rep_rate_hz, args.n_side, bin_ps,
        None if args.window_ps is None else int(args.window_ps))
    acc, _, end_units = correlate_ptu_stream(path, header, ch_a, ch_b, bin_ps, window_ps)
    tau_ps, counts = acc.result()
    n_a, n_b = acc.n_tags_a, acc.n_tags_b
    duration_s = end_units * header.resolution_s
    info.update(kind="ptu", format="ptu-t2", exposure_s=duration_s,
                record_type=T2_RECORD_TYPES[header.record_type],
                channels=[ch_a, ch_b], n_tags=int(n_a + n_b), n_tags_a=int(n_a),
                n_tags_b=int(n_b), duration_s=duration_s, sync_rate_hz=header.sync_rate_hz,
                window_ps=window_ps,
                rate_a_hz=n_a / duration_s if duration_s > 0 else float("nan"),
                rate_b_hz=n_b / duration_s if duration_s > 0 else float("nan"))
    if counts.sum() == 0:
        raise AnalysisInputError(
            f"{path}: no coincidences between channels {ch_a} and {ch_b} within ±{window_ps} ps")
    return tau_ps, counts, rate, source, bin_ps


def _correlate_t3(args: argparse.Namespace, path: Path, info: dict):
    """A T3 file: g² on absolute times, and the decay of the delays after the sync."""
    from micropl.analysis.formats.t3 import (
        correlate_t3_stream,
        read_t3_header,
        t3_lifetime_info,
    )
    from micropl.analysis.g2_files import MAX_PAIRS, MAX_TAIL_TAGS
    from micropl.ptu import T3_RECORD_TYPES

    header, timing = read_t3_header(path)
    ch_a, ch_b = (int(c) for c in args.channels)
    bin_ps = int(args.bin_ps) if args.bin_ps is not None else DEFAULT_BIN_PS
    rate, source, window_ps = pulsed_rate_and_window(
        path, header, args.rep_rate_hz if args.rep_rate_hz is not None else
        timing.sync_rate_hz, args.n_side, bin_ps,
        None if args.window_ps is None else int(args.window_ps))
    if args.rep_rate_hz is None:
        source = "header"
    acc, _, duration_s = correlate_t3_stream(header, timing, ch_a, ch_b, bin_ps, window_ps,
                                             max_pairs=MAX_PAIRS, max_tail=MAX_TAIL_TAGS)
    tau_ps, counts = acc.result()
    n_a, n_b = acc.n_tags_a, acc.n_tags_b
    info.update(kind="ptu", format="ptu-t3", exposure_s=duration_s,
                record_type=T3_RECORD_TYPES[header.record_type], channels=[ch_a, ch_b],
                n_tags=int(n_a + n_b), n_tags_a=int(n_a), n_tags_b=int(n_b),
                duration_s=duration_s, sync_rate_hz=timing.sync_rate_hz, window_ps=window_ps,
                rate_a_hz=n_a / duration_s if duration_s > 0 else float("nan"),
                rate_b_hz=n_b / duration_s if duration_s > 0 else float("nan"),
                **t3_lifetime_info(header, timing, (ch_a, ch_b)))
    if counts.sum() == 0:
        raise AnalysisInputError(
            f"{path}: no coincidences between channels {ch_a} and {ch_b} within ±{window_ps} ps")
    return tau_ps, counts, rate, source, bin_ps


def _correlate_ttbin(args: argparse.Namespace, path: Path, info: dict):
    """A Swabian .ttbin file, through the vendor module."""
    from micropl.analysis.formats.ttbin import correlate_ttbin

    if args.rep_rate_hz is None:
        raise AnalysisInputError(f"{path}: a .ttbin file records no laser rate; give "
                                 "--rep-rate HZ")
    ch_a, ch_b = (int(c) for c in args.channels)
    bin_ps = int(args.bin_ps) if args.bin_ps is not None else DEFAULT_BIN_PS
    from micropl.analysis.g2 import pulsed_window_ps

    window_ps = (int(args.window_ps) if args.window_ps is not None
                 else pulsed_window_ps(args.rep_rate_hz, args.n_side, bin_ps))
    acc, duration_s = correlate_ttbin(path, ch_a, ch_b, bin_ps, window_ps)
    tau_ps, counts = acc.result()
    info.update(kind="ttbin", format="ttbin", exposure_s=duration_s, channels=[ch_a, ch_b],
                n_tags_a=int(acc.n_tags_a), n_tags_b=int(acc.n_tags_b), window_ps=window_ps)
    return tau_ps, counts, args.rep_rate_hz, "user", bin_ps


def _human(r: G2Result, info: dict) -> str:
    lines = [f"file: {info['file']} ({info.get('format')}, {info.get('n_points')} bins)"]
    if "lifetime_ns" in info:
        lines.append(f"lifetime (decay after the sync): {info['lifetime_ns']:.4f} ± "
                     f"{info['lifetime_err_ns']:.4f} ns")
    if info.get("kind") == "ptu":
        lines.append(f"tags: {info['n_tags']} in channels {info['channels'][0]} and "
                     f"{info['channels'][1]} over {info['duration_s']:.3f} s "
                     f"({info['record_type']})")
    lo, hi = r.g2_0_ci68
    blo, bhi = r.g2_0_bgcorr_ci68
    clipped = ", clipped at 0" if r.g2_0_bgcorr_clipped else ""
    lines += [
        f"g2(0) = {r.g2_0:.4f} ± {r.g2_0_err:.4f} (68% interval {lo:.4f} to {hi:.4f})",
        f"g2(0), background-corrected = {r.g2_0_bgcorr:.4f} ± {r.g2_0_bgcorr_err:.4f} "
        f"(68% interval {blo:.4f} to {bhi:.4f}{clipped}; background "
        f"{r.background_per_bin:.2f} counts/bin)",
        f"window: {r.window_fraction:g} of the period around each peak",
        f"repetition rate: {r.rep_rate_hz / 1e6:.4f} MHz (period {r.period_ps / 1e3:.4f} ns, "
        f"{r.period_source})",
        f"zero delay: {r.delay_ps / 1e3:.3f} ns ({r.zero_delay_source})",
        f"central peak: {r.central_counts:.0f} counts; side peaks: mean {r.side_mean_counts:.1f} "
        f"counts over {r.n_side_left}+{r.n_side_right} peaks",
        f"bin: {info['bin_ps']:.1f} ps",
    ]
    return "\n".join(lines)


def _plot(out: Path, tau_ps: np.ndarray, counts: np.ndarray, r: G2Result, src: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    tau_ns = np.asarray(tau_ps) / 1e3
    ax.plot(tau_ns, counts, lw=0.7, color="k", drawstyle="steps-mid")
    lo, hi = r.central_window_ps
    ax.axvspan(lo / 1e3, hi / 1e3, color="tab:red", alpha=0.25, label="central window")
    for i, (slo, shi) in enumerate(r.side_windows_ps):
        ax.axvspan(slo / 1e3, shi / 1e3, color="tab:blue", alpha=0.15,
                   label="side windows" if i == 0 else None)
    if np.isfinite(r.background_per_bin):
        ax.axhline(r.background_per_bin, color="tab:green", ls="--", lw=0.8, label="background")
    ax.set_xlabel("delay τ (ns)")
    ax.set_ylabel("coincidences per bin")
    ax.set_title(f"{src.name}: g²(0) = {r.g2_0:.3f} ± {r.g2_0_err:.3f} "
                 f"(bg-corr {r.g2_0_bgcorr:.3f} ± {r.g2_0_bgcorr_err:.3f}), "
                 f"{r.rep_rate_hz / 1e6:.2f} MHz", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as exc:
        raise AnalysisInputError(f"cannot save plot to {out}: {exc}") from exc
