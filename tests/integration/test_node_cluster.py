"""The real single-node cluster (tests/cluster.py): pods start on containerd with an address from the CNI bridge,
controllers reconcile, kube-proxy routes a Service's cluster IP, CoreDNS resolves Service names, the API server
reaches the kubelet for logs. Our images are imported from the Docker engine (``docker save | ctr import``) and
run with ``imagePullPolicy: IfNotPresent``: nothing is pulled.
"""

import ipaddress
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client

from components.common.images import COMPONENTS_IMAGE
from tests.cluster import PAUSE_IMAGE, POD_CIDR, NodeCluster, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

needs_images = pytest.mark.skipif(
    not os.environ.get("DRIFTPILOT_IMAGES"),
    reason="DRIFTPILOT_IMAGES is unset: ./scripts/test.sh builds the images with ./scripts/build-images.sh "
    "and sets it (set it yourself after building them)",
)


@pytest.fixture
def namespace(node_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace in the node cluster, deleted afterwards."""
    name = f"test-{secrets.token_hex(4)}"
    core = client.CoreV1Api(node_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def components_image(node_cluster: NodeCluster) -> str:
    """The components image, copied from the Docker engine into the node's containerd."""
    node_cluster.import_docker_image(COMPONENTS_IMAGE)
    return COMPONENTS_IMAGE


def deployment(name: str, image: str, command: list[str], port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command}
    if port:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def running_pod(core: client.CoreV1Api, namespace: str, app: str, not_named: str = "") -> client.V1Pod | None:
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    ready = [
        pod
        for pod in pods
        if pod.metadata.name != not_named
        and pod.status.phase == "Running"
        and pod.metadata.deletion_timestamp is None
        and all(status.ready for status in pod.status.container_statuses or [])
    ]
    return ready[0] if ready else None


def test_pod_gets_an_address_from_the_bridge_and_is_replaced_when_deleted(
    node_cluster: NodeCluster, node_api: client.ApiClient, namespace: str
) -> None:
    core, apps = client.CoreV1Api(node_api), client.AppsV1Api(node_api)
    node = core.read_node(node_cluster.node_name)
    assert {a.type: a.address for a in node.status.addresses}["InternalIP"] == node_cluster.node_ip
    apps.create_namespaced_deployment(namespace, deployment("pause", PAUSE_IMAGE, ["/pause"]))

    first = wait_until("the pause pod Running", lambda: running_pod(core, namespace, "pause"))
    assert first.spec.node_name == node_cluster.node_name
    assert ipaddress.ip_address(first.status.pod_ip) in ipaddress.ip_network(POD_CIDR)

    core.delete_namespaced_pod(first.metadata.name, namespace)
    second = wait_until(
        "a replacement pod Running", lambda: running_pod(core, namespace, "pause", not_named=first.metadata.name)
    )
    assert second.metadata.name != first.metadata.name
    assert ipaddress.ip_address(second.status.pod_ip) in ipaddress.ip_network(POD_CIDR)


@needs_images
def test_service_answers_on_its_cluster_ip_and_its_dns_name(
    node_api: client.ApiClient, namespace: str, components_image: str
) -> None:
    core, apps, batch = client.CoreV1Api(node_api), client.AppsV1Api(node_api), client.BatchV1Api(node_api)
    page = f"served from a pod {secrets.token_hex(4)}"
    serve = ["sh", "-c", f"echo '{page}' > /tmp/index.html && exec python -m http.server 8080 --directory /tmp"]
    apps.create_namespaced_deployment(namespace, deployment("web", components_image, serve, port=8080))
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    cluster_ip = core.create_namespaced_service(namespace, service).spec.cluster_ip
    wait_until("the web pod Ready", lambda: running_pod(core, namespace, "web"))

    # From the host: the route through the veth, kube-proxy's DNAT in the node's namespace.
    def fetch() -> str | None:
        try:
            return requests.get(f"http://{cluster_ip}/index.html", timeout=2).text.strip()
        except requests.RequestException:
            return None

    assert wait_until("the Service's cluster IP answering", fetch, timeout=60) == page

    # From another pod: CoreDNS resolves the Service's name, kube-proxy routes pod to pod over the bridge.
    url = f"http://web.{namespace}.svc.cluster.local/index.html"
    fetch_in_pod = ["python", "-c", f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read())"]
    container = {"name": "fetch", "image": components_image, "imagePullPolicy": "IfNotPresent", "command": fetch_in_pod}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "fetch"},
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 120,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
    batch.create_namespaced_job(namespace, job)

    def finished() -> client.V1JobStatus | None:
        status = batch.read_namespaced_job_status("fetch", namespace).status
        return status if status.succeeded or status.failed == 3 else None

    status = wait_until("the fetch Job finished", finished, timeout=150)
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=fetch").items
    logs = [core.read_namespaced_pod_log(pod.metadata.name, namespace) for pod in pods]
    assert status.succeeded == 1, logs
    assert any(page in log for log in logs), logs
