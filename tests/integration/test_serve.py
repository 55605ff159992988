"""The KServe model server and its local deployment, with a real model trained on real GDELT rows."""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from components.common.errors import ModelRegistryError
from components.common.storage import write_table
from components.common.task import TaskSpec, load_task
from components.deploy.core import LocalDeployment, deploy_local, read_deployment, stop_local
from components.features.core import input_columns
from components.ingest.core import read_export
from components.register.core import CHAMPION, Lineage, promote, record_gate, register_model
from components.serve import payloads
from components.train.core import TrainConfig, train_files
from components.train.model import TrainedModel
from components.validate.core import validate_events

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
EXPORT = "gdelt/20241022130000.export.CSV"
MODEL_NAME = "gdelt-tone"
TIMEOUT = 10


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    artifact_root: str
    work: Path
    task: TaskSpec
    table: Path
    rows: pd.DataFrame
    model: TrainedModel


def _data_dir() -> Path:
    return Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))


def _train_and_register(registry_dir: Path, table: Path, name: str, config: TrainConfig, alias: str) -> Path:
    model_dir = registry_dir / name
    train_files([table], "gdelt-tone", model_dir, config)
    register_model(
        tracking_uri=f"sqlite:///{registry_dir / 'mlflow.db'}",
        artifact_root=str(registry_dir / "artifacts"),
        experiment="serve-test",
        model_name=MODEL_NAME,
        model_dir=model_dir,
        training_data=[table],
        lineage=Lineage(source_batches=(Path(EXPORT).name.split(".")[0],), kfp_run=f"serve-test-{name}"),
        alias=alias,
    )
    return model_dir


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Version 1 of a model trained on one real export, registered as champion in SQLite MLflow."""
    work = tmp_path_factory.mktemp("serve")
    export = _data_dir() / EXPORT
    assert export.exists(), f"{export} is missing: set DRIFTPILOT_DATA_DIR to the shared data folder"
    table = read_export(export).table
    assert table is not None
    valid = validate_events(table.to_pandas()).valid
    table = write_table(valid, work / "valid.parquet")
    model_dir = _train_and_register(work, table, "v1", TrainConfig(num_threads=1), CHAMPION)
    task = load_task("gdelt-tone")
    rows = valid.sample(n=200, random_state=0)[list(input_columns(task))].reset_index(drop=True)
    return Registry(
        tracking_uri=f"sqlite:///{work / 'mlflow.db'}",
        artifact_root=str(work / "artifacts"),
        work=work,
        task=task,
        table=table,
        rows=rows,
        model=TrainedModel.load(model_dir),
    )


@pytest.fixture(scope="module")
def served(registry: Registry) -> Any:
    """The champion (version 1) behind a local model server, stopped at teardown."""
    state_dir = registry.work / "serving"
    deployment = deploy_local(
        model_name=MODEL_NAME,
        model_uri=f"models:/{MODEL_NAME}@champion",
        tracking_uri=registry.tracking_uri,
        state_dir=state_dir,
    )
    yield deployment
    stop_local(state_dir)


def _v1(deployment: LocalDeployment, body: Any) -> requests.Response:
    url = f"{deployment.url}/v1/models/{deployment.model_name}:predict"
    return requests.post(url, json=body, timeout=TIMEOUT)


def _v2(deployment: LocalDeployment, body: Any) -> requests.Response:
    url = f"{deployment.url}/v2/models/{deployment.model_name}/infer"
    return requests.post(url, json=body, timeout=TIMEOUT)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_v1_predictions_equal_the_trained_model(registry: Registry, served: LocalDeployment) -> None:
    instances = payloads.instances(registry.rows, registry.task)
    assert any(value is None for instance in instances for value in instance.values())

    response = _v1(served, {"instances": instances})

    assert response.status_code == 200, response.text
    predictions = np.asarray(response.json()["predictions"], dtype="float64")
    assert predictions.shape == (len(instances),)
    assert ((predictions >= 0) & (predictions <= 1)).all()
    expected = registry.model.predict_proba(registry.rows)
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-9)
    assert predictions.std() > 0  # the rows are told apart, not scored with one constant


def test_v2_predictions_equal_v1(registry: Registry, served: LocalDeployment) -> None:
    instances = payloads.instances(registry.rows, registry.task)

    response = _v2(served, {"id": "r-1", "inputs": payloads.v2_inputs(instances, registry.task)})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "r-1"
    assert body["model_version"] == served.model_version == "1"
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probability", "FP64", [200])
    v1 = _v1(served, {"instances": instances}).json()["predictions"]
    np.testing.assert_allclose(output["data"], v1, rtol=0, atol=1e-9)


def test_missing_column_is_a_400_naming_it(registry: Registry, served: LocalDeployment) -> None:
    instances = payloads.instances(registry.rows.head(3), registry.task)
    without = [{k: v for k, v in instance.items() if k != "GoldsteinScale"} for instance in instances]
    inputs = [i for i in payloads.v2_inputs(instances, registry.task) if i["name"] != "GoldsteinScale"]

    v1 = _v1(served, {"instances": without})
    v2 = _v2(served, {"inputs": inputs})

    for response in (v1, v2):
        assert response.status_code == 400, response.text
        assert "GoldsteinScale" in response.json()["error"]
        assert "lacks" in response.json()["error"]


def test_unknown_column_is_a_400_naming_it(registry: Registry, served: LocalDeployment) -> None:
    instances = [dict(i, AvgTone=-7.5) for i in payloads.instances(registry.rows.head(2), registry.task)]

    response = _v1(served, {"instances": instances})

    assert response.status_code == 400, response.text
    assert "AvgTone" in response.json()["error"]


@pytest.mark.parametrize(
    ("column", "value"),
    [("NumMentions", "many"), ("NumMentions", True), ("EventCode", 42), ("QuadClass", 1.0)],
)
def test_wrong_type_is_a_400(registry: Registry, served: LocalDeployment, column: str, value: Any) -> None:
    instances = [dict(i, **{column: value}) for i in payloads.instances(registry.rows.head(3), registry.task)]

    response = _v1(served, {"instances": instances})

    assert response.status_code == 400, response.text
    assert column in response.json()["error"]


def test_wrong_v2_datatype_is_a_400(registry: Registry, served: LocalDeployment) -> None:
    instances = payloads.instances(registry.rows.head(3), registry.task)
    inputs = payloads.v2_inputs(instances, registry.task)
    for tensor in inputs:
        if tensor["name"] == "EventCode":
            tensor.update(datatype="FP64", data=[1.0, 2.0, 3.0])

    response = _v2(served, {"inputs": inputs})

    assert response.status_code == 400, response.text
    assert "EventCode" in response.json()["error"]
    assert "BYTES" in response.json()["error"]


def test_empty_request_is_a_400(registry: Registry, served: LocalDeployment) -> None:
    empty_v2 = [dict(tensor, shape=[0], data=[]) for tensor in payloads.v2_inputs([], registry.task)]

    for response in (_v1(served, {"instances": []}), _v2(served, {"inputs": empty_v2})):
        assert response.status_code == 400, response.text
        assert "empty" in response.json()["error"] or "no rows" in response.json()["error"]


def test_health_metadata_and_metrics_routes(registry: Registry, served: LocalDeployment) -> None:
    base = served.url
    assert requests.get(f"{base}/v2/health/live", timeout=TIMEOUT).json() == {"live": True}
    assert requests.get(f"{base}/v2/health/ready", timeout=TIMEOUT).json() == {"ready": True}
    assert requests.get(f"{base}/v1/models/{MODEL_NAME}", timeout=TIMEOUT).json()["ready"] is True
    metadata = requests.get(f"{base}/v2/models/{MODEL_NAME}", timeout=TIMEOUT).json()
    assert metadata["versions"] == ["1"] and {i["name"] for i in metadata["inputs"]} == set(registry.rows.columns)
    assert requests.get(f"{base}/v2/models/other/ready", timeout=TIMEOUT).status_code == 404
    assert requests.post(f"{base}/v1/models/other:predict", json={"instances": []}, timeout=TIMEOUT).status_code == 404
    not_json = requests.post(
        f"{base}/v1/models/{MODEL_NAME}:predict", data=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    _v1(served, {"instances": payloads.instances(registry.rows.head(3), registry.task)}).raise_for_status()
    metrics = requests.get(f"{base}/metrics", timeout=TIMEOUT).text
    assert 'driftpilot_requests_total{route="v1",status="400"}' in metrics
    assert 'driftpilot_requests_total{route="v1",status="200"}' in metrics
    assert "driftpilot_request_seconds_bucket" in metrics and "driftpilot_rows_scored_total" in metrics


def test_the_servers_metrics_give_the_canary_analysis_its_stats(registry: Registry, served: LocalDeployment) -> None:
    from components.deploy.metrics import merge_stats, stats_from_metrics

    def stats() -> Any:
        return stats_from_metrics(requests.get(f"{served.url}/metrics", timeout=TIMEOUT).text, "1")

    before = stats()
    instances = payloads.instances(registry.rows.head(5), registry.task)
    returned = [_v1(served, {"instances": [instance]}).json()["predictions"][0] for instance in instances]
    for _ in range(2):
        assert _v1(served, {"instances": [{"EventCode": 1}]}).status_code == 400
    since = stats().minus(before)
    assert (since.requests, since.errors, since.latency.n, since.scores.n) == (7, 2, 5, 5)
    assert since.scores.total == pytest.approx(sum(returned))
    assert since.scores.squares == pytest.approx(sum(p * p for p in returned))
    assert -10 < since.latency.mean < 0  # log seconds of answers under a second
    assert merge_stats("1", [since, since]).scores.n == 10


def test_requests_and_responses_reach_the_drift_monitor_as_kserves_logger_sends_them(
    registry: Registry, tmp_path: Path
) -> None:
    from components.common.store import Store
    from components.monitor.core import InferenceLogMonitor
    from components.monitor.server import MonitorServer

    store = Store(str(tmp_path / "lake"))
    monitor = InferenceLogMonitor(store)
    server = MonitorServer(monitor, host="127.0.0.1", port=0, tick_seconds=0.1).start()
    state_dir = registry.work / "serving-logged"
    try:
        deployment = deploy_local(
            model_name=MODEL_NAME,
            model_uri=f"models:/{MODEL_NAME}/1",
            tracking_uri=registry.tracking_uri,
            state_dir=state_dir,
            logger_url=server.url,
        )
        instances = payloads.instances(registry.rows.head(4), registry.task)
        answer = requests.post(
            f"{deployment.url}/v1/models/{MODEL_NAME}:predict",
            json={"instances": instances},
            headers={"x-request-id": "req-1"},
            timeout=TIMEOUT,
        )
        answer.raise_for_status()
        stop_local(state_dir)  # a stopped server has sent what it queued
    finally:
        server.stop()
    keys = [k for k in store.keys("inference-log") if k.endswith(".parquet")]
    rows = pd.concat([store.get_table(key).to_pandas() for key in keys])
    assert len(rows) == 4 and set(rows["event_id"]) == {"req-1"} and rows["paired"].all()
    assert [json.loads(p) for p in rows["prediction"]] == answer.json()["predictions"]
    assert set(rows["inference_service"]) == {MODEL_NAME} and set(rows["endpoint"]) == {"v1"}


def test_unknown_alias_is_refused_before_any_server_starts(registry: Registry) -> None:
    state_dir = registry.work / "serving-unknown"

    with pytest.raises(ModelRegistryError, match="nope"):
        deploy_local(
            model_name=MODEL_NAME,
            model_uri=f"models:/{MODEL_NAME}@nope",
            tracking_uri=registry.tracking_uri,
            state_dir=state_dir,
        )

    assert read_deployment(state_dir) is None


def test_redeploy_follows_the_champion_and_stop_ends_the_server(registry: Registry) -> None:
    state_dir = registry.work / "serving-lifecycle"
    champion = f"models:/{MODEL_NAME}@champion"
    try:
        first = deploy_local(
            model_name=MODEL_NAME, model_uri=champion, tracking_uri=registry.tracking_uri, state_dir=state_dir
        )
        again = deploy_local(
            model_name=MODEL_NAME, model_uri=champion, tracking_uri=registry.tracking_uri, state_dir=state_dir
        )
        assert again == first
        assert read_deployment(state_dir) == first

        v2_dir = _train_and_register(
            registry.work,
            registry.table,
            "v2",
            TrainConfig(params={"num_leaves": 7, "learning_rate": 0.2, "min_child_samples": 5}, seed=7, num_threads=1),
            alias="challenger",
        )
        # The serving test stands in for the gate: its verdict is what lets the alias move.
        verdict = {"promote": True, "reason": "promoted by the serving test"}
        record_gate(tracking_uri=registry.tracking_uri, model_name=MODEL_NAME, version="2", verdict=verdict)
        promote(tracking_uri=registry.tracking_uri, model_name=MODEL_NAME, version="2")
        second = deploy_local(
            model_name=MODEL_NAME, model_uri=champion, tracking_uri=registry.tracking_uri, state_dir=state_dir
        )

        assert second.model_version == "2"
        assert second.model_uri == f"models:/{MODEL_NAME}/2"
        assert second.pid != first.pid
        assert not _pid_running(first.pid)
        assert second.log_path.name == "server-2.log"
        instances = payloads.instances(registry.rows, registry.task)
        body = _v2(second, {"inputs": payloads.v2_inputs(instances, registry.task)}).json()
        assert body["model_version"] == "2"
        served = np.asarray(body["outputs"][0]["data"])
        np.testing.assert_allclose(served, TrainedModel.load(v2_dir).predict_proba(registry.rows), rtol=0, atol=1e-9)
        assert not np.allclose(served, registry.model.predict_proba(registry.rows))

        assert stop_local(state_dir) is True
        assert not _pid_running(second.pid)
        assert read_deployment(state_dir) is None
        assert stop_local(state_dir) is False
    finally:
        stop_local(state_dir)
        promote(tracking_uri=registry.tracking_uri, model_name=MODEL_NAME, version="1")
