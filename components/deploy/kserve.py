"""Serve a registered model version as a KServe InferenceService, rolled out through a canary.

The predictor is our serving image (``python -m components.serve``) loading the version from the
MLflow registry. KServe's canary rollout works on one InferenceService: changing the predictor
with ``canaryTrafficPercent: N`` starts a new revision that gets N% of the traffic while the last
rolled-out revision keeps the rest; removing the field promotes the new revision to 100%;
setting it to 0 rolls back (all traffic to the previous revision). Canaries need KServe's
Serverless (Knative) deployment mode. In RawDeployment (KServe's Standard) mode there are no
revisions to split traffic between: the canary runs on pods of its own beside KServe's
(``components.deploy.standard``); a promotion replaces the predictor's pods (the Deployment keeps
the old ones until the new ones are ready, ``release`` waits for them), and a rollback by hand
puts the previous model URI (kept in an annotation) back.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from components.common.errors import ServingError
from components.common.kube import INFERENCE_SERVICE, apply_custom, get_custom, patch_custom, pod_ready
from components.common.security import SECURE_CONTAINER, SECURE_POD
from components.deploy.canary import CanaryPolicy, VariantStats, Verdict
from components.deploy.controller import CanaryOutcome, run_canary
from components.deploy.lease import rollout_lease
from components.deploy.standard import TRACK_LABEL, StandardCanaryRouter

__all__ = [
    "MODES",
    "PREVIOUS_MODEL_ANNOTATION",
    "InferenceServiceRouter",
    "PredictorSpec",
    "Rollout",
    "inference_service",
    "model_uri",
    "promote",
    "release",
    "roll_back",
    "roll_out",
    "rollout_status",
    "traffic",
    "wait_rolled_out",
]

MODES = ("Serverless", "RawDeployment")
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
PREVIOUS_MODEL_ANNOTATION = "driftpilot.io/previous-model-uri"

# The predictor's pod securityContext is KServe's to set: the container carries the pod's settings too.
_SECURE = {**SECURE_CONTAINER, "runAsNonRoot": True, "seccompProfile": SECURE_POD["seccompProfile"]}
# Seconds a RawDeployment predictor keeps a client connection: clients reach new (canary) pods that soon.
_CONNECTION_AGE_S = 5
# Seconds a retired RawDeployment predictor pod keeps serving: kube-proxy moves new connections in about
# a second, and longer than a connection's age, every kept-alive client has been told to reconnect
# (elsewhere) before the server stops and closes what is left.
_DRAIN_S = 2 * _CONNECTION_AGE_S
# Waiting reasons of a predictor container that will not start without a change to its spec.
_STUCK_REASONS = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
)


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
        # A server that exits on a model it cannot load says why in its status (what a rollback reports).
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # The root is read-only: the model is downloaded to a writable /tmp.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.mode == "RawDeployment":
        # A rolling update retires the old pods: each keeps answering until kube-proxy has taken it
        # out of the Service (Knative drains its revisions itself and refuses the field).
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": _DRAIN_S}}}
        # The Service balances connections: kept-alive clients move to new (canary) pods only
        # when their connections are renewed (Knative's proxies balance requests).
        container["args"] += ["--max_connection_age_s", str(_CONNECTION_AGE_S)]
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    if spec.env_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.env_secret}}]
    predictor: dict[str, Any] = {
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
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


def _uri_in(args: list[str]) -> str:
    return str(args[args.index("--model_uri") + 1]) if "--model_uri" in args else ""


def model_uri(isvc: dict[str, Any]) -> str:
    """The model URI an InferenceService's predictor serves ('' when it names none)."""
    return _uri_in(isvc["spec"]["predictor"]["containers"][0].get("args", []))


@dataclass(frozen=True)
class Rollout:
    """Where a RawDeployment rollout of a model URI stands, from the InferenceService's predictor pods.

    Attributes:
        ready: Pods of the new model URI that are Ready.
        old: Pods of another model URI not yet retired.
        stuck: Why a pod of the new URI will not become ready (``pod: reason``); '' when none is stuck.
    """

    ready: int
    old: int
    stuck: str

    def done(self, replicas: int) -> bool:
        """At least ``replicas`` new pods are ready and no old pod is left."""
        return self.ready >= replicas and self.old == 0


def rollout_status(api: client.ApiClient, namespace: str, name: str, uri: str, *, canary: bool = False) -> Rollout:
    """Read the predictor pods of an InferenceService and how far they are on ``uri``.

    Pods being deleted are not counted; a pod counts for the model URI its ``kserve-container``
    is started with.

    Args:
        api: Kubernetes API client (allowed to list pods).
        namespace: The InferenceService's namespace.
        name: Its name.
        uri: The model URI rolled out.
        canary: Read the Standard-mode canary's pods (``components.deploy.standard``) instead of
            KServe's own.
    """
    track = f"{TRACK_LABEL}=canary" if canary else f"!{TRACK_LABEL}"
    selector = f"serving.kserve.io/inferenceservice={name},{track}"
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    ready = old = 0
    stuck = ""
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue
        container = next((c for c in pod.spec.containers if c.name == "kserve-container"), None)
        if container is None or _uri_in(list(container.args or [])) != uri:
            old += 1
            continue
        statuses = pod.status.container_statuses or []
        why = next((_why_stuck(s) for s in statuses if s.name == "kserve-container"), "")
        if why:
            stuck = f"{pod.metadata.name}: {why}"
        if pod.status.phase == "Running" and pod_ready(pod):
            ready += 1
    return Rollout(ready, old, stuck)


def _why_stuck(status: Any) -> str:
    """Why a predictor container will not become ready ('' when it may yet).

    It cannot be created or its image pulled, or its model server exited with an error and
    was restarted (a model that does not load fails the same way every time; its last log line,
    the termination message, says why).
    """
    waiting = status.state.waiting if status.state else None
    if waiting is not None and waiting.reason in _STUCK_REASONS:
        return f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
    exited = (status.state.terminated if status.state else None) or (
        status.last_state.terminated if status.last_state else None
    )
    if status.restart_count >= 1 and exited is not None and exited.exit_code != 0:
        lines = (exited.message or "").strip().splitlines()
        said = f": {lines[-1]}" if lines else ""
        return f"exited with code {exited.exit_code}, restarted {status.restart_count} time(s){said}"
    return ""


def wait_rolled_out(
    api: client.ApiClient,
    namespace: str,
    spec: PredictorSpec,
    *,
    timeout_s: float,
    interval_s: float = 2.0,
    canary: bool = False,
    replicas: int | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Wait until a RawDeployment rollout of ``spec`` is done (``Rollout.done`` for its minimum replicas).

    Args:
        api: Kubernetes API client (allowed to list pods).
        namespace: The InferenceService's namespace.
        spec: The predictor rolled out.
        timeout_s: How long the new pods have to become ready.
        interval_s: Seconds between reads.
        canary: Wait for the Standard-mode canary's pods instead of KServe's own.
        replicas: Ready pods needed (``spec.min_replicas`` when None).
        clock: Monotonic seconds.
        sleep: Waits between reads.

    Returns:
        '' when it is done; otherwise why not: a pod that will not become ready (its server
        exited with an error again, its image cannot be had; said as soon as it is seen), or the
        timeout with the last state.
    """
    deadline = clock() + timeout_s
    needed = spec.min_replicas if replicas is None else replicas
    what = "canary" if canary else "predictor"
    while True:
        state = rollout_status(api, namespace, spec.name, spec.model_uri, canary=canary)
        if state.done(needed):
            return ""
        if state.stuck:
            return f"a {what} pod of {spec.model_uri} will not become ready ({state.stuck})"
        if clock() >= deadline:
            return (
                f"{spec.model_uri} not rolled out in {timeout_s:.0f} s: {state.ready} of {needed} "
                f"new {what} pod(s) ready, {state.old} old pod(s) left"
            )
        sleep(interval_s)


def roll_out(
    api: client.ApiClient, namespace: str, spec: PredictorSpec, *, canary_percent: int | None, dry_run: bool = False
) -> dict[str, Any]:
    """Create the InferenceService, or start a canary of a new predictor on the existing one.

    The replaced model URI is kept in the ``driftpilot.io/previous-model-uri`` annotation (what a
    RawDeployment rollback restores). The replace carries the resourceVersion read, so a rollout
    racing another fails with 409 instead of overwriting it (KServe's status writes are no
    conflict: ``apply_custom``); hold ``rollout_lease`` around it.

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
    return apply_custom(api, INFERENCE_SERVICE, namespace, manifest, dry_run=dry_run, read=stored)


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

    A new InferenceService (nothing to compare with) takes the model at once. Otherwise the canary
    starts at the policy's first step and ``run_canary`` promotes it or rolls it back: in
    Serverless mode the new revision (``canaryTrafficPercent``); in RawDeployment mode, which has
    no revisions, canary pods beside KServe's own (``components.deploy.standard``), which end the
    release with a rollback when they do not become ready within ``policy.step_timeout_s`` (a
    model that does not load crash-loops).

    Args:
        api: Kubernetes API client.
        namespace: The InferenceService's namespace.
        spec: The new predictor.
        policy: The canary policy.
        holder: Who releases (the KFP run, the incident): named to a rollout that is refused.
        stats: The stats source of the two revisions.
        record: Called with every canary decision.

    Returns:
        The canary's outcome, or None when nothing was compared (a new InferenceService, or
        the version already served).

    Raises:
        RolloutBusyError: Another rollout holds the InferenceService.
        ServingError: A RawDeployment canary passed but KServe's pods did not roll out (rolled back).
    """
    # Every step, and in RawDeployment mode the canary pods' start and the promotion's rollout.
    ttl_s = int((len(policy.steps) + 2) * (policy.step_timeout_s + policy.interval_s) + 300)
    with rollout_lease(api, namespace, spec.name, holder, ttl_s=ttl_s):
        stored = get_custom(api, INFERENCE_SERVICE, namespace, spec.name)
        if (
            stored is not None
            and model_uri(stored) == spec.model_uri
            and "canaryTrafficPercent" not in stored["spec"]["predictor"]
        ):
            return None  # already serving it
        if spec.mode == "Serverless":
            roll_out(api, namespace, spec, canary_percent=policy.steps[0])
            if stored is None:
                return None
            return run_canary(InferenceServiceRouter(api, namespace, spec.name, stats), policy, record=record)
        if stored is None:
            roll_out(api, namespace, spec, canary_percent=None)
            return None
        return _standard_canary(api, namespace, spec, stored, policy, stats, record)


def _standard_canary(
    api: client.ApiClient,
    namespace: str,
    spec: PredictorSpec,
    stored: dict[str, Any],
    policy: CanaryPolicy,
    stats: Callable[[], tuple[VariantStats, VariantStats]],
    record: Callable[[Verdict], None],
) -> CanaryOutcome:
    """Judge a new model on canary pods beside KServe's own (``components.deploy.standard``).

    Canary pods that will not become ready (a model that does not load crash-loops) end it at
    once with a rollback; otherwise ``run_canary`` steps it and promotes it or rolls it back.
    """

    def promote_to() -> None:
        roll_out(api, namespace, spec, canary_percent=None)
        blocked = wait_rolled_out(api, namespace, spec, timeout_s=policy.step_timeout_s, interval_s=policy.interval_s)
        if blocked:
            raise ServingError(f"{namespace}/{spec.name}: the canary passed but {blocked}")

    router = StandardCanaryRouter(
        api, namespace, stored, spec.model_uri, stats=stats, promote_to=promote_to,
        restore=lambda: roll_back(api, namespace, spec.name),
    )  # fmt: skip
    try:
        router.set_canary(policy.steps[0])
        blocked = wait_rolled_out(
            api, namespace, spec, timeout_s=policy.step_timeout_s, interval_s=policy.interval_s,
            canary=True, replicas=router.replicas,
        )  # fmt: skip
    except BaseException:
        router.roll_back()
        raise
    if blocked:
        verdict = router.with_share(
            Verdict("rollback", blocked, policy.steps[0], (), VariantStats("stable"), VariantStats("canary"))
        )
        record(verdict)
        router.roll_back()
        return CanaryOutcome(False, verdict, (verdict,))
    decisions: list[Verdict] = []

    def noted(verdict: Verdict) -> None:  # each decision says what share of the requests its step really had
        decisions.append(router.with_share(verdict))
        record(decisions[-1])

    outcome = run_canary(router, policy, record=noted)
    return CanaryOutcome(outcome.promoted, decisions[-1], tuple(decisions))
