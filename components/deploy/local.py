"""Serve on one machine the way KServe serves in a cluster: a stable model, a canary, a splitter.

Layout of the serving folder:

* ``routes.json``: stable and canary versions, their URLs and the canary's share;
* ``splitter.json``: the traffic splitter process clients call (its URL does not change);
* ``v<version>/``: one model server per version (``components.deploy.core.deploy_local``);
* ``canary-v<version>.jsonl``: every decision of that version's canary.

The first version is served straight away. A later version starts as a canary beside the one
serving and goes through ``run_canary``: promoted, it becomes stable and the old server stops;
rolled back, its server stops. One rollout at a time: a second one is refused with
``RolloutBusyError`` while the first holds the folder's lock.
"""

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from components.common.errors import ServingError
from components.deploy._process import HOST, alive, free_port, locked, spawn, terminate, wait_ready
from components.deploy.canary import CanaryPolicy, VariantStats, Verdict
from components.deploy.controller import CanaryOutcome, run_canary
from components.deploy.core import (
    deploy_local,
    parse_registry_uri,
    read_deployment,
    resolve_model_version,
    stop_local,
)
from components.deploy.lease import RolloutBusyError
from components.deploy.splitter import ADMIN_PREFIX, Backend, Routes, read_routes, write_routes

__all__ = ["LocalRouter", "LocalServing", "read_serving", "serve_local", "stop_serving"]

SPLITTER_MODULE = "components.deploy.splitter"
_ROUTES = "routes.json"
_SPLITTER = "splitter.json"


@dataclass(frozen=True)
class LocalServing:
    """What serves on this machine.

    Attributes:
        url: The splitter's base URL: the one address clients use.
        routes: Stable, canary and split.
        splitter_pid: Process id of the splitter.
    """

    url: str
    routes: Routes
    splitter_pid: int


def _version_dir(serving_dir: Path, version: str) -> Path:
    return serving_dir / f"v{version}"


def _splitter_record(serving_dir: Path) -> dict[str, Any] | None:
    path = serving_dir / _SPLITTER
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ServingError(f"unreadable {path}: {exc}; stop the splitter it names and delete it") from exc
    return data


def _stats_of(url: str, timeout_s: float = 5.0) -> dict[str, Any]:
    response = requests.get(f"{url}{ADMIN_PREFIX}/stats", timeout=timeout_s)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _splitter_up(url: str) -> bool:
    try:
        _stats_of(url, timeout_s=2.0)
    except (requests.RequestException, ValueError):
        return False
    return True


def _ensure_splitter(serving_dir: Path, port: int, timeout_s: float, grace_s: float) -> tuple[str, int]:
    """The running splitter's URL and pid; started when none runs (or not on ``port``)."""
    record = _splitter_record(serving_dir)
    if record is not None:
        same_port = port in (0, int(record["port"]))
        if same_port and alive(int(record["pid"])) and _splitter_up(str(record["url"])):
            return str(record["url"]), int(record["pid"])
        terminate(int(record["pid"]), SPLITTER_MODULE, grace_s)
    chosen = port or free_port()
    url = f"http://{HOST}:{chosen}"
    log_path = serving_dir / "splitter.log"
    command = [sys.executable, "-m", SPLITTER_MODULE, "--routes", str(serving_dir / _ROUTES), "--port", str(chosen)]
    child = spawn(command, log_path)
    wait_ready(
        child,
        lambda: _splitter_up(url),
        what=f"traffic splitter at {url}",
        module=SPLITTER_MODULE,
        log_path=log_path,
        timeout_s=timeout_s,
        grace_s=grace_s,
    )
    tmp = serving_dir / f"{_SPLITTER}.tmp"
    tmp.write_text(json.dumps({"url": url, "port": chosen, "pid": child.pid}) + "\n", encoding="utf-8")
    os.replace(tmp, serving_dir / _SPLITTER)
    return url, child.pid


class LocalRouter:
    """The canary router of local serving: writes the splitter's routes, reads its stats.

    Args:
        serving_dir: The serving folder.
        url: The splitter's URL.
        stable: The serving model.
        canary: The model on trial.
        grace_s: Seconds a retired server gets to exit after SIGTERM.
    """

    def __init__(self, serving_dir: Path, url: str, stable: Backend, canary: Backend, grace_s: float = 10) -> None:
        self.serving_dir = serving_dir
        self.url = url
        self.stable = stable
        self.canary = canary
        self.grace_s = grace_s

    def set_canary(self, percent: int) -> None:
        """Send ``percent`` of the inference requests to the canary."""
        write_routes(self.serving_dir / _ROUTES, Routes(self.stable, self.canary, percent))

    def stats(self) -> tuple[VariantStats, VariantStats]:
        """Cumulative (stable, canary) stats from the splitter."""
        variants = _stats_of(self.url)["variants"]

        def of(backend: Backend) -> VariantStats:
            found = variants.get(backend.version)
            return VariantStats.from_dict(found) if found else VariantStats(backend.version)

        return of(self.stable), of(self.canary)

    def promote(self) -> None:
        """The canary becomes stable; the old stable server stops."""
        write_routes(self.serving_dir / _ROUTES, Routes(self.canary))
        stop_local(_version_dir(self.serving_dir, self.stable.version), grace_s=self.grace_s)

    def roll_back(self) -> None:
        """Stable takes all traffic again; the canary's server stops."""
        write_routes(self.serving_dir / _ROUTES, Routes(self.stable))
        stop_local(_version_dir(self.serving_dir, self.canary.version), grace_s=self.grace_s)


def _record_to(path: Path) -> Callable[[Verdict], None]:
    def record(verdict: Verdict) -> None:
        with path.open("a", encoding="utf-8") as log:
            log.write(json.dumps(verdict.to_dict()) + "\n")

    return record


def _server_up(serving_dir: Path, backend: Backend) -> bool:
    deployment = read_deployment(_version_dir(serving_dir, backend.version))
    return deployment is not None and deployment.url == backend.url and alive(deployment.pid)


def serve_local(
    *,
    model_name: str,
    model_uri: str,
    tracking_uri: str,
    serving_dir: Path,
    port: int = 0,
    policy: CanaryPolicy | None = None,
    logger_url: str = "",
    timeout_s: float = 120,
    grace_s: float = 10,
) -> tuple[LocalServing, CanaryOutcome | None]:
    """Serve a registered version locally: straight away when nothing serves, else through a canary.

    Idempotent: serving the version already stable changes nothing. A canary left behind by a
    rollout that died is retired first (stable keeps the traffic).

    Args:
        model_name: Name the servers answer to (``/v2/models/<name>``).
        model_uri: ``models:/<name>/<version>`` or ``models:/<name>@<alias>``.
        tracking_uri: MLflow tracking/registry URI the servers load from.
        serving_dir: The serving folder.
        port: The splitter's port on 127.0.0.1 (0 picks a free one; kept afterwards).
        policy: The canary policy (default ``CanaryPolicy()``).
        logger_url: The drift monitor the servers post each request and response to ('' none).
        timeout_s: Seconds a server or the splitter gets to become ready.
        grace_s: Seconds a stopped process gets to exit after SIGTERM.

    Returns:
        What serves now, and the canary's outcome (None when no canary ran).

    Raises:
        RolloutBusyError: Another rollout is under way in this folder.
        ConfigError: ``model_uri`` is not a registry URI.
        ModelRegistryError: The alias or version does not exist.
        ServingError: A server or the splitter did not start.
    """
    version = resolve_model_version(model_uri=model_uri, tracking_uri=tracking_uri)  # ConfigError unless a registry URI
    parsed = parse_registry_uri(model_uri)
    assert parsed is not None
    pinned = f"models:/{parsed.name}/{version}"
    serving_dir = serving_dir.resolve()

    def busy() -> Exception:
        return RolloutBusyError(f"another rollout is under way in {serving_dir}; retry when it ends")

    with locked(serving_dir, wait=False, busy=busy):
        routes = read_routes(serving_dir / _ROUTES)
        if routes is not None and routes.canary is not None:  # left behind: stable keeps the traffic
            stop_local(_version_dir(serving_dir, routes.canary.version), grace_s=grace_s)
            routes = Routes(routes.stable)
            write_routes(serving_dir / _ROUTES, routes)
        started = deploy_local(
            model_name=model_name,
            model_uri=pinned,
            tracking_uri=tracking_uri,
            state_dir=_version_dir(serving_dir, version),
            logger_url=logger_url,
            timeout_s=timeout_s,
            grace_s=grace_s,
        )
        backend = Backend(version, started.url)
        if routes is None or routes.stable.version == version or not _server_up(serving_dir, routes.stable):
            if routes is not None and routes.stable.version != version:
                stop_local(_version_dir(serving_dir, routes.stable.version), grace_s=grace_s)
            write_routes(serving_dir / _ROUTES, Routes(backend))
            url, pid = _ensure_splitter(serving_dir, port, timeout_s, grace_s)
            return LocalServing(url, Routes(backend), pid), None
        url, pid = _ensure_splitter(serving_dir, port, timeout_s, grace_s)
        router = LocalRouter(serving_dir, url, routes.stable, backend, grace_s=grace_s)
        verdicts = serving_dir / f"canary-v{version}.jsonl"
        outcome = run_canary(router, policy or CanaryPolicy(), record=_record_to(verdicts))
        now = read_routes(serving_dir / _ROUTES)
        assert now is not None
        return LocalServing(url, now, pid), outcome


def read_serving(serving_dir: Path) -> LocalServing | None:
    """What serves locally, or None when nothing was deployed."""
    routes = read_routes(serving_dir / _ROUTES)
    record = _splitter_record(serving_dir)
    if routes is None or record is None:
        return None
    return LocalServing(str(record["url"]), routes, int(record["pid"]))


def stop_serving(serving_dir: Path, *, grace_s: float = 10) -> bool:
    """Stop the splitter and every model server of a serving folder.

    Returns:
        True when something was running.
    """
    stopped = False
    for state in sorted(serving_dir.glob("v*/")):
        stopped = stop_local(state, grace_s=grace_s) or stopped
    record = _splitter_record(serving_dir)
    if record is not None:
        stopped = terminate(int(record["pid"]), SPLITTER_MODULE, grace_s) or stopped
        (serving_dir / _SPLITTER).unlink(missing_ok=True)
    (serving_dir / _ROUTES).unlink(missing_ok=True)
    return stopped
