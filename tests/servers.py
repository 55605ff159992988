"""Local servers the integration tests start, from binaries built with Go and cached.

MinIO comes from ./scripts/ensure-minio.sh; the Kubernetes API server and its etcd from ./scripts/ensure-k8s.sh.
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

MINIO_BIN_ENV = "DRIFTPILOT_MINIO_BIN"
K8S_BIN_DIR_ENV = "DRIFTPILOT_K8S_BIN_DIR"


@dataclass(frozen=True)
class MinioServer:
    """A running MinIO server and its root credentials.

    Attributes:
        endpoint: Base URL, ``http://127.0.0.1:PORT``.
        access_key: Root user.
        secret_key: Root password.
        pid: The server's process id (a test may stop it).
    """

    endpoint: str
    access_key: str
    secret_key: str
    pid: int = 0

    def s3_options(self) -> dict[str, Any]:
        """Store options reaching this server with its root credentials (buckets created on demand)."""
        return {
            "endpoint_override": self.endpoint,
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": "us-east-1",
            "allow_bucket_creation": True,
        }

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, the form the ``minio`` client and pyarrow's ``endpoint_override`` take."""
        return self.endpoint.removeprefix("http://")


def minio_binary() -> Path:
    """Where the MinIO server binary is: ``$DRIFTPILOT_MINIO_BIN``, else the cache ensure-minio.sh fills."""
    if explicit := os.environ.get(MINIO_BIN_ENV):
        return Path(explicit)
    return cache_bin_dir() / "minio"


def cache_bin_dir() -> Path:
    xdg_cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    cache = os.environ.get("DRIFTPILOT_CACHE") or Path(xdg_cache) / "driftpilot"
    return Path(cache) / "bin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def run_minio(work_dir: Path, *, timeout: float = 30.0, again: MinioServer | None = None) -> Iterator[MinioServer]:
    """Run a single-drive MinIO server on free local ports until the block exits.

    Args:
        work_dir: Empty folder for the server's data (``data/``) and logs (``minio-*.log``), or the
            folder of the server ``again`` starts once more.
        timeout: Seconds to wait for the liveness probe to answer 200.
        again: A server stopped (or killed) before: started again on its address, with its
            credentials and its data.

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
    server = again or MinioServer(
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
    log = work_dir / f"minio-{time.time_ns()}.log"
    with _process(command, log, env) as process:
        probe = partial(requests.get, f"{server.endpoint}/minio/health/live", timeout=1)
        _wait_ok("minio", process, log, time.monotonic() + timeout, probe)
        yield replace(server, pid=process.pid)


@dataclass(frozen=True)
class MlflowServer:
    """A running MLflow tracking server.

    Attributes:
        url: Its tracking URI, ``http://HOST:PORT``.
        pid: The server's process id (a test may stop it).
    """

    url: str
    pid: int


@contextmanager
def run_mlflow(
    work_dir: Path,
    *,
    artifacts: str,
    env: dict[str, str] | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout: float = 90.0,
) -> Iterator[MlflowServer]:
    """Run ``mlflow server`` (SQLite in ``work_dir``, artifacts served through it) until the block exits.

    Args:
        work_dir: Folder of its database (kept across restarts in the same folder) and log.
        artifacts: Where the server stores artifacts: a folder or ``s3://bucket/prefix``.
        env: Extra environment (S3 endpoint and credentials).
        port: Port to listen on (0: a free one); a restart passes the old one.
        host: Address to listen on (a private address: MLflow allows its Host header).
        timeout: Seconds to wait for ``/health``.

    Yields:
        The server.
    """
    import sys

    url = f"http://{host}:{port or free_port()}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", host]
    command += ["--port", url.rsplit(":", 1)[1], "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{work_dir / 'mlflow.db'}"]
    command += ["--serve-artifacts", "--artifacts-destination", artifacts]
    log = work_dir / f"mlflow-{time.time_ns()}.log"
    with _process(command, log, {**os.environ, **(env or {})}) as process:
        probe = partial(requests.get, f"{url}/health", timeout=1)
        _wait_ok("mlflow", process, log, time.monotonic() + timeout, probe)
        yield MlflowServer(url, process.pid)


@dataclass(frozen=True)
class KubeApiServer:
    """A running Kubernetes API server (with its own etcd) and an admin's bearer token.

    Attributes:
        url: Base URL, ``https://127.0.0.1:PORT``.
        token: Bearer token of a user in ``system:masters`` (cluster admin under RBAC).
        ca_file: PEM bundle the self-signed serving certificate (valid for 127.0.0.1) verifies against.
    """

    url: str
    token: str
    ca_file: Path


def kubernetes_bin_dir() -> Path:
    """Where ``kube-apiserver`` and ``etcd`` are: ``$DRIFTPILOT_K8S_BIN_DIR``, else the cache ensure-k8s.sh fills."""
    if explicit := os.environ.get(K8S_BIN_DIR_ENV):
        return Path(explicit)
    return cache_bin_dir()


@contextmanager
def run_kube_apiserver(work_dir: Path, *, timeout: float = 60.0) -> Iterator[KubeApiServer]:
    """Run etcd and a Kubernetes API server on free local ports until the block exits.

    No controllers, scheduler or nodes run: objects are stored and validated, admission and RBAC apply,
    but nothing reconciles them (a Deployment gets no ReplicaSet, a Pod is never scheduled).

    Args:
        work_dir: Empty folder for etcd's data (``etcd/``), the generated serving certificate (``certs/``),
            the token file, the service-account key and both logs (``etcd.log``, ``kube-apiserver.log``).
        timeout: Seconds to wait for etcd to be healthy and then for ``/readyz`` to answer 200.

    Yields:
        The server's URL, an admin token and the CA bundle to verify it with.

    Raises:
        FileNotFoundError: A binary is missing; the message says how to build it.
        RuntimeError: A server exited or was not ready in time; the message ends with its log.
    """
    bin_dir = kubernetes_bin_dir()
    etcd, apiserver = bin_dir / "etcd", bin_dir / "kube-apiserver"
    for binary in (etcd, apiserver):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise FileNotFoundError(
                f"{binary.name} not found at {binary}: run ./scripts/ensure-k8s.sh "
                f"(or set {K8S_BIN_DIR_ENV} to the folder it prints)"
            )
    deadline = time.monotonic() + timeout
    etcd_server, etcd_url = etcd_command(etcd, work_dir / "etcd")

    token = secrets.token_urlsafe(32)
    (work_dir / "tokens.csv").write_text(f'{token},driftpilot-admin,driftpilot-admin,"system:masters"\n')
    sa_key = work_dir / "service-account.key"
    _write_rsa_key(sa_key)
    port = free_port()
    server = KubeApiServer(url=f"https://127.0.0.1:{port}", token=token, ca_file=work_dir / "certs" / "apiserver.crt")
    apiserver_command = [
        str(apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        # The generated serving certificate is made for the advertise address; kubernetes >= 1.37 refuses a
        # loopback one for the "kubernetes" Service's endpoints, and there is no Service network to reach anyway.
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--secure-port={port}",
        f"--cert-dir={work_dir / 'certs'}",
        f"--token-auth-file={work_dir / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--service-cluster-ip-range=10.0.0.0/24",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={sa_key}",
        f"--service-account-signing-key-file={sa_key}",
    ]
    with ExitStack() as stack:
        etcd_process = stack.enter_context(_process(etcd_server, work_dir / "etcd.log"))
        _wait_ok(
            "etcd", etcd_process, work_dir / "etcd.log", deadline, lambda: requests.get(f"{etcd_url}/health", timeout=1)
        )
        apiserver_process = stack.enter_context(_process(apiserver_command, work_dir / "kube-apiserver.log"))
        headers = {"Authorization": f"Bearer {token}"}
        _wait_ok(
            "kube-apiserver",
            apiserver_process,
            work_dir / "kube-apiserver.log",
            deadline,
            lambda: requests.get(f"{server.url}/readyz", headers=headers, verify=str(server.ca_file), timeout=2),
        )
        yield server


def etcd_command(etcd: Path, data_dir: Path) -> tuple[list[str], str]:
    """A one-member etcd on free local ports, without fsync (test data): its command line and client URL."""
    url, peer_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    command = [str(etcd), "--name", "driftpilot", "--data-dir", str(data_dir)]
    command += ["--listen-client-urls", url, "--advertise-client-urls", url]
    command += ["--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url]
    command += ["--initial-cluster", f"driftpilot={peer_url}", "--unsafe-no-fsync"]
    return command, url


def _write_rsa_key(path: Path) -> None:
    """Write a new 2048-bit RSA private key as PEM, with ``cryptography`` if installed, else ``openssl``."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise FileNotFoundError("need the cryptography package or openssl to make a service-account key") from None
        subprocess.run([openssl, "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@contextmanager
def _process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server with its output in ``log``; terminate it (then kill it) on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ok(
    name: str,
    process: subprocess.Popen[bytes],
    log: Path,
    deadline: float,
    probe: Callable[[], requests.Response],
) -> None:
    """Wait until ``probe`` answers 200, failing early when the process exits."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; log {log}:\n{_log_tail(log)}")
        try:
            if probe().status_code == 200:
                return
        except OSError:  # requests' errors, and the serving certificate not written yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{name} not ready in time; log {log}:\n{_log_tail(log)}")


def wait_established(extensions: Any, name: str, timeout: float = 30.0) -> None:
    """Wait until the API server serves a CustomResourceDefinition (its ``Established`` condition).

    Args:
        extensions: A ``kubernetes.client.ApiextensionsV1Api``.
        name: The CRD's name (``<plural>.<group>``).
        timeout: Seconds to wait.

    Raises:
        AssertionError: Not established in time; the message lists the conditions seen.
    """
    deadline, conditions = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        response = extensions.read_custom_resource_definition(name, _preload_content=False)
        # A CRD just created has ``status.conditions: null`` until its controller has looked at it.
        conditions = (json.loads(response.data).get("status") or {}).get("conditions") or []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not established after {timeout:.0f} s: {conditions}")


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server with a password-authenticated user.

    Attributes:
        host: ``127.0.0.1``.
        port: TCP port.
        user: The user (owner of ``database``).
        password: Its password (clients pass it as ``PGPASSWORD``).
        database: A database the user owns.
    """

    host: str
    port: int
    user: str
    password: str
    database: str

    def url(self, database: str | None = None) -> str:
        """A password-less URL (``postgresql://user@host:port/db``); libpq reads ``PGPASSWORD``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database or self.database}"


def postgres_bin_dir() -> Path:
    """Where PostgreSQL's server programs are: ``$DRIFTPILOT_POSTGRES_BIN_DIR``, else ``pg_config --bindir``."""
    if explicit := os.environ.get("DRIFTPILOT_POSTGRES_BIN_DIR"):
        return Path(explicit)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "postgres").is_file():
            return candidate
    found = shutil.which("postgres")
    if found is None:
        raise FileNotFoundError("PostgreSQL not found: run ./scripts/ensure-postgres.sh (Debian's postgresql)")
    return Path(found).parent


@contextmanager
def run_postgres(work_dir: Path, *, database: str = "mlflow", timeout: float = 30.0) -> Iterator[PostgresServer]:
    """Run a PostgreSQL server on a free local port until the block exits (as ``nobody`` when root).

    The server checks passwords (scram-sha-256) over TCP, as a server in a cluster does.

    Args:
        work_dir: Folder for the server's log (its data lives in a temporary folder it may enter).
        database: Database created for the user.
        timeout: Seconds to wait for the server to accept connections.

    Yields:
        The server and its user's credentials.
    """
    bin_dir = postgres_bin_dir()
    server = PostgresServer("127.0.0.1", free_port(), "driftpilot", secrets.token_urlsafe(16), database)
    # PostgreSQL refuses to run as root: then its folder (outside pytest's root-only tmp) and the
    # server belong to nobody.
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="driftpilot-postgres-"))
    data, sockets, password_file = home / "data", home / "sockets", home / "password"
    sockets.mkdir()
    password_file.write_text(server.password + "\n")
    if as_user:
        for path in (home, sockets, password_file):
            shutil.chown(path, "nobody")
    initdb = [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, "--auth=scram-sha-256"]
    subprocess.run([*initdb, f"--pwfile={password_file}", "--no-sync"], check=True, capture_output=True)
    command = [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-h", server.host, "-p", str(server.port)]
    command += ["-k", str(sockets), "-c", "fsync=off"]
    log = work_dir / "postgres.log"
    with _process(command, log) as process:
        env = {**os.environ, "PGPASSWORD": server.password}
        createdb = [str(bin_dir / "createdb"), "-h", server.host, "-p", str(server.port), "-U", server.user, database]
        deadline = time.monotonic() + timeout
        while subprocess.run(createdb, env=env, capture_output=True).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{_log_tail(log)}")
            time.sleep(0.3)
        try:
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)
            shutil.rmtree(home, ignore_errors=True)


def helm(*args: str, timeout: float = 300) -> str:
    """Run Helm 3 (``$DRIFTPILOT_HELM_BIN_DIR/helm``, else the cache ensure-helm.sh fills); return its output."""
    binary = Path(os.environ.get("DRIFTPILOT_HELM_BIN_DIR", cache_bin_dir())) / "helm"
    if not binary.is_file():
        raise FileNotFoundError(f"helm not found at {binary}: run ./scripts/ensure-helm.sh")
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def crds_dir() -> Path:
    """Where ./scripts/ensure-crds.sh put the real CRDs: ``$DRIFTPILOT_CRDS_DIR``, else the cache."""
    path = Path(os.environ.get("DRIFTPILOT_CRDS_DIR", cache_bin_dir().parent / "crds"))
    if not (path / "VERSIONS").is_file():
        raise FileNotFoundError(f"CRDs not found at {path}: run ./scripts/ensure-crds.sh")
    return path


def yaml_documents(text: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of a multi-document YAML text (empty documents dropped)."""
    import yaml

    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]


def install_crds(api: Any, folder: Path | None = None) -> list[str]:
    """Install every CRD under a folder into an API server (409s are fine) and wait until each is served.

    Args:
        api: A ``kubernetes.client.ApiClient``.
        folder: Where the CRD manifests are; the gathered CRDs (``crds_dir()``) by default. Other documents
            there (kustomize patches of a CRD, with no ``spec.group``) are passed over.

    Returns:
        The names of the CRDs installed.
    """
    from kubernetes import client

    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted((folder or crds_dir()).rglob("*.yaml")):
        for crd in yaml_documents(path.read_text(encoding="utf-8")):
            if crd.get("kind") != "CustomResourceDefinition" or "group" not in crd.get("spec", {}):
                continue
            try:
                extensions.create_custom_resource_definition(crd, _preload_content=False)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            names.append(crd["metadata"]["name"])
    for name in names:
        wait_established(extensions, name, timeout=60)
    return names


class WebhookReceiver:
    """An HTTP endpoint on 127.0.0.1 that records the JSON bodies posted to it and answers ``status``.

    Args:
        status: The HTTP status every post gets.
    """

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@contextmanager
def run_ui(state_dir: Path, token: str, work_dir: Path, timeout: float = 120.0) -> Iterator[str]:
    """``driftpilot ui`` over a decision state on a free port, as a person starts it; yields its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DRIFTPILOT_STATE_DIR": str(state_dir), "DRIFTPILOT_UI_TOKEN": token}
    env["DRIFTPILOT_HOME"] = str(work_dir / "home")
    command = [sys.executable, "-m", "pipelines.cli", "ui", "--port", url.rsplit(":", 1)[1]]
    log = work_dir / "ui.log"
    with _process(command, log, env) as process:
        _wait_ok(
            "driftpilot ui", process, log, time.monotonic() + timeout, lambda: requests.get(f"{url}/healthz", timeout=2)
        )
        yield url
