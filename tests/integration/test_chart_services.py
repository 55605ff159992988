"""The chart's MLflow tracking server, run as the chart runs it, on a real PostgreSQL and a real MinIO.

The command, arguments and environment come from the rendered Deployment; only the service
addresses are swapped for local ones. The databases come from the chart's own init script, the
bucket from its bucket Job's code. A client then logs and registers a model (metadata lands in
PostgreSQL, the artifacts in MinIO through the server's artifact proxy) and an Optuna study
uses the chart's Optuna storage URL.
"""

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from components.common.store import Store
from tests.servers import (
    MinioServer,
    PostgresServer,
    _process,
    _wait_ok,
    free_port,
    helm,
    postgres_bin_dir,
    run_postgres,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _rendered(template: str) -> dict[str, Any]:
    text = helm("template", "driftpilot", str(REPO / "charts" / "driftpilot"), "--show-only", f"templates/{template}")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    statefulset = _rendered("statefulset-postgresql.yaml")
    env = {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    with run_postgres(tmp_path_factory.mktemp("postgres"), database=env["POSTGRES_DB"]) as server:
        assert env["POSTGRES_USER"] == server.user
        init = _rendered("configmap-postgresql-init.yaml")["data"]
        psql = [str(postgres_bin_dir() / "psql"), server.url(), "-v", "ON_ERROR_STOP=1"]
        for name, sql in sorted(init.items()):
            done = subprocess.run([*psql, "-c", sql], env={**os.environ, "PGPASSWORD": server.password})
            assert done.returncode == 0, f"the chart's init script {name} failed"
        yield server


def _local_args(args: list[str], postgres: PostgresServer, port: int, work: Path) -> list[str]:
    replaced = []
    for arg in args:
        arg = re.sub(r"postgresql://([^@]+)@[^/]+/", rf"postgresql://\1@{postgres.host}:{postgres.port}/", arg)
        arg = re.sub(r"^--host=.*", "--host=127.0.0.1", arg)
        arg = re.sub(r"^--port=.*", f"--port={port}", arg)
        arg = re.sub(r"^--expose-prometheus=.*", f"--expose-prometheus={work / 'prometheus'}", arg)
        replaced.append(arg)
    return replaced


@pytest.fixture(scope="module")
def mlflow_server(
    postgres: PostgresServer, minio_server: MinioServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    deployment = _rendered("deployment-mlflow.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    secrets = {
        "PGPASSWORD": postgres.password,
        "AWS_ACCESS_KEY_ID": minio_server.access_key,
        "AWS_SECRET_ACCESS_KEY": minio_server.secret_key,
    }
    env = dict(os.environ)
    for variable in container["env"]:
        if "valueFrom" in variable:
            env[variable["name"]] = secrets[variable["name"]]  # every secretKeyRef is one the test can fill
        elif variable["value"].startswith("http://"):
            env[variable["name"]] = minio_server.endpoint  # the S3 endpoint
        else:
            env[variable["name"]] = variable["value"]
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    bucket = re.search(r"--artifacts-destination=s3://([^/]+)", " ".join(container["args"]))
    assert bucket is not None
    Store(f"s3://{bucket.group(1)}", minio_server.s3_options()).ensure()  # what the chart's bucket Job runs
    work, port = tmp_path_factory.mktemp("mlflow"), free_port()
    (work / "prometheus").mkdir()
    command = [str(REPO / ".venv" / "bin" / container["command"][0]), *container["command"][1:]]
    command += _local_args(container["args"], postgres, port, work)
    log = work / "mlflow.log"
    with _process(command, log, env) as process:
        url = f"http://127.0.0.1:{port}"
        probe = container["readinessProbe"]["httpGet"]
        headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
        _wait_ok(
            "mlflow", process, log, time.monotonic() + 120, lambda: requests.get(url + probe["path"], headers=headers)
        )
        yield url


def test_the_charts_mlflow_server_keeps_runs_in_postgresql_and_artifacts_in_minio(
    mlflow_server: str, postgres: PostgresServer, minio_server: MinioServer, tmp_path: Path
) -> None:
    import mlflow
    import psycopg
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(mlflow_server)
    mlflow.set_experiment("chart-check")
    (tmp_path / "report.json").write_text('{"auc": 0.75}')
    with mlflow.start_run() as run:
        mlflow.log_param("window_batches", 96)
        mlflow.log_metric("auc", 0.75)
        mlflow.log_artifact(str(tmp_path / "report.json"))
    client = MlflowClient(mlflow_server)
    client.create_registered_model("chart-check")
    version = client.create_model_version("chart-check", f"runs:/{run.info.run_id}/report.json", run.info.run_id)
    client.set_registered_model_alias("chart-check", "champion", version.version)

    assert client.get_run(run.info.run_id).data.metrics["auc"] == 0.75
    assert client.get_model_version_by_alias("chart-check", "champion").version == version.version
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="report.json")
    assert Path(downloaded).read_text() == '{"auc": 0.75}'
    with psycopg.connect(postgres.url(), password=postgres.password) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cursor.fetchone() == ("FINISHED",)
    deployment = _rendered("deployment-mlflow.yaml")
    destination = next(
        a for a in deployment["spec"]["template"]["spec"]["containers"][0]["args"] if "artifacts-destination" in a
    )
    bucket_and_prefix = destination.split("s3://", 1)[1]
    keys = Store(f"s3://{bucket_and_prefix}", minio_server.s3_options()).keys("")
    assert any(key.endswith(f"{run.info.run_id}/artifacts/report.json") for key in keys), keys[:5]


def test_optuna_studies_live_in_the_charts_optuna_database(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    config_map = _rendered("configmap-pipeline-env.yaml")
    storage_url = config_map["data"]["DRIFTPILOT_OPTUNA_STORAGE"]
    local = re.sub(r"@[^/]+/", f"@{postgres.host}:{postgres.port}/", storage_url)
    assert "password" not in local and ":" not in local.split("@")[0].removeprefix("postgresql://")
    monkeypatch.setenv("PGPASSWORD", postgres.password)  # as the pipeline pods get it, from the Secret
    study = optuna.create_study(study_name="chart-check", storage=local, direction="maximize")
    study.optimize(lambda trial: -((trial.suggest_float("x", -1, 1) - 0.2) ** 2), n_trials=5)
    reloaded = optuna.load_study(study_name="chart-check", storage=local)
    assert len(reloaded.trials) == 5 and reloaded.best_value <= 0
