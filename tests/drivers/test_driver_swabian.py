"""Swabian Time Tagger driver against the in-process fake of the TimeTagger module."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.swabian import FakeTagger, make_module
from pydantic import ValidationError

from micropl.drivers import swabian
from micropl.drivers.interfaces import TimeTagger
from micropl.errors import InstrumentError, LimitError, MissingExtraError


def make(**kw):
    tt = make_module(FakeTagger())
    settings = swabian.SwabianSettings(driver="swabian", **kw)
    tagger = swabian.SwabianTagger(tt.createTimeTagger(""), tt, settings)
    return tagger, tt.tagger


def test_configuration_calls():
    tagger, fake = make(channels=(1, 2), trigger_level_v=0.4, trigger_levels_v={2: 0.6},
                        input_delays_ps={2: -3500}, deadtime_ps=21_000)
    assert isinstance(tagger, TimeTagger)
    assert fake.calls_to("setTriggerLevel") == [((1, 0.4), {}), ((2, 0.6), {})]
    assert fake.calls_to("setInputDelay") == [((1, 0), {}), ((2, -3500), {})]
    assert fake.calls_to("setDeadtime") == [((1, 21_000), {}), ((2, 21_000), {})]
    assert tagger.deadtime_ps == {1: 22_000, 2: 22_000}  # rounded up by the hardware
    assert fake.calls_to("Countrate") == [(([1, 2],), {})]


def test_stream_chunks_tile_time_and_keep_int64_ps():
    tagger, fake = make(channels=(1, 2))
    fake.advance_to(1000)
    tagger.start()
    assert fake.calls_to("TimeTagStream") == [((10_000_000, [1, 2]), {})]
    fake.inject([1500, 2_000_000_000_123, 2_000_000_000_200], [1, 2, 3])  # ch 3 not streamed
    a = tagger.read()
    np.testing.assert_array_equal(a.t_ps, [1500, 2_000_000_000_123])
    np.testing.assert_array_equal(a.channel, [1, 2])
    assert a.t_ps.dtype == np.int64 and a.channel.dtype == np.uint8
    assert (a.t_start_ps, a.t_stop_ps) == (1000, 2_000_000_000_201)
    assert not a.overflow and a.missed_events == 0
    fake.advance_to(3_000_000_000_000)
    b = tagger.read()
    assert len(b) == 0 and b.t_start_ps == a.t_stop_ps and b.t_stop_ps == 3_000_000_000_000


def test_overflow_and_missed_events_are_carried():
    tagger, fake = make(channels=(1, 2))
    tagger.start()
    fake.inject([10], [1])
    fake.inject_overflow(20, {1: 5, 2: 7})
    fake.inject([30], [2])
    chunk = tagger.read()
    assert chunk.overflow and chunk.missed_events == 12
    np.testing.assert_array_equal(chunk.t_ps, [10, 30])  # overflow markers are not tags


def test_full_buffer_flagged_as_overflow():
    tagger, fake = make(channels=(1,), buffer_events=1000)
    tagger.start()
    fake.inject(np.arange(1500) * 10, np.ones(1500, int))
    chunk = tagger.read()
    assert len(chunk) == 1000 and chunk.overflow


def test_count_rates():
    tagger, fake = make(channels=(1, 2))
    fake.inject(np.arange(100) * 10_000_000, np.ones(100, int))  # 100 tags over ~1 ms
    rates = tagger.count_rates_hz()
    assert rates[1] == pytest.approx(100 / (99 * 10_000_000 + 1) * 1e12)
    assert rates[2] == 0.0


@pytest.mark.parametrize(
    "kw",
    [
        {"channels": (-1,)},  # falling edge
        {"channels": (0,)},
        {"channels": (9,)},
        {"trigger_level_v": 3.0},
        {"trigger_levels_v": {2: -2.6}},
        {"input_delays_ps": {1: 5_000_000}},
    ],
)
def test_limits_refused_before_sdk(kw):
    tt = make_module(FakeTagger())
    with pytest.raises(ValidationError):  # check-config refuses them already
        swabian.SwabianSettings(driver="swabian", **kw)
    settings = swabian.SwabianSettings.model_construct(driver="swabian", **kw)
    with pytest.raises(LimitError, match="^tagger 'tagger': "):
        swabian.SwabianTagger(tt.tagger, tt, settings)
    assert tt.tagger.calls == []


def test_fake_refuses_what_driver_refuses():
    fake = FakeTagger()
    with pytest.raises(ValueError):
        fake.setTriggerLevel(1, 3.0)
    with pytest.raises(ValueError):
        fake.setTriggerLevel(9, 0.5)


def test_start_with_new_channels_and_stop():
    tagger, fake = make(channels=(1, 2))
    with pytest.raises(InstrumentError, match="not running"):
        tagger.read()
    tagger.start((3,))
    assert fake.calls_to("TimeTagStream")[-1] == ((10_000_000, [3]), {})
    assert fake.calls_to("setTriggerLevel")[-1] == ((3, 0.5), {})
    tagger.stop()
    tagger.stop()
    assert fake.call_names().count("TimeTagStream.stop") == 1
    with pytest.raises(LimitError):
        tagger.start((-3,))


def test_close_twice_frees_once():
    tagger, fake = make()
    tagger.start()
    assert tagger.snapshot()["channels"] == [1, 2]
    tagger.close()
    tagger.close()
    assert fake.call_names().count("freeTimeTagger") == 1 and fake.freed


def test_open_instrument_without_package_raises_missing_extra():
    pytest.importorskip("pydantic")
    try:
        import TimeTagger  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the real TimeTagger package is installed")
    settings = swabian.SwabianSettings(driver="swabian")
    with pytest.raises(MissingExtraError, match=r"pip install 'micropl\[swabian\]'"):
        swabian.open_instrument(settings)
