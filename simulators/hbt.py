"""Photon and time-tag generator for a simulated Hanbury-Brown–Twiss (HBT) setup.

The simulated time tagger (:mod:`micropl.simulators.tagger`) and ``micropl
simulate tags`` produce their tags here. The numerical work is done by numba
kernels over plain arrays; :class:`HbtStream` keeps the little state that must
survive from one read to the next (dead time, pending afterpulses, photons that
arrive after the end of a read).

Physics
-------
Pulsed excitation with period ``period_ps`` (100 ns at 10 MHz). Laser pulse
``k`` fires at ``k * period_ps`` (the period is rounded to an integer number of
ps, 2 ppm at worst for the allowed repetition rates).

**Photon number per pulse.** While an emitter is ON (its blinking intervals come
from the virtual sample), each pulse gives ``N`` detected photons (both APDs
together, before dead time) with ``P(N=1) = p1``, ``P(N=2) = p2`` and
``P(N=0) = 1 − p1 − p2``. ``N = 2`` is a biexciton–exciton cascade: the XX
photon leaves after ``Exp(τ_XX)``, the X photon ``Exp(τ)`` after it, with
``τ_XX = τ / 4`` (a modelling choice: a radiative XX rate four times the X rate).
A single photon (``N = 1``) leaves after ``Exp(τ)``. Each photon goes to APD1 or
APD2 with probability 1/2, independently.

For a 50:50 split, the counts ``N1``, ``N2`` on the two APDs within one pulse give
``E[N1·N2] = E[N(N−1)]/4`` (central peak of the cross-correlation) and, for
different pulses, ``E[N1]·E[N2] = E[N]²/4`` (each side peak). Hence, exactly (no
small-efficiency approximation)::

    g²(0) = E[N(N−1)] / E[N]² = 2·p2 / (p1 + 2·p2)²

With the mean detected photon number per pulse ``μ = p1 + 2·p2 = 2·d`` (``d``:
mean detected photons per pulse per APD, from the world's excitation) this is
solved by :func:`photon_number_probabilities`::

    p2 = g²(0)·μ²/2,    p1 = μ − g²(0)·μ²

For small ``μ`` this is the familiar ``g²(0) ≈ 2·P(2)/P(1)²``. Several emitters
under the spot are independent sources and add; two equal perfect single-photon
emitters give ``g²(0) = 0.5``. The central peak is free of dead-time loss
because two photons of one pulse on *different* APDs are both counted.

**Detectors.** Per detection a Gaussian timing jitter (``jitter_fwhm_ps``,
clipped at ±5σ) is added. Background (laser-induced, per APD) and dark counts
are uncorrelated Poisson processes. All sources are merged in time order and
then pass the non-paralysable dead time of each APD: a detection less than
``dead_time_ps`` after the previous *counted* one on the same APD is lost. Each
counted detection may cause an afterpulse on the same APD (probability
``afterpulse_probability``, delay ``Exp(afterpulse_delay_ps)``) and a
breakdown-flash crosstalk detection on the other APD ``crosstalk_delay_ps``
later (probability ``crosstalk_probability``); both secondary events pass the
same dead-time logic and can cascade. Because the flash needs ``crosstalk_delay``
to reach the other diode in either direction, the crosstalk peaks of the
cross-correlation sit at ``channel_delay ± crosstalk_delay``.

**Time bases.** Detection times are processed on an internal time line
``t_proc = t_photon + L0 + jitter`` with ``L0 = ceil(5σ)`` a fixed detector
latency, so that ``t_proc ≥`` the pulse (or Poisson event) that caused it. The
tag reported for APD ``j`` is ``t_proc + offset_j`` with ``offset_2 − offset_1
= channel_delay_ps`` and both offsets ≥ 0. This causality lets the stream be
cut at any read boundary without ever needing to emit a tag earlier than the
boundary.

Determinism
-----------
Randomness comes from a counter-based generator (SplitMix64) seeded per
``(seed, 10 ms block, source)``; a source is an emitter (by its index in the
sample), the background or the dark counts of one APD. Afterpulse and
crosstalk draws come from one persistent stream consumed in time order. As a
result the same seed gives the same tags for the same sequence of reads, and —
as long as the excitation does not change — also for *any* way of cutting the
same time span into reads (up to events falling on the very same picosecond).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

__all__ = [
    "BLOCK_PS",
    "SUPERCHUNK_PS",
    "SOURCE_EMITTER_BASE",
    "DetectorModel",
    "Emitters",
    "HbtStream",
    "StreamOutput",
    "photon_number_probabilities",
    "period_ps_from_rate",
    "sync_divider_for_rate",
    "sync_times_ps",
    "generate_primaries",
    "apply_detectors",
    "merge_sorted",
    "simulate_constant_emitters",
]

#: Length of the randomness blocks, ps (10 ms).
BLOCK_PS: int = 10_000_000_000
#: Largest span generated in one kernel call, ps (1 s); bounds the memory of long reads.
SUPERCHUNK_PS: int = 1_000_000_000_000
#: Source ids: 0/1 background of APD1/APD2, 2/3 dark counts, emitters from this base.
SOURCE_EMITTER_BASE: int = 16
#: Highest sync rate recorded; above it the sync input divides (powers of 2, like a HydraHarp).
SYNC_RATE_MAX_HZ: float = 1.0e6

_NEVER_PS = np.int64(-(2**62))
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SH30 = np.uint64(30)
_SH27 = np.uint64(27)
_SH31 = np.uint64(31)
_SH11 = np.uint64(11)
_SH12 = np.uint64(12)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_TWO_M53 = 2.0**-53
_TWO_M52 = 2.0**-52
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# =========================================================================== random numbers
@njit(cache=True, nogil=True)
def _mix64(z):
    z = (z ^ (z >> _SH30)) * _MIX1
    z = (z ^ (z >> _SH27)) * _MIX2
    return z ^ (z >> _SH31)


@njit(cache=True, nogil=True)
def _stream_seed(seed, block, source):
    """Initial SplitMix64 state of the stream of ``(seed, block, source)``."""
    h = _mix64(np.uint64(seed) + _GOLDEN)
    h = _mix64(h ^ (np.uint64(block) * _MIX1 + _GOLDEN))
    h = _mix64(h ^ (np.uint64(source) * _MIX2 + _GOLDEN))
    return h


@njit(cache=True, nogil=True)
def _next(state):
    state = state + _GOLDEN
    return _mix64(state), state


@njit(cache=True, nogil=True)
def _u01_from(x):
    """Uniform in (0, 1] from the top 53 bits of ``x``."""
    return (np.float64(x >> _SH11) + 1.0) * _TWO_M53


@njit(cache=True, nogil=True)
def _u01_open(x):
    """Uniform in the open interval (0, 1) from the top 52 bits of ``x`` (exact)."""
    return (np.float64(x >> _SH12) + 0.5) * _TWO_M52


# Coefficients of P. J. Acklam's rational approximation of the normal quantile
# (relative error < 1.2e-9), evaluated below in Horner form.
_NA = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
       1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_NB = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
       6.680131188771972e01, -1.328068155288572e01)
_NC = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
       -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_ND = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
       3.754408661907416e00)
_P_LOW = 0.02425


@njit(cache=True, nogil=True)
def _normal_ppf(p):
    """Standard normal quantile of ``p`` in (0, 1) (no trigonometry, one log in the tails)."""
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        return ((((((_NC[0] * q + _NC[1]) * q + _NC[2]) * q + _NC[3]) * q + _NC[4]) * q
                 + _NC[5])
                / ((((_ND[0] * q + _ND[1]) * q + _ND[2]) * q + _ND[3]) * q + 1.0))
    if p > 1.0 - _P_LOW:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        return -((((((_NC[0] * q + _NC[1]) * q + _NC[2]) * q + _NC[3]) * q + _NC[4]) * q
                  + _NC[5])
                 / ((((_ND[0] * q + _ND[1]) * q + _ND[2]) * q + _ND[3]) * q + 1.0))
    q = p - 0.5
    r = q * q
    return ((((((_NA[0] * r + _NA[1]) * r + _NA[2]) * r + _NA[3]) * r + _NA[4]) * r + _NA[5])
            * q
            / (((((_NB[0] * r + _NB[1]) * r + _NB[2]) * r + _NB[3]) * r + _NB[4]) * r + 1.0))


# =========================================================================== pure helpers
def photon_number_probabilities(
    detected_per_pulse_per_apd: np.ndarray, g2_0: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pulse probabilities of one and of two detected photons.

    Parameters
    ----------
    detected_per_pulse_per_apd : array_like, shape (m,)
        Mean detected photons per laser pulse on ONE APD (before dead time).
    g2_0 : array_like, shape (m,)
        Wanted g²(0) (central / side peak area ratio) of each emitter, 0–1.

    Returns
    -------
    p1, p2 : ndarray, shape (m,)
        ``P(N = 1)`` and ``P(N = 2)`` of the number ``N`` of detected photons per
        pulse on both APDs together, such that ``E[N] = 2·d`` and
        ``E[N(N−1)] / E[N]² = g²(0)`` exactly.

    Notes
    -----
    ``μ = 2·d``, ``p2 = g²·μ²/2``, ``p1 = μ − g²·μ²``. ``μ`` is capped at 1 so that
    ``p0 = 1 − μ + g²μ²/2 ≥ 0`` (a detected rate per APD above half the repetition
    rate is outside what a single emitter can give).
    """
    d = np.asarray(detected_per_pulse_per_apd, dtype=np.float64)
    g = np.clip(np.asarray(g2_0, dtype=np.float64), 0.0, 1.0)
    mu = np.clip(2.0 * d, 0.0, 1.0)
    p2 = 0.5 * g * mu * mu
    p1 = mu - 2.0 * p2
    return p1, p2


def period_ps_from_rate(rep_rate_hz: float) -> int:
    """Laser period in integer ps (rounded), for ``rep_rate_hz`` > 0."""
    if not rep_rate_hz > 0:
        raise ValueError(f"rep_rate_hz: {rep_rate_hz} must be > 0")
    return max(1, int(round(1e12 / rep_rate_hz)))


def sync_divider_for_rate(rep_rate_hz: float, max_rate_hz: float = SYNC_RATE_MAX_HZ) -> int:
    """Smallest power-of-two sync divider that keeps the sync rate ≤ ``max_rate_hz``.

    A 10 MHz laser gives a divider of 16 (625 kHz of sync tags). Only every
    ``divider``-th pulse produces a sync tag; the pulses in between are at integer
    multiples of the period after it.
    """
    divider = 1
    while rep_rate_hz / divider > max_rate_hz:
        divider *= 2
    return divider


def sync_times_ps(t0_ps: int, t1_ps: int, period_ps: int, divider: int) -> np.ndarray:
    """Times of the sync tags (pulses ``k`` with ``k % divider == 0``) in ``[t0_ps, t1_ps)``.

    Returns
    -------
    ndarray of int64, shape (n,)
        Pulse times in ps, ascending.
    """
    step = int(period_ps) * int(divider)
    first = -(-int(t0_ps) // step) * step  # ceil to a multiple of step
    if first >= t1_ps:
        return np.zeros(0, np.int64)
    return np.arange(first, int(t1_ps), step, dtype=np.int64)


@njit(cache=True, nogil=True)
def _grow(a, n_needed):
    size = a.shape[0]
    while size < n_needed:
        size = 2 * size + 16
    b = np.empty(size, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def _insertion_sort_pairs(t, d, lo, hi):
    """Sort ``t[lo:hi]`` (and ``d`` along) in place; O(n) for nearly sorted data."""
    for i in range(lo + 1, hi):
        ti = t[i]
        if ti >= t[i - 1]:
            continue
        di = d[i]
        j = i - 1
        while j >= lo and t[j] > ti:
            t[j + 1] = t[j]
            d[j + 1] = d[j]
            j -= 1
        t[j + 1] = ti
        d[j + 1] = di


@njit(cache=True, nogil=True)
def _merge_into(a_t, a_d, i, i_end, b_t, b_d, j, j_end, out_t, out_d, o):
    """Stable merge of ``a[i:i_end]`` and ``b[j:j_end]`` (times + data) into ``out`` at ``o``.

    On equal times the element of ``a`` comes first.
    """
    while i < i_end and j < j_end:
        if b_t[j] < a_t[i]:
            out_t[o] = b_t[j]
            out_d[o] = b_d[j]
            j += 1
        else:
            out_t[o] = a_t[i]
            out_d[o] = a_d[i]
            i += 1
        o += 1
    while i < i_end:
        out_t[o] = a_t[i]
        out_d[o] = a_d[i]
        i += 1
        o += 1
    while j < j_end:
        out_t[o] = b_t[j]
        out_d[o] = b_d[j]
        j += 1
        o += 1


@njit(cache=True, nogil=True)
def _merge_runs(t, d, bounds):
    """Merge the sorted runs ``t[bounds[i]:bounds[i+1]]`` into one sorted array (stable)."""
    n_runs = bounds.shape[0] - 1
    if n_runs <= 1:
        return t, d
    src_t = t
    src_d = d
    dst_t = np.empty_like(t)
    dst_d = np.empty_like(d)
    b = bounds.copy()
    while n_runs > 1:
        nb = np.empty((n_runs + 1) // 2 + 1, np.int64)
        k = 0
        r = 0
        while r < n_runs:
            lo = b[r]
            if r + 1 < n_runs:
                mid = b[r + 1]
                hi = b[r + 2]
            else:
                mid = b[r + 1]
                hi = mid
            _merge_into(src_t, src_d, lo, mid, src_t, src_d, mid, hi, dst_t, dst_d, lo)
            nb[k] = lo
            k += 1
            r += 2
        nb[k] = b[n_runs]
        b = nb[: k + 1]
        n_runs = k
        src_t, dst_t = dst_t, src_t
        src_d, dst_d = dst_d, src_d
    return src_t, src_d


@njit(cache=True, nogil=True)
def merge_sorted(t_a, c_a, t_b, c_b):
    """Merge two ascending tag streams (stable: on ties ``a`` comes first).

    Parameters
    ----------
    t_a, t_b : ndarray of int64
        Ascending times in ps.
    c_a, c_b : ndarray of uint8
        Channel of each tag.

    Returns
    -------
    t_ps : ndarray of int64, shape (len(t_a) + len(t_b),)
    channel : ndarray of uint8
    """
    na = t_a.shape[0]
    nb = t_b.shape[0]
    t = np.empty(na + nb, np.int64)
    c = np.empty(na + nb, np.uint8)
    _merge_into(t_a, c_a, 0, na, t_b, c_b, 0, nb, t, c, 0)
    return t, c


@njit(cache=True, nogil=True)
def _jitter(state, sigma, lat):
    """Clipped Gaussian jitter (ps) and the new stream state."""
    if sigma <= 0.0:
        return 0.0, state
    u, state = _next(state)
    jit = sigma * _normal_ppf(_u01_open(u))
    if jit > lat:
        jit = lat
    elif jit < -lat:
        jit = -lat
    return jit, state


@njit(cache=True, nogil=True)
def _emitter_block(t_out, d_out, n, state, bs, be, t0_ps, t1_ps, period_ps,
                   on_start_ps, on_stop_ps, j_first, j_hi, log_q, every_pulse,
                   pair_frac, tau, tau_xx, sigma, lat, resumed=False, j_res=0, k_res=0,
                   avail_res=0):
    """Detections of one emitter for the pulses of one block.

    The ON pulses of the block are walked as one sequence with geometric gaps
    between pulses that give at least one detection, so the cost is per photon,
    not per pulse. The same draws are consumed whether a photon is kept (pulse in
    ``[t0_ps, t1_ps)``) or not, which makes the block independent of the cut.
    The caller reserves room for two photons per pulse.

    ``resumed``: continue the walk where a call that ended at ``t0_ps`` stopped
    (``state``, ``j_res``, ``k_res``, ``avail_res`` as it returned them), instead
    of walking from the start of the block: the same draws, without redoing them.

    Returns
    -------
    (n, exhausted, state, j, k, avail)
        The new count; whether the block has no more pulses (else the walk stopped
        at the first pulse at or after ``t1_ps``), and the walk's state there.
    """
    j = j_first - 1
    k = np.int64(0)
    avail = np.int64(0)
    skip = resumed
    if resumed:
        j = j_res
        k = k_res
        avail = avail_res
    while True:
        if skip:
            skip = False
        else:
            if every_pulse:
                g = np.int64(1)
            else:
                x, state = _next(state)
                ratio = math.log(_u01_from(x)) / log_q
                if ratio > 4.0e18:
                    ratio = 4.0e18
                g = np.int64(ratio) + 1
            while g > avail:
                g -= avail
                j += 1
                if j >= j_hi or on_start_ps[j] >= be:
                    return n, True, state, j, k, avail
                s0 = max(on_start_ps[j], bs)
                s1 = min(on_stop_ps[j], be)
                k_lo = (s0 + period_ps - 1) // period_ps
                k = k_lo - 1
                avail = max((s1 + period_ps - 1) // period_ps - k_lo, np.int64(0))
            k += g
            avail -= g
        t_pulse = k * period_ps
        if t_pulse >= t1_ps:
            return n, False, state, j, k, avail
        x, state = _next(state)
        y, state = _next(state)
        if _u01_from(x) > pair_frac:  # one photon (exciton)
            delay = lat - tau * math.log(_u01_from(y))
            jit, state = _jitter(state, sigma, lat)
            if t_pulse >= t0_ps:
                t_out[n] = t_pulse + np.int64(math.floor(delay + jit + 0.5))
                d_out[n] = np.uint8(x & _ONE)
                n += 1
        else:  # biexciton-exciton cascade: two photons
            z, state = _next(state)
            t_xx = -tau_xx * math.log(_u01_from(y))
            t_x = t_xx - tau * math.log(_u01_from(z))
            jit_a, state = _jitter(state, sigma, lat)
            jit_b, state = _jitter(state, sigma, lat)
            if t_pulse >= t0_ps:
                t_out[n] = t_pulse + np.int64(math.floor(lat + t_xx + jit_a + 0.5))
                d_out[n] = np.uint8(x & _ONE)
                t_out[n + 1] = t_pulse + np.int64(math.floor(lat + t_x + jit_b + 0.5))
                d_out[n + 1] = np.uint8((x >> _ONE) & _ONE)
                n += 2


@njit(cache=True, nogil=True)
def _poisson_block(t_out, d_out, n, state, bs, block_ps, t0_ps, t1_ps, mean_gap_ps,
                   cum0, cum1, cum2, latency_ps, resumed=False, pos_res=0.0):
    """Uncorrelated events of one block (exponential gaps).

    Each event goes to APD1 when its class draw is below ``cum0`` (background) or
    in ``[cum1, cum2)`` (dark), else to APD2. The caller reserves the mean count
    plus 10σ + 64 entries; running out of that room (odds below 1e-20) raises.
    ``resumed``: continue where a call that ended at ``t0_ps`` stopped (``state``,
    ``pos_res``), with the same draws.

    Returns
    -------
    (n, exhausted, state, pos)
        The new count; whether the block has no more events, and the walk's state.
    """
    cap = t_out.shape[0]
    pos = pos_res if resumed else 0.0
    skip = resumed
    while True:
        if skip:
            skip = False
        else:
            x, state = _next(state)
            pos -= mean_gap_ps * math.log(_u01_from(x))
        if pos >= block_ps:
            return n, True, state, pos
        t = bs + np.int64(pos)
        if t >= t1_ps:
            return n, False, state, pos
        y, state = _next(state)
        if t < t0_ps:
            continue
        u = _u01_from(y)
        if n >= cap:
            raise RuntimeError("hbt: Poisson reserve exceeded")
        t_out[n] = t + latency_ps
        d_out[n] = np.uint8(0 if (u <= cum0 or (cum1 < u <= cum2)) else 1)
        n += 1


# =========================================================================== primaries
@njit(cache=True, nogil=True)
def generate_primaries(t0_ps, t1_ps, block_ps, seed, period_ps,
                       em_source, em_p1, em_p2, em_tau_ps, em_tau_xx_ps,
                       on_start_ps, on_stop_ps, on_ptr,
                       background_cps, dark_cps, jitter_sigma_ps, latency_ps):
    """Photon, background and dark-count detections caused in ``[t0_ps, t1_ps)``.

    Every event whose cause (laser pulse, background or dark event) lies in
    ``[t0_ps, t1_ps)`` is returned, before dead time, afterpulsing and crosstalk.

    Parameters
    ----------
    t0_ps, t1_ps : int
        Span of the causes, ps.
    block_ps : int
        Length of the randomness blocks, ps (:data:`BLOCK_PS`).
    seed : int
        Non-negative random seed.
    period_ps : int
        Laser period, ps (≤ 0: no laser photons).
    em_source : ndarray of int64, shape (m,)
        Stable source id of each excited emitter (``SOURCE_EMITTER_BASE + index``).
    em_p1, em_p2 : ndarray of float64, shape (m,)
        Per-pulse probabilities of one / two detected photons
        (:func:`photon_number_probabilities`).
    em_tau_ps, em_tau_xx_ps : ndarray of float64, shape (m,)
        Exciton and biexciton lifetimes, ps.
    on_start_ps, on_stop_ps : ndarray of int64, shape (k,)
        ON intervals of all emitters, concatenated; emitter ``e`` owns
        ``on_ptr[e]:on_ptr[e+1]``. They must cover every 10 ms block that
        overlaps ``[t0_ps, t1_ps)`` (see :meth:`HbtStream.block_span_ps`).
    on_ptr : ndarray of int64, shape (m + 1,)
    background_cps, dark_cps : ndarray of float64, shape (2,)
        Uncorrelated Poisson rates of each APD, counts/s.
    jitter_sigma_ps : float
        Gaussian timing jitter (σ), ps; clipped at ±``latency_ps``.
    latency_ps : int
        Fixed detector latency ``L0`` (≥ 5σ), ps.

    Returns
    -------
    t_proc_ps : ndarray of int64, shape (n,)
        Detection times on the processing time line, ascending.
    apd : ndarray of uint8, shape (n,)
        0 for APD1, 1 for APD2.
    """
    res = _no_resume(em_source.shape[0])
    return _generate(t0_ps, t1_ps, block_ps, seed, period_ps, em_source, em_p1, em_p2,
                     em_tau_ps, em_tau_xx_ps, on_start_ps, on_stop_ps, on_ptr,
                     background_cps, dark_cps, jitter_sigma_ps, latency_ps, *res)[:2]


@njit(cache=True, nogil=True)
def _no_resume(m):
    """Resume arrays that resume nothing (see :func:`_generate`)."""
    return (np.full(m, -1, np.int64), np.zeros((m, 8), np.int64), np.zeros(m, np.uint64),
            np.zeros((m, 4), np.float64), np.zeros(4, np.int64), np.zeros(1, np.uint64),
            np.zeros(5, np.float64))


@njit(cache=True, nogil=True)
def _find_resume(res_src, res_i, res_f, src, kb, t0_ps, period_ps, p1, p2, tau, tau_xx):
    """Row of the resume arrays that continues emitter ``src`` in block ``kb`` at ``t0_ps``.

    -1 when there is none: the previous call did not end at ``t0_ps`` in that block, or
    the emitter's parameters changed since (the walk then starts at the block start,
    with the parameters of now, as without resuming).
    """
    for r in range(res_src.shape[0]):
        if res_src[r] == src:
            if (res_i[r, 0] == kb and res_i[r, 1] == t0_ps and res_i[r, 7] == period_ps
                    and res_f[r, 0] == p1 and res_f[r, 1] == p2 and res_f[r, 2] == tau
                    and res_f[r, 3] == tau_xx):
                return r
            return -1
    return -1


@njit(cache=True, nogil=True)
def _generate(t0_ps, t1_ps, block_ps, seed, period_ps,
              em_source, em_p1, em_p2, em_tau_ps, em_tau_xx_ps,
              on_start_ps, on_stop_ps, on_ptr,
              background_cps, dark_cps, jitter_sigma_ps, latency_ps,
              res_src, res_i, res_u, res_f, bg_i, bg_u, bg_f):
    """:func:`generate_primaries` that resumes the walks a call ending at ``t0_ps`` left.

    The random walk of a block always starts at the block start (so that its draws
    do not depend on where calls cut it); a call that ended inside a block leaves the
    state of each walk there (``res_*`` per emitter: source, ``[kb, t1, exhausted, k,
    avail, on_start, on_stop, period]``, state, ``[p1, p2, tau, tau_xx]``; ``bg_*`` for
    the background: ``[valid, kb, t1, exhausted]``, state, ``[pos, mean_gap, cum0,
    cum1, cum2]``), and the next call continues each from there: the same tags, for
    the cost of the new span only. Returns ``(t, apd, *new resume arrays)``.
    """
    new = _no_resume(em_source.shape[0])
    n_src, n_i, n_u, n_f, nb_i, nb_u, nb_f = new
    span = t1_ps - t0_ps
    if span <= 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.uint8), res_src, res_i, res_u, res_f,
                bg_i, bg_u, bg_f)
    kb0 = t0_ps // block_ps
    kb1 = (t1_ps - 1) // block_ps
    m = em_source.shape[0]
    # capacity estimate (grown on demand)
    expected = 0.0
    if period_ps > 0:
        n_pulses = span / period_ps
        for e in range(m):
            expected += (em_p1[e] + 2.0 * em_p2[e]) * n_pulses
    for a in range(2):
        expected += (background_cps[a] + dark_cps[a]) * span * 1e-12
    cap = int(expected * 1.1 + 8.0 * math.sqrt(expected + 1.0) + 64)
    t_out = np.empty(cap, np.int64)
    d_out = np.empty(cap, np.uint8)
    n = 0
    n_runs = 0
    bounds = np.empty(m + 5, np.int64)
    bounds[0] = 0
    sigma = jitter_sigma_ps
    lat = np.float64(latency_ps)
    # ------------------------------------------------------------ emitters
    if period_ps > 0:
        for e in range(m):
            p1 = em_p1[e]
            p2 = em_p2[e]
            s_hit = p1 + p2
            run_start = n
            if s_hit > 0.0:
                every_pulse = s_hit >= 1.0
                log_q = math.log1p(-s_hit) if not every_pulse else -1.0
                pair_frac = p2 / s_hit
                tau = em_tau_ps[e]
                tau_xx = em_tau_xx_ps[e]
                j_lo = on_ptr[e]
                j_hi = on_ptr[e + 1]
                j_first = j_lo  # first interval that can overlap the current block
                for kb in range(kb0, kb1 + 1):
                    bs = kb * block_ps
                    be = bs + block_ps
                    while j_first < j_hi and on_stop_ps[j_first] <= bs:
                        j_first += 1
                    if j_first >= j_hi or on_start_ps[j_first] >= be:
                        continue
                    # reserve room for two photons per pulse of the kept span
                    need = n + 2 * ((min(be, t1_ps) - max(bs, t0_ps)) // period_ps + 2)
                    if need > t_out.shape[0]:
                        t_out = _grow(t_out, need)
                        d_out = _grow(d_out, need)
                    state = _stream_seed(seed, kb, em_source[e])
                    resumed = False
                    j_r = np.int64(0)
                    k_r = np.int64(0)
                    a_r = np.int64(0)
                    done = False
                    if kb == kb0:
                        r = _find_resume(res_src, res_i, res_f, em_source[e], kb, t0_ps,
                                         period_ps, p1, p2, tau, tau_xx)
                        if r >= 0 and res_i[r, 2] == 1:
                            done = True  # the block had no more pulses
                        elif r >= 0:
                            # the same interval in this call's arrays
                            for jj in range(j_first, j_hi):
                                if (on_start_ps[jj] == res_i[r, 5]
                                        and on_stop_ps[jj] == res_i[r, 6]):
                                    resumed = True
                                    j_r = np.int64(jj)
                                    break
                                if on_start_ps[jj] >= be:
                                    break
                            if resumed:
                                state = res_u[r]
                                k_r = res_i[r, 3]
                                a_r = res_i[r, 4]
                    exhausted = True
                    j_end = j_r
                    k_end = k_r
                    a_end = a_r
                    if not done:
                        n, exhausted, state, j_end, k_end, a_end = _emitter_block(
                            t_out, d_out, n, state, bs, be, t0_ps, t1_ps, period_ps,
                            on_start_ps, on_stop_ps, j_first, j_hi, log_q, every_pulse,
                            pair_frac, tau, tau_xx, sigma, lat, resumed, j_r, k_r, a_r)
                    if kb == kb1 and t1_ps < be:  # the next call may continue here
                        n_src[e] = em_source[e]
                        n_i[e, 0] = kb
                        n_i[e, 1] = t1_ps
                        n_i[e, 2] = 1 if exhausted else 0
                        n_i[e, 3] = k_end
                        n_i[e, 4] = a_end
                        if not exhausted:
                            n_i[e, 5] = on_start_ps[j_end]
                            n_i[e, 6] = on_stop_ps[j_end]
                        n_i[e, 7] = period_ps
                        n_u[e] = state
                        n_f[e, 0] = p1
                        n_f[e, 1] = p2
                        n_f[e, 2] = tau
                        n_f[e, 3] = tau_xx
            if n > run_start:
                _insertion_sort_pairs(t_out, d_out, run_start, n)
                n_runs += 1
                bounds[n_runs] = n
    # ------------------------------------------------------------ Poisson sources
    # Background and dark counts of both APDs are one Poisson process of the summed
    # rate whose events are shared out in proportion to the rates (superposition).
    rates = np.empty(4)
    rates[0] = max(background_cps[0], 0.0)
    rates[1] = max(background_cps[1], 0.0)
    rates[2] = max(dark_cps[0], 0.0)
    rates[3] = max(dark_cps[1], 0.0)
    total = rates.sum()
    if total > 0.0:
        cum0 = rates[0] / total
        cum1 = (rates[0] + rates[1]) / total
        cum2 = (rates[0] + rates[1] + rates[2]) / total
        run_start = n
        mean_gap_ps = 1e12 / total
        for kb in range(kb0, kb1 + 1):
            bs = kb * block_ps
            lo = max(bs, t0_ps)
            hi = min(bs + block_ps, t1_ps)
            need = n + int((hi - lo) * total * 1e-12 + 10.0 * math.sqrt((hi - lo) * total * 1e-12)
                           + 64)
            if need > t_out.shape[0]:
                t_out = _grow(t_out, need)
                d_out = _grow(d_out, need)
            state = _stream_seed(seed, kb, 0)
            resumed = False
            pos = 0.0
            if (kb == kb0 and bg_i[0] == 1 and bg_i[1] == kb and bg_i[2] == t0_ps
                    and bg_f[1] == mean_gap_ps and bg_f[2] == cum0 and bg_f[3] == cum1
                    and bg_f[4] == cum2):
                resumed = True
                state = bg_u[0]
                pos = bg_f[0]
            exhausted = resumed and bg_i[3] == 1
            if not exhausted:
                n, exhausted, state, pos = _poisson_block(
                    t_out, d_out, n, state, bs, block_ps, t0_ps, t1_ps, mean_gap_ps, cum0,
                    cum1, cum2, latency_ps, resumed, pos)
            if kb == kb1 and t1_ps < bs + block_ps:
                nb_i[0] = 1
                nb_i[1] = kb
                nb_i[2] = t1_ps
                nb_i[3] = 1 if exhausted else 0
                nb_u[0] = state
                nb_f[0] = pos
                nb_f[1] = mean_gap_ps
                nb_f[2] = cum0
                nb_f[3] = cum1
                nb_f[4] = cum2
        if n > run_start:
            n_runs += 1
            bounds[n_runs] = n
    t_out = t_out[:n]
    d_out = d_out[:n]
    t_m, d_m = _merge_runs(t_out, d_out, bounds[: n_runs + 1])
    return t_m, d_m, n_src, n_i, n_u, n_f, nb_i, nb_u, nb_f


# =========================================================================== detectors
@njit(cache=True, nogil=True)
def _heap_push(ht, hd, hn, t, d):
    """Push ``(t, d)`` on the min-heap (the caller guarantees room); returns the new size."""
    i = hn
    while i > 0:
        parent = (i - 1) // 2
        if ht[parent] <= t:
            break
        ht[i] = ht[parent]
        hd[i] = hd[parent]
        i = parent
    ht[i] = t
    hd[i] = d
    return hn + 1


@njit(cache=True, nogil=True)
def _heap_pop(ht, hd, hn):
    """Remove the root (the caller read it); returns the new size."""
    hn -= 1
    if hn == 0:
        return hn
    t = ht[hn]
    d = hd[hn]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= hn:
            break
        if c + 1 < hn and ht[c + 1] < ht[c]:
            c += 1
        if ht[c] >= t:
            break
        ht[i] = ht[c]
        hd[i] = hd[c]
        i = c
    ht[i] = t
    hd[i] = d
    return hn


@njit(cache=True, nogil=True)
def _detect_run(prim_t, prim_d, i, t_end_ps, out_t, out_d, n_out, heap_t, heap_d, heap_n,
                state, last_ps, lost, dead_ps, p_afterpulse, afterpulse_mean_ps,
                p_crosstalk, crosstalk_ps):
    """Inner loop of :func:`apply_detectors`; stops early when an output array is nearly full.

    Returns ``(i, n_out, heap_n, state, finished)``.
    """
    n_prim = prim_t.shape[0]
    out_cap = out_t.shape[0]
    heap_cap = heap_t.shape[0]
    while True:
        if n_out >= out_cap or heap_n + 2 > heap_cap:
            return i, n_out, heap_n, state, False
        if heap_n > 0 and heap_t[0] < t_end_ps and (i >= n_prim or heap_t[0] < prim_t[i]):
            t = heap_t[0]
            d = heap_d[0]
            heap_n = _heap_pop(heap_t, heap_d, heap_n)
        elif i < n_prim and prim_t[i] < t_end_ps:
            t = prim_t[i]
            d = prim_d[i]
            i += 1
        else:
            return i, n_out, heap_n, state, True
        if t - last_ps[d] < dead_ps:
            lost[d] += 1
            continue
        last_ps[d] = t
        out_t[n_out] = t
        out_d[n_out] = d
        n_out += 1
        if p_afterpulse > 0.0:
            x, state = _next(state)
            if _u01_from(x) <= p_afterpulse:
                y, state = _next(state)
                delay = -afterpulse_mean_ps * math.log(_u01_from(y))
                t_ap = t + max(np.int64(1), np.int64(delay + 0.5))
                heap_n = _heap_push(heap_t, heap_d, heap_n, t_ap, d)
        if p_crosstalk > 0.0:
            x, state = _next(state)
            if _u01_from(x) <= p_crosstalk:
                heap_n = _heap_push(heap_t, heap_d, heap_n, t + crosstalk_ps, np.uint8(1 - d))


@njit(cache=True, nogil=True)
def apply_detectors(prim_t, prim_d, t_end_ps, last_ps, heap_t, heap_d, heap_n, rng, lost,
                    dead_ps, p_afterpulse, afterpulse_mean_ps, p_crosstalk, crosstalk_ps):
    """Dead time, afterpulsing and crosstalk of the two APDs, in time order, up to ``t_end_ps``.

    Parameters
    ----------
    prim_t, prim_d : ndarray of int64 / uint8, shape (n,)
        Primary detections (processing time line, ascending) and their APD (0/1).
    t_end_ps : int
        Process events strictly before this time; later ones are left pending.
    last_ps : ndarray of int64, shape (2,)
        Time of the last counted detection of each APD (updated in place).
    heap_t, heap_d : ndarray
        Min-heap of pending secondary events (afterpulses, crosstalk).
    heap_n : int
        Number of events in the heap.
    rng : ndarray of uint64, shape (1,)
        State of the secondary-event random stream (updated in place).
    lost : ndarray of int64, shape (2,)
        Dead-time losses of each APD (incremented in place).
    dead_ps : int
        Non-paralysable dead time, ps.
    p_afterpulse, afterpulse_mean_ps : float
        Afterpulse probability per counted detection and mean delay (ps).
    p_crosstalk : float
        Crosstalk probability per counted detection.
    crosstalk_ps : int
        Delay of the crosstalk detection on the other APD, ps.

    Returns
    -------
    out_t, out_d : ndarray
        Counted detections (processing time line, ascending) and APD.
    n_consumed : int
        Number of leading primaries used (the rest is pending).
    heap_t, heap_d, heap_n
        The (possibly regrown) heap.
    """
    out_t = np.empty(prim_t.shape[0] + heap_n + 64, np.int64)
    out_d = np.empty(out_t.shape[0], np.uint8)
    if heap_t.shape[0] < 64:
        heap_t = _grow(heap_t, 64)
        heap_d = _grow(heap_d, 64)
    i = 0
    n_out = 0
    state = rng[0]
    while True:
        i, n_out, heap_n, state, finished = _detect_run(
            prim_t, prim_d, i, t_end_ps, out_t, out_d, n_out, heap_t, heap_d, heap_n, state,
            last_ps, lost, dead_ps, p_afterpulse, afterpulse_mean_ps, p_crosstalk, crosstalk_ps)
        if finished:
            break
        if n_out >= out_t.shape[0]:
            out_t = _grow(out_t, n_out + 64)
            out_d = _grow(out_d, n_out + 64)
        if heap_n + 2 > heap_t.shape[0]:
            heap_t = _grow(heap_t, heap_n + 64)
            heap_d = _grow(heap_d, heap_n + 64)
    rng[0] = state
    return out_t[:n_out], out_d[:n_out], i, heap_t, heap_d, heap_n


@njit(cache=True, nogil=True)
def _to_output(acc_t, acc_d, offset0, offset1):
    """Shift the counted detections of each APD by its offset and re-sort (nearly sorted)."""
    n = acc_t.shape[0]
    t = np.empty(n, np.int64)
    c = np.empty(n, np.uint8)
    for i in range(n):
        d = acc_d[i]
        t[i] = acc_t[i] + (offset1 if d else offset0)
        c[i] = d
    _insertion_sort_pairs(t, c, 0, n)
    return t, c


@njit(cache=True, nogil=True)
def _sync_times(t0_ps, t1_ps, period_ps, divider):
    """Numba twin of :func:`sync_times_ps` (``t0_ps ≥ 0``)."""
    step = period_ps * divider
    first = -(-t0_ps // step) * step
    if first >= t1_ps:
        return np.zeros(0, np.int64)
    n = (t1_ps - first + step - 1) // step
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = first + i * step
    return out


@njit(cache=True, nogil=True)
def _advance_span(t0_ps, t1_ps, block_ps, seed, period_ps,
                  em_source, em_p1, em_p2, em_tau_ps, em_tau_xx_ps,
                  on_start_ps, on_stop_ps, on_ptr, background_cps, dark_cps,
                  jitter_sigma_ps, latency_ps,
                  pending_t, pending_d, last_ps, heap_t, heap_d, heap_n, rng, lost,
                  dead_ps, p_afterpulse, afterpulse_mean_ps, p_crosstalk, crosstalk_ps,
                  offset0, offset1, held_t, held_c, sync_divider, keep0, keep1, counts,
                  res_src, res_i, res_u, res_f, bg_i, bg_u, bg_f):
    """One step of :meth:`HbtStream.advance`: the tags of ``[t0_ps, t1_ps)`` in one call.

    Generates the primaries, merges the pending ones, applies the detectors,
    shifts to the tag time base, merges the held-back tags and the sync, cuts at
    ``t1_ps`` and drops the tags of disabled APDs (``keep0`` / ``keep1``).
    ``counts`` (shape (3,)) is incremented in place with the tags returned.

    Returns
    -------
    out_t, out_c : ndarray
        The tags of the span, ascending, channel index 0/1/2.
    pending_t, pending_d, held_t, held_c, heap_t, heap_d, heap_n
        The new stream state.
    resume : tuple of ndarray
        Where the random walks stopped (:func:`_generate`).
    """
    (prim_t, prim_d, res_src, res_i, res_u, res_f, bg_i, bg_u, bg_f) = _generate(
        t0_ps, t1_ps, block_ps, seed, period_ps, em_source, em_p1, em_p2, em_tau_ps,
        em_tau_xx_ps, on_start_ps, on_stop_ps, on_ptr, background_cps, dark_cps,
        jitter_sigma_ps, latency_ps, res_src, res_i, res_u, res_f, bg_i, bg_u, bg_f)
    if pending_t.shape[0] > 0:
        prim_t, prim_d = merge_sorted(pending_t, pending_d, prim_t, prim_d)
    acc_t, acc_d, used, heap_t, heap_d, heap_n = apply_detectors(
        prim_t, prim_d, t1_ps, last_ps, heap_t, heap_d, heap_n, rng, lost, dead_ps,
        p_afterpulse, afterpulse_mean_ps, p_crosstalk, crosstalk_ps)
    new_pending_t = prim_t[used:].copy()
    new_pending_d = prim_d[used:].copy()
    out_t, out_c = _to_output(acc_t, acc_d, offset0, offset1)
    if held_t.shape[0] > 0:
        out_t, out_c = merge_sorted(held_t, held_c, out_t, out_c)
    if sync_divider > 0 and period_ps > 0:
        s_t = _sync_times(t0_ps, t1_ps, period_ps, sync_divider)
        s_c = np.full(s_t.shape[0], np.uint8(2))
        out_t, out_c = merge_sorted(out_t, out_c, s_t, s_c)
    cut = np.searchsorted(out_t, t1_ps)
    new_held_t = out_t[cut:].copy()
    new_held_c = out_c[cut:].copy()
    n = 0
    for i in range(cut):
        c = out_c[i]
        if (c == 0 and not keep0) or (c == 1 and not keep1):
            continue
        out_t[n] = out_t[i]
        out_c[n] = c
        counts[c] += 1
        n += 1
    return (out_t[:n], out_c[:n], new_pending_t, new_pending_d, new_held_t, new_held_c,
            heap_t, heap_d, heap_n, (res_src, res_i, res_u, res_f, bg_i, bg_u, bg_f))


# =========================================================================== stateful stream
@dataclass(frozen=True)
class DetectorModel:
    """The two APDs and the tagger inputs, in the units the kernels use.

    Attributes
    ----------
    dark_cps : tuple of float
        Dark count rate of APD1 and APD2, counts/s.
    dead_time_ps : int
        Non-paralysable dead time, ps.
    jitter_fwhm_ps : float
        Gaussian timing jitter of each detection (FWHM), ps.
    afterpulse_probability : float
        Probability of an afterpulse per counted detection.
    afterpulse_delay_ps : float
        Mean afterpulse delay (exponential), ps.
    channel_delay_ps : int
        Extra delay of APD2 tags relative to APD1, ps.
    crosstalk_probability : float
        Probability per counted detection of a crosstalk detection on the other APD.
    crosstalk_delay_ps : int
        Delay of the crosstalk detection, ps.
    """

    dark_cps: tuple[float, float] = (150.0, 200.0)
    dead_time_ps: int = 22_000
    jitter_fwhm_ps: float = 350.0
    afterpulse_probability: float = 0.005
    afterpulse_delay_ps: float = 100_000.0
    channel_delay_ps: int = 3000
    crosstalk_probability: float = 0.0
    crosstalk_delay_ps: int = 30_000

    @property
    def jitter_sigma_ps(self) -> float:
        """Gaussian σ of the jitter, ps."""
        return self.jitter_fwhm_ps / _FWHM_PER_SIGMA

    @property
    def latency_ps(self) -> int:
        """Fixed detector latency ``L0 = ceil(5σ)`` added to every APD tag, ps."""
        return int(math.ceil(5.0 * self.jitter_sigma_ps))

    @property
    def offsets_ps(self) -> tuple[int, int]:
        """Non-negative offsets from the processing time line to APD1 / APD2 tags, ps."""
        base = max(0, -int(self.channel_delay_ps))
        return base, base + int(self.channel_delay_ps)


@dataclass(frozen=True)
class Emitters:
    """Emitters excited during one generation span.

    Attributes
    ----------
    source_id : ndarray of int64, shape (m,)
        Stable id of each emitter (its index in the sample); fixes its random stream.
    detected_per_pulse_per_apd : ndarray of float64, shape (m,)
        Mean detected photons per pulse per APD while ON.
    g2_0 : ndarray of float64, shape (m,)
        g²(0) of each emitter.
    lifetime_ps : ndarray of float64, shape (m,)
        PL (exciton) lifetime, ps.
    on_start_ps, on_stop_ps : ndarray of int64, shape (k,)
        ON intervals of all emitters, concatenated, ps.
    on_ptr : ndarray of int64, shape (m + 1,)
        Emitter ``e`` owns ``on_start_ps[on_ptr[e]:on_ptr[e + 1]]``.
    """

    source_id: np.ndarray
    detected_per_pulse_per_apd: np.ndarray
    g2_0: np.ndarray
    lifetime_ps: np.ndarray
    on_start_ps: np.ndarray
    on_stop_ps: np.ndarray
    on_ptr: np.ndarray

    @classmethod
    def none(cls) -> Emitters:
        """No excited emitter."""
        z = np.zeros(0)
        zi = np.zeros(0, np.int64)
        return cls(zi, z, z, z, zi, zi, np.zeros(1, np.int64))

    @classmethod
    def from_intervals(cls, source_id, detected_per_pulse_per_apd, g2_0, lifetime_ps,
                       intervals_s: list[tuple[np.ndarray, np.ndarray]]) -> Emitters:
        """Build from per-emitter ON intervals given in seconds.

        Parameters
        ----------
        source_id, detected_per_pulse_per_apd, g2_0, lifetime_ps : array_like, shape (m,)
            See the attributes.
        intervals_s : list of (starts_s, stops_s)
            ON intervals of each emitter, s.
        """
        ptr = np.zeros(len(intervals_s) + 1, np.int64)
        ptr[1:] = np.cumsum([len(a) for a, _ in intervals_s])
        if intervals_s:
            starts = np.round(np.concatenate([a for a, _ in intervals_s]) * 1e12)
            stops = np.round(np.concatenate([b for _, b in intervals_s]) * 1e12)
        else:
            starts = stops = np.zeros(0)
        return cls(
            np.asarray(source_id, np.int64).reshape(-1),
            np.asarray(detected_per_pulse_per_apd, np.float64).reshape(-1),
            np.asarray(g2_0, np.float64).reshape(-1),
            np.asarray(lifetime_ps, np.float64).reshape(-1),
            starts.astype(np.int64), stops.astype(np.int64), ptr,
        )


@dataclass
class _StreamState:
    t_ps: int = 0
    last_ps: np.ndarray = field(default_factory=lambda: np.full(2, _NEVER_PS, np.int64))
    heap_t: np.ndarray = field(default_factory=lambda: np.empty(64, np.int64))
    heap_d: np.ndarray = field(default_factory=lambda: np.empty(64, np.uint8))
    heap_n: int = 0
    rng: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint64))
    lost: np.ndarray = field(default_factory=lambda: np.zeros(2, np.int64))
    pending_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    pending_d: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    held_t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    held_c: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    # where the random walks of the current block stopped (_generate)
    resume: tuple = field(default_factory=lambda: _no_resume(0))


class HbtStream:
    """A continuous HBT tag stream, produced interval by interval.

    Parameters
    ----------
    detectors : DetectorModel
        APD and tagger properties.
    seed : int
        Random seed (≥ 0).
    t_start_ps : int, optional
        Time at which the stream starts (default 0), ps.
    block_ps : int, optional
        Randomness block length, ps.

    Notes
    -----
    Output channels are indices: 0 = APD1, 1 = APD2, 2 = laser sync. Call
    :meth:`advance` with increasing end times; each call returns exactly the tags
    in ``[previous end, t_end_ps)``.
    """

    def __init__(self, detectors: DetectorModel, seed: int, t_start_ps: int = 0,
                 block_ps: int = BLOCK_PS) -> None:
        if seed < 0:
            raise ValueError(f"seed: {seed} must be ≥ 0")
        self.detectors = detectors
        self.seed = int(seed)
        self.block_ps = int(block_ps)
        self._state = _StreamState(t_ps=int(t_start_ps))
        self._state.rng[0] = _stream_seed(self.seed, -1 & 0xFFFFFFFF, 0xFFFF)
        self._consts = _DetectorConstants.of(detectors)
        self._em_cache: tuple | None = None
        self._bg_cache: tuple[float, np.ndarray] = (0.0, np.zeros(2))

    @property
    def t_ps(self) -> int:
        """End of the span produced so far, ps."""
        return self._state.t_ps

    @property
    def dead_time_losses(self) -> tuple[int, int]:
        """Detections lost to dead time so far on APD1 and APD2."""
        return int(self._state.lost[0]), int(self._state.lost[1])

    def block_span_ps(self, t_end_ps: int) -> tuple[int, int]:
        """Span ``[t0, t1)`` for which emitter ON intervals are needed to reach ``t_end_ps``."""
        b = self.block_ps
        t0 = (self._state.t_ps // b) * b
        t1 = -(-int(t_end_ps) // b) * b
        return t0, max(t1, t0 + b)

    def advance(self, t_end_ps: int, emitters: Emitters, period_ps: int,
                background_cps_per_apd: float, sync_divider: int = 0,
                max_tags: int | None = None,
                keep_apd: tuple[bool, bool] = (True, True)) -> StreamOutput:
        """Produce the tags of ``[self.t_ps, t_end_ps)`` under a constant excitation.

        Parameters
        ----------
        t_end_ps : int
            End of the span, ps (≥ :attr:`t_ps`).
        emitters : Emitters
            Excited emitters; their ON intervals must cover :meth:`block_span_ps`.
        period_ps : int
            Laser period, ps (≤ 0 when the laser is off: no photons, no background,
            no sync).
        background_cps_per_apd : float
            Uncorrelated background per APD, counts/s (dark counts come on top).
        sync_divider : int, optional
            Record every ``sync_divider``-th laser pulse as channel 2 (0: no sync).
        max_tags : int, optional
            Keep at most this many tags (the first ones); the rest are counted only.
        keep_apd : (bool, bool), optional
            Whether the tags of APD1 / APD2 are recorded (a disabled input still
            detects, so dead time and crosstalk are unchanged).

        Returns
        -------
        StreamOutput
        """
        st = self._state
        t_end_ps = int(t_end_ps)
        if t_end_ps < st.t_ps:
            raise ValueError(f"t_end_ps {t_end_ps} is before the stream time {st.t_ps}")
        period_ps = int(period_ps) if period_ps > 0 else 0
        em = self._emitter_arrays(emitters, period_ps)
        bg_cps = max(0.0, float(background_cps_per_apd)) if period_ps > 0 else 0.0
        bg = self._bg_cache
        if bg[0] != bg_cps:
            bg = self._bg_cache = (bg_cps, np.full(2, bg_cps))
        c = self._consts
        divider = int(sync_divider) if sync_divider else 0
        keep0, keep1 = bool(keep_apd[0]), bool(keep_apd[1])
        pieces_t: list[np.ndarray] = []
        pieces_c: list[np.ndarray] = []
        counts = np.zeros(3, np.int64)
        n_kept = 0
        n_dropped = 0
        t_begin = t = st.t_ps
        while t < t_end_ps:
            t_next = min(t_end_ps, (t // SUPERCHUNK_PS + 1) * SUPERCHUNK_PS)
            (out_t, out_c, st.pending_t, st.pending_d, st.held_t, st.held_c,
             st.heap_t, st.heap_d, st.heap_n, st.resume) = _advance_span(
                t, t_next, self.block_ps, self.seed, period_ps, *em, bg[1], c.dark_cps,
                c.sigma_ps, c.latency_ps, st.pending_t, st.pending_d, st.last_ps,
                st.heap_t, st.heap_d, st.heap_n, st.rng, st.lost, c.dead_ps,
                c.p_afterpulse, c.afterpulse_mean_ps, c.p_crosstalk, c.crosstalk_ps,
                c.offset0, c.offset1, st.held_t, st.held_c, divider, keep0, keep1, counts,
                *st.resume)
            if max_tags is not None and n_kept + out_t.size > max_tags:
                room = max(0, max_tags - n_kept)
                n_dropped += out_t.size - room
                out_t = out_t[:room]
                out_c = out_c[:room]
            n_kept += out_t.size
            pieces_t.append(out_t)
            pieces_c.append(out_c)
            t = t_next
            st.t_ps = t
        if len(pieces_t) == 1:
            t_all, c_all = pieces_t[0], pieces_c[0]
        elif pieces_t:
            t_all, c_all = np.concatenate(pieces_t), np.concatenate(pieces_c)
        else:
            t_all, c_all = np.zeros(0, np.int64), np.zeros(0, np.uint8)
        return StreamOutput(t_all, c_all, t_begin, t_end_ps, n_dropped, counts)

    def _emitter_arrays(self, emitters: Emitters, period_ps: int) -> tuple[np.ndarray, ...]:
        """Kernel arrays of the emitters that can give photons (cached for the same object).

        Returns ``(source, p1, p2, tau_ps, tau_xx_ps, on_start_ps, on_stop_ps, on_ptr)``.
        """
        cached = self._em_cache
        if cached is not None and cached[0] is emitters and cached[1] == (period_ps > 0):
            return cached[2]
        p1, p2 = photon_number_probabilities(emitters.detected_per_pulse_per_apd, emitters.g2_0)
        keep = p1 + p2 > 0
        if period_ps <= 0:
            keep[:] = False
        src = (emitters.source_id + SOURCE_EMITTER_BASE).astype(np.int64)
        tau = emitters.lifetime_ps.astype(np.float64)
        on_start, on_stop, on_ptr = _select_intervals(emitters, keep)
        arrays = (src[keep], p1[keep], p2[keep], tau[keep], tau[keep] / 4.0,
                  on_start, on_stop, on_ptr)
        self._em_cache = (emitters, period_ps > 0, arrays)
        return arrays


@dataclass(frozen=True)
class _DetectorConstants:
    """:class:`DetectorModel` in the plain types the kernels take."""

    dark_cps: np.ndarray
    sigma_ps: float
    latency_ps: int
    dead_ps: int
    p_afterpulse: float
    afterpulse_mean_ps: float
    p_crosstalk: float
    crosstalk_ps: int
    offset0: int
    offset1: int

    @classmethod
    def of(cls, det: DetectorModel) -> _DetectorConstants:
        off0, off1 = det.offsets_ps
        return cls(np.asarray(det.dark_cps, np.float64), float(det.jitter_sigma_ps),
                   int(det.latency_ps), int(det.dead_time_ps),
                   float(det.afterpulse_probability), float(det.afterpulse_delay_ps),
                   float(det.crosstalk_probability), int(det.crosstalk_delay_ps),
                   int(off0), int(off1))


@dataclass(frozen=True)
class StreamOutput:
    """The tags of one :meth:`HbtStream.advance` call.

    Attributes
    ----------
    t_ps : ndarray of int64, shape (n,)
        Tag times, ascending, ps.
    channel : ndarray of uint8, shape (n,)
        0 = APD1, 1 = APD2, 2 = sync.
    t_start_ps, t_stop_ps : int
        The interval ``[t_start_ps, t_stop_ps)`` covered.
    n_dropped : int
        Tags produced beyond ``max_tags`` and not returned.
    counts : ndarray of int64, shape (3,)
        Tags produced per channel index, dropped ones included.
    """

    t_ps: np.ndarray
    channel: np.ndarray
    t_start_ps: int
    t_stop_ps: int
    n_dropped: int
    counts: np.ndarray


def _select_intervals(emitters: Emitters, keep: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ON intervals of the kept emitters, re-packed with a new pointer array."""
    if keep.all():
        return (emitters.on_start_ps.astype(np.int64), emitters.on_stop_ps.astype(np.int64),
                emitters.on_ptr.astype(np.int64))
    idx = np.flatnonzero(keep)
    starts = [emitters.on_start_ps[emitters.on_ptr[i]:emitters.on_ptr[i + 1]] for i in idx]
    stops = [emitters.on_stop_ps[emitters.on_ptr[i]:emitters.on_ptr[i + 1]] for i in idx]
    ptr = np.zeros(idx.size + 1, np.int64)
    ptr[1:] = np.cumsum([s.size for s in starts])
    if idx.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), ptr
    return (np.concatenate(starts).astype(np.int64), np.concatenate(stops).astype(np.int64),
            ptr)


def simulate_constant_emitters(
    duration_s: float,
    detected_cps_per_apd: np.ndarray,
    g2_0: np.ndarray,
    lifetime_ns: np.ndarray,
    *,
    detectors: DetectorModel | None = None,
    rep_rate_hz: float = 10e6,
    background_cps_per_apd: float = 0.0,
    seed: int = 0,
    sync_divider: int = 0,
    read_s: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Tags of always-ON emitters under constant excitation (no blinking).

    Parameters
    ----------
    duration_s : float
        Acquisition time, s.
    detected_cps_per_apd : array_like, shape (m,)
        Detected photon rate of each emitter per APD before dead time, counts/s.
    g2_0, lifetime_ns : array_like, shape (m,)
        g²(0) and lifetime (ns) of each emitter.
    detectors : DetectorModel, optional
        APD properties (default: :class:`DetectorModel` defaults).
    rep_rate_hz : float
        Laser repetition rate, Hz.
    background_cps_per_apd : float
        Uncorrelated background per APD, counts/s.
    seed : int
        Random seed.
    sync_divider : int
        Record every n-th pulse as channel 2 (0: no sync).
    read_s : float, optional
        Produce the stream in reads of this length (default: one read).

    Returns
    -------
    t_ps : ndarray of int64, shape (n,)
    channel : ndarray of uint8, shape (n,)
        0 = APD1, 1 = APD2, 2 = sync.
    """
    det = detectors or DetectorModel()
    rate = np.atleast_1d(np.asarray(detected_cps_per_apd, np.float64))
    m = rate.size
    period_ps = period_ps_from_rate(rep_rate_hz)
    t_end_ps = int(round(duration_s * 1e12))
    stream = HbtStream(det, seed)
    span = stream.block_span_ps(t_end_ps)
    starts = np.array([span[0]], np.int64)
    stops = np.array([span[1]], np.int64)
    emitters = Emitters(
        np.arange(m, dtype=np.int64), rate * period_ps * 1e-12,
        np.broadcast_to(np.asarray(g2_0, np.float64), (m,)).copy(),
        np.broadcast_to(np.asarray(lifetime_ns, np.float64) * 1e3, (m,)).copy(),
        np.tile(starts, m), np.tile(stops, m), np.arange(m + 1, dtype=np.int64))
    step_ps = t_end_ps if read_s is None else max(1, int(round(read_s * 1e12)))
    ts, cs = [], []
    t = 0
    while t < t_end_ps:
        t = min(t_end_ps, t + step_ps)
        out = stream.advance(t, emitters, period_ps, background_cps_per_apd, sync_divider)
        ts.append(out.t_ps)
        cs.append(out.channel)
    if not ts:
        return np.zeros(0, np.int64), np.zeros(0, np.uint8)
    return np.concatenate(ts), np.concatenate(cs)
