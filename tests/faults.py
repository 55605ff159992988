"""Fault injection for the integration tests: an HTTP proxy that kills the server behind it mid-request.

``KillingProxy`` forwards every request to a real server and records it; on the first request
a rule picks, it kills the server (SIGKILL: no shutdown, no flushing) either before that request
reaches it or after it was answered but before the answer reaches the client. While the server
is down every request through the proxy gets its connection closed unanswered, as a dead pod's
would be; ``restart`` points the proxy at the server started again.
"""

import http.client
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

from components.deploy.splitter import _HOP_HEADERS

When = Literal["before", "after"]
Rule = Callable[[str, str], When | None]
"""Given a request's method and path: kill the server ``before`` forwarding it, ``after``, or not (None)."""


@dataclass
class KillingProxy:
    """A proxy to ``upstream`` that kills the process ``pid`` once, at the request ``rule`` picks.

    Attributes:
        upstream: The server's URL.
        pid: The server's process id.
        rule: Where to kill it.
        requests: ``METHOD path`` of every request received, in order.
        killed_at: The request at which the server was killed ('' until then).
        url: The proxy's URL (set once it listens).
        killed: Set while the server is down (from the kill to ``restart``).
    """

    upstream: str
    pid: int
    rule: Rule
    requests: list[str] = field(default_factory=list)
    killed_at: str = ""
    url: str = ""
    killed: threading.Event = field(default_factory=threading.Event)

    def restart(self, upstream: str, pid: int) -> None:
        """Forward to the server started again (at ``upstream``, process ``pid``)."""
        self.upstream, self.pid = upstream, pid
        self.killed.clear()

    def _kill(self, request: str) -> None:
        if not self.killed_at:
            self.killed_at = request
        os.kill(self.pid, signal.SIGKILL)
        self.killed.set()

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """Forward one request; None when it goes unanswered (the server is, or was just, killed)."""
        request = f"{method} {path}"
        self.requests.append(request)
        when = None if self.killed_at else self.rule(method, path)
        if when == "before":
            self._kill(request)
        if self.killed.is_set():
            return None
        parts = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = (
                response.status,
                [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS],
                response.read(),
            )
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        if when == "after":
            self._kill(request)
            return None
        return answer


def _handler(proxy: KillingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _forward(self) -> None:
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
            answer = proxy.handle(self.command, self.path, headers, body)
            if answer is None:
                self.close_connection = True
                return
            status, kept, data = answer
            self.send_response_only(status)
            for key, value in kept:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._forward()

        def do_POST(self) -> None:
            self._forward()

        def do_PUT(self) -> None:
            self._forward()

        def do_PATCH(self) -> None:
            self._forward()

        def do_DELETE(self) -> None:
            self._forward()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def killing_proxy(upstream: str, pid: int, rule: Rule) -> Iterator[KillingProxy]:
    """Run a ``KillingProxy`` on a free local port until the block exits."""
    proxy = KillingProxy(upstream, pid, rule)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
