"""Session storage: round trips of every record type, schema, validation, bad files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
from record_compare import same

from micropl.acquisition.storage import SessionReader, SessionWriter, schema
from micropl.analysis.g2 import pulsed_g2
from micropl.analysis.spectra import SpectrumFit, fit_spectra
from micropl.errors import FileFormatError
from micropl.records import (
    QD_STATUSES,
    RUN_STATUSES,
    Frame,
    G2Histogram,
    MapLine,
    QDStatus,
    QDTarget,
    RefocusResult,
    RunStart,
    RunStop,
    Spectrum,
    TagChunk,
    Tagged,
)


def fake_record(spec: schema.TableSpec, rng: np.random.Generator):
    """A record of ``spec.record_type`` with random values of every declared column."""
    kwargs = {}
    same_length: dict[str, int] = {}
    for own in spec.own_ids:
        kwargs[own] = int(rng.integers(0, 1000))
    for col in spec.columns:
        if col.kind == "scalar":
            kwargs[col.name] = {"<f8": float(rng.normal()) * 1e3,
                                "<i8": int(rng.integers(-2**40, 2**40)),
                                "|b1": bool(rng.integers(2))}[col.dtype]
        elif col.kind == "label":
            kwargs[col.name] = str(rng.choice(RUN_STATUSES if spec.name == "run_stop"
                                              else QD_STATUSES))
        elif col.kind == "text":
            kwargs[col.name] = "µPL ✓ " + "x" * int(rng.integers(0, 40))
        elif col.kind == "json":
            if col.decode == "tuple":
                kwargs[col.name] = tuple(rng.normal(size=int(rng.integers(0, 4))).tolist())
            elif col.decode == "str_array":
                kwargs[col.name] = np.array(["", "fit failed: ✗"])
            else:
                kwargs[col.name] = {"a": [1, 2.5, None], "b": "ünïcode"}
        else:
            ndim = int(rng.integers(0 if col.max_ndim > 1 else 1, col.max_ndim + 1))
            shape = tuple(int(n) for n in rng.integers(0, 6, ndim))
            if col.name in schema.SAME_LENGTH.get(spec.name, ()):  # arrays that belong together
                shape = (same_length.setdefault("n", int(rng.integers(0, 6))),)
            dtype = np.dtype(col.dtype)
            if dtype.kind == "f":
                value = rng.normal(size=shape) * 1e6
            elif dtype.kind == "b":
                value = rng.integers(0, 2, shape).astype(bool)
            else:
                value = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
            kwargs[col.name] = value
    return spec.record_type(**kwargs)


def wrap(spec, record, qd_id=3, kind=""):
    return record if spec.own_ids else Tagged(record, run_id=1, qd_id=qd_id, kind=kind)


# --------------------------------------------------------------------------- schema
def test_every_registered_field_is_declared_explicitly():
    for spec in schema.registered_tables():
        assert spec.inferred == (), f"{spec.name}: undeclared fields {spec.inferred}"
        fields = {f.name for f in dataclasses.fields(spec.record_type)} - set(spec.own_ids)
        assert {c.name for c in spec.columns} == fields


def test_units_agree_with_name_suffixes():
    for spec in schema.registered_tables():
        for col in spec.columns:
            implied = schema.unit_from_name(col.name)
            if implied:
                assert col.unit == implied, f"{spec.name}.{col.name}: {col.unit!r} vs {implied}"


def test_build_table_strict_names_missing_and_stale_fields():
    @dataclass(frozen=True)
    class Rec:
        a_nm: float
        b: int

    with pytest.raises(schema.SchemaError, match="Rec.b has no storage column"):
        schema.build_table("rec", Rec, {"a_nm": schema.F("nm")}, default_kind="x", strict=True)
    with pytest.raises(schema.SchemaError, match="name no field"):
        schema.build_table("rec", Rec, {"a_nm": schema.F("nm"), "b": schema.I(),
                                        "c": schema.I()}, default_kind="x", strict=True)
    lenient = schema.build_table("rec", Rec, {"a_nm": schema.F("nm")}, default_kind="x")
    assert lenient.inferred == ("b",) and lenient.column("b").dtype == "<i8"
    with pytest.raises(schema.SchemaError, match="no storage table"):
        schema.table_for(Rec)


@dataclass(frozen=True)
class LifetimeFit:
    """A record type registered by this test: the extension point."""

    tau_ns: float
    decay_counts: np.ndarray
    label: str


schema.register_table(schema.build_table("test_lifetime_fit", LifetimeFit, {
    "tau_ns": schema.F("ns"), "decay_counts": schema.A("<i8", "counts"), "label": schema.T(),
}, default_kind="lifetime", strict=True))


def test_new_record_type_is_one_schema_entry(tmp_path):
    rec = LifetimeFit(3.5, np.arange(100, dtype=np.int64), "qd 7")
    with SessionWriter.create(tmp_path / "s.h5") as w:
        w.append(Tagged(rec, run_id=0, qd_id=7))
    with SessionReader(tmp_path / "s.h5") as r:
        (stored,) = r.records(LifetimeFit)
        assert same(stored.record, rec) and stored.kind == "lifetime" and stored.qd_id == 7
        assert r.qd(7).records["test_lifetime_fit"][0].record.tau_ns == 3.5


# --------------------------------------------------------------------------- round trips
def test_round_trip_every_table_bit_identical(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "s.h5"
    written = {}
    with SessionWriter.create(path) as w:
        for spec in schema.registered_tables():
            recs = [fake_record(spec, rng) for _ in range(3)]
            # one by one and as a batch
            w.append(wrap(spec, recs[0], kind="k0"))
            w.append_many([wrap(spec, r, kind="k1") for r in recs[1:]])
            written[spec.name] = recs
    with SessionReader(path) as r:
        for spec in schema.registered_tables():
            stored = r.records(spec.name)
            assert len(stored) == 3, spec.name
            for s, rec in zip(stored, written[spec.name]):
                assert same(s.record, rec), f"{spec.name}: {s.record} != {rec}"
                if not spec.own_ids:
                    assert (s.run_id, s.qd_id) == (1, 3)
            assert [s.kind for s in stored][0] == ("k0" if not spec.own_ids
                                                    else spec.default_kind)
        seqs = sorted(int(x) for t in r.tables for x in r.rows(t)["seq"])
        assert seqs == list(range(len(seqs)))


def test_round_trip_real_analysis_results(tmp_path):
    rng = np.random.default_rng(1)
    wl = np.linspace(480, 550, 800)
    e = 1239.84198 / wl
    line = 2000 / (1 + ((e - 2.41) / 0.035) ** 2)
    counts = rng.poisson(line + 50).astype(float)
    fit_one = fit_spectra(wl, counts)
    fit_batch = fit_spectra(wl, np.stack([counts, counts[::-1]]), n_peaks=2)
    tau = np.arange(-550_000, 550_000, 256, dtype=float) + 128
    period = 100_000.0
    peaks = sum(np.exp(-np.abs(tau - k * period) / 3000) * (0.2 if k == 0 else 1.0)
                for k in range(-5, 6))
    hist = rng.poisson(200 * peaks + 1).astype(np.int64)
    g2 = pulsed_g2(tau, hist, period_ps=period)
    records = [Tagged(fit_one, 0, 1, "accumulated"), Tagged(fit_batch, 0, 2),
               Tagged(g2, 0, 1, "final"), Tagged(G2Histogram(tau, hist, 256.0, 60.0), 0, 1)]
    with SessionWriter.create(tmp_path / "s.h5") as w:
        w.append_many(records)
    with SessionReader(tmp_path / "s.h5") as r:
        back = [s.record for t in ("spectrum_fit", "g2_result", "g2_histogram")
                for s in r.records(t)]
    assert isinstance(back[0], SpectrumFit) and back[0].peak_energy_ev.shape == ()
    assert back[1].params.shape == fit_batch.params.shape
    for a, b in zip(back, [fit_one, fit_batch, g2, records[3].record]):
        assert same(a, b)


def test_units_and_metadata_in_file(tmp_path):
    path = tmp_path / "s.h5"
    truth = {"x_um": np.array([1.0, 5.0]), "y_um": np.array([2.0, 6.0]),
             "energy_ev": np.array([2.40, 2.45]), "fwhm_mev": np.array([70.0, 100.0]),
             "g2_0": np.array([0.1, 0.2]), "core_shell": np.array([True, False])}
    with SessionWriter.create(path, config_text="laser:\n  driver: simulated\n",
                              instruments={"laser": {"rep_rate_hz": 1e7}}, truth=truth) as w:
        w.append(Tagged(Spectrum(np.linspace(500, 520, 1600), np.ones(1600), 0.5), 0, 0))
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "micropl-session" and f.attrs["simulated"]
        assert f["truth/x_um"].attrs["unit"] == "um"
        assert f["truth/energy_ev"].attrs["unit"] == "eV"
        assert f["tables/spectrum/wavelength_nm"].attrs["unit"] == "nm"
        units = json.loads(f["tables/spectrum/rows"].attrs["units"])
        assert units["exposure_s"] == "s" and units["wavelength_nm"] == "nm"
        assert json.loads(f["tables/tag_chunk/rows"].attrs["units"])["t_start_ps"] == "ps"
    with SessionReader(path) as r:
        assert r.config_text == "laser:\n  driver: simulated\n"
        assert r.instruments == {"laser": {"rep_rate_hz": 1e7}}
        np.testing.assert_array_equal(r.truth["core_shell"], [True, False])
        assert r.simulated and r.software_version
        assert abs(r.created_unix_s - time.time()) < 60


def test_runs_qds_and_logical_qd_group(tmp_path):
    path = tmp_path / "s.h5"
    wl = np.linspace(500, 520, 1600)
    with SessionWriter.create(path) as w:
        assert w.next_run_id() == 0
        w.append(RunStart(0, "survey", '{"max_qds": 2}', 100.0))
        assert w.next_run_id() == 1
        w.append_many([QDTarget(0, 0, 1.0, 2.0, 50.0, 10.0), QDTarget(0, 1, 3.0, 4.0, 60.0, 9.0),
                       QDTarget(0, 2, 5.0, 6.0, 70.0, 8.0)])
        w.append(Tagged(RefocusResult(1.1, 2.1, 0.1, 0.1, 0.01, 0.01, 0.0, 5e4, 0.6, True, "ok"),
                        0, 0))
        for k in range(3):
            w.append(Tagged(Spectrum(wl, np.full(1600, k, float), 1.0), 0, 0, "frame"))
        w.append(Tagged(TagChunk(np.arange(5, dtype=np.int64), np.ones(5, np.uint8), 0, 9),
                        0, 0, "g2"))
        w.append(Tagged(TagChunk(np.arange(5, 9, dtype=np.int64), np.full(4, 2, np.uint8), 9,
                                 20), 0, 0, "g2"))
        w.append(QDStatus(0, 0, "failed", "fit failed"))
        w.append(QDStatus(0, 0, "completed"))  # a retry: the latest wins
        w.append(QDStatus(0, 1, "failed", "APD saturated"))
        w.append(Tagged(MapLine(0, 1.0, np.arange(3.0), np.ones(3), 0.01), 0))
        w.append(RunStop(0, "aborted", "user abort", 200.0))
    with SessionReader(path) as r:
        (run,) = r.runs()
        assert (run.procedure, run.status, run.reason, run.start_s, run.end_s) == \
            ("survey", "aborted", "user abort", 100.0, 200.0)
        qds = {q.qd_id: q for q in r.qds()}
        assert [qds[i].status for i in range(3)] == ["completed", "failed", "pending"]
        assert qds[1].reason == "APD saturated" and qds[2].x_um == 5.0
        q0 = r.qd(0)
        assert [s.record.counts[0] for s in q0.spectra] == [0, 1, 2]
        assert q0.refocus.record.x_um == 1.1 and len(q0.tag_chunks) == 2
        assert "map_line" not in q0.records and r.qd(2).records == {}
        t, c = r.tags(qd_id=0)
        np.testing.assert_array_equal(t, np.arange(9))
        np.testing.assert_array_equal(c, [1] * 5 + [2] * 4)
        assert len(r.records("map_line", qd_id=-1)) == 1
        assert len(r.records(Spectrum, qd_id=0, kind="frame")) == 3
        assert r.resume_plan() == ({"max_qds": 2},
                                   [{"qd_id": 2, "x_um": 5.0, "y_um": 6.0, "amplitude": 70.0,
                                     "snr": 8.0}])


def test_plain_h5py_recipe_from_docs(tmp_path):
    """The per-QD recipe of docs/data-format.md, with h5py only."""
    path = tmp_path / "s.h5"
    wl = np.linspace(500, 520, 1600)
    with SessionWriter.create(path) as w:
        for qd in (4, 5):
            w.append(Tagged(Spectrum(wl, np.full(1600, float(qd)), 1.0), 0, qd, "accumulated"))
    # --- as in the docs
    with h5py.File(path, "r", swmr=True) as f:
        table = f["tables/spectrum"]
        rows = table["rows"][:]
        mine = rows[(rows["qd_id"] == 5) & (rows["kind"] == b"accumulated")]
        spectra = []
        for row in mine:
            o, n = row["counts_offset"], row["counts_size"]
            counts = table["counts"][o:o + n]
            o, n = row["wavelength_nm_offset"], row["wavelength_nm_size"]
            spectra.append((table["wavelength_nm"][o:o + n], counts))
    # ---
    assert len(spectra) == 1
    np.testing.assert_array_equal(spectra[0][0], wl)
    np.testing.assert_array_equal(spectra[0][1], np.full(1600, 5.0))


# --------------------------------------------------------------------------- validation
def test_bad_records_raise_and_batch_is_all_or_nothing(tmp_path):
    wl = np.linspace(500, 520, 16)
    good = Tagged(Spectrum(wl, np.ones(16), 1.0), 0, 0)
    with SessionWriter.create(tmp_path / "s.h5") as w:
        with pytest.raises(TypeError, match="tag_chunk.t_ps: cannot store float64"):
            w.append_many([good, Tagged(TagChunk(np.ones(3), np.ones(3, np.uint8), 0, 1))])
        with pytest.raises(ValueError, match="at most 1-d"):
            w.append(Spectrum(wl, np.ones((2, 16)), 1.0))
        with pytest.raises(TypeError, match="expected an int"):
            w.append(Frame(np.ones(3), 1.0, 0.0, index=1.5))
        with pytest.raises(schema.SchemaError, match="no storage table for dict"):
            w.append({"a": 1})
        with pytest.raises(TypeError, match="carries its own ids"):
            w.append(Tagged(RunStop(0, "completed")))
        with pytest.raises(ValueError, match="at most 32 bytes"):
            Tagged(good.record, kind="x" * 33)
        with pytest.raises(ValueError, match="status must be one of"):
            RunStop(0, "done")
        # integer ADU frames are stored exactly as float64
        w.append(Tagged(Frame(np.arange(6, dtype=np.uint16).reshape(2, 3), 1.0, 0.0), 0, 0))
        assert w.n_rows("spectrum") == 0
    with SessionReader(tmp_path / "s.h5") as r:
        assert r.n_rows("spectrum") == 0
        (frame,) = r.records("frame")
        np.testing.assert_array_equal(frame.record.counts, np.arange(6).reshape(2, 3))
        assert frame.record.counts.dtype == np.float64


def test_create_is_atomic_and_refuses_overwrite(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(ValueError, match="equal lengths"):
        SessionWriter.create(path, truth={"x_um": [1.0, 2.0], "y_um": [1.0]})
    assert list(tmp_path.iterdir()) == []  # no half-made file left
    SessionWriter.create(path).close()
    with pytest.raises(FileExistsError):
        SessionWriter.create(path)
    SessionWriter.create(path, overwrite=True).close()
    with SessionWriter.create(path, overwrite=True):
        from micropl.errors import SessionBusyError

        with pytest.raises(SessionBusyError):  # would cut a live writer off its file
            SessionWriter.create(path, overwrite=True)
    with pytest.raises(ValueError, match="closed"):
        w = SessionWriter.create(tmp_path / "t.h5")
        w.close()
        w.close()
        w.append(RunStop(0, "completed"))


def test_reading_never_modifies_the_file(tmp_path):
    path = tmp_path / "s.h5"
    with SessionWriter.create(path, truth={"x_um": [1.0], "y_um": [2.0]}) as w:
        w.append(RunStart(0, "g2", "{}", 1.0))
        w.append(QDTarget(0, 0, 1.0, 2.0, 3.0, 4.0))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    mtime = path.stat().st_mtime_ns
    with SessionReader(path) as r:
        r.runs(), r.qds(), r.qd(0), r.truth, r.writer_alive(), r.resume_plan()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- bad files
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    with SessionWriter.create(path) as w:
        w.append_many([Tagged(TagChunk(np.arange(100_000, dtype=np.int64),
                                       np.ones(100_000, np.uint8), 0, 1), 0, 0)] * 5)
    return path


def _bad_files(tmp_path, good_file):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    text = tmp_path / "text.h5"
    text.write_text("wavelength_nm,counts\n1,2\n")
    truncated = tmp_path / "truncated.h5"
    data = good_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    header_only = tmp_path / "header.h5"
    header_only.write_bytes(data[:512])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    shutil.copy(good_file, newer)
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 99
    return [empty, text, truncated, header_only, foreign, newer]


def test_bad_files_raise_file_format_error(tmp_path, good_file):
    for path in _bad_files(tmp_path, good_file):
        with pytest.raises(FileFormatError) as info:
            with SessionReader(path) as r:
                r.tags(qd_id=0)
        message = str(info.value)
        assert message.startswith(f"{path}: not a micropl session file ("), message
        assert "\n" not in message
    with pytest.raises(FileNotFoundError):
        SessionReader(tmp_path / "missing.h5")
    with pytest.raises(IsADirectoryError):
        SessionReader(tmp_path)
    with pytest.raises(FileFormatError):
        SessionWriter.resume(tmp_path / "text.h5")
    assert (tmp_path / "text.h5").read_text().startswith("wavelength_nm")
