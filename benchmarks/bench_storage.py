"""Throughput of the crash-safe session storage (SWMR HDF5).

Targets (issue "Acquisition"): 1000 FVB spectra/s (1600 px) and 10 M tags/s, each
record flushed before ``append`` returns. Peers, measured on the same data in the
same run: a plain (non-SWMR) h5py append of the same arrays, flushed per record,
and ``numpy.save`` appending to one open file, flushed per record. Ratios are
micropl / peer (above 1: micropl is faster).

Run: ``.venv/bin/python benchmarks/bench_storage.py``
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from micropl.acquisition.storage import SessionWriter
from micropl.records import Spectrum, TagChunk, Tagged

N_PX = 1600
N_SPECTRA = 600
TAGS_PER_CHUNK = 100_000
N_CHUNKS = 60
REPEATS = 5


def _median_rate(run: Callable[[Path], float], n_items: float, tmp: Path) -> float:
    """Median of ``n_items / seconds`` over REPEATS fresh runs."""
    rates = []
    for k in range(REPEATS):
        folder = tmp / f"r{k}"
        folder.mkdir()
        rates.append(n_items / run(folder))
        shutil.rmtree(folder)
    return statistics.median(rates)


# --------------------------------------------------------------------------- data
def _spectra() -> list[Spectrum]:
    rng = np.random.default_rng(0)
    wl = np.linspace(480.0, 560.0, N_PX)
    return [Spectrum(wl, rng.normal(500, 20, N_PX), 0.001, t_s=i * 1e-3) for i in range(N_SPECTRA)]


def _chunks() -> list[TagChunk]:
    rng = np.random.default_rng(1)
    out = []
    t0 = 0
    for _ in range(N_CHUNKS):
        t = t0 + np.cumsum(rng.integers(1, 2_000, TAGS_PER_CHUNK)).astype(np.int64)
        out.append(TagChunk(t, rng.integers(1, 3, TAGS_PER_CHUNK).astype(np.uint8), t0,
                            int(t[-1]) + 1))
        t0 = int(t[-1]) + 1
    return out


# --------------------------------------------------------------------------- micropl
def micropl_each(records: list, qd_kind: str) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        with SessionWriter.create(folder / "s.h5") as w:
            t = time.perf_counter()
            for r in records:
                w.append(Tagged(r, 0, 1, qd_kind))
            return time.perf_counter() - t
    return run


def micropl_batched(records: list, batch: int) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        with SessionWriter.create(folder / "s.h5") as w:
            items = [Tagged(r, 0, 1, "frame") for r in records]
            t = time.perf_counter()
            for i in range(0, len(items), batch):
                w.append_many(items[i: i + batch])
            return time.perf_counter() - t
    return run


# --------------------------------------------------------------------------- peers
def h5py_plain(arrays: list[tuple[np.ndarray, ...]]) -> Callable[[Path], float]:
    """Non-SWMR h5py: one resizable 1-D dataset per array field, flush per record."""
    def run(folder: Path) -> float:
        with h5py.File(folder / "plain.h5", "w") as f:
            dsets = [f.create_dataset(f"a{k}", shape=(0,), maxshape=(None,), dtype=a.dtype,
                                      chunks=(max(1024, (1 << 20) // a.dtype.itemsize),))
                     for k, a in enumerate(arrays[0])]
            t = time.perf_counter()
            for record in arrays:
                for ds, a in zip(dsets, record):
                    n = ds.shape[0]
                    ds.resize((n + a.size,))
                    ds[n:] = a
                f.flush()
            return time.perf_counter() - t
    return run


def numpy_save(arrays: list[tuple[np.ndarray, ...]]) -> Callable[[Path], float]:
    """``numpy.save`` of each array into one open file, flushed per record."""
    def run(folder: Path) -> float:
        with open(folder / "data.npy", "wb") as fh:
            t = time.perf_counter()
            for record in arrays:
                for a in record:
                    np.save(fh, a)
                fh.flush()
            return time.perf_counter() - t
    return run


def _line(name: str, value: float, unit: str, peers: dict[str, float]) -> str:
    parts = ", ".join(f"{p}: {v:.3g}, ratio {value / v:.2f}" for p, v in peers.items())
    return f"{name}: {value:.4g} {unit} (peer {parts})"


def main() -> None:
    spectra = _spectra()
    chunks = _chunks()
    spec_arrays = [(s.wavelength_nm, s.counts) for s in spectra]
    tag_arrays = [(c.t_ps, c.channel) for c in chunks]
    n_tags = TAGS_PER_CHUNK * N_CHUNKS
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        peers_spec = {"h5py non-SWMR": _median_rate(h5py_plain(spec_arrays), N_SPECTRA, tmp),
                      "numpy.save": _median_rate(numpy_save(spec_arrays), N_SPECTRA, tmp)}
        each = _median_rate(micropl_each(spectra, "frame"), N_SPECTRA, tmp)
        print(_line("spectra, flush per spectrum (1600 px)", each, "spectra/s", peers_spec))
        batched = _median_rate(micropl_batched(spectra, 50), N_SPECTRA, tmp)
        print(_line("spectra, flush per 50 (append_many)", batched, "spectra/s", peers_spec))
        peers_tags = {"h5py non-SWMR": _median_rate(h5py_plain(tag_arrays), n_tags, tmp) / 1e6,
                      "numpy.save": _median_rate(numpy_save(tag_arrays), n_tags, tmp) / 1e6}
        tags = _median_rate(micropl_each(chunks, "g2"), n_tags, tmp) / 1e6
        print(_line(f"tags, flush per {TAGS_PER_CHUNK} tags", tags, "Mtags/s", peers_tags))
        # Resume rewrites the file: its speed against a plain file copy.
        src = tmp / "resume.h5"
        with SessionWriter.create(src) as w:
            w.append_many(Tagged(c, 0, 1, "g2") for c in chunks)
        size_mb = src.stat().st_size / 1e6
        resume_s, copy_s = [], []
        for _ in range(3):
            t = time.perf_counter()
            SessionWriter.resume(src).close()
            resume_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            shutil.copyfile(src, tmp / "copy.h5")
            copy_s.append(time.perf_counter() - t)
        resume = size_mb / statistics.median(resume_s)
        copy = size_mb / statistics.median(copy_s)
        print(_line(f"resume (rewrite of a {size_mb:.0f} MB session)", resume, "MB/s",
                    {"shutil.copyfile": copy}))


if __name__ == "__main__":
    main()
