"""Acquisition pipeline benchmarks (issue "Acquisition", performance).

* Spectra into storage and the live fitter: FVB spectra (1600 px) per second, against a
  plain loop a user would otherwise write (h5py append + scipy ``curve_fit``).
* Time tags into storage and the live correlator: tags per second, against a plain
  h5py append of the same chunks (no analysis).
* Real-time overhead: a scaled-down survey in real mode against the same survey in fast
  mode, whose virtual duration is exactly the requested dwell, exposure and g² times plus
  the instruments' own move, settle and readout times.
* The demo (30 QDs) wall time.

Run: ``python benchmarks/bench_pipeline.py`` (about 2–3 minutes).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from scipy.optimize import curve_fit

from micropl.acquisition import Session, load_setup
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.records import Spectrum, TagChunk, Tagged


def _spectra(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    wavelength_nm = np.linspace(440.0, 600.0, 1600)
    energy_ev = 1239.84198 / wavelength_nm
    out = []
    for _ in range(n):
        e0, w = rng.uniform(2.38, 2.5), rng.uniform(0.06, 0.12)
        line = 3e4 * (w / 2) / np.pi / ((energy_ev - e0) ** 2 + (w / 2) ** 2) * 1e-4 * 1.1
        out.append(rng.gamma(np.maximum(rng.poisson(line + 5.0), 1e-9), 1.0) * 2 - 5.0)
    return wavelength_nm, out


def bench_spectra(n: int = 3000) -> None:
    rng = np.random.default_rng(1)
    wavelength_nm, counts = _spectra(n, rng)
    with load_setup(clock_mode="fast") as setup, tempfile.TemporaryDirectory() as tmp:
        with Session(setup, Path(tmp) / "bench.h5") as session:
            start = time.perf_counter()
            for i, c in enumerate(counts):
                session.stream.publish(Tagged(
                    Spectrum(wavelength_nm=wavelength_nm, counts=c, exposure_s=0.001,
                             t_s=i * 1e-3, em_gain=100, bias_subtracted=True,
                             counts_unit="e", read_noise=1.0), run_id=1, qd_id=0, kind="frame"))
            session.stream.flush(timeout_s=600)
            ours = n / (time.perf_counter() - start)
    # Peer: what a user would otherwise write — append each spectrum, fit with curve_fit.
    energy_ev = 1239.84198 / wavelength_nm

    def lorentz(e, e0, w, a, b):
        return a * (w / 2) / np.pi / ((e - e0) ** 2 + (w / 2) ** 2) + b

    m = 300
    with tempfile.TemporaryDirectory() as tmp, h5py.File(Path(tmp) / "peer.h5", "w") as f:
        ds = f.create_dataset("spectra", (0, 1600), maxshape=(None, 1600), chunks=(1, 1600),
                               dtype="<f8")
        start = time.perf_counter()
        for c in counts[:m]:
            ds.resize(ds.shape[0] + 1, axis=0)
            ds[-1] = c
            f.flush()
            k = int(np.argmax(c))
            curve_fit(lorentz, energy_ev, c, p0=(energy_ev[k], 0.08, c[k] * 0.04, 0.0),
                      sigma=np.sqrt(2 * np.maximum(c, 1) + 1), absolute_sigma=True)
        peer = m / (time.perf_counter() - start)
    print(f"spectra into storage + live fits: {ours:.0f} spectra/s (target 1000; "
          f"peer h5py+curve_fit loop: {peer:.0f}/s, ratio {ours / peer:.2f})")


def bench_tags(total_tags: int = 20_000_000, chunk_s: float = 0.02,
               rate_cps: float = 5e6) -> None:
    rng = np.random.default_rng(2)
    per_chunk = int(2 * rate_cps * chunk_s)
    n_chunks = total_tags // per_chunk
    chunks = []
    for i in range(n_chunks):
        t0 = int(i * chunk_s * 1e12)
        t = np.sort(rng.integers(t0, t0 + int(chunk_s * 1e12), per_chunk)).astype(np.int64)
        ch = rng.integers(1, 3, per_chunk).astype(np.uint8)
        chunks.append(TagChunk(t_ps=t, channel=ch, t_start_ps=t0,
                               t_stop_ps=t0 + int(chunk_s * 1e12)))
    with load_setup(clock_mode="fast") as setup, tempfile.TemporaryDirectory() as tmp:
        with Session(setup, Path(tmp) / "bench.h5") as session:
            start = time.perf_counter()
            for chunk in chunks:
                session.stream.publish(Tagged(chunk, run_id=1, qd_id=0, kind="g2"))
            session.stream.flush(timeout_s=600)
            ours = n_chunks * per_chunk / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp, h5py.File(Path(tmp) / "peer.h5", "w") as f:
        t_ds = f.create_dataset("t_ps", (0,), maxshape=(None,), dtype="<i8", chunks=(1 << 20,))
        c_ds = f.create_dataset("ch", (0,), maxshape=(None,), dtype="u1", chunks=(1 << 20,))
        start = time.perf_counter()
        for chunk in chunks:
            n0 = t_ds.shape[0]
            t_ds.resize((n0 + len(chunk),))
            c_ds.resize((n0 + len(chunk),))
            t_ds[n0:] = chunk.t_ps
            c_ds[n0:] = chunk.channel
            f.flush()
        peer = n_chunks * per_chunk / (time.perf_counter() - start)
    print(f"tags into storage + live correlator ({rate_cps / 1e6:.0f} Mcps per channel): "
          f"{ours / 1e6:.1f} M tags/s (target 10; peer plain h5py append without analysis: "
          f"{peer / 1e6:.1f} M tags/s, ratio {ours / peer:.2f})")


def _small_survey() -> Survey:
    return Survey(scan=RasterScan(x_min_um=5, x_max_um=9, y_min_um=5, y_max_um=9, step_um=0.25,
                                  dwell_s=0.01),
                  max_qds=1, min_snr=5, drift_every_n_qds=0,
                  refocus={"size_um": 0.8, "step_um": 0.2, "dwell_s": 0.01},
                  spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2,
                                               background_frames=1),
                  g2=G2(duration_s=2.0))


def bench_realtime_overhead(repeats: int = 3) -> None:
    overrides = {"camera": {"start_temperature_c": -80.0}}
    with load_setup(clock_mode="fast", overrides=overrides) as setup:
        with Session(setup) as session:
            session.run(_small_survey())
            requested_s = setup.clock.now()
    walls = []
    for _ in range(repeats):
        with load_setup(clock_mode="real", overrides=overrides) as setup:
            with Session(setup) as session:
                start = time.perf_counter()
                result = session.run(_small_survey())
                walls.append(time.perf_counter() - start)
                assert result.status == "completed", result.reason
    wall = statistics.median(walls)
    print(f"real-time survey: {wall:.2f} s wall for {requested_s:.2f} s of requested dwell, "
          f"exposure, g² and instrument time: overhead {100 * (wall / requested_s - 1):.1f} % "
          f"(target ≤ 10 %)")


def bench_demo() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "micropl", "demo", "--json", "--out",
                        str(Path(tmp) / "demo.h5")], check=True, capture_output=True)
        wall = time.perf_counter() - start
    print(f"micropl demo (30 QDs, spectra 5 × 1 s, g² 30 s each): {wall:.1f} s wall "
          f"(target < 60 s)")


def main() -> None:
    bench_spectra()
    bench_tags()
    bench_realtime_overhead()
    bench_demo()


if __name__ == "__main__":
    main()
