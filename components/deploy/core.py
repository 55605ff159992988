"""Run a registered model version on a local model server, one per state folder; read the registry's URIs.

``deploy_local`` starts ``python -m components.serve`` as a detached process and records it in
``<state_dir>/deployment.json``; deploying the version that already serves is a no-op. Local
serving with a canary (``components.deploy.local``) runs one of these per version behind its
traffic splitter.
"""

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from components.common.errors import ConfigError, ModelRegistryError, ServingError
from components.deploy._process import HOST, alive, free_port, locked, spawn, terminate, wait_ready

__all__ = [
    "RECORD_FILE",
    "LocalDeployment",
    "RegistryUri",
    "deploy_local",
    "parse_registry_uri",
    "read_deployment",
    "resolve_model_version",
    "stop_local",
]

RECORD_FILE = "deployment.json"
SERVER_MODULE = "components.serve"
_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")


@dataclass(frozen=True)
class RegistryUri:
    """A model registry URI split into its parts.

    Attributes:
        name: Registered model name.
        alias: Alias (``champion``) for ``models:/<name>@<alias>``, else ''.
        version: Version for ``models:/<name>/<version>``, else ''.
    """

    name: str
    alias: str = ""
    version: str = ""


@dataclass(frozen=True)
class LocalDeployment:
    """A model server running on this machine.

    Attributes:
        model_name: Name the server answers to (``/v2/models/<model_name>/...``).
        model_version: Registered version it serves.
        model_uri: The pinned URI it loaded (``models:/<name>/<version>``).
        url: Base URL, e.g. ``http://127.0.0.1:8080``.
        port: HTTP port.
        pid: Process id of the server (also its process group id).
        log_path: File receiving the server's stdout and stderr.
    """

    model_name: str
    model_version: str
    model_uri: str
    url: str
    port: int
    pid: int
    log_path: Path


def parse_registry_uri(model_uri: str) -> RegistryUri | None:
    """Split ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; None for other URIs."""
    match = _REGISTRY_URI.match(model_uri)
    if match is None:
        return None
    return RegistryUri(match["name"], alias=match["alias"] or "", version=match["version"] or "")


def resolve_model_version(*, model_uri: str, tracking_uri: str | None) -> str:
    """Return the registered version a registry URI points at now.

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
        tracking_uri: MLflow tracking/registry URI; None uses MLflow's default (env
            ``MLFLOW_TRACKING_URI``).

    Returns:
        The version number as a string, e.g. ``"3"``.

    Raises:
        ConfigError: When the URI is not a registry URI.
        ModelRegistryError: When the alias or version does not exist.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parsed = parse_registry_uri(model_uri)
    if parsed is None:
        raise ConfigError(
            f"{model_uri!r} is not a registry URI: use models:/<name>@<alias> or models:/<name>/<version>"
        )
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        if parsed.alias:
            found = client.get_model_version_by_alias(parsed.name, parsed.alias)
        else:
            found = client.get_model_version(parsed.name, parsed.version)
    except MlflowException as exc:
        raise ModelRegistryError(
            f"cannot resolve {model_uri} in the registry at {tracking_uri or 'the default URI'}: {exc}"
        ) from exc
    return str(found.version)


def _record_path(state_dir: Path) -> Path:
    return state_dir / RECORD_FILE


def read_deployment(state_dir: Path) -> LocalDeployment | None:
    """Return the recorded local deployment, or None when there is no record.

    The record says what was started; whether it still runs is checked by ``deploy_local``.

    Raises:
        ServingError: When the record exists but cannot be parsed.
    """
    path = _record_path(state_dir)
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return LocalDeployment(
            model_name=str(data["model_name"]),
            model_version=str(data["model_version"]),
            model_uri=str(data["model_uri"]),
            url=str(data["url"]),
            port=int(data["port"]),
            pid=int(data["pid"]),
            log_path=Path(data["log_path"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ServingError(
            f"unreadable deployment record {path}: {exc!r}; stop the server it names and delete it"
        ) from exc


def _write_deployment(deployment: LocalDeployment, state_dir: Path) -> None:
    data = {**asdict(deployment), "log_path": str(deployment.log_path)}
    tmp = _record_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, _record_path(state_dir))


def _ready(url: str, model_name: str, timeout_s: float = 2.0) -> bool:
    try:
        response = requests.get(f"{url}/v2/models/{model_name}/ready", timeout=timeout_s)
    except requests.RequestException:
        return False
    return response.status_code == 200


def deploy_local(
    *,
    model_name: str,
    model_uri: str,
    tracking_uri: str,
    state_dir: Path,
    port: int = 0,
    logger_url: str = "",
    timeout_s: float = 120,
    grace_s: float = 10,
) -> LocalDeployment:
    """Serve a registered model version locally, replacing a server that serves another one.

    Idempotent: when the recorded server is alive, ready and serves the version ``model_uri``
    resolves to (on the requested port, if one is given), it is returned untouched. Otherwise
    the old server is stopped and a new one is started, pinned to the resolved version so that
    the record says exactly what serves even if the alias moves later.

    Args:
        model_name: Name the server answers to in ``/v1/models/<name>`` and ``/v2/models/<name>``.
        model_uri: ``models:/<name>@<alias>`` (usually ``@champion``) or
            ``models:/<name>/<version>``.
        tracking_uri: MLflow tracking/registry URI the server loads the model from.
        state_dir: Folder holding ``deployment.json`` and the server logs.
        port: HTTP port on 127.0.0.1 (the server listens on all interfaces); 0 picks a free one.
        logger_url: The drift monitor the server posts each request and response to ('' none).
        timeout_s: Seconds to wait for the server to report the model ready.
        grace_s: Seconds an old server gets to exit after SIGTERM before SIGKILL.

    Returns:
        The deployment that now serves.

    Raises:
        ConfigError: When ``model_uri`` is not a registry URI.
        ModelRegistryError: When the alias or version does not exist.
        ServingError: When the server dies or is not ready within ``timeout_s``; the message ends
            with the tail of its log.
    """
    parsed = parse_registry_uri(model_uri)
    if parsed is None:
        raise ConfigError(f"deploy_local serves registered versions; {model_uri!r} is not a registry URI")
    version = resolve_model_version(model_uri=model_uri, tracking_uri=tracking_uri)
    pinned_uri = f"models:/{parsed.name}/{version}"
    state_dir = state_dir.resolve()
    with locked(state_dir):
        current = read_deployment(state_dir)
        if current is not None:
            same = (current.model_name, current.model_uri) == (model_name, pinned_uri) and (port in (0, current.port))
            if same and alive(current.pid) and _ready(current.url, model_name):
                return current
            terminate(current.pid, SERVER_MODULE, grace_s)
            _record_path(state_dir).unlink(missing_ok=True)
        chosen = port or free_port()
        url = f"http://{HOST}:{chosen}"
        log_path = state_dir / f"server-{version}.log"
        command = [
            sys.executable, "-m", SERVER_MODULE,
            "--model_name", model_name, "--model_uri", pinned_uri, "--tracking_uri", tracking_uri,
            "--http_port", str(chosen),
            # gRPC would claim port 8081 for every local server; HTTP is all the local target needs.
            "--enable_grpc", "false",
            *(["--logger_url", logger_url] if logger_url else []),
        ]  # fmt: skip
        child = spawn(command, log_path)
        wait_ready(
            child,
            lambda: _ready(url, model_name),
            what=f"model server at {url}",
            module=SERVER_MODULE,
            log_path=log_path,
            timeout_s=timeout_s,
            grace_s=grace_s,
        )
        deployment = LocalDeployment(
            model_name=model_name,
            model_version=version,
            model_uri=pinned_uri,
            url=url,
            port=chosen,
            pid=child.pid,
            log_path=log_path,
        )
        _write_deployment(deployment, state_dir)
        return deployment


def stop_local(state_dir: Path, *, grace_s: float = 10) -> bool:
    """Stop the recorded local model server and remove its record.

    Args:
        state_dir: Folder holding ``deployment.json``.
        grace_s: Seconds the server gets to exit after SIGTERM before SIGKILL.

    Returns:
        True when a running server was stopped; False when none was recorded or running.
    """
    with locked(state_dir):
        current = read_deployment(state_dir)
        if current is None:
            return False
        stopped = terminate(current.pid, SERVER_MODULE, grace_s)
        _record_path(state_dir).unlink(missing_ok=True)
        return stopped
