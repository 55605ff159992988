"""A canary in KServe's Standard (RawDeployment) mode, which has no revisions to split traffic between.

The new model runs in a Deployment of its own, ``<name>-predictor-canary``: KServe's predictor
Deployment with the new model URI and the label ``driftpilot.io/track: canary``. Its pods carry
the labels the predictor's Service selects (the Deployment itself does not carry KServe's, which
would have KServe delete it as an orphan of its own), so the Service spreads requests evenly over the ready
pods of both: with ``s`` stable pods, ``c`` canary pods take ``c / (c + s)`` of the requests (the
canary Argo Rollouts makes without a traffic router splits the same way). A step of ``p`` percent
runs ``max(1, round(p * s / (100 - p)))`` canary pods; as a canary has at least one pod, one
stable pod makes every step 50%. What a step really got is in its decision's reason.

Promoting puts the new model URI on the InferenceService (KServe rolls its Deployment while the
canary pods keep answering) and deletes the canary Deployment once the predictor's own pods
serve the new model; rolling back deletes the canary Deployment. It is owned by the
InferenceService, so deleting that removes it too, and ``kubectl delete deployment
<name>-predictor-canary`` is a rollback by hand.
"""

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from kubernetes import client

from components.common.errors import ServingError
from components.deploy.canary import VariantStats, Verdict

__all__ = [
    "TRACK_LABEL",
    "StandardCanaryRouter",
    "canary_deployment",
    "canary_deployment_name",
    "canary_replicas",
    "predictor_deployment_name",
]

TRACK_LABEL = "driftpilot.io/track"
OWNER_LABEL = "driftpilot.io/inferenceservice"


def predictor_deployment_name(name: str) -> str:
    """KServe's predictor Deployment of an InferenceService (Standard mode)."""
    return f"{name}-predictor"


def canary_deployment_name(name: str) -> str:
    """The canary Deployment of an InferenceService's predictor."""
    return f"{name}-predictor-canary"


def canary_replicas(percent: int, stable: int) -> int:
    """Canary pods for a step of ``percent`` beside ``stable`` ready stable pods (at least one)."""
    if not 0 < percent < 100:
        raise ValueError(f"percent={percent} must be strictly between 0 and 100")
    return max(1, round(percent * max(stable, 1) / (100 - percent)))


def _set_model_uri(args: list[str], uri: str) -> list[str]:
    if "--model_uri" not in args:
        raise ServingError(f"the predictor's arguments {args} name no --model_uri")
    args = list(args)
    args[args.index("--model_uri") + 1] = uri
    return args


def stable_replicas(predictor: dict[str, Any]) -> int:
    """The stable pods a canary step shares the requests with.

    The predictor's ready pods, at most as many as it asks for (ready pods beyond that are a
    rollout's surge, about to go), and at least one.

    Args:
        predictor: KServe's predictor Deployment, as the API returns it.
    """
    desired = int(predictor.get("spec", {}).get("replicas") or 1)
    return max(1, min(desired, int(predictor.get("status", {}).get("readyReplicas") or 0)))


def canary_deployment(predictor: dict[str, Any], isvc: dict[str, Any], model_uri: str, replicas: int) -> dict[str, Any]:
    """The canary Deployment made from KServe's predictor Deployment.

    Args:
        predictor: KServe's predictor Deployment (as the API returns it).
        isvc: The InferenceService (the canary Deployment's owner).
        model_uri: What the canary serves.
        replicas: Its pods.

    Returns:
        The Deployment manifest (``apps/v1``).

    Raises:
        ServingError: The predictor has no ``kserve-container`` started with a ``--model_uri``.
    """
    template = copy.deepcopy(predictor["spec"]["template"])
    template["metadata"].setdefault("labels", {})[TRACK_LABEL] = "canary"
    containers = template["spec"]["containers"]
    server = next((c for c in containers if c["name"] == "kserve-container"), None)
    if server is None:
        raise ServingError(f"Deployment {predictor['metadata']['name']} has no kserve-container")
    server["args"] = _set_model_uri(server.get("args", []), model_uri)
    selector = {**predictor["spec"]["selector"].get("matchLabels", {}), TRACK_LABEL: "canary"}
    metadata = isvc["metadata"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": canary_deployment_name(metadata["name"]),
            "namespace": metadata.get("namespace", predictor["metadata"].get("namespace")),
            # Not KServe's labels: it deletes the predictor Deployments labelled as its own that it did not make.
            "labels": {"app.kubernetes.io/part-of": "driftpilot", OWNER_LABEL: metadata["name"], TRACK_LABEL: "canary"},
            "ownerReferences": [
                {
                    "apiVersion": isvc["apiVersion"],
                    "kind": isvc["kind"],
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                }
            ],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
    }


class StandardCanaryRouter:
    """The canary router of a Standard-mode InferenceService: canary pods beside the stable ones.

    Args:
        api: Kubernetes API client (allowed to get, create, patch and delete Deployments).
        namespace: The InferenceService's namespace.
        isvc: The InferenceService as stored before the release (the canary's owner).
        model_uri: What the canary serves.
        stats: Cumulative (stable, canary) stats (``PodMetricsSource`` in ``RawDeployment`` mode).
        promote_to: Called to promote: puts the model on the InferenceService and waits until
            its own pods serve it; raises when they do not.
        restore: Called on a rollback after ``promote_to`` began: puts the previous model back.
    """

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        isvc: dict[str, Any],
        model_uri: str,
        *,
        stats: Callable[[], tuple[VariantStats, VariantStats]],
        promote_to: Callable[[], None],
        restore: Callable[[], object],
    ) -> None:
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.isvc = isvc
        self.name = str(isvc["metadata"]["name"])
        self.model_uri = model_uri
        self._stats = stats
        self._promote_to = promote_to
        self._restore = restore
        self._promoting = False
        self.replicas = 0
        self.share = ""

    def _predictor(self) -> dict[str, Any]:
        name = predictor_deployment_name(self.name)
        try:
            response = self.apps.read_namespaced_deployment(name, self.namespace, _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 404:
                raise ServingError(f"{self.namespace}/{self.name}: KServe's Deployment {name} is missing") from exc
            raise
        return dict(json.loads(response.data))

    def set_canary(self, percent: int) -> None:
        """Run as many canary pods as ``percent`` of the requests needs beside the stable pods."""
        predictor = self._predictor()
        stable = stable_replicas(predictor)
        self.replicas = replicas = canary_replicas(percent, stable)
        self.share = (
            f"{replicas} canary and {stable} stable pod(s): {100 * replicas / (replicas + stable):.0f}% of the requests"
        )
        manifest = canary_deployment(predictor, self.isvc, self.model_uri, replicas)
        try:
            self.apps.create_namespaced_deployment(self.namespace, manifest)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            # Scaled; and one a release that did not finish left is brought to this model.
            self.apps.patch_namespaced_deployment(manifest["metadata"]["name"], self.namespace, manifest)

    def stats(self) -> tuple[VariantStats, VariantStats]:
        """The stable and canary pods' stats."""
        return self._stats()

    def with_share(self, verdict: Verdict) -> Verdict:
        """A decision whose reason says what share of the requests its step really had."""
        return dataclasses.replace(verdict, reason=f"{verdict.reason} [{self.share}]") if self.share else verdict

    def _delete(self) -> None:
        try:
            self.apps.delete_namespaced_deployment(canary_deployment_name(self.name), self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise

    def promote(self) -> None:
        """The InferenceService serves the new model; then the canary pods go."""
        self._promoting = True
        self._promote_to()
        self._delete()

    def roll_back(self) -> None:
        """The canary pods go (and the previous model comes back if a promotion had begun)."""
        self._delete()
        if self._promoting:
            self._restore()
