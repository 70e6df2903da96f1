"""PicoQuant HydraHarp 400 / MultiHarp 150/160 / PicoHarp 300 in T2 mode, via ctypes.

The vendor libraries are called directly with :mod:`ctypes`, with the function
names and arguments of PicoQuant's published demos (``HH_*``, ``MH_*``,
``PH_*``). The library object is injectable, so tests use an in-process fake.

What the driver does
--------------------
* opens the device and initialises it in T2 mode (``XX_Initialize(dev, 2[, 0])``,
  internal reference clock), calibrates the HydraHarp;
* sets the sync divider and the input discriminators: constant-fraction
  (level and zero-cross, HydraHarp/PicoHarp) or edge trigger (level and edge,
  MultiHarp); refuses values outside the library limits before calling it;
* streams the FIFO with ``XX_ReadFiFo``, checks ``XX_GetFlags`` for FIFO
  overrun (``TagChunk.overflow``) and lost sync, and decodes records with the
  same record decoder as the PTU reader
  (:class:`micropl.ptu.T2StreamDecoder` over
  :func:`micropl.ptu.decode_t2_records`), carrying the time
  wrap-around (overflow-record) state from one FIFO read to the next. Importing
  that pure-numpy decoder is the accepted exception to "drivers import only
  drivers": one decoder means a FIFO stream and its PTU export decode alike.

Channels
--------
The channel numbers are those of the PTU reader (see :mod:`micropl.analysis.tags`):

* HydraHarp / MultiHarp: 0 is the sync input, ``n`` is input ``n`` as labelled
  on the front panel (1..N);
* PicoHarp 300: the two T2 inputs are 1 (the "Channel 0"/sync connector) and
  2 ("Channel 1"); the PicoHarp has no separate sync in T2 mode.

``channels`` selects what :meth:`read` returns; on HydraHarp/MultiHarp unused
inputs are also disabled in hardware.

Libraries (vendor installs, not on PyPI): ``hhlib64.dll``/``libhh400.so``
(HydraHarp), ``mhlib64.dll``/``libmhlib.so`` (MultiHarp),
``phlib64.dll``/``libph300.so`` (PicoHarp), from picoquant.com
(Support → Software, "programming library").
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from micropl.drivers._settings import StrictSettings, show
from micropl.drivers.limits import limit_error
from micropl.errors import InstrumentError, MissingExtraError
from micropl.ptu import SYNC_CHANNEL, T2StreamDecoder
from micropl.records import TagChunk

__all__ = [
    "DRIVERS",
    "RECORD_FORMATS",
    "REQUIRES",
    "VENDOR_LIBRARIES",
    "PicoQuantSettings",
    "PicoQuantTagger",
    "open_instrument",
]

log = logging.getLogger(__name__)

#: No Python package is needed; the vendor shared library is loaded with ctypes.
REQUIRES: tuple[str, ...] = ()

MODE_T2 = 2

#: Record layouts selectable in the settings, and their PTU ``TTTRRecType`` codes.
RECORD_FORMATS: dict[str, int] = {
    "picoharp_t2": 0x00010203,
    "hydraharp_v1_t2": 0x00010204,
    "hydraharp_v2_t2": 0x01010204,
    "generic_t2": 0x00010207,
}
REFSRC_INTERNAL = 0

DEVICES: dict[str, dict[str, Any]] = {
    "hydraharp": dict(
        prefix="HH", libraries=("hhlib64.dll", "hhlib.dll", "libhh400.so"), ttreadmax=131072,
        fifofull=0x0002, sync_lost=0x0004, syncdiv=(1, 2, 4, 8, 16), trigger="cfd",
        level_mv=(0, 1000), zerox_mv=(0, 40), record_format=None,
    ),
    "multiharp": dict(
        prefix="MH", libraries=("mhlib64.dll", "mhlib.dll", "libmhlib.so", "libmh150.so"),
        ttreadmax=1048576, fifofull=0x0002, sync_lost=0x0004, syncdiv=(1, 2, 4, 8, 16),
        trigger="edge", level_mv=(-1200, 1200), zerox_mv=None, record_format="generic_t2",
    ),
    "picoharp": dict(
        prefix="PH", libraries=("phlib64.dll", "phlib.dll", "libph300.so"), ttreadmax=131072,
        fifofull=0x0003, sync_lost=0, syncdiv=(1, 2, 4, 8), trigger="cfd",
        level_mv=(0, 800), zerox_mv=(0, 20), record_format="picoharp_t2",
    ),
}


class PicoQuantSettings(StrictSettings):
    """Settings of a PicoQuant TCSPC unit used as a T2 time tagger."""

    driver: Literal["picoquant"] = Field(description="Driver name: PicoQuant T2 via hhlib/mhlib/phlib.")
    name: str = Field("tagger", description="Instrument name used in messages and files.")
    device: Literal["hydraharp", "multiharp", "picoharp"] = Field(
        "hydraharp", description="Device family, which selects the library."
    )
    device_index: int = Field(0, ge=0, le=7, description="USB device index (0–7).")
    library_path: str = Field(
        "", description="Full path of the vendor library; empty = search the usual names."
    )
    channels: tuple[int, ...] = Field(
        (1, 2),
        description="Channels returned by read(): inputs as labelled, 0 = sync "
        "(PicoHarp 300: 1 = Channel 0/sync connector, 2 = Channel 1).",
    )
    sync_divider: int = Field(1, description="Sync divider (power of 2; ≤16, PicoHarp ≤8).")
    sync_level_mv: int = Field(
        100, description="Sync discriminator (CFD) or trigger (MultiHarp) level in mV."
    )
    sync_zero_cross_mv: int = Field(10, description="Sync CFD zero-cross level in mV (not MultiHarp).")
    sync_edge: Literal["rising", "falling"] = Field("falling", description="Sync edge (MultiHarp).")
    input_level_mv: int = Field(
        100, description="Input discriminator (CFD) or trigger (MultiHarp) level in mV."
    )
    input_zero_cross_mv: int = Field(10, description="Input CFD zero-cross level in mV (not MultiHarp).")
    input_edge: Literal["rising", "falling"] = Field("falling", description="Input edge (MultiHarp).")
    input_offsets_ps: dict[int, int] = Field(
        default_factory=dict, description="Per-input time offset in ps (HydraHarp/MultiHarp)."
    )
    acquisition_time_ms: int = Field(
        360_000_000, ge=1, le=360_000_000, description="Hardware measurement time in ms (≤100 h)."
    )
    record_format: Literal[
        "auto", "picoharp_t2", "hydraharp_v1_t2", "hydraharp_v2_t2", "generic_t2"
    ] = Field("auto", description="T2 record layout; auto picks it from device and library version.")

    @model_validator(mode="after")
    def _check(self) -> PicoQuantSettings:
        dev = DEVICES[self.device]
        if self.sync_divider not in dev["syncdiv"]:
            raise ValueError(f"sync_divider: {show(self.sync_divider)} is not one of "
                             f"{dev['syncdiv']} ({self.device})")
        for key in ("sync_level_mv", "input_level_mv"):
            _check_within(key, getattr(self, key), dev["level_mv"], self.device)
        if dev["zerox_mv"] is not None:
            for key in ("sync_zero_cross_mv", "input_zero_cross_mv"):
                _check_within(key, getattr(self, key), dev["zerox_mv"], self.device)
        for channel, offset in self.input_offsets_ps.items():
            _check_within(f"input_offsets_ps[{channel}]", offset, (-99999, 99999), self.device,
                          " ps")
        if self.device == "picoharp":
            allowed = (1, 2)  # 1 = Channel 0 (sync connector), 2 = Channel 1
        else:
            allowed = tuple(range(9))  # 0 = sync, inputs 1–8
        bad = [c for c in self.channels if c not in allowed]
        if bad or not self.channels:
            raise ValueError(f"channels: {show(self.channels)} must be a non-empty subset of "
                             f"{allowed} ({self.device})")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels: {show(self.channels)} lists a channel twice")
        return self


def _check_within(key: str, value: int, bounds: tuple[int, int], device: str,
                  unit: str = " mV") -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{key}: {show(value)}{unit} is outside {low}–{high}{unit} ({device})")


class PicoQuantTagger:
    """TimeTagger protocol on top of an open PicoQuant library (ctypes).

    Parameters
    ----------
    lib : ctypes library
        The loaded hhlib/mhlib/phlib (or a fake with the same functions).
    settings : PicoQuantSettings
        Connection and input settings.
    """

    kind = "tagger"

    def __init__(self, lib: Any, settings: PicoQuantSettings):
        self._lib = lib
        self.settings = settings
        self.name = settings.name
        self._dev = DEVICES[settings.device]
        self._prefix = self._dev["prefix"]
        self._idx = settings.device_index
        self._closed = True
        self._running = False
        self._buffer = np.zeros(self._dev["ttreadmax"], dtype=np.uint32)
        self._t_read_ps = 0
        self.fifo_overruns = 0
        self._check_settings()
        version = ctypes.create_string_buffer(8)
        self._call("GetLibraryVersion", version)
        self.library_version = version.value.decode(errors="replace")
        serial = ctypes.create_string_buffer(8)
        self._call("OpenDevice", self._idx, serial)
        self._closed = False
        self.serial = serial.value.decode(errors="replace")
        try:
            self._configure()
        except Exception:
            self.close()
            raise
        self.channels: tuple[int, ...] = tuple(settings.channels)

    # ------------------------------------------------------------------ helpers
    def _call(self, func: str, *args: Any) -> None:
        """Call ``<prefix>_<func>`` and raise InstrumentError on a non-zero return."""
        code = getattr(self._lib, f"{self._prefix}_{func}")(*args)
        if code:
            text = ctypes.create_string_buffer(40)
            try:
                getattr(self._lib, f"{self._prefix}_GetErrorString")(text, code)
                message = text.value.decode(errors="replace")
            except (AttributeError, OSError):
                message = "unknown error"
            raise InstrumentError(
                f"tagger '{self.name}': {self._prefix}_{func} failed with {code} ({message})"
            )

    def _get_int(self, func: str, *args: Any) -> int:
        value = ctypes.c_int()
        self._call(func, *args, ctypes.byref(value))
        return int(value.value)

    def _refuse(self, action: str, allowed: str) -> Exception:
        return limit_error("tagger", self.name, action, allowed)

    def _check_level(self, what: str, level: int, zerox: int | None) -> None:
        lo, hi = self._dev["level_mv"]
        if not lo <= level <= hi:
            raise self._refuse(f"SET {what} LEVEL {level} mV", f"range {lo}–{hi} mV")
        if self._dev["zerox_mv"] is not None and zerox is not None:
            zlo, zhi = self._dev["zerox_mv"]
            if not zlo <= zerox <= zhi:
                raise self._refuse(f"SET {what} ZERO CROSS {zerox} mV", f"range {zlo}–{zhi} mV")

    def _check_channels(self, channels: tuple[int, ...], n_inputs: int | None = None) -> None:
        if self.settings.device == "picoharp":
            allowed, note = (1, 2), "1 = Channel 0 (sync connector), 2 = Channel 1"
        else:
            allowed, note = tuple(range((n_inputs or 8) + 1)), "0 = sync"
        bad = [c for c in channels if c not in allowed]
        if bad or not channels:
            raise self._refuse(
                f"SET CHANNELS {tuple(channels)}",
                f"non-empty subset of {allowed} ({note})",
            )

    def _check_settings(self) -> None:
        s = self.settings
        if s.sync_divider not in self._dev["syncdiv"]:
            raise self._refuse(f"SET SYNC DIVIDER {s.sync_divider}", f"one of {self._dev['syncdiv']}")
        self._check_level("SYNC", s.sync_level_mv, s.sync_zero_cross_mv)
        self._check_level("INPUT", s.input_level_mv, s.input_zero_cross_mv)
        for channel, offset in s.input_offsets_ps.items():
            if not -99999 <= offset <= 99999:
                raise self._refuse(f"SET OFFSET {offset} ps on input {channel}", "range ±99999 ps")
        self._check_channels(tuple(s.channels))

    def _record_format(self) -> str:
        if self.settings.record_format != "auto":
            return self.settings.record_format
        if self._dev["record_format"] is not None:
            return self._dev["record_format"]
        # HydraHarp: libraries before v3.0 deliver the V1 record layout.
        major = self.library_version.split(".")[0]
        return "hydraharp_v1_t2" if major in ("1", "2") else "hydraharp_v2_t2"

    def _configure(self) -> None:
        s = self.settings
        if self._prefix == "PH":
            self._call("Initialize", self._idx, MODE_T2)
        else:
            self._call("Initialize", self._idx, MODE_T2, REFSRC_INTERNAL)
        if self._prefix == "HH":
            self._call("Calibrate", self._idx)
        if self._prefix == "PH":
            self.n_inputs = 2
        else:
            self.n_inputs = self._get_int("GetNumOfInputChannels", self._idx)
        self._check_channels(tuple(s.channels), self.n_inputs)
        self._call("SetSyncDiv", self._idx, s.sync_divider)
        if self._prefix == "PH":
            # PicoHarp: both inputs are CFD channels; channel 0 is the sync input.
            self._call("SetInputCFD", self._idx, 0, s.sync_level_mv, s.sync_zero_cross_mv)
            self._call("SetInputCFD", self._idx, 1, s.input_level_mv, s.input_zero_cross_mv)
        elif self._prefix == "HH":
            self._call("SetSyncCFD", self._idx, s.sync_level_mv, s.sync_zero_cross_mv)
        else:
            self._call("SetSyncEdgeTrg", self._idx, s.sync_level_mv, int(s.sync_edge == "rising"))
        if self._prefix != "PH":
            for raw in range(self.n_inputs):
                if self._prefix == "HH":
                    self._call("SetInputCFD", self._idx, raw, s.input_level_mv,
                               s.input_zero_cross_mv)
                else:
                    self._call("SetInputEdgeTrg", self._idx, raw, s.input_level_mv,
                               int(s.input_edge == "rising"))
                self._call("SetInputChannelOffset", self._idx, raw,
                           s.input_offsets_ps.get(raw + 1, 0))
        self._enable_inputs(tuple(s.channels))
        resolution = ctypes.c_double()
        self._call("GetResolution", self._idx, ctypes.byref(resolution))
        self.resolution_ps = float(resolution.value)
        self.record_format = self._record_format()
        self._decoder = T2StreamDecoder(RECORD_FORMATS[self.record_format],
                                        self.resolution_ps * 1e-12)

    def _enable_inputs(self, channels: tuple[int, ...]) -> None:
        if self._prefix == "PH":
            return
        for raw in range(self.n_inputs):
            self._call("SetInputChannelEnable", self._idx, raw, int(raw + 1 in channels))

    # ------------------------------------------------------------------ protocol
    def start(self, channels: tuple[int, ...] | None = None) -> None:
        """Start a T2 measurement, returning tags of ``channels`` (0 = sync)."""
        if self._closed:
            raise InstrumentError(f"tagger '{self.name}': START refused: device is closed")
        if self._running:
            raise InstrumentError(f"tagger '{self.name}': START refused: already running")
        channels = tuple(self.channels if channels is None else channels)
        self._check_channels(channels, self.n_inputs)
        if channels != self.channels:
            self._enable_inputs(channels)
            self.channels = channels
        self._decoder.reset()
        self._t_read_ps = 0
        self._call("StartMeas", self._idx, self.settings.acquisition_time_ms)
        self._running = True

    def read(self) -> TagChunk:
        """Drain the FIFO and return the tags recorded since the previous read."""
        if not self._running:
            raise InstrumentError(f"tagger '{self.name}': READ refused: not running; call start()")
        flags = self._get_int("GetFlags", self._idx)
        overflow = bool(flags & self._dev["fifofull"])
        if overflow:
            self.fifo_overruns += 1
            log.error("tagger '%s': FIFO overrun, tags were lost (flags 0x%04x)", self.name, flags)
        if self._dev["sync_lost"] and flags & self._dev["sync_lost"]:
            log.warning("tagger '%s': sync signal lost (flags 0x%04x)", self.name, flags)
        pointer = self._buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
        blocks: list[np.ndarray] = []
        for _ in range(64):  # drain what is there, without looping forever at high rates
            n_actual = ctypes.c_int()
            if self._prefix == "MH":
                self._call("ReadFiFo", self._idx, pointer, ctypes.byref(n_actual))
            else:
                self._call("ReadFiFo", self._idx, pointer, self._dev["ttreadmax"],
                           ctypes.byref(n_actual))
            n = int(n_actual.value)
            if n:
                blocks.append(self._buffer[:n].copy())
            if n < self._dev["ttreadmax"]:
                break
        records = np.concatenate(blocks) if blocks else np.zeros(0, np.uint32)
        decoded = self._decoder.decode(records)
        keep = np.isin(decoded.channel, np.asarray(self.channels, dtype=np.uint8))
        t_ps, channel = decoded.t_ps[keep], decoded.channel[keep]
        t_start = self._t_read_ps
        t_stop = max(t_start, self._decoder.time_ps)
        if decoded.t_ps.size:
            t_stop = max(t_stop, int(decoded.t_ps[-1]) + 1)
        if decoded.marker_t_ps.size:
            t_stop = max(t_stop, int(decoded.marker_t_ps[-1]) + 1)
        self._t_read_ps = t_stop
        if self._get_int("CTCStatus", self._idx):
            log.info("tagger '%s': hardware acquisition time elapsed", self.name)
        return TagChunk(
            t_ps=t_ps.astype(np.int64),
            channel=channel.astype(np.uint8),
            t_start_ps=int(t_start),
            t_stop_ps=int(t_stop),
            overflow=overflow,
            missed_events=0,
        )

    def count_rates_hz(self) -> dict[int, float]:
        """Rates of the selected channels in counts/s (0 = sync, after the divider)."""
        rates: dict[int, float] = {}
        for channel in self.channels:
            if channel == SYNC_CHANNEL:  # never on a PicoHarp, whose inputs are 1 and 2
                rates[channel] = float(self._get_int("GetSyncRate", self._idx))
            else:
                rates[channel] = float(self._get_int("GetCountRate", self._idx, channel - 1))
        return rates

    def stop(self) -> None:
        """Stop the measurement. Safe when idle."""
        if self._running and not self._closed:
            self._running = False
            self._call("StopMeas", self._idx)
        self._running = False

    def snapshot(self) -> dict[str, Any]:
        """Current settings, with units in the keys."""
        s = self.settings
        return {
            "driver": "picoquant",
            "device": s.device,
            "serial": self.serial,
            "library_version": self.library_version,
            "record_format": self.record_format,
            "resolution_ps": self.resolution_ps,
            "channels": list(self.channels),
            "sync_divider": s.sync_divider,
            "sync_level_mv": s.sync_level_mv,
            "input_level_mv": s.input_level_mv,
            "fifo_overruns": self.fifo_overruns,
        }

    def close(self) -> None:
        """Stop and close the device. Safe to call twice."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            self._call("CloseDevice", self._idx)


def _load_library(settings: PicoQuantSettings) -> Any:
    dev = DEVICES[settings.device]
    names = (settings.library_path,) if settings.library_path else dev["libraries"]
    loader = ctypes.WinDLL if os.name == "nt" else ctypes.CDLL  # type: ignore[attr-defined]
    errors = []
    for name in names:
        try:
            return loader(name)
        except OSError as exc:
            errors.append(f"{name}: {exc}")
    raise MissingExtraError(
        f"tagger '{settings.name}': driver 'picoquant' needs the PicoQuant {settings.device} "
        f"programming library ({' or '.join(dev['libraries'])}), a vendor install from "
        f"picoquant.com (Support → Software); or set library_path. Tried: {'; '.join(errors)}"
    )


def open_instrument(settings: PicoQuantSettings) -> PicoQuantTagger:
    """Load the vendor library, open the device and configure it in T2 mode.

    Raises
    ------
    MissingExtraError
        When the PicoQuant library for ``settings.device`` cannot be loaded.
    """
    return PicoQuantTagger(_load_library(settings), settings)


#: Vendor shared libraries tried by :func:`open_instrument` (one per device family suffices).
VENDOR_LIBRARIES: tuple[str, ...] = tuple(
    name for dev in DEVICES.values() for name in dev["libraries"])

DRIVERS: dict[str, type[BaseModel]] = {"tagger": PicoQuantSettings}
