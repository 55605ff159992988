"""The container images, run the way the cluster runs them.

./scripts/build-images.sh builds both images (./scripts/test.sh runs it and sets DRIFTPILOT_IMAGES)
on a Docker engine that ./scripts/ensure-docker.sh starts. A KFP step runs inside the components
image from its compiled container spec and a real executor input, as KFP's launcher starts it; a
model trained here and registered through an MLflow tracking server is served by the serving image
and answers V1 and V2 requests. Both containers run as the image's user (uid 10001) on a read-only
root filesystem with a writable /tmp: the chart runs its services on the components image and the
InferenceService runs the serving image that way.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from components.common.images import COMPONENTS_IMAGE, SERVING_IMAGE
from components.common.lake import quarantine_prefix, validated_key
from components.common.storage import read_table, write_table
from components.common.store import Store
from components.common.task import TaskSpec, load_task
from components.features.core import input_columns
from components.ingest.core import ingest_to_table, open_source, read_export
from components.register.core import CHAMPION, Lineage, register_model
from components.serve import payloads
from components.train.core import TrainConfig, train_files
from components.train.model import TrainedModel
from components.validate.core import validate_events
from pipelines.cli import compile_pipelines
from tests.servers import _process, _wait_ok, free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.environ.get("DRIFTPILOT_IMAGES"),
        reason="DRIFTPILOT_IMAGES is unset: ./scripts/test.sh builds the images with ./scripts/build-images.sh "
        "and sets it (set it yourself after building them)",
    ),
]

IMAGE_UID = 10001
BATCH = "20241022130000"
MODEL_NAME = "gdelt-tone"
PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"
# Where KFP's launcher asks a step to write its executor output.
OUTPUT_METADATA = "/tmp/kfp_outputs/output_metadata.json"
TIMEOUT = 10


@pytest.fixture(scope="module")
def docker() -> str:
    """The docker client, talking to an engine that holds both images (fails, never skips, otherwise)."""
    client = shutil.which("docker")
    assert client, "docker not found: run ./scripts/ensure-docker.sh"
    for image in (COMPONENTS_IMAGE, SERVING_IMAGE):
        found = subprocess.run([client, "image", "inspect", image], capture_output=True, text=True)
        assert found.returncode == 0, f"{image} is not built: run ./scripts/build-images.sh\n{found.stderr}"
    return client


def _give_to_image_user(path: Path) -> None:
    """Let the image's user write a folder that is mounted into a container."""
    for folder, _, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, f) for f in files)]:
            if os.geteuid() == 0:
                os.chown(name, IMAGE_UID, IMAGE_UID)
            else:
                os.chmod(name, 0o777)


def _run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


# --- (a) a KFP step in the components image ------------------------------------------------------


def _executor_input(
    component: dict[str, Any], parameters: dict[str, Any], artifacts: dict[str, str], run: str
) -> dict[str, Any]:
    """The executor input KFP's driver hands a step: parameter values, artifact URIs, output locations."""
    inputs = component["inputDefinitions"]
    outputs = component["outputDefinitions"]
    assert set(inputs["parameters"]) == set(parameters)
    assert set(inputs["artifacts"]) == set(artifacts)
    task = component["executorLabel"].removeprefix("exec-")
    return {
        "inputs": {
            "parameterValues": parameters,
            "artifacts": {
                name: {
                    "artifacts": [
                        {"name": name, "type": inputs["artifacts"][name]["artifactType"], "uri": uri, "metadata": {}}
                    ]
                }
                for name, uri in artifacts.items()
            },
        },
        "outputs": {
            "parameters": {name: {"outputFile": f"/tmp/kfp/outputs/{name}"} for name in outputs["parameters"]},
            "artifacts": {
                name: {
                    "artifacts": [
                        {"name": name, "type": spec["artifactType"], "uri": f"{PIPELINE_ROOT}/{run}/{task}/{name}"}
                    ]
                }
                for name, spec in outputs["artifacts"].items()
            },
            "outputFile": OUTPUT_METADATA,
        },
    }


def _local(uri: str, minio_dir: Path) -> Path:
    """Where an artifact's URI is on the host: KFP maps ``minio://`` to ``/minio/``, mounted from ``minio_dir``."""
    return minio_dir / uri.removeprefix("minio://")


def test_validate_step_runs_in_the_components_image_from_its_compiled_spec(
    docker: str, gdelt_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("kfp-step")
    compile_pipelines(work / "compiled")
    spec = yaml.safe_load((work / "compiled" / "drift_response_pipeline.yaml").read_text())
    executor = spec["deploymentSpec"]["executors"]["exec-validate-gdelt"]["container"]
    assert executor["image"] == COMPONENTS_IMAGE
    component = spec["components"]["comp-validate-gdelt"]

    # What the upstream ingest step hands on: the batch's typed rows, ingested here into a real lake.
    run = f"run-{secrets.token_hex(4)}"
    minio_dir, lake_dir, outputs_dir = work / "minio", work / "lake", work / "kfp_outputs"
    raw_uri = f"{PIPELINE_ROOT}/{run}/ingest-gdelt/raw"
    batches, rows = ingest_to_table(
        open_source(str(gdelt_dir)),
        Store(str(lake_dir)),
        since=BATCH,
        until=BATCH,
        workers=0,
        table_path=_local(raw_uri, minio_dir),
        summary_path=work / "ingest-summary.json",
    )
    assert batches == [BATCH] and rows > 1000
    expected = validate_events(read_table(_local(raw_uri, minio_dir)))
    outputs_dir.mkdir()
    for folder in (minio_dir, lake_dir, outputs_dir):
        _give_to_image_user(folder)

    executor_input = _executor_input(component, {"batch_id": BATCH, "lake_dir": "/lake"}, {"raw": raw_uri}, run)
    args = [json.dumps(executor_input) if arg == "{{$}}" else arg for arg in executor["args"]]
    command = [docker, "run", "--rm", "--network=none", "--read-only", "--tmpfs", "/tmp"]
    command += ["-v", f"{minio_dir}:/minio", "-v", f"{lake_dir}:/lake", "-v", f"{outputs_dir}:/tmp/kfp_outputs"]
    command += ["--entrypoint", executor["command"][0], executor["image"], *executor["command"][1:], *args]
    started = time.monotonic()
    result = _run(command)
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"the step failed ({seconds:.0f} s):\n{result.stdout}\n{result.stderr}"

    output = json.loads((outputs_dir / "output_metadata.json").read_text())
    assert output["parameterValues"] == {
        "rows_valid": len(expected.valid),
        "rows_quarantined": len(expected.quarantined),
    }
    assert len(expected.valid) + len(expected.quarantined) == rows
    [valid_artifact] = output["artifacts"]["valid"]["artifacts"]
    valid_uri = executor_input["outputs"]["artifacts"]["valid"]["artifacts"][0]["uri"]
    assert valid_artifact["uri"] == valid_uri
    assert valid_artifact["metadata"] == {
        "rows_valid": len(expected.valid),
        "rows_quarantined": len(expected.quarantined),
    }
    # The same rows, types and values as the validate stage writes on the host.
    on_host = write_table(expected.valid, work / "valid-on-host.parquet")
    pd.testing.assert_frame_equal(read_table(_local(valid_uri, minio_dir)), read_table(on_host))
    kept = read_table(lake_dir / validated_key(BATCH))
    assert sorted(kept["GLOBALEVENTID"]) == sorted(expected.valid["GLOBALEVENTID"])
    summary = json.loads((lake_dir / quarantine_prefix(BATCH) / "validate-summary.json").read_text())
    assert summary["rows_in"] == rows and summary["reasons"] == expected.summary["reasons"]
    # Written by the image's user, not root.
    assert _local(valid_uri, minio_dir).stat().st_uid == IMAGE_UID
    assert (outputs_dir / "output_metadata.json").stat().st_uid == IMAGE_UID


# --- (b) a prediction through the serving image ----------------------------------------------


@dataclass(frozen=True)
class Registry:
    tracking_uri: str
    task: TaskSpec
    rows: pd.DataFrame
    model: TrainedModel


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow tracking server on 127.0.0.1 that serves its artifacts, as the chart runs it."""
    folder = tmp_path_factory.mktemp("mlflow")
    url = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1"]
    command += ["--port", url.rsplit(":", 1)[1], "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    command += ["--serve-artifacts", "--artifacts-destination", str(folder / "artifacts")]
    log = folder / "mlflow.log"
    with _process(command, log) as server:
        _wait_ok("mlflow", server, log, time.monotonic() + 60, partial(requests.get, f"{url}/health", timeout=1))
        yield url


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:  # not listening yet, or not answering yet
        return False


@pytest.fixture(scope="module")
def registry(gdelt_dir: Path, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A model trained here on one real export and registered as champion through the tracking server."""
    folder = tmp_path_factory.mktemp("model")
    table = _validated_export(gdelt_dir / f"{BATCH}.export.CSV", folder / "valid.parquet")
    model_dir = folder / "model"
    train_files([table], MODEL_NAME, model_dir, TrainConfig(num_threads=1))
    register_model(
        tracking_uri=mlflow_server,
        artifact_root="",
        experiment="images-test",
        model_name=MODEL_NAME,
        model_dir=model_dir,
        training_data=[table],
        lineage=Lineage(source_batches=(BATCH,), kfp_run="images-test"),
        alias=CHAMPION,
    )
    task = load_task(MODEL_NAME)
    rows = read_table(table).sample(n=100, random_state=1)[list(input_columns(task))].reset_index(drop=True)
    return Registry(mlflow_server, task, rows, TrainedModel.load(model_dir))


def _validated_export(export: Path, out: Path) -> Path:
    table = read_export(export).table
    assert table is not None
    return write_table(validate_events(table.to_pandas()).valid, out)


@dataclass(frozen=True)
class Served:
    container: str
    url: str


@pytest.fixture(scope="module")
def served(docker: str, registry: Registry) -> Iterator[Served]:
    """The serving image on the host network serving the champion from the tracking server; removed at teardown.

    Nothing is mounted: the server downloads the model from the tracking server into /tmp.
    """
    name = f"driftpilot-serving-test-{secrets.token_hex(4)}"
    port = free_port()
    command = [docker, "run", "--detach", "--name", name, "--network=host", "--read-only", "--tmpfs", "/tmp"]
    command += [SERVING_IMAGE]
    command += ["--model_name", MODEL_NAME, "--model_uri", f"models:/{MODEL_NAME}@{CHAMPION}"]
    command += ["--tracking_uri", registry.tracking_uri, "--http_port", str(port), "--grpc_port", str(free_port())]
    started = _run(command)
    assert started.returncode == 0, started.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(docker, name, f"{url}/v2/models/{MODEL_NAME}/ready", deadline=time.monotonic() + 120)
        yield Served(name, url)
    finally:
        _run([docker, "rm", "--force", name], timeout=60)


def _wait_ready(docker: str, container: str, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _answers(url):
            return
        state = _run([docker, "inspect", "--format", "{{.State.Running}}", container]).stdout.strip()
        if state != "true":
            logs = _run([docker, "logs", "--tail", "40", container])
            raise AssertionError(f"the serving container stopped:\n{logs.stdout}\n{logs.stderr}")
        time.sleep(0.5)
    logs = _run([docker, "logs", "--tail", "40", container])
    raise AssertionError(f"the serving container was not ready in time:\n{logs.stdout}\n{logs.stderr}")


def test_serving_image_answers_v1_and_v2_with_the_registered_model(registry: Registry, served: Served) -> None:
    instances = payloads.instances(registry.rows, registry.task)
    expected = registry.model.predict_proba(registry.rows)

    v1 = requests.post(f"{served.url}/v1/models/{MODEL_NAME}:predict", json={"instances": instances}, timeout=TIMEOUT)
    inputs = payloads.v2_inputs(instances, registry.task)
    v2 = requests.post(
        f"{served.url}/v2/models/{MODEL_NAME}/infer", json={"id": "images-1", "inputs": inputs}, timeout=TIMEOUT
    )

    assert v1.status_code == 200, v1.text
    predictions = np.asarray(v1.json()["predictions"], dtype="float64")
    assert predictions.shape == (len(instances),)
    assert ((predictions > 0) & (predictions < 1)).all()
    assert predictions.std() > 0.01  # rows are told apart, not given one constant
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-9)
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert (body["id"], body["model_version"]) == ("images-1", "1")
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probability", "FP64", [len(instances)])
    np.testing.assert_allclose(output["data"], predictions, rtol=0, atol=1e-12)


def test_serving_container_runs_as_the_image_user_on_a_read_only_root(docker: str, served: Served) -> None:
    uid = _run([docker, "exec", served.container, "id", "-u"])
    root_write = _run([docker, "exec", served.container, "touch", "/opt/venv/written"])
    tmp_write = _run([docker, "exec", served.container, "touch", "/tmp/written"])
    server_uid = _run([docker, "exec", served.container, "sh", "-c", "stat -c %u /proc/1"])

    assert uid.stdout.strip() == str(IMAGE_UID)
    assert server_uid.stdout.strip() == str(IMAGE_UID)  # the server process itself, not only exec'd commands
    assert root_write.returncode != 0 and "Read-only file system" in root_write.stderr
    assert tmp_write.returncode == 0, tmp_write.stderr
