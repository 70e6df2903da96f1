"""PI E-727 (GCS 2.0) driver: exact protocol bytes, on-target polling, errors, pyvisa-sim."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import pytest
from fakes.clock import FakeClock
from pydantic import ValidationError
from pymeasure.test import expected_protocol

from micropl.drivers import pi_e727
from micropl.drivers.interfaces import Scanner
from micropl.drivers.pi_e727 import E727, E727Settings, open_instrument
from micropl.errors import InstrumentError, InstrumentTimeout, LimitError

TCP_RESOURCE = "TCPIP0::192.168.0.27::50000::SOCKET"


def connect(axes=("1", "2", "3"), travel=((0, 100), (0, 100), (0, 10))):
    pairs = []
    for ident, (low, high) in zip(axes, travel):
        pairs += [
            (f"TMN? {ident}".encode(), f"{ident}={low:.4f}".encode()),
            (f"TMX? {ident}".encode(), f"{ident}={high:.4f}".encode()),
        ]
    return pairs


def ont(states=(1, 1, 1), axes=("1", "2", "3")):
    """ONT? query and its multi-line answer (space before LF on all but the last line)."""
    lines = [f"{a}={s}" for a, s in zip(axes, states)]
    pairs = [(f"ONT? {' '.join(axes)}".encode(), (lines[0] + " ").encode())]
    pairs += [(None, (line + " ").encode()) for line in lines[1:-1]]
    pairs += [(None, lines[-1].encode())]
    return pairs


def settings(**kwargs) -> E727Settings:
    return E727Settings(resource="", **kwargs)



@pytest.fixture
def sim_yaml() -> Path:
    return Path(str(resources.files("micropl.simulators").joinpath("visa/pi_e727.yaml")))


# --------------------------------------------------------------------------- protocol
def test_connect_reads_the_travel_range():
    with expected_protocol(E727, connect()) as scanner:
        assert scanner.limits_um == ((0.0, 100.0), (0.0, 100.0), (0.0, 10.0))
        assert scanner.travel_um == scanner.limits_um


def test_configured_limits_inside_the_travel_are_used():
    limits = ((10.0, 60.0), (10.0, 60.0), (2.0, 8.0))
    with expected_protocol(E727, connect(), settings=settings(limits_um=limits)) as scanner:
        assert scanner.limits_um == limits


def test_configured_limits_beyond_the_travel_are_an_error():
    limits = ((0.0, 200.0), (0.0, 100.0), (0.0, 10.0))
    with pytest.raises(InstrumentError, match="limits_um x 0–200 µm exceed the travel range 0–100"):
        with expected_protocol(E727, connect(), settings=settings(limits_um=limits)):
            pass


def test_custom_axis_identifiers():
    axes = ("A", "B", "C")
    pairs = connect(axes) + [(b"POS? B", b"B=12.3400")]
    with expected_protocol(E727, pairs, settings=settings(axes=axes)) as scanner:
        assert scanner.axis_y.position_um == pytest.approx(12.34)


def test_servo_on_checks_err_after_each_axis():
    pairs = connect()
    for ident in "123":
        pairs += [(f"SVO {ident} 1".encode(), None), (b"ERR?", b"0")]
    pairs += [(b"SVO? 2", b"2=1")]
    with expected_protocol(E727, pairs) as scanner:
        scanner.servo_on()
        assert scanner.axis_y.servo is True


def test_servo_error_raises_with_the_gcs_code():
    pairs = connect() + [(b"SVO 1 1", None), (b"ERR?", b"15")]
    with expected_protocol(E727, pairs) as scanner:
        with pytest.raises(InstrumentError) as info:
            scanner.servo_on()
    assert str(info.value) == (
        "scanner 'scanner': GCS error 15 (invalid axis identifier) after 'SVO 1 1'"
    )


def test_move_to_sends_mov_polls_ont_then_checks_err():
    clock = FakeClock()
    pairs = connect() + [
        (b"MOV 1 10.0000", None),
        (b"MOV 2 20.2500", None),
        (b"MOV 3 3.0000", None),
        *ont((0, 1, 0)),
        *ont((1, 1, 0)),
        *ont((1, 1, 1)),
        (b"ERR?", b"0"),
    ]
    with expected_protocol(E727, pairs, clock=clock) as scanner:
        scanner.move_to(10.0, 20.25, 3.0)
    assert len(clock.sleeps) == 2


def test_move_without_z_moves_two_axes():
    pairs = connect() + [(b"MOV 1 0.0000", None), (b"MOV 2 100.0000", None), *ont(), (b"ERR?", b"0")]
    with expected_protocol(E727, pairs) as scanner:
        scanner.move_to(0.0, 100.0)


def test_move_outside_refused_before_anything_is_sent():
    with expected_protocol(E727, connect()) as scanner:
        with pytest.raises(LimitError) as info:
            scanner.move_to(50.0, 100.5)
        assert str(info.value) == "scanner 'scanner': move y to 100.5 µm refused: range 0–100 µm"
        with pytest.raises(LimitError, match="move z to -0.1 µm"):
            scanner.move_to(1.0, 1.0, -0.1)
        with pytest.raises(LimitError):
            scanner.move_to(math.inf, 1.0)
        with pytest.raises(LimitError, match="MOV x \\(1\\) to 101 µm refused"):
            scanner.axis_x.target_um = 101


def test_move_error_after_target_raises_with_code():
    pairs = connect() + [(b"MOV 1 5.0000", None), (b"MOV 2 5.0000", None), *ont(), (b"ERR?", b"7")]
    with expected_protocol(E727, pairs) as scanner:
        with pytest.raises(InstrumentError, match="GCS error 7 \\(position out of limits\\)"):
            scanner.move_to(5.0, 5.0)


def test_move_timeout_names_the_instrument_and_the_gcs_error():
    clock = FakeClock()
    pairs = connect() + [(b"MOV 1 5.0000", None), (b"MOV 2 5.0000", None)]
    pairs += ont((0, 0, 1)) * 3 + [(b"ERR?", b"5")]
    with expected_protocol(
        E727, pairs, settings=settings(move_timeout_s=0.02, poll_s=0.01), clock=clock
    ) as scanner:
        with pytest.raises(InstrumentTimeout) as info:
            scanner.move_to(5.0, 5.0)
    message = str(info.value)
    assert message.startswith("scanner 'scanner': move to x=5, y=5 µm not on target after 0.02 s")
    assert "GCS error 5" in message


def test_position_and_on_target_per_axis():
    pairs = connect() + [
        (b"POS? 1", b"1=10.0001"),
        (b"POS? 2", b"2=20.2499"),
        (b"POS? 3", b"3=3.0000"),
        (b"ONT? 3", b"3=0"),
        (b"MOV? 1", b"1=10.0000"),
    ]
    with expected_protocol(E727, pairs) as scanner:
        assert scanner.position_um == pytest.approx((10.0001, 20.2499, 3.0))
        assert scanner.axis_z.on_target is False
        assert scanner.axis_x.target_um == 10.0


def test_identity():
    idn = b"(c)2015 Physik Instrumente (PI) GmbH & Co. KG, E-727, 0116012345, 13.21.00.09"
    with expected_protocol(E727, connect() + [(b"*IDN?", idn)]) as scanner:
        assert "E-727" in scanner.identity


def test_garbled_axis_reply_is_an_error():
    with expected_protocol(E727, connect() + [(b"POS? 1", b"garbage")]) as scanner:
        with pytest.raises(InstrumentError, match="expected '<axis>=<value>'"):
            scanner.axis_x.position_um  # noqa: B018


def test_close_twice_is_safe():
    with expected_protocol(E727, connect()) as scanner:
        scanner.close()
        scanner.close()


def test_settings():
    with pytest.raises(ValidationError, match="three distinct"):
        E727Settings(resource="x", axes=("1", "1", "3"))
    with pytest.raises(ValidationError, match="is empty"):
        E727Settings(resource="x", limits_um=((0, 10), (5, 5), (0, 1)))
    assert pi_e727.DRIVERS == {"scanner": E727Settings}


# --------------------------------------------------------------------------- pyvisa-sim session
@pytest.mark.parametrize("resource", [TCP_RESOURCE, "ASRL6::INSTR"])
def test_sim_session(sim_yaml, resource):
    scanner = open_instrument(E727Settings(resource=resource, visa_library=f"{sim_yaml}@sim"))
    try:
        connection = scanner.adapter.connection
        assert (connection.write_termination, connection.read_termination) == ("\n", "\n")
        assert isinstance(scanner, Scanner)
        assert scanner.limits_um == ((0.0, 100.0), (0.0, 100.0), (0.0, 10.0))
        # servo switched on at open
        assert scanner.axis_x.servo is True and scanner.axis_z.servo is True
        for target in [(10.0, 20.25, 3.0), (99.5, 0.0, 9.9), (50.0, 50.0, None)]:
            scanner.move_to(*target)
            expected = [t if t is not None else 9.9 for t in target]
            assert scanner.position_um == pytest.approx(expected, abs=1e-4)
        assert scanner.on_target() == (True, True, True)
        with pytest.raises(LimitError):
            scanner.move_to(101.0, 0.0)
        assert scanner.position_um == pytest.approx((50.0, 50.0, 9.9), abs=1e-4)
        snap = scanner.snapshot()
        assert snap["servo"] == [True, True, True] and "E-727" in snap["identity"]
    finally:
        scanner.close()
        scanner.close()


# --------------------------------------------------------------------------- hardware lines
from micropl.drivers.interfaces import hardware_lines  # noqa: E402
from micropl.drivers.pi_e727 import wave_layout  # noqa: E402


def line_config(n=4, per_pixel=50, rate=1, start="10.0000", amp="2.0000", out=1,
                triggers=True):
    """The configuration bytes of a line of n pixels (generator 1, table 1)."""
    length = n * per_pixel + 1
    pairs = [(b"WGO 1 0", None),
             (f"WAV 1 X LIN {length} {amp} {start} {length} 0 0".encode(), None),
             (b"WSL 1 1", None), (b"WGC 1 1", None), (f"WTR 1 {rate} 0".encode(), None)]
    if triggers:
        pairs += [(f"CTO {out} 3 4".encode(), None), (b"TWC", None)]
        pairs += [(f"TWS {out} {i * per_pixel + 1} 1".encode(), None) for i in range(n + 1)]
    return pairs + [(b"ERR?", b"0")]


def test_line_configures_the_wave_generator_and_the_pixel_triggers():
    pairs = connect() + line_config() + [(b"WGO 1 1", None), (b"ERR?", b"0"),
                                         (b"WGN? 1", b"1=0"), (b"WGN? 1", b"1=1"),
                                         (b"WGO 1 0", None), (b"ERR?", b"0")]
    with expected_protocol(E727, pairs, settings=settings(marker_channel=4)) as scanner:
        assert hardware_lines(scanner)
        assert scanner.marker_channel == 4
        scanner.configure_line(10.0, 12.0, 4, 0.001)  # 1 ms = 50 servo cycles of 20 µs
        scanner.start_line()
        assert scanner.line_done() is False
        assert scanner.line_done() is True
        assert scanner.line_done() is True  # no query once done


def test_backward_line_and_unchanged_layout_skip_the_trigger_points():
    pairs = connect() + line_config(out=2) + line_config(start="12.0000", amp="-2.0000",
                                                         triggers=False, out=2)
    pairs += line_config(n=5, start="12.0000", amp="-2.0000", out=2)
    with expected_protocol(E727, pairs, settings=settings(trigger_output=2)) as scanner:
        scanner.configure_line(10.0, 12.0, 4, 0.001)
        scanner.configure_line(12.0, 10.0, 4, 0.001)  # same layout: no CTO/TWC/TWS
        scanner.configure_line(12.0, 10.0, 5, 0.001)  # new layout: sent again


def test_long_line_uses_a_slower_table_rate():
    # 1000 px × 1 ms at 20 µs: 50 000 points per line > 16 384; rate 5 → 10 points per pixel
    length = 1000 * 10 + 1
    pairs = connect() + [(b"WGO 1 0", None),
                         (f"WAV 1 X LIN {length} 50.0000 0.0000 {length} 0 0".encode(), None),
                         (b"WSL 1 1", None), (b"WGC 1 1", None), (b"WTR 1 5 0", None),
                         (b"CTO 1 3 4", None), (b"TWC", None)]
    pairs += [(f"TWS 1 {i * 10 + 1} 1".encode(), None) for i in range(1001)]
    pairs += [(b"ERR?", b"0")]
    with expected_protocol(E727, pairs, settings=settings(wave_points_max=16384)) as scanner:
        scanner.configure_line(0.0, 50.0, 1000, 0.001)


@pytest.mark.parametrize("args, match", [
    ((10.0, 100.5, 4, 0.001), "range 0–100 µm"),
    ((-0.5, 10.0, 4, 0.001), "range 0–100 µm"),
    ((10.0, 12.0, 0, 0.001), "at least 1 pixel"),
    ((10.0, 12.0, 4, -0.001), "positive dwell"),
    ((10.0, 12.0, 4, 0.00103), "whole number"),
    ((10.0, 12.0, 4, 0.00002), "whole number \\(≥ 2\\)"),
    ((10.0, 12.0, 40000, 0.00004), "at most 65536 wave table points"),
    ((10.0, 10.0, 4, 0.001), "non-zero length"),
])
def test_line_refused_before_anything_is_sent(args, match):
    with expected_protocol(E727, connect()) as scanner:
        with pytest.raises(LimitError, match=match):
            scanner.configure_line(*args)


def test_line_errors_are_reported_with_the_gcs_code():
    pairs = connect() + line_config()[:-1] + [(b"ERR?", b"17")]
    with expected_protocol(E727, pairs) as scanner:
        with pytest.raises(InstrumentError, match="GCS error 17 \\(parameter out of range\\) "
                           "after 'TWS 1 201 1'"):
            scanner.configure_line(10.0, 12.0, 4, 0.001)
    with expected_protocol(E727, connect()) as scanner:
        with pytest.raises(InstrumentError, match="no line configured"):
            scanner.start_line()
    pairs = connect() + line_config() + [(b"WGO 1 1", None), (b"ERR?", b"0"),
                                         (b"WGN? 1", b"junk")]
    with expected_protocol(E727, pairs) as scanner:
        scanner.configure_line(10.0, 12.0, 4, 0.001)
        scanner.start_line()
        with pytest.raises(InstrumentError, match="expected '<axis>=<value>'"):
            scanner.line_done()


def test_hardware_lines_off_is_refused_and_reported():
    with expected_protocol(E727, connect(), settings=settings(hardware_lines=False)) as scanner:
        assert not hardware_lines(scanner)
        with pytest.raises(LimitError, match="hardware lines are off"):
            scanner.configure_line(10.0, 12.0, 4, 0.001)


@pytest.mark.parametrize("n, dwell, expected", [
    (100, 1e-3, (1, 50)), (100, 4e-5, (1, 2)), (1000, 1e-3, (1, 50)),
    (2000, 1e-3, (2, 25)), (10, 2e-5, "whole number"), (10, 3.3e-5, "whole number"),
])
def test_wave_layout(n, dwell, expected):
    got = wave_layout(n, dwell, 2e-5, 65536)
    if isinstance(expected, str):
        assert isinstance(got, str) and expected in got
    else:
        assert got == expected
        rate, points = got
        assert points * rate * 2e-5 == pytest.approx(dwell)
        assert n * points + 1 <= 65536


def test_camera_line_without_the_end_pulse():
    """``end_pulse=False``: one trigger point per pixel start (a camera's external trigger)."""
    pairs = connect() + line_config(n=3, amp="1.5000")[:-1 - 4] + [
        (b"TWS 1 1 1", None), (b"TWS 1 51 1", None), (b"TWS 1 101 1", None), (b"ERR?", b"0")]
    pairs += line_config(n=3, amp="1.5000")  # the marker layout differs: sent again
    with expected_protocol(E727, pairs) as scanner:
        scanner.configure_line(10.0, 11.5, 3, 0.001, end_pulse=False)
        scanner.configure_line(10.0, 11.5, 3, 0.001)
