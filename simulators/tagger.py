"""Simulated time tagger with two APDs in a Hanbury-Brown–Twiss arrangement.

:class:`SimTimeTagger` satisfies :class:`micropl.drivers.interfaces.TimeTagger`.
Each :meth:`~SimTimeTagger.read` returns the tags of ``[previous read,
clock.now())``: the caller lets time pass with ``world.clock.sleep`` and the
tagger generates what the APDs saw in between, with the excitation the world
reports at the time of the read (laser, power, scanner position), taken as
constant over the read. The photon physics and the detector model are in
:mod:`micropl.simulators.hbt`.

Time base: tag times are clock time in ps (``t_ps = clock seconds × 1e12``), so
consecutive chunks tile time from :meth:`~SimTimeTagger.start` on. APD tags
include a fixed detector latency of ``ceil(5σ_jitter)`` (≈ 0.75 ns for 350 ps
FWHM), and APD2 tags the ``channel_delay_ps`` cable delay on top.

Sync channel: with ``sync_channel`` set, laser pulses are recorded on it while
the laser emits. Like a HydraHarp, the sync input divides by the smallest power
of two that keeps the sync rate at or below 1 MHz (16 at 10 MHz); the divider
is in :meth:`~SimTimeTagger.snapshot`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from micropl.drivers.limits import channels_refusal, limit_error
from micropl.errors import InstrumentError
from micropl.records import TagChunk
from micropl.simulators.faults import FaultInjector
from micropl.simulators.hbt import (
    DetectorModel,
    Emitters,
    HbtStream,
    StreamOutput,
    period_ps_from_rate,
    sync_divider_for_rate,
)
from micropl.simulators.sample import BLOCK_S
from micropl.simulators.settings import SimTaggerSettings
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimTimeTagger", "detector_model"]

log = logging.getLogger(__name__)

_KIND = "tagger"
#: Length of the sample's blink blocks, ps.
_BLOCK_PS_SAMPLE = int(round(BLOCK_S * 1e12))
#: Emitter-block interval sets kept before the cache is emptied.
_INTERVAL_CACHE_SIZE = 4096
_NO_EMITTERS = Emitters.none()


def detector_model(settings: SimTaggerSettings) -> DetectorModel:
    """The APD model of the tagger settings, in the units of :mod:`~micropl.simulators.hbt`."""
    return DetectorModel(
        dark_cps=(float(settings.dark_cps[0]), float(settings.dark_cps[1])),
        dead_time_ps=int(round(settings.dead_time_ns * 1e3)),
        jitter_fwhm_ps=float(settings.jitter_fwhm_ps),
        afterpulse_probability=float(settings.afterpulse_probability),
        afterpulse_delay_ps=float(settings.afterpulse_delay_ns) * 1e3,
        channel_delay_ps=int(settings.channel_delay_ps),
        crosstalk_probability=float(settings.crosstalk_probability),
        crosstalk_delay_ps=int(round(settings.crosstalk_delay_ns * 1e3)),
    )


class SimTimeTagger:
    """A simulated time tagger fed by two APDs (and optionally the laser sync).

    Parameters
    ----------
    settings : SimTaggerSettings
        Channels, APD properties, buffer size and faults.
    world : SimulatedWorld
        The sample, clock and laser/scanner the APDs look at.

    Notes
    -----
    * Determinism: the tags depend only on the sample seed, the read times and
      the excitation at each read. The same reads give the same tags; as long as
      the excitation stays constant, any cutting of the same span into reads
      gives the same tags too.
    * Overflow: when a read interval holds more tags than ``buffer_tags``, the
      first ``buffer_tags`` tags are returned, the chunk has ``overflow=True`` and
      ``missed_events`` counts the rest. The fault injector can force an overflow
      on a read; then the second half of the tags of that read is lost.
    * :meth:`count_rates_hz` gives the rates counted over the last read (lost
      tags included), or, before any read, the expected rates for the current
      excitation with every excited emitter ON.
    """

    def __init__(self, settings: SimTaggerSettings, world: SimulatedWorld) -> None:
        self.settings = settings
        self.world = world
        self.name = settings.name
        apd1, apd2 = (int(c) for c in settings.apd_channels)
        if apd1 == apd2 or min(apd1, apd2) < 1:
            raise limit_error(_KIND, self.name, f"APD channels {settings.apd_channels}",
                              "two different inputs ≥ 1")
        sync = settings.sync_channel
        if sync is not None and int(sync) in (apd1, apd2):
            raise limit_error(_KIND, self.name, f"sync channel {sync}",
                              f"must differ from the APD channels {apd1}, {apd2}")
        #: Tag times are whole ps.
        self.resolution_ps = 1.0
        self.channels: tuple[int, ...] = (apd1, apd2) + ((int(sync),) if sync is not None else ())
        self._lut = np.array([apd1, apd2, int(sync) if sync is not None else 0], np.uint8)
        self._detectors = detector_model(settings)
        self._faults = FaultInjector(settings.faults, world.clock, _KIND, self.name)
        self._seed = int(getattr(world.sample, "seed", 0))
        self._stream: HbtStream | None = None
        self._interval_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._interval_sample: Any = None
        self._last_emitters: tuple | None = None
        self._enabled: tuple[int, ...] = ()
        self._last_counts: np.ndarray | None = None
        self._last_duration_s = 0.0
        self._sync_divider = 0
        self._reads = 0
        self._overflows = 0
        self._missed_total = 0
        self._closed = False

    # ------------------------------------------------------------------ helpers
    def _now_ps(self) -> int:
        return int(round(self.world.clock.now() * 1e12))

    def _block_intervals_ps(self, index: int, block: int) -> tuple[np.ndarray, np.ndarray]:
        """ON intervals (ps) of emitter ``index`` over the whole sample blink block ``block``.

        The generator clips intervals to its 10 ms blocks itself, so intervals
        reaching beyond the read are harmless; the switching times are rounded to
        the ps exactly as they would be for any shorter query.
        """
        sample = self.world.sample
        if sample is not self._interval_sample:
            self._interval_cache = {}
            self._interval_sample = sample
        key = (index, block)
        got = self._interval_cache.get(key)
        if got is None:
            t0_s = block * BLOCK_S
            starts_s, stops_s = sample.on_intervals_s(index, t0_s, t0_s + BLOCK_S)
            got = (np.round(starts_s * 1e12).astype(np.int64),
                   np.round(stops_s * 1e12).astype(np.int64))
            if len(self._interval_cache) >= _INTERVAL_CACHE_SIZE:
                self._interval_cache.clear()
            self._interval_cache[key] = got
        return got

    def _emitters(self, exc: Any, span_ps: tuple[int, int]) -> Emitters:
        """Excited emitters with ON intervals covering ``span_ps``; same object while unchanged."""
        idx = exc.indices
        if idx.size == 0 or not exc.rep_rate_hz > 0:
            return _NO_EMITTERS
        b0 = int(span_ps[0] // _BLOCK_PS_SAMPLE)
        b1 = int((span_ps[1] - 1) // _BLOCK_PS_SAMPLE)
        last = self._last_emitters
        if (last is not None and last[0] is idx and last[1] is exc.detected_per_pulse_per_apd
                and last[2] == (b0, b1)):
            return last[3]
        sample = self.world.sample
        starts: list[np.ndarray] = []
        stops: list[np.ndarray] = []
        ptr = np.zeros(idx.size + 1, np.int64)
        for e, i in enumerate(idx.tolist()):
            for block in range(b0, b1 + 1):
                a, b = self._block_intervals_ps(i, block)
                starts.append(a)
                stops.append(b)
                ptr[e + 1] += a.size
        ptr = np.cumsum(ptr)
        idx64 = np.asarray(idx, np.int64)
        emitters = Emitters(
            idx64, np.asarray(exc.detected_per_pulse_per_apd, np.float64),
            sample.g2_0[idx64], sample.lifetime_ns[idx64] * 1e3,
            np.concatenate(starts), np.concatenate(stops), ptr)
        self._last_emitters = (idx, exc.detected_per_pulse_per_apd, (b0, b1), emitters)
        return emitters

    # ------------------------------------------------------------------ protocol
    def start(self, channels: tuple[int, ...]) -> None:
        """Start streaming the tags of ``channels`` (a subset of :attr:`channels`).

        Raises
        ------
        LimitError
            A channel this tagger does not have, or no channel at all.
        """
        wanted = tuple(int(c) for c in channels)
        available = self.channels + self._marker_inputs()
        if channels_refusal(wanted, available) is not None:
            raise limit_error(_KIND, self.name, f"start on channels {wanted}",
                              f"available channels {available}")
        self._faults.check(f"start {wanted}")
        self._enabled = wanted
        self._stream = HbtStream(self._detectors, self._seed, t_start_ps=self._now_ps())
        self._last_counts = None
        self._last_duration_s = 0.0
        log.debug("tagger '%s': started on %s", self.name, wanted)

    def read(self) -> TagChunk:
        """Tags recorded since the previous read (or :meth:`start`).

        Returns
        -------
        TagChunk
            ``t_ps`` int64 ascending, ``channel`` uint8 hardware input numbers.

        Raises
        ------
        InstrumentError
            When the tagger is not started (or an injected fault).
        """
        self._faults.check("read")
        stream = self._stream
        if stream is None:
            raise InstrumentError(f"{_KIND} '{self.name}': read refused: not started")
        t_end_ps = max(self._now_ps(), stream.t_ps)
        exc = self.world.excitation()
        rep_rate_hz = float(exc.rep_rate_hz)
        period_ps = period_ps_from_rate(rep_rate_hz) if rep_rate_hz > 0 else 0
        sync_on = len(self.channels) == 3 and self.channels[2] in self._enabled
        divider = sync_divider_for_rate(rep_rate_hz) if (sync_on and period_ps) else 0
        if divider:
            self._sync_divider = divider
        keep_apd = (self.channels[0] in self._enabled, self.channels[1] in self._enabled)
        lut = self._lut
        lines = self._lines_in(stream.t_ps, t_end_ps)
        if lines:  # a hardware-timed line: excitation per pixel, marker tags
            out, lut = self._advance_through_lines(stream, t_end_ps, lines, period_ps, divider,
                                                   keep_apd)
        else:
            emitters = self._emitters(exc, stream.block_span_ps(t_end_ps))
            out = stream.advance(t_end_ps, emitters, period_ps,
                                 float(exc.background_cps_per_apd), sync_divider=divider,
                                 max_tags=int(self.settings.buffer_tags), keep_apd=keep_apd)
        t_ps, channel_index = out.t_ps, out.channel
        missed = int(out.n_dropped)
        forced = self._faults.overflow()
        if forced:
            keep = t_ps.size // 2
            missed += t_ps.size - keep
            t_ps, channel_index = t_ps[:keep], channel_index[:keep]
        overflow = forced or out.n_dropped > 0
        self._reads += 1
        if overflow:
            self._overflows += 1
            self._missed_total += missed
            log.warning("tagger '%s': buffer overflow, %d tags lost", self.name, missed)
        self._last_counts = out.counts.copy()
        self._last_duration_s = (out.t_stop_ps - out.t_start_ps) * 1e-12
        return TagChunk(t_ps=np.ascontiguousarray(t_ps, np.int64),
                        channel=lut[channel_index],
                        t_start_ps=int(out.t_start_ps), t_stop_ps=int(out.t_stop_ps),
                        overflow=bool(overflow), missed_events=missed)

    # ------------------------------------------------------------------ pixel markers
    def _marker_inputs(self) -> tuple[int, ...]:
        """The input wired to the simulated scanner's trigger output, if any and free."""
        marker = getattr(self.world.scanner, "marker_channel", None)
        if marker is None or int(marker) in self.channels:
            return ()
        return (int(marker),)

    def _lines_in(self, t0_ps: int, t1_ps: int) -> list:
        """Hardware-timed lines of the simulated scanner overlapping ``[t0_ps, t1_ps)``."""
        scanner = self.world.scanner
        if scanner is None or not getattr(scanner, "supports_hardware_lines", False):
            return []
        return [line for line in scanner.lines_between(t0_ps * 1e-12 - 1e-9, t1_ps * 1e-12 + 1e-9)
                if int(round(line.t0_s * 1e12)) < t1_ps
                and int(round(line.t_end_s * 1e12)) >= t0_ps]

    def _advance_through_lines(self, stream: HbtStream, t_end_ps: int, lines: list,
                               period_ps: int, divider: int, keep_apd: tuple[bool, bool]):
        """Tags of ``[stream.t_ps, t_end_ps)`` while the scanner sweeps ``lines``.

        The span is cut at every pixel boundary; each piece is generated with the
        excitation at the centre of its pixel (the scanner is probed there). The
        trigger pulses of the span become tags on the marker input, when enabled.

        Returns
        -------
        StreamOutput, ndarray
            The merged output (channel index 3 = marker) and the channel table.
        """
        scanner = self.world.scanner
        t_begin = stream.t_ps
        pulses = np.concatenate([np.round(line.pulse_times_s() * 1e12).astype(np.int64)
                                 for line in lines])
        pulses = pulses[(pulses >= t_begin) & (pulses < t_end_ps)]
        cuts = np.unique(np.concatenate([[t_begin], pulses, [t_end_ps]]))
        budget = int(self.settings.buffer_tags)
        pieces_t, pieces_c = [], []
        counts = np.zeros(3, np.int64)
        dropped = 0
        for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
            with scanner.probing(0.5 * (a + b) * 1e-12):
                exc = self.world.excitation()
            emitters = self._emitters(exc, stream.block_span_ps(b))
            out = stream.advance(b, emitters, period_ps, float(exc.background_cps_per_apd),
                                 sync_divider=divider, max_tags=budget, keep_apd=keep_apd)
            budget = max(0, budget - out.t_ps.size)
            pieces_t.append(out.t_ps)
            pieces_c.append(out.channel)
            counts += out.counts
            dropped += int(out.n_dropped)
        t_ps = np.concatenate(pieces_t) if pieces_t else np.empty(0, np.int64)
        channel = np.concatenate(pieces_c) if pieces_c else np.empty(0, np.uint8)
        marker = getattr(scanner, "marker_channel", None)
        lut = self._lut
        if marker is not None and int(marker) in self._enabled and pulses.size:
            lut = np.append(self._lut, np.uint8(int(marker)))
            where = np.searchsorted(t_ps, pulses, side="left")
            t_ps = np.insert(t_ps, where, pulses)
            channel = np.insert(channel, where, np.uint8(3))
        merged = StreamOutput(t_ps=t_ps, channel=channel.astype(np.uint8, copy=False),
                              t_start_ps=int(t_begin), t_stop_ps=int(t_end_ps),
                              n_dropped=dropped, counts=counts)
        return merged, lut

    def count_rates_hz(self) -> dict[int, float]:
        """Count rate of each channel in counts/s.

        Over the last read interval when there was one since :meth:`start`;
        otherwise the expected rates now (excited emitters taken as ON, dead
        time included as ``R / (1 + R·τ)``).
        """
        self._faults.check("count rates")
        if self._last_counts is not None and self._last_duration_s > 0:
            rates = self._last_counts / self._last_duration_s
            return {ch: float(rates[i]) for i, ch in enumerate(self.channels)}
        return self.expected_rates_hz()

    def expected_rates_hz(self) -> dict[int, float]:
        """Expected count rate of each channel for the current excitation, counts/s.

        Every excited emitter is counted as ON (no blinking); afterpulses add their
        probability; dead time reduces the rate as a non-paralysable detector does.
        """
        exc = self.world.excitation()
        det = self._detectors
        rep = float(exc.rep_rate_hz)
        photons = float(np.sum(exc.detected_per_pulse_per_apd)) * rep if rep > 0 else 0.0
        background = float(exc.background_cps_per_apd) if rep > 0 else 0.0
        tau_s = det.dead_time_ps * 1e-12
        rates = {}
        for i, ch in enumerate(self.channels[:2]):
            r = (photons + background + det.dark_cps[i]) * (1.0 + det.afterpulse_probability)
            rates[ch] = r / (1.0 + r * tau_s)
        if len(self.channels) == 3:
            rates[self.channels[2]] = rep / sync_divider_for_rate(rep) if rep > 0 else 0.0
        return rates

    def stop(self) -> None:
        """Stop streaming; tags after the last read are discarded. Safe when idle.

        Retries through injected timeouts and garbled replies (three attempts);
        fails only when the tagger is disconnected.
        """
        for attempt in range(3):
            try:
                self._faults.check("stop")
            except InstrumentError:
                if self._faults.disconnected() or attempt == 2:
                    raise
                log.warning("tagger '%s': stop failed, retrying", self.name)
                continue
            break
        self._stream = None
        self._last_counts = None  # no read is going on: the rates are today's, not the last read
        self._enabled = ()

    def snapshot(self) -> dict[str, Any]:
        """Settings for provenance (units in the keys)."""
        s = self.settings
        det = self._detectors
        return {
            "driver": "simulated",
            "name": self.name,
            "channels": list(self.channels),
            "apd_channels": list(s.apd_channels),
            "sync_channel": s.sync_channel,
            "sync_divider": self._sync_divider,
            "enabled_channels": list(self._enabled),
            "running": self._stream is not None,
            "dark_cps": list(det.dark_cps),
            "dead_time_ns": s.dead_time_ns,
            "jitter_fwhm_ps": s.jitter_fwhm_ps,
            "detector_latency_ps": det.latency_ps,
            "afterpulse_probability": s.afterpulse_probability,
            "afterpulse_delay_ns": s.afterpulse_delay_ns,
            "channel_delay_ps": s.channel_delay_ps,
            "crosstalk_probability": s.crosstalk_probability,
            "crosstalk_delay_ns": s.crosstalk_delay_ns,
            "buffer_tags": s.buffer_tags,
            "seed": self._seed,
            "reads": self._reads,
            "overflows": self._overflows,
            "missed_events_total": self._missed_total,
        }

    def close(self) -> None:
        """Stop and release. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stream = None
        self._enabled = ()

    @property
    def dead_time_losses(self) -> tuple[int, int]:
        """Detections lost to dead time on APD1 / APD2 since :meth:`start` (simulation truth)."""
        if self._stream is None:
            return 0, 0
        return self._stream.dead_time_losses
