"""The drift monitor's HTTP server: KServe's logger POSTs here; Prometheus scrapes ``/metrics``.

Routes: ``POST /`` (any path but the two below) takes one inference-log CloudEvent;
``GET /healthz`` answers ``ok``; ``GET /metrics`` the counters in Prometheus' text format. A
timer thread calls ``InferenceLogMonitor.tick`` every second so rows and online drift alarms
reach the lake even when no event comes; ``stop`` writes what is left.
"""

import logging
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from components.monitor.core import ALARM_PREFIX, InferenceLogMonitor

__all__ = ["MAX_BODY_BYTES", "MonitorServer"]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""Largest body accepted; larger ones are answered 413 unread."""

_METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
logger = logging.getLogger("driftpilot.monitor")


def _handler(monitor: InferenceLogMonitor, max_body_bytes: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # KServe's logger keeps connections open
        server_version = "driftpilot-monitor"

        def _answer(self, status: int, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:  # a client must not reuse a connection the server is closing
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._answer(HTTPStatus.OK, "ok\n")
            elif path == "/metrics":
                self._answer(HTTPStatus.OK, monitor.metrics(), _METRICS_TYPE)
            else:
                self._answer(HTTPStatus.NOT_FOUND, "POST inference-log CloudEvents to /; GET /healthz or /metrics\n")

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._answer(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required\n")
                return
            if int(length) > max_body_bytes:
                self.close_connection = True
                monitor.count_rejected("size")
                self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_body_bytes} bytes\n")
                return
            body = self.rfile.read(int(length))
            receipt = monitor.receive(dict(self.headers.items()), body)
            if receipt.status >= 400:
                logger.warning("rejected an event from %s: %s", self.client_address[0], receipt.message)
            self._answer(receipt.status, receipt.message + "\n")

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("%s %s", self.client_address[0], format % args)

    return Handler


class MonitorServer:
    """The monitor behind a threading HTTP server, with the timer that flushes it.

    Args:
        monitor: The monitor that pairs, buffers and writes.
        host: Address to bind (``0.0.0.0`` in a pod, ``127.0.0.1`` in tests).
        port: Port to bind; 0 picks a free one.
        tick_seconds: How often the timer expires overdue events and flushes a due buffer.
        max_body_bytes: Largest body accepted.
    """

    def __init__(
        self,
        monitor: InferenceLogMonitor,
        *,
        host: str = "0.0.0.0",  # a pod listens on every interface
        port: int = 8080,
        tick_seconds: float = 1.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.monitor = monitor
        self.host = host
        self.tick_seconds = tick_seconds
        self.httpd = ThreadingHTTPServer((host, port), _handler(monitor, max_body_bytes))
        self.httpd.daemon_threads = True
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The bound port."""
        port: int = self.httpd.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{self.host}:{self.port}"

    def _every_tick(self) -> None:
        while not self._stopped.wait(self.tick_seconds):
            self._safely(self.monitor.tick)

    @staticmethod
    def _safely(flush: Callable[[], list[str]]) -> None:
        try:
            for key in flush():
                if key.startswith(f"{ALARM_PREFIX}/"):
                    logger.warning("online drift alarm recorded at %s", key)
                else:
                    logger.info("wrote %s", key)
        except OSError as exc:  # counted in flush_errors_total; the rows stay buffered
            logger.error("could not write the inference log to the lake: %s", exc)

    def start(self) -> "MonitorServer":
        """Serve and tick in background threads; return the server."""
        for target, name in ((self.httpd.serve_forever, "monitor-http"), (self._every_tick, "monitor-tick")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving, then write every buffered row and every waiting event."""
        self._stopped.set()
        if self._threads:  # shutdown() waits for serve_forever, which only a started server runs
            self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join()
        self._safely(self.monitor.close)
