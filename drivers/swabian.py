"""Swabian Instruments Time Tagger (20, Ultra, X) through its ``TimeTagger`` package.

Tags come from a ``TimeTagStream`` measurement: each :meth:`SwabianTagger.read`
calls ``getData()`` and turns the buffer into a :class:`TagChunk` covering
``[tStart, tGetData)``. Timestamps are already int64 ps; channels are the
1-based rising-edge input numbers (Swabian uses negative numbers for falling
edges, which this driver refuses) and are stored as uint8. Overflow intervals
reported by the hardware (``hasOverflows``, event types OverflowBegin/End and
MissedEvents) set ``TagChunk.overflow`` and add up in
``TagChunk.missed_events``; a stream buffer that came back full (more tags than
``buffer_events`` since the last read) is flagged as an overflow too.

Trigger levels, input delays and dead times come from the settings and are
checked before they are sent. The ``TimeTagger`` package is the optional extra
``micropl[swabian]`` (``pip install 'micropl[swabian]'``) and needs Swabian's
USB driver/runtime from swabianinstruments.com.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from micropl.drivers._settings import StrictSettings, check_range, show
from micropl.drivers.limits import limit_error
from micropl.errors import InstrumentError, MissingExtraError
from micropl.records import TagChunk

__all__ = ["SwabianSettings", "SwabianTagger", "DRIVERS", "REQUIRES", "open_instrument"]

log = logging.getLogger(__name__)

#: Importable modules needed at open time.
REQUIRES: tuple[str, ...] = ("TimeTagger",)

#: Optional extra of micropl that installs the Swabian package.
PIP_EXTRA = "swabian"

TAG_TIME_TAG = 0
TAG_MISSED_EVENTS = 4


class SwabianSettings(StrictSettings):
    """Settings of a Swabian Instruments Time Tagger."""

    driver: Literal["swabian"] = Field(description="Driver name: Swabian Time Tagger.")
    name: str = Field("tagger", description="Instrument name used in messages and files.")
    serial: str = Field("", description="Serial number; empty = the first Time Tagger found.")
    n_inputs: int = Field(8, ge=1, le=18, description="Number of inputs of the model.")
    channels: tuple[int, ...] = Field((1, 2), description="Rising-edge inputs to stream (1-based).")
    trigger_level_v: float = Field(0.5, description="Trigger level of every used input, in V.")
    trigger_levels_v: dict[int, float] = Field(
        default_factory=dict, description="Per-input trigger level overrides, in V."
    )
    trigger_level_range_v: tuple[float, float] = Field(
        (-2.5, 2.5), description="Trigger levels the model accepts, in V (Ultra ±2.5 V; 20: 0–2.5 V)."
    )
    input_delays_ps: dict[int, int] = Field(
        default_factory=dict, description="Per-input delay in ps (e.g. HBT cable delay)."
    )
    max_input_delay_ps: int = Field(
        2_000_000, gt=0, description="Largest input delay magnitude accepted, in ps."
    )
    deadtime_ps: int | None = Field(
        None, ge=0, description="Dead time set on each used input in ps; None = leave the default."
    )
    buffer_events: int = Field(
        10_000_000, ge=1000, description="TimeTagStream buffer size (tags between two reads)."
    )

    @model_validator(mode="after")
    def _check(self) -> SwabianSettings:
        n = self.n_inputs
        inputs = f"rising-edge inputs 1–{n}"
        if not self.channels:
            raise ValueError(f"channels: list at least one of the {inputs}")
        bad = [c for c in self.channels if not 1 <= c <= n]
        if bad:
            raise ValueError(f"channels: {show(bad[0])} is not one of the {inputs}")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: {show(self.channels)} lists an input twice")
        check_range("trigger_level_range_v", self.trigger_level_range_v, " V")
        lo, hi = self.trigger_level_range_v
        levels = {"trigger_level_v": self.trigger_level_v}
        levels.update({f"trigger_levels_v[{c}]": v for c, v in self.trigger_levels_v.items()})
        for key, level in levels.items():
            if not lo <= level <= hi:
                raise ValueError(f"{key}: {show(level)} V is outside trigger_level_range_v "
                                 f"{show(lo)}–{show(hi)} V")
        for key, per_input in (("trigger_levels_v", self.trigger_levels_v),
                               ("input_delays_ps", self.input_delays_ps)):
            bad = [c for c in per_input if not 1 <= c <= n]
            if bad:
                raise ValueError(f"{key}: input {show(bad[0])} is not one of the {inputs}")
        for c, delay in self.input_delays_ps.items():
            if abs(delay) > self.max_input_delay_ps:
                raise ValueError(f"input_delays_ps[{c}]: {show(delay)} ps is beyond "
                                 f"±max_input_delay_ps {self.max_input_delay_ps} ps")
        return self


class SwabianTagger:
    """TimeTagger protocol on top of an open Swabian ``TimeTagger`` object.

    Parameters
    ----------
    tagger : TimeTagger
        Object returned by ``TimeTagger.createTimeTagger`` (or a fake).
    tt : module
        The ``TimeTagger`` module (provides ``TimeTagStream``, ``Countrate``,
        ``freeTimeTagger``), injectable for tests.
    settings : SwabianSettings
        Connection and input settings.
    """

    kind = "tagger"

    def __init__(self, tagger: Any, tt: Any, settings: SwabianSettings):
        self._tagger = tagger
        self._tt = tt
        self.settings = settings
        self.name = settings.name
        self._closed = False
        self._stream: Any = None
        self._countrate: Any = None
        self.deadtime_ps: dict[int, int] = {}
        self.channels: tuple[int, ...] = ()
        self._check_channels(tuple(settings.channels))
        self._configure_inputs(tuple(settings.channels))
        self.channels = tuple(settings.channels)
        #: Tags are counted in ps.
        self.resolution_ps = 1.0

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _sdk_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except InstrumentError:
            raise
        except (RuntimeError, ValueError) as exc:
            raise InstrumentError(f"tagger '{self.name}': {action} failed: {exc}") from exc

    def _check_channels(self, channels: tuple[int, ...]) -> None:
        n = self.settings.n_inputs
        if not channels or any(not isinstance(c, int) or not 1 <= c <= n for c in channels):
            raise limit_error(
                "tagger", self.name, f"SET CHANNELS {channels}",
                f"non-empty set of rising-edge inputs 1–{n}",
            )

    def _configure_inputs(self, channels: tuple[int, ...]) -> None:
        s = self.settings
        lo, hi = s.trigger_level_range_v
        levels = {c: s.trigger_levels_v.get(c, s.trigger_level_v) for c in channels}
        for c, level in levels.items():
            if not lo <= level <= hi:
                raise limit_error("tagger", self.name, f"SET TRIGGER {level:g} V on input {c}",
                                  f"range {lo:g}–{hi:g} V")
        for c, delay in s.input_delays_ps.items():
            if abs(delay) > s.max_input_delay_ps:
                raise limit_error("tagger", self.name, f"SET DELAY {delay} ps on input {c}",
                                  f"range ±{s.max_input_delay_ps} ps")
        if s.deadtime_ps is not None and s.deadtime_ps < 0:
            raise limit_error("tagger", self.name, f"SET DEADTIME {s.deadtime_ps} ps", "≥ 0 ps")
        with self._sdk_errors("CONFIGURE INPUTS"):
            for c in channels:
                self._tagger.setTriggerLevel(c, levels[c])
                self._tagger.setInputDelay(c, int(s.input_delays_ps.get(c, 0)))
                if s.deadtime_ps is not None:
                    self.deadtime_ps[c] = int(self._tagger.setDeadtime(c, int(s.deadtime_ps)))
            self._countrate = self._tt.Countrate(self._tagger, list(channels))

    # ------------------------------------------------------------------ protocol
    def start(self, channels: tuple[int, ...] | None = None) -> None:
        """Start streaming the tags of ``channels`` (1-based rising-edge inputs)."""
        if self._closed:
            raise InstrumentError(f"tagger '{self.name}': START refused: closed")
        channels = tuple(self.channels if channels is None else channels)
        self._check_channels(channels)
        if channels != self.channels:
            self._configure_inputs(channels)
            self.channels = channels
        self.stop()
        with self._sdk_errors("START"):
            self._stream = self._tt.TimeTagStream(
                self._tagger, self.settings.buffer_events, list(channels)
            )

    def read(self) -> TagChunk:
        """Tags recorded since the previous read (or start)."""
        if self._stream is None:
            raise InstrumentError(f"tagger '{self.name}': READ refused: not running; call start()")
        with self._sdk_errors("READ"):
            buf = self._stream.getData()
            t_ps = np.asarray(buf.getTimestamps(), dtype=np.int64)
            channel = np.asarray(buf.getChannels())
            types = np.asarray(buf.getEventTypes())
            missed = np.asarray(buf.getMissedEvents())
        is_tag = types == TAG_TIME_TAG
        missed_events = int(missed[types == TAG_MISSED_EVENTS].sum())
        overflow = bool(buf.hasOverflows) or bool(np.any(~is_tag))
        if int(buf.size) >= self.settings.buffer_events:
            overflow = True
            log.error("tagger '%s': stream buffer full (%d tags); tags may be lost",
                      self.name, int(buf.size))
        if overflow:
            log.warning("tagger '%s': overflow, %d tag(s) known lost", self.name, missed_events)
        t_ps, channel = t_ps[is_tag], channel[is_tag]
        if t_ps.size > 1 and np.any(np.diff(t_ps) < 0):
            order = np.argsort(t_ps, kind="stable")
            t_ps, channel = t_ps[order], channel[order]
        return TagChunk(
            t_ps=t_ps,
            channel=channel.astype(np.uint8),
            t_start_ps=int(buf.tStart),
            t_stop_ps=int(buf.tGetData),
            overflow=overflow,
            missed_events=missed_events,
        )

    def count_rates_hz(self) -> dict[int, float]:
        """Rate of each streamed channel in counts/s since the previous call."""
        with self._sdk_errors("READ COUNT RATES"):
            rates = np.asarray(self._countrate.getData(), dtype=float)
            self._countrate.clear()
        return {c: float(r) for c, r in zip(self.channels, rates)}

    def stop(self) -> None:
        """Stop streaming. Safe when idle."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with self._sdk_errors("STOP"):
                stream.stop()

    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        s = self.settings
        return {
            "driver": "swabian",
            "serial": str(self._tagger.getSerial()),
            "model": str(self._tagger.getModel()),
            "channels": list(self.channels),
            "trigger_levels_v": {c: s.trigger_levels_v.get(c, s.trigger_level_v)
                                 for c in self.channels},
            "input_delays_ps": {c: s.input_delays_ps.get(c, 0) for c in self.channels},
            "deadtime_ps": dict(self.deadtime_ps),
        }

    def close(self) -> None:
        """Stop and free the tagger. Safe to call twice."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with self._sdk_errors("CLOSE"):
                self._tt.freeTimeTagger(self._tagger)


def open_instrument(settings: SwabianSettings) -> SwabianTagger:
    """Connect to the Time Tagger described by ``settings``.

    Raises
    ------
    MissingExtraError
        When the ``TimeTagger`` package is not installed.
    """
    try:
        import TimeTagger as tt
    except ImportError as exc:
        raise MissingExtraError(
            f"tagger '{settings.name}': driver 'swabian' needs the Swabian-TimeTagger "
            "package: pip install 'micropl[swabian]'"
        ) from exc
    try:
        tagger = tt.createTimeTagger(settings.serial)
    except RuntimeError as exc:
        raise InstrumentError(
            f"tagger '{settings.name}': CONNECT to Time Tagger {settings.serial!r} failed: {exc}"
        ) from exc
    return SwabianTagger(tagger, tt, settings)


DRIVERS: dict[str, type[BaseModel]] = {"tagger": SwabianSettings}
