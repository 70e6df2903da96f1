"""Logic shared by the pylablib camera adapters (Andor SDK2 and PICam).

:class:`SdkCameraMixin` holds what both adapters do the same way on top of a
pylablib camera object held in ``self._sdk``: turning SDK failures into
:class:`~micropl.drivers.interfaces.InstrumentError`, the checks that refuse an
exposure, ROI rows or an EM gain before anything reaches the SDK, single
exposures and ring-buffer streaming with lost-frame counting, ``stop`` and
``close``. Each adapter keeps its own settings model, its own ``_check_open``
(which decides whether streaming blocks an action) and everything
model-specific (read-mode mapping, gains, cooling).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from micropl.drivers.interfaces import Clock
from micropl.drivers.limits import (
    EM_GAIN_MAX,
    EM_GAIN_MAX_ADVANCED,
    em_gain_refusal,
    limit_error,
    range_refusal,
)
from micropl.errors import InstrumentError, InstrumentTimeout
from micropl.records import Frame, ReadMode

__all__ = ["EM_GAIN_MAX", "EM_GAIN_MAX_ADVANCED", "SdkCameraMixin"]

#: Shortest exposure the adapters accept, s.
MIN_EXPOSURE_S = 1e-6


class SdkCameraMixin:
    """Shared behaviour of the pylablib camera adapters.

    The adapter's ``__init__`` calls :meth:`_init_camera_state` first. The
    adapter provides ``_check_open(action)``, the ``temperature_c`` property
    and sets the class attributes ``_log`` (its module logger) and
    ``_lost_frames_note`` (text appended to the lost-frames warning).
    """

    kind = "camera"
    _log: logging.Logger = logging.getLogger(__name__)
    _lost_frames_note: str = ""

    _sdk: Any
    settings: Any
    name: str
    _read_mode: ReadMode
    _em_gain: int
    temperature_c: float

    def _check_open(self, action: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _init_camera_state(self, sdk: Any, settings: Any, clock: Clock | None) -> None:
        """Keep the SDK object and settings; read sensor geometry and exposure (s)."""
        self._sdk = sdk
        self.settings = settings
        self.name = settings.name
        self._clock = clock
        self._t0 = time.monotonic()
        self._closed = False
        self._streaming = False
        self._next_index = 0
        self._stream_t0_s = 0.0
        self._frame_period_s = 0.0
        self.lost_frames = 0
        width, height = sdk.get_detector_size()
        self.sensor_shape: tuple[int, int] = (int(height), int(width))
        self.pixel_um: float = float(sdk.get_pixel_size()[0]) * 1e6
        self._exposure_s = float(sdk.get_exposure())

    # ------------------------------------------------------------------ helpers
    @contextlib.contextmanager
    def _sdk_errors(self, action: str) -> Iterator[None]:
        """Turn SDK failures into InstrumentError naming the camera and the action."""
        try:
            yield
        except InstrumentError:
            raise
        except TimeoutError as exc:
            raise InstrumentTimeout(f"camera '{self.name}': {action} timed out: {exc}") from exc
        except (RuntimeError, OSError) as exc:
            raise InstrumentError(f"camera '{self.name}': {action} failed: {exc}") from exc

    def _refuse(self, action: str, allowed: str) -> InstrumentError:
        return limit_error("camera", self.name, action, allowed)

    def _now(self) -> float:
        """Time in s from the clock, or wall time since connection without one."""
        return self._clock.now() if self._clock is not None else time.monotonic() - self._t0

    # ------------------------------------------------------------------ checks
    @property
    def exposure_s(self) -> float:
        """Exposure time in s (as the SDK applied it)."""
        return self._exposure_s

    @property
    def exposure_range_s(self) -> tuple[float, float]:
        """Shortest and longest exposure accepted, s (``max_exposure_s``; no SDK call)."""
        return MIN_EXPOSURE_S, float(self.settings.max_exposure_s)

    def em_gain_range(self, advanced: bool | None = None) -> tuple[int, int]:
        """Lowest and highest EM gain accepted with advanced mode ``advanced`` (None: as
        it is now); 1–1 on a camera without an EM register. No SDK call."""
        if not getattr(self, "has_em", True):
            return 1, 1
        on = bool(getattr(self, "em_gain_advanced", False)) if advanced is None else advanced
        return 1, EM_GAIN_MAX_ADVANCED if on else EM_GAIN_MAX

    def _check_exposure(self, value_s: float) -> str:
        """Refuse an exposure outside :attr:`exposure_range_s`; return the action text."""
        action = f"SET EXPOSURE {value_s:g} s"
        allowed = range_refusal(value_s, *self.exposure_range_s, "s")
        if allowed is not None:
            raise self._refuse(action, allowed)
        self._check_open(action)
        return action

    def _check_roi_rows(self, rows: tuple[int, int]) -> tuple[int, int, str]:
        """Refuse rows outside the sensor; return ``(start, stop, action)``."""
        start, stop = (int(r) for r in rows)
        height = self.sensor_shape[0]
        action = f"SET ROI ROWS {start}–{stop}"
        if not 0 <= start < stop <= height:
            raise self._refuse(action, f"0 ≤ start < stop ≤ {height}")
        return start, stop, action

    def _check_em_gain_advanced(self, action: str, gain: int, advanced: bool) -> None:
        """Refuse a gain above :data:`EM_GAIN_MAX` unless advanced EM gain is on."""
        if gain > EM_GAIN_MAX and em_gain_refusal(gain, advanced) is not None:
            raise self._refuse(action, f"range 1–{EM_GAIN_MAX} unless em_gain_advanced is on")

    def _check_em_gain_cold(self, action: str) -> None:
        """Refuse EM gain above 1 while the sensor is warmer than the configured limit."""
        temperature_c = self.temperature_c
        limit_c = self.settings.em_gain_max_temperature_c
        if temperature_c > limit_c:
            raise self._refuse(
                action,
                f"sensor at {temperature_c:.1f} °C; EM gain above 1 needs ≤ {limit_c:g} °C",
            )

    # ------------------------------------------------------------------ acquisition
    def _to_frame(self, data: np.ndarray, index: int, t_s: float) -> Frame:
        counts = np.asarray(data)
        if self._read_mode == "fvb":
            counts = counts.reshape(-1)
        return Frame(
            counts=counts,
            exposure_s=self._exposure_s,
            t_s=t_s,
            index=int(index),
            em_gain=self._em_gain,
            read_mode=self._read_mode,
        )

    def _acquire_one(self, mode: str) -> tuple[float, Any, Any]:
        """Run one SDK acquisition of one frame in ``mode``.

        Returns
        -------
        tuple
            ``(t_s, got, result)``: start time in s, what ``wait_for_frame``
            returned and what ``read_multiple_images(return_info=True)`` returned.
        """
        timeout_s = self._exposure_s + self.settings.frame_timeout_s
        t_s = self._now()
        with self._sdk_errors("ACQUIRE"):
            self._sdk.setup_acquisition(mode=mode, nframes=1)
            self._sdk.start_acquisition()
            try:
                got = self._sdk.wait_for_frame(timeout=timeout_s)
                result = self._sdk.read_multiple_images(return_info=True)
            finally:
                self._sdk.stop_acquisition()
        return t_s, got, result

    def _begin_stream(self, action: str, **setup: Any) -> None:
        """Set up the SDK ring buffer with ``setup_acquisition(**setup)`` and start it."""
        with self._sdk_errors(action):
            self._sdk.setup_acquisition(**setup)
            self._frame_period_s = float(self._sdk.get_frame_timings()[1])
            self._stream_t0_s = self._now()
            self._sdk.start_acquisition()
        self._streaming = True
        self._next_index = 0
        self.lost_frames = 0

    def _frames_from_ring(self, frames: Any, infos: Any) -> list[Frame]:
        """Frames from the ring buffer, counting and logging gaps in the SDK frame indices."""
        out: list[Frame] = []
        for data, info in zip(frames, infos):
            index = int(info.frame_index)
            if index > self._next_index:
                lost = index - self._next_index
                self.lost_frames += lost
                self._log.warning(
                    "camera '%s': %d frame(s) lost before frame %d%s",
                    self.name, lost, index, self._lost_frames_note,
                )
            self._next_index = index + 1
            t_s = self._stream_t0_s + index * self._frame_period_s
            out.append(self._to_frame(data, index, t_s))
        return out

    def stop(self) -> None:
        """Stop any acquisition. Safe when idle."""
        if self._closed:
            return
        with self._sdk_errors("STOP"):
            self._sdk.stop_acquisition()
        self._streaming = False

    # ------------------------------------------------------------------ housekeeping
    def _readout_snapshot(self) -> dict[str, Any]:
        """Read-mode and temperature entries of ``snapshot()``, units in the keys."""
        return {
            "read_mode": self._read_mode,
            "roi_rows": list(self._roi_rows),
            "temperature_c": self.temperature_c,
            "target_temperature_c": self.target_temperature_c,
            "temperature_status": self.temperature_status,
        }

    def close(self) -> None:
        """Stop acquiring and release the camera. Safe to call twice."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            with self._sdk_errors("CLOSE"):
                self._sdk.close()
