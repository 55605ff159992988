"""The chart, the manifests and the project's Kubernetes client code against a real API server.

The server has the real CRDs installed (KServe, Argo Workflows, the Prometheus operator, the Dask
operator; gathered by scripts/ensure-crds.sh from their pinned upstream sources). No controllers
run: objects are admitted, validated against the CRDs' schemas and stored, never reconciled.
"""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from components.common.images import COMPONENTS_IMAGE, SERVING_IMAGE
from components.common.kube import (
    DASK_CLUSTER,
    INFERENCE_SERVICE,
    apply_custom,
    delete_custom,
    get_custom,
    patch_custom,
)
from components.deploy.kserve import PredictorSpec, inference_service, promote, roll_back, roll_out, traffic
from components.ingest.core import dask_cluster_spec
from tests.servers import crds_dir, helm, yaml_documents

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "driftpilot"
EXPECTED_CRDS = {
    "inferenceservices.serving.kserve.io",
    "servingruntimes.serving.kserve.io",
    "workflows.argoproj.io",
    "cronworkflows.argoproj.io",
    "prometheusrules.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
    "daskclusters.kubernetes.dask.org",
    "daskworkergroups.kubernetes.dask.org",
}


@pytest.fixture(scope="module")
def dynamic(kube_api: client.ApiClient, crds: list[str]) -> DynamicClient:
    return DynamicClient(kube_api)


def _dry_run(dynamic: DynamicClient, namespace: str, document: dict[str, Any]) -> None:
    resource = dynamic.resources.get(api_version=document["apiVersion"], kind=document["kind"])
    name = f"{document['kind']}/{document['metadata']['name']}"
    try:
        if resource.namespaced:
            if document["metadata"].get("namespace", namespace) != namespace:  # a release-external namespace
                namespace = document["metadata"]["namespace"]
                try:
                    dynamic.resources.get(api_version="v1", kind="Namespace").create(
                        body={"metadata": {"name": namespace}}
                    )
                except client.ApiException as exc:
                    if exc.status != 409:  # 409: made for an earlier object
                        raise
            resource.create(body=document, namespace=namespace, dry_run="All")
        else:
            resource.create(body=document, dry_run="All")
    except client.ApiException as exc:
        raise AssertionError(f"{name} refused by the API server: {exc.body}") from exc


def test_the_real_crds_are_served(crds: list[str]) -> None:
    assert set(crds) >= EXPECTED_CRDS


def test_inference_service_canary_is_rolled_out_promoted_and_rolled_back(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    first = PredictorSpec(
        name="gdelt-tone",
        image=SERVING_IMAGE,
        model_uri="models:/gdelt-tone/1",
        env_secret="driftpilot-serving",
        logger_url="http://driftpilot-monitor.driftpilot.svc.cluster.local/",
    )
    created = roll_out(kube_api, kube_namespace, first, canary_percent=10)
    assert traffic(created) == {"latest": 100}  # a first revision takes all traffic
    container = created["spec"]["predictor"]["containers"][0]
    assert container["image"] == SERVING_IMAGE
    assert container["args"][container["args"].index("--model_uri") + 1] == "models:/gdelt-tone/1"
    assert created["spec"]["predictor"]["logger"] == {"mode": "all", "url": first.logger_url}

    second = PredictorSpec(name="gdelt-tone", image=SERVING_IMAGE, model_uri="models:/gdelt-tone/2")
    canary = roll_out(kube_api, kube_namespace, second, canary_percent=10)
    assert traffic(canary) == {"canary": 10, "previous": 90}
    assert "models:/gdelt-tone/2" in canary["spec"]["predictor"]["containers"][0]["args"]
    assert "logger" not in canary["spec"]["predictor"]  # a replace, not a merge

    assert traffic(promote(kube_api, kube_namespace, "gdelt-tone")) == {"latest": 100}
    roll_out(kube_api, kube_namespace, first, canary_percent=25)
    assert traffic(roll_back(kube_api, kube_namespace, "gdelt-tone")) == {"canary": 0, "previous": 100}
    stored = get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert stored is not None and stored["metadata"]["generation"] == 5

    assert delete_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")
    assert get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone") is None
    assert not delete_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "gdelt-tone")


def test_inference_service_schema_refuses_a_bad_predictor(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    spec = PredictorSpec(name="fraud", image=SERVING_IMAGE, model_uri="models:/fraud/1")
    dry = roll_out(kube_api, kube_namespace, spec, canary_percent=None, dry_run=True)
    assert dry["metadata"]["name"] == "fraud"
    assert get_custom(kube_api, INFERENCE_SERVICE, kube_namespace, "fraud") is None  # dry run stored nothing

    roll_out(kube_api, kube_namespace, spec, canary_percent=None)
    with pytest.raises(client.ApiException) as refused:
        patch_custom(
            kube_api, INFERENCE_SERVICE, kube_namespace, "fraud", {"spec": {"predictor": {"minReplicas": "two"}}}
        )
    assert refused.value.status == 422
    assert "spec.predictor.minReplicas" in refused.value.body


def test_dask_cluster_is_created_scaled_and_deleted(
    kube_api: client.ApiClient, crds: list[str], kube_namespace: str
) -> None:
    spec = dask_cluster_spec(
        "ingest",
        image=COMPONENTS_IMAGE,
        workers=2,
        env={"DASK_LOGGING__DISTRIBUTED": "info"},
        config_map="driftpilot-pipeline-env",
        config_map_keys=["DRIFTPILOT_LAKE", "DRIFTPILOT_S3_ENDPOINT"],
        secrets={"driftpilot-minio": {"root-user": "AWS_ACCESS_KEY_ID", "root-password": "AWS_SECRET_ACCESS_KEY"}},
    )
    stored = apply_custom(kube_api, DASK_CLUSTER, kube_namespace, spec)
    worker = stored["spec"]["worker"]
    assert worker["replicas"] == 2
    container = worker["spec"]["containers"][0]
    assert container["image"] == COMPONENTS_IMAGE
    assert container["args"][-2:] == ["--nthreads", "1"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {v["name"]: v for v in container["env"]}
    assert env["DRIFTPILOT_LAKE"]["valueFrom"]["configMapKeyRef"] == {
        "name": "driftpilot-pipeline-env",
        "key": "DRIFTPILOT_LAKE",
        "optional": True,
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "driftpilot-minio",
        "key": "root-password",
    }
    assert all("value" not in v for k, v in env.items() if k.startswith("AWS_"))  # no credential in the manifest

    scaled = patch_custom(kube_api, DASK_CLUSTER, kube_namespace, "ingest", {"spec": {"worker": {"replicas": 6}}})
    assert scaled["spec"]["worker"]["replicas"] == 6
    again = apply_custom(kube_api, DASK_CLUSTER, kube_namespace, spec)  # re-applying the manifest restores it
    assert again["spec"]["worker"]["replicas"] == 2

    with pytest.raises(client.ApiException) as refused:
        patch_custom(kube_api, DASK_CLUSTER, kube_namespace, "ingest", {"spec": {"worker": {"replicas": "many"}}})
    assert refused.value.status == 422
    assert delete_custom(kube_api, DASK_CLUSTER, kube_namespace, "ingest")
    assert get_custom(kube_api, DASK_CLUSTER, kube_namespace, "ingest") is None


def _chart_values_files() -> list[Path | None]:
    return [None, *sorted((CHART / "examples").glob("*.yaml"))]


@pytest.mark.parametrize("values", _chart_values_files(), ids=lambda p: p.name if p else "defaults")
def test_every_rendered_template_passes_server_side_dry_run(
    dynamic: DynamicClient, kube_namespace: str, values: Path | None
) -> None:
    args = ["template", "driftpilot", str(CHART), "--namespace", kube_namespace]
    documents = yaml_documents(helm(*args, *(["--values", str(values)] if values else [])))
    assert len(documents) > 10
    for document in documents:
        _dry_run(dynamic, kube_namespace, document)


def test_every_manifest_passes_server_side_dry_run(dynamic: DynamicClient, kube_namespace: str) -> None:
    checked = []
    for path in sorted((REPO / "manifests").rglob("*.yaml")):
        for document in yaml_documents(path.read_text(encoding="utf-8")):
            if document["apiVersion"].startswith(("kind.x-k8s.io/", "kustomize.config.k8s.io/")):
                continue  # read by kind and kustomize, not objects of the API
            _dry_run(dynamic, kube_namespace, document)
            checked.append(f"{path.name}:{document['kind']}")
    assert checked, "no Kubernetes object found under manifests/"


def test_dask_operator_chart_from_the_pinned_package_passes_server_side_dry_run(
    dynamic: DynamicClient, kube_namespace: str
) -> None:
    import dask_kubernetes

    chart = Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm" / "dask-kubernetes-operator"
    documents = yaml_documents(helm("template", "dask-operator", str(chart), "--namespace", kube_namespace))
    assert {"Deployment", "ClusterRole"} <= {d["kind"] for d in documents}
    for document in documents:
        _dry_run(dynamic, kube_namespace, document)


@pytest.fixture
def installed(kubeconfig: Path, crds: list[str], kube_namespace: str) -> Iterator[str]:
    """The chart installed by helm into a fresh namespace (hooks are dry-run by the template test)."""
    common = ["--kubeconfig", str(kubeconfig), "--namespace", kube_namespace]
    helm("install", "driftpilot", str(CHART), *common, "--no-hooks", "--timeout", "60s")
    yield kube_namespace
    helm("uninstall", "driftpilot", *common, "--no-hooks")


def test_helm_install_creates_the_release_with_least_privilege_rbac(kube_api: client.ApiClient, installed: str) -> None:
    apps, rbac = client.AppsV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    deployments = {d.metadata.name: d for d in apps.list_namespaced_deployment(installed).items}
    assert any("mlflow" in name for name in deployments), sorted(deployments)
    assert any("monitor" in name for name in deployments), sorted(deployments)
    for deployment in deployments.values():
        for container in deployment.spec.template.spec.containers:
            assert container.security_context.read_only_root_filesystem is True, deployment.metadata.name
            assert container.security_context.capabilities.drop == ["ALL"], deployment.metadata.name
    rules = [rule for role in rbac.list_namespaced_role(installed).items for rule in role.rules]
    assert rules
    for rule in rules:
        assert "*" not in rule.verbs and "*" not in rule.resources and "*" not in (rule.api_groups or [])
    granted = {(g, r) for rule in rules for g in rule.api_groups for r in rule.resources}
    assert {
        ("serving.kserve.io", "inferenceservices"),
        ("kubernetes.dask.org", "daskclusters"),
        ("", "pods/log"),
    } <= granted
    bindings = rbac.list_cluster_role_binding().items
    assert not [b for b in bindings if b.metadata.name.startswith("driftpilot") and b.role_ref.name == "cluster-admin"]


def test_compiled_pipelines_use_the_components_image_the_chart_deploys(tmp_path: Path) -> None:
    subprocess.run([str(REPO / ".venv" / "bin" / "driftpilot"), "compile", "--out", str(tmp_path)], check=True)
    pipeline_images = set()
    for path in tmp_path.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            executors = (document or {}).get("deploymentSpec", {}).get("executors", {})
            pipeline_images |= {e["container"]["image"] for e in executors.values()}
    assert pipeline_images == {COMPONENTS_IMAGE}
    rendered = yaml_documents(helm("template", "driftpilot", str(CHART)))
    chart_images = {
        c["image"]
        for d in rendered
        for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        if "python-components" in c["image"]
    }
    assert chart_images == {COMPONENTS_IMAGE}


def test_the_inference_service_manifest_is_what_the_deploy_code_writes() -> None:
    path = REPO / "manifests" / "driftpilot" / "inferenceservice-gdelt-tone.yaml"
    spec = PredictorSpec(
        name="gdelt-tone",
        image=SERVING_IMAGE,
        model_uri="models:/gdelt-tone@champion",
        env_secret="driftpilot-serving",
        service_account="driftpilot-serving",
        logger_url="http://driftpilot-monitor.driftpilot.svc.cluster.local/",
    )
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == inference_service(spec)


def test_kind_config_and_bring_up_plan_are_consistent() -> None:
    config = yaml.safe_load((REPO / "manifests" / "kind" / "cluster.yaml").read_text(encoding="utf-8"))
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    images = {node["image"] for node in config["nodes"]}
    assert len(images) == 1 and next(iter(images)).startswith("kindest/node:v1.")
    assert [n["role"] for n in config["nodes"]].count("control-plane") == 1
    script = REPO / "scripts" / "kind-up.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    plan = subprocess.run([str(script), "--plan"], capture_output=True, text=True, check=True).stdout
    versions = dict(
        line.split("=", 1)
        for line in (REPO / "manifests" / "platform" / "versions.env").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    for name in ("KIND_VERSION", "KFP_VERSION", "KSERVE_VERSION"):
        assert versions[name] in plan, name
    assert COMPONENTS_IMAGE in plan and SERVING_IMAGE in plan
    crd_versions = (crds_dir() / "VERSIONS").read_text(encoding="utf-8")
    assert f"kserve={versions['KSERVE_VERSION']}" in crd_versions  # the tests check the CRDs kind-up installs
