"""Hardware-timed maps: marker binning, the simulated line, timing choice, same map as software."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micropl.acquisition import Session, load_setup
from micropl.acquisition.procedures import RasterScan
from micropl.acquisition.procedures.preflight import ParameterError
from micropl.acquisition.procedures.raster_scan import choose_timing, line_edges_um
from micropl.acquisition.storage import SessionReader
from micropl.analysis.marker_bins import counts_between_markers
from micropl.drivers.interfaces import LineScanner, hardware_lines
from micropl.errors import AnalysisInputError, InstrumentError, LimitError
from micropl.records.scans import MapTiming

MARKER = 4
#: A sample whose QDs do not blink (counts are Poisson) and are bright.
STEADY = {"sample": {"blink_on_s_mean": 1e6, "blink_off_s_mean": 1e-6,
                     "brightness_cps_mean": 3e5, "spectral_diffusion_mev": 0.0}}


def brute_force_bins(t, c, marker, photons):
    """Pixel i: photons with marker[i] <= t < marker[i+1], by a double loop."""
    marks = [int(tt) for tt, cc in zip(t, c) if cc == marker]
    out = []
    for a, b in zip(marks[:-1], marks[1:]):
        out.append(sum(1 for tt, cc in zip(t, c) if cc in photons and a <= tt < b))
    return out


tag_lists = st.lists(st.tuples(st.integers(0, 500), st.sampled_from([1, 2, 3, MARKER])),
                     min_size=0, max_size=80)


@settings(max_examples=150, deadline=None)
@given(tags=tag_lists, first=st.integers(0, 20), last=st.integers(480, 520))
def test_counts_between_markers_equal_a_brute_force(tags, first, last):
    tags = [*tags, (first, MARKER), (last, MARKER)]
    tags.sort(key=lambda p: p[0])  # stable: ties keep list order
    t = np.array([p[0] for p in tags], np.int64)
    c = np.array([p[1] for p in tags], np.uint8)
    got = counts_between_markers(t, c, MARKER, (1, 2))
    assert got.tolist() == brute_force_bins(t, c, MARKER, (1, 2))
    assert got.sum() <= np.isin(c, (1, 2)).sum()


@pytest.mark.parametrize("t, c, args, match", [
    ([0, 1], [4], (4, (1, 2)), "same length"),
    ([5, 1, 9], [4, 1, 4], (4, (1, 2)), "ascending"),
    ([0, 1, 9], [4, 1, 4], (1, (1, 2)), "also a photon channel"),
    ([0, 1, 9], [4, 1, 1], (4, (1, 2)), "at least 2 markers"),
    ([0, 1, 9], [4, 1, 4], (4, (1, 2), 3), "expected 4 pixel markers"),
    ([0.0, 1.0], [4, 4], (4, (1, 2)), "integer ps"),
])
def test_counts_between_markers_refuses_bad_input(t, c, args, match):
    with pytest.raises(AnalysisInputError, match=match):
        counts_between_markers(np.array(t), np.array(c, np.uint8), *args)


# --------------------------------------------------------------------------- simulated line
def _setup(**scanner):
    overrides = {**STEADY, "scanner": {"marker_channel": MARKER, **scanner}}
    return load_setup(clock_mode="fast", overrides=overrides)


def test_simulated_line_puts_a_marker_at_every_pixel_boundary():
    with _setup() as setup:
        scanner, tagger, clock = setup.scanner, setup.tagger, setup.clock
        assert isinstance(scanner, LineScanner) and hardware_lines(scanner)
        tagger.start((1, 2, MARKER))
        scanner.move_to(10.0, 10.0)
        scanner.configure_line(10.0, 12.0, 10, 0.002)
        tagger.read()
        scanner.start_line()
        t0 = clock.now()
        clock.sleep(0.011)
        assert scanner.position_um[0] == pytest.approx(10.0 + 2.0 * 0.011 / 0.02)
        with pytest.raises(InstrumentError, match="a line is running"):
            scanner.move_to(1.0, 1.0)
        assert not scanner.line_done()
        clock.sleep(0.01)
        assert scanner.line_done() and scanner.position_um[0] == pytest.approx(12.0)
        chunk = tagger.read()
        marks = chunk.t_ps[chunk.channel == MARKER]
        expected = np.round((t0 + 0.002 * np.arange(11)) * 1e12).astype(np.int64)
        np.testing.assert_array_equal(marks, expected)
        assert np.all(np.diff(chunk.t_ps) >= 0)


@pytest.mark.parametrize("args, match", [
    ((10.0, 90.0, 10, 0.001), "range 0–80 µm"),
    ((-1.0, 5.0, 10, 0.001), "range 0–80 µm"),
    ((1.0, 5.0, 0, 0.001), "at least 1 pixel"),
    ((1.0, 5.0, 10, 0.0), "positive dwell"),
    ((1.0, 5.0, 10, float("nan")), "positive dwell"),
    ((3.0, 3.0, 10, 0.001), "non-zero length"),
])
def test_simulated_line_refuses_before_moving(args, match):
    with _setup() as setup:
        with pytest.raises(LimitError, match=match):
            setup.scanner.configure_line(*args)


def test_scanner_without_hardware_lines_refuses_them():
    with _setup(hardware_lines=False) as setup:
        assert not hardware_lines(setup.scanner)
        with pytest.raises(InstrumentError, match="no hardware-timed lines"):
            setup.scanner.configure_line(1.0, 5.0, 10, 0.001)


# --------------------------------------------------------------------------- timing choice
@pytest.mark.parametrize("scanner, wanted, source, expected", [
    ({}, "auto", "apd", ("hardware", "auto")),
    ({}, "hardware", "apd", ("hardware", "requested")),
    ({}, "software", "apd", ("software", "requested")),
    ({"hardware_lines": False}, "auto", "apd", ("software", "no hardware-timed lines")),
    ({"marker_channel": None}, "auto", "apd", ("software", "no marker_channel")),
    ({"marker_channel": None}, "auto", "camera", ("hardware", "auto")),
    ({"marker_channel": 1}, "auto", "apd", ("software", "is an APD input")),
])
def test_choose_timing(scanner, wanted, source, expected):
    with _setup(**scanner) as setup:
        x_um = 10.0 + 0.2 * np.arange(20)
        timing, reason = choose_timing(wanted, setup.scanner, x_um, 0.001, source, (1, 2))
        assert timing == expected[0] and expected[1] in reason


def test_hardware_timing_refused_before_the_run_when_impossible():
    with _setup(hardware_lines=False) as setup, Session(setup) as session:
        scan = RasterScan(x_min_um=5, x_max_um=6, y_min_um=5, y_max_um=6, timing="hardware")
        with pytest.raises(ParameterError, match="timing = hardware refused: scanner 'scanner' "
                           "has no hardware-timed lines"):
            session.run(scan)
        assert not setup.laser.emission_on
    with _setup() as setup, Session(setup) as session:  # the sweep edge beyond the travel
        scan = RasterScan(x_min_um=0.0, x_max_um=2.0, y_min_um=5, y_max_um=6, step_um=0.2,
                          timing="hardware")
        with pytest.raises(ParameterError, match="line sweep x -0.1–2.1 µm: range 0–80"):
            session.run(scan)


def test_line_edges():
    x = np.array([1.0, 1.5, 2.0])
    assert line_edges_um(x) == (0.75, 2.25)
    assert line_edges_um(x, backwards=True) == (2.25, 0.75)


# --------------------------------------------------------------------------- same map
def _bright_region(setup, half_um=1.0):
    smp = setup.world.sample
    ok = ~smp.is_aggregate & (smp.x_um > 5) & (smp.y_um > 5) & (smp.x_um < 35)
    k = int(np.flatnonzero(ok)[np.argmax(smp.brightness_cps[ok])])
    x, y = float(smp.x_um[k]), float(smp.y_um[k])
    return dict(x_min_um=x - half_um, x_max_um=x + half_um, y_min_um=y - half_um,
                y_max_um=y + half_um)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_hardware_map_equals_software_map_within_poisson_noise(bidirectional, tmp_path):
    maps, timings = {}, {}
    for timing in ("software", "hardware"):
        with _setup() as setup:
            scan = RasterScan(**_bright_region(setup), step_um=0.1, dwell_s=0.002,
                              power_percent=30, timing=timing, bidirectional=bidirectional)
            out = tmp_path / f"{timing}.h5"
            with Session(setup, out) as session:
                result = session.run(scan)
            assert result.status == "completed", result.reason
            maps[timing] = result.value
            with SessionReader(out) as reader:
                timings[timing] = [r.record for r in reader.records(MapTiming)]
    sw, hw = maps["software"], maps["hardware"]
    assert (sw.timing, hw.timing) == ("software", "hardware")
    assert [t.timing for t in timings["hardware"]] == ["hardware"]
    assert timings["hardware"][0].marker_channel == MARKER
    assert [t.timing for t in timings["software"]] == ["software"]
    a, b = sw.counts, hw.counts
    assert a.max() > 100, "a bright spot, so a shifted or mirrored map could not pass"
    used = (a + b) > 0
    pulls = (a - b)[used] / np.sqrt((a + b)[used])
    chi2_per_pixel = float(np.mean(pulls**2))
    assert 0.75 < chi2_per_pixel < 1.3, chi2_per_pixel
    assert abs(np.mean(pulls)) < 4 / np.sqrt(pulls.size)
    # the same spot position: count-weighted centroids within 0.01 µm (a one-pixel shift is 0.1)
    def centroid(m):
        return (float(np.sum(m * sw.x_um[None, :]) / m.sum()),
                float(np.sum(m * sw.y_um[:, None]) / m.sum()))
    assert centroid(b) == pytest.approx(centroid(a), abs=0.01)


# --------------------------------------------------------------------------- interlock
@pytest.mark.parametrize("overrides, match", [
    ({"safety": {"apd_max_rate_cps": 2e4}}, "exceeds the protection threshold"),
    ({"tagger": {"faults": {"overflow_every_n_reads": 3}}}, "buffer overflow"),
])
def test_interlock_sees_the_tags_of_a_hardware_line(overrides, match):
    """Every tagger read of a hardware-timed line goes through the guarded tagger: an
    over-rate at the bright QD, or a read that lost tags, aborts with the laser off."""
    with load_setup(clock_mode="fast", overrides={
            **STEADY, **overrides, "scanner": {"marker_channel": MARKER}}) as setup:
        region = _bright_region(setup)
        with Session(setup) as session:
            result = session.run(RasterScan(**region, step_um=0.1, dwell_s=0.002,
                                            power_percent=30, timing="hardware"))
        assert not setup.laser.emission_on
        assert setup.tagger.snapshot()["running"] is False
    assert result.status == "aborted", result
    assert match in result.reason


def test_camera_counted_map_is_software_timed():
    with _setup() as setup, Session(setup) as session:
        scan = RasterScan(x_min_um=5, x_max_um=5.4, y_min_um=5, y_max_um=5.2, step_um=0.2,
                          dwell_s=0.01, source="camera")
        result = session.run(scan)
        assert result.status == "completed" and result.value.timing == "software"
        with pytest.raises(ParameterError, match="use the hyperspectral procedure"):
            session.run(scan.model_copy(update={"timing": "hardware"}))


@pytest.mark.parametrize("change, status, match", [
    (lambda t: t[:-1], "failed", "not complete 1 s after its end \\(pixel markers or triggers "
                                 "missing: check the trigger wiring\\)"),
    (lambda t: np.sort(np.append(t, t[1] + 1e-4)), "failed", "pixel markers on channel 4 for "
                                                             "a line of"),
])
def test_missing_or_extra_markers_end_the_run_with_the_laser_off(monkeypatch, change, status,
                                                                 match):
    from micropl.simulators.scanner import SimLine

    original = SimLine.pulse_times_s
    monkeypatch.setattr(SimLine, "pulse_times_s", lambda self: change(original(self)))
    with _setup() as setup, Session(setup) as session:
        result = session.run(RasterScan(x_min_um=5, x_max_um=6, y_min_um=5, y_max_um=5.4,
                                        step_um=0.2, dwell_s=0.002, timing="hardware"))
        assert not setup.laser.emission_on
    assert result.status == status, result
    assert re.search(match, result.reason), result.reason
