"""A local mirror of the GDELT 2.0 feed, serving real export files the way GDELT does.

Files in the data folder named like GDELT exports (``YYYYMMDDHHMMSS.export.CSV``, plain or
already zipped) are served zipped under ``/gdeltv2/``, listed in a generated ``lastupdate.txt``
and ``masterfilelist.txt`` with their real sizes and MD5s. The lists carry ETag and
Last-Modified headers and answer conditional requests with 304, like GDELT's servers.

For tests of the failure paths, faults can be injected per file: ``404`` and ``500`` answers,
a ``timeout`` (the answer is delayed past the client's patience), a wrong published ``md5``,
and a ``duplicate`` listing line.
"""

import hashlib
import io
import sys
import threading
import time
import zipfile
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from components.common.errors import ConfigError
from components.ingest._sources import batch_of

__all__ = ["FAULTS", "GdeltMirror", "MirrorFile"]

FAULTS = ("404", "500", "timeout", "md5", "duplicate")
PREFIX = "/gdeltv2/"


@dataclass(frozen=True)
class MirrorFile:
    """One served file.

    Attributes:
        name: Served name (``<timestamp>.export.CSV.zip``).
        content: The zipped bytes.
        md5: Hex MD5 of ``content``.
    """

    name: str
    content: bytes
    md5: str


def _zipped(path: Path) -> MirrorFile:
    if path.suffix.lower() == ".zip":
        content = path.read_bytes()
        return MirrorFile(path.name, content, hashlib.md5(content).hexdigest())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(path.name, date_time=time.gmtime(path.stat().st_mtime)[:6])
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, path.read_bytes())
    content = buffer.getvalue()
    return MirrorFile(f"{path.name}.zip", content, hashlib.md5(content).hexdigest())


@dataclass
class GdeltMirror:
    """An HTTP server on 127.0.0.1 mirroring GDELT's feed from local files.

    Attributes:
        data_dir: Folder of export files (a ``gdelt/`` subfolder is used when present).
        port: Port to listen on (0 picks a free one; read ``port`` after ``start``).
        faults: File name (served name or batch id) to fault, one of ``FAULTS``.
        delay_s: How long a ``timeout`` fault stalls before answering.
        latency_s: Added to every file download (a slow link, for backfill tests).
        host: Interface to bind.
        files: The served files by name.
        requests: Names asked for under ``/gdeltv2/``, in order.
    """

    data_dir: Path
    port: int = 0
    faults: dict[str, str] = field(default_factory=dict)
    delay_s: float = 5.0
    latency_s: float = 0.0
    host: str = "127.0.0.1"
    files: dict[str, MirrorFile] = field(default_factory=dict, init=False)
    modified: str = field(default="", init=False)
    requests: list[str] = field(default_factory=list, init=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        folder = self.data_dir / "gdelt" if (self.data_dir / "gdelt").is_dir() else self.data_dir
        if not folder.is_dir():
            raise ConfigError(f"data folder {folder} does not exist: pass --data or set DRIFTPILOT_DATA_DIR")
        paths = sorted(p for p in folder.iterdir() if p.is_file() and batch_of(p.name))
        if not paths:
            raise ConfigError(f"no GDELT export files (YYYYMMDDHHMMSS.export.CSV[.zip]) in {folder}")
        for path in paths:
            served = _zipped(path)
            self.files[served.name] = served
        unknown = {k: v for k, v in self.faults.items() if v not in FAULTS}
        if unknown:
            raise ConfigError(f"unknown mirror faults {unknown}: use one of {', '.join(FAULTS)}")
        self.modified = formatdate(time.time(), usegmt=True)

    @property
    def url(self) -> str:
        """Base URL of the feed (what a source's location is set to)."""
        return f"http://{self.host}:{self.port}{PREFIX}"

    def fault(self, name: str) -> str:
        """The fault injected for a served file ('' for none)."""
        return self.faults.get(name) or self.faults.get(batch_of(name) or "", "")

    def _line(self, served: MirrorFile) -> str:
        md5 = hashlib.md5(served.md5.encode()).hexdigest() if self.fault(served.name) == "md5" else served.md5
        return f"{len(served.content)} {md5} {self.url}{served.name}\n"

    def master_list(self) -> str:
        """The ``masterfilelist.txt`` body, oldest first."""
        lines = []
        for served in self.files.values():
            lines.append(self._line(served))
            if self.fault(served.name) == "duplicate":
                lines.append(self._line(served))
        return "".join(lines)

    def last_update(self) -> str:
        """The ``lastupdate.txt`` body: the newest batch."""
        return self._line(list(self.files.values())[-1])

    def start(self) -> "GdeltMirror":
        """Serve in a background thread; return self."""
        self._server = _Server((self.host, self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="gdelt-mirror", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve (starting if needed) until interrupted."""
        if self._server is None:
            self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "GdeltMirror":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet when a client gives up (a timed-out download); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _handler(mirror: GdeltMirror) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """Keep the console quiet."""

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _listing(self, body: str) -> None:
            data = body.encode()
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            headers = {"ETag": etag, "Last-Modified": mirror.modified, "Content-Type": "text/plain"}
            if self.headers.get("If-None-Match") == etag:
                self._send(304, headers=headers)
            else:
                self._send(200, data, headers)

        def do_HEAD(self) -> None:
            """Answer like GET, without the body."""
            self.do_GET()

        def do_GET(self) -> None:
            """Serve the lists and the zipped exports."""
            if not self.path.startswith(PREFIX):
                self._send(404, b"not found\n")
                return
            name = self.path[len(PREFIX) :].split("?", 1)[0]
            mirror.requests.append(name)
            if name == "masterfilelist.txt":
                self._listing(mirror.master_list())
                return
            if name == "lastupdate.txt":
                self._listing(mirror.last_update())
                return
            served = mirror.files.get(name)
            fault = mirror.fault(name)
            if served is None or fault == "404":
                self._send(404, b"not found\n")
            elif fault == "500":
                self._send(500, b"internal server error\n")
            else:
                time.sleep(mirror.delay_s if fault == "timeout" else mirror.latency_s)
                self._send(200, served.content, {"Content-Type": "application/zip", "ETag": f'"{served.md5}"'})

    return Handler
