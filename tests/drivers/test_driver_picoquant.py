"""PicoQuant T2 driver against a ctypes-style fake library, and the one T2 record decoder.

The driver decodes FIFO records with the decoder of the PTU reader
(``micropl.analysis.tags``); its hand-built, chunked and ptufile cross-checks live here.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from fakes.picoquant import FakePicoQuantLib
from ptufile import T2_RECORD_DTYPE
from ptufile._ptufile import decode_t2_records as ptufile_decode_t2
from pydantic import ValidationError

from micropl.drivers import picoquant
from micropl.drivers.interfaces import TimeTagger
from micropl.drivers.picoquant import RECORD_FORMATS
from micropl.errors import AnalysisInputError, InstrumentError, LimitError, MissingExtraError
from micropl.ptu import SYNC_CHANNEL, T2StreamDecoder, decode_t2_records

SPECIAL = 1 << 31
HH1, HH2 = RECORD_FORMATS["hydraharp_v1_t2"], RECORD_FORMATS["hydraharp_v2_t2"]
PH, GENERIC = RECORD_FORMATS["picoharp_t2"], RECORD_FORMATS["generic_t2"]


def hh(channel_raw, t, special=False):
    return (SPECIAL if special else 0) | (channel_raw << 25) | t


def hh_overflow(n):
    return hh(0x3F, n, special=True)


def ph(channel, t):
    return (channel << 28) | t


# ---------------------------------------------------------------------- decoder
def test_driver_uses_the_ptu_reader_decoder():
    import micropl.analysis.tags as tags
    import micropl.ptu as ptu

    assert picoquant.T2StreamDecoder is ptu.T2StreamDecoder is tags.T2StreamDecoder
    with pytest.raises(ImportError):
        import micropl.drivers.picoquant_records  # noqa: F401  (the second decoder is gone)


def test_hydraharp_v2_hand_built():
    recs = np.array([
        hh(0, 100),                 # input 1 at 100
        hh(0, 200, special=True),   # sync at 200
        hh_overflow(3),             # 3 wraps
        hh(2, 5),                   # input 3
        hh(3, 7, special=True),     # marker 3
        hh_overflow(0),             # old-style overflow = 1 wrap
        hh(1, 9),                   # input 2
    ], dtype=np.uint32)
    out = decode_t2_records(recs, HH2, 1e-12)
    wrap = 33_554_432
    np.testing.assert_array_equal(out.t_ps, [100, 200, 3 * wrap + 5, 4 * wrap + 9])
    np.testing.assert_array_equal(out.channel, [1, SYNC_CHANNEL, 3, 2])
    np.testing.assert_array_equal(out.marker_t_ps, [3 * wrap + 7])
    np.testing.assert_array_equal(out.marker_bits, [3])
    assert out.time_offset_units == 4 * wrap and out.n_overflows == 4
    assert out.t_ps.dtype == np.int64 and out.channel.dtype == np.uint8


def test_hydraharp_v1_overflow_is_one_wrap_each():
    recs = np.array([hh_overflow(5), hh(0, 1), hh_overflow(0), hh(0, 2)], np.uint32)
    out = decode_t2_records(recs, HH1, 1e-12)
    np.testing.assert_array_equal(out.t_ps, [33_552_000 + 1, 2 * 33_552_000 + 2])


def test_picoharp_markers_overflow_and_4ps_units():
    recs = np.array([ph(0, 100), ph(1, 150), ph(15, 0), ph(1, 10), ph(15, (5 << 4) | 2)],
                    np.uint32)
    out = decode_t2_records(recs, PH, 4e-12)
    wrap = 210_698_240
    np.testing.assert_array_equal(out.t_ps, np.array([100, 150, wrap + 10]) * 4)
    # PicoHarp inputs "Channel 0" and "Channel 1" are micropl channels 1 and 2
    np.testing.assert_array_equal(out.channel, [1, 2, 2])
    np.testing.assert_array_equal(out.marker_bits, [2])
    np.testing.assert_array_equal(out.marker_t_ps, [(wrap + 0x50) * 4])


@pytest.mark.parametrize("code", [PH, HH1, HH2, GENERIC])
def test_matches_ptufile_on_random_records(code):
    """Times of photons/sync and channels of photons agree with ptufile's decoder."""
    rng = np.random.default_rng(7)
    n = 5000
    if code == PH:
        chan = rng.choice([0, 1, 15], n, p=[0.45, 0.45, 0.1]).astype(np.uint32)
        t = rng.integers(0, 1 << 28, n, dtype=np.uint32)
        t[chan == 15] = np.where(rng.random((chan == 15).sum()) < 0.5, 0,
                                 t[chan == 15] | 1) & np.uint32(0x0FFFFFFF)
        recs = (chan << 28) | t
    else:
        special = rng.random(n) < 0.15
        chan = rng.integers(0, 4, n).astype(np.uint32)
        chan[special] = rng.choice([0, 2, 0x3F], special.sum())
        t = rng.integers(0, 1 << 25, n, dtype=np.uint32)
        t[special & (chan == 0x3F)] = rng.integers(0, 4, (special & (chan == 0x3F)).sum())
        recs = (special.astype(np.uint32) << 31) | (chan << 25) | t
    recs = recs.astype(np.uint32)
    ref = np.zeros(recs.size, T2_RECORD_DTYPE)
    ptufile_decode_t2(ref, recs, code)
    ours = decode_t2_records(recs, code, 1e-12)
    # ptufile reports photons (and the HydraHarp sync) with channel >= 0
    ref_events = ref[ref["channel"] >= 0]
    np.testing.assert_array_equal(ours.t_ps, ref_events["time"].astype(np.int64))
    if code == PH:
        np.testing.assert_array_equal(ours.channel, ref_events["channel"] + 1)
    else:
        # ptufile gives the sync and input 1 both channel 0; we give sync 0, input c -> c+1
        is_sync = ours.channel == SYNC_CHANNEL
        np.testing.assert_array_equal(ours.channel[~is_sync] - 1, ref_events["channel"][~is_sync])
        assert not np.any(ref_events["channel"][is_sync])


@pytest.mark.parametrize("code", [PH, HH1, HH2])
def test_stream_decoder_in_chunks_equals_one_shot(code):
    rng = np.random.default_rng(3)
    if code == PH:
        recs = np.array([ph(15, 0) if rng.random() < 0.2 else ph(int(k % 2), int(k))
                         for k in rng.integers(1, 1 << 26, 2000)], np.uint32)
    else:
        recs = np.array([hh_overflow(int(k % 5)) if rng.random() < 0.2 else hh(int(k % 3), int(k))
                         for k in rng.integers(0, 1 << 20, 2000)], np.uint32)
    whole = decode_t2_records(recs, code, 4e-12)
    dec = T2StreamDecoder(code, 4e-12)
    parts = [dec.decode(block) for block in np.split(recs, [0, 1, 500, 501, 1700])]
    np.testing.assert_array_equal(np.concatenate([p.t_ps for p in parts]), whole.t_ps)
    np.testing.assert_array_equal(np.concatenate([p.channel for p in parts]), whole.channel)
    assert dec.time_offset_units == whole.time_offset_units
    assert dec.n_overflows == whole.n_overflows > 0
    assert dec.time_ps == whole.time_offset_units * 4
    dec.reset()
    again = dec.decode(recs)
    np.testing.assert_array_equal(again.t_ps, whole.t_ps)


def test_unknown_and_t3_record_types_refused():
    with pytest.raises(AnalysisInputError, match="T3"):
        T2StreamDecoder(0x00010303, 1e-12)  # PicoHarp T3
    with pytest.raises(AnalysisInputError, match="unknown"):
        decode_t2_records(np.zeros(1, np.uint32), 0x1234, 1e-12)


# ---------------------------------------------------------------------- driver
def make(family="HH", **kw):
    lib = FakePicoQuantLib(family, **({"resolution_ps": 4.0} if family == "PH" else {}))
    device = {"HH": "hydraharp", "MH": "multiharp", "PH": "picoharp"}[family]
    if family == "PH":
        kw.setdefault("channels", (1, 2))
    settings = picoquant.PicoQuantSettings(driver="picoquant", device=device, **kw)
    return picoquant.PicoQuantTagger(lib, settings), lib


def test_hydraharp_configuration_calls():
    tagger, lib = make("HH", channels=(1, 2), sync_divider=2, sync_level_mv=120,
                       input_level_mv=80, input_zero_cross_mv=8, input_offsets_ps={2: 1500})
    assert isinstance(tagger, TimeTagger)
    names = lib.call_names()
    assert names[:5] == ["HH_GetLibraryVersion", "HH_OpenDevice", "HH_Initialize",
                         "HH_Calibrate", "HH_GetNumOfInputChannels"]
    assert lib.calls_to("HH_Initialize") == [((0, 2, 0), {})]
    assert lib.calls_to("HH_SetSyncDiv") == [((0, 2), {})]
    assert lib.calls_to("HH_SetSyncCFD") == [((0, 120, 10), {})]
    assert [a for a, _ in lib.calls_to("HH_SetInputCFD")] == [(0, r, 80, 8) for r in range(4)]
    assert [a for a, _ in lib.calls_to("HH_SetInputChannelOffset")] == [
        (0, 0, 0), (0, 1, 1500), (0, 2, 0), (0, 3, 0)]
    assert [a for a, _ in lib.calls_to("HH_SetInputChannelEnable")] == [
        (0, 0, 1), (0, 1, 1), (0, 2, 0), (0, 3, 0)]
    assert tagger.record_format == "hydraharp_v2_t2" and tagger.resolution_ps == 1.0


def test_old_hydraharp_library_uses_v1_records():
    lib = FakePicoQuantLib("HH", library_version="2.0")
    settings = picoquant.PicoQuantSettings(driver="picoquant")
    assert picoquant.PicoQuantTagger(lib, settings).record_format == "hydraharp_v1_t2"


def test_stream_decodes_and_carries_overflow_across_reads():
    tagger, lib = make("HH", channels=(1, 2))
    tagger.start((1, 2))
    assert lib.calls_to("HH_StartMeas") == [((0, 360_000_000), {})]
    wrap = 33_554_432
    lib.push_records([hh(0, 10), hh(0, 20, special=True), hh(1, 30), hh_overflow(2)])
    first = tagger.read()
    np.testing.assert_array_equal(first.t_ps, [10, 30])  # sync filtered out
    np.testing.assert_array_equal(first.channel, [1, 2])
    assert first.t_start_ps == 0 and first.t_stop_ps == 2 * wrap
    assert not first.overflow
    lib.push_records([hh(1, 5), hh(3, 6)])  # input 4 is not selected
    second = tagger.read()
    np.testing.assert_array_equal(second.t_ps, [2 * wrap + 5])
    assert second.t_start_ps == first.t_stop_ps and second.t_stop_ps == 2 * wrap + 7
    read_calls = lib.calls_to("HH_ReadFiFo")
    assert all(a[2] == 131072 for a, _ in read_calls)
    empty = tagger.read()
    assert len(empty) == 0 and empty.t_start_ps == empty.t_stop_ps == second.t_stop_ps
    tagger.stop()
    tagger.stop()
    assert lib.call_names().count("HH_StopMeas") == 1


def test_fifo_full_flag_sets_overflow(caplog):
    tagger, lib = make("HH")
    tagger.start()
    lib.fifo_full = True
    with caplog.at_level(logging.ERROR):
        chunk = tagger.read()
    assert chunk.overflow and tagger.fifo_overruns == 1
    assert "FIFO overrun" in caplog.text


def test_multiharp_edge_trigger_and_readfifo_signature():
    tagger, lib = make("MH", channels=(0, 1), sync_level_mv=-200, sync_edge="falling",
                       input_level_mv=-150, input_edge="rising")
    assert lib.calls_to("MH_SetSyncEdgeTrg") == [((0, -200, 0), {})]
    assert [a for a, _ in lib.calls_to("MH_SetInputEdgeTrg")][0] == (0, 0, -150, 1)
    assert tagger.record_format == "generic_t2"
    tagger.start()
    lib.push_records([hh(0, 5, special=True), hh(0, 7)])
    chunk = tagger.read()
    np.testing.assert_array_equal(chunk.channel, [0, 1])
    (args, _), = lib.calls_to("MH_ReadFiFo")
    assert len(args) == 3  # MH_ReadFiFo(devidx, buffer, &nactual): no count argument
    assert tagger.count_rates_hz() == {0: 10_000_000.0, 1: 1000.0}


def test_picoharp_init_has_no_refsource():
    tagger, lib = make("PH", sync_level_mv=300, input_level_mv=200)
    assert lib.calls_to("PH_Initialize") == [((0, 2), {})]
    assert lib.calls_to("PH_SetInputCFD") == [((0, 0, 300, 10), {}), ((0, 1, 200, 10), {})]
    tagger.start()
    lib.push_records([ph(0, 1), ph(1, 2)])
    chunk = tagger.read()
    np.testing.assert_array_equal(chunk.t_ps, [4, 8])
    np.testing.assert_array_equal(chunk.channel, [1, 2])
    # channel n reads PH_GetCountRate(n - 1)
    assert tagger.count_rates_hz() == {1: 1000.0, 2: 2000.0}


@pytest.mark.parametrize(
    ("family", "kw"),
    [
        ("HH", {"sync_divider": 3}),
        ("HH", {"sync_divider": 32}),
        ("HH", {"sync_level_mv": 1001}),
        ("HH", {"input_zero_cross_mv": 41}),
        ("PH", {"sync_divider": 16}),
        ("PH", {"input_level_mv": 900}),
        ("MH", {"input_level_mv": -1300}),
        ("HH", {"channels": (9,)}),
        ("PH", {"channels": (0,)}),  # no separate sync in T2
    ],
)
def test_limits_refused_before_library(family, kw):
    lib = FakePicoQuantLib(family)
    device = {"HH": "hydraharp", "MH": "multiharp", "PH": "picoharp"}[family]
    with pytest.raises(ValidationError):  # check-config refuses them already
        picoquant.PicoQuantSettings(driver="picoquant", device=device, **kw)
    settings = picoquant.PicoQuantSettings.model_construct(driver="picoquant", device=device, **kw)
    with pytest.raises(LimitError, match="^tagger 'tagger': "):
        picoquant.PicoQuantTagger(lib, settings)
    assert lib.calls == []  # not even opened


def test_fake_library_refuses_what_driver_refuses():
    lib = FakePicoQuantLib("HH")
    import ctypes
    assert lib.HH_SetSyncDiv(0, 2) == -10  # not open
    lib.HH_OpenDevice(0, ctypes.create_string_buffer(8))
    assert lib.HH_SetSyncDiv(0, 2) == -22  # not initialised
    lib.HH_Initialize(0, 2, 0)
    assert lib.HH_SetSyncDiv(0, 3) < 0 and lib.HH_SetSyncCFD(0, 1001, 10) < 0
    buf = np.zeros(10, np.uint32)
    n = ctypes.c_int()
    assert lib.HH_ReadFiFo(0, buf.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)), 10,
                           ctypes.byref(n)) < 0


def test_start_channels_refused_and_read_before_start():
    tagger, lib = make("HH")
    with pytest.raises(InstrumentError, match="not running"):
        tagger.read()
    with pytest.raises(LimitError):
        tagger.start((5,))  # the fake has 4 inputs
    assert lib.calls_to("HH_StartMeas") == []


def test_library_error_is_reported_with_name():
    tagger, lib = make("HH")
    lib.opened = False  # the device went away
    with pytest.raises(InstrumentError, match=r"HH_StartMeas failed with -10 \(ERROR_DEVICE_NOT"):
        tagger.start()


def test_close_twice_and_snapshot():
    tagger, lib = make("HH")
    assert tagger.snapshot()["resolution_ps"] == 1.0
    tagger.close()
    tagger.close()
    assert lib.call_names().count("HH_CloseDevice") == 1


def test_open_instrument_without_library_raises_missing_extra():
    settings = picoquant.PicoQuantSettings(driver="picoquant", device="hydraharp")
    with pytest.raises(MissingExtraError, match="hhlib64.dll"):
        picoquant.open_instrument(settings)
