"""Local servers the integration tests start: MinIO, from the binary ./scripts/ensure-minio.sh builds."""

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

MINIO_BIN_ENV = "DRIFTPILOT_MINIO_BIN"


@dataclass(frozen=True)
class MinioServer:
    """A running MinIO server and its root credentials.

    Attributes:
        endpoint: Base URL, ``http://127.0.0.1:PORT``.
        access_key: Root user.
        secret_key: Root password.
    """

    endpoint: str
    access_key: str
    secret_key: str

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form the ``minio`` client and pyarrow's ``endpoint_override`` take."""
        return self.endpoint.removeprefix("http://")


def minio_binary() -> Path:
    """Where the MinIO server binary is: ``$DRIFTPILOT_MINIO_BIN``, else the cache ensure-minio.sh fills."""
    if explicit := os.environ.get(MINIO_BIN_ENV):
        return Path(explicit)
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cache = os.environ.get("DRIFTPILOT_CACHE") or Path(xdg_cache) / "driftpilot"
    return Path(cache) / "bin" / "minio"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def run_minio(work_dir: Path, *, timeout: float = 30.0) -> Iterator[MinioServer]:
    """Run a single-drive MinIO server on free local ports until the block exits.

    Args:
        work_dir: Empty folder for the server's data (``data/``) and log (``minio.log``).
        timeout: Seconds to wait for the liveness probe to answer 200.

    Yields:
        The server's endpoint and random root credentials.

    Raises:
        FileNotFoundError: The binary is missing; the message says how to build it.
        RuntimeError: The server exited or was not live in time; the message ends with its log.
    """
    binary = minio_binary()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        raise FileNotFoundError(
            f"MinIO server binary not found at {binary}: run ./scripts/ensure-minio.sh "
            f"(or set {MINIO_BIN_ENV} to a minio binary)"
        )
    server = MinioServer(
        endpoint=f"http://127.0.0.1:{free_port()}",
        access_key=f"driftpilot-{secrets.token_hex(4)}",
        secret_key=secrets.token_urlsafe(24),
    )
    env = {
        **os.environ,
        "MINIO_ROOT_USER": server.access_key,
        "MINIO_ROOT_PASSWORD": server.secret_key,
        "MINIO_UPDATE": "off",
    }
    command = [str(binary), "server", str(work_dir / "data"), "--address", server.address]
    command += ["--console-address", f"127.0.0.1:{free_port()}"]
    log = work_dir / "minio.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_live(server, process, log, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_live(server: MinioServer, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"minio exited with code {process.returncode}; log {log}:\n{_log_tail(log)}")
        try:
            if requests.get(f"{server.endpoint}/minio/health/live", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"minio not live at {server.endpoint} after {timeout:.0f} s; log {log}:\n{_log_tail(log)}")
