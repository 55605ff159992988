"""The chart installed for real: ``helm install --wait`` into the single-node cluster (tests/cluster.py).

Every pod the chart starts runs on the node from images in its containerd: ours (imported from the Docker
engine) and the stand-ins for MinIO and PostgreSQL (./scripts/build-stand-ins.sh; the cluster reaches no
registry). The volumes are hostPath PersistentVolumes on the node, bound to the chart's claims before the
install (the cluster has no dynamic provisioner). Nothing is pulled, nothing is mocked: MLflow keeps its
registry in the release's PostgreSQL and its artifacts in the release's MinIO, the monitor writes the lake
there, the controllers replace killed pods, and ``helm upgrade`` / ``helm uninstall`` act on the live release.
Left out here: the KFP deploy hook (no KFP API runs in this cluster: ``kfpDeploy.enabled=false``).
"""

import base64
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
import yaml
from kubernetes import client
from pyarrow.fs import FileType

from components.common.images import COMPONENTS_IMAGE
from components.common.inference_log import REQUEST_TYPE, RESPONSE_TYPE
from components.common.store import Store
from components.monitor.core import LOG_PREFIX
from components.register.core import CHAMPION, Lineage, ModelRef, find_alias, register_model
from tests.cluster import NodeCluster, diagnosis, wait_until
from tests.conftest import RollbackModels
from tests.servers import helm, yaml_documents

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "driftpilot"
RELEASE = NAMESPACE = "driftpilot"
STAND_INS = {"minio": "DRIFTPILOT_MINIO_IMAGE", "postgresql": "DRIFTPILOT_POSTGRES_IMAGE"}
MODEL = "gdelt-tone"

pytestmark.append(
    pytest.mark.skipif(
        not os.environ.get("DRIFTPILOT_IMAGES") or not all(os.environ.get(v) for v in STAND_INS.values()),
        reason="needs the images (DRIFTPILOT_IMAGES=1) and the stand-ins' tags in "
        + " and ".join(STAND_INS.values())
        + ": ./scripts/test.sh builds them (./scripts/build-images.sh, ./scripts/build-stand-ins.sh) and sets these",
    )
)


@dataclass(frozen=True)
class Release:
    """The installed release and how a test reaches it from the host (cluster IPs route through the veth).

    Attributes:
        cluster: The node cluster.
        api: An admin client of its API server.
        mlflow: MLflow's Service URL.
        monitor: The drift monitor's Service URL.
        s3: Store options reaching the release's MinIO with its root credentials (from its Secret).
    """

    cluster: NodeCluster
    api: client.ApiClient
    mlflow: str
    monitor: str
    s3: dict[str, Any]

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def helm(self, *args: str) -> str:
        """Helm on this cluster and namespace."""
        return release_helm(self.cluster, *args)


def release_helm(cluster: NodeCluster, *args: str) -> str:
    """Helm on the node cluster, in the release's namespace."""
    return helm(*args, "--kubeconfig", str(cluster.kubeconfig), "--namespace", NAMESPACE, timeout=900)


def service_url(core: client.CoreV1Api, component: str, port_name: str = "http") -> str:
    """``http://<cluster IP>:<port>`` of a component's Service."""
    service = core.read_namespaced_service(f"{RELEASE}-{component}", NAMESPACE)
    port = next(p.port for p in service.spec.ports if p.name == port_name)
    return f"http://{service.spec.cluster_ip}:{port}"


def claims(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The claims the rendered chart makes, by name: its own and its StatefulSets' (``<template>-<sts>-<i>``)."""
    found = {}
    for document in documents:
        if document["kind"] == "PersistentVolumeClaim":
            found[document["metadata"]["name"]] = document["spec"]
        elif document["kind"] == "StatefulSet":
            for template in document["spec"].get("volumeClaimTemplates", []):
                for index in range(document["spec"].get("replicas", 1)):
                    found[f"{template['metadata']['name']}-{document['metadata']['name']}-{index}"] = template["spec"]
    return found


def persistent_volume(cluster: NodeCluster, claim: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A hostPath volume on the node, pre-bound to ``claim``, of the size and access modes it asks for."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"{NAMESPACE}-{claim}"},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec["accessModes"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": str(cluster.volume_dir(claim)), "type": "Directory"},
            "claimRef": {"namespace": NAMESPACE, "name": claim},
        },
    }


@pytest.fixture(scope="module")
def release(
    node_cluster: NodeCluster, node_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    """The chart installed as release ``driftpilot`` in namespace ``driftpilot``; uninstalled and removed after."""
    stand_ins = {component: os.environ[variable] for component, variable in STAND_INS.items()}
    for image in (COMPONENTS_IMAGE, *stand_ins.values()):
        node_cluster.import_docker_image(image)
    values: dict[str, Any] = {
        "kfpDeploy": {"enabled": False},
        "monitor": {"flushSeconds": 5},
        # The tests reach MLflow by its Service's cluster IP, the Host header it checks.
        "mlflow": {"extraAllowedHosts": ["10.96.0.*"]},
    }
    for component, image in stand_ins.items():
        repository, tag = image.rsplit(":", 1)
        values[component] = {"image": {"repository": repository, "tag": tag}}
    values_file = tmp_path_factory.mktemp("release") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    core = client.CoreV1Api(node_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    rendered = yaml_documents(helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file)))
    volumes = [persistent_volume(node_cluster, name, spec) for name, spec in claims(rendered).items()]
    for volume in volumes:
        core.create_persistent_volume(volume)
    try:
        try:
            release_helm(
                node_cluster, "install", RELEASE, str(CHART), "-f", str(values_file), "--wait", "--timeout", "12m"
            )
        except RuntimeError as error:
            raise AssertionError(f"{error}\n{diagnosis(core, NAMESPACE)}") from None
        secret = core.read_namespaced_secret(f"{RELEASE}-minio", NAMESPACE).data
        s3 = {
            "endpoint_override": service_url(core, "minio", "s3"),
            "access_key": base64.b64decode(secret["root-user"]).decode(),
            "secret_key": base64.b64decode(secret["root-password"]).decode(),
            "region": "us-east-1",
        }
        yield Release(node_cluster, node_api, service_url(core, "mlflow"), service_url(core, "monitor"), s3)
    finally:
        with suppress(RuntimeError):  # the last test uninstalls it
            release_helm(node_cluster, "uninstall", RELEASE, "--wait", "--timeout", "5m")
        core.delete_namespace(NAMESPACE)
        wait_until(
            "the namespace gone",
            lambda: not any(n.metadata.name == NAMESPACE for n in core.list_namespace().items),
            timeout=240,
        )
        for volume in volumes:
            core.delete_persistent_volume(volume["metadata"]["name"])


def ready_pod(core: client.CoreV1Api, component: str, not_uid: str = "") -> client.V1Pod | None:
    """The component's pod when it is Running, Ready and not being deleted (and not the pod ``not_uid``)."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    for pod in core.list_namespaced_pod(NAMESPACE, label_selector=selector).items:
        statuses = pod.status.container_statuses or []
        if (
            pod.metadata.uid != not_uid
            and pod.metadata.deletion_timestamp is None
            and pod.status.phase == "Running"
            and statuses
            and all(status.ready for status in statuses)
        ):
            return pod
    return None


@pytest.fixture(scope="module")
def champion(release: Release, rollback_models: RollbackModels) -> ModelRef:
    """The ``sound`` model registered through the release's MLflow Service as the first champion."""
    return register_model(
        tracking_uri=release.mlflow,
        artifact_root="",  # the server's: proxied to the release's MinIO
        experiment=MODEL,
        model_name=MODEL,
        model_dir=rollback_models.folder / "sound",
        training_data=[rollback_models.folder / "sound.parquet"],
        lineage=Lineage(source_batches=rollback_models.training, kfp_run="test-chart-in-cluster"),
        alias=CHAMPION,
    )


def test_every_pod_runs_on_the_node_from_local_images_and_the_bucket_hook_succeeded(release: Release) -> None:
    core = release.core
    images = set()
    for component in ("minio", "postgresql", "mlflow", "monitor", "coordinator"):
        pod = ready_pod(core, component)
        assert pod is not None, f"{component}: no ready pod after helm install --wait\n{diagnosis(core, NAMESPACE)}"
        assert pod.spec.node_name == release.cluster.node_name
        images |= {container.image for container in pod.spec.containers}
    assert images == {COMPONENTS_IMAGE, os.environ[STAND_INS["minio"]], os.environ[STAND_INS["postgresql"]]}

    job = client.BatchV1Api(release.api).read_namespaced_job(f"{RELEASE}-buckets", NAMESPACE)
    assert job.status.succeeded == 1, diagnosis(core, NAMESPACE)
    # The hook made the lake's and MLflow's bucket (one bucket, two prefixes by default).
    assert Store("s3://driftpilot", release.s3).fs.get_file_info("driftpilot").type == FileType.Directory
    claims_bound = {
        claim.metadata.name: claim.status.phase
        for claim in core.list_namespaced_persistent_volume_claim(NAMESPACE).items
    }
    assert set(claims_bound.values()) == {"Bound"}, claims_bound


def test_a_model_registered_through_the_mlflow_service_is_kept_in_postgresql_and_minio(
    release: Release, champion: ModelRef
) -> None:
    found = find_alias(tracking_uri=release.mlflow, model_name=MODEL)
    assert found is not None and found.version == champion.version
    artifacts = Store("s3://driftpilot/mlflow", release.s3).keys("")
    assert any(key.endswith("MLmodel") for key in artifacts), artifacts[:10]


def test_the_monitor_writes_a_paired_inference_log_to_the_releases_lake(release: Release) -> None:
    event_id = str(uuid.uuid4())
    request = {"instances": [{"EventCode": "042", "QuadClass": 1.0}, {"EventCode": "190", "QuadClass": 4.0}]}
    response = {"predictions": [0.12, 0.81]}
    for event_type, payload in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
        headers = {
            "Ce-Id": event_id,
            "Ce-Type": event_type,
            "Ce-Source": "http://gdelt-tone-predictor.driftpilot/",
            "Ce-Specversion": "1.0",
            "Ce-Inferenceservicename": MODEL,
            "Ce-Namespace": NAMESPACE,
            "Ce-Component": "predictor",
            "Ce-Endpoint": "default",
            "Content-Type": "application/json",
        }
        answer = requests.post(release.monitor, data=json.dumps(payload), headers=headers, timeout=10)
        assert answer.status_code < 300, answer.text

    lake = Store("s3://driftpilot/lake", release.s3)

    def our_rows() -> list[dict[str, Any]] | None:
        for key in lake.keys(LOG_PREFIX):
            with lake.fs.open_input_file(lake.path(key)) as file:
                rows = [row for row in pq.read_table(file).to_pylist() if row["event_id"] == event_id]
            if rows:
                return rows
        return None

    rows = wait_until("the monitor's Parquet file in the lake", our_rows, timeout=90)
    assert [(row["row"], row["score"], row["paired"]) for row in sorted(rows, key=lambda r: r["row"])] == [
        (0, 0.12, True),
        (1, 0.81, True),
    ]
    assert {row["inference_service"] for row in rows} == {MODEL}


def test_killed_pods_are_replaced_and_the_registry_survives(release: Release, champion: ModelRef) -> None:
    core = release.core
    killed = {}
    for component in ("postgresql", "mlflow"):
        pod = ready_pod(core, component)
        assert pod is not None, diagnosis(core, NAMESPACE)
        killed[component] = pod.metadata.uid
        core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
    for component, uid in killed.items():
        replacement = wait_until(f"a new {component} pod ready", partial(ready_pod, core, component, uid), timeout=300)
        assert replacement.metadata.uid != uid

    def champion_again() -> ModelRef | None:
        with suppress(Exception):  # MLflow may still be reconnecting to its database
            return find_alias(tracking_uri=release.mlflow, model_name=MODEL)
        return None

    found = wait_until("the champion read through the new MLflow pod", champion_again, timeout=120)
    assert found.version == champion.version and found.run_id == champion.run_id


def test_upgrade_rolls_the_monitor_and_uninstall_keeps_the_audit_trail(release: Release) -> None:
    core, apps = release.core, client.AppsV1Api(release.api)
    password = core.read_namespaced_secret(f"{RELEASE}-minio", NAMESPACE).data["root-password"]
    before = ready_pod(core, "monitor")
    assert before is not None

    release.helm(
        "upgrade", RELEASE, str(CHART), "--reuse-values", "--set", "monitor.flushRows=500", "--wait", "--timeout", "8m"
    )
    monitor = apps.read_namespaced_deployment(f"{RELEASE}-monitor", NAMESPACE)
    assert "--flush-rows=500" in monitor.spec.template.spec.containers[0].args
    after = wait_until(
        "the upgraded monitor pod ready", lambda: ready_pod(core, "monitor", not_uid=before.metadata.uid)
    )
    assert "--flush-rows=500" in after.spec.containers[0].args
    # The generated credentials are kept across upgrades (MinIO's data would be unreadable otherwise).
    assert core.read_namespaced_secret(f"{RELEASE}-minio", NAMESPACE).data["root-password"] == password

    release.helm("uninstall", RELEASE, "--wait", "--timeout", "5m")
    assert apps.list_namespaced_deployment(NAMESPACE).items == []
    kept = {claim.metadata.name for claim in core.list_namespaced_persistent_volume_claim(NAMESPACE).items}
    assert f"{RELEASE}-decisions" in kept, kept
