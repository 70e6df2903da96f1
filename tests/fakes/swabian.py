"""Fake of the Swabian Instruments ``TimeTagger`` Python module.

Names and signatures follow the vendor API (``TimeTagger.h`` / ``Iterators.h``):
``createTimeTagger(serial="")``, ``freeTimeTagger(tagger)``,
``TimeTagStream(tagger, n_max_events, channels)`` whose ``getData()`` returns a
``TimeTagStreamBuffer`` with ``getTimestamps()``, ``getChannels()``,
``getEventTypes()``, ``getMissedEvents()``, ``getOverflows()`` and the fields
``size``, ``hasOverflows``, ``tStart``, ``tGetData``; ``Countrate(tagger,
channels)``; tagger methods ``setTriggerLevel``, ``setInputDelay``,
``setDeadtime`` (returns the dead time actually set, rounded up to the clock
period), ``getSerial``, ``getModel``.

Modelled on a Time Tagger Ultra: inputs ±1..±8 (negative = falling edge),
trigger levels −2.5..+2.5 V, dead time ≥ one 2000 ps clock period. Invalid
channels and levels raise ``ValueError`` (the real wrapper raises a
``ValueError``/``RuntimeError`` from its C++ checks).

Test hooks on the tagger: ``inject(t_ps, channels)``, ``inject_overflow(t_ps,
missed)``, ``advance_to(t_ps)``.
"""

from __future__ import annotations

import math
import types

import numpy as np

from . import CallRecorder

TIME_TAG, ERROR, OVERFLOW_BEGIN, OVERFLOW_END, MISSED_EVENTS = 0, 1, 2, 3, 4
CLOCK_PS = 2000


class FakeTagger(CallRecorder):
    def __init__(self, serial="1910000ABC"):
        super().__init__()
        self.serial = serial
        self.freed = False
        self.now_ps = 0
        self.events: list[tuple[int, int, int, int]] = []  # (t, channel, type, missed)
        self.trigger_v: dict[int, float] = {}
        self.delay_ps: dict[int, int] = {}
        self.deadtime_ps: dict[int, int] = {}
        self.iterators: list = []

    def _check_channel(self, channel):
        if not isinstance(channel, int) or channel == 0 or abs(channel) > 8:
            raise ValueError(f"invalid channel {channel}")

    def getSerial(self):
        return self.serial

    def getModel(self):
        return "Time Tagger Ultra"

    def setTriggerLevel(self, channel, voltage):
        self._record("setTriggerLevel", channel, voltage)
        self._check_channel(channel)
        if not -2.5 <= voltage <= 2.5:
            raise ValueError(f"trigger level {voltage} V out of range")
        self.trigger_v[abs(channel)] = float(voltage)

    def getTriggerLevel(self, channel):
        return self.trigger_v.get(abs(channel), 0.5)

    def setInputDelay(self, channel, delay):
        self._record("setInputDelay", channel, delay)
        self._check_channel(channel)
        self.delay_ps[channel] = int(delay)

    def setDeadtime(self, channel, deadtime):
        self._record("setDeadtime", channel, deadtime)
        self._check_channel(channel)
        actual = max(CLOCK_PS, CLOCK_PS * math.ceil(deadtime / CLOCK_PS))
        self.deadtime_ps[channel] = actual
        return actual

    # ------------------------------------------------------------------ test hooks
    def advance_to(self, t_ps):
        self.now_ps = max(self.now_ps, int(t_ps))

    def inject(self, t_ps, channels):
        for t, c in zip(np.asarray(t_ps), np.asarray(channels)):
            self.events.append((int(t), int(c), TIME_TAG, 0))
        self.advance_to(int(np.max(t_ps)) + 1)

    def inject_overflow(self, t_ps, missed_by_channel):
        self.events.append((int(t_ps), 0, OVERFLOW_BEGIN, 0))
        for channel, missed in missed_by_channel.items():
            self.events.append((int(t_ps), channel, MISSED_EVENTS, missed))
        self.events.append((int(t_ps) + 1, 0, OVERFLOW_END, 0))
        self.advance_to(int(t_ps) + 2)


class TimeTagStreamBuffer:
    def __init__(self, rows, t_start, t_get):
        self._rows = rows
        self.size = len(rows)
        self.hasOverflows = any(r[2] != TIME_TAG for r in rows)
        self.tStart = t_start
        self.tGetData = t_get

    def _col(self, i, dtype):
        return np.array([r[i] for r in self._rows], dtype=dtype)

    def getTimestamps(self):
        return self._col(0, np.int64)

    def getChannels(self):
        return self._col(1, np.int32)

    def getEventTypes(self):
        return self._col(2, np.uint8)

    def getOverflows(self):  # deprecated alias in the real API
        return self._col(2, np.uint8)

    def getMissedEvents(self):
        return self._col(3, np.uint16)


class TimeTagStream:
    def __init__(self, tagger, n_max_events, channels):
        tagger._record("TimeTagStream", n_max_events, list(channels))
        for c in channels:
            tagger._check_channel(c)
        self.tagger = tagger
        self.n_max_events = int(n_max_events)
        self.channels = list(channels)
        self.running = True  # a stream starts on construction
        self.t_last = tagger.now_ps
        self.cursor = len(tagger.events)
        tagger.iterators.append(self)

    def start(self):
        self.tagger._record("TimeTagStream.start")
        self.running = True

    def stop(self):
        self.tagger._record("TimeTagStream.stop")
        self.running = False

    def isRunning(self):
        return self.running

    def getData(self):
        self.tagger._record("TimeTagStream.getData")
        new = self.tagger.events[self.cursor:]
        self.cursor = len(self.tagger.events)
        rows = [e for e in new if e[2] in (ERROR, OVERFLOW_BEGIN, OVERFLOW_END)
                or e[1] in self.channels]
        rows = rows[: self.n_max_events] if self.running else []
        buf = TimeTagStreamBuffer(rows, self.t_last, self.tagger.now_ps)
        self.t_last = self.tagger.now_ps
        return buf


class Countrate:
    def __init__(self, tagger, channels):
        tagger._record("Countrate", list(channels))
        self.tagger = tagger
        self.channels = list(channels)
        self.clear()

    def clear(self):
        self.t0 = self.tagger.now_ps
        self.cursor = len(self.tagger.events)

    def getData(self):
        new = self.tagger.events[self.cursor:]
        duration_s = max(self.tagger.now_ps - self.t0, 1) * 1e-12
        return np.array([sum(1 for e in new if e[1] == c and e[2] == TIME_TAG) / duration_s
                         for c in self.channels])


def make_module(tagger: FakeTagger | None = None) -> types.SimpleNamespace:
    """A stand-in for ``import TimeTagger`` bound to one fake tagger."""
    tagger = tagger or FakeTagger()

    def createTimeTagger(serial=""):
        tagger._record("createTimeTagger", serial)
        return tagger

    def freeTimeTagger(t):
        t._record("freeTimeTagger")
        t.freed = True
        return True

    return types.SimpleNamespace(
        createTimeTagger=createTimeTagger, freeTimeTagger=freeTimeTagger,
        TimeTagStream=TimeTagStream, Countrate=Countrate, tagger=tagger,
    )
