"""The Kubernetes API server fixture, through the official ``kubernetes`` Python client.

The server stores, validates and authorizes objects for real; no controllers run, so nothing is reconciled.
"""

import json
import secrets
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.servers import KubeApiServer

pytestmark = pytest.mark.integration

GROUP, VERSION, PLURAL = "kubernetes.dask.org", "v1", "daskclusters"


@pytest.fixture(scope="module")
def api(kube_apiserver: KubeApiServer) -> Iterator[client.ApiClient]:
    configuration = client.Configuration(
        host=kube_apiserver.url,
        api_key={"authorization": kube_apiserver.token},
        api_key_prefix={"authorization": "Bearer"},
    )
    configuration.ssl_ca_cert = str(kube_apiserver.ca_file)
    with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def namespace(api: client.ApiClient) -> str:
    name = f"driftpilot-{secrets.token_hex(4)}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def _deployment(replicas: int) -> client.V1Deployment:
    labels = {"app": "model-server"}
    container = client.V1Container(name="server", image="driftpilot-serving:dev", ports=[client.V1ContainerPort(8080)])
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name="model-server"),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container], service_account_name="model-server"),
            ),
        ),
    )


def test_namespace_service_account_and_role_round_trip(api: client.ApiClient, namespace: str) -> None:
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata={"name": "model-server"}))
    rule = client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list", "watch"])
    role = client.V1Role(metadata=client.V1ObjectMeta(name="read-config"), rules=[rule])
    rbac.create_namespaced_role(namespace, role)

    assert core.read_namespace(namespace).status.phase == "Active"
    assert core.read_namespaced_service_account("model-server", namespace).metadata.uid
    stored = rbac.read_namespaced_role("read-config", namespace).rules
    assert [(r.api_groups, r.resources, sorted(r.verbs)) for r in stored] == [
        ([""], ["configmaps"], ["get", "list", "watch"])
    ]


def test_server_side_dry_run_validates_without_storing(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    accepted = apps.create_namespaced_deployment(namespace, _deployment(replicas=2), dry_run="All")
    assert accepted.metadata.namespace == namespace
    assert accepted.spec.strategy.type == "RollingUpdate"  # defaulted by the server
    assert apps.list_namespaced_deployment(namespace).items == []

    with pytest.raises(client.ApiException) as rejected:
        apps.create_namespaced_deployment(namespace, _deployment(replicas=-1), dry_run="All")
    assert rejected.value.status == 422
    assert "spec.replicas" in rejected.value.body


def _dask_cluster_crd() -> dict:
    worker = {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 0}}}
    spec = {"type": "object", "required": ["worker"], "properties": {"image": {"type": "string"}, "worker": worker}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "daskcluster", "kind": "DaskCluster"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec}}},
                }
            ],
        },
    }


def _wait_established(extensions: client.ApiextensionsV1Api, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = extensions.read_custom_resource_definition(name, _preload_content=False)
        conditions = json.loads(response.data).get("status", {}).get("conditions", [])
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not established after {timeout:.0f} s: {conditions}")


def test_custom_resource_definition_serves_validated_objects(api: client.ApiClient, namespace: str) -> None:
    extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    crd = _dask_cluster_crd()
    extensions.create_custom_resource_definition(crd, _preload_content=False)
    _wait_established(extensions, crd["metadata"]["name"])

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DaskCluster",
        "metadata": {"name": "ingest"},
        "spec": {"image": "driftpilot-components:dev", "worker": {"replicas": 2}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    stored = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "ingest")
    assert stored["spec"] == body["spec"]

    invalid = {**body, "metadata": {"name": "broken"}, "spec": {"worker": {"replicas": -1}}}
    with pytest.raises(client.ApiException) as rejected:
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, invalid)
    assert rejected.value.status == 422
    assert "spec.worker.replicas" in rejected.value.body
