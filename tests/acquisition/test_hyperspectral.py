"""Spectral (hyperspectral) maps: camera triggers, the cube, its fit, storage and errors."""

from __future__ import annotations

import numpy as np
import pytest

from micropl.acquisition import Session, load_setup
from micropl.acquisition.procedures import Hyperspectral
from micropl.acquisition.procedures.preflight import ParameterError
from micropl.acquisition.storage import SessionReader
from micropl.analysis.spectral_map import SpectralMapFit, fit_spectral_cube
from micropl.errors import AnalysisInputError
from micropl.records.scans import MapTiming, SpectralCube

STEADY = {"sample": {"blink_on_s_mean": 1e6, "blink_off_s_mean": 1e-6,
                     "brightness_cps_mean": 3e5, "spectral_diffusion_mev": 0.0}}
HC_EV_NM = 1239.84198


def _setup(**scanner):
    return load_setup(clock_mode="fast", overrides={**STEADY, "scanner": scanner})


def _bright(setup):
    smp = setup.world.sample
    ok = ~smp.is_aggregate & (smp.x_um > 5) & (smp.y_um > 5) & (smp.x_um < 35)
    k = int(np.flatnonzero(ok)[np.argmax(smp.brightness_cps[ok])])
    return k, float(smp.x_um[k]), float(smp.y_um[k])


def _map(setup, k_xy, **kw):
    _, x, y = k_xy
    params = dict(x_min_um=x - 0.75, x_max_um=x + 0.75, y_min_um=y - 0.5, y_max_um=y + 0.5,
                  step_um=0.25, exposure_s=0.05, dwell_s=0.07, power_percent=30)
    return Hyperspectral(**{**params, **kw})


# --------------------------------------------------------------------------- the fit
def lorentz_cube(rng, n_y=4, n_x=5, noise_factor=1.0):
    """An independent generator: one Lorentzian line per pixel (pixel-integrated), Poisson."""
    wl = np.linspace(480.0, 540.0, 400)
    edges = np.concatenate([[wl[0] - 0.075], 0.5 * (wl[1:] + wl[:-1]), [wl[-1] + 0.075]])
    e_edges = HC_EV_NM / edges
    energies = rng.uniform(2.36, 2.52, (n_y, n_x))
    fwhm_ev = rng.uniform(0.05, 0.12, (n_y, n_x))
    area = rng.uniform(4e3, 2e4, (n_y, n_x))
    g = fwhm_ev[..., None] / 2

    def cdf(e):
        return np.arctan((e - energies[..., None]) / g) / np.pi

    lam = area[..., None] * np.abs(cdf(e_edges[1:]) - cdf(e_edges[:-1])) + 5.0
    counts = rng.poisson(lam).astype(float) if noise_factor == 1.0 else \
        rng.normal(lam, np.sqrt(noise_factor * lam))
    return wl, counts, energies, fwhm_ev * 1e3


def test_cube_fit_recovers_lines_with_honest_errors():
    rng = np.random.default_rng(7)
    pulls_e, pulls_w = [], []
    for _ in range(4):
        wl, counts, energies, fwhm = lorentz_cube(rng)
        fit = fit_spectral_cube(np.arange(5.0), np.arange(4.0), wl, counts, noise_factor=1.0)
        assert isinstance(fit, SpectralMapFit) and fit.ok.all()
        pulls_e += list(((fit.peak_energy_ev - energies) / fit.peak_energy_err_ev).ravel())
        pulls_w += list(((fit.fwhm_mev - fwhm) / fit.fwhm_err_mev).ravel())
    for pulls in (np.array(pulls_e), np.array(pulls_w)):
        assert pulls.size == 80
        assert 0.7 < np.std(pulls) < 1.35
        assert abs(np.mean(pulls)) < 0.4


def test_cube_fit_marks_missing_pixels_and_refuses_bad_cubes():
    rng = np.random.default_rng(3)
    wl, counts, _, _ = lorentz_cube(rng, 2, 3)
    counts[1, 2] = np.nan
    fit = fit_spectral_cube(np.arange(3.0), np.arange(2.0), wl, counts, noise_factor=1.0)
    assert fit.quality[1, 2] == "missing" and np.isnan(fit.peak_energy_ev[1, 2])
    assert np.isfinite(fit.peak_energy_ev[0, 0])
    counts[0, 0, :10] = np.nan
    with pytest.raises(AnalysisInputError, match="some NaN columns"):
        fit_spectral_cube(np.arange(3.0), np.arange(2.0), wl, counts)
    with pytest.raises(AnalysisInputError, match="expected \\(n_y, n_x, n_wl\\)"):
        fit_spectral_cube(np.arange(4.0), np.arange(2.0), wl, counts)


# --------------------------------------------------------------------------- the procedure
def test_hardware_triggered_cube_equals_the_software_one_and_is_stored(tmp_path):
    results, stored = {}, {}
    for timing in ("hardware", "software"):
        with _setup() as setup:
            bright = _bright(setup)
            out = tmp_path / f"{timing}.h5"
            with Session(setup, out) as session:
                result = session.run(_map(setup, bright, timing=timing))
            assert result.status == "completed", result.reason
            assert not setup.laser.emission_on
            results[timing] = result.value
            with SessionReader(out) as reader:
                stored[timing] = ([r.record for r in reader.records(SpectralCube)],
                                  [r.record for r in reader.records(SpectralMapFit)],
                                  [r.record for r in reader.records(MapTiming)])
    hw, sw = results["hardware"], results["software"]
    assert (hw.cube.timing, sw.cube.timing) == ("hardware", "software")
    assert hw.cube.missing_pixels == 0 and hw.cube.counts.shape == (5, 7, 1600)
    # same pixels, same spectra: the triggered frames land on the right (x, y), also on the
    # backward lines
    np.testing.assert_allclose(hw.cube.counts, sw.cube.counts)
    cubes, fits, timings = stored["hardware"]
    assert len(cubes) == 1 and len(fits) == 1 and [t.timing for t in timings] == ["hardware"]
    np.testing.assert_array_equal(cubes[0].counts, hw.cube.counts)
    np.testing.assert_array_equal(cubes[0].wavelength_nm, hw.cube.wavelength_nm)
    np.testing.assert_array_equal(fits[0].peak_energy_ev, hw.fit.peak_energy_ev)
    assert fits[0].quality.tolist() == hw.fit.quality.tolist()


def test_peak_energy_at_the_qd_is_its_true_energy():
    with _setup() as setup:
        bright = _bright(setup)
        k = bright[0]
        with Session(setup) as session:
            result = session.run(_map(setup, bright, timing="hardware"))
        fit = result.value.fit
        row, col = 2, 3  # the centre pixel sits on the QD
        assert fit.quality[row, col] == "ok"
        truth = float(setup.world.sample.energy_ev[k])
        err = float(fit.peak_energy_err_ev[row, col])
        assert abs(float(fit.peak_energy_ev[row, col]) - truth) < 5 * err + 2e-4
        assert fit.fwhm_mev[row, col] == pytest.approx(setup.world.sample.fwhm_mev[k], rel=0.15)


def test_missed_triggers_leave_nan_pixels_counted():
    # exposure + readout (10 ms) longer than the dwell: every other trigger is missed
    with _setup() as setup:
        bright = _bright(setup)
        with Session(setup) as session:
            result = session.run(_map(setup, bright, timing="hardware", exposure_s=0.05,
                                      dwell_s=0.05, fit=False))
        cube = result.value.cube
        lost = np.isnan(cube.counts).all(axis=2)
        assert cube.missing_pixels == int(lost.sum()) > 0
        assert np.isfinite(cube.counts[~lost]).all()
        assert result.value.fit is None


def test_hyperspectral_refusals_before_the_laser_goes_on():
    with pytest.raises(ValueError, match="exposure_s 0.1 s is longer than dwell_s"):
        Hyperspectral(exposure_s=0.1, dwell_s=0.05)
    with _setup(hardware_lines=False) as setup, Session(setup) as session:
        with pytest.raises(ParameterError, match="timing = hardware refused: scanner"):
            session.run(Hyperspectral(x_min_um=5, x_max_um=6, y_min_um=5, y_max_um=6,
                                      timing="hardware"))
        with pytest.raises(ParameterError, match="x_max_um = 500 µm refused"):
            session.run(Hyperspectral(x_min_um=5, x_max_um=500, y_min_um=5, y_max_um=6,
                                      step_um=20))
        assert not setup.laser.emission_on
        # auto falls back to software timing and says why
        result = session.run(Hyperspectral(x_min_um=5, x_max_um=5.5, y_min_um=5, y_max_um=5.5,
                                           exposure_s=0.01, dwell_s=0.02, fit=False))
        assert result.value.timing.timing == "software"
        assert "no hardware-timed lines" in result.value.timing.reason


# --------------------------------------------------------------------------- CLI and report
def test_cli_hyperspectral_json_report_and_exit_codes(tmp_path, capsys):
    import json

    from micropl.cli import main

    out, png = tmp_path / "hs.h5", tmp_path / "hs.png"
    code = main(["hyperspectral", "--fast", "--out", str(out), "--report", str(png), "--json",
                 "--param", "x_min_um=10", "--param", "x_max_um=11", "--param", "y_min_um=10",
                 "--param", "y_max_um=10.5", "--param", "exposure_s=0.02",
                 "--param", "dwell_s=0.04"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    section = summary["spectral_map"]
    assert section["timing"] == "hardware" and section["shape"] == [2, 3, 1600]
    assert section["missing_pixels"] == 0 and section["report"] == str(png)
    assert png.stat().st_size > 10_000
    bad = tmp_path / "bad.h5"
    for args, message in (
        (["--param", "x_max_um=500", "--param", "step_um=20"], "x_max_um = 500 µm refused"),
        (["--param", "exposure_s=0.2"], "exposure_s 0.2 s is longer than dwell_s"),
        (["--param", "nope=1"], "nope: unknown key"),
        (["--timing", "hardware", "--config", str(_no_lines_config(tmp_path))],
         "timing = hardware refused"),
    ):
        assert main(["hyperspectral", "--fast", "--out", str(bad), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not bad.exists()


def _no_lines_config(tmp_path):
    from importlib import resources

    text = resources.files("micropl.configs").joinpath("simulated.yaml").read_text()
    path = tmp_path / "no-lines.yaml"
    path.write_text(text.replace("  speed_um_per_s: 500.0", "  speed_um_per_s: 500.0\n"
                                 "  hardware_lines: false"))
    return path


def test_spectral_map_report_needs_a_fit(tmp_path):
    from micropl.acquisition.report import write_spectral_map_report

    out = tmp_path / "scan.h5"
    with _setup() as setup, Session(setup, out) as session:
        session.run(Hyperspectral(x_min_um=10, x_max_um=10.5, y_min_um=10, y_max_um=10.5,
                                  exposure_s=0.01, dwell_s=0.02, fit=False))
    with pytest.raises(AnalysisInputError, match="holds no fitted spectral map"):
        write_spectral_map_report(out, tmp_path / "x.png")


def test_simulated_camera_external_trigger_one_frame_per_pixel_start():
    from micropl.errors import InstrumentError, LimitError

    with _setup() as setup:
        camera, scanner, clock = setup.camera, setup.scanner, setup.clock
        with pytest.raises(LimitError, match="one of internal, external"):
            camera.trigger_mode = "gate"
        camera.exposure_s = 0.01
        camera.trigger_mode = "external"
        camera.start_stream()
        with pytest.raises(InstrumentError, match="stop the stream first"):
            camera.trigger_mode = "internal"
        scanner.move_to(10.0, 10.0)
        scanner.configure_line(10.0, 11.0, 4, 0.025, end_pulse=False)
        t0 = clock.now()
        scanner.start_line()
        clock.sleep(0.05)
        first = camera.read_frames()
        clock.sleep(0.1)
        rest = camera.read_frames()
        frames = first + rest
        assert [f.index for f in frames] == [0, 1, 2, 3]  # no end-of-line frame
        np.testing.assert_allclose([f.t_s for f in frames], t0 + 0.025 * np.arange(4))
        assert len(first) == 2  # frames appear once their exposure has ended
        camera.stop()
