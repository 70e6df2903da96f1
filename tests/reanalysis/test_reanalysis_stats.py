"""``micropl stats`` and ``micropl label``: grouped statistics checked against brute force
and scipy, the figure and JSON, and the sample label changed alone, safely."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from reanalysis_data import write_session
from scipy import stats as sps

from micropl import cli
from micropl.acquisition.storage import SessionReader, SessionWriter
from micropl.reanalysis.schedule import reanalyze
from micropl.reanalysis.settings import ReanalysisSettings
from micropl.reanalysis.stats import compare_means, group_statistics
from micropl.reanalysis.table import read_table, write_table


def _rows(seed: int = 0) -> list[dict]:
    """Two batches on lines of known slope, a core/shell share, a pair and a failure."""
    rng = np.random.default_rng(seed)
    rows = []
    for batch, slope, centre, n in (("7nm", 400.0, 2.49, 40), ("14nm", 250.0, 2.41, 30)):
        for k in range(n):
            e = centre + rng.uniform(-0.04, 0.04)
            shell = k % 3 == 0
            f = 90.0 + slope * (e - centre) - (10.0 if shell else 0.0) + rng.normal(0, 1.0)
            rows.append({"session": f"s-{batch}.h5", "sample": f"film {batch}", "batch": batch,
                         "core_shell": shell, "qd_id": k, "status": "single", "flags": "",
                         "peak_energy_ev": e, "peak_energy_err_ev": 1e-4, "fwhm_mev": f,
                         "fwhm_err_mev": 1.0,
                         "g2_0_bgcorr": (0.1 if shell else 0.2) + rng.normal(0, 0.01),
                         "g2_0_bgcorr_err": 0.02})
    rows.append({**rows[0], "qd_id": 100, "status": "multiple_emitters",
                 "flags": "multiple_emitters", "fwhm_mev": 500.0})
    rows.append({**rows[1], "qd_id": 101, "status": "failed", "fwhm_mev": None,
                 "peak_energy_ev": None})
    return rows


def test_compare_means_matches_brute_force_and_welch():
    rng = np.random.default_rng(1)
    a, b = rng.normal(80, 5, 25), rng.normal(70, 8, 17)
    d = compare_means(np.append(a, np.nan), b)
    assert (d.n_a, d.n_b) == (25, 17)
    sem_a = math.sqrt(sum((x - a.mean()) ** 2 for x in a) / 24 / 25)
    sem_b = math.sqrt(sum((x - b.mean()) ** 2 for x in b) / 16 / 17)
    assert math.isclose(d.mean_a, sum(a) / 25) and math.isclose(d.sem_a, sem_a)
    assert math.isclose(d.difference, b.mean() - a.mean())
    assert math.isclose(d.difference_err, math.hypot(sem_a, sem_b))
    assert math.isclose(d.p_value, sps.ttest_ind(a, b, equal_var=False).pvalue)


def test_groups_by_batch_with_slopes_counts_and_core_shell():
    rows = _rows()
    groups = {g.name: g for g in group_statistics(rows, "batch")}
    assert set(groups) == {"7nm", "14nm"}
    g7 = groups["7nm"]
    assert g7.n_rows == 42 and g7.status_counts["multiple_emitters"] == 1
    assert g7.status_counts["failed"] == 1 and g7.survey.excluded == {"multiple_emitters": 1}
    for name, slope in (("7nm", 400.0), ("14nm", 250.0)):
        kept = [r for r in rows if r["batch"] == name and r["status"] == "single"]
        e = np.array([r["peak_energy_ev"] for r in kept])
        f = np.array([r["fwhm_mev"] for r in kept])
        fit = groups[name].survey.fwhm_vs_energy
        # equal errors: the weighted slope is the least-squares one (independent: polyfit)
        assert fit.n == len(kept)
        assert math.isclose(fit.slope, np.polyfit(e, f, 1)[0], rel_tol=1e-3)
        assert abs(fit.slope - slope) < 4 * fit.slope_err + 30  # core/shell offset adds scatter
        assert math.isclose(groups[name].survey.fwhm_mean_mev, f.mean())
        core = [r["fwhm_mev"] for r in kept if not r["core_shell"]]
        shell = [r["fwhm_mev"] for r in kept if r["core_shell"]]
        c = groups[name].comparison.fwhm_mev
        assert (c.n_a, c.n_b) == (len(core), len(shell))
        assert math.isclose(c.difference, np.mean(shell) - np.mean(core))
        assert c.difference < 0 and c.p_value < 0.05  # the shells are narrower here
        g2 = groups[name].comparison.g2_0_bgcorr
        assert abs(g2.difference + 0.1) < 4 * g2.difference_err


def test_groups_by_sample_label_and_session():
    rows = _rows()
    assert [g.name for g in group_statistics(rows, "label")] == ["film 14nm", "film 7nm"]
    assert [g.name for g in group_statistics(rows, "session")] == ["s-14nm.h5", "s-7nm.h5"]
    unlabelled = [{**r, "sample": None} for r in rows]
    assert [g.name for g in group_statistics(unlabelled, "sample")] == ["(none)"]


@pytest.fixture
def table(tmp_path) -> Path:
    return write_table(_rows(), tmp_path / "results.parquet", {"model": None})


def test_stats_command_prints_json_and_draws_the_report(table, capsys):
    assert cli.main(["stats", str(table), "--by", "batch", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    report = Path(out["report"])
    assert report == table.with_name("results-stats-batch.png")
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and report.stat().st_size > 20_000
    groups = {g["name"]: g for g in out["groups"]}
    assert groups["7nm"]["slope_err_mev_per_ev"] > 0 and groups["7nm"]["n_valid"] == 40
    cs = groups["14nm"]["core_only_vs_core_shell"]["fwhm_mev"]
    assert cs["n_a"] + cs["n_b"] == 30
    assert sum(groups["7nm"]["fwhm_histogram"]["counts"]) == 40
    # the report is never overwritten
    assert cli.main(["stats", str(table), "--by", "batch"]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "foreign_csv", "suffix", "bin"])
def test_stats_bad_inputs_are_one_line_and_exit_2(case, table, tmp_path, capsys):
    path, extra = table, ["--no-report"]
    if case == "missing":
        path = tmp_path / "none.parquet"
    elif case == "foreign_csv":
        path = tmp_path / "other.csv"
        path.write_text("a,b\n1,2\n")
    elif case == "suffix":
        path = tmp_path / "r.xlsx"
        path.write_text("x")
    else:
        extra = ["--bin-mev", "0"]
    assert cli.main(["stats", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("micropl: error: ")


# --------------------------------------------------------------------------- label
def _contents(path: Path) -> dict:
    """Every dataset's bytes and every attribute of the file, by name."""
    out: dict = {}
    with h5py.File(path, "r") as h5:
        out["/"] = {k: repr(v) for k, v in h5.attrs.items()}

        def visit(name, obj):
            out[name] = {k: repr(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name + "#data"] = obj[()].tobytes() if obj.dtype.kind != "O" \
                    else repr(obj[()])

        h5.visititems(visit)
    return out


@pytest.fixture
def small(tmp_path) -> Path:
    return write_session(tmp_path / "s.h5", 2, seed=2, duration_s=0.3, n_frames=2)


def test_label_changes_that_one_attribute_and_survives_a_resume(small, tmp_path, capsys):
    before = _contents(small)
    assert cli.main(["label", str(small), "  CsPbBr3 film A  "]) == 0
    assert "CsPbBr3 film A" in capsys.readouterr().out
    after = _contents(small)
    assert after.pop("/")["sample"] == repr("CsPbBr3 film A")
    assert "sample" not in before["/"]
    before.pop("/")
    assert after == before  # the tables, truth, config: unchanged, byte for byte
    assert cli.main(["label", str(small), "film B", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample"] == "film B"
    SessionWriter.resume(small).close()
    with SessionReader(small) as reader:
        assert reader.sample == "film B" and reader.resume_count == 1
    assert cli.main(["info", str(small), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sample"] == "film B"
    rows = reanalyze([str(small)], ReanalysisSettings(peak_train=False, two_line_test=False),
                     scheduler="sync").rows
    assert {r["sample"] for r in rows} == {"film B"}
    out = write_table(rows, tmp_path / "r.csv", {})
    assert {r["sample"] for r in read_table(out)} == {"film B"}


def test_label_is_refused_while_a_writer_holds_the_session(tmp_path, capsys):
    path = tmp_path / "live.h5"
    with SessionWriter.create(path, config_text=""):
        code = cli.main(["label", str(path), "film A"])
        err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "being written by another process" in err
    with SessionReader(path) as reader:
        assert reader.sample == ""


@pytest.mark.parametrize("name", ["", "   ", "two\nlines", "x" * 201])
def test_bad_labels_are_refused(small, name, capsys):
    before = small.read_bytes()
    assert cli.main(["label", str(small), name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sample label" in err
    assert small.read_bytes() == before


def test_label_of_a_file_that_is_not_a_session(tmp_path, capsys):
    path = tmp_path / "x.h5"
    path.write_text("hello")
    assert cli.main(["label", str(path), "A"]) == 2
    assert "not a micropl session file" in capsys.readouterr().err
    assert path.read_text() == "hello"
