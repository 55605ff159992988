"""Rollouts on the real API server with KServe's CRD: judged canaries, one at a time, and rollback by hand.

The canary's traffic is simulated (no kubelet or Knative runs here), split as the stored
InferenceService says; the controller, the analysis, the patches and the lease are the real ones.

``driftpilot rollback`` and the README's ``kubectl patch`` are checked to leave the same object;
two rollouts racing for one InferenceService: exactly one proceeds and the other is told why.
"""

import datetime as dt
import json
import threading
from pathlib import Path

import pytest
from kubernetes import client

from components.common.errors import ServingError
from components.common.images import SERVING_IMAGE
from components.common.kube import INFERENCE_SERVICE, get_custom, patch_custom
from components.common.storage import write_table
from components.decide.core import DecisionState
from components.deploy import kserve as kserve_module
from components.deploy.canary import CanaryPolicy
from components.deploy.component import release_challenger
from components.deploy.kserve import (
    PREVIOUS_MODEL_ANNOTATION,
    PredictorSpec,
    model_uri,
    release,
    roll_back,
    roll_out,
    traffic,
)
from components.deploy.lease import RolloutBusyError, rollout_lease
from components.deploy.metrics import PodMetricsSource
from components.deploy.standard import TRACK_LABEL, StandardCanaryRouter
from components.register.core import CHAMPION, find_alias, lineage_of, record_gate
from components.train.core import TrainConfig
from pipelines.cli import main
from tests.integration.test_serve import MODEL_NAME, _train_and_register
from tests.traffic import SimulatedTraffic

pytestmark = pytest.mark.integration


def _spec(version: int, **extra: object) -> PredictorSpec:
    annotations = {"driftpilot.io/model-version": str(version), "driftpilot.io/incident": f"inc-{version}"}
    return PredictorSpec(
        name="gdelt-tone",
        image=SERVING_IMAGE,
        model_uri=f"models:/gdelt-tone/{version}",
        annotations=annotations,
        **extra,
    )


def test_driftpilot_rollback_and_the_documented_kubectl_patch_leave_the_same_object(
    kube_api: client.ApiClient,
    crds: list[str],
    kube_namespace: str,
    kubeconfig: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    roll_out(kube_api, kube_namespace, _spec(1), canary_percent=None)
    canary = roll_out(kube_api, kube_namespace, _spec(2), canary_percent=20)
    assert traffic(canary) == {"canary": 20, "previous": 80}
    assert canary["metadata"]["annotations"]["driftpilot.io/incident"] == "inc-2"
    assert canary["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] == "models:/gdelt-tone/1"

    argv = ["rollback", "--name", "gdelt-tone", "--namespace", kube_namespace, "--kubeconfig", str(kubeconfig)]
    assert main(argv) == 0
    assert "all traffic to the previous revision" in capsys.readouterr().out
    by_cli = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert by_cli is not None and traffic(by_cli) == {"canary": 0, "previous": 100}

    # kubectl patch isvc gdelt-tone --type merge -p '{"spec":{"predictor":{"canaryTrafficPercent":0}}}'
    patch_custom(
        kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone", {"spec": {"predictor": {"canaryTrafficPercent": 20}}}
    )
    by_kubectl = patch_custom(
        kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone", {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    )
    assert by_kubectl["spec"] == by_cli["spec"]
    missing = ["rollback", "--name", "missing", "--namespace", kube_namespace, "--kubeconfig", str(kubeconfig)]
    assert main(missing) == 2 and "no InferenceService" in capsys.readouterr().err


def test_a_raw_deployment_rolls_back_to_the_previous_model_uri(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    roll_out(kube_api, kube_namespace, _spec(1, mode="RawDeployment"), canary_percent=None)
    second = roll_out(kube_api, kube_namespace, _spec(2, mode="RawDeployment"), canary_percent=50)
    assert model_uri(second) == "models:/gdelt-tone/2" and traffic(second) == {"latest": 100}  # no canary in raw mode
    back = roll_back(kube_api, kube_namespace, "gdelt-tone")
    assert model_uri(back) == "models:/gdelt-tone/1"
    assert back["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] == "models:/gdelt-tone/2"
    assert model_uri(roll_back(kube_api, kube_namespace, "gdelt-tone")) == "models:/gdelt-tone/2"  # and forth


def test_of_two_racing_rollouts_exactly_one_proceeds_and_the_other_is_told_who_holds_it(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    roll_out(kube_api, kube_namespace, _spec(1), canary_percent=None)
    barrier, outcomes = threading.Barrier(2), {}

    def rollout(holder: str, version: int) -> None:
        barrier.wait()
        try:
            with rollout_lease(kube_api, kube_namespace, "gdelt-tone", holder):
                barrier_done.wait(timeout=10)  # both have tried before either lets go
                roll_out(kube_api, kube_namespace, _spec(version), canary_percent=10)
                outcomes[holder] = "rolled out"
        except RolloutBusyError as exc:
            outcomes[holder] = str(exc)
            barrier_done.set()

    barrier_done = threading.Event()
    threads = [threading.Thread(target=rollout, args=(f"run-{v}", v)) for v in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes.values()).count("rolled out") == 1, outcomes
    (winner,) = [h for h, o in outcomes.items() if o == "rolled out"]
    (loser,) = [o for o in outcomes.values() if o != "rolled out"]
    assert "gdelt-tone" in loser and ("run-" in loser or "took lease" in loser)
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stored is not None and model_uri(stored) == f"models:/gdelt-tone/{winner.split('-')[1]}"
    assert traffic(stored) == {"canary": 10, "previous": 90}
    leases = client.CoordinationV1Api(kube_api).list_namespaced_lease(kube_namespace).items
    assert leases == []  # released


def test_a_live_lease_refuses_an_expired_one_is_taken_over(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    with (
        rollout_lease(kube_api, kube_namespace, "gdelt-tone", "incident-7"),
        pytest.raises(RolloutBusyError, match="being rolled out by 'incident-7'"),
        rollout_lease(kube_api, kube_namespace, "gdelt-tone", "alice@laptop"),
    ):
        pass
    leases = client.CoordinationV1Api(kube_api)
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="driftpilot-rollout-gdelt-tone"),
        spec=client.V1LeaseSpec(
            holder_identity="crashed-run", lease_duration_seconds=60, acquire_time=stale, renew_time=stale
        ),
    )
    leases.create_namespaced_lease(kube_namespace, body)
    with rollout_lease(kube_api, kube_namespace, "gdelt-tone", "alice@laptop") as held:
        stored = leases.read_namespaced_lease(held.name, kube_namespace)
        assert stored.spec.holder_identity == "alice@laptop"


def test_a_replace_from_a_stale_read_is_refused_with_a_conflict(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    roll_out(kube_api, kube_namespace, _spec(1), canary_percent=None)
    custom = client.CustomObjectsApi(kube_api)
    stale = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stale is not None
    roll_out(kube_api, kube_namespace, _spec(2), canary_percent=10)  # someone else wrote meanwhile
    stale["spec"]["predictor"]["canaryTrafficPercent"] = 50
    with pytest.raises(client.ApiException) as refused:
        custom.replace_namespaced_custom_object(
            INFERENCE_SERVICE.group,
            INFERENCE_SERVICE.version,
            kube_namespace,
            INFERENCE_SERVICE.plural,
            "gdelt-tone",
            stale,
        )
    assert refused.value.status == 409
    kept = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert kept is not None and traffic(kept) == {"canary": 10, "previous": 90}  # nothing half-applied


@pytest.mark.parametrize("meanwhile", ["status", "spec"])
def test_a_rollout_raced_by_a_status_write_is_retried_and_by_a_spec_write_refused(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    """What KServe does to the status between our read and our replace is no conflict; another writer's spec is."""
    roll_out(kube_api, kube_namespace, _spec(1), canary_percent=None)
    custom = client.CustomObjectsApi(kube_api)
    reads: list[int] = []

    def read_then_write_meanwhile(api, kind, namespace, name):  # type: ignore[no-untyped-def]
        found = get_custom(api, kind, namespace, name)
        reads.append(1)
        if len(reads) == 1:
            at = (INFERENCE_SERVICE.group, INFERENCE_SERVICE.version, namespace, INFERENCE_SERVICE.plural, name)
            if meanwhile == "status":
                custom.patch_namespaced_custom_object_status(*at, {"status": {"url": f"http://{name}.example"}})
            else:
                custom.patch_namespaced_custom_object(*at, {"spec": {"predictor": {"minReplicas": 2}}})
        return found

    monkeypatch.setattr(kserve_module, "get_custom", read_then_write_meanwhile)
    if meanwhile == "status":
        stored = roll_out(kube_api, kube_namespace, _spec(2), canary_percent=None)
        assert model_uri(stored) == _spec(2).model_uri and stored["status"]["url"] == "http://gdelt-tone.example"
    else:
        with pytest.raises(client.ApiException) as refused:
            roll_out(kube_api, kube_namespace, _spec(2), canary_percent=None)
        assert refused.value.status == 409
        kept = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
        assert kept is not None and model_uri(kept) == _spec(1).model_uri


def _share(api: client.ApiClient, namespace: str) -> int:
    """The canary's share as the stored InferenceService says (what KServe would route)."""
    stored = get_custom(api, INFERENCE_SERVICE, namespace, "gdelt-tone")
    return traffic(stored).get("canary", 0) if stored else 0


FAST = CanaryPolicy(steps=(10, 50), min_requests=100, interval_s=0.01)


def test_a_release_steps_a_healthy_canary_through_the_api_then_promotes_it(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    def stats() -> tuple:  # type: ignore[type-arg]
        seen.append(_share(kube_api, kube_namespace))
        return simulated()

    seen: list[int] = []
    simulated = SimulatedTraffic(1, lambda: seen[-1])
    assert release(kube_api, kube_namespace, _spec(1), FAST, holder="run-1", stats=stats) is None  # nothing to compare
    decisions: list[str] = []
    outcome = release(
        kube_api,
        kube_namespace,
        _spec(2),
        FAST,
        holder="run-2",
        stats=stats,
        record=lambda v: decisions.append(v.action),
    )
    assert outcome is not None and outcome.promoted and decisions == ["step", "promote"]
    assert 10 in seen and 50 in seen  # the API server held each step while it was judged
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stored is not None and traffic(stored) == {"latest": 100}
    assert model_uri(stored) == "models:/gdelt-tone/2"
    assert stored["metadata"]["annotations"]["driftpilot.io/incident"] == "inc-2"
    assert client.CoordinationV1Api(kube_api).list_namespaced_lease(kube_namespace).items == []


def test_a_release_rolls_a_degraded_canary_back_at_its_first_step(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    seen: list[int] = []
    simulated = SimulatedTraffic(2, lambda: seen[-1], error_rate=0.4)

    def stats() -> tuple:  # type: ignore[type-arg]
        seen.append(_share(kube_api, kube_namespace))
        return simulated()

    release(kube_api, kube_namespace, _spec(1), FAST, holder="run-1", stats=stats)
    outcome = release(kube_api, kube_namespace, _spec(2), FAST, holder="run-2", stats=stats)
    assert outcome is not None and not outcome.promoted and "errors" in outcome.verdict.reason
    assert max(seen) == 10  # never past the first step
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stored is not None and traffic(stored) == {"canary": 0, "previous": 100}


def test_of_two_racing_releases_exactly_one_runs_its_canary(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    release(kube_api, kube_namespace, _spec(1), FAST, holder="run-1", stats=lambda: SimulatedTraffic(0, lambda: 0)())
    refused = threading.Event()
    outcomes: dict[str, object] = {}

    def run(version: int) -> None:
        simulated = SimulatedTraffic(version, lambda: _share(kube_api, kube_namespace))

        def stats() -> tuple:  # type: ignore[type-arg]
            refused.wait(timeout=30)  # the winner's canary waits until the loser has been refused
            return simulated()

        try:
            outcomes[f"run-{version}"] = release(
                kube_api, kube_namespace, _spec(version), FAST, holder=f"run-{version}", stats=stats
            )
        except RolloutBusyError as exc:
            outcomes[f"run-{version}"] = exc
            refused.set()

    threads = [threading.Thread(target=run, args=(v,)) for v in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    errors = [o for o in outcomes.values() if isinstance(o, RolloutBusyError)]
    (winner,) = [h for h, o in outcomes.items() if not isinstance(o, RolloutBusyError)]
    assert len(errors) == 1 and "gdelt-tone" in str(errors[0])
    assert outcomes[winner].promoted  # type: ignore[attr-defined]
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stored is not None and traffic(stored) == {"latest": 100}
    assert model_uri(stored) == f"models:/gdelt-tone/{winner.split('-')[1]}"  # nothing of the loser applied


def test_pod_metrics_source_reads_the_revisions_from_kserve_status_and_skips_pods_not_ready(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    roll_out(kube_api, kube_namespace, _spec(1), canary_percent=None)
    source = PodMetricsSource(kube_api, kube_namespace, "gdelt-tone")
    assert source.revisions() is None
    assert [s.requests for s in source()] == [0, 0]  # no revisions reported yet: no traffic counted
    status = {"components": {"predictor": {"latestRolledoutRevision": "gdelt-tone-predictor-00001",
                                           "latestCreatedRevision": "gdelt-tone-predictor-00002"}}}  # fmt: skip
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        INFERENCE_SERVICE.group, INFERENCE_SERVICE.version, kube_namespace, INFERENCE_SERVICE.plural, "gdelt-tone",
        {"status": status},
    )  # fmt: skip
    assert source.revisions() == ("gdelt-tone-predictor-00001", "gdelt-tone-predictor-00002")
    labels = {
        "serving.kserve.io/inferenceservice": "gdelt-tone",
        "serving.knative.dev/revision": "gdelt-tone-predictor-00002",
    }
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="canary-pod", labels=labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="kserve-container", image=SERVING_IMAGE)]),
    )
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service_account(
        kube_namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
    )
    core.create_namespaced_pod(kube_namespace, pod)
    stable, canary = source()  # the pod is Pending (no node here): nothing to read yet
    assert (stable.version, canary.version) == ("gdelt-tone-predictor-00001", "gdelt-tone-predictor-00002")
    assert stable.requests == canary.requests == 0


def test_a_kserve_release_without_traffic_is_rolled_back_and_the_champion_stays(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str, kubeconfig: Path, tmp_path: Path, validated
) -> None:  # type: ignore[no-untyped-def]
    """The pipeline's cluster path: gate-passed v2 goes on the InferenceService as a canary; with no
    revision reporting traffic (no KServe controller here) the step times out and v2 is rolled back."""
    table = write_table(validated("20241022130000"), tmp_path / "train.parquet")
    _train_and_register(tmp_path, table, "v1", TrainConfig(num_threads=1), CHAMPION)
    _train_and_register(tmp_path, table, "v2", TrainConfig(num_threads=1, seed=2), "challenger")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    verdict = {"promote": True, "reason": "equivalent, preferred"}
    for version in ("1", "2"):
        record_gate(tracking_uri=tracking, model_name=MODEL_NAME, version=version, verdict=verdict)
    arguments = {
        "tracking_uri": tracking,
        "model_name": MODEL_NAME,
        "canary_policy": json.dumps({"steps": [10], "step_timeout_s": 1, "interval_s": 0.2}),
        "target": "kserve",
        "serving_dir": "",
        "port": 0,
        "namespace": kube_namespace,
        "image": SERVING_IMAGE,
        "env_secret": "predictor-env",
        "logger_url": "http://monitor.driftpilot.svc/",
        "incident": "20241022150000",
        "state_dir": str(tmp_path / "decisions"),
    }
    environment = {"KUBECONFIG": str(kubeconfig)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        assert release_challenger.python_func(**arguments, version="1", holder="run-a") == "served"
        assert release_challenger.python_func(**arguments, version="2", holder="run-b") == "rolled_back"
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, MODEL_NAME)
    assert stored is not None and traffic(stored) == {"canary": 0, "previous": 100}
    assert model_uri(stored) == f"models:/{MODEL_NAME}/2"  # the canary revision's URI; traffic is all on v1
    assert stored["metadata"]["annotations"]["driftpilot.io/incident"] == "20241022150000"
    assert stored["spec"]["predictor"]["logger"]["url"] == "http://monitor.driftpilot.svc/"
    (container,) = stored["spec"]["predictor"]["containers"]
    assert container["env"] == [{"name": "MLFLOW_TRACKING_URI", "value": tracking}]
    lineage = lineage_of(tracking_uri=tracking, model_name=MODEL_NAME, version="2")
    assert lineage["canary"] == "rolled_back" and "not enough evidence" in lineage["canary_reason"]
    champion = find_alias(tracking_uri=tracking, model_name=MODEL_NAME)
    assert champion is not None and champion.version == "1"
    (released,) = DecisionState(tmp_path / "decisions").ledger.story("20241022150000")  # v1 was served, not released
    assert released.kind == "released" and released.actor == "run-b"
    assert released.data["version"] == "2" and released.data["promoted"] is False


def test_a_standard_mode_canary_deployment_is_made_scaled_and_removed_beside_kserves(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    """The router's objects on the API server (no controllers run here: no pods, no traffic)."""
    stored = roll_out(kube_api, kube_namespace, _spec(1, mode="RawDeployment"), canary_percent=None)
    apps = client.AppsV1Api(kube_api)
    labels = {"app": "isvc.gdelt-tone-predictor", "serving.kserve.io/inferenceservice": "gdelt-tone"}
    container = stored["spec"]["predictor"]["containers"][0]
    predictor = {  # what KServe's reconciler makes of the InferenceService (it does not run here)
        "metadata": {"name": "gdelt-tone-predictor", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": stored["spec"]["predictor"]["volumes"]},
            },
        },
    }
    apps.create_namespaced_deployment(kube_namespace, predictor)
    calls: list[str] = []

    def router(version: int) -> StandardCanaryRouter:
        return StandardCanaryRouter(
            kube_api, kube_namespace, stored, f"models:/gdelt-tone/{version}",
            stats=lambda: SimulatedTraffic(version, lambda: 0)(),
            promote_to=lambda: calls.append(f"promote {version}"), restore=lambda: calls.append(f"restore {version}"),
        )  # fmt: skip

    def canary() -> client.V1Deployment | None:
        found = [
            d for d in apps.list_namespaced_deployment(kube_namespace).items if d.metadata.name.endswith("-canary")
        ]
        return found[0] if found else None

    left = router(2)
    left.set_canary(10)
    made = canary()
    assert made is not None and made.spec.replicas == 1
    assert made.metadata.owner_references[0].uid == stored["metadata"]["uid"]
    assert "models:/gdelt-tone/2" in made.spec.template.spec.containers[0].args
    assert made.spec.template.metadata.labels == {**labels, TRACK_LABEL: "canary"}
    left.set_canary(90)  # no pod is ready here: one stable pod is assumed
    assert canary().spec.replicas == 9  # type: ignore[union-attr]
    assert left.share == "9 canary and 1 stable pod(s): 90% of the requests"

    released = router(3)  # one left by a release that did not finish is brought to the new model
    released.set_canary(10)
    brought = canary()
    assert brought is not None and brought.spec.replicas == 1
    assert "models:/gdelt-tone/3" in brought.spec.template.spec.containers[0].args
    released.roll_back()
    assert canary() is None and calls == []
    released.roll_back()  # nothing left to delete: still fine

    promoted = router(4)
    promoted.set_canary(10)
    promoted.promote()
    assert canary() is None and calls == ["promote 4"]

    def not_rolled_out() -> None:
        raise ServingError("the predictor pods did not roll out")

    failing = StandardCanaryRouter(
        kube_api, kube_namespace, stored, "models:/gdelt-tone/5", stats=lambda: SimulatedTraffic(5, lambda: 0)(),
        promote_to=not_rolled_out,
        restore=lambda: calls.append("restore 5"),
    )  # fmt: skip
    failing.set_canary(10)
    with pytest.raises(ServingError):
        failing.promote()
    failing.roll_back()  # what run_canary does when promote raises
    assert canary() is None and calls == ["promote 4", "restore 5"]
