"""Canary stats from the model servers' own Prometheus metrics: the cluster's traffic source.

Each model server (``components.serve.app``) keeps running sums at ``/metrics``: requests by
status, and for answered requests their log latency and the scores returned. In a cluster,
KServe splits the traffic between two revisions of an InferenceService (or the predictor's
Service between KServe's pods and driftpilot's canary pods); ``PodMetricsSource`` reads every
ready predictor pod's metrics through the API server's pod proxy and adds them up per revision,
giving the controller the same ``VariantStats`` the local splitter gives. Delayed labels do not
reach the servers, so the ``log_loss`` check stays pending on this source.
"""

from collections.abc import Iterable

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from components.common.kube import INFERENCE_SERVICE, get_custom, pod_ready
from components.deploy.canary import Moments, VariantStats
from components.deploy.standard import TRACK_LABEL, canary_deployment_name, predictor_deployment_name

__all__ = ["PodMetricsSource", "merge_stats", "stats_from_metrics"]


def stats_from_metrics(text: str, version: str) -> VariantStats:
    """One model server's stats, read from its ``/metrics`` text.

    Args:
        text: The Prometheus exposition text.
        version: The model version to call the stats by.

    Returns:
        Requests, non-2xx answers, log-latency and score sums.
    """
    values: dict[str, float] = {}
    requests = errors = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "driftpilot_requests_total":
                requests += int(sample.value)
                errors += 0 if sample.labels.get("status", "").startswith("2") else int(sample.value)
            else:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return VariantStats(
        version=version,
        requests=requests,
        errors=errors,
        latency=Moments(
            int(values.get("driftpilot_answered_total", 0)),
            values.get("driftpilot_log_latency", 0.0),
            values.get("driftpilot_log_latency_squares", 0.0),
        ),
        scores=Moments(
            int(values.get("driftpilot_rows_scored_total", 0)),
            values.get("driftpilot_score_total", 0.0),
            values.get("driftpilot_score_squares_total", 0.0),
        ),
    )


def merge_stats(version: str, parts: Iterable[VariantStats]) -> VariantStats:
    """The sum of several servers' stats (the pods of one revision)."""
    total = VariantStats(version)
    for part in parts:
        total.requests += part.requests
        total.errors += part.errors
        for mine, theirs in (
            (total.latency, part.latency),
            (total.scores, part.scores),
            (total.log_loss, part.log_loss),
        ):
            mine.n += theirs.n
            mine.total += theirs.total
            mine.squares += theirs.squares
    return total


class PodMetricsSource:
    """(stable, canary) stats of an InferenceService's two revisions, from its predictor pods.

    In Serverless mode the canary is the predictor's ``latestCreatedRevision``, stable its
    ``latestRolledoutRevision`` (KServe's status); in RawDeployment mode the canary is the pods
    labelled ``driftpilot.io/track: canary`` (``components.deploy.standard``), stable KServe's
    own. A pod that restarted starts its sums again; that revision's stats then drop, and the
    analysis sees less traffic than there was.

    Args:
        api: Kubernetes API client (allowed to get pods/proxy).
        namespace: The InferenceService's namespace.
        name: Its name.
        port: The model server's port in the pod.
        mode: KServe's deployment mode of the InferenceService.
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, port: int = 8080, mode: str = "Serverless"
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.port = port
        self.mode = mode

    def _revision(self, labels: dict[str, str]) -> str:
        if self.mode == "Serverless":
            return labels.get("serving.knative.dev/revision", "")
        canary = labels.get(TRACK_LABEL) == "canary"
        return canary_deployment_name(self.name) if canary else predictor_deployment_name(self.name)

    def revisions(self) -> tuple[str, str] | None:
        """The (stable, canary) revision names (RawDeployment: the two Deployments); None until KServe has both."""
        if self.mode != "Serverless":
            return predictor_deployment_name(self.name), canary_deployment_name(self.name)
        stored = get_custom(self.api, INFERENCE_SERVICE, self.namespace, self.name)
        predictor = (stored or {}).get("status", {}).get("components", {}).get("predictor", {})
        stable, canary = predictor.get("latestRolledoutRevision"), predictor.get("latestCreatedRevision")
        return (str(stable), str(canary)) if stable and canary else None

    def __call__(self) -> tuple[VariantStats, VariantStats]:
        """Read every predictor pod's metrics and add them up per revision.

        Until KServe reports the two revisions no traffic is counted (a canary that never
        gets them times out and is rolled back).
        """
        revisions = self.revisions()
        if revisions is None:
            return VariantStats("stable"), VariantStats("canary")
        stable, canary = revisions
        core = client.CoreV1Api(self.api)
        pods = core.list_namespaced_pod(
            self.namespace, label_selector=f"serving.kserve.io/inferenceservice={self.name}"
        ).items
        found: dict[str, list[VariantStats]] = {stable: [], canary: []}
        for pod in pods:
            revision = self._revision(pod.metadata.labels or {})
            # A pod still starting has no server to ask yet; one being deleted may be gone by then.
            if revision not in found or not pod_ready(pod) or pod.metadata.deletion_timestamp is not None:
                continue
            text = core.connect_get_namespaced_pod_proxy_with_path(
                f"{pod.metadata.name}:{self.port}", self.namespace, "metrics"
            )
            found[revision].append(stats_from_metrics(str(text), revision))
        return merge_stats(stable, found[stable]), merge_stats(canary, found[canary])
