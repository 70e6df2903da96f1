"""Fake of PicoQuant's hhlib / mhlib / phlib called through ctypes.

Functions are named and take arguments as in PicoQuant's published C demos
(``HH_OpenDevice(devidx, serial)``, ``HH_Initialize(devidx, mode, refsource)``,
``HH_ReadFiFo(devidx, buffer, count, &nactual)``, ``MH_ReadFiFo(devidx, buffer,
&nactual)``, ``PH_Initialize(devidx, mode)`` ...). Output arguments are ctypes
``byref`` objects, string buffers and ``POINTER(c_uint)`` buffers, exactly what
a ctypes caller passes to the real DLL. Each function returns 0 or a negative
error code, like the real libraries, and refuses what they refuse: calls before
``OpenDevice``/``Initialize``, a non-T2 mode, sync dividers and CFD/trigger
levels outside the library limits (``hhdefin.h``/``phdefin.h``/``mhdefin.h``),
a ``ReadFiFo`` count other than ``TTREADMAX``, an invalid input channel.

Test hooks: :meth:`push_records` queues raw T2 records for the FIFO;
:attr:`fifo_full` raises the FIFO-full flag.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import CallRecorder

ERROR_NONE = 0
ERROR_DEVICE_OPEN_FAIL = -1
ERROR_DEVICE_NOT_OPEN = -10
ERROR_INVALID_ARGUMENT = -17
ERROR_INVALID_MODE = -18
ERROR_NOT_INITIALIZED = -22

_MESSAGES = {
    ERROR_NONE: "ERROR_NONE",
    ERROR_DEVICE_OPEN_FAIL: "ERROR_DEVICE_OPEN_FAIL",
    ERROR_DEVICE_NOT_OPEN: "ERROR_DEVICE_NOT_OPEN",
    ERROR_INVALID_ARGUMENT: "ERROR_INVALID_ARGUMENT",
    ERROR_INVALID_MODE: "ERROR_INVALID_MODE",
    ERROR_NOT_INITIALIZED: "ERROR_NOT_INITIALIZED",
}

FAMILIES = {
    # prefix: (TTREADMAX, FLAG_FIFOFULL, sync div max, CFD level max mV, CFD zero-cross max mV)
    "HH": dict(ttreadmax=131072, fifofull=0x0002, syncdivmax=16, discrmax=1000, zcmax=40),
    "MH": dict(ttreadmax=1048576, fifofull=0x0002, syncdivmax=16, trglvl=(-1200, 1200)),
    "PH": dict(ttreadmax=131072, fifofull=0x0003, syncdivmax=8, discrmax=800, zcmax=20),
}


def _set(out, value) -> None:
    """Write through a ctypes byref()/pointer argument."""
    target = out._obj if hasattr(out, "_obj") else out.contents
    target.value = value


class FakePicoQuantLib(CallRecorder):
    """One PicoQuant library (``family`` "HH", "MH" or "PH") with one device attached."""

    def __init__(self, family="HH", *, n_inputs=4, resolution_ps=1.0, library_version="3.0",
                 serial="1020304"):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(family)
        self.family = family
        self.limits = FAMILIES[family]
        self.n_inputs = 2 if family == "PH" else n_inputs
        self.resolution_ps = resolution_ps
        self.library_version = library_version
        self.serial = serial
        self.opened = False
        self.mode = None
        self.running = False
        self.ctc_done = False
        self.fifo_full = False
        self.sync_div = 1
        self.queue = np.zeros(0, np.uint32)
        self.count_rates = {ch: 1000 * (ch + 1) for ch in range(self.n_inputs)}
        self.sync_rate = 10_000_000

    # ------------------------------------------------------------------ dispatch
    def __getattr__(self, attr):
        prefix, _, name = attr.partition("_")
        if prefix != self.__dict__.get("family") or not name:
            raise AttributeError(attr)
        impl = getattr(type(self), "_" + name, None)
        if impl is None:
            raise AttributeError(attr)

        def call(*args):
            self._record(attr, *args)
            return impl(self, *args)

        return call

    def push_records(self, records) -> None:
        """Queue raw 32-bit T2 records for the FIFO (test hook)."""
        self.queue = np.concatenate([self.queue, np.asarray(records, np.uint32)])

    def _ready(self, devidx) -> int:
        if devidx != 0 or not self.opened:
            return ERROR_DEVICE_NOT_OPEN
        if self.mode is None:
            return ERROR_NOT_INITIALIZED
        return ERROR_NONE

    # ------------------------------------------------------------------ library
    def _GetLibraryVersion(self, vers):
        vers.value = self.library_version.encode()
        return ERROR_NONE

    def _GetErrorString(self, errstring, errcode):
        errstring.value = _MESSAGES.get(errcode, "ERROR_UNKNOWN").encode()
        return ERROR_NONE

    def _OpenDevice(self, devidx, serial):
        if devidx != 0:
            return ERROR_DEVICE_OPEN_FAIL
        self.opened = True
        serial.value = self.serial.encode()
        return ERROR_NONE

    def _CloseDevice(self, devidx):
        self.opened = False
        self.running = False
        self.mode = None
        return ERROR_NONE

    def _Initialize(self, devidx, mode, *refsource):
        if devidx != 0 or not self.opened:
            return ERROR_DEVICE_NOT_OPEN
        if (self.family == "PH") != (len(refsource) == 0):
            raise TypeError("wrong number of arguments for Initialize")  # ctypes would crash
        if mode not in (0, 2, 3):
            return ERROR_INVALID_MODE
        self.mode = mode
        return ERROR_NONE

    def _Calibrate(self, devidx):
        return self._ready(devidx)

    def _GetNumOfInputChannels(self, devidx, nchannels):
        err = self._ready(devidx)
        if err == ERROR_NONE:
            _set(nchannels, self.n_inputs)
        return err

    def _GetResolution(self, devidx, resolution):
        err = self._ready(devidx)
        if err == ERROR_NONE:
            _set(resolution, float(self.resolution_ps))
        return err

    # ------------------------------------------------------------------ inputs
    def _SetSyncDiv(self, devidx, div):
        err = self._ready(devidx)
        if err:
            return err
        if div < 1 or div > self.limits["syncdivmax"] or div & (div - 1):
            return ERROR_INVALID_ARGUMENT
        self.sync_div = div
        return ERROR_NONE

    def _cfd_ok(self, level, zerox) -> bool:
        return 0 <= level <= self.limits["discrmax"] and 0 <= zerox <= self.limits["zcmax"]

    def _SetSyncCFD(self, devidx, level, zerox):
        err = self._ready(devidx)
        if err:
            return err
        return ERROR_NONE if self._cfd_ok(level, zerox) else ERROR_INVALID_ARGUMENT

    def _SetInputCFD(self, devidx, channel, level, zerox):
        err = self._ready(devidx)
        if err:
            return err
        if not 0 <= channel < self.n_inputs or not self._cfd_ok(level, zerox):
            return ERROR_INVALID_ARGUMENT
        return ERROR_NONE

    def _edge_ok(self, level, edge) -> bool:
        lo, hi = self.limits["trglvl"]
        return lo <= level <= hi and edge in (0, 1)

    def _SetSyncEdgeTrg(self, devidx, level, edge):
        err = self._ready(devidx)
        if err:
            return err
        return ERROR_NONE if self._edge_ok(level, edge) else ERROR_INVALID_ARGUMENT

    def _SetInputEdgeTrg(self, devidx, channel, level, edge):
        err = self._ready(devidx)
        if err:
            return err
        if not 0 <= channel < self.n_inputs or not self._edge_ok(level, edge):
            return ERROR_INVALID_ARGUMENT
        return ERROR_NONE

    def _SetInputChannelEnable(self, devidx, channel, enable):
        err = self._ready(devidx)
        if err:
            return err
        return ERROR_NONE if 0 <= channel < self.n_inputs else ERROR_INVALID_ARGUMENT

    def _SetInputChannelOffset(self, devidx, channel, value):
        err = self._ready(devidx)
        if err:
            return err
        ok = 0 <= channel < self.n_inputs and -99999 <= value <= 99999
        return ERROR_NONE if ok else ERROR_INVALID_ARGUMENT

    def _GetSyncRate(self, devidx, syncrate):
        err = self._ready(devidx)
        if err == ERROR_NONE:
            _set(syncrate, self.sync_rate // self.sync_div)
        return err

    def _GetCountRate(self, devidx, channel, cntrate):
        err = self._ready(devidx)
        if err:
            return err
        if not 0 <= channel < self.n_inputs:
            return ERROR_INVALID_ARGUMENT
        _set(cntrate, self.count_rates[channel])
        return ERROR_NONE

    # ------------------------------------------------------------------ measurement
    def _StartMeas(self, devidx, tacq):
        err = self._ready(devidx)
        if err:
            return err
        if not 1 <= tacq <= 360_000_000:
            return ERROR_INVALID_ARGUMENT
        self.running = True
        self.ctc_done = False
        return ERROR_NONE

    def _StopMeas(self, devidx):
        err = self._ready(devidx)
        if err:
            return err
        self.running = False
        return ERROR_NONE

    def _CTCStatus(self, devidx, ctcstatus):
        err = self._ready(devidx)
        if err == ERROR_NONE:
            _set(ctcstatus, 1 if self.ctc_done else 0)
        return err

    def _GetFlags(self, devidx, flags):
        err = self._ready(devidx)
        if err == ERROR_NONE:
            _set(flags, self.limits["fifofull"] if self.fifo_full else 0)
        return err

    def _ReadFiFo(self, devidx, buffer, *args):
        err = self._ready(devidx)
        if err:
            return err
        if self.mode not in (2, 3):
            return ERROR_INVALID_MODE
        ttreadmax = self.limits["ttreadmax"]
        if self.family == "MH":
            (nactual,) = args
        else:
            count, nactual = args
            if count != ttreadmax:
                return ERROR_INVALID_ARGUMENT
        n = min(ttreadmax, self.queue.size)
        out = np.ctypeslib.as_array(ctypes.cast(buffer, ctypes.POINTER(ctypes.c_uint32)),
                                    shape=(ttreadmax,))
        out[:n] = self.queue[:n]
        self.queue = self.queue[n:]
        _set(nactual, n)
        return ERROR_NONE
