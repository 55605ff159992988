"""Rollouts on the real API server with KServe's CRD: one at a time per InferenceService, and rollback by hand.

``driftpilot rollback`` and the README's ``kubectl patch`` are checked to leave the same object;
two rollouts racing for one InferenceService: exactly one proceeds and the other is told why.
"""

import datetime as dt
import threading
from pathlib import Path

import pytest
from kubernetes import client

from components.common.images import SERVING_IMAGE
from components.common.kube import INFERENCE_SERVICE, get_custom, patch_custom
from components.deploy.kserve import PREVIOUS_MODEL_ANNOTATION, PredictorSpec, model_uri, roll_back, roll_out, traffic
from components.deploy.lease import RolloutBusyError, rollout_lease
from pipelines.cli import main

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
