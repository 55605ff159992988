"""Deploying to a KFP API: uploads, versions, the experiment and the recurring drift-response run.

A real KFP API server cannot run here, so ``RecordingClient`` stands in for ``kfp.Client``: it
keeps the server's state with kfp_server_api's own models and binds every call to the real
``kfp.Client`` method's signature, so a call the real client would refuse fails the test.
"""

import hashlib
import inspect
import json
from itertools import count
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api as api
import pytest
from kfp.client import Client as RealClient

from components.common.errors import ConfigError
from pipelines.cli import compile_pipelines, main
from pipelines.kfp_deploy import DEFAULT_SCHEDULE, deploy, normalize_cron, parse_params

REQUIRED = {
    "source": "http://data.gdeltproject.org/gdeltv2/",
    "lake_dir": "s3://lake/gdelt",
    "tracking_uri": "http://driftpilot-mlflow:5000",
    "artifact_root": "",
    "serving_dir": "/tmp/serving",
    "study_storage": "postgresql://driftpilot@driftpilot-postgresql:5432/optuna",
}


class RecordingClient:
    """The KFP API's state behind ``kfp.Client``'s methods; records each call's bound arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pipelines: dict[str, api.V2beta1Pipeline] = {}
        self.versions: dict[str, list[api.V2beta1PipelineVersion]] = {}
        self.experiments: dict[str, api.V2beta1Experiment] = {}
        self.recurring: dict[str, api.V2beta1RecurringRun] = {}
        self._ids = count(1)

    def _record(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        caller = inspect.currentframe()
        assert caller is not None and caller.f_back is not None
        name = caller.f_back.f_code.co_name
        bound = inspect.signature(getattr(RealClient, name)).bind(self, *args, **kwargs)
        arguments = {k: v for k, v in bound.arguments.items() if k != "self"}
        self.calls.append((name, arguments))
        return arguments

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def get_pipeline_id(self, *args: Any, **kwargs: Any) -> str | None:
        a = self._record(*args, **kwargs)
        found = [p.pipeline_id for p in self.pipelines.values() if p.display_name == a["name"]]
        return found[0] if found else None

    def _add_version(self, pipeline_id: str, name: str, description: str | None) -> api.V2beta1PipelineVersion:
        version = api.V2beta1PipelineVersion(
            pipeline_id=pipeline_id, pipeline_version_id=self._id("version"), display_name=name, description=description
        )
        self.versions.setdefault(pipeline_id, []).append(version)
        return version

    def upload_pipeline(self, *args: Any, **kwargs: Any) -> api.V2beta1Pipeline:
        a = self._record(*args, **kwargs)
        pipeline = api.V2beta1Pipeline(pipeline_id=self._id("pipeline"), display_name=a["pipeline_name"])
        self.pipelines[pipeline.pipeline_id] = pipeline
        # KFP names the first version after the pipeline and gives it the pipeline's description
        self._add_version(pipeline.pipeline_id, a["pipeline_name"], a.get("description"))
        return pipeline

    def upload_pipeline_version(self, *args: Any, **kwargs: Any) -> api.V2beta1PipelineVersion:
        a = self._record(*args, **kwargs)
        if any(v.display_name == a["pipeline_version_name"] for v in self.versions[a["pipeline_id"]]):
            raise api.ApiException(status=409, reason="version name already exists")
        return self._add_version(a["pipeline_id"], a["pipeline_version_name"], a.get("description"))

    def list_pipeline_versions(self, *args: Any, **kwargs: Any) -> api.V2beta1ListPipelineVersionsResponse:
        a = self._record(*args, **kwargs)
        versions = list(self.versions.get(a["pipeline_id"], []))
        if a.get("filter"):
            (predicate,) = json.loads(a["filter"])["predicates"]
            versions = [v for v in versions if v.display_name == predicate["stringValue"]]
        if a.get("sort_by") == "created_at desc":
            versions.reverse()
        return api.V2beta1ListPipelineVersionsResponse(
            pipeline_versions=versions[: a.get("page_size", 10)] or None, next_page_token=None
        )

    def create_experiment(self, *args: Any, **kwargs: Any) -> api.V2beta1Experiment:
        a = self._record(*args, **kwargs)
        for experiment in self.experiments.values():
            if experiment.display_name == a["name"]:
                return experiment
        experiment = api.V2beta1Experiment(experiment_id=self._id("experiment"), display_name=a["name"])
        self.experiments[experiment.experiment_id] = experiment
        return experiment

    def list_recurring_runs(self, *args: Any, **kwargs: Any) -> api.V2beta1ListRecurringRunsResponse:
        a = self._record(*args, **kwargs)
        (predicate,) = json.loads(a["filter"])["predicates"]
        runs = [
            r
            for r in self.recurring.values()
            if r.experiment_id == a["experiment_id"] and r.display_name == predicate["stringValue"]
        ]
        return api.V2beta1ListRecurringRunsResponse(recurring_runs=runs or None, next_page_token=None)

    def create_recurring_run(self, *args: Any, **kwargs: Any) -> api.V2beta1RecurringRun:
        a = self._record(*args, **kwargs)
        run = api.V2beta1RecurringRun(
            recurring_run_id=self._id("recurring"),
            display_name=a["job_name"],
            experiment_id=a["experiment_id"],
            pipeline_version_reference=api.V2beta1PipelineVersionReference(
                pipeline_id=a.get("pipeline_id"), pipeline_version_id=a.get("version_id")
            ),
            runtime_config=api.V2beta1RuntimeConfig(parameters=a.get("params")),
            service_account=a.get("service_account"),
        )
        self.recurring[run.recurring_run_id] = run
        return run

    def delete_recurring_run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        a = self._record(*args, **kwargs)
        del self.recurring[a["recurring_run_id"]]
        return {}

    def run_pipeline(self, *args: Any, **kwargs: Any) -> api.V2beta1Run:
        a = self._record(*args, **kwargs)
        return api.V2beta1Run(run_id=self._id("run"), display_name=a["job_name"], experiment_id=a["experiment_id"])


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return compile_pipelines(tmp_path_factory.mktemp("compiled"))


def call(client: RecordingClient, name: str, index: int = 0) -> dict[str, Any]:
    return [arguments for called, arguments in client.calls if called == name][index]


def test_a_first_deploy_uploads_every_pipeline_and_schedules_the_drift_response(compiled: list[Path]) -> None:
    client = RecordingClient()
    params = {**REQUIRED, "ingest_workers": "2", "fdr_q": "0.1", "dask_cluster": "kubernetes"}

    result = deploy(client, compiled, params=params, service_account="driftpilot-pipeline", package_version="0.1.0")

    assert client.names() == [
        *["get_pipeline_id", "upload_pipeline", "list_pipeline_versions"] * 3,
        "create_experiment",
        "list_recurring_runs",
        "create_recurring_run",
    ]
    assert [call(client, "upload_pipeline", i)["pipeline_name"] for i in (0, 1, 2)] == [
        "driftpilot-training",
        "driftpilot-drift-response",
        "driftpilot-tuning",
    ]
    assert call(client, "upload_pipeline")["pipeline_package_path"] == str(compiled[0])
    assert call(client, "create_experiment") == {
        "name": "driftpilot",
        "description": "driftpilot's recurring drift response",
        "namespace": None,
    }
    drift = next(p for p in result.pipelines if p.name == "driftpilot-drift-response")
    run = call(client, "create_recurring_run")
    assert run["job_name"] == "driftpilot-drift-response"
    assert run["cron_expression"] == DEFAULT_SCHEDULE == "0 5,20,35,50 * * * *"
    assert run["max_concurrency"] == 1 and run["no_catchup"] is True and run["enabled"] is True
    assert (run["pipeline_id"], run["version_id"]) == (drift.pipeline_id, drift.version_id)
    assert run["service_account"] == "driftpilot-pipeline"
    assert run["experiment_id"] == result.experiment_id
    assert run["params"] == {**REQUIRED, "ingest_workers": 2, "fdr_q": 0.1, "dask_cluster": "kubernetes"}
    assert type(run["params"]["ingest_workers"]) is int
    assert "pipeline_package_path" not in run
    assert result.replaced == [] and all(p.created for p in result.pipelines)


def test_a_second_deploy_reuses_the_versions_and_replaces_the_recurring_run(compiled: list[Path]) -> None:
    client = RecordingClient()
    first = deploy(client, compiled, params=REQUIRED, package_version="0.1.0")
    client.calls.clear()

    second = deploy(client, compiled, params=REQUIRED, schedule="*/15 * * * *", package_version="0.1.0")

    assert "upload_pipeline" not in client.names() and "upload_pipeline_version" not in client.names()
    assert not any(p.created for p in second.pipelines)
    assert client.names()[-2:] == ["create_recurring_run", "delete_recurring_run"]  # the new one first
    assert call(client, "delete_recurring_run") == {"recurring_run_id": first.recurring_run_id}
    assert call(client, "create_recurring_run")["cron_expression"] == "0 */15 * * * *"
    assert second.replaced == [first.recurring_run_id]
    assert list(client.recurring) == [second.recurring_run_id]


def test_a_changed_pipeline_is_uploaded_as_a_new_version(compiled: list[Path], tmp_path: Path) -> None:
    client = RecordingClient()
    deploy(client, compiled, params=REQUIRED, package_version="0.1.0")
    changed = tmp_path / compiled[1].name
    changed.write_text(compiled[1].read_text().replace("Check a new GDELT batch", "Check the newest GDELT batch"))
    client.calls.clear()

    result = deploy(client, [compiled[0], changed], params=REQUIRED, package_version="0.1.0")

    assert client.names().count("upload_pipeline_version") == 1  # the training pipeline did not change
    version = call(client, "upload_pipeline_version")
    digest = hashlib.sha256(changed.read_bytes()).hexdigest()[:12]
    assert version["pipeline_version_name"] == f"driftpilot-drift-response-0.1.0-{digest}"
    assert version["description"] == f"driftpilot 0.1.0, compiled pipeline sha256 {digest}"
    assert version["pipeline_package_path"] == str(changed)
    drift = next(p for p in result.pipelines if p.name == "driftpilot-drift-response")
    assert drift.created and call(client, "create_recurring_run")["version_id"] == drift.version_id
    assert len(client.versions[drift.pipeline_id]) == 2


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({**REQUIRED, "lake": "s3://x"}, "has no parameter(s) lake"),
        ({k: v for k, v in REQUIRED.items() if k != "lake_dir"}, "needs --param for lake_dir"),
        ({**REQUIRED, "ingest_workers": "two"}, "ingest_workers='two' is not a valid number_integer"),
        ({**REQUIRED, "fdr_q": "5%"}, "fdr_q='5%' is not a valid number_double"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_uploaded(
    compiled: list[Path], params: dict[str, str], words: str
) -> None:
    client = RecordingClient()
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        deploy(client, compiled, params=params)
    assert client.calls == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("*/15 * * * *", "0 */15 * * * *"),
        ("0 5,20,35,50 * * * *", "0 5,20,35,50 * * * *"),
        ("0  0 9 ? * MON-FRI", "0 0 9 ? * MON-FRI"),
        ("30 2 1-15/2 jan,jul *", "0 30 2 1-15/2 jan,jul *"),
        ("@every 15m", "@every 15m"),
        ("@hourly", "@hourly"),
    ],
)
def test_cron_expressions_become_kfp_six_field_ones(given: str, expected: str) -> None:
    assert normalize_cron(given) == expected


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("every 15 minutes", "has 3 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("0 60 * * * *", "minute '60' is out of range 0-59"),
        ("*/0 * * * *", "zero step"),
        ("0 0 5-2 * * *", "runs backwards"),
        ("0 0 0 0 * *", "day of month '0' is out of range 1-31"),
        ("0 0 0 * FOO *", "month 'FOO' is out of range"),
        ("0 0 0 * * 1;2", "is not a list of values"),
        ("@fortnightly", "unknown cron descriptor"),
    ],
)
def test_bad_cron_expressions_are_refused_with_the_field(given: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        normalize_cron(given)


def test_params_are_name_value_pairs() -> None:
    assert parse_params(["a=1", "b=x=y", "a=2", "c="]) == {"a": "2", "b": "x=y", "c": ""}
    with pytest.raises(ConfigError, match="name=value"):
        parse_params(["novalue"])


def test_the_cli_compiles_deploys_and_prints_what_it_did(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = RecordingClient()
    hosts: list[str] = []

    def make_client(host: str) -> RecordingClient:
        hosts.append(host)
        return client

    monkeypatch.setattr(kfp, "Client", make_client)
    argv = ["kfp-deploy", "--host", "http://ml-pipeline.kubeflow:8888", "--schedule", "*/15 * * * *"]
    argv += ["--service-account", "driftpilot-pipeline"]
    argv += [arg for name, value in REQUIRED.items() for arg in ("--param", f"{name}={value}")]

    assert main(argv) == 0

    assert hosts == ["http://ml-pipeline.kubeflow:8888"]
    run = call(client, "create_recurring_run")
    assert run["cron_expression"] == "0 */15 * * * *" and run["service_account"] == "driftpilot-pipeline"
    out = capsys.readouterr().out
    assert "driftpilot-training: uploaded version" in out
    assert "recurring run recurring-" in out and "cron '0 */15 * * * *'" in out


def test_the_cli_reports_a_bad_schedule_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kfp-deploy", "--host", "http://127.0.0.1:1", "--schedule", "every 15 minutes"]
    assert main(argv) == 2
    assert "has 3 fields" in capsys.readouterr().err
