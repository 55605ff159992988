"""Serve a registered model version as a KServe InferenceService, rolled out through a canary.

The predictor is our serving image (``python -m components.serve``) loading the version from the
MLflow registry. KServe's canary rollout works on one InferenceService: changing the predictor
with ``canaryTrafficPercent: N`` starts a new revision that gets N% of the traffic while the last
rolled-out revision keeps the rest; removing the field promotes the new revision to 100%;
setting it to 0 rolls back (all traffic to the previous revision). Canaries need KServe's
Serverless (Knative) deployment mode. In RawDeployment mode there are no revisions to split
traffic between: a rollout replaces the predictor, and a rollback puts the previous model URI
(kept in an annotation) back.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from components.common.kube import INFERENCE_SERVICE, apply_custom, get_custom, patch_custom
from components.common.security import SECURE_CONTAINER, SECURE_POD
from components.deploy.canary import CanaryPolicy, VariantStats, Verdict
from components.deploy.controller import CanaryOutcome, run_canary
from components.deploy.lease import rollout_lease

__all__ = [
    "MODES",
    "PREVIOUS_MODEL_ANNOTATION",
    "InferenceServiceRouter",
    "PredictorSpec",
    "inference_service",
    "model_uri",
    "promote",
    "release",
    "roll_back",
    "roll_out",
    "traffic",
]

MODES = ("Serverless", "RawDeployment")
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
PREVIOUS_MODEL_ANNOTATION = "driftpilot.io/previous-model-uri"

# The predictor's pod securityContext is KServe's to set: the container carries the pod's settings too.
_SECURE = {**SECURE_CONTAINER, "runAsNonRoot": True, "seccompProfile": SECURE_POD["seccompProfile"]}


@dataclass(frozen=True)
class PredictorSpec:
    """What an InferenceService's predictor serves and how.

    Attributes:
        name: InferenceService name (also the model name in V1/V2 URLs).
        image: Serving image.
        model_uri: MLflow model URI of the version, e.g. ``models:/gdelt-tone/3``.
        env: Environment variables of the container (``MLFLOW_TRACKING_URI``).
        env_secret: Secret whose keys join the container's environment (S3 credentials when
            the tracking server does not serve artifacts); '' for none.
        service_account: ServiceAccount of the predictor pods.
        logger_url: Where KServe's logger posts every request and response (the drift monitor);
            '' disables logging.
        min_replicas: Replicas kept warm.
        max_replicas: Autoscaling ceiling.
        resources: Container requests and limits.
        labels: Extra labels on the InferenceService.
        annotations: Extra annotations (``driftpilot.io/incident``, ``driftpilot.io/model-version``).
        mode: KServe deployment mode, ``Serverless`` (canaries) or ``RawDeployment``.
    """

    name: str
    image: str
    model_uri: str
    env: dict[str, str] = field(default_factory=dict)
    env_secret: str = ""
    service_account: str = ""
    logger_url: str = ""
    min_replicas: int = 1
    max_replicas: int = 3
    resources: dict[str, dict[str, str]] = field(
        default_factory=lambda: {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    )
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    mode: str = "Serverless"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: use one of {MODES}")


def inference_service(spec: PredictorSpec, *, canary_percent: int | None = None) -> dict[str, Any]:
    """Return the InferenceService manifest for a predictor.

    Args:
        spec: The predictor.
        canary_percent: Share of traffic for this revision while the previous one keeps the rest
            (0–100); None rolls it out to all traffic.

    Returns:
        The manifest (``serving.kserve.io/v1beta1``).

    Raises:
        ValueError: ``canary_percent`` is outside 0–100, or given in RawDeployment mode.
    """
    if canary_percent is not None and not 0 <= canary_percent <= 100:
        raise ValueError(f"canary_percent must be within 0-100, got {canary_percent}")
    if canary_percent is not None and spec.mode != "Serverless":
        raise ValueError(f"{spec.mode} has no revisions to split traffic between: canaries need Serverless")
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": spec.image,
        "args": ["--model_name", spec.name, "--model_uri", spec.model_uri, "--http_port", "8080"],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": spec.resources,
        "securityContext": _SECURE,
        "readinessProbe": {"httpGet": {"path": f"/v2/models/{spec.name}/ready", "port": 8080}},
    }
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.env_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.env_secret}}]
    predictor: dict[str, Any] = {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "containers": [container],
    }
    if spec.service_account:
        predictor["serviceAccountName"] = spec.service_account
    if spec.logger_url:
        predictor["logger"] = {"mode": "all", "url": spec.logger_url}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    return {
        "apiVersion": INFERENCE_SERVICE.api_version,
        "kind": INFERENCE_SERVICE.kind,
        "metadata": {
            "name": spec.name,
            "labels": {"app.kubernetes.io/part-of": "driftpilot", **spec.labels},
            "annotations": {**spec.annotations, MODE_ANNOTATION: spec.mode},
        },
        "spec": {"predictor": predictor},
    }


def model_uri(isvc: dict[str, Any]) -> str:
    """The model URI an InferenceService's predictor serves ('' when it names none)."""
    args = isvc["spec"]["predictor"]["containers"][0].get("args", [])
    return str(args[args.index("--model_uri") + 1]) if "--model_uri" in args else ""


def roll_out(
    api: client.ApiClient, namespace: str, spec: PredictorSpec, *, canary_percent: int | None, dry_run: bool = False
) -> dict[str, Any]:
    """Create the InferenceService, or start a canary of a new predictor on the existing one.

    The replaced model URI is kept in the ``driftpilot.io/previous-model-uri`` annotation (what a
    RawDeployment rollback restores). The replace carries the resourceVersion read, so a rollout
    racing another fails with 409 instead of overwriting it; hold ``rollout_lease`` around it.

    Args:
        api: Kubernetes API client.
        namespace: Namespace of the InferenceService.
        spec: The new predictor.
        canary_percent: Traffic share of the new revision; ignored (all traffic) when the
            InferenceService is new, as a first revision has nothing to share with, and in
            RawDeployment mode.
        dry_run: Validate on the server without storing.

    Returns:
        The stored InferenceService.
    """
    stored = get_custom(api, INFERENCE_SERVICE, namespace, spec.name)
    canary = canary_percent if stored is not None and spec.mode == "Serverless" else None
    manifest = inference_service(spec, canary_percent=canary)
    if stored is not None and model_uri(stored) != spec.model_uri:
        manifest["metadata"]["annotations"][PREVIOUS_MODEL_ANNOTATION] = model_uri(stored)
    return apply_custom(api, INFERENCE_SERVICE, namespace, manifest, dry_run=dry_run)


def _set_canary(api: client.ApiClient, namespace: str, name: str, percent: int | None) -> dict[str, Any]:
    return patch_custom(
        api, INFERENCE_SERVICE, namespace, name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
    )


def promote(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """Give the canary revision all traffic: remove ``canaryTrafficPercent``."""
    return _set_canary(api, namespace, name, None)


def roll_back(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """Send all traffic back to the previous model.

    Serverless: ``canaryTrafficPercent: 0`` (the last rolled-out revision takes all traffic).
    RawDeployment: the predictor serves the model URI of ``driftpilot.io/previous-model-uri``
    again (the two URIs swap, so a second rollback undoes the first).

    Raises:
        LookupError: There is no such InferenceService, or a RawDeployment one has no previous model.
    """
    stored = get_custom(api, INFERENCE_SERVICE, namespace, name)
    if stored is None:
        raise LookupError(f"no InferenceService {namespace}/{name}")
    annotations = stored["metadata"].get("annotations", {})
    if annotations.get(MODE_ANNOTATION, "Serverless") == "Serverless":
        return _set_canary(api, namespace, name, 0)
    previous = annotations.get(PREVIOUS_MODEL_ANNOTATION, "")
    if not previous:
        raise LookupError(f"{namespace}/{name} has no previous model to roll back to ({PREVIOUS_MODEL_ANNOTATION})")
    container = stored["spec"]["predictor"]["containers"][0]
    args = list(container["args"])
    current = args[args.index("--model_uri") + 1]
    args[args.index("--model_uri") + 1] = previous
    containers = [{**container, "args": args}, *stored["spec"]["predictor"]["containers"][1:]]
    patch = {
        "metadata": {"annotations": {PREVIOUS_MODEL_ANNOTATION: current}},
        "spec": {"predictor": {"containers": containers}},
    }
    return patch_custom(api, INFERENCE_SERVICE, namespace, name, patch)


def traffic(isvc: dict[str, Any]) -> dict[str, int]:
    """Traffic split the spec asks for: ``{"canary": N, "previous": 100 - N}``, or all to ``latest``."""
    percent = isvc["spec"]["predictor"].get("canaryTrafficPercent")
    if percent is None:
        return {"latest": 100}
    return {"canary": int(percent), "previous": 100 - int(percent)}


class InferenceServiceRouter:
    """The canary router of an InferenceService: KServe splits the traffic, a stats source counts it.

    Args:
        api: Kubernetes API client.
        namespace: The InferenceService's namespace.
        name: Its name.
        stats: Cumulative (stable, canary) stats of its two revisions, from wherever the cluster
            keeps them (the predictors' metrics, the inference log).
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, stats: Callable[[], tuple[VariantStats, VariantStats]]
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self._stats = stats

    def set_canary(self, percent: int) -> None:
        """Patch ``canaryTrafficPercent``."""
        _set_canary(self.api, self.namespace, self.name, percent)

    def stats(self) -> tuple[VariantStats, VariantStats]:
        """The two revisions' stats."""
        return self._stats()

    def promote(self) -> None:
        """All traffic to the new revision."""
        promote(self.api, self.namespace, self.name)

    def roll_back(self) -> None:
        """All traffic back to the previous model."""
        roll_back(self.api, self.namespace, self.name)


def release(
    api: client.ApiClient,
    namespace: str,
    spec: PredictorSpec,
    policy: CanaryPolicy,
    *,
    holder: str,
    stats: Callable[[], tuple[VariantStats, VariantStats]],
    record: Callable[[Verdict], None] = lambda verdict: None,
) -> CanaryOutcome | None:
    """Roll a new model out on an InferenceService through a judged canary, holding its rollout lease.

    A new InferenceService (nothing to compare with) and RawDeployment mode (no revisions to
    split traffic between) take the model at once; otherwise the new revision starts at the
    policy's first step and ``run_canary`` promotes it or rolls it back.

    Args:
        api: Kubernetes API client.
        namespace: The InferenceService's namespace.
        spec: The new predictor.
        policy: The canary policy.
        holder: Who releases (the KFP run, the incident): named to a rollout that is refused.
        stats: The stats source of the two revisions.
        record: Called with every canary decision.

    Returns:
        The canary's outcome, or None when no canary ran.

    Raises:
        RolloutBusyError: Another rollout holds the InferenceService.
    """
    ttl_s = int(len(policy.steps) * (policy.step_timeout_s + policy.interval_s) + 300)
    with rollout_lease(api, namespace, spec.name, holder, ttl_s=ttl_s):
        stored = get_custom(api, INFERENCE_SERVICE, namespace, spec.name)
        if (
            stored is not None
            and model_uri(stored) == spec.model_uri
            and "canaryTrafficPercent" not in stored["spec"]["predictor"]
        ):
            return None  # already serving it
        roll_out(api, namespace, spec, canary_percent=policy.steps[0])
        if stored is None or spec.mode != "Serverless":
            return None
        router = InferenceServiceRouter(api, namespace, spec.name, stats)
        return run_canary(router, policy, record=record)
