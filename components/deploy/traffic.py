"""Replay real rows against a serving URL as clients would, and deliver their labels later.

Each worker thread sends one V1 request per row (cycling through the rows) with its own
``x-request-id``; when labels are given, they are posted to the splitter's label endpoint
``label_delay_s`` seconds after the answer, as delayed ground truth arrives in production. Used
by the demo and the tests to put live traffic on a canary.
"""

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import requests

from components.deploy.splitter import ADMIN_PREFIX, REQUEST_ID

__all__ = ["ReplayCounts", "TrafficReplayer"]


@dataclass(frozen=True)
class ReplayCounts:
    """What a replay sent.

    Attributes:
        sent: Requests sent.
        failed: Requests not answered 200 (or not answered at all).
        labelled: Labels the splitter matched to a prediction.
    """

    sent: int
    failed: int
    labelled: int


class TrafficReplayer:
    """Background traffic of real rows.

    Args:
        url: Base URL clients call (the splitter).
        model_name: Served model name.
        instances: V1 instances, one per row (``components.serve.payloads.instances``).
        labels: One 0/1 label per instance to deliver later, or None.
        concurrency: Threads sending requests.
        rate_per_s: Requests per second over all threads (0: as fast as answers come).
        label_delay_s: Seconds between an answer and its label's delivery.
        timeout_s: Seconds a request may take.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        instances: Sequence[dict[str, Any]],
        labels: Sequence[int] | None = None,
        *,
        concurrency: int = 2,
        rate_per_s: float = 0.0,
        label_delay_s: float = 1.0,
        timeout_s: float = 10.0,
    ) -> None:
        if not instances or (labels is not None and len(labels) != len(instances)):
            raise ValueError(f"give one label per instance and at least one instance, not {len(instances)}")
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.records = list(instances)
        self.labels = [int(v) for v in labels] if labels is not None else None
        self.concurrency = concurrency
        self.interval_s = concurrency / rate_per_s if rate_per_s > 0 else 0.0
        self.label_delay_s = label_delay_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._due: deque[tuple[float, str, int]] = deque()
        self._sent = self._failed = self._labelled = 0
        self._threads: list[threading.Thread] = []

    def _send(self, worker: int) -> None:
        session = requests.Session()
        endpoint = f"{self.url}/v1/models/{self.model_name}:predict"
        i = worker
        while not self._stop.wait(self.interval_s):
            row = i % len(self.records)
            request_id = f"replay-{worker}-{i}"
            try:
                response = session.post(
                    endpoint,
                    json={"instances": [self.records[row]]},
                    headers={REQUEST_ID: request_id},
                    timeout=self.timeout_s,
                )
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            with self._lock:
                self._sent += 1
                self._failed += not ok
                if ok and self.labels is not None:
                    self._due.append((time.monotonic() + self.label_delay_s, request_id, self.labels[row]))
            i += self.concurrency

    def _deliver(self, everything: bool = False) -> None:
        now = time.monotonic()
        batch: dict[str, list[int]] = {}
        with self._lock:
            while self._due and (everything or self._due[0][0] <= now):
                _, request_id, label = self._due.popleft()
                batch[request_id] = [label]
        if not batch:
            return
        try:
            response = requests.post(f"{self.url}{ADMIN_PREFIX}/labels", json={"labels": batch}, timeout=self.timeout_s)
            matched = int(response.json().get("matched", 0)) if response.status_code == 200 else 0
        except (requests.RequestException, ValueError):
            matched = 0
        with self._lock:
            self._labelled += matched

    def _label_loop(self) -> None:
        while not self._stop.wait(0.25):
            self._deliver()

    def start(self) -> "TrafficReplayer":
        """Start sending (and labelling) in the background."""
        self._threads = [threading.Thread(target=self._send, args=(w,), daemon=True) for w in range(self.concurrency)]
        if self.labels is not None:
            self._threads.append(threading.Thread(target=self._label_loop, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> ReplayCounts:
        """Stop, deliver the labels still due, and say what was sent."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout_s + 1)
        if self.labels is not None:
            self._deliver(everything=True)
        with self._lock:
            return ReplayCounts(self._sent, self._failed, self._labelled)

    def __enter__(self) -> "TrafficReplayer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
