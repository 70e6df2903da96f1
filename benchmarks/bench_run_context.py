"""Run-context benchmarks (issue 13, "procedures own their results").

* Emit cost: the wall time of one ``ctx.emit`` inside a running procedure, with storage
  and the live core attached (tag chunks of 20 ms at 2 × 200 kcps, and 1340-pixel
  spectra), and the time the run then needs to end (the stream drained, stored).
* A fast-mode survey's wall time (3 QDs, stored to a session file).
* A slow disk: the storage writer takes 50 ms more per batch. The wall time of a
  5 s fast-mode g² with a precision check every 0.1 s of data, and of the survey.

Run: ``python benchmarks/bench_run_context.py`` (about a minute).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from micropl.acquisition import Session, load_setup
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.records import Spectrum, TagChunk


class _Emitter(ProcedureBase):
    """Emits prepared records as fast as it can; returns the seconds per emit."""

    name: ClassVar[str] = "bench_emit"
    records: ClassVar[list[tuple[Any, str]]] = []

    def run(self, ctx: Any) -> float:
        start = time.perf_counter()
        for record, kind in self.records:
            ctx.emit(record, kind=kind)
        return (time.perf_counter() - start) / len(self.records)


def _chunks(n: int, rng: np.random.Generator) -> list[tuple[TagChunk, str]]:
    out = []
    per_chunk = 8000  # 2 × 200 kcps over 20 ms
    for i in range(n):
        t0 = i * 20_000_000_000
        t = np.sort(rng.integers(t0, t0 + 20_000_000_000, per_chunk)).astype(np.int64)
        ch = rng.integers(1, 3, per_chunk).astype(np.uint8)
        out.append((TagChunk(t_ps=t, channel=ch, t_start_ps=t0, t_stop_ps=t0 + 20_000_000_000),
                    "trace"))
    return out


def _spectra(n: int, rng: np.random.Generator) -> list[tuple[Spectrum, str]]:
    wavelength_nm = np.linspace(440.0, 600.0, 1340)
    return [(Spectrum(wavelength_nm=wavelength_nm, counts=rng.normal(100.0, 10.0, 1340),
                      exposure_s=0.01, t_s=i * 0.01), "film_frame") for i in range(n)]


def bench_emit(label: str, records: list[tuple[Any, str]], repeats: int = 7) -> None:
    per_emit, ends = [], []
    for _ in range(repeats):
        with load_setup(clock_mode="fast") as setup, tempfile.TemporaryDirectory() as tmp:
            with Session(setup, Path(tmp) / "bench.h5") as session:
                _Emitter.records = records
                start = time.perf_counter()
                result = session.run(_Emitter())
                total = time.perf_counter() - start
                assert result.ok, result.reason
                per_emit.append(result.value)
                ends.append(total - result.value * len(records))
    print(f"emit {label}: {1e6 * statistics.median(per_emit):.1f} µs per record "
          f"(min {1e6 * min(per_emit):.1f}) "
          f"({len(records)} records); run end after the last emit: "
          f"{1e3 * statistics.median(ends):.0f} ms")


def _survey() -> Survey:
    return Survey(scan=RasterScan(x_min_um=2, x_max_um=14, y_min_um=2, y_max_um=14,
                                  step_um=0.25, dwell_s=0.005),
                  max_qds=3, min_snr=5, drift_every_n_qds=0,
                  refocus={"size_um": 0.8, "step_um": 0.2, "dwell_s": 0.01},
                  spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=3,
                                               background_frames=1),
                  g2=G2(duration_s=5.0), film_accumulations=2)


def bench_survey(repeats: int = 3) -> None:
    walls = []
    for _ in range(repeats):
        with load_setup(clock_mode="fast") as setup, tempfile.TemporaryDirectory() as tmp:
            with Session(setup, Path(tmp) / "survey.h5") as session:
                start = time.perf_counter()
                result = session.run(_survey())
                walls.append(time.perf_counter() - start)
                assert result.ok, result.reason
                done = result.value["n_completed"]
    print(f"fast-mode survey ({done} QDs, stored): {statistics.median(walls):.2f} s wall "
          f"(median of {repeats}: {', '.join(f'{w:.2f}' for w in walls)})")


def _slow_disk(session: Session, delay_s: float = 0.05) -> None:
    real = session.writer.append_many

    def slow(items: list[Any]) -> Any:
        time.sleep(delay_s)
        return real(items)

    session.writer.append_many = slow


def bench_slow_writer(repeats: int = 3) -> None:
    qd_um = (7.9, 10.4)
    for label, make in (("g² 5 s, precision check every 0.1 s",
                         lambda: G2(duration_s=5.0, target_g2_err=1e-6, min_duration_s=0.0,
                                    update_interval_s=0.1)),
                        ("survey (3 QDs)", _survey)):
        walls = []
        for _ in range(repeats):
            with load_setup(clock_mode="fast") as setup, tempfile.TemporaryDirectory() as tmp:
                with Session(setup, Path(tmp) / "slow.h5") as session:
                    _slow_disk(session)
                    setup.scanner.move_to(*qd_um)
                    start = time.perf_counter()
                    result = session.run(make())
                    walls.append(time.perf_counter() - start)
                    assert result.ok, result.reason
        print(f"slow disk (+50 ms per write), {label}: {statistics.median(walls):.2f} s wall "
              f"(median of {repeats}: {', '.join(f'{w:.2f}' for w in walls)})")


def main() -> None:
    rng = np.random.default_rng(3)
    bench_emit("tag chunk (8000 tags)", _chunks(500, rng))
    bench_emit("spectrum (1340 px)", _spectra(500, rng))
    bench_survey()
    bench_slow_writer()


if __name__ == "__main__":
    main()
