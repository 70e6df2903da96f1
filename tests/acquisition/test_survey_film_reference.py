"""The film reference: the laser-on spectrum of the bare film, subtracted from QD spectra."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest

from micropl.acquisition import load_setup, run
from micropl.acquisition.procedures import G2, RasterScan, SpectrumAcquisition, Survey
from micropl.acquisition.procedures.base import ProcedureBase
from micropl.acquisition.procedures.survey import Target
from micropl.acquisition.storage import SessionReader
from micropl.errors import AnalysisInputError
from micropl.records import Spectrum


def empty_places_um(sample, n: int) -> list[tuple[float, float]]:
    """Places at least 4 µm from every emitter of the simulated sample."""
    places = []
    for x in np.arange(2.0, 38.0, 0.5):
        for y in np.arange(2.0, 38.0, 0.5):
            if np.min(np.hypot(sample.x_um - x, sample.y_um - y)) > 4.0:
                places.append((float(x), float(y)))
    assert len(places) >= n
    return places[:n]


def smoothed(counts: np.ndarray, px: int = 64) -> np.ndarray:
    return np.convolve(counts, np.ones(px) / px, mode="valid")


def test_film_reference_removes_the_film_band_and_adds_its_noise():
    with load_setup(clock_mode="fast") as setup:
        here, there = empty_places_um(setup.world.sample, 2)
        acquisition = SpectrumAcquisition(exposure_s=1.0, accumulations=10)
        setup.scanner.move_to(*here)
        film = run(acquisition.model_copy(update={"accumulations": 30}), setup).value
        setup.scanner.move_to(*there)
        bare = run(acquisition, setup).value
        result = run(with_film(acquisition, film), setup)
        assert result.ok, result.reason
        subtracted = result.value
    # Without the reference the band stands out of the noise; with it, nothing is left.
    sigma_bare = np.sqrt(2 * np.maximum(bare.counts, 0) + bare.read_noise ** 2).mean() / 8
    assert smoothed(bare.counts).max() > 5 * sigma_bare
    sigma = np.sqrt(2 * np.maximum(film.counts / 3, 0) + subtracted.read_noise ** 2).mean() / 8
    assert np.abs(smoothed(subtracted.counts)).max() < 4.5 * sigma
    # The reference's own noise (scaled to 10 of its 30 frames) is in the error budget.
    assert subtracted.read_noise > bare.read_noise


def with_film(acquisition: SpectrumAcquisition, film: Spectrum) -> ProcedureBase:
    """A procedure running ``acquisition`` with ``film`` subtracted."""

    class SpectrumWithFilm(ProcedureBase):
        name: ClassVar[str] = "spectrum"

        def run(self, ctx):
            return acquisition.run(ctx, film=film)

    return SpectrumWithFilm()


def test_film_reference_from_another_axis_is_refused():
    with load_setup(clock_mode="fast") as setup:
        acquisition = SpectrumAcquisition(exposure_s=0.1, accumulations=1)
        film = run(acquisition, setup).value
        shifted = Spectrum(wavelength_nm=film.wavelength_nm + 5.0, counts=film.counts,
                           exposure_s=0.1, counts_unit="e")
        result = run(with_film(acquisition, shifted), setup)
    assert not result.ok and "another wavelength axis" in result.reason
    with pytest.raises(AnalysisInputError, match="photoelectrons"):
        acquisition.model_copy(update={"background": False})._film_per_frame(
            film, film.wavelength_nm)


@pytest.fixture(scope="module")
def small_survey_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("film") / "survey.h5"
    survey = Survey(scan=RasterScan(x_min_um=0, x_max_um=12, y_min_um=0, y_max_um=12,
                                    step_um=0.25, dwell_s=0.005),
                    max_qds=2, spectrum=SpectrumAcquisition(exposure_s=0.5, accumulations=2),
                    g2=G2(duration_s=2.0), drift_every_n_qds=0, film_accumulations=4)
    with load_setup(clock_mode="fast") as setup:
        result = run(survey, setup, out=path)
        sample = setup.world.sample
    assert result.ok, result.reason
    return path, survey, sample


def test_survey_takes_the_film_reference_at_an_empty_place(small_survey_file):
    path, _, sample = small_survey_file
    with SessionReader(path) as reader:
        film = reader.film_reference()
        kinds = {r.kind for r in reader.records(Spectrum)}
        raw = reader.records("frame", kind="film_raw")
    assert film is not None and film.accumulations == 4
    assert {"film_frame", "film_accumulated", "accumulated"} <= kinds
    assert len(raw) == 4
    # Taken where no emitter shines: its total is the film's band, far below a QD's line.
    assert film.counts.sum() < 0.05 * film.exposure_s * film.accumulations \
        * sample.brightness_cps.min() * 10


def test_resumed_survey_subtracts_the_stored_film_reference(small_survey_file, tmp_path):
    path, survey, _ = small_survey_file
    with SessionReader(path) as reader:
        film = reader.film_reference()
        qd = reader.qds()[0]
    resumed = survey.model_copy(update={"targets": [Target(qd_id=qd.qd_id, x_um=qd.x_um,
                                                           y_um=qd.y_um)]})
    out = tmp_path / "resumed.h5"
    with load_setup(clock_mode="fast") as setup:
        with_film = run(resumed.reusing_film(film), setup, out=out)
        without = run(resumed, setup)
    assert with_film.ok and without.ok
    with SessionReader(out) as reader:
        kinds = {r.kind for r in reader.records(Spectrum)}
        accumulated = reader.records(Spectrum, kind="accumulated")[0].record
    assert not any(kind.startswith("film_") for kind in kinds)  # no second reference
    share = survey.spectrum.exposure_s * survey.spectrum.accumulations \
        / (film.exposure_s * film.accumulations)
    film_noise = share * np.sqrt(2 * np.mean(np.maximum(film.counts, 0)) + film.read_noise ** 2)
    assert accumulated.read_noise > film_noise


def test_film_reference_without_background_frames_is_refused_with_the_way_out():
    with pytest.raises(ValueError, match="set film_reference: false"):
        Survey(spectrum=SpectrumAcquisition(background=False))
    Survey(spectrum=SpectrumAcquisition(background=False), film_reference=False)
