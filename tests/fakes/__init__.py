"""In-process fakes of vendor SDK objects, for testing the real drivers.

Each fake has the same method names and signatures as the SDK object it
stands in for (pylablib's ``AndorSDK2Camera``, ``PicamCamera`` and
``ShamrockSpectrograph``; the Swabian ``TimeTagger`` module; PicoQuant's
hhlib/mhlib/phlib and the Sepia II library called through ctypes). Each one
records every call in ``calls`` and refuses what the real SDK refuses, raising
the same exception class (or returning the same kind of error code) as the
real one, so tests can check both the exact calls a driver makes and that the
driver refuses out-of-range values before the SDK would.
"""

from __future__ import annotations

from typing import Any


class CallRecorder:
    """Mixin keeping an ordered log of SDK calls as ``(name, args, kwargs)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def call_names(self) -> list[str]:
        """Names of the recorded calls, in order."""
        return [c[0] for c in self.calls]

    def calls_to(self, name: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        """Arguments of every recorded call to ``name``."""
        return [(a, k) for n, a, k in self.calls if n == name]

    def clear_calls(self) -> None:
        """Forget the recorded calls."""
        self.calls.clear()
