"""Send each request and response to the drift monitor, as KServe's logger does in a cluster.

Off the cluster there is no KServe logger, so the model server posts the same binary-mode
CloudEvents itself: the V1/V2 body as the event's data, ``ce-type`` naming a request or a
response, the request and its response sharing ``ce-id``, and ``ce-inferenceservicename`` /
``ce-endpoint`` naming the model and its version (the monitor keeps one online detector per
model and endpoint, so a canary's scores are watched apart from stable's).

Posting never holds up a prediction: events wait in a bounded queue that one thread drains.
When the monitor is slower than the traffic, new events are dropped and counted
(``driftpilot_log_events_dropped_total``); a post that fails is retried once, then counted as
failed.
"""

import logging
import queue
import threading
from collections.abc import Callable

import requests

from components.common.inference_log import REQUEST_TYPE, RESPONSE_TYPE

__all__ = ["REQUEST_TYPE", "RESPONSE_TYPE", "InferenceLogger"]

logger = logging.getLogger("driftpilot.serve.logger")


class InferenceLogger:
    """A background sender of inference-log CloudEvents.

    Args:
        url: The monitor's URL.
        model_name: The served model (``ce-inferenceservicename``).
        version: The model version (``ce-endpoint``).
        capacity: Events kept waiting at most.
        timeout_s: Seconds a post may take.
        on_outcome: Called with ``sent``, ``dropped`` or ``failed`` for every event.
    """

    def __init__(
        self,
        url: str,
        model_name: str,
        version: str,
        *,
        capacity: int = 10_000,
        timeout_s: float = 5.0,
        on_outcome: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.on_outcome = on_outcome
        self._headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-source": f"driftpilot://{model_name}/v{version}",
            "ce-inferenceservicename": model_name,
            "ce-namespace": "local",
            "ce-component": "predictor",
            "ce-endpoint": f"v{version}",
        }
        self._queue: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._drain, name="inference-logger", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Events waiting to be sent (at most ``capacity``)."""
        return self._queue.qsize()

    def log(self, event_id: str, kind: str, body: bytes) -> None:
        """Queue one event (``kind`` is ``request`` or ``response``); drop it when the queue is full."""
        try:
            self._queue.put_nowait((event_id, REQUEST_TYPE if kind == "request" else RESPONSE_TYPE, body))
        except queue.Full:
            self.on_outcome("dropped")

    def _drain(self) -> None:
        session = requests.Session()
        while (item := self._queue.get()) is not None:
            event_id, event_type, body = item
            headers = {**self._headers, "ce-id": event_id, "ce-type": event_type}
            for attempt in (1, 2):
                try:
                    response = session.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
                    if response.status_code < 300:
                        self.on_outcome("sent")
                        break
                    problem = f"HTTP {response.status_code}: {response.text[:200]}"
                except requests.RequestException as exc:
                    problem = str(exc)
                if attempt == 2:
                    logger.warning("inference log event %s not delivered to %s: %s", event_id, self.url, problem)
                    self.on_outcome("failed")

    def close(self, timeout_s: float = 10.0) -> None:
        """Send what is queued (up to ``timeout_s``) and stop."""
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
