"""The Standard-mode canary's pods: how many a step runs, and the Deployment made from KServe's predictor."""

import copy
from typing import Any

import pytest

from components.common.errors import ServingError
from components.deploy.standard import TRACK_LABEL, canary_deployment, canary_replicas, stable_replicas

ISVC = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "gdelt-tone", "namespace": "serving", "uid": "0d5c-uid"},
}


def _predictor() -> dict[str, Any]:
    """KServe v0.20's predictor Deployment in Standard mode, as the API returns it (trimmed to what matters)."""
    labels = {
        "app": "isvc.gdelt-tone-predictor",
        "component": "predictor",
        "serving.kserve.io/inferenceservice": "gdelt-tone",
    }
    args = ["--model_name", "gdelt-tone", "--model_uri", "models:/gdelt-tone/1", "--http_port", "8080"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "gdelt-tone-predictor",
            "namespace": "serving",
            "labels": dict(labels),
            "uid": "deployment-uid",
            "resourceVersion": "812",
            "ownerReferences": [{"kind": "InferenceService", "name": "gdelt-tone", "uid": "0d5c-uid"}],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "isvc.gdelt-tone-predictor"}},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
                "spec": {
                    "containers": [
                        {"name": "kserve-container", "image": "driftpilot/python-serving:0.1.0", "args": args},
                        {"name": "agent", "image": "kserve/agent:v0.20.0", "args": ["--model-uri", "keep"]},
                    ]
                },
            },
        },
        "status": {"readyReplicas": 1},
    }


@pytest.mark.parametrize(
    ("percent", "stable", "pods"),
    [(10, 1, 1), (50, 1, 1), (90, 1, 9), (10, 9, 1), (25, 3, 1), (50, 3, 3), (20, 0, 1)],
)
def test_a_step_runs_the_canary_pods_that_come_nearest_its_share_and_at_least_one(
    percent: int, stable: int, pods: int
) -> None:
    assert canary_replicas(percent, stable) == pods


@pytest.mark.parametrize(
    ("desired", "ready", "stable"),
    [(1, 1, 1), (1, 2, 1), (3, 2, 2), (3, 4, 3), (1, None, 1), (None, None, 1), (2, 0, 1)],
)
def test_the_stable_pods_counted_are_the_ready_ones_but_not_a_rollouts_surge(
    desired: int | None, ready: int | None, stable: int
) -> None:
    predictor = _predictor()
    predictor["spec"]["replicas"] = desired
    predictor["status"] = {} if ready is None else {"readyReplicas": ready}
    assert stable_replicas(predictor) == stable


@pytest.mark.parametrize("percent", [0, 100, -5])
def test_a_step_outside_the_open_range_is_refused(percent: int) -> None:
    with pytest.raises(ValueError, match="strictly between 0 and 100"):
        canary_replicas(percent, 1)


def test_the_canary_deployment_is_kserves_predictor_on_the_new_model_behind_the_same_service() -> None:
    predictor = _predictor()
    before = copy.deepcopy(predictor)
    canary = canary_deployment(predictor, ISVC, "models:/gdelt-tone/2", 3)
    assert predictor == before  # the predictor read is not changed
    assert canary["metadata"]["name"] == "gdelt-tone-predictor-canary"
    assert canary["metadata"]["namespace"] == "serving"
    assert "resourceVersion" not in canary["metadata"] and "uid" not in canary["metadata"]
    (owner,) = canary["metadata"]["ownerReferences"]  # deleting the InferenceService removes it
    assert (owner["kind"], owner["name"], owner["uid"]) == ("InferenceService", "gdelt-tone", "0d5c-uid")
    assert canary["spec"]["replicas"] == 3
    # KServe deletes Deployments labelled as its predictor's that it did not make: the canary is not labelled so.
    labels = canary["metadata"]["labels"]
    assert not {"serving.kserve.io/inferenceservice", "component"} <= set(labels), labels
    assert labels[TRACK_LABEL] == "canary"
    pod_labels = canary["spec"]["template"]["metadata"]["labels"]
    # The Service selects the predictor's labels: the canary pods carry them all, and the track.
    assert {**predictor["spec"]["template"]["metadata"]["labels"], TRACK_LABEL: "canary"} == pod_labels
    selector = canary["spec"]["selector"]["matchLabels"]
    assert selector == {"app": "isvc.gdelt-tone-predictor", TRACK_LABEL: "canary"}
    assert selector.items() <= pod_labels.items()
    server, agent = canary["spec"]["template"]["spec"]["containers"]
    assert server["args"] == [
        "--model_name",
        "gdelt-tone",
        "--model_uri",
        "models:/gdelt-tone/2",
        "--http_port",
        "8080",
    ]
    assert agent == predictor["spec"]["template"]["spec"]["containers"][1]


def test_a_predictor_without_the_model_server_container_is_refused_with_what_it_has() -> None:
    predictor = _predictor()
    predictor["spec"]["template"]["spec"]["containers"] = predictor["spec"]["template"]["spec"]["containers"][1:]
    with pytest.raises(ServingError, match="has no kserve-container"):
        canary_deployment(predictor, ISVC, "models:/gdelt-tone/2", 1)
    predictor = _predictor()
    predictor["spec"]["template"]["spec"]["containers"][0]["args"] = ["--model_name", "gdelt-tone"]
    with pytest.raises(ServingError, match="name no --model_uri"):
        canary_deployment(predictor, ISVC, "models:/gdelt-tone/2", 1)
