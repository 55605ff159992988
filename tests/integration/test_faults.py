"""Faults injected mid-run on the real parts.

A full disk under the ledger, the monitor down, a canary's server killed, and the tracking server
killed (SIGKILL, through ``tests.faults.KillingProxy``) at each step of a registration. MinIO
killed mid-ingest is in ``test_ingest_feed.py`` beside the killed backfill.
"""

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from components.common.audit import AuditLedger, LedgerError
from components.common.errors import ModelRegistryError
from components.common.retry import RetryPolicy
from components.common.task import load_task
from components.deploy._process import free_port
from components.deploy.canary import CanaryPolicy
from components.deploy.core import deploy_local, read_deployment, stop_local
from components.deploy.local import read_serving, serve_local, stop_serving
from components.deploy.splitter import read_routes
from components.deploy.traffic import TrafficReplayer
from components.features.core import input_columns
from components.register import core as register_core
from components.register.core import CHALLENGER, CHAMPION, PENDING_TAG, Lineage, find_alias, load_model, register_model
from components.serve import payloads
from components.train.model import TrainedModel
from tests.faults import KillingProxy, Rule, When, killing_proxy
from tests.servers import MlflowServer, run_mlflow
from tests.soak import MODEL, TRAFFIC, TRAIN, batch_rows, metric, monitor_process, register_versions
from tests.unit.test_decide import _decide, champion, reference  # noqa: F401 - the fixtures are used by name

pytestmark = pytest.mark.integration


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (the tests run as root, as the cluster tests do)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """Fill the file system of ``folder`` up, then free ``leave_bytes`` (whole pages)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    with filler.open("r+b") as out:
        out.truncate(max(filler.stat().st_size - leave_bytes, 0))
    return filler


def test_a_full_disk_refuses_a_ledger_entry_whole_and_the_ledger_takes_entries_again_once_there_is_room(
    tmp_path: Path,
) -> None:
    with _tmpfs(tmp_path / "disk", "256k") as disk:
        ledger = AuditLedger(disk / "audit" / "ledger.jsonl")
        ledger.append(incident="inc-1", kind="investigated", data={"n": 1})
        filler = _fill(disk, leave_bytes=4096)
        with pytest.raises(LedgerError, match=r"No space left.*as it was"):
            ledger.append(incident="inc-1", kind="decided", data={"padding": "x" * 20_000})  # part of it would fit
        check = ledger.verify()
        assert check.ok and check.entries == 1, check
        filler.unlink()
        ledger.append(incident="inc-1", kind="decided", data={"padding": "x" * 20_000})
        assert ledger.verify().ok and [e.kind for e in ledger.entries()] == ["investigated", "decided"]


def test_a_decision_whose_ledger_cannot_be_written_is_not_made(  # type: ignore[no-untyped-def]
    champion: Path,  # noqa: F811
    validated,
    tmp_path: Path,
) -> None:
    """No decision file (what the pipeline's If/Else acts on) without its ledger entries."""
    with _tmpfs(tmp_path / "audit", "64k") as audit:
        _fill(audit, leave_bytes=0)
        with pytest.raises(LedgerError, match="No space left"):
            _decide(champion, validated("20241022140000"), tmp_path, {"verdict": "ok", "summary": "ok"})
        assert not (tmp_path / "decision.json").exists()
        assert AuditLedger(audit / "ledger.jsonl").verify().ok


@pytest.fixture(scope="module")
def tracking_uri(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Versions 1 and 2 of the model, registered in MLflow on SQLite."""
    return register_versions(tmp_path_factory.mktemp("fault-models"), data_dir)


def _settled(url: str, outcome: str, expected: float, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    while (value := metric(url, "driftpilot_log_events_total", outcome=outcome)) < expected:
        assert time.monotonic() < deadline, f"{outcome} events: {value} of {expected}"
        time.sleep(0.5)
    return value


def test_with_the_monitor_down_every_prediction_is_answered_and_the_lost_events_counted_then_sent_once_it_is_back(
    tracking_uri: str, data_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    server = deploy_local(
        model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri, state_dir=tmp_path / "server",
        logger_url=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    try:
        rows = batch_rows(data_dir, TRAFFIC).head(40)
        instances = payloads.instances(rows[list(input_columns(load_task(MODEL)))], load_task(MODEL))
        path = f"{server.url}/v1/models/{MODEL}:predict"
        model = TrainedModel.load(Path(tracking_uri.removeprefix("sqlite:///")).parent / "model-1")
        for instance, expected in zip(instances, model.predict_proba(rows), strict=True):
            response = requests.post(path, json={"instances": [instance]}, timeout=10)
            assert response.status_code == 200, response.text
            assert np.isclose(response.json()["predictions"][0], expected, rtol=0, atol=1e-9)
        assert _settled(server.url, "failed", 2 * len(instances)) == 2 * len(instances)  # request and response
        assert metric(server.url, "driftpilot_log_events_total", outcome="sent") == 0
        with monitor_process(port, tmp_path / "lake", tmp_path / "monitor.log"):
            assert requests.post(path, json={"instances": instances[:5]}, timeout=10).status_code == 200
            assert _settled(server.url, "sent", 2) == 2
    finally:
        stop_local(tmp_path / "server")


def test_a_canary_whose_server_is_killed_mid_step_is_rolled_back_and_stable_keeps_answering(
    tracking_uri: str, data_dir: Path, tmp_path: Path
) -> None:
    serving_dir = tmp_path / "serving"
    served, _ = serve_local(
        model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri, serving_dir=serving_dir
    )
    killed: list[int] = []

    def kill_the_canary() -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            routes = read_routes(serving_dir / "routes.json")
            canary = read_deployment(serving_dir / "v2")
            if routes is not None and routes.canary is not None and canary is not None:
                time.sleep(2)  # mid-step, with requests in flight
                os.kill(canary.pid, signal.SIGKILL)
                killed.append(canary.pid)
                return
            time.sleep(0.2)

    try:
        instances, labels = payloads.labelled_instances(batch_rows(data_dir, TRAFFIC), load_task(MODEL))
        with TrafficReplayer(served.url, MODEL, instances, labels, concurrency=2, label_delay_s=0.5):
            killer = threading.Thread(target=kill_the_canary, daemon=True)
            killer.start()
            _, outcome = serve_local(
                model_name=MODEL, model_uri=f"models:/{MODEL}/2", tracking_uri=tracking_uri,
                serving_dir=serving_dir,
                policy=CanaryPolicy(steps=(20, 50), min_requests=400, interval_s=0.5, step_timeout_s=120),
            )  # fmt: skip
            killer.join(timeout=10)
        assert killed, "the canary was never seen serving"
        assert outcome is not None and not outcome.promoted, outcome
        assert "errors" in outcome.verdict.reason, outcome.verdict.reason
        now = read_serving(serving_dir)
        assert now is not None and now.routes.canary is None and now.routes.stable.version == "1"
        answers = [requests.post(f"{served.url}/v1/models/{MODEL}:predict", json={"instances": instances[:3]},
                                 timeout=10) for _ in range(20)]  # fmt: skip
        assert {a.status_code for a in answers} == {200} and {a.headers["x-model-version"] for a in answers} == {"1"}
    finally:
        stop_serving(serving_dir)


FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.2, max_wait_s=0.5)
RETRY = RetryPolicy(attempts=10, initial_s=0.5, max_wait_s=5)
"""About 35 s of retries: more than a tracking server takes to start again on a busy machine."""


@dataclass
class Registry:
    """A tracking server that the tests kill and start again (same port, same database)."""

    work: Path
    port: int
    servers: ExitStack
    server: MlflowServer | None = None

    def start(self) -> MlflowServer:
        self.server = self.servers.enter_context(
            run_mlflow(self.work, artifacts=str(self.work / "artifacts"), port=self.port)
        )
        return self.server

    def register(
        self, url: str, model_dir: Path, table: Path, alias: str = CHALLENGER, retry: RetryPolicy = RETRY
    ) -> str:
        ref = register_model(
            tracking_uri=url, artifact_root="", experiment=MODEL, model_name=MODEL, model_dir=model_dir,
            training_data=[table], lineage=Lineage(source_batches=TRAIN, kfp_run="faults"), alias=alias,
            retry=retry,
        )  # fmt: skip
        return ref.version

    def versions(self) -> dict[str, ModelVersion]:
        assert self.server is not None
        return {v.version: v for v in MlflowClient(self.server.url).search_model_versions(f"name='{MODEL}'")}


@pytest.fixture(scope="module")
def registry(tracking_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A tracking server whose model has a champion (version 1 of the models above)."""
    models = Path(tracking_uri.removeprefix("sqlite:///")).parent
    with ExitStack() as servers:
        registry = Registry(tmp_path_factory.mktemp("registry"), free_port(), servers)
        server = registry.start()
        registry.register(server.url, models / "model-1", models / "train.parquet", alias=CHAMPION)
        yield registry


def _restart_once_killed(registry: Registry, proxy: KillingProxy) -> threading.Thread:
    def restart() -> None:
        proxy.killed.wait()
        time.sleep(0.5)
        server = registry.start()
        proxy.restart(server.url, server.pid)

    thread = threading.Thread(target=restart, daemon=True)
    thread.start()
    return thread


KILLS = {
    "logging-the-run": ("before", "/api/2.0/mlflow/runs/create"),
    "uploading-the-booster": ("before", "/artifacts/model/booster.txt"),
    "answering-the-version": ("after", "/api/2.0/mlflow/model-versions/create"),
    "setting-the-alias": ("before", "/api/2.0/mlflow/registered-models/alias"),
}


def _at(when: When, where: str) -> Rule:
    return lambda method, path: when if method != "GET" and path.split("?")[0].endswith(where) else None


@pytest.mark.parametrize(("when", "where"), KILLS.values(), ids=list(KILLS))
def test_mlflow_killed_mid_registration_and_back_leaves_exactly_one_whole_version_and_the_champion_in_place(
    registry: Registry, tracking_uri: str, data_dir: Path, when: When, where: str, tmp_path: Path
) -> None:
    assert registry.server is not None
    models = Path(tracking_uri.removeprefix("sqlite:///")).parent
    before = registry.versions()
    serving = find_alias(tracking_uri=registry.server.url, model_name=MODEL)
    with killing_proxy(registry.server.url, registry.server.pid, _at(when, where)) as proxy:
        restarted = _restart_once_killed(registry, proxy)
        version = registry.register(proxy.url, models / "model-2", models / "train.parquet")
        restarted.join(timeout=5)
    assert proxy.killed_at.split("?")[0].endswith(where), proxy.killed_at  # the server died where intended
    after = registry.versions()
    assert sorted(after) == sorted([*before, version])  # one new version, none twice
    url = registry.server.url
    assert find_alias(tracking_uri=url, model_name=MODEL) == serving
    challenger = find_alias(tracking_uri=url, model_name=MODEL, alias=CHALLENGER)
    assert challenger is not None and challenger.version == version
    tags = after[version].tags
    assert PENDING_TAG not in tags and tags["driftpilot.source_batches"] == ",".join(TRAIN)
    served = load_model(tracking_uri=url, model_uri=f"models:/{MODEL}/{version}", dest=tmp_path / "served")
    rows = batch_rows(data_dir, TRAFFIC).head(50)
    assert np.array_equal(served.predict_proba(rows), TrainedModel.load(models / "model-2").predict_proba(rows))


def test_mlflow_killed_for_good_after_making_a_version_fails_the_registration_and_the_next_one_deletes_that_version(
    registry: Registry, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert registry.server is not None
    models = Path(tracking_uri.removeprefix("sqlite:///")).parent
    before = registry.versions()
    serving = find_alias(tracking_uri=registry.server.url, model_name=MODEL)
    with (
        killing_proxy(
            registry.server.url, registry.server.pid, _at("after", KILLS["answering-the-version"][1])
        ) as proxy,
        pytest.raises(ModelRegistryError, match=r"could not register a version of 'gdelt-tone' .* after 3 attempts"),
    ):
        registry.register(proxy.url, models / "model-2", models / "train.parquet", retry=FAST_RETRY)
    url = registry.start().url
    left = {v: found for v, found in registry.versions().items() if v not in before}
    assert [found.tags.get(PENDING_TAG) for found in left.values()] == ["pending"]  # made, never finished
    assert [found.aliases for found in left.values()] == [[]]
    assert find_alias(tracking_uri=url, model_name=MODEL) == serving
    monkeypatch.setattr(register_core, "_ABANDONED_AFTER_S", 0.0)
    version = registry.register(url, models / "model-2", models / "train.parquet")
    assert sorted(registry.versions()) == sorted([*before, version])  # the abandoned version is gone
