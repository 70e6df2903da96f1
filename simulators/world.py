"""The simulated world: one virtual sample, one clock, and the instruments looking at it.

Each simulated instrument attaches itself to the :class:`SimulatedWorld` it is
built with (``world.laser = self`` and so on), so that moving the scanner or
switching the laser changes what the camera and the APDs see.

Excitation model
----------------
The laser focus is a Gaussian spot of FWHM ``f0 = spot_fwhm_um`` centred on the
scanner's *true* position (reported position + drift). Out of focus the spot
widens like a Gaussian beam, ``f(Δz) = f0·√(1 + (Δz/z_R)²)`` with the Rayleigh
range ``z_R = w0 / tan(asin(NA/n))`` (``w0`` the 1/e² radius, ``n = 1.515`` the
immersion oil), and its peak intensity falls as ``(f0/f)²``. The relative
intensity at an emitter is

    w = (f0/f)² · exp(−4 ln 2 · r² / f²)

and its excitation probability per pulse saturates as
``p = 1 − exp(−P·w / P_sat)`` with ``P`` the laser ``power_percent`` (the pulse
energy setting) and ``P_sat`` its ``saturation_power_percent``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from micropl.drivers.interfaces import Clock
from micropl.simulators.sample import VirtualSample

if TYPE_CHECKING:  # pragma: no cover
    from micropl.simulators.camera import SimCamera
    from micropl.simulators.laser import SimLaser
    from micropl.simulators.scanner import SimScanner
    from micropl.simulators.spectrograph import SimSpectrograph

__all__ = [
    "Excitation",
    "SimulatedWorld",
    "spot_weight",
    "rayleigh_range_um",
    "REFERENCE_REP_RATE_HZ",
]

#: Repetition rate at which ``brightness_cps`` is defined, Hz.
REFERENCE_REP_RATE_HZ = 10e6
#: Refractive index of the immersion oil.
IMMERSION_INDEX = 1.515
#: Excitation probabilities below this are treated as zero.
_P_MIN = 1e-7


@dataclass(frozen=True)
class Excitation:
    """Which emitters the laser excites right now, and how strongly.

    Attributes
    ----------
    indices : ndarray of int, shape (m,)
        Emitters with a non-negligible excitation (``p_exc_per_pulse > 1e-7``).
    p_exc_per_pulse : ndarray, shape (m,)
        Probability that a pulse excites the emitter, ``1 − exp(−P·w/P_sat)``,
        ``w`` the spot profile at the emitter including defocus (0–1).
    rep_rate_hz : float
        Laser repetition rate in Hz (0 when the laser is off or absent).
    background_cps_per_apd : float
        Polystyrene background detected per APD in counts/s,
        ``background.apd_cps × power_percent/100``; 0 with the laser off.
    detected_per_pulse_per_apd : ndarray, shape (m,)
        Mean number of photons **detected on one APD per laser pulse** from each
        excited emitter while it is ON:
        ``brightness_cps / 10 MHz × p_exc_per_pulse``. So a QD at full
        saturation (p = 1) pulsed at 10 MHz gives ``brightness_cps`` counts/s
        per APD, and the rate scales with the repetition rate.
    power_percent : float
        Laser power setting in percent (0 when off).
    t_s : float
        Clock time the excitation was evaluated at, in s.
    """

    indices: np.ndarray
    p_exc_per_pulse: np.ndarray
    rep_rate_hz: float
    background_cps_per_apd: float
    detected_per_pulse_per_apd: np.ndarray = field(default_factory=lambda: np.empty(0))
    power_percent: float = 0.0
    t_s: float = 0.0

    @property
    def detected_cps_per_apd(self) -> np.ndarray:
        """Detected counts/s per APD of each excited emitter while ON, shape (m,)."""
        return self.detected_per_pulse_per_apd * self.rep_rate_hz

    @classmethod
    def dark(cls, t_s: float = 0.0) -> Excitation:
        """Nothing excited (laser off)."""
        return cls(indices=np.empty(0, dtype=np.int64), p_exc_per_pulse=np.empty(0),
                   rep_rate_hz=0.0, background_cps_per_apd=0.0,
                   detected_per_pulse_per_apd=np.empty(0), power_percent=0.0, t_s=t_s)


def rayleigh_range_um(spot_fwhm_um: float, objective_na: float) -> float:
    """Rayleigh range ``z_R = w0 / tan(asin(NA/n))`` of the focused spot, in µm.

    ``w0 = FWHM / √(2 ln 2)`` is the 1/e² radius and ``n`` the oil index 1.515.
    """
    w0_um = spot_fwhm_um / math.sqrt(2.0 * math.log(2.0))
    half_angle = math.asin(min(objective_na / IMMERSION_INDEX, 0.999))
    return w0_um / math.tan(half_angle)


def spot_weight(dx_um, dy_um, dz_um, spot_fwhm_um: float, objective_na: float):
    """Relative excitation intensity of a focused Gaussian spot (1 at the focus).

    Parameters
    ----------
    dx_um, dy_um, dz_um : array_like
        Emitter position relative to the focus, in µm (broadcast together).
    spot_fwhm_um : float
        In-focus FWHM of the spot, in µm.
    objective_na : float
        Numerical aperture of the oil objective.

    Returns
    -------
    ndarray
        ``(f0/f)² · exp(−4 ln 2 · r²/f²)`` with ``f = f0·√(1 + (Δz/z_R)²)``.
    """
    z_r_um = rayleigh_range_um(spot_fwhm_um, objective_na)
    dz = np.asarray(dz_um, dtype=np.float64)
    widen2 = 1.0 + (dz / z_r_um) ** 2
    f2 = spot_fwhm_um**2 * widen2
    r2 = np.asarray(dx_um, dtype=np.float64) ** 2 + np.asarray(dy_um, dtype=np.float64) ** 2
    return np.exp(-4.0 * math.log(2.0) * r2 / f2) / widen2


class SimulatedWorld:
    """A virtual sample and a clock shared by the simulated instruments.

    Parameters
    ----------
    sample : VirtualSample
        What is under the objective.
    clock : Clock
        The clock every simulated instrument waits on.

    Attributes
    ----------
    laser, scanner, spectrograph, camera
        The attached instruments (``None`` until constructed). Without a scanner
        the focus sits at the centre of the sample area, z = 0.
    """

    def __init__(self, sample: VirtualSample, clock: Clock) -> None:
        self.sample = sample
        self.clock = clock
        self.laser: SimLaser | None = None
        self.scanner: SimScanner | None = None
        self.spectrograph: SimSpectrograph | None = None
        self.camera: SimCamera | None = None
        self._excitation_cache: tuple | None = None
        self._spatial_index: tuple | None = None

    def focus_um(self) -> tuple[float, float, float]:
        """True (x, y, z) of the laser focus on the sample now, in µm (includes drift)."""
        if self.scanner is not None:
            return self.scanner.true_position_um()
        w, h = self.sample.area_um
        return (0.5 * w, 0.5 * h, 0.0)

    def excitation(self) -> Excitation:
        """Excitation of every emitter at the current clock time and focus position.

        Returns
        -------
        Excitation
            Empty arrays when the laser is absent or off. The arrays are
            read-only: they are shared with later calls that see the same focus
            position and laser state (see Notes).

        Notes
        -----
        The result depends only on the true focus position (drift included, so a
        drifting scanner gives a new position at every call), the laser state
        (emission, power, repetition rate, spot and saturation settings) and the
        sample. The last result is kept and returned again, with the current
        ``t_s``, while none of these changed. Emitters are found through an index
        sorted by x, so the cost does not grow with the sample size.
        """
        t_s = self.clock.now()
        laser = self.laser
        if laser is None or not laser.emission_on or laser.power_percent <= 0:
            return Excitation.dark(t_s)
        s = laser.settings
        power = float(laser.power_percent)
        x, y, z = self.focus_um()
        key = (x, y, z, power, float(laser.rep_rate_hz), float(s.spot_fwhm_um),
               float(s.objective_na), float(s.saturation_power_percent))
        cached = self._excitation_cache
        if cached is not None and cached[0] is self.sample and cached[1] == key:
            e = cached[2]
        else:
            e = self._compute_excitation(x, y, z, power, float(laser.rep_rate_hz), s)
            self._excitation_cache = (self.sample, key, e)
        return Excitation(indices=e.indices, p_exc_per_pulse=e.p_exc_per_pulse,
                          rep_rate_hz=e.rep_rate_hz,
                          background_cps_per_apd=e.background_cps_per_apd,
                          detected_per_pulse_per_apd=e.detected_per_pulse_per_apd,
                          power_percent=e.power_percent, t_s=t_s)

    # ------------------------------------------------------------------ truth
    def measured_truth(self, exposures_s, g2_window_s=None, *, dark_cps_per_apd=(0.0, 0.0),
                       window_fraction: float = 1.0) -> dict | None:
        """The truth of what was measured at the current focus: the light the emitters gave.

        Evaluated with the laser as it is set (power, repetition rate), as if it
        were emitting, at the current true focus. Only the sample's per-emitter
        arrays and its documented processes (:meth:`VirtualSample.on_intervals_s`,
        :meth:`VirtualSample.energy_offset_ev`) are used.

        Parameters
        ----------
        exposures_s : sequence of (float, float)
            Clock-time intervals ``[t0, t1)`` of the spectrum exposures, s.
        g2_window_s : (float, float), optional
            Clock-time interval of the g² acquisition, s.
        dark_cps_per_apd : (float, float)
            Dark counts of the two APDs, counts/s.
        window_fraction : float
            Peak window of the g² analysis as a fraction of the laser period.

        Returns
        -------
        dict or None
            None when the laser is absent or set to zero power, or nothing is
            excited. Otherwise ``index`` (the emitter giving most of the light),
            ``distance_um`` (its distance from the focus), ``n_emitters`` (those
            giving ≥ 1 % of the light), ``main_fraction``, ``energy_ev`` (the
            photon-weighted peak energy over the exposures, blinking and spectral
            diffusion included), ``fwhm_mev`` (FWHM of the line drawn over them),
            ``g2_0`` (raw peak-area ratio expected with the film background and
            the dark counts) and ``g2_0_intrinsic`` (without them); see
            :func:`micropl.analysis.emitters.expected_pulsed_g2`. NaN where an
            interval was not given.
        """
        from micropl.analysis.emitters import expected_pulsed_g2

        laser = self.laser
        if laser is None or laser.power_percent <= 0 or not laser.rep_rate_hz > 0:
            return None
        x, y, z = self.focus_um()
        exc = self._compute_excitation(x, y, z, float(laser.power_percent),
                                       float(laser.rep_rate_hz), laser.settings)
        d_all = np.asarray(exc.detected_per_pulse_per_apd, float)
        if d_all.size == 0 or not d_all.max() > 0:
            return None
        keep = d_all >= 1e-4 * d_all.max()
        idx, d = np.asarray(exc.indices)[keep], d_all[keep]
        smp = self.sample
        spectral = _exposure_line(smp, idx, d, list(exposures_s))
        if g2_window_s is not None and g2_window_s[1] > g2_window_s[0]:
            overlap = _on_overlap(smp, idx, float(g2_window_s[0]), float(g2_window_s[1]))
            period_s = 1.0 / float(laser.rep_rate_hz)
            background = [float(exc.background_cps_per_apd) + float(b)
                          for b in dark_cps_per_apd]
            raw, intrinsic = expected_pulsed_g2(d, smp.g2_0[idx], overlap,
                                                background_cps=background, period_s=period_s,
                                                window_s=window_fraction * period_s)
            light = d * np.diag(overlap)
        else:
            raw = intrinsic = float("nan")
            light = np.zeros_like(d)
        if spectral is not None:
            light = spectral[2]
        if not light.sum() > 0:
            light = d
        share = light / light.sum()
        main = int(np.argmax(share))
        k = int(idx[main])
        return {"index": k, "distance_um": float(math.hypot(smp.x_um[k] - x, smp.y_um[k] - y)),
                "n_emitters": int(np.sum(share >= 0.01)), "main_fraction": float(share[main]),
                "energy_ev": spectral[0] if spectral else float("nan"),
                "fwhm_mev": spectral[1] if spectral else float("nan"),
                "g2_0": float(raw), "g2_0_intrinsic": float(intrinsic)}

    def _index(self) -> tuple[np.ndarray, ...]:
        """Emitter data sorted by x: index, x, y, z (µm), brightness (cps), lowest / highest z."""
        smp = self.sample
        idx = self._spatial_index
        if idx is None or idx[0] is not smp:
            order = np.argsort(smp.x_um, kind="stable").astype(np.int64)
            z_lo = float(np.min(smp.z_um)) if smp.n else 0.0
            z_hi = float(np.max(smp.z_um)) if smp.n else 0.0
            idx = (smp, order, np.ascontiguousarray(smp.x_um[order]),
                   np.ascontiguousarray(smp.y_um[order]), np.ascontiguousarray(smp.z_um[order]),
                   np.ascontiguousarray(smp.brightness_cps[order]), z_lo, z_hi)
            self._spatial_index = idx
        return idx[1:]

    def _compute_excitation(self, x: float, y: float, z: float, power: float,
                            rep_rate_hz: float, s) -> Excitation:
        """The excitation at focus ``(x, y, z)`` µm; arrays read-only (they are cached)."""
        order, xs, ys, zs, bright, z_lo, z_hi = self._index()
        # a cheap box cut first: beyond 6 in-focus FWHM (plus defocus) nothing is excited;
        # the x window is the widest box any emitter can have (the farthest z)
        fwhm = float(s.spot_fwhm_um)
        z_r_um = rayleigh_range_um(fwhm, s.objective_na)
        reach_max_um = 6.0 * fwhm * (1.0 + max(abs(z_lo - z), abs(z_hi - z)) / z_r_um)
        reach_max_um = reach_max_um * (1.0 + 1e-9) + 1e-9  # rounding margin
        lo = int(np.searchsorted(xs, x - reach_max_um, side="left"))
        hi = int(np.searchsorted(xs, x + reach_max_um, side="right"))
        idx, p, detected = _excite_window(
            order, xs, ys, zs, bright, lo, hi, float(x), float(y), float(z), fwhm, z_r_um,
            power / float(s.saturation_power_percent), _P_MIN, REFERENCE_REP_RATE_HZ)
        background = self.sample.background.apd_cps * power / 100.0
        for a in (idx, p, detected):
            a.flags.writeable = False
        return Excitation(indices=idx, p_exc_per_pulse=p, rep_rate_hz=rep_rate_hz,
                          background_cps_per_apd=float(background),
                          detected_per_pulse_per_apd=detected, power_percent=power)


def _on_mask(sample: VirtualSample, i: int, t: np.ndarray) -> np.ndarray:
    """Whether emitter ``i`` is ON at the (sorted) times ``t``."""
    starts, stops = sample.on_intervals_s(i, float(t[0]), float(t[-1]) + 1e-9)
    if starts.size == 0:
        return np.zeros(t.shape, bool)
    k = np.searchsorted(starts, t, side="right") - 1
    return (k >= 0) & (t < stops[np.clip(k, 0, None)])


def _exposure_line(sample: VirtualSample, idx: np.ndarray, d: np.ndarray,
                   exposures: list) -> tuple[float, float, np.ndarray] | None:
    """Photon-weighted peak energy (eV), FWHM of the summed line (meV) and the photons
    (relative) of each emitter over the exposures; None without exposures."""
    if not exposures:
        return None
    t = np.concatenate([np.linspace(t0, t1, 400, endpoint=False) for t0, t1 in exposures
                        if t1 > t0] or [np.zeros(0)])
    if t.size == 0:
        return None
    t = np.sort(t)
    masks = [_on_mask(sample, i, t) for i in idx.tolist()]
    photons = np.array([d[j] * m.sum() for j, m in enumerate(masks)], float)
    centres, weights, gamma = [], [], []
    for j, i in enumerate(idx.tolist()):
        on = masks[j]
        if not photons[j] > 1e-3 * photons.sum():  # too faint to change the line
            continue
        c = sample.energy_ev[i] + np.atleast_1d(sample.energy_offset_ev(i, t[on]))
        step = max(1, c.size // 400)
        c = c[::step]
        centres.append(c)
        weights.append(np.full(c.size, photons[j] / c.size))
        gamma.append(np.full(c.size, sample.fwhm_mev[i] * 1e-3))
    if not centres:
        return None
    c, w, g = np.concatenate(centres), np.concatenate(weights), np.concatenate(gamma)
    energy = float(np.sum(w * c) / np.sum(w))
    half = 0.5 * float(g.max())
    grid = np.linspace(energy - 6 * half, energy + 6 * half, 12001)
    profile = np.zeros_like(grid)
    for ck, wk, gk in zip(c, w, g):
        profile += wk * (gk / (2 * math.pi)) / ((grid - ck) ** 2 + (gk / 2) ** 2)
    above = grid[profile >= profile.max() / 2]
    return energy, float((above[-1] - above[0]) * 1e3), photons


def _on_overlap(sample: VirtualSample, idx: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Fraction of ``[t0, t1)`` during which emitters ``i`` and ``k`` are both ON."""
    spans = [sample.on_intervals_s(int(i), t0, t1) for i in idx]
    m = idx.size
    out = np.zeros((m, m))
    for a in range(m):
        sa, ea = spans[a]
        for b in range(a, m):
            sb, eb = spans[b]
            both = np.minimum(ea[:, None], eb[None, :]) - np.maximum(sa[:, None], sb[None, :])
            out[a, b] = out[b, a] = float(np.sum(np.clip(both, 0.0, None))) / (t1 - t0)
    return out


@njit(cache=True, nogil=True)
def _excite_window(order, x_um, y_um, z_um, brightness_cps, lo, hi, fx_um, fy_um, fz_um,
                   spot_fwhm_um, z_r_um, power_over_sat, p_min, ref_rate_hz):
    """Excited emitters among ``lo:hi`` of the x-sorted arrays (see :meth:`excitation`).

    Applies the box cut (6 FWHM plus defocus), the spot profile of
    :func:`spot_weight` and the saturation ``p = 1 − exp(−P·w/P_sat)``; keeps
    ``p > p_min``.

    Returns
    -------
    indices : ndarray of int64, shape (m,)
        Sample indices, ascending.
    p_exc_per_pulse, detected_per_pulse_per_apd : ndarray of float64, shape (m,)
    """
    k4 = -4.0 * math.log(2.0)
    f02 = spot_fwhm_um * spot_fwhm_um
    n = max(hi - lo, 0)
    idx = np.empty(n, np.int64)
    p = np.empty(n)
    d = np.empty(n)
    m = 0
    for j in range(lo, hi):
        dz = z_um[j] - fz_um
        reach = 6.0 * spot_fwhm_um * (1.0 + abs(dz) / z_r_um)
        dx = x_um[j] - fx_um
        dy = y_um[j] - fy_um
        if not (abs(dx) < reach and abs(dy) < reach):
            continue
        q = dz / z_r_um
        widen2 = 1.0 + q * q
        w = math.exp(k4 * (dx * dx + dy * dy) / (f02 * widen2)) / widen2
        pj = -math.expm1(-power_over_sat * w)
        if pj > p_min:
            idx[m] = order[j]
            p[m] = pj
            d[m] = brightness_cps[j] / ref_rate_hz * pj
            m += 1
    sort = np.argsort(idx[:m])
    return idx[:m][sort].copy(), p[:m][sort].copy(), d[:m][sort].copy()
