"""The Dask cluster an ingestion run works on: in this process's machine, on Kubernetes, or given.

On Kubernetes the cluster is a ``DaskCluster`` of the Dask operator, made from our components
image with the same secure pod defaults as every other driftpilot pod. ``dask_cluster_spec``
builds it; ``dask_client`` hands it to ``dask_kubernetes.operator.KubeCluster``, which creates
it, waits for the scheduler and deletes it when the run ends.

Workers write to the lake, so they need the pipeline pod's settings and S3 credentials. The
cluster's manifest never holds a credential: in a pipeline pod, ``DRIFTPILOT_POD_ENV`` (set by
the chart's settings ConfigMap) names the ConfigMap and the Secret keys the step itself reads,
and the workers get the same ones by reference.
"""

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa

from components.common.security import SECURE_CONTAINER, SECURE_POD

__all__ = ["dask_client", "dask_cluster_spec"]


def dask_cluster_spec(
    name: str,
    *,
    image: str,
    workers: int,
    worker_memory: str = "4Gi",
    worker_cpu: str = "1",
    env: dict[str, str] | None = None,
    config_map: str = "",
    config_map_keys: Sequence[str] = (),
    secrets: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Return a ``kubernetes.dask.org/v1`` DaskCluster for an ingestion run.

    One thread per worker (Arrow's parser is given one core per worker); pods run as the
    image's non-root user with a read-only root filesystem and a writable ``/tmp``.

    Args:
        name: Cluster name.
        image: Image of the scheduler and workers (our components image).
        workers: Worker pods.
        worker_memory: Memory request and limit of a worker.
        worker_cpu: CPU request of a worker.
        env: Plain variables of every pod (never a credential).
        config_map: ConfigMap whose ``config_map_keys`` become variables of the same names
            (optional keys: one the ConfigMap lacks is skipped).
        config_map_keys: Keys taken from ``config_map``.
        secrets: Secret name → {key: variable}: credentials by reference.

    Returns:
        The manifest.
    """
    from dask_kubernetes.operator import make_cluster_spec

    resources = {"requests": {"cpu": worker_cpu, "memory": worker_memory}, "limits": {"memory": worker_memory}}
    variables: list[dict[str, Any]] = [{"name": key, "value": value} for key, value in (env or {}).items()]
    if config_map:
        variables += [
            {"name": key, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key, "optional": True}}}
            for key in config_map_keys
        ]
    for secret, mapping in (secrets or {}).items():
        variables += [
            {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key, variable in mapping.items()
        ]
    spec: dict[str, Any] = make_cluster_spec(
        name=name, image=image, n_workers=workers, resources=resources, env=variables
    )
    spec["metadata"]["labels"] = {"app.kubernetes.io/part-of": "driftpilot", "app.kubernetes.io/component": "ingest"}
    for role in ("scheduler", "worker"):
        pod = spec["spec"][role]["spec"]
        pod["securityContext"] = SECURE_POD
        pod["volumes"] = [{"name": "tmp", "emptyDir": {}}]
        for container in pod["containers"]:
            container["securityContext"] = SECURE_CONTAINER
            container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
            if role == "worker":
                container["args"] += ["--nthreads", "1"]
    return spec


@contextmanager
def dask_client(workers: int, cluster: str = "local", image: str = "", namespace: str | None = None) -> Iterator[Any]:
    """Open a Dask client: a ``LocalCluster``, a Kubernetes ``KubeCluster``, or a scheduler address.

    Args:
        workers: Worker processes (one thread each).
        cluster: ``local``, ``kubernetes`` (the Dask operator must run in the cluster) or a
            scheduler address such as ``tcp://dask-scheduler:8786``.
        image: Image of a Kubernetes cluster's pods.
        namespace: Namespace of a Kubernetes cluster (None: the pod's own).

    Yields:
        A ``distributed.Client``.
    """
    from distributed import Client, LocalCluster

    if cluster == "kubernetes":
        from dask_kubernetes.operator import KubeCluster

        # What this pod's environment came from (see the module's docstring), for the workers too.
        pod_env = json.loads(os.environ.get("DRIFTPILOT_POD_ENV") or "{}")
        spec = dask_cluster_spec(
            "driftpilot-ingest",
            image=image,
            workers=workers,
            config_map=pod_env.get("configMap", ""),
            config_map_keys=pod_env.get("configMapKeys", []),
            secrets=pod_env.get("secrets", {}),
        )
        with KubeCluster(custom_cluster_spec=spec, namespace=namespace) as kube, Client(kube) as client:
            client.run(pa.set_cpu_count, 1)
            yield client
    elif cluster == "local":
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, memory_limit=0) as local,
            Client(local) as client,
        ):
            client.run(pa.set_cpu_count, 1)  # one core per worker: Arrow's pool would oversubscribe
            yield client
    else:
        with Client(cluster) as client:
            yield client
