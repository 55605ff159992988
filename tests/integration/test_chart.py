"""The Helm chart, linted and rendered by Helm 3 and Helm 4: secure, least-privilege, consistent.

Every check runs on the default values and on each file in charts/driftpilot/examples/. The
binaries come from ./scripts/ensure-helm.sh (``DRIFTPILOT_HELM_BIN_DIR``); rendering targets
Kubernetes 1.37, the API server the other integration tests run.
"""

import base64
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from components.common.images import COMPONENTS_IMAGE, SERVING_IMAGE
from components.common.store import Store
from components.decide.core import DecisionState
from components.decide.metrics import DecisionCollector
from components.monitor.core import InferenceLogMonitor
from pipelines.cli import compile_pipelines
from pipelines.kfp_deploy import normalize_cron, pipeline_parameters, typed_params
from pipelines.pod_env import SETTINGS_KEYS, parse_secret_env

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "driftpilot"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
VALUES = [None, *EXAMPLES]
VALUE_IDS = ["defaults", *(p.stem for p in EXAMPLES)]
HELMS = ("helm", "helm4")
KUBE_VERSION = "1.37.2"
NAMESPACE = "driftpilot"
RELEASE = "dp"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
POD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}
SECURE_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def helm_bin_dir() -> Path:
    """Where ensure-helm.sh put helm and helm4: ``$DRIFTPILOT_HELM_BIN_DIR``, else its cache."""
    if explicit := os.environ.get("DRIFTPILOT_HELM_BIN_DIR"):
        return Path(explicit)
    xdg_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("DRIFTPILOT_CACHE") or xdg_cache / "driftpilot") / "bin"


@pytest.fixture(scope="module", params=HELMS)
def helm(request: pytest.FixtureRequest) -> Path:
    binary = helm_bin_dir() / request.param
    assert binary.is_file(), f"{binary} not found: run ./scripts/ensure-helm.sh (or set DRIFTPILOT_HELM_BIN_DIR)"
    return binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


def render_args(values: Path | None, *extra: str) -> list[str]:
    args = ["--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    return [*args, *(["-f", str(values)] if values else []), *extra]


_RENDERED: dict[tuple[str, str], list[dict[str, Any]]] = {}


def render(helm: Path, values: Path | None = None) -> list[dict[str, Any]]:
    key = (str(helm), str(values))
    if key not in _RENDERED:
        done = run_helm(helm, "template", RELEASE, str(CHART), *render_args(values))
        assert done.returncode == 0, done.stderr
        _RENDERED[key] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return _RENDERED[key]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, str]]]:
    for obj in objects:
        if obj["kind"] in POD_KINDS:
            template = obj["spec"]["template"]
            yield f"{obj['kind']}/{obj['metadata']['name']}", template["spec"], template["metadata"].get("labels", {})


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


@pytest.fixture(scope="module")
def drift_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    compiled = compile_pipelines(tmp_path_factory.mktemp("compiled"))
    definitions = dict(pipeline_parameters(path) for path in compiled)
    return definitions["driftpilot-drift-response"]


def test_the_chart_is_released_with_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == VERSION
    assert COMPONENTS_IMAGE.endswith(f":{VERSION}") and SERVING_IMAGE.endswith(f":{VERSION}")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["components"]["tag"] == values["image"]["serving"]["tag"] == ""  # the appVersion


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_lint_strict_passes(helm: Path, values: Path | None) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), *render_args(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_every_container_runs_locked_down(helm: Path, values: Path | None) -> None:
    objects = render(helm, values)
    specs = list(pod_specs(objects))
    assert specs
    for where, spec, _ in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        tmp = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert tmp and "emptyDir" in tmp[0], where
        for container in containers(spec):
            context = container["securityContext"]
            assert {k: context.get(k) for k in SECURE_CONTAINER} == SECURE_CONTAINER, (where, container["name"])
            assert context["runAsUser"] > 0
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"], (where, container["name"])
            resources = container["resources"]
            assert set(resources) == {"requests", "limits"}, (where, container["name"])
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_images_are_pinned_and_ours_carry_the_package_version(helm: Path, values: Path | None) -> None:
    images = {c["image"] for _, spec, _ in pod_specs(render(helm, values)) for c in containers(spec)}
    ours = {i for i in images if "/driftpilot/" in i}
    assert ours == {COMPONENTS_IMAGE}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, image
    settings = {k: v for o in of_kind(render(helm, values), "ConfigMap") for k, v in o.get("data", {}).items()}
    assert settings["DRIFTPILOT_SERVING_IMAGE"] == SERVING_IMAGE


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_rbac_is_namespaced_explicit_and_least_privilege(helm: Path, values: Path | None) -> None:
    objects = render(helm, values)
    assert not of_kind(objects, "ClusterRole") and not of_kind(objects, "ClusterRoleBinding")
    roles = {r["metadata"]["name"]: r for r in of_kind(objects, "Role")}
    assert set(roles) == {"driftpilot-pipeline", "driftpilot-pipeline-release"}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field] and all("*" not in item for item in rule[field]), rule

    def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (g, r, v)
            for rule in role["rules"]
            for g in rule["apiGroups"]
            for r in rule["resources"]
            for v in rule["verbs"]
        }

    granted = grants(roles["driftpilot-pipeline"])
    # The release's Role, in the predictors' namespace: the InferenceService, its lease, its canary Deployment,
    # its pods' metrics.
    assert grants(roles["driftpilot-pipeline-release"]) == {
        ("serving.kserve.io", "inferenceservices", "get"),
        ("serving.kserve.io", "inferenceservices", "create"),
        ("serving.kserve.io", "inferenceservices", "update"),
        ("serving.kserve.io", "inferenceservices", "patch"),
        ("coordination.k8s.io", "leases", "get"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "update"),
        ("coordination.k8s.io", "leases", "delete"),
        ("apps", "deployments", "get"),
        ("apps", "deployments", "create"),
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        ("", "pods", "list"),
        ("", "pods/proxy", "get"),
    }
    # What dask_kubernetes' KubeCluster does (create, look up by LIST + GET, delete on close), and no more.
    dask = {(r, v) for g, r, v in granted if g == "kubernetes.dask.org"}
    assert dask == {
        ("daskclusters", "get"),
        ("daskclusters", "list"),
        ("daskclusters", "create"),
        ("daskclusters", "delete"),
        ("daskworkergroups", "get"),
        ("daskworkergroups", "list"),
    }
    assert {("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods/log", "get")} <= granted
    assert not {v for g, r, v in granted if (g, r) == ("", "pods")} - {"get", "list", "watch"}
    assert not any(r == "secrets" and v in ("list", "watch") for _, r, v in granted)
    assert all("resourceNames" in rule for rule in role["rules"] if "secrets" in rule["resources"])
    bindings = of_kind(objects, "RoleBinding")
    assert sorted(b["roleRef"]["name"] for b in bindings) == ["driftpilot-pipeline", "driftpilot-pipeline-release"]
    assert all(b["roleRef"]["kind"] == "Role" and b["subjects"][0]["name"] == "driftpilot-pipeline" for b in bindings)
    accounts = {o["metadata"]["name"]: o for o in of_kind(objects, "ServiceAccount")}
    assert "driftpilot-pipeline" in accounts
    for name, account in accounts.items():  # only the pipeline's account holds an API token
        assert account.get("automountServiceAccountToken") is (None if name == "driftpilot-pipeline" else False)
    used = {spec["serviceAccountName"] for _, spec, _ in pod_specs(objects)}
    assert "driftpilot-pipeline" not in used and used <= set(accounts)


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_credentials_live_only_in_secrets(helm: Path, values: Path | None) -> None:
    objects = render(helm, values)
    secrets = {o["metadata"]["name"]: o for o in of_kind(objects, "Secret")}
    values_doc = yaml.safe_load(values.read_text()) if values else {}
    plain = [base64.b64decode(v).decode() for s in secrets.values() for v in s.get("data", {}).values()]
    assert all(len(p) >= 20 for p in plain)
    config_text = json.dumps([o.get("data", {}) for o in of_kind(objects, "ConfigMap")])
    pod_text = json.dumps(
        [c.get("args", []) + c.get("command", []) for _, s, _ in pod_specs(objects) for c in containers(s)]
    )
    literal_env = json.dumps(
        [e.get("value", "") for _, s, _ in pod_specs(objects) for c in containers(s) for e in c.get("env", [])]
    )
    for secret in plain:
        assert secret not in config_text and secret not in pod_text and secret not in literal_env
    assert not re.search(r"://[^/@\s\"]+:[^/@\s\"]+@", config_text + pod_text + literal_env)  # no user:password@ URL
    sensitive = re.compile(r"PASSWORD|SECRET|ACCESS_KEY")
    given = {values_doc.get(k, {}).get("existingSecret") for k in ("externalS3", "externalPostgresql")}
    for where, spec, _ in pod_specs(objects):
        for container in containers(spec):
            for env in container.get("env", []):
                if sensitive.search(env["name"]) or env["name"] == "PGPASSWORD":
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] in secrets or ref["name"] in given, (where, env)
                    if ref["name"] in secrets:
                        assert ref["key"] in secrets[ref["name"]]["data"], (where, env)
    for secret in secrets.values():  # generated credentials outlive an uninstall, like the volumes they open
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize("values", VALUES, ids=VALUE_IDS)
def test_network_policies_deny_by_default_and_allow_the_loop(helm: Path, values: Path | None) -> None:
    objects = render(helm, values)
    policies = {o["metadata"]["name"]: o for o in of_kind(objects, "NetworkPolicy")}
    deny = policies[f"{RELEASE}-driftpilot-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    for where, _, labels in pod_specs(objects):
        assert deny["podSelector"]["matchLabels"].items() <= labels.items(), where

    def sources(component: str) -> list[dict[str, Any]]:
        (rule,) = policies[f"{RELEASE}-driftpilot-{component}"]["spec"]["ingress"]
        return rule["from"]

    def components(peers: list[dict[str, Any]]) -> set[str]:
        return {
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for p in peers
            if "namespaceSelector" not in p
        }

    pipeline = {"pipelines.kubeflow.org/v2_component": "true"}
    if f"{RELEASE}-driftpilot-postgresql" in policies:
        assert components(sources("postgresql")) == {"mlflow"}
        assert any(p.get("podSelector", {}).get("matchLabels") == pipeline for p in sources("postgresql"))
    if f"{RELEASE}-driftpilot-minio" in policies:
        assert components(sources("minio")) == {"mlflow", "monitor", "buckets"}
    if f"{RELEASE}-driftpilot-monitor" in policies:
        (kserve, *scrape) = sources("monitor")
        assert kserve["podSelector"]["matchExpressions"][0]["key"] == "serving.kserve.io/inferenceservice"
        assert all(set(p) == {"namespaceSelector"} for p in scrape)
    mlflow = sources("mlflow")
    assert any(p.get("podSelector", {}).get("matchLabels") == pipeline for p in mlflow)


def test_the_job_schedules_the_drift_response_with_parameters_the_pipeline_takes(
    helm: Path, drift_inputs: dict[str, dict[str, Any]]
) -> None:
    for values in VALUES:
        objects = render(helm, values)
        jobs = [j for j in of_kind(objects, "Job") if j["metadata"]["name"].endswith("kfp-deploy")]
        if not jobs:
            continue
        (job,) = jobs
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["driftpilot", "kfp-deploy"]
        args = container["args"]
        flags = dict(zip(args[::2], args[1::2], strict=True))
        normalize_cron(flags["--schedule"])
        assert flags["--service-account"] == "driftpilot-pipeline"
        params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--param")
        typed = typed_params(drift_inputs, params, "driftpilot-drift-response")  # what kfp-deploy will check
        assert typed["lake_dir"].startswith("s3://")
        # The recurring run decides under the policy the ConfigMap ships.
        from components.decide.core import load_safety_policy

        shipped = named(objects, "ConfigMap", f"{RELEASE}-driftpilot-safety-policy")["data"]["safety-policy.yaml"]
        assert load_safety_policy(typed["safety_policy"]) == load_safety_policy(shipped)
        assert typed["tracking_uri"].startswith("http://") and typed["tracking_uri"].endswith(":5000")
        # The step pods' environment: the rendered settings ConfigMap, and Secrets holding those keys
        # (generated ones are rendered; a named existing Secret is the user's).
        config_map = named(objects, "ConfigMap", flags["--env-config-map"])
        assert {"DRIFTPILOT_LAKE", "DRIFTPILOT_TRACKING_URI"} <= set(config_map["data"])
        secrets = parse_secret_env([args[i + 1] for i, a in enumerate(args) if a == "--env-secret"])
        assert {v for mapping in secrets.values() for v in mapping.values()} >= {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        # Pods a step starts (Dask workers) get the same environment, by the names in DRIFTPILOT_POD_ENV.
        pod_env = json.loads(config_map["data"]["DRIFTPILOT_POD_ENV"])
        assert pod_env["configMap"] == flags["--env-config-map"] and pod_env["secrets"] == secrets
        assert set(pod_env["configMapKeys"]) == set(SETTINGS_KEYS) - {"DRIFTPILOT_POD_ENV"}
        rendered = {d["metadata"]["name"]: d for d in of_kind(objects, "Secret")}
        for name, mapping in secrets.items():
            if name in rendered:
                assert set(mapping) <= set(rendered[name].get("stringData", rendered[name].get("data", {}))), name
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert normalize_cron(defaults["kfpDeploy"]["schedule"]) == "0 5,20,35,50 * * * *"


def test_the_schema_knows_every_pipeline_parameter_by_its_camel_case_name(
    drift_inputs: dict[str, dict[str, Any]],
) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    names = schema["properties"]["kfpDeploy"]["properties"]["parameters"]["properties"]
    assert {re.sub(r"(?<!^)([A-Z])", r"_\1", n).lower() for n in names} == set(drift_inputs)


def test_dashboard_and_alerts_query_metrics_that_exist(helm: Path, tmp_path: Path) -> None:
    objects = render(helm, CHART / "examples" / "monitoring-on.yaml")
    registry = CollectorRegistry()
    registry.register(DecisionCollector(DecisionState(tmp_path / "audit")))
    exposed = {
        line.split()[2]
        for text in (InferenceLogMonitor(Store(str(tmp_path))).metrics(), generate_latest(registry).decode())
        for line in text.splitlines()
        if line.startswith("# TYPE")
    }
    kserve = {f"request_{step}_seconds" for step in ("preprocess", "predict", "postprocess")}
    (dashboard,) = [o for o in of_kind(objects, "ConfigMap") if "driftpilot.json" in o.get("data", {})]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dashboard["data"]["driftpilot.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\b(driftpilot_\w+|request_\w+_seconds)(?:_bucket|_count)?\b", e)}
    assert used and used <= exposed | kserve
    assert kserve & used and exposed & used
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"DriftpilotMonitorDown", "DriftpilotNoInferenceLogs", "DriftpilotInferenceLogsRejected"} <= set(alerts)
    assert {"DriftpilotEscalationWaiting", "DriftpilotLedgerBroken"} <= set(alerts)
    alert_metrics = {m for r in alerts.values() for m in re.findall(r"\bdriftpilot_\w+", r["expr"])}
    assert alert_metrics and alert_metrics <= exposed
    assert "[1h]" in alerts["DriftpilotNoInferenceLogs"]["expr"]  # the example's noLogsWindow
    monitors = {o["metadata"]["name"] for o in of_kind(objects, "ServiceMonitor")}
    assert f"{RELEASE}-driftpilot-monitor" in monitors


def test_external_services_replace_the_bundled_ones(helm: Path) -> None:
    objects = render(helm, CHART / "examples" / "external-services.yaml")
    names = {o["metadata"]["name"] for o in objects}
    assert not {n for n in names if "minio" in n or "postgresql" in n}
    (mlflow,) = [o for o in of_kind(objects, "Deployment") if o["metadata"]["name"].endswith("mlflow")]
    (container,) = mlflow["spec"]["template"]["spec"]["containers"]
    assert (
        "--backend-store-uri=postgresql://driftpilot@driftpilot.abcdefghij.eu-west-1.rds.amazonaws.com:5432/mlflow"
        "?sslmode=verify-full" in container["args"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "driftpilot-db", "key": "password"}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "driftpilot-s3"
    assert "DRIFTPILOT_S3_ENDPOINT" not in env  # AWS's own endpoint
    (job,) = [o for o in of_kind(objects, "Job") if o["metadata"]["name"].endswith("kfp-deploy")]
    spec = job["spec"]["template"]["spec"]
    (token,) = [v for v in spec["volumes"] if v["name"] == "kfp-token"]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pipelines.kubeflow.org"
    assert named(objects, "ServiceAccount", "driftpilot-pipeline")["metadata"]["namespace"] == "ml-team"


def test_monitoring_off_renders_no_monitor_dashboard_or_job(helm: Path) -> None:
    objects = render(helm, CHART / "examples" / "monitoring-off.yaml")
    components = {o["metadata"]["labels"].get("app.kubernetes.io/component") for o in objects}
    assert not {"monitor", "dashboard", "kfp-deploy"} & components
    assert {"mlflow", "postgresql", "minio", "pipeline"} <= components


@pytest.mark.parametrize(
    ("bad_values", "expected"),
    [
        ({"monitor": {"replicas": "two"}}, ["/monitor/replicas", "got string, want integer"]),
        ({"monitor": {"colour": "blue"}}, ["/monitor", "additional properties 'colour' not allowed"]),
        ({"kfpDeploy": {"schedule": "every 15 minutes"}}, ["/kfpDeploy/schedule", "'every 15 minutes' does not match"]),
        (
            {"kfpDeploy": {"schedule": "0 61 * * * *"}},
            ["0 61 * * * *", "the minute field", "not a list of values 0-59"],
        ),
        ({"kfpDeploy": {"parameters": {"ingest_workers": 2}}}, ["additional properties 'ingest_workers' not allowed"]),
        ({"image": {"components": {"tag": "latest"}}}, ["/image/components/tag"]),
        ({"lake": {"uri": "/data/lake"}}, ["/lake/uri", "does not match pattern"]),
        ({"monitor": {"replicas": 2}}, ["/monitor/replicas", "maximum"]),
        ({"minio": {"enabled": False}}, ["/externalS3/existingSecret", "minLength"]),
    ],
    ids=[
        "wrong-type",
        "unknown-key",
        "bad-cron",
        "cron-out-of-range",
        "snake-case-param",
        "latest-tag",
        "not-s3",
        "two-monitors",
        "s3-without-secret",
    ],
)
def test_bad_values_are_rejected_with_a_clear_message(
    helm: Path, tmp_path: Path, bad_values: dict[str, Any], expected: list[str]
) -> None:
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(bad_values))
    for command in ("template", "lint"):
        args = [RELEASE, str(CHART)] if command == "template" else ["--strict", str(CHART)]
        done = run_helm(helm, command, *args, *render_args(bad))
        message = done.stdout + done.stderr
        # `helm lint` logs a template's `fail` at INFO level: only the schema's rejections fail it.
        template_check = "[INFO] Fail:" in message or 'msg="funcMap fail"' in message
        assert done.returncode != 0 or (command == "lint" and template_check), (command, message)
        for words in expected:
            assert words in message, (command, message)


def test_the_safety_policy_configmap_is_the_packages_default_policy(helm: Path) -> None:
    from components.decide.safety import DEFAULT_POLICY_FILE, SafetyPolicy

    config_map = named(render(helm), "ConfigMap", f"{RELEASE}-driftpilot-safety-policy")
    shipped = SafetyPolicy.from_dict(yaml.safe_load(config_map["data"]["safety-policy.yaml"]))
    assert shipped == SafetyPolicy.from_yaml(DEFAULT_POLICY_FILE)


def test_a_blackout_in_values_reaches_the_safety_policy(helm: Path, tmp_path: Path) -> None:
    from components.decide.safety import Blackout, SafetyPolicy

    values = tmp_path / "values.yaml"
    freeze = {"name": "freeze", "start": "22:00", "end": "06:00", "days": ["fri"]}
    values.write_text(yaml.safe_dump({"safetyPolicy": {"blackouts": [freeze], "maxRetrainsPerDay": 2}}))
    done = run_helm(helm, "template", RELEASE, str(CHART), *render_args(values))
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    config_map = named(objects, "ConfigMap", f"{RELEASE}-driftpilot-safety-policy")
    policy = SafetyPolicy.from_dict(yaml.safe_load(config_map["data"]["safety-policy.yaml"]))
    assert policy.max_retrains_per_day == 2 and policy.blackouts == (Blackout("22:00", "06:00", ("fri",), "freeze"),)


def test_the_coordinator_and_the_deciding_steps_share_the_decision_state(helm: Path) -> None:
    objects = render(helm)
    claim = named(objects, "PersistentVolumeClaim", f"{RELEASE}-driftpilot-decisions")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    coordinator = named(objects, "Deployment", f"{RELEASE}-driftpilot-coordinator")
    pod = coordinator["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in pod["containers"]}
    assert set(by_name) == {"coordinator", "ui"}
    container = by_name["coordinator"]
    assert container["command"] == ["driftpilot", "coordinate"] and "--kfp-host" in container["args"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["decisions"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "decisions")
    for each in by_name.values():  # the page reads (and answers approvals in) the same state
        env = {e["name"]: e.get("value") for e in each["env"]}
        assert env["DRIFTPILOT_STATE_DIR"] == mount
        assert mount == next(m["mountPath"] for m in each["volumeMounts"] if m["name"] == "decisions")
    (job,) = [j for j in of_kind(objects, "Job") if j["metadata"]["name"].endswith("kfp-deploy")]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--state-pvc"] == claim["metadata"]["name"] and flags["--state-mount"] == mount
    params = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--param")
    assert params["state_dir"] == mount
    service = named(objects, "Service", f"{RELEASE}-driftpilot-coordinator")
    assert service["spec"]["selector"] == coordinator["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("allowed", ["", "ingress-nginx"])
def test_the_incidents_page_runs_beside_the_coordinator_with_its_token_in_a_secret(
    helm: Path, tmp_path: Path, allowed: str
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"coordinator": {"ui": {"allowedNamespace": allowed}}}))
    done = run_helm(helm, "template", RELEASE, str(CHART), *render_args(values))
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    pod = named(objects, "Deployment", f"{RELEASE}-driftpilot-coordinator")["spec"]["template"]["spec"]
    ui = next(c for c in pod["containers"] if c["name"] == "ui")
    assert ui["command"] == ["driftpilot", "ui"] and ui["readinessProbe"]["httpGet"]["path"] == "/healthz"
    (token,) = [e for e in ui["env"] if e["name"] == "DRIFTPILOT_UI_TOKEN"]
    secret = named(objects, "Secret", token["valueFrom"]["secretKeyRef"]["name"])
    assert len(base64.b64decode(secret["data"]["token"])) >= 32  # long enough for create_app
    service = named(objects, "Service", f"{RELEASE}-driftpilot-coordinator")
    assert {"name": "ui", "port": 8090, "targetPort": "ui", "protocol": "TCP"} in service["spec"]["ports"]
    policy = named(objects, "NetworkPolicy", f"{RELEASE}-driftpilot-coordinator")["spec"]
    reach = [rule for rule in policy.get("ingress", []) if rule["ports"] == [{"port": "ui", "protocol": "TCP"}]]
    if allowed:
        (rule,) = reach
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": allowed}}}]
    else:
        assert reach == []  # port-forwarding only


def test_the_incidents_page_can_be_left_out_or_given_a_token_of_ones_own(helm: Path, tmp_path: Path) -> None:
    for ui, secrets in (({"enabled": False}, set()), ({"existingSecret": "my-ui-token"}, {"my-ui-token"})):
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump({"coordinator": {"ui": ui}}))
        done = run_helm(helm, "template", RELEASE, str(CHART), *render_args(values))
        assert done.returncode == 0, done.stderr
        objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        pod = named(objects, "Deployment", f"{RELEASE}-driftpilot-coordinator")["spec"]["template"]["spec"]
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for c in pod["containers"]
            for e in c.get("env", [])
            if e["name"] == "DRIFTPILOT_UI_TOKEN"
        }
        assert refs == secrets and len(pod["containers"]) == 1 + bool(secrets)
        assert not [o for o in of_kind(objects, "Secret") if o["metadata"]["name"].endswith("-driftpilot-ui")]
