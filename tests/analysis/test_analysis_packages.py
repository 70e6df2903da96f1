"""The analysis packages keep their public face while their parts stay small.

``micropl.analysis.spectra``, ``.g2`` and ``.maps`` are packages of named parts; each
re-exports the names the single modules had, its result classes keep the public module
path that session files store as the record type, every part stays under 500 lines, and
pyproject.toml lists every package so that a non-editable install includes it.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The public names of the three modules before they became packages (their ``__all__``).
PUBLIC = {
    "micropl.analysis.spectra": [
        "FLAT_TOP_PIXELS", "HC_EV_NM", "LineEstimate", "MODELS", "POOR_FIT_CHI2", "QUALITIES",
        "ROI_FWHM_MULTIPLE", "SIGNIFICANCE_SIGMA", "SpectrumFit", "density_per_ev",
        "energy_ev_from_wavelength_nm", "error_scale", "estimate_line", "faddeeva",
        "fit_spectra", "line_profile_per_ev", "main_line_roi_nm", "model_counts",
        "pixel_edges_nm", "pixel_energy_width_ev", "polynomial_axis_nm", "resolution_ev",
        "saturated_spectra", "voigt_fwhm", "wavelength_nm_from_energy_ev"],
    "micropl.analysis.g2": [
        "MAX_ANALYSIS_BINS", "MAX_HISTOGRAM_BINS", "check_channel_pair", "poisson_interval",
        "poisson_ratio_interval", "pulsed_window_ps", "CwG2Fit", "G2Accumulator", "G2Result",
        "PeakTrainFit", "cross_correlate", "detect_period_ps", "fit_cw_g2", "fit_peak_train",
        "histogram_bins", "pulsed_g2", "two_sided_exp_irf"],
    "micropl.analysis.maps": [
        "FWHM_PER_SIGMA", "Gaussian2DFit", "ImageShift", "SpotList", "emptiest_position_um",
        "find_spots", "fit_gaussian_2d", "register_shift_um"],
}

#: Public names outside ``__all__`` that other modules import from the packages.
ALSO = {
    "micropl.analysis.spectra": ["ROI_MIN_HALF_PX"],
    "micropl.analysis.g2": ["MIN_BINS_PER_PERIOD", "MIN_SIDE_COUNTS"],
    "micropl.analysis.maps": ["Noise"],
}

#: Record types whose table ``type_name`` session files store.
STORED = ["micropl.analysis.spectra.SpectrumFit", "micropl.analysis.g2.G2Result",
          "micropl.analysis.g2.PeakTrainFit", "micropl.analysis.g2.CwG2Fit",
          "micropl.analysis.maps.SpotList"]

MAX_PART_LINES = 500


@pytest.mark.parametrize("package", list(PUBLIC))
def test_each_package_exports_what_the_module_did(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in PUBLIC[package] + ALSO[package]:
        assert getattr(module, name) is not None
    assert hasattr(module, "__path__")          # a package, not a module


@pytest.mark.parametrize("dotted", STORED)
def test_stored_record_types_keep_their_public_path(dotted):
    package, name = dotted.rsplit(".", 1)
    cls = getattr(importlib.import_module(package), name)
    assert f"{cls.__module__}.{cls.__qualname__}" == dotted

    from micropl.acquisition.storage import schema

    assert schema.table_for(cls).type_name == dotted


@pytest.mark.parametrize("folder", ["spectra", "g2", "maps"])
def test_every_part_is_small(folder):
    parts = sorted((ROOT / "analysis" / folder).glob("*.py"))
    assert len(parts) >= 5
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in parts}
    assert max(sizes.values()) < MAX_PART_LINES, sizes


def test_pyproject_lists_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setup = config["tool"]["setuptools"]
    listed = set(setup["packages"])
    found = set()
    for top, folder in setup["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(base).parts
            found.add(".".join((top, *rel)))
    missing = sorted(found - listed)
    assert not missing, f"packages missing from pyproject.toml: {missing}"
    for name in ("micropl.analysis.spectra", "micropl.analysis.g2", "micropl.analysis.maps"):
        assert name in listed
