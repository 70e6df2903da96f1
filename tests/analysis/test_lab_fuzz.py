"""Corrupted lab files: every reader ends with a result or one FileFormatError line.

Real files (SIF, SPE 3.0, ASC) and written ones (SPE 2.x, PHU, PTU T3) are truncated
or get bytes flipped at random (hypothesis); the reader must return a result or raise
:class:`~micropl.errors.AnalysisInputError` with one line naming the file — no other
exception, no hang (a truncated SIF header used to make the header parser loop), and
bounded memory.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lab_writers import write_phu, write_spe2, write_t3

from micropl.analysis.formats import read_spectra
from micropl.analysis.formats.histograms import read_histogram
from micropl.analysis.formats.t3 import read_t3_header, t3_decay
from micropl.errors import AnalysisInputError

DATA = Path(__file__).resolve().parents[1] / "data"


def _t3_read(path: Path):
    header, timing = read_t3_header(path)
    return t3_decay(header, timing, (1, 2))


def _sources(tmp: Path) -> dict[str, tuple[bytes, object]]:
    rng = np.random.default_rng(0)
    spe2 = write_spe2(tmp / "s2.spe", rng.poisson(100, (2, 128)), (900.0, 0.2))
    phu = write_phu(tmp / "h.phu", [rng.poisson(30, 512).astype(np.uint32)])
    nsync = np.sort(rng.integers(0, 2_000_000, 3000))
    t3 = write_t3(tmp / "t.ptu", nsync, rng.integers(0, 700, nsync.size),
                  rng.integers(1, 3, nsync.size), period_s=12.5e-9, resolution_s=16e-12)
    return {
        "sif": ((DATA / "raman1.sif").read_bytes(), read_spectra),
        "spe3": ((DATA / "one_dimensional_spectrum.spe").read_bytes(), read_spectra),
        "asc": ((DATA / "raman1.asc").read_bytes(), read_spectra),
        "spe2": (spe2.read_bytes(), read_spectra),
        "phu": (phu.read_bytes(), read_histogram),
        "t3": (t3.read_bytes(), _t3_read),
    }


_SOURCES: dict = {}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """The sources, kept out of hypothesis' report of a failing example."""
    if not _SOURCES:
        _SOURCES.update(_sources(tmp_path_factory.mktemp("fuzz-src")))
    return lambda fmt: _SOURCES[fmt]


@pytest.mark.parametrize("fmt", ["sif", "spe3", "asc", "spe2", "phu", "t3"])
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_file_is_read_or_refused_in_one_line(sources, tmp_path, fmt, data):
    raw, reader = sources(fmt)
    kind = data.draw(st.sampled_from(["truncate", "flip", "flip-header"]))
    buf = bytearray(raw)
    if kind == "truncate":
        buf = buf[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        hi = min(len(raw), 4200) if kind == "flip-header" else len(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            k = data.draw(st.integers(0, hi - 1))
            buf[k] = data.draw(st.integers(0, 255))
    path = tmp_path / f"fuzzed.{ 'ptu' if fmt == 't3' else fmt}"
    path.write_bytes(bytes(buf))
    tracemalloc.start()
    try:
        reader(path)
    except AnalysisInputError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 200e6
