"""The local traffic splitter: KServe's canary split for model servers on one machine.

Clients call the splitter as they would the model server. Each inference request goes to the
canary with the routes' probability (the same request id always to the same side) and to stable
otherwise; every other request (readiness, metadata) goes to stable. The routes live in a JSON
file the controller rewrites; the splitter re-reads it when it changes, so routing changes
take effect on the next request without a restart.

For the canary analysis the splitter keeps ``VariantStats`` per model version: requests,
non-2xx answers (a backend that does not answer counts as an error and gets a 502), log
latency, and the scores it returned. Each answer carries its request id in ``x-request-id``
(the client's own, if it sent one); a client that later learns the labels posts them to
``POST /_driftpilot/labels`` (``{"labels": {"<request id>": [0, 1, ...]}}``, one label per row)
and they are scored against the predictions of the variant that answered. ``GET
/_driftpilot/stats`` returns the routes and the stats.
"""

import argparse
import http.client
import json
import logging
import math
import os
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from components.common.errors import ServingError
from components.deploy.canary import VariantStats

__all__ = ["ADMIN_PREFIX", "Backend", "Routes", "TrafficSplitter", "read_routes", "write_routes"]

ADMIN_PREFIX = "/_driftpilot"
REQUEST_ID = "x-request-id"
_LABEL_MEMORY = 100_000
_EPS = 1e-7
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length"})
logger = logging.getLogger("driftpilot.splitter")


@dataclass(frozen=True)
class Backend:
    """One model server.

    Attributes:
        version: Model version it serves.
        url: Its base URL.
    """

    version: str
    url: str


@dataclass(frozen=True)
class Routes:
    """Where traffic goes.

    Attributes:
        stable: The serving model.
        canary: The model on trial, or None.
        percent: The canary's share of inference requests (0–100).
    """

    stable: Backend
    canary: Backend | None = None
    percent: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Routes":
        """Read the form ``to_dict`` writes."""
        canary = data.get("canary")
        return cls(Backend(**data["stable"]), Backend(**canary) if canary else None, int(data.get("percent", 0)))


def write_routes(path: Path, routes: Routes) -> None:
    """Replace the routes file atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(routes.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_routes(path: Path) -> Routes | None:
    """Return the routes, or None when the file does not exist.

    Raises:
        ServingError: When the file cannot be parsed.
    """
    try:
        return Routes.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingError(f"unreadable routes file {path}: {exc!r}") from exc


def _is_inference(method: str, path: str) -> bool:
    return method == "POST" and (path.endswith(":predict") or path.endswith("/infer"))


def _scores(body: bytes) -> list[float]:
    """The probabilities of a V1 or V2 answer ([] when it has none)."""
    try:
        data = json.loads(body)
    except ValueError:
        return []
    if isinstance(data, dict) and isinstance(data.get("predictions"), list):
        values = data["predictions"]
    elif isinstance(data, dict) and isinstance(data.get("outputs"), list) and data["outputs"]:
        values = data["outputs"][0].get("data") or []
    else:
        return []
    return [float(v) for v in values if isinstance(v, int | float)]


def _is_label(value: Any) -> bool:
    """A label is a number from 0 to 1 (JSON true/false are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1


def _canary_side(request_id: str, percent: int) -> bool:
    """The same request id always lands on the same side of a given split."""
    return zlib.crc32(request_id.encode()) % 10_000 < percent * 100


class TrafficSplitter:
    """The splitter's state: routes, per-version stats and the predictions awaiting labels.

    Args:
        routes_path: The routes file.
        timeout_s: Seconds a backend gets to answer.
    """

    def __init__(self, routes_path: Path, timeout_s: float = 30.0) -> None:
        self.routes_path = routes_path
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._routes: Routes | None = None
        self._routes_stamp: tuple[int, int] | None = None
        self._stats: dict[str, VariantStats] = {}
        self._awaiting: OrderedDict[str, tuple[str, list[float]]] = OrderedDict()
        self._local = threading.local()

    def routes(self) -> Routes:
        """The current routes (re-read when the file changed).

        Raises:
            ServingError: When there is no routes file.
        """
        try:
            stat = os.stat(self.routes_path)
            stamp = (stat.st_mtime_ns, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._routes_stamp or self._routes is None:
            routes = read_routes(self.routes_path)
            if routes is None:
                raise ServingError(f"no routes file {self.routes_path}")
            self._routes, self._routes_stamp = routes, stamp
        return self._routes

    def choose(self, request_id: str, inference: bool) -> Backend:
        """The backend of one request."""
        routes = self.routes()
        if inference and routes.canary is not None and _canary_side(request_id, routes.percent):
            return routes.canary
        return routes.stable

    def _connection(self, url: str) -> http.client.HTTPConnection:
        pool: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("pool", {})
        if url not in pool:
            parts = urlsplit(url)
            pool[url] = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout_s)
        return pool[url]

    def forward(
        self, backend: Backend, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request to a backend; a backend that does not answer gives a 502."""
        retried = False
        while True:
            connection = self._connection(backend.url)
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
                return response.status, kept, data
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                self._local.pool.pop(backend.url, None)
                # A kept-alive connection the backend had closed is retried once on a new one.
                if not retried and isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError):
                    retried = True
                    continue
                message = json.dumps({"error": f"model v{backend.version} at {backend.url} did not answer: {exc}"})
                return HTTPStatus.BAD_GATEWAY, [("Content-Type", "application/json")], message.encode()

    def record(self, backend: Backend, request_id: str, status: int, seconds: float, body: bytes) -> None:
        """Count one inference request in its variant's stats."""
        scores = _scores(body) if status == HTTPStatus.OK else []
        with self._lock:
            stats = self._stats.setdefault(backend.version, VariantStats(backend.version))
            stats.requests += 1
            if not 200 <= status < 300:
                stats.errors += 1
                return
            stats.latency.add(math.log(max(seconds, 1e-6)))
            for score in scores:
                stats.scores.add(score)
            if scores:
                self._awaiting[request_id] = (backend.version, scores)
                if len(self._awaiting) > _LABEL_MEMORY:
                    self._awaiting.popitem(last=False)

    def add_labels(self, labels: dict[str, list[float]]) -> dict[str, int]:
        """Score delayed labels against the predictions they belong to.

        Returns:
            ``matched`` (rows scored), ``unknown`` (request ids not remembered),
            ``mismatched`` (requests whose label count differs from their row count) and
            ``invalid`` (requests with a label that is not a number from 0 to 1).
        """
        counts = {"matched": 0, "unknown": 0, "mismatched": 0, "invalid": 0}
        with self._lock:
            for request_id, values in labels.items():
                found = self._awaiting.pop(request_id, None)
                if found is None:
                    counts["unknown"] += 1
                    continue
                version, scores = found
                if not isinstance(values, list) or len(values) != len(scores):
                    counts["mismatched"] += 1
                    continue
                if not all(_is_label(v) for v in values):
                    counts["invalid"] += 1
                    continue
                stats = self._stats[version]
                for label, score in zip(values, scores, strict=True):
                    p = min(max(score, _EPS), 1 - _EPS)
                    stats.log_loss.add(-math.log(p) if float(label) >= 0.5 else -math.log(1 - p))
                    counts["matched"] += 1
        return counts

    def stats(self) -> dict[str, Any]:
        """The routes and every version's stats."""
        with self._lock:
            variants = {version: stats.to_dict() for version, stats in self._stats.items()}
        return {"routes": self.routes().to_dict(), "variants": variants}


def _handler(splitter: TrafficSplitter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "driftpilot-splitter"
        timeout = 60  # seconds a client may stall mid-request before its connection is closed

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any) -> None:
            self._answer(status, [("Content-Type", "application/json")], json.dumps(data).encode())

        def _admin(self, path: str, body: bytes) -> None:
            if self.command == "GET" and path == f"{ADMIN_PREFIX}/stats":
                self._json(HTTPStatus.OK, splitter.stats())
            elif self.command == "POST" and path == f"{ADMIN_PREFIX}/labels":
                try:
                    labels = json.loads(body)["labels"]
                    if not isinstance(labels, dict):
                        raise TypeError("labels is not an object")
                except (ValueError, KeyError, TypeError) as exc:
                    shape = '{"labels": {"<request id>": [0, 1, ...]}}'
                    self._json(HTTPStatus.BAD_REQUEST, {"error": f"send {shape}: {exc}"})
                    return
                self._json(HTTPStatus.OK, splitter.add_labels(labels))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"GET {ADMIN_PREFIX}/stats or POST {ADMIN_PREFIX}/labels"})

        def _serve(self) -> None:
            length_header = self.headers.get("Content-Length") or "0"
            if not length_header.isascii() or not length_header.isdigit():
                self.close_connection = True
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"Content-Length {length_header!r} is not a byte count"})
                return
            length = int(length_header)
            body = self.rfile.read(length) if length else b""
            path = self.path
            if path.startswith(ADMIN_PREFIX):
                self._admin(path.split("?", 1)[0], body)
                return
            request_id = self.headers.get(REQUEST_ID) or uuid.uuid4().hex
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            headers[REQUEST_ID] = request_id
            inference = _is_inference(self.command, path.split("?", 1)[0])
            try:
                backend = splitter.choose(request_id, inference)
            except ServingError as exc:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
                return
            started = time.perf_counter()
            status, kept, data = splitter.forward(backend, self.command, path, headers, body)
            if inference:
                splitter.record(backend, request_id, status, time.perf_counter() - started, data)
            kept = [(k, v) for k, v in kept if k.lower() != REQUEST_ID]
            self._answer(status, [*kept, (REQUEST_ID, request_id), ("x-model-version", backend.version)], data)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(splitter: TrafficSplitter, host: str, port: int) -> ThreadingHTTPServer:
    """Bind the splitter's HTTP server (call ``serve_forever`` on it)."""
    return _Server((host, port), _handler(splitter))


def main(argv: list[str] | None = None) -> None:
    """``python -m components.deploy.splitter --routes FILE --port N``: run until killed."""
    parser = argparse.ArgumentParser(prog="python -m components.deploy.splitter", description=__doc__.split("\n")[0])
    parser.add_argument("--routes", type=Path, required=True, help="routes file the controller writes")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a backend gets to answer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = serve(TrafficSplitter(args.routes, args.timeout), args.host, args.port)
    logger.info("splitting traffic on %s:%d as %s says", args.host, server.server_address[1], args.routes)
    server.serve_forever()


if __name__ == "__main__":
    main()
