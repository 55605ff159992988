"""KServe in the loop: the real KServe manager reconciles our InferenceService on the single-node cluster.

The manager (tests/kserve.py) runs in KServe's Standard mode (RawDeployment: no Knative here) with its admission
webhooks on. ``release_kserve`` puts registered versions on the InferenceService; KServe turns it into a Deployment
and a Service, the predictor pods run the serving image on the node and load the version from an MLflow server on
the host's veth address (artifacts served through it), and the tests call V1 and V2 through the Service's cluster
IP. A new version is judged on canary pods beside KServe's own, under real traffic through the Service: promoted
(KServe rolls its pods to it), or rolled back when its scores drift past the margin or when its pod never
becomes ready (a model that does not load), while the old pod keeps answering; rollouts are undone by
``driftpilot rollback`` and by the README's ``kubectl`` line; the rollout lease lets one of two racing releases
through. Last, the drift-response pipeline runs as a
cluster runs it, each step a container of the components image (kfp.local's DockerRunner), and rolls a bad
champion back on an InferenceService of its own.
"""

import base64
import dataclasses
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from kubernetes import client

from components.common.images import COMPONENTS_IMAGE, SERVING_IMAGE
from components.common.kube import INFERENCE_SERVICE, apply_custom, get_custom
from components.common.task import load_task
from components.deploy.canary import CanaryPolicy
from components.deploy.kserve import (
    PredictorSpec,
    inference_service,
    model_uri,
    release,
    roll_out,
    rollout_status,
)
from components.deploy.lease import RolloutBusyError
from components.deploy.metrics import PodMetricsSource
from components.deploy.release import release_kserve
from components.deploy.standard import TRACK_LABEL, canary_deployment_name, predictor_deployment_name
from components.deploy.traffic import TrafficReplayer
from components.features.core import input_columns
from components.ingest.mirror import GdeltMirror
from components.register.core import CHAMPION, Lineage, find_alias, lineage_of, record_gate, register_model
from components.serve import payloads
from components.train.model import TrainedModel
from pipelines.cli import main
from pipelines.drift_response import drift_response_pipeline
from pipelines.local import init_local, run_pipeline
from pipelines.settings import Settings
from tests.cluster import NodeCluster, diagnosis, wait_until
from tests.conftest import RollbackModels
from tests.kserve import KSERVE_DIR_ENV, KServe, run_kserve
from tests.servers import MlflowServer, run_mlflow

pytestmark = [
    pytest.mark.integration,
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("DRIFTPILOT_IMAGES") or not os.environ.get(KSERVE_DIR_ENV),
        reason=f"needs the serving image (DRIFTPILOT_IMAGES=1) and the KServe manager ({KSERVE_DIR_ENV}): "
        "./scripts/test.sh builds them (./scripts/build-images.sh, ./scripts/ensure-kserve.sh) and sets these",
    ),
]

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "serving"
MODEL = "gdelt-tone"
TASK = load_task(MODEL)
BAD_URI = f"models:/{MODEL}/404"
# A rollout's pods start in ~20 s on an idle machine (the image's imports, the model's download).
POLICY = CanaryPolicy(step_timeout_s=240.0, interval_s=2.0)
# A canary judged on a few dozen requests, whose latency and scores may differ widely from stable's
# (a fresh pod on a busy node; RollbackModels' two models score differently): what it tests is the rollout.
LENIENT = CanaryPolicy(
    steps=(10, 50), min_requests=40, min_samples=20, latency_ratio=3.0, score_margin=1.0,
    step_timeout_s=240.0, interval_s=1.0,
)  # fmt: skip
# Where the canary's steps are not under test.
ONE_STEP = dataclasses.replace(LENIENT, steps=(50,))


@dataclass(frozen=True)
class Registry:
    """The MLflow server the predictor pods load from, and the two registered versions.

    Attributes:
        mlflow: The server (on the host's veth address).
        sound: The version of ``RollbackModels``' ``sound`` model.
        conflict: The version of its ``conflict`` model.
        models: The two models, by version.
        rows: Real rows to score.
    """

    mlflow: MlflowServer
    sound: str
    conflict: str
    models: dict[str, TrainedModel]
    rows: pd.DataFrame


@pytest.fixture(scope="module")
def kserve(
    node_cluster: NodeCluster, node_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KServe]:
    """The KServe manager against the node cluster, the serving image on the node and the test's namespace."""
    node_cluster.import_docker_image(SERVING_IMAGE)
    core = client.CoreV1Api(node_api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    try:
        with run_kserve(node_cluster, node_api, tmp_path_factory.mktemp("kserve")) as manager:
            yield manager
    finally:
        core.delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def registry(  # type: ignore[no-untyped-def]
    node_cluster: NodeCluster, rollback_models: RollbackModels, validated, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Both models registered on an MLflow server the pods reach, each with a passing gate verdict."""
    work = tmp_path_factory.mktemp("kserve-mlflow")
    with run_mlflow(work, artifacts=str(work / "artifacts"), host=node_cluster.host_ip) as mlflow:
        versions = {}
        for name in ("sound", "conflict"):
            ref = register_model(
                tracking_uri=mlflow.url,
                artifact_root="",
                experiment=MODEL,
                model_name=MODEL,
                model_dir=rollback_models.folder / name,
                training_data=[rollback_models.folder / f"{name}.parquet"],
                lineage=Lineage(source_batches=rollback_models.training, kfp_run=f"test-setup-{name}"),
                alias="challenger",
            )
            verdict = {"promote": True, "reason": "test setup: the gate is not under test here"}
            record_gate(tracking_uri=mlflow.url, model_name=MODEL, version=ref.version, verdict=verdict)
            versions[name] = ref.version
        rows = validated(rollback_models.batch).sample(n=50, random_state=0).reset_index(drop=True)
        models = {versions[n]: TrainedModel.load(rollback_models.folder / n) for n in versions}
        yield Registry(mlflow, versions["sound"], versions["conflict"], models, rows)


def _release(
    cluster: NodeCluster, registry: Registry, version: str, holder: str, policy: CanaryPolicy = LENIENT
) -> Any:
    return release_kserve(
        tracking_uri=registry.mlflow.url,
        model_name=MODEL,
        version=version,
        namespace=NAMESPACE,
        image=SERVING_IMAGE,
        env_secret="",
        holder=holder,
        incident=f"incident-{holder}",
        policy=policy,
        kubeconfig=str(cluster.kubeconfig),
        mode="RawDeployment",
    )


def _uri(version: str) -> str:
    return f"models:/{MODEL}/{version}"


def _serving(api: client.ApiClient, uri: str, name: str = MODEL) -> None:
    """Wait until the predictor pods all serve ``uri`` and are ready, and its Service sends traffic to those alone."""
    wait_until(f"the predictor serving {uri}", lambda: rollout_status(api, NAMESPACE, name, uri).done(1) or None, 240)
    selector = f"serving.kserve.io/inferenceservice={name}"
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)

    def only_new_pods() -> bool | None:
        pods = {p.status.pod_ip for p in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
                if p.metadata.deletion_timestamp is None}  # fmt: skip
        slices = discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={name}-predictor"
        ).items
        ready = {a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses}
        return ready == pods or None

    wait_until(f"the Service of {name} on its new pods alone", only_new_pods, 60)


def _spec(registry: Registry, uri: str, name: str = MODEL) -> PredictorSpec:
    return PredictorSpec(
        name=name, image=SERVING_IMAGE, model_uri=uri, env={"MLFLOW_TRACKING_URI": registry.mlflow.url},
        mode="RawDeployment",
    )  # fmt: skip


def _put(api: client.ApiClient, registry: Registry, uri: str) -> None:
    """Test set-up: put ``uri`` on the InferenceService without a canary."""
    roll_out(api, NAMESPACE, _spec(registry, uri), canary_percent=None)
    _serving(api, uri)


def _serve_sound(api: client.ApiClient, registry: Registry) -> None:
    """Each test starts from ``sound`` served."""
    _put(api, registry, _uri(registry.sound))


def _service_url(api: client.ApiClient, name: str = MODEL) -> str:
    service = client.CoreV1Api(api).read_namespaced_service(f"{name}-predictor", NAMESPACE)
    return f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"


@contextmanager
def _traffic(api: client.ApiClient, rows: pd.DataFrame, name: str = MODEL) -> Iterator[TrafficReplayer]:
    """Six kept-alive clients calling the predictor's Service (20 requests a second), what a canary is judged on."""
    instances = payloads.instances(rows[list(input_columns(TASK))], TASK)
    with TrafficReplayer(_service_url(api, name), name, instances, concurrency=6, rate_per_s=20) as replayer:
        yield replayer


def _no_canary_left(api: client.ApiClient, name: str = MODEL) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    names = [d.metadata.name for d in apps.list_namespaced_deployment(NAMESPACE).items]
    assert canary_deployment_name(name) not in names, names
    selector = f"serving.kserve.io/inferenceservice={name},{TRACK_LABEL}=canary"
    wait_until("the canary pods gone", lambda: not core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
               or None, 60)  # fmt: skip


def _v1(api: client.ApiClient, rows: pd.DataFrame) -> requests.Response:
    instances = payloads.instances(rows[list(input_columns(TASK))], TASK)
    return requests.post(f"{_service_url(api)}/v1/models/{MODEL}:predict", json={"instances": instances}, timeout=30)


def _predictions(api: client.ApiClient, rows: pd.DataFrame) -> np.ndarray:
    response = _v1(api, rows)
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["predictions"], dtype="float64")


def _answers_as(api: client.ApiClient, model: TrainedModel, rows: pd.DataFrame) -> None:
    """Wait until the Service answers with ``model``'s scores: kube-proxy moves traffic off retired pods within
    a second or two of the endpoints' change, and they answer until then (their preStop sleep)."""
    expected = model.predict_proba(rows)

    def matches() -> bool | None:
        response = _v1(api, rows)
        assert response.status_code == 200, response.text
        return np.allclose(response.json()["predictions"], expected, rtol=0, atol=1e-9) or None

    wait_until("the Service answering with the released model's scores", matches, 30)


def _stored(api: client.ApiClient) -> dict[str, Any]:
    stored = get_custom(api, INFERENCE_SERVICE, NAMESPACE, MODEL)
    assert stored is not None
    return stored


def test_a_released_version_is_reconciled_into_pods_that_answer_v1_and_v2_through_the_service(
    node_cluster: NodeCluster, node_api: client.ApiClient, kserve: KServe, registry: Registry
) -> None:
    assert (
        _release(node_cluster, registry, registry.sound, "run-1") is None
    )  # a new InferenceService: nothing to compare
    _serving(node_api, _uri(registry.sound))

    wait_until("the InferenceService Ready", lambda: _ready(node_api) or None, 60)
    assert _stored(node_api)["status"]["deploymentMode"] == "Standard"
    deployment = client.AppsV1Api(node_api).read_namespaced_deployment(predictor_deployment_name(MODEL), NAMESPACE)
    (owner,) = deployment.metadata.owner_references
    assert (owner.kind, owner.name) == ("InferenceService", MODEL)
    (container,) = deployment.spec.template.spec.containers
    assert container.image == SERVING_IMAGE and _uri(registry.sound) in container.args
    champion = find_alias(tracking_uri=registry.mlflow.url, model_name=MODEL, alias=CHAMPION)
    assert champion is not None and champion.version == registry.sound

    rows = registry.rows
    predictions = _predictions(node_api, rows)
    expected = registry.models[registry.sound].predict_proba(rows)
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=1e-9)
    assert predictions.std() > 0
    inputs = payloads.v2_inputs(payloads.instances(rows[list(input_columns(TASK))], TASK), TASK)
    v2 = requests.post(
        f"{_service_url(node_api)}/v2/models/{MODEL}/infer", json={"id": "r-1", "inputs": inputs}, timeout=30
    )
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == registry.sound
    np.testing.assert_allclose(v2.json()["outputs"][0]["data"], predictions, rtol=0, atol=1e-9)


def _ready(api: client.ApiClient) -> bool:
    conditions = _stored(api).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_kserves_admission_webhook_refuses_an_inference_service_it_finds_invalid(
    node_api: client.ApiClient, kserve: KServe
) -> None:
    """The validator runs (the API server calls the manager): a name the API server takes, KServe refuses."""
    spec = PredictorSpec(name="1-starts-with-a-digit", image=SERVING_IMAGE, model_uri=BAD_URI, mode="RawDeployment")
    with pytest.raises(client.ApiException) as refused:
        apply_custom(node_api, INFERENCE_SERVICE, NAMESPACE, inference_service(spec))
    denied = 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request'
    status = json.loads(refused.value.body)
    assert status["code"] == 403 and status["message"].startswith(denied), status
    assert "must start with alphabetical character" in status["message"]


class _Prober:
    """V1 requests at the Service every half second until stopped (at most ``limit``), recording the statuses."""

    def __init__(self, api: client.ApiClient, rows: pd.DataFrame, limit: int = 800) -> None:
        self.statuses: list[int | str] = []
        self._stop = threading.Event()

        def probe() -> None:
            while not self._stop.is_set() and len(self.statuses) < limit:
                try:
                    self.statuses.append(_v1(api, rows).status_code)
                except requests.RequestException as error:
                    self.statuses.append(type(error).__name__)
                self._stop.wait(0.5)

        self._thread = threading.Thread(target=probe, daemon=True)

    def __enter__(self) -> "_Prober":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_a_canary_of_a_model_that_does_not_load_is_caught_and_rolled_back_while_the_old_pod_answers(
    node_cluster: NodeCluster, node_api: client.ApiClient, kserve: KServe, registry: Registry
) -> None:
    _serve_sound(node_api, registry)
    bad = _spec(registry, BAD_URI)
    started = time.monotonic()
    with _Prober(node_api, registry.rows.head(5)) as prober:
        stats = PodMetricsSource(node_api, NAMESPACE, MODEL, mode="RawDeployment")
        outcome = release(node_api, NAMESPACE, bad, POLICY, holder="run-bad", stats=stats)
        seen = diagnosis(client.CoreV1Api(node_api), NAMESPACE)
        _no_canary_left(node_api)
    assert outcome is not None and not outcome.promoted
    reason = outcome.verdict.reason
    assert reason.startswith(f"a canary pod of {BAD_URI} will not become ready") and "exited with code 1" in reason, (
        seen
    )
    assert "ModelRegistryError" in reason and "not found" in reason, reason  # the server's last log line
    assert "1 canary and 1 stable pod(s): 50% of the requests" in reason, reason
    assert time.monotonic() - started < POLICY.step_timeout_s / 2  # caught by its exits, not by the timeout
    assert model_uri(_stored(node_api)) == _uri(registry.sound)  # the InferenceService was never touched
    assert rollout_status(node_api, NAMESPACE, MODEL, _uri(registry.sound)).done(1)
    assert prober.statuses and set(prober.statuses) == {200}, prober.statuses


def test_a_canary_under_traffic_is_promoted_and_kserve_rolls_its_pods_to_it(
    node_cluster: NodeCluster, node_api: client.ApiClient, kserve: KServe, registry: Registry
) -> None:
    _serve_sound(node_api, registry)
    with _traffic(node_api, registry.rows) as replayer:
        outcome = _release(node_cluster, registry, registry.conflict, "run-canary")
        _serving(node_api, _uri(registry.conflict))
        _no_canary_left(node_api)
    counts = replayer.stop()
    assert outcome is not None and outcome.promoted, outcome
    assert [d.action for d in outcome.decisions] == ["step", "promote"], outcome.decisions
    for decision in outcome.decisions:  # one stable pod: each step gives the canary pod half the requests
        assert "1 canary and 1 stable pod(s): 50% of the requests" in decision.reason, decision.reason
    # The Service balances connections, renewed every 10 s: over the canary, the kept-alive clients' requests
    # reach both pods (without the renewal none of them would reach the canary).
    stable, canary = outcome.verdict.stable.requests, outcome.verdict.canary.requests
    assert canary >= 2 * LENIENT.min_requests and 0.15 < canary / (stable + canary) < 0.85, (stable, canary)
    assert counts.sent > 100 and counts.failed == 0, counts  # nothing lost while pods came and went
    assert model_uri(_stored(node_api)) == _uri(registry.conflict)
    lineage = lineage_of(tracking_uri=registry.mlflow.url, model_name=MODEL, version=registry.conflict)
    assert lineage["canary"] == "promoted" and "50% of the requests" in lineage["canary_reason"], lineage
    _answers_as(node_api, registry.models[registry.conflict], registry.rows)


def test_a_canary_whose_scores_drift_past_the_margin_is_rolled_back(
    node_cluster: NodeCluster, node_api: client.ApiClient, kserve: KServe, registry: Registry
) -> None:
    _serve_sound(node_api, registry)
    rows = registry.rows
    shift = abs(registry.models[registry.conflict].predict_proba(rows).mean()
                - registry.models[registry.sound].predict_proba(rows).mean())  # fmt: skip
    assert shift > 0.02, shift
    strict = dataclasses.replace(LENIENT, score_margin=shift / 3, min_requests=400)
    with _traffic(node_api, rows) as replayer:
        outcome = _release(node_cluster, registry, registry.conflict, "run-drift", strict)
        _no_canary_left(node_api)
    counts = replayer.stop()
    assert outcome is not None and not outcome.promoted, outcome
    assert "is worse than" in outcome.verdict.reason and "divergence" in outcome.verdict.reason, outcome.verdict
    (divergence,) = [c for c in outcome.verdict.checks if c.name == "divergence"]
    assert divergence.status == "fail" and abs(divergence.difference) > strict.score_margin, divergence
    assert counts.failed == 0, counts
    assert model_uri(_stored(node_api)) == _uri(registry.sound)
    _answers_as(node_api, registry.models[registry.sound], rows)


def _readme_kubectl_line() -> str:
    """The README's kubectl rollback of a RawDeployment InferenceService (its ``sh`` block under "Rollback by hand")."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```sh\n\s*(kubectl -n driftpilot patch isvc gdelt-tone --type json [^\n]+)\n\s*```", readme)
    assert match, "README: no kubectl rollback line for a RawDeployment InferenceService"
    return match.group(1)


def test_driftpilot_rollback_and_the_readme_kubectl_line_each_undo_a_released_version(
    node_cluster: NodeCluster,
    node_api: client.ApiClient,
    kserve: KServe,
    registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _serve_sound(node_api, registry)
    _put(node_api, registry, _uri(registry.conflict))  # as if promoted
    _answers_as(node_api, registry.models[registry.conflict], registry.rows)

    argv = ["rollback", "--name", MODEL, "--namespace", NAMESPACE, "--kubeconfig", str(node_cluster.kubeconfig)]
    assert main(argv) == 0
    assert f"now serving {_uri(registry.sound)}" in capsys.readouterr().out
    _serving(node_api, _uri(registry.sound))
    _answers_as(node_api, registry.models[registry.sound], registry.rows)

    _put(node_api, registry, _uri(registry.conflict))
    line = _readme_kubectl_line().replace("-n driftpilot", f"-n {NAMESPACE}")
    env = {
        **os.environ,
        "KUBECONFIG": str(node_cluster.kubeconfig),
        "PATH": f"{node_cluster.bin_dir}:{os.environ['PATH']}",
    }
    done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    _serving(node_api, _uri(registry.sound))
    _answers_as(node_api, registry.models[registry.sound], registry.rows)


def test_of_two_releases_racing_for_the_inference_service_one_rolls_out_and_the_other_is_refused(
    node_cluster: NodeCluster, node_api: client.ApiClient, kserve: KServe, registry: Registry
) -> None:
    _serve_sound(node_api, registry)
    barrier, outcomes = threading.Barrier(2), {}

    def race(holder: str) -> None:
        barrier.wait()
        try:
            outcomes[holder] = _release(node_cluster, registry, registry.conflict, holder, ONE_STEP)
        except RolloutBusyError as refused:
            outcomes[holder] = refused

    threads = [threading.Thread(target=race, args=(holder,)) for holder in ("run-a", "run-b")]
    with _traffic(node_api, registry.rows):  # for the winner's canary
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=4 * LENIENT.step_timeout_s)
    refused = [o for o in outcomes.values() if isinstance(o, RolloutBusyError)]
    released = [o for o in outcomes.values() if not isinstance(o, RolloutBusyError)]
    assert len(refused) == 1 and len(released) == 1, outcomes
    assert released[0] is not None and released[0].promoted
    told = str(refused[0])  # who holds it, or that another took the lease first (when both created it)
    assert MODEL in told and ("run-" in told or "took lease" in told), told
    _serving(node_api, _uri(registry.conflict))
    assert client.CoordinationV1Api(node_api).list_namespaced_lease(NAMESPACE).items == []


def _kubeconfig_with_ca(cluster: NodeCluster, path: Path) -> Path:
    """An admin kubeconfig that carries its CA (a step container sees no file outside the pipeline root)."""
    ca = base64.b64encode(cluster.ca_file.read_bytes()).decode()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "node", "cluster": {"server": cluster.url, "certificate-authority-data": ca}}],
        "users": [{"name": "admin", "user": {"token": cluster.token}}],
        "contexts": [{"name": "node", "context": {"cluster": "node", "user": "admin"}}],
        "current-context": "node",
    }
    path.write_text(json.dumps(config))
    path.chmod(0o644)
    return path


def _writable_by_the_image(folder: Path) -> None:
    """The image's user (uid 10001) writes the folders a step uses, as it would on a fresh volume."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o777)


def test_the_drift_response_pipeline_in_the_components_image_rolls_a_bad_champion_back_on_kserve(
    node_cluster: NodeCluster,
    node_api: client.ApiClient,
    kserve: KServe,
    registry: Registry,
    rollback_models: RollbackModels,
    gdelt_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The rollback path of ``test_rollback_local``, run as a cluster runs it: every step a container of the
    components image (kfp.local's DockerRunner), the release on the InferenceService that KServe reconciles."""
    name = "gdelt-tone-images"  # a model of its own: the InferenceService and registry history are this test's
    tracking = registry.mlflow.url
    sound, bad = rollback_models.register_bad_champion(tracking_uri=tracking, artifact_root="", model_name=name)
    bad_spec = _spec(registry, f"models:/{name}/{bad}", name)
    roll_out(node_api, NAMESPACE, bad_spec, canary_percent=None)  # the bad champion serves

    home = tmp_path_factory.mktemp("images-home")
    settings = Settings.from_env(home=str(home), tracking_uri=tracking, artifact_root="", model_name=name)
    arguments = settings.drift_response_arguments()
    kubeconfig = _kubeconfig_with_ca(node_cluster, home / "kubeconfig")
    _writable_by_the_image(home)
    feed_dir = tmp_path_factory.mktemp("images-feed")
    (feed_dir / f"{rollback_models.batch}.export.CSV").write_bytes(
        (gdelt_dir / f"{rollback_models.batch}.export.CSV").read_bytes()
    )
    # Host networking: the steps reach the feed on 127.0.0.1 and MLflow and the API server on the veth.
    init_local(home, docker={"network_mode": "host", "environment": {"KUBECONFIG": str(kubeconfig)}})
    policy = {**ONE_STEP.__dict__, "steps": list(ONE_STEP.steps)}
    log = home / "rollback.log"
    try:
        with GdeltMirror(feed_dir) as feed:
            _serving(node_api, bad_spec.model_uri, name)
            with _traffic(node_api, registry.rows, name):
                result = run_pipeline(
                    drift_response_pipeline,
                    {
                        **arguments,
                        "source": feed.url,
                        "ingest_workers": 0,
                        "batch_id": rollback_models.batch,
                        "evidently": "never",
                        "canary_policy": json.dumps(policy),
                        "serving_target": "kserve-raw",
                        "serving_namespace": NAMESPACE,
                        "serving_image": SERVING_IMAGE,
                    },
                    log_path=log,
                )
    finally:
        init_local(settings.pipeline_root)  # later tests run their steps as subprocesses again
    text = log.read_text()
    assert f"Found image '{COMPONENTS_IMAGE.removeprefix('docker.io/')}'" in text  # every step ran in the image
    assert "Pulling image" not in text
    assert (result["action"], result["tier"]) == ("rollback", "execute"), result["reason"]

    # The previous champion passed the rollback's verdict, KServe rolled its pods out, and it is champion again.
    champion = find_alias(tracking_uri=tracking, model_name=name)
    assert champion is not None and champion.version == sound
    lineage = lineage_of(tracking_uri=tracking, model_name=name, version=sound)
    assert lineage["gate"] == "promote" and lineage["canary"] == "promoted", lineage
    assert "1 canary and 1 stable pod(s)" in lineage["canary_reason"], lineage
    isvc = get_custom(node_api, INFERENCE_SERVICE, NAMESPACE, name)
    assert isvc is not None and model_uri(isvc) == f"models:/{name}/{sound}"
    assert isvc["metadata"]["annotations"]["driftpilot.io/incident"] == result["incident"]
    assert rollout_status(node_api, NAMESPACE, name, f"models:/{name}/{sound}").done(1)
    # The decision is in the audit ledger the steps wrote, under its incident.
    ledger = settings.decisions.ledger
    assert ledger.verify().ok
    story = {e.kind: e.data for e in ledger.story(result["incident"])}
    assert story["decided"]["action"] == "rollback" and story["gated"]["version"] == sound
