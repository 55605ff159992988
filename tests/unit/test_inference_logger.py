"""The model server's inference logger: the monitor's event types, never blocking, every event accounted for."""

import threading
from collections import Counter

from components.monitor import core as monitor
from components.serve.logger import REQUEST_TYPE, RESPONSE_TYPE, InferenceLogger


def test_the_event_types_are_the_monitors() -> None:
    assert (REQUEST_TYPE, RESPONSE_TYPE) == (monitor.REQUEST_TYPE, monitor.RESPONSE_TYPE)


def test_events_beyond_capacity_are_dropped_and_undeliverable_ones_fail_all_counted() -> None:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    # Port 9 on loopback refuses connections: every post fails, twice, quickly.
    sender = InferenceLogger("http://127.0.0.1:9/", "m", "1", capacity=2, timeout_s=1, on_outcome=count)
    for i in range(50):
        sender.log(f"e{i}", "request", b"{}")
    sender.close()
    assert outcomes["dropped"] > 0 and outcomes["sent"] == 0
    assert outcomes["dropped"] + outcomes["failed"] == 50
