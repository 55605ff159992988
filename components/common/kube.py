"""Kubernetes API access shared by the stages: a client, and custom resources created, replaced, patched, deleted.

The stages work on two kinds of custom resource: KServe's InferenceService (serving) and the Dask
operator's DaskCluster (ingestion). The functions take a ``kubernetes.client.ApiClient`` (built by
``api_client`` in a pod or from a kubeconfig) and plain dict manifests, so what is sent is what a
reader sees in ``kubectl get -o yaml``.
"""

import os
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

__all__ = [
    "DASK_CLUSTER",
    "INFERENCE_SERVICE",
    "CustomKind",
    "api_client",
    "apply_custom",
    "delete_custom",
    "get_custom",
    "patch_custom",
    "pod_ready",
]


@dataclass(frozen=True)
class CustomKind:
    """A custom resource type.

    Attributes:
        group: API group, e.g. ``serving.kserve.io``.
        version: API version within the group.
        plural: Resource name in URLs.
        kind: Object kind.
    """

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        """``group/version`` as written in a manifest."""
        return f"{self.group}/{self.version}"


INFERENCE_SERVICE = CustomKind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService")
DASK_CLUSTER = CustomKind("kubernetes.dask.org", "v1", "daskclusters", "DaskCluster")


def api_client(kubeconfig: str | None = None, *, context: str | None = None) -> client.ApiClient:
    """Return a client for the cluster this runs in, or the one a kubeconfig names.

    Args:
        kubeconfig: Path of a kubeconfig; None uses the pod's service account when in a pod,
            else ``$KUBECONFIG`` or ``~/.kube/config``.
        context: Kubeconfig context (None: its current one).

    Returns:
        A configured ``ApiClient``; close it when done.
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        # $KUBECONFIG is read now: the client library reads it once, when it is imported.
        path = kubeconfig or os.environ.get("KUBECONFIG") or None
        config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
    return client.ApiClient(configuration)


def pod_ready(pod: client.V1Pod) -> bool:
    """The pod's ``Ready`` condition is true (its containers pass their readiness probes)."""
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _check(kind: CustomKind, body: dict[str, Any]) -> str:
    if body.get("apiVersion") != kind.api_version or body.get("kind") != kind.kind:
        raise ValueError(f"expected a {kind.api_version} {kind.kind}, got {body.get('apiVersion')} {body.get('kind')}")
    return str(body["metadata"]["name"])


def get_custom(api: client.ApiClient, kind: CustomKind, namespace: str, name: str) -> dict[str, Any] | None:
    """Return a custom object as stored, or None when there is none of that name."""
    try:
        stored: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return stored


_STATUS_CONFLICT_ATTEMPTS = 5  # replaces retried while only the operator's status writes conflict


def _generation(resource: dict[str, Any]) -> Any:
    return resource.get("metadata", {}).get("generation")


def apply_custom(
    api: client.ApiClient,
    kind: CustomKind,
    namespace: str,
    body: dict[str, Any],
    *,
    dry_run: bool = False,
    read: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Create a custom object, or replace the stored one's spec, labels and annotations with the body's.

    A replace (not a merge) so that a field left out of the new manifest is gone from the object,
    as with ``kubectl apply`` of a whole manifest; the status written by the operator is kept. The
    replace carries the resourceVersion of the object read, so a spec written by someone else
    since is refused (409), not overwritten; a conflict with the operator's status writes alone
    (the generation unchanged) is retried on the object read again.

    Args:
        api: API client.
        kind: The object's type; the body's ``apiVersion`` and ``kind`` must match it.
        namespace: Namespace of the object.
        body: The whole manifest.
        dry_run: Validate and admit on the server without storing (``dryRun=All``).
        read: The stored object as the caller read it (and based the body on); read here if not given.

    Returns:
        The object as the server stored (or would store) it.

    Raises:
        ValueError: The body is of another kind.
        kubernetes.client.ApiException: The server refused the object (422 names the invalid field;
            409 when another writer changed its spec since it was read).
    """
    name = _check(kind, body)
    custom = client.CustomObjectsApi(api)
    options = {"dry_run": "All"} if dry_run else {}
    stored = read if read is not None else get_custom(api, kind, namespace, name)
    if stored is None:
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, body, **options
        )
        return created
    labels = {k: v for k, v in body["metadata"].items() if k in ("labels", "annotations")}
    for attempt in range(_STATUS_CONFLICT_ATTEMPTS):
        replacement = {**stored, "metadata": {**stored["metadata"], **labels}, "spec": body["spec"]}
        try:
            replaced: dict[str, Any] = custom.replace_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, name, replacement, **options
            )
            return replaced
        except client.ApiException as exc:
            now = get_custom(api, kind, namespace, name) if exc.status == 409 else None
            if now is None or _generation(now) != _generation(stored) or attempt == _STATUS_CONFLICT_ATTEMPTS - 1:
                raise
            stored = now
    raise AssertionError("unreachable: the last attempt returns or raises")


def patch_custom(
    api: client.ApiClient, kind: CustomKind, namespace: str, name: str, patch: dict[str, Any]
) -> dict[str, Any]:
    """Merge-patch a custom object (RFC 7386: a ``None`` value removes the field) and return it."""
    patched: dict[str, Any] = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        kind.group, kind.version, namespace, kind.plural, name, patch
    )
    return patched


def delete_custom(api: client.ApiClient, kind: CustomKind, namespace: str, name: str) -> bool:
    """Delete a custom object (its owned pods are collected after it); False when there was none."""
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, name, propagation_policy="Background"
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
