"""The Kubernetes API server fixture, through the official ``kubernetes`` Python client.

The server stores, validates and authorizes objects for real; no controllers run, so nothing is reconciled.
"""

import pytest
from kubernetes import client

from tests.servers import wait_established

pytestmark = pytest.mark.integration

# A made-up kind: the real CRDs (test_cluster_resources.py) share this server.
GROUP, VERSION, PLURAL = "examples.driftpilot.io", "v1", "workerpools"


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


def test_namespace_service_account_and_role_round_trip(kube_api: client.ApiClient, kube_namespace: str) -> None:
    namespace = kube_namespace
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
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


def test_server_side_dry_run_validates_without_storing(kube_api: client.ApiClient, kube_namespace: str) -> None:
    namespace = kube_namespace
    apps = client.AppsV1Api(kube_api)
    accepted = apps.create_namespaced_deployment(namespace, _deployment(replicas=2), dry_run="All")
    assert accepted.metadata.namespace == namespace
    assert accepted.spec.strategy.type == "RollingUpdate"  # defaulted by the server
    assert apps.list_namespaced_deployment(namespace).items == []

    with pytest.raises(client.ApiException) as rejected:
        apps.create_namespaced_deployment(namespace, _deployment(replicas=-1), dry_run="All")
    assert rejected.value.status == 422
    assert "spec.replicas" in rejected.value.body


def _worker_pool_crd() -> dict:
    worker = {"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 0}}}
    spec = {"type": "object", "required": ["worker"], "properties": {"image": {"type": "string"}, "worker": worker}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "workerpool", "kind": "WorkerPool"},
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


def test_custom_resource_definition_serves_validated_objects(kube_api: client.ApiClient, kube_namespace: str) -> None:
    namespace = kube_namespace
    extensions, custom = client.ApiextensionsV1Api(kube_api), client.CustomObjectsApi(kube_api)
    crd = _worker_pool_crd()
    extensions.create_custom_resource_definition(crd, _preload_content=False)
    wait_established(extensions, crd["metadata"]["name"])

    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
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
