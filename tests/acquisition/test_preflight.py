"""Pre-flight check: procedures are refused against the instruments before the laser goes on.

Every refused case also shows that nothing happened: the simulated laser never
switched on, the scanner never moved, the tagger never started and the camera
never exposed (recorded at class level, so the CLI path is watched too).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micropl.acquisition import load_setup
from micropl.acquisition.live import AnalysisSettings
from micropl.acquisition.procedures import (
    G2,
    PowerSeries,
    RasterScan,
    Refocus,
    SpectralSeries,
    SpectrumAcquisition,
    Survey,
    TimeTrace,
)
from micropl.acquisition.procedures.preflight import Limits, ParameterError
from micropl.acquisition.runner import Runner
from micropl.acquisition.session import Session, run
from micropl.cli import main
from micropl.simulators.camera import SimCamera
from micropl.simulators.laser import SimLaser
from micropl.simulators.scanner import SimScanner
from micropl.simulators.tagger import SimTimeTagger

#: The simulated setup with tighter limits: 80 µm scanner (z −10–10 µm, focus at
#: z = 8 µm), laser limited to 50 %, spectrograph centre 400–1000 nm.
OVERRIDES = {"laser": {"max_power_percent": 50.0},
             "spectrograph": {"wavelength_range_nm": [400.0, 1000.0]},
             "scanner": {"start_um": [20.0, 20.0, 8.0]}}
CONFIG_YAML = """\
clock: {mode: fast}
laser: {max_power_percent: 50}
spectrograph: {wavelength_range_nm: [400, 1000]}
scanner: {start_um: [20, 20, 8]}
"""

SCAN = {"x_min_um": 0, "x_max_um": 4, "y_min_um": 0, "y_max_um": 4, "step_um": 1.0,
        "dwell_s": 0.001}
SPECTRUM = {"exposure_s": 0.1, "accumulations": 1, "background_frames": 1}


def survey(**changes) -> Survey:
    """A small survey; nested procedures updated from dicts, other fields as given."""
    parts = {"scan": RasterScan(**SCAN), "refocus": Refocus(),
             "spectrum": SpectrumAcquisition(**SPECTRUM), "g2": G2(duration_s=1.0)}
    extra = {}
    for key, value in changes.items():
        if key in parts:
            parts[key] = type(parts[key]).model_validate({**parts[key].model_dump(), **value})
        else:
            extra[key] = value
    return Survey(**parts, drift_every_n_qds=0, max_qds=1, **extra)


# (case id, procedure, what the one-line refusal must contain)
CASES = [
    ("scan-x-max", RasterScan(**{**SCAN, "x_max_um": 500}),
     ["raster_scan: x_max_um = 500 µm", "scanner 'scanner' x range 0–80 µm"]),
    ("scan-x-min", RasterScan(**{**SCAN, "x_min_um": -3}),
     ["x_min_um = -3 µm", "x range 0–80 µm"]),
    ("scan-y-max", RasterScan(**{**SCAN, "y_max_um": 81}), ["y_max_um = 81 µm", "y range 0–80"]),
    ("scan-last-pixel", RasterScan(**{**SCAN, "x_min_um": 0.1, "x_max_um": 80, "step_um": 0.2}),
     ["x_max_um = 80 µm", "last pixel at 80.1 µm", "range 0–80 µm"]),
    ("scan-power", RasterScan(**SCAN, power_percent=60), ["power_percent = 60 %", "0–50 %"]),
    ("refocus-x", Refocus(x_um=90), ["refocus: x_um = 90 µm", "x range 0–80 µm"]),
    ("refocus-y", Refocus(y_um=-1), ["y_um = -1 µm", "y range 0–80 µm"]),
    ("refocus-z-range", Refocus(z_scan=True, z_range_um=6),
     ["z_range_um = 6 µm", "5–11 µm around z = 8 µm", "z range -10–10 µm"]),
    ("refocus-power", Refocus(power_percent=51), ["power_percent = 51 %", "laser 'laser'"]),
    ("spectrum-gain-normal", SpectrumAcquisition(**SPECTRUM, em_gain=500),
     ["spectrum: em_gain = 500", "maximum 300 unless advanced mode is on"]),
    ("spectrum-centre", SpectrumAcquisition(**SPECTRUM, center_wavelength_nm=1200),
     ["center_wavelength_nm = 1200 nm", "range 400–1000 nm"]),
    ("spectrum-centre-low", SpectrumAcquisition(**SPECTRUM, center_wavelength_nm=300),
     ["center_wavelength_nm = 300 nm", "range 400–1000 nm"]),
    ("spectrum-grating", SpectrumAcquisition(**SPECTRUM, grating=6),
     ["grating = 6", "installed slots 1, 2, 3, 4"]),
    ("spectrum-power", SpectrumAcquisition(**SPECTRUM, power_percent=75),
     ["power_percent = 75 %", "range 0–50 %"]),
    ("g2-power", G2(duration_s=1.0, power_percent=60), ["g2: power_percent = 60 %", "0–50 %"]),
    ("time-trace-power", TimeTrace(duration_s=1.0, power_percent=50.5),
     ["time_trace: power_percent = 50.5 %"]),
    ("power-series", PowerSeries(powers_percent=[1, 10, 70], dwell_s=0.01),
     ["powers_percent[2] = 70 %", "range 0–50 %"]),
    ("spectral-series", SpectralSeries(n_spectra=2, spectrum=SpectrumAcquisition(
        **SPECTRUM, center_wavelength_nm=1100)),
     ["spectral_series: spectrum.center_wavelength_nm = 1100 nm", "400–1000 nm"]),
    ("survey-scan", survey(scan={"x_max_um": 500}),
     ["survey: scan.x_max_um = 500 µm", "x range 0–80 µm"]),
    ("survey-spectrum-centre", survey(spectrum={"center_wavelength_nm": 1200}),
     ["survey: spectrum.center_wavelength_nm = 1200 nm", "400–1000 nm"]),
    ("survey-spectrum-gain", survey(spectrum={"em_gain": 301}),
     ["survey: spectrum.em_gain = 301", "maximum 300"]),
    ("survey-spectrum-grating", survey(spectrum={"grating": 5}), ["spectrum.grating = 5"]),
    ("survey-g2-power", survey(g2={"power_percent": 90}), ["survey: g2.power_percent = 90 %"]),
    ("survey-refocus-z", survey(refocus={"z_scan": True, "z_range_um": 5}),
     ["survey: refocus.z_range_um = 5 µm", "z range -10–10 µm"]),
    ("survey-refocus-power", survey(refocus={"power_percent": 99}),
     ["refocus.power_percent = 99 %"]),
    ("survey-resume-target", survey(targets=[{"qd_id": 0, "x_um": 10, "y_um": 10},
                                             {"qd_id": 1, "x_um": 85, "y_um": 10}]),
     ["survey: targets[1].x_um = 85 µm", "x range 0–80 µm"]),
]


@pytest.fixture
def calls(monkeypatch):
    """Every emission-on, move, tagger start and exposure of any simulated instrument."""
    seen: list[str] = []
    emission = SimLaser.emission_on

    def set_emission(self, value):
        if value:
            seen.append("laser.emission_on = True")
        emission.fset(self, value)

    monkeypatch.setattr(SimLaser, "emission_on", property(emission.fget, set_emission))
    for cls, method in ((SimScanner, "move_to"), (SimTimeTagger, "start"),
                        (SimCamera, "acquire"), (SimCamera, "start_stream")):
        original = getattr(cls, method)

        def recorded(self, *args, _original=original, _name=f"{cls.__name__}.{method}",
                     **kwargs):
            seen.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, recorded)
    return seen


@pytest.fixture(scope="module")
def tight_setup():
    with load_setup(clock_mode="fast", overrides=OVERRIDES) as setup:
        yield setup


def assert_one_line(message: str, parts: list[str]) -> None:
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


@pytest.mark.parametrize("procedure,parts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_script_run_refuses_before_anything_happens(tight_setup, calls, procedure, parts):
    with pytest.raises(ParameterError) as info:
        run(procedure, tight_setup)
    assert_one_line(str(info.value), parts)
    assert calls == []
    assert not tight_setup.laser.emission_on


def test_runner_start_refuses_without_using_a_run_id(tight_setup, calls):
    runner = Runner(tight_setup)
    with pytest.raises(ParameterError):
        runner.start(RasterScan(**{**SCAN, "x_max_um": 500}))
    assert not runner.busy and runner.wait(0) is None  # no run, no result
    assert calls == []
    # A ParameterError is a RuntimeError like the "run in progress" refusal, and a user error.
    assert issubclass(ParameterError, RuntimeError) and issubclass(ParameterError, ValueError)
    rid = runner.start(RasterScan(**SCAN))
    assert rid == 1
    assert runner.wait(60).ok


@pytest.mark.parametrize("tagger_patch,analysis,parts", [
    ({"resolution_ps": 4.0}, AnalysisSettings(g2_bin_ps=6),
     ["analysis g2_bin_ps = 6 ps", "whole multiple of the resolution 4 ps"]),
    ({"resolution_ps": 16.0}, AnalysisSettings(g2_bin_ps=8), ["g2_bin_ps = 8 ps"]),
    ({"channels": (1, 3)}, None, ["tagger apd_channels = (1, 2)", "available channels (1, 3)"]),
], ids=["bin-not-multiple", "bin-below-resolution", "missing-apd-channel"])
@pytest.mark.parametrize("procedure", [G2(duration_s=1.0), survey()], ids=["g2", "survey"])
def test_g2_the_tagger_cannot_do(monkeypatch, calls, tagger_patch, analysis, parts, procedure):
    with load_setup(clock_mode="fast") as setup:
        for key, value in tagger_patch.items():
            monkeypatch.setattr(setup.tagger, key, value)
        with Session(setup, analysis=analysis) as session:
            with pytest.raises(ParameterError) as info:
                session.run(procedure)
    assert_one_line(str(info.value), parts)
    assert calls == []


def test_camera_exposure_limit_is_asked_from_the_camera(monkeypatch, calls):
    """A camera whose exposures end at 10 s: a 20 s spectrum, a camera map with 5 ms pixels
    on a camera needing ≥ 10 ms, and the same limit refused by the driver itself."""
    monkeypatch.setattr(SimCamera, "exposure_range_s", property(lambda self: (0.01, 10.0)))
    with load_setup(clock_mode="fast") as setup:
        with pytest.raises(ParameterError) as info:
            run(SpectrumAcquisition(exposure_s=20, accumulations=1), setup)
        assert_one_line(str(info.value), ["exposure_s = 20 s", "camera 'camera' exposure",
                                          "range 0.01–10 s"])
        with pytest.raises(ParameterError) as info:
            run(RasterScan(**{**SCAN, "dwell_s": 0.005}, source="camera"), setup)
        assert_one_line(str(info.value), ["dwell_s = 0.005 s", "exposure per pixel"])
        assert calls == []
        with pytest.raises(Exception, match="exposure 20 s refused: range 0.01–10 s"):
            setup.camera.exposure_s = 20


def test_advanced_mode_allows_gain_above_300_but_not_above_the_maximum(calls):
    with load_setup(clock_mode="fast", overrides={"camera": {"em_gain_advanced": True}}) as s:
        SpectrumAcquisition(em_gain=800).check(s)  # accepted
        with pytest.raises(ParameterError, match="em_gain = 1001 refused: camera 'camera' EM "
                                                 "gain maximum 1000"):
            SpectrumAcquisition.model_construct(em_gain=1001).check(s)
    assert calls == []


def test_warm_sensor_is_not_a_parameter_error():
    """EM gain on a warm sensor is a run-time interlock: the spectrum waits for the cooler."""
    with load_setup(clock_mode="fast", overrides={"camera": {"start_temperature_c": 20.0}}) as s:
        assert s.camera.temperature_c > s.config.safety.camera_max_temperature_c
        SpectrumAcquisition(em_gain=200).check(s)


def test_an_unreadable_state_is_left_to_the_run(monkeypatch):
    """A scanner that cannot report its position does not make the check fail; the run
    meets the failure and ends failed with its reason (as before)."""
    from micropl.errors import InstrumentError

    with load_setup(clock_mode="fast") as setup:
        def broken(self):
            raise InstrumentError("scanner 'scanner': read position failed: disconnected")

        monkeypatch.setattr(SimScanner, "position_um", property(broken))
        limits = Limits.of(setup)
        assert limits.position_um is None
        Refocus(z_scan=True, z_range_um=2).check_limits(limits)
        with pytest.raises(ParameterError, match="z_range_um = 30 µm"):
            Refocus.model_construct(**{**Refocus().model_dump(), "z_scan": True,
                                       "z_range_um": 30.0}).check_limits(limits)


# --------------------------------------------------------------------------- CLI
CLI_CASES = [
    ("scan", ["x_max_um=500"], ["raster_scan: x_max_um = 500 µm", "x range 0–80 µm"]),
    ("scan", ["y_min_um=-1", "y_max_um=5"], ["y_min_um = -1 µm"]),
    ("scan", ["power_percent=55"], ["power_percent = 55 %", "range 0–50 %"]),
    ("spectrum", ["em_gain=400"], ["spectrum: em_gain = 400", "maximum 300 unless advanced"]),
    ("spectrum", ["center_wavelength_nm=1300"], ["center_wavelength_nm = 1300 nm", "400–1000"]),
    ("spectrum", ["grating=7"], ["grating = 7", "installed slots 1, 2, 3, 4"]),
    ("g2", ["power_percent=80"], ["g2: power_percent = 80 %"]),
    ("survey", ["spectrum.center_wavelength_nm=1200"],
     ["survey: spectrum.center_wavelength_nm = 1200 nm"]),
    ("survey", ["g2.power_percent=51"], ["survey: g2.power_percent = 51 %"]),
    ("survey", ["scan.x_max_um=120"], ["survey: scan.x_max_um = 120 µm"]),
    ("survey", ["refocus.z_scan=true", "refocus.z_range_um=8"], ["refocus.z_range_um = 8 µm"]),
]


@pytest.mark.parametrize("command,params,parts", CLI_CASES,
                         ids=[f"{c}-{p[0].split('=')[0]}" for c, p, _ in CLI_CASES])
def test_cli_refuses_with_exit_2_and_one_line(tmp_path, capsys, calls, command, params, parts):
    config = tmp_path / "setup.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    out = tmp_path / "run.h5"
    argv = [command, "--fast", "--config", str(config), "--out", str(out)]
    for item in params:
        argv += ["--param", item]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("micropl: error: ") and "Traceback" not in err
    assert_one_line(err, parts)
    assert calls == []
    assert not out.exists()  # nothing stored: the same --out can be used once fixed


def test_cli_packaged_setup_scan_outside_the_80_um_scanner(tmp_path, capsys, calls):
    out = tmp_path / "scan.h5"
    assert main(["scan", "--fast", "--out", str(out), "--param", "x_max_um=500"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "x_max_um = 500 µm refused: scanner 'scanner' x range 0–80 µm" in err
    assert calls == [] and not out.exists()


# --------------------------------------------------------------------------- GUI
def test_gui_form_stops_at_the_scanner_and_accepts_what_passes(qtbot, tmp_path, monkeypatch):
    from micropl.gui.panels.procedures_panel import ProceduresPanel
    from micropl.gui.settings import make_settings

    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    panel = ProceduresPanel(make_settings())
    qtbot.addWidget(panel)
    with load_setup(clock_mode="fast", overrides=OVERRIDES) as setup:
        limits = Limits.of(setup)
        panel.set_limits(limits)
        form = panel.select("raster_scan")
        spin = form.editors["x_max_um"].spin
        assert spin.maximum() == 80.0 and spin.minimum() == 0.0
        assert spin.validate("500", 0)[0] != spin.validate("50", 0)[0]  # 500 is not acceptable
        spin.setValue(500.0)
        assert spin.value() == 80.0
        scan = panel.procedure()
        assert scan is not None and scan.x_max_um == 80.0
        scan.check(setup)  # what the form accepts passes the runner's check
        # Nested forms, laser and spectrograph limits, EM gain without advanced mode.
        survey_form = panel.forms["survey"]
        assert survey_form.subforms["scan"].editors["x_max_um"].spin.maximum() == 80.0
        assert survey_form.subforms["spectrum"].editors["center_wavelength_nm"].spin.maximum() \
            == 1000.0
        assert survey_form.subforms["spectrum"].editors["em_gain"].spin.maximum() == 300
        assert survey_form.subforms["g2"].editors["power_percent"].spin.maximum() == 50.0
        assert panel.forms["power_series"] is not None
        # A value every spin box accepts but the pixels do not: the same message as the runner.
        form.set_values({"x_min_um": 0.1, "x_max_um": 80.0, "step_um": 0.2})
        messages: list[str] = []
        panel.invalid.connect(messages.append)
        assert panel.procedure() is None
        with pytest.raises(ParameterError) as info:
            form.model().check(setup)
        assert messages == [str(info.value)]


def test_gui_region_drag_outside_the_scanner_is_refused(qtbot, tmp_path, monkeypatch, calls):
    from micropl.gui.main_window import MainWindow

    monkeypatch.setenv("MICROPL_GUI_SETTINGS", str(tmp_path / "gui.ini"))
    with load_setup(clock_mode="fast") as setup, Session(setup) as session:
        window = MainWindow(session)
        qtbot.addWidget(window)
        qtbot.waitUntil(lambda: window.procedures_panel.limits is not None, timeout=10_000)
        window.scan_region(0.0, 500.0, 0.0, 10.0)
        assert "x_max_um = 500 µm refused" in window.statusBar().currentMessage()
        assert not window.runner.busy
        window.ask = lambda question: True
        window.close()
    assert calls == []


# --------------------------------------------------------------------------- property
#: Laser powers around the 50 % limit.
POWERS = st.none() | st.floats(0, 52)


@st.composite
def scans(draw):
    # Mostly inside the 80 µm travel, often ending near its edge (where the last pixel
    # may lie up to half a step beyond x_max_um).
    x1 = draw(st.floats(1.0, 82.0) | st.floats(76.0, 80.0))
    y1 = draw(st.floats(1.0, 82.0) | st.floats(76.0, 80.0))
    step = draw(st.floats(3.0, 10.0))
    return RasterScan(x_min_um=x1 - draw(st.floats(0.5, 30.0)), x_max_um=x1,
                      y_min_um=y1 - draw(st.floats(0.5, 30.0)), y_max_um=y1, step_um=step,
                      dwell_s=1e-4, power_percent=draw(POWERS), emit_lines=False)


@st.composite
def spectra(draw):
    return SpectrumAcquisition(
        center_wavelength_nm=draw(st.none() | st.floats(350, 1050)),
        grating=draw(st.none() | st.integers(1, 5)), exposure_s=draw(st.floats(1e-4, 0.05)),
        accumulations=1, em_gain=draw(st.none() | st.integers(1, 320)),
        background=draw(st.booleans()), background_frames=1, remove_cosmics=False,
        power_percent=draw(POWERS))


@st.composite
def refocuses(draw):
    return Refocus(x_um=draw(st.none() | st.floats(-5, 85)),
                   y_um=draw(st.none() | st.floats(-5, 85)), size_um=0.4, step_um=0.2,
                   dwell_s=1e-4, z_scan=draw(st.booleans()),
                   z_range_um=draw(st.floats(0.5, 10.0)), z_step_um=2.0,
                   power_percent=draw(POWERS))


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(procedure=st.one_of(scans(), spectra(), refocuses()))
def test_what_passes_the_check_meets_no_driver_limit(tight_setup, procedure):
    """Any parameter set the check accepts runs without a driver refusing a parameter."""
    runner = Runner(tight_setup)
    try:
        runner.start(procedure)
    except ParameterError as exc:
        assert "refused" in str(exc)
        return
    result = runner.wait(120)
    assert result is not None
    assert "refused" not in result.reason, result.reason
    assert result.ok, result.reason


# --------------------------------------------------------------------------- drivers
def test_real_drivers_report_the_limits_they_enforce():
    """Each real driver answers the limit queries the check uses (no device call for
    the static ones) and refuses, when a value is sent, beyond what it reports."""
    from fakes.andor import FakeAndorSDK2Camera
    from fakes.picam import FakePicamCamera
    from fakes.picoquant import FakePicoQuantLib
    from fakes.sepia import FakeSepia2Lib
    from fakes.shamrock import FakeShamrockSpectrograph
    from fakes.swabian import FakeTagger, make_module
    from pymeasure.test import expected_protocol

    from micropl.drivers import andor_camera, picam_camera, picoquant, sepia, shamrock, swabian
    from micropl.drivers.pilas import Pilas, PilasSettings
    from micropl.errors import LimitError

    andor = andor_camera.AndorCamera(FakeAndorSDK2Camera(), andor_camera.AndorCameraSettings(
        driver="andor", max_exposure_s=120.0))
    assert andor.em_gain_range(False) == (1, 300) and andor.em_gain_range(True) == (1, 1000)
    assert andor.em_gain_range() == (1, 1000 if andor.em_gain_advanced else 300)
    low, high = andor.exposure_range_s
    assert high == 120.0 and 0 < low < 1e-3
    with pytest.raises(LimitError, match="range 1e-06–120 s"):
        andor.exposure_s = 121.0
    picam = picam_camera.PicamCamera(FakePicamCamera(), picam_camera.PicamCameraSettings(
        driver="picam"))
    assert picam.em_gain_range() == ((1, 300) if picam.has_em else (1, 1))
    assert picam.exposure_range_s[1] == picam.settings.max_exposure_s
    tt = make_module(FakeTagger())
    assert swabian.SwabianTagger(tt.createTimeTagger(""), tt, swabian.SwabianSettings(
        driver="swabian")).resolution_ps == 1.0
    harp = picoquant.PicoQuantTagger(FakePicoQuantLib("PH", resolution_ps=4.0),
                                     picoquant.PicoQuantSettings(driver="picoquant",
                                                                 device="picoharp",
                                                                 channels=(1, 2)))
    assert harp.resolution_ps == 4.0
    spec = shamrock.ShamrockSpectrograph(FakeShamrockSpectrograph(),
                                         shamrock.ShamrockSettings(driver="shamrock"))
    low, high = spec.wavelength_range_nm()
    assert (low, high) == spec.wavelength_limits_nm()
    with pytest.raises(LimitError, match=f"range {low:g}–{high:g} nm"):
        spec.center_wavelength_nm = high + 1.0
    laser = sepia.SepiaLaser(FakeSepia2Lib(), sepia.SepiaSettings(driver="sepia",
                                                                  max_power_percent=60))
    assert laser.max_power_percent == 60.0
    with pytest.raises(LimitError, match="range 0–60 %"):
        laser.power_percent = 61
    with expected_protocol(Pilas, [], settings=PilasSettings(resource="",
                                                             max_power_percent=40)) as pilas:
        assert pilas.max_power_percent == 40.0  # nothing sent


@settings(max_examples=200, deadline=None, derandomize=True)
@given(x=st.floats(-5, 85), y=st.floats(-5, 85), step=st.floats(0.05, 3.0),
       area=st.floats(1.0, 40.0))
def test_drift_area_stays_inside_the_travel(x, y, step, area):
    """The survey's drift reference area is cut to the travel and to whole steps, so
    none of its pixels is beyond the scanner's limits, wherever the first QD is."""
    from micropl.acquisition.procedures.survey import Target

    limits = ((0.0, 80.0), (0.0, 80.0), (-10.0, 10.0))
    scan = Survey(scan=RasterScan(step_um=step), drift_area_um=area).drift_scan(
        limits, Target(qd_id=0, x_um=x, y_um=y))
    x_um, y_um = scan.axes_um()
    assert 0.0 <= x_um.min() and x_um.max() <= 80.0
    assert 0.0 <= y_um.min() and y_um.max() <= 80.0
