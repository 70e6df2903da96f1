"""Fake of PicoQuant's Sepia II library (``Sepia2_Lib.dll``) called through ctypes.

Function names and arguments follow the Sepia II library manual
(``SEPIA2_USB_OpenDevice(iDevIdx, cProductModel, cSerialNumber)``,
``SEPIA2_FWR_GetModuleMap(iDevIdx, iPerformRestart, &iModuleCount)``,
``SEPIA2_SCM_Get/SetLaserSoftLock``, ``SEPIA2_SCM_GetLaserLocked``,
``SEPIA2_SLM_Get/SetIntensityFineStep`` (per mille) and
``SEPIA2_SLM_Get/SetPulseParameters(iDevIdx, iSlotId, iFreq, bPulseMode)``).
Output arguments are ctypes ``byref`` objects and string buffers. Each call
returns 0 or a negative error code and refuses a wrong slot, an intensity above
1000 per mille, a frequency index outside the SLM 828's 0–7, and anything
before the device is opened and its module map read. The error numbers are this
fake's own; the driver only relies on "non-zero" and ``SEPIA2_LIB_DecodeError``.
"""

from __future__ import annotations

from . import CallRecorder
from .picoquant import _set

ERR_NONE = 0
ERR_NOT_OPEN = -9001
ERR_NO_MAP = -9002
ERR_ILLEGAL_SLOT = -9003
ERR_ILLEGAL_PARAMETER = -9004
_TEXT = {ERR_NOT_OPEN: "device not open", ERR_NO_MAP: "module map not read",
         ERR_ILLEGAL_SLOT: "illegal slot number", ERR_ILLEGAL_PARAMETER: "illegal parameter"}


class FakeSepia2Lib(CallRecorder):
    """A PDL 828 "Sepia II" with an SCM 828 (slot 100) and an SLM 828 (slot 200)."""

    def __init__(self, *, scm_slot=100, slm_slot=200, key_locked=False):
        super().__init__()
        self.scm_slot, self.slm_slot = scm_slot, slm_slot
        self.opened = False
        self.mapped = False
        self.key_locked = key_locked
        self.soft_locked = True
        self.intensity_permille = 0
        self.freq_index = 0  # 80 MHz
        self.pulse_mode = 1

    def __getattr__(self, attr):
        if not attr.startswith("SEPIA2_"):
            raise AttributeError(attr)
        impl = getattr(type(self), "_" + attr[len("SEPIA2_"):], None)
        if impl is None:
            raise AttributeError(attr)

        def call(*args):
            self._record(attr, *args)
            return impl(self, *args)

        return call

    def _ready(self, dev, slot=None, want=None):
        if dev != 0 or not self.opened:
            return ERR_NOT_OPEN
        if not self.mapped:
            return ERR_NO_MAP
        if slot is not None and slot != want:
            return ERR_ILLEGAL_SLOT
        return ERR_NONE

    def _LIB_GetVersion(self, version):
        version.value = b"1.2.64.753"
        return ERR_NONE

    def _LIB_DecodeError(self, code, text):
        text.value = _TEXT.get(code, "unknown error").encode()
        return ERR_NONE

    def _USB_OpenDevice(self, dev, model, serial):
        if dev != 0:
            return ERR_NOT_OPEN
        self.opened = True
        model.value = b"Sepia II"
        serial.value = b"1033077"
        return ERR_NONE

    def _USB_CloseDevice(self, dev):
        self.opened = self.mapped = False
        return ERR_NONE

    def _FWR_GetModuleMap(self, dev, restart, count):
        if dev != 0 or not self.opened:
            return ERR_NOT_OPEN
        self.mapped = True
        _set(count, 3)
        return ERR_NONE

    def _FWR_FreeModuleMap(self, dev):
        self.mapped = False
        return ERR_NONE

    def _SCM_GetLaserLocked(self, dev, slot, locked):
        err = self._ready(dev, slot, self.scm_slot)
        if not err:
            _set(locked, int(self.key_locked or self.soft_locked))
        return err

    def _SCM_GetLaserSoftLock(self, dev, slot, soft):
        err = self._ready(dev, slot, self.scm_slot)
        if not err:
            _set(soft, int(self.soft_locked))
        return err

    def _SCM_SetLaserSoftLock(self, dev, slot, soft):
        err = self._ready(dev, slot, self.scm_slot)
        if not err:
            self.soft_locked = bool(soft)
        return err

    def _SLM_GetIntensityFineStep(self, dev, slot, intensity):
        err = self._ready(dev, slot, self.slm_slot)
        if not err:
            _set(intensity, self.intensity_permille)
        return err

    def _SLM_SetIntensityFineStep(self, dev, slot, intensity):
        err = self._ready(dev, slot, self.slm_slot)
        if err:
            return err
        if not 0 <= intensity <= 1000:
            return ERR_ILLEGAL_PARAMETER
        self.intensity_permille = int(intensity)
        return ERR_NONE

    def _SLM_GetPulseParameters(self, dev, slot, freq, pulse_mode, head_type):
        err = self._ready(dev, slot, self.slm_slot)
        if not err:
            _set(freq, self.freq_index)
            _set(pulse_mode, self.pulse_mode)
            _set(head_type, 1)
        return err

    def _SLM_SetPulseParameters(self, dev, slot, freq, pulse_mode):
        err = self._ready(dev, slot, self.slm_slot)
        if err:
            return err
        if not 0 <= freq <= 7 or pulse_mode not in (0, 1):
            return ERR_ILLEGAL_PARAMETER
        self.freq_index, self.pulse_mode = int(freq), int(pulse_mode)
        return ERR_NONE
