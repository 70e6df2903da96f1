"""Session files written directly, without micropl's simulator: survey-like QDs with a
Lorentzian line in photoelectrons and HBT time tags from one or two antibunched emitters.

Used by the re-analysis tests and benchmark (independent of ``simulators/``): each QD
has a target, a completed status, ``n_frames`` processed frames and their accumulated
sum, and raw tags of kind ``g2`` in chunks. A QD with ``n_emitters=2`` (every
``multiple_every``-th) gives g²(0) ≈ 0.5 and is a ``multiple_emitters`` QD.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from micropl.acquisition.storage import SessionWriter
from micropl.records import QDStatus, QDTarget, RunStart, RunStop, Spectrum, TagChunk, Tagged

HC_EV_NM = 1239.84198
PERIOD_PS = 100_000  # 10 MHz
WAVELENGTH_NM = np.linspace(450.0, 570.0, 1024)


def line_counts(energy_ev: float, fwhm_mev: float, area_e: float) -> np.ndarray:
    """Expected photoelectrons per pixel of a Lorentzian line in energy (pixel integrals)."""
    edges_nm = np.concatenate(([1.5 * WAVELENGTH_NM[0] - 0.5 * WAVELENGTH_NM[1]],
                               0.5 * (WAVELENGTH_NM[1:] + WAVELENGTH_NM[:-1]),
                               [1.5 * WAVELENGTH_NM[-1] - 0.5 * WAVELENGTH_NM[-2]]))
    e = HC_EV_NM / edges_nm
    gamma = fwhm_mev / 2e3
    cdf = np.arctan((e - energy_ev) / gamma) / np.pi
    return area_e * np.abs(np.diff(cdf))


def antibunched_times(rng: np.random.Generator, n_pulses: int, p_detect: float,
                      lifetime_ps: float) -> tuple[np.ndarray, np.ndarray]:
    """One single-photon emitter: at most one detected photon per pulse, to APD 1 or 2."""
    pulses = np.unique(rng.integers(0, n_pulses, rng.poisson(2 * p_detect * n_pulses)))
    t = pulses * PERIOD_PS + rng.exponential(lifetime_ps, pulses.size) \
        + rng.normal(0, 60, pulses.size)
    return t.astype(np.int64), rng.integers(1, 3, pulses.size).astype(np.uint8)


def qd_tags(rng: np.random.Generator, duration_s: float, n_emitters: int,
            rate_cps: float = 25_000.0, background_cps: float = 300.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Sorted tags (ps) and channels of one QD over ``duration_s``."""
    n_pulses = int(duration_s * 1e12 / PERIOD_PS)
    p = rate_cps / 1e7 / n_emitters
    parts = [antibunched_times(rng, n_pulses, p, 3000.0 + 1500.0 * k) for k in range(n_emitters)]
    n_bg = rng.poisson(2 * background_cps * duration_s)
    parts.append((rng.integers(0, n_pulses * PERIOD_PS, n_bg).astype(np.int64),
                  rng.integers(1, 3, n_bg).astype(np.uint8)))
    t = np.concatenate([a for a, _ in parts]) + 3000  # cable delay
    ch = np.concatenate([c for _, c in parts])
    order = np.argsort(t, kind="stable")
    return t[order], ch[order]


def write_session(path: Path, n_qds: int, *, seed: int = 0, duration_s: float = 2.0,
                  n_frames: int = 3, multiple_every: int = 5, chunk_s: float = 0.1,
                  corrupt_qd: int | None = None, window_fraction: float = 1.0) -> Path:
    """Write a survey-like session of ``n_qds`` QDs to ``path``; returns ``path``.

    ``corrupt_qd``: that QD's accumulated spectrum has a constant wavelength axis (its
    analysis raises). ``window_fraction``: the survey's ``g2.window_fraction`` parameter
    (no g² result is stored: a re-analysis takes the window from there).
    """
    rng = np.random.default_rng(seed)
    instruments = {"laser": {"rep_rate_hz": 1e7}, "tagger": {"apd_channels": [1, 2]}}
    parameters = {"g2": {"window_fraction": window_fraction, "duration_s": duration_s}}
    with SessionWriter.create(path, config_text="", instruments=instruments) as writer:
        writer.append(RunStart(0, "survey", json.dumps(parameters), time.time()))
        for qd in range(n_qds):
            writer.append(QDTarget(run_id=0, qd_id=qd, x_um=1.0 + qd, y_um=2.0, amplitude=100.0,
                                   snr=20.0))
            energy = rng.uniform(2.38, 2.52)
            fwhm = 60.0 + 500.0 * (energy - 2.38) + rng.normal(0, 5)
            area = rng.uniform(2e4, 6e4)
            read_noise = 5.0
            frames = []
            for _ in range(n_frames):
                counts = rng.poisson(line_counts(energy, fwhm, area)).astype(float)
                counts += rng.normal(0, read_noise, counts.size)
                frames.append(counts)
                writer.append(Tagged(Spectrum(WAVELENGTH_NM, counts, 1.0, counts_unit="e",
                                              bias_subtracted=True, read_noise=read_noise),
                                     run_id=0, qd_id=qd, kind="frame"))
            total = np.sum(frames, axis=0)
            axis = np.full_like(WAVELENGTH_NM, 500.0) if qd == corrupt_qd else WAVELENGTH_NM
            writer.append(Tagged(Spectrum(axis, total, 1.0, accumulations=n_frames,
                                          counts_unit="e", bias_subtracted=True,
                                          read_noise=read_noise * np.sqrt(n_frames)),
                                 run_id=0, qd_id=qd, kind="accumulated"))
            n_emitters = 2 if multiple_every and qd % multiple_every == multiple_every - 1 else 1
            t, ch = qd_tags(rng, duration_s, n_emitters)
            step = int(chunk_s * 1e12)
            edges = np.searchsorted(t, np.arange(0, int(duration_s * 1e12) + step, step))
            chunks = []
            for k in range(edges.size - 1):
                a, b = edges[k], edges[k + 1]
                chunks.append(Tagged(TagChunk(t[a:b], ch[a:b], k * step, (k + 1) * step),
                                     run_id=0, qd_id=qd, kind="g2"))
            writer.append_many(chunks)
            writer.append(QDStatus(run_id=0, qd_id=qd, status="completed", reason="",
                                   t_s=time.time()))
        writer.append(RunStop(0, "completed", "", time.time()))
    return path
