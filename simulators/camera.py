"""Simulated EMCCD camera behind the simulated spectrograph.

Signal chain of one frame (all per pixel, or per binned column in FVB)
----------------------------------------------------------------------
1. Photons: the spectrum under the spot (:mod:`micropl.simulators.spectra_model`)
   on the spectrograph's pixel edges, spread vertically as a Gaussian of FWHM
   ``spot_rows_fwhm`` rows centred on the sensor, times ``quantum_efficiency``.
2. Electrons entering the EM register: Poisson(photoelectrons + dark current ×
   exposure + CIC). In FVB mode the whole column is binned, so its dark current
   and CIC are ``n_rows`` times a pixel's. Cosmic-ray hits add 10³–10⁴ e⁻
   (log-uniform) to single pixels; their number per frame is Poisson with mean
   ``cosmic_rays_per_min × exposure / 60`` over the whole sensor.
3. EM register (gain G > 1): Gamma(shape = n electrons, scale = G), which gives
   the excess-noise factor √2 at high gain (variance ≈ 2·G²·n). With G = 1 the
   conventional amplifier is used and the electrons pass unchanged.
4. Read noise: Gaussian of ``read_noise_e`` electrons rms added at the output
   node, i.e. **after** the EM register. Referred to the input (photoelectrons)
   it is ``read_noise_e / G``: 50 e⁻ at G = 1, 0.17 e⁻ at G = 300.
5. ADU = output electrons / ``e_per_adu`` + ``bias_adu``, rounded to an integer
   and clipped to the 16-bit range 0–65535. Frames hold ``int32`` arrays (so
   that subtracting the bias never wraps around).

In photoelectron units ``(ADU − bias) · e_per_adu / G`` a pixel therefore has
mean ``n`` and variance ``2n + (read_noise_e/G)²`` at high gain, and
``n + read_noise_e²`` at G = 1.

Temperature
-----------
The sensor starts at ``start_temperature_c`` and, while ``cooler_on`` (on from
construction), cools linearly at ``cooling_rate_c_per_s`` of clock time towards
``target_temperature_c``; with the cooler off it warms back at half that rate.
EM gain above 1 is refused while the sensor is warmer than
``max_gain_temperature_c`` — so a camera constructed warm starts at gain 1 (the
configured gain is refused and logged) and acquisitions at gain > 1 are refused
if the sensor has warmed up since.

Noise is drawn from one generator seeded from ``(sample seed, "camera", name)``
and advanced in call order, so the same seed and the same calls give the same
frames.
"""

from __future__ import annotations

import logging
import math
import zlib
from typing import Any

import numpy as np
from scipy.special import ndtr

from micropl.drivers.limits import (
    EM_GAIN_MAX,
    EM_GAIN_MAX_ADVANCED,
    em_gain_refusal,
    limit_error,
    range_refusal,
)
from micropl.errors import InstrumentError
from micropl.records import Frame, ReadMode
from micropl.simulators.faults import FaultInjector
from micropl.simulators.settings import SimCameraSettings
from micropl.simulators.spectra_model import sensor_photons_per_column
from micropl.simulators.world import SimulatedWorld

__all__ = ["SimCamera", "emccd_readout", "ADU_MAX"]

log = logging.getLogger(__name__)

_KIND = "camera"
#: Largest value of the 16-bit ADC.
ADU_MAX = 65535
_GAIN_NORMAL_MAX = EM_GAIN_MAX
_GAIN_ADVANCED_MAX = EM_GAIN_MAX_ADVANCED
_EXPOSURE_MIN_S = 1e-6
_EXPOSURE_MAX_S = 3600.0
_COSMIC_E_RANGE = (1.0e3, 1.0e4)
_CAMERA_STREAM = 0xCA


def emccd_readout(electrons: np.ndarray, em_gain: int, read_noise_e: float, e_per_adu: float,
                  bias_adu: float, rng: np.random.Generator) -> np.ndarray:
    """Turn electrons entering the EM register into raw ADU.

    Parameters
    ----------
    electrons : ndarray of int, any shape
        Electrons per pixel before multiplication (photo + dark + CIC + cosmic).
    em_gain : int
        EM gain G; 1 selects the conventional amplifier (no multiplication).
    read_noise_e : float
        Output-node read noise in e⁻ rms, added after the EM register.
    e_per_adu : float
        Electrons per ADU of the pre-amplifier.
    bias_adu : float
        Bias offset in ADU.
    rng : numpy.random.Generator
        Noise source.

    Returns
    -------
    ndarray of int32, same shape
        Raw ADU including the bias, clipped to 0–65535.
    """
    n = np.asarray(electrons)
    if em_gain > 1:
        out = rng.gamma(n.astype(np.float64), float(em_gain))
    else:
        out = n.astype(np.float64)
    if read_noise_e > 0:
        out += rng.normal(0.0, read_noise_e, n.shape)
    adu = np.rint(out / e_per_adu + bias_adu)
    return np.clip(adu, 0, ADU_MAX).astype(np.int32)


class SimCamera:
    """A simulated EMCCD; satisfies :class:`~micropl.drivers.interfaces.Camera`.

    Parameters
    ----------
    settings : SimCameraSettings
        Sensor, noise, temperature, limits and faults.
    world : SimulatedWorld
        The world it looks at (through ``world.spectrograph``); attaches itself
        as ``world.camera``.

    Notes
    -----
    Setting a property or calling ``acquire``, ``start_stream``,
    ``read_frames`` or reading ``temperature_c`` is a device call subject to
    injected faults; ``stop`` and ``close`` never fail. ``acquire`` always
    returns its frame (index 0); the ``drop_frame_every_n`` fault applies to
    streamed frames, which then show gaps in ``Frame.index``. Streamed frames
    are computed when read, from the world as it is at that moment.
    """

    def __init__(self, settings: SimCameraSettings, world: SimulatedWorld) -> None:
        self.settings = settings
        self.world = world
        self.name = settings.name
        self.sensor_shape = (int(settings.sensor_shape[0]), int(settings.sensor_shape[1]))
        if min(self.sensor_shape) < 1:
            raise limit_error(_KIND, self.name, f"sensor shape {self.sensor_shape}",
                              "at least 1×2 pixels")
        self.pixel_um = float(settings.pixel_um)
        self.e_per_adu = float(settings.e_per_adu)
        #: Largest raw value of the ADC, ADU: a pixel there is saturated.
        self.adc_max_adu = ADU_MAX
        self._faults = FaultInjector(settings.faults, world.clock, _KIND, self.name)
        self._exposure_s = float(settings.exposure_s)
        self._read_mode: ReadMode = settings.read_mode
        n_rows = self.sensor_shape[0]
        half = min(10, n_rows // 2)
        self._roi_rows = (n_rows // 2 - half, n_rows // 2 + half) if half else (0, n_rows)
        self._cooler_on = True
        self._target_c = float(settings.target_temperature_c)
        self._temp_c = float(settings.start_temperature_c)
        self._temp_t_s = world.clock.now()
        self._advanced = bool(settings.em_gain_advanced)
        gain = int(settings.em_gain)
        if em_gain_refusal(gain, self._advanced) is not None:
            raise self._gain_refusal(gain)
        if gain > 1 and self._temp_c > settings.max_gain_temperature_c:
            log.info("camera '%s': sensor at %.1f °C, starting at EM gain 1 instead of %d",
                     self.name, self._temp_c, gain)
            gain = 1
        self._em_gain = gain
        self._rng = np.random.default_rng(
            [world.sample.seed, _CAMERA_STREAM, zlib.crc32(self.name.encode())])
        self._streaming = False
        self._stream_t0_s = 0.0
        self._stream_next = 0
        self._closed = False
        self._trigger_mode = "internal"
        self._trigger_seen_s = -math.inf
        self._trigger_busy_s = -math.inf
        world.camera = self

    # ------------------------------------------------------------------ temperature
    def _update_temperature(self) -> float:
        now = self.world.clock.now()
        dt = max(0.0, now - self._temp_t_s)
        self._temp_t_s = now
        if self._cooler_on:
            target, rate = self._target_c, self.settings.cooling_rate_c_per_s
        else:
            target, rate = self.settings.start_temperature_c, 0.5 * self.settings.cooling_rate_c_per_s
        step = rate * dt
        if self._temp_c > target:
            self._temp_c = max(target, self._temp_c - step)
        else:
            self._temp_c = min(target, self._temp_c + step)
        return self._temp_c

    @property
    def temperature_c(self) -> float:
        """Sensor temperature now, °C."""
        self._faults.check("read temperature")
        return self._update_temperature()

    @property
    def target_temperature_c(self) -> float:
        """Cooler set point, °C."""
        return self._target_c

    @target_temperature_c.setter
    def target_temperature_c(self, value: float) -> None:
        value = float(value)
        if not -100.0 <= value <= 20.0:
            raise limit_error(_KIND, self.name, f"target temperature {value:g} °C",
                              "range -100–20 °C")
        self._faults.check(f"target temperature {value:g} °C")
        self._update_temperature()
        self._target_c = value

    @property
    def cooler_on(self) -> bool:
        """Whether the thermoelectric cooler runs."""
        return self._cooler_on

    @cooler_on.setter
    def cooler_on(self, value: bool) -> None:
        self._faults.check("cooler on" if value else "cooler off")
        self._update_temperature()
        self._cooler_on = bool(value)

    # ------------------------------------------------------------------ gain
    def _gain_refusal(self, gain: int):
        return limit_error(_KIND, self.name, f"EM gain {gain}",
                           em_gain_refusal(gain, self._advanced) or "refused")

    def em_gain_range(self, advanced: bool | None = None) -> tuple[int, int]:
        """Lowest and highest EM gain accepted with advanced mode ``advanced`` (None: now).

        Not a device call. A warm sensor refuses any gain above 1 apart from this.
        """
        on = self._advanced if advanced is None else bool(advanced)
        return 1, _GAIN_ADVANCED_MAX if on else _GAIN_NORMAL_MAX

    @property
    def exposure_range_s(self) -> tuple[float, float]:
        """Shortest and longest exposure accepted, s (not a device call)."""
        return _EXPOSURE_MIN_S, _EXPOSURE_MAX_S

    def _check_gain_temperature(self, gain: int, action: str) -> None:
        temp = self._update_temperature()
        limit = self.settings.max_gain_temperature_c
        if gain > 1 and temp > limit:
            raise limit_error(_KIND, self.name, action,
                              f"sensor at {temp:.1f} °C, EM gain above 1 needs ≤ {limit:g} °C")

    @property
    def em_gain(self) -> int:
        """EM gain (1 = conventional amplifier)."""
        return self._em_gain

    @em_gain.setter
    def em_gain(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value:
            raise limit_error(_KIND, self.name, f"EM gain {value!r}", "an integer 1–1000")
        gain = int(value)
        if em_gain_refusal(gain, self._advanced) is not None:
            raise self._gain_refusal(gain)
        self._check_gain_temperature(gain, f"EM gain {gain}")
        self._faults.check(f"EM gain {gain}")
        self._em_gain = gain

    @property
    def em_gain_advanced(self) -> bool:
        """Whether EM gains above 300 (up to 1000) are allowed."""
        return self._advanced

    @em_gain_advanced.setter
    def em_gain_advanced(self, value: bool) -> None:
        value = bool(value)
        if not value and self._em_gain > _GAIN_NORMAL_MAX:
            raise limit_error(_KIND, self.name, "advanced mode off",
                              f"EM gain {self._em_gain} is above {_GAIN_NORMAL_MAX}; lower it first")
        self._faults.check("advanced mode " + ("on" if value else "off"))
        self._advanced = value

    # ------------------------------------------------------------------ exposure, modes
    def _refuse_while_streaming(self, action: str) -> None:
        if self._streaming:
            raise InstrumentError(f"{_KIND} '{self.name}': {action} refused: "
                                  "stop the stream first")

    @property
    def exposure_s(self) -> float:
        """Exposure time per frame, s."""
        return self._exposure_s

    @exposure_s.setter
    def exposure_s(self, value: float) -> None:
        value = float(value)
        allowed = range_refusal(value, *self.exposure_range_s, "s")
        if allowed is not None:
            raise limit_error(_KIND, self.name, f"exposure {value:g} s", allowed)
        self._refuse_while_streaming(f"exposure {value:g} s")
        self._faults.check(f"exposure {value:g} s")
        self._exposure_s = value

    @property
    def read_mode(self) -> ReadMode:
        """``"fvb"``, ``"image"`` or ``"roi"``."""
        return self._read_mode

    @read_mode.setter
    def read_mode(self, value: ReadMode) -> None:
        if value not in ("fvb", "image", "roi"):
            raise limit_error(_KIND, self.name, f"read mode {value!r}", "one of fvb, image, roi")
        self._refuse_while_streaming(f"read mode {value}")
        self._faults.check(f"read mode {value}")
        self._read_mode = value

    @property
    def roi_rows(self) -> tuple[int, int]:
        """Rows ``[first, stop)`` (0-based, stop exclusive) read in ROI mode."""
        return self._roi_rows

    @roi_rows.setter
    def roi_rows(self, value: tuple[int, int]) -> None:
        first, stop = (int(v) for v in value)
        n_rows = self.sensor_shape[0]
        if not 0 <= first < stop <= n_rows:
            raise limit_error(_KIND, self.name, f"ROI rows {first}–{stop}",
                              f"0 ≤ first < stop ≤ {n_rows}")
        self._refuse_while_streaming("ROI rows")
        self._faults.check(f"ROI rows {first}–{stop}")
        self._roi_rows = (first, stop)

    # ------------------------------------------------------------------ frames
    def _row_weights(self) -> np.ndarray:
        n_rows = self.sensor_shape[0]
        sigma = self.settings.spot_rows_fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
        edges = np.arange(n_rows + 1) - n_rows / 2.0
        return np.diff(ndtr(edges / sigma))

    def _make_counts(self, t0_s: float, exposure_s: float, read_mode: ReadMode,
                     em_gain: int) -> np.ndarray:
        spectrograph = self.world.spectrograph
        if spectrograph is None:
            raise InstrumentError(f"{_KIND} '{self.name}': acquire: no spectrograph in the "
                                  "simulated world")
        s = self.settings
        n_rows, n_cols = self.sensor_shape
        edges_nm = spectrograph.pixel_edges_nm(n_cols, self.pixel_um)
        photons = sensor_photons_per_column(self.world.sample, self.world.excitation(), edges_nm,
                                            t0_s, t0_s + exposure_s, s.photons_per_apd_count)
        pe_col = photons * s.quantum_efficiency
        weights = self._row_weights()
        thermal_e = s.dark_e_per_px_s * exposure_s + s.cic_e_per_px
        rng = self._rng
        if read_mode == "fvb":
            lam = pe_col * weights.sum() + n_rows * thermal_e
            rows = (0, n_rows)
        else:
            rows = (0, n_rows) if read_mode == "image" else self._roi_rows
            lam = np.outer(weights[rows[0]:rows[1]], pe_col) + thermal_e
        electrons = rng.poisson(lam)
        n_hits = int(rng.poisson(s.cosmic_rays_per_min * exposure_s / 60.0))
        if n_hits:
            hit_rows = rng.integers(0, n_rows, n_hits)
            hit_cols = rng.integers(0, n_cols, n_hits)
            lo, hi = _COSMIC_E_RANGE
            charge = np.rint(np.exp(rng.uniform(math.log(lo), math.log(hi), n_hits)))
            for r, c, q in zip(hit_rows, hit_cols, charge.astype(np.int64)):
                if read_mode == "fvb":
                    electrons[c] += q
                elif rows[0] <= r < rows[1]:
                    electrons[r - rows[0], c] += q
        return emccd_readout(electrons, em_gain, s.read_noise_e, self.e_per_adu, s.bias_adu, rng)

    def acquire(self) -> Frame:
        """Take one exposure; sleeps exposure + readout on the clock.

        Returns
        -------
        Frame
            Raw ADU (bias included), ``index`` 0.

        Raises
        ------
        LimitError
            EM gain above 1 while the sensor is too warm.
        InstrumentError
            While streaming, or for injected faults.
        """
        self._refuse_while_streaming("acquire")
        self._check_gain_temperature(self._em_gain, f"acquire at EM gain {self._em_gain}")
        self._faults.check("acquire")
        clock = self.world.clock
        t0_s = clock.now()
        clock.sleep(self._exposure_s)
        counts = self._make_counts(t0_s, self._exposure_s, self._read_mode, self._em_gain)
        clock.sleep(self.settings.readout_s)
        return Frame(counts=counts, exposure_s=self._exposure_s, t_s=t0_s, index=0,
                     em_gain=self._em_gain, read_mode=self._read_mode)

    def start_stream(self) -> None:
        """Start continuous acquisition: frame k exposes from ``t0 + k·(exposure + readout)``."""
        self._refuse_while_streaming("start stream")
        self._check_gain_temperature(self._em_gain, f"stream at EM gain {self._em_gain}")
        self._faults.check("start stream")
        self._stream_t0_s = self.world.clock.now()
        self._stream_next = 0
        self._trigger_seen_s = self._stream_t0_s
        self._trigger_busy_s = -math.inf
        self._streaming = True

    # ------------------------------------------------------------------ external trigger
    @property
    def trigger_mode(self) -> str:
        """``"internal"`` (free-running stream) or ``"external"`` (one frame per trigger).

        In external mode a stream exposes one frame of ``exposure_s`` at each
        trigger pulse of the simulated scanner's hardware-timed lines (its pixel
        trigger output is wired to the camera). A pulse that comes while the
        previous frame is still exposing or reading out (``exposure_s +
        readout_s``) is missed: its frame index is skipped, so a gap in
        ``Frame.index`` marks it.
        """
        return self._trigger_mode

    @trigger_mode.setter
    def trigger_mode(self, value: str) -> None:
        if value not in ("internal", "external"):
            raise limit_error(_KIND, self.name, f"trigger mode {value!r}",
                              "one of internal, external")
        self._refuse_while_streaming(f"trigger mode {value}")
        self._trigger_mode = value

    def _triggered_frames(self) -> list[Frame]:
        """Frames of the trigger pulses whose exposure ended by now (external mode)."""
        scanner = self.world.scanner
        now = self.world.clock.now()
        if scanner is None or not hasattr(scanner, "lines_between"):
            return []
        frames = []
        for line in scanner.lines_between(self._trigger_seen_s, now):
            for t_s in line.pulse_times_s():
                if not self._trigger_seen_s < t_s <= now - self._exposure_s:
                    continue
                self._trigger_seen_s = t_s
                k = self._stream_next
                self._stream_next += 1
                if t_s < self._trigger_busy_s or self._faults.drop_frame():
                    log.debug("camera '%s': trigger %d missed (busy)", self.name, k)
                    continue
                self._trigger_busy_s = t_s + self._exposure_s + self.settings.readout_s
                with scanner.probing(t_s + 0.5 * self._exposure_s):
                    counts = self._make_counts(t_s, self._exposure_s, self._read_mode,
                                               self._em_gain)
                frames.append(Frame(counts=counts, exposure_s=self._exposure_s, t_s=t_s,
                                    index=k, em_gain=self._em_gain, read_mode=self._read_mode))
        return frames

    def read_frames(self) -> list[Frame]:
        """Frames whose exposure ended by now, since the last call.

        Lost frames (injected ``drop_frame_every_n``, or more than
        ``stream_buffer_frames`` waiting) leave gaps in ``Frame.index``.
        """
        if not self._streaming:
            return []
        self._faults.check("read frames")
        if self._trigger_mode == "external":
            return self._triggered_frames()
        period_s = self._exposure_s + self.settings.readout_s
        elapsed_s = self.world.clock.now() - self._stream_t0_s - self._exposure_s
        n_done = int(math.floor(elapsed_s / period_s + 1e-9)) + 1 if elapsed_s >= -1e-12 else 0
        first = self._stream_next
        buffer = self.settings.stream_buffer_frames
        if n_done - first > buffer:
            log.warning("camera '%s': %d frames lost, buffer holds %d", self.name,
                        n_done - first - buffer, buffer)
            first = n_done - buffer
        frames = []
        for k in range(first, n_done):
            if self._faults.drop_frame():
                log.debug("camera '%s': frame %d dropped", self.name, k)
                continue
            t_s = self._stream_t0_s + k * period_s
            counts = self._make_counts(t_s, self._exposure_s, self._read_mode, self._em_gain)
            frames.append(Frame(counts=counts, exposure_s=self._exposure_s, t_s=t_s, index=k,
                                em_gain=self._em_gain, read_mode=self._read_mode))
        self._stream_next = max(self._stream_next, n_done)
        return frames

    def stop(self) -> None:
        """Stop streaming; safe when idle."""
        self._streaming = False

    # ------------------------------------------------------------------ provenance
    def snapshot(self) -> dict[str, Any]:
        """Settings for provenance (units in the keys)."""
        s = self.settings
        return {
            "driver": "simulated",
            "name": self.name,
            "sensor_shape": list(self.sensor_shape),
            "pixel_um": self.pixel_um,
            "exposure_s": self._exposure_s,
            "em_gain": self._em_gain,
            "em_gain_advanced": self._advanced,
            "read_mode": self._read_mode,
            "trigger_mode": self._trigger_mode,
            "roi_rows": list(self._roi_rows),
            "temperature_c": self._update_temperature(),
            "target_temperature_c": self._target_c,
            "cooler_on": self._cooler_on,
            "e_per_adu": self.e_per_adu,
            "bias_adu": s.bias_adu,
            "read_noise_e": s.read_noise_e,
            "cic_e_per_px": s.cic_e_per_px,
            "dark_e_per_px_s": s.dark_e_per_px_s,
            "quantum_efficiency": s.quantum_efficiency,
        }

    def close(self) -> None:
        """Stop any acquisition; safe to call twice."""
        self._streaming = False
        self._closed = True
