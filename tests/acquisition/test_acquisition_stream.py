"""The data stream: lossless subscribers keep every record in order, displays coalesce."""

import threading
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from micropl.acquisition.stream import Stream, Subscription, record_nbytes


def test_lossless_subscriber_gets_every_record_in_order_despite_a_slow_handler():
    stream = Stream()
    seen = []

    def slow(record):
        if record % 100 == 0:
            time.sleep(0.01)
        seen.append(record)

    stream.attach("storage", slow)
    for i in range(2000):
        stream.publish(i)
    assert stream.flush(timeout_s=30)
    stream.close()
    assert seen == list(range(2000))


def test_coalescing_subscriber_keeps_only_the_newest_and_counts_the_dropped():
    stream = Stream()
    display = stream.subscribe("display", maxlen=10)
    for i in range(100):
        stream.publish(i)
    assert display.drain() == list(range(90, 100))
    assert display.dropped == 90


def test_batch_worker_sees_each_record_once_in_order():
    stream = Stream()
    batches = []
    gate = threading.Event()

    def handler(items):
        gate.wait(5)
        batches.append(list(items))

    stream.attach("storage", handler, batch=True)
    for i in range(50):
        stream.publish(i)
    gate.set()
    assert stream.flush(timeout_s=10)
    stream.close()
    assert [x for batch in batches for x in batch] == list(range(50))
    assert len(batches) < 50  # queued records were handed over together


def test_flush_waits_for_records_that_handlers_publish_back():
    stream = Stream()
    derived = []
    stream.attach("analysis", lambda r: stream.publish(("fit", r)) if isinstance(r, int) else None)
    stream.attach("storage", lambda r: derived.append(r) if isinstance(r, tuple) else None)
    for i in range(20):
        stream.publish(i)
    assert stream.flush(timeout_s=10)
    assert derived == [("fit", i) for i in range(20)]
    stream.close()


def test_failing_handler_reports_and_goes_on():
    stream = Stream()
    errors = []
    ok = []

    def handler(record):
        if record == 3:
            raise ValueError("bad record")
        ok.append(record)

    worker = stream.attach("fits", handler, on_error=lambda rec, exc: errors.append((rec, exc)))
    for i in range(6):
        stream.publish(i)
    assert stream.flush(timeout_s=10)
    stream.close()
    assert ok == [0, 1, 2, 4, 5]
    assert errors[0][0] == 3 and isinstance(errors[0][1], ValueError)
    assert len(worker.errors) == 1


# ------------------------------------------------------------------ memory budget, dead workers
class _Blob:
    def __init__(self, n_bytes: int) -> None:
        self.data = np.zeros(n_bytes, dtype=np.uint8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5000), st.just(-1)), min_size=1, max_size=80),
       st.integers(1000, 20_000))
def test_budget_accounting_never_drops_and_warns_once_per_overrun(ops, budget):
    """A bounded lossless queue: every record kept in order, queued bytes exact, and the
    overflow callback called exactly when the queue goes over the budget while armed
    (re-armed below half of it). ``-1`` takes the oldest record."""
    calls: list[str] = []
    sub = Subscription("storage", max_bytes=budget, on_overflow=calls.append)
    model: list[int] = []
    armed, expected_calls, serial = True, 0, 0
    for op in ops:
        if op < 0:
            if model:
                item = sub.get(0)
                assert item.serial == model.pop(0)
                sub.done()
        else:
            blob = _Blob(op)
            blob.serial = serial
            model.append(serial)
            serial += 1
            sub.put(blob)
        queued = sum(record_nbytes(b) for b in list(sub._items))
        assert sub.queued_bytes == queued
        if op >= 0 and armed and queued > budget:
            armed, expected_calls = False, expected_calls + 1
        elif op < 0 and not armed and queued <= budget // 2:
            armed = True
        assert len(calls) == expected_calls
    assert len(sub) == len(model) and sub.dropped == 0
    assert all("behind" in c and "MB" in c for c in calls)


def test_record_nbytes_counts_the_arrays_of_the_enveloped_record():
    from micropl.records import TagChunk, Tagged

    chunk = TagChunk(t_ps=np.arange(1000, dtype=np.int64), channel=np.ones(1000, np.uint8),
                     t_start_ps=0, t_stop_ps=1000)
    assert record_nbytes(Tagged(chunk, run_id=1, qd_id=-1, kind="g2")) == 64 + 9000
    assert record_nbytes("no arrays") == 64


def test_flush_returns_at_once_when_a_lossless_worker_died_with_records_left():
    stream = Stream()
    reported: list[BaseException] = []

    def handler(record):
        raise SystemExit("worker ended")

    stream.attach("dies", handler, on_error=lambda items, exc: reported.append(exc))
    for i in range(3):
        stream.publish(i)
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(stream.flush(timeout_s=None)))
    waiter.start()
    waiter.join(60)
    assert not waiter.is_alive() and results == [False]
    assert len(reported) == 1 and isinstance(reported[0], SystemExit)
    stream.close(timeout_s=5)
