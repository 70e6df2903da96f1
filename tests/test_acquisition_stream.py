"""The data stream: lossless subscribers keep every record in order, displays coalesce."""

import threading
import time

from micropl.acquisition.stream import Stream


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
