"""The KServe controller manager run against the tests' single-node cluster, from ./scripts/ensure-kserve.sh.

The manager (github.com/kserve/kserve/cmd/manager) runs on the host from the cluster's admin kubeconfig, as it
would in its pod: KServe's CRDs and its ``inferenceservice-config`` ConfigMap (from the KServe module, with the
Standard deployment mode, KServe's name for RawDeployment, as the default) are installed first, and its admission
webhooks (the InferenceService defaulter and validator, the predictor pod mutator, ...) are registered by URL on
127.0.0.1 with the CA of a self-signed certificate the manager serves from its serving-certs folder. Teardown
deletes every InferenceService while the manager still runs (its finalizer), then the webhook configurations.
"""

import base64
import datetime
import ipaddress
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml
from kubernetes import client

from tests.cluster import NodeCluster, wait_until
from tests.servers import _process, _wait_ok, cache_bin_dir, free_port, install_crds, yaml_documents

KSERVE_DIR_ENV = "DRIFTPILOT_KSERVE_DIR"
NAMESPACE = "kserve"
CONFIG_MAP = "inferenceservice-config"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


@dataclass(frozen=True)
class KServe:
    """A running KServe manager.

    Attributes:
        module_dir: The KServe module's source folder (its ``config/``).
        log: The manager's log.
        webhooks: The names of the webhook configurations registered for it.
    """

    module_dir: Path
    log: Path
    webhooks: tuple[str, ...]


def kserve_module_dir() -> Path:
    """Where ./scripts/ensure-kserve.sh found the KServe module: ``$DRIFTPILOT_KSERVE_DIR``."""
    path = Path(os.environ.get(KSERVE_DIR_ENV, ""))
    if not (path / "config" / "configmap" / "inferenceservice.yaml").is_file():
        raise FileNotFoundError(
            f"KServe module not found at {path!s}: set {KSERVE_DIR_ENV}=$(./scripts/ensure-kserve.sh)"
        )
    return path


def manager_binary() -> Path:
    """The manager ./scripts/ensure-kserve.sh built."""
    path = cache_bin_dir() / "kserve-manager"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run ./scripts/ensure-kserve.sh")
    return path


@contextmanager
def run_kserve(
    cluster: NodeCluster, api: client.ApiClient, work_dir: Path, *, timeout: float = 120.0
) -> Iterator[KServe]:
    """Install KServe's CRDs, ConfigMap and webhooks into ``cluster`` and run its manager until the block exits.

    Args:
        cluster: The node cluster.
        api: An admin client of it.
        work_dir: Folder of the certificates and the manager's log.
        timeout: Seconds to wait for the manager's readiness.

    Yields:
        The manager.
    """
    module = kserve_module_dir()
    install_crds(api, module / "config" / "crd" / "full")
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    core.create_namespaced_config_map(NAMESPACE, _config_map(module))
    # controller-runtime serves the webhooks from $TMPDIR/k8s-webhook-server/serving-certs/tls.{crt,key}.
    certs = work_dir / "tmp" / "k8s-webhook-server" / "serving-certs"
    certs.mkdir(parents=True)
    ca = _self_signed(certs, "127.0.0.1")
    port = free_port()
    log = work_dir / "kserve-manager.log"
    command = [str(manager_binary()), f"--webhook-port={port}", f"--metrics-addr=127.0.0.1:{free_port()}"]
    probe = f"127.0.0.1:{free_port()}"
    command.append(f"--health-probe-addr={probe}")
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "POD_NAMESPACE": NAMESPACE,
        "TMPDIR": str(certs.parents[1]),
    }
    admission = client.AdmissionregistrationV1Api(api)
    with ExitStack() as stack:
        process = stack.enter_context(_process(command, log, env))
        _wait_ok("kserve-manager", process, log, time.monotonic() + timeout,
                 lambda: requests.get(f"http://{probe}/readyz", timeout=2))  # fmt: skip
        webhooks = _register_webhooks(admission, module, f"https://127.0.0.1:{port}", ca)
        stack.callback(_delete_webhooks, admission, webhooks)
        # Last in, first out: the InferenceServices go while the manager runs (it removes their finalizer).
        stack.callback(_delete_inference_services, api)
        yield KServe(module, log, webhooks)


def _config_map(module: Path) -> dict[str, Any]:
    """KServe's own ConfigMap, defaulting to the Standard mode, with no Ingress or Istio route (neither runs here)."""
    config_map: dict[str, Any] = yaml.safe_load((module / "config" / "configmap" / "inferenceservice.yaml").read_text())
    data = config_map["data"]
    data["deploy"] = '{"defaultDeploymentMode": "Standard"}'
    ingress = {**json.loads(data["ingress"]), "disableIngressCreation": True, "disableIstioVirtualHost": True}
    data["ingress"] = json.dumps(ingress)
    config_map["metadata"] = {"name": CONFIG_MAP, "namespace": NAMESPACE}
    return config_map


def _self_signed(folder: Path, ip: str) -> bytes:
    """Write ``tls.crt`` and ``tls.key`` for ``ip`` (a self-signed CA certificate) and return the certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kserve-webhook-server")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (folder / "tls.crt").write_bytes(pem)
    (folder / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem


def _register_webhooks(
    admission: client.AdmissionregistrationV1Api, module: Path, url: str, ca: bytes
) -> tuple[str, ...]:
    """KServe's webhook configurations (config/webhook/manifests.yaml), each webhook called at ``url`` + its path."""
    bundle = base64.b64encode(ca).decode()
    names = []
    for document in yaml_documents((module / "config" / "webhook" / "manifests.yaml").read_text(encoding="utf-8")):
        if document["kind"] not in WEBHOOK_KINDS:
            continue
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": bundle}
        document["metadata"].pop("creationTimestamp", None)
        if document["kind"] == "MutatingWebhookConfiguration":
            admission.create_mutating_webhook_configuration(document)
        else:
            admission.create_validating_webhook_configuration(document)
        names.append(f"{document['kind']}/{document['metadata']['name']}")
    return tuple(names)


def _delete_webhooks(admission: client.AdmissionregistrationV1Api, names: tuple[str, ...]) -> None:
    for qualified in names:
        kind, name = qualified.split("/", 1)
        if kind == "MutatingWebhookConfiguration":
            admission.delete_mutating_webhook_configuration(name)
        else:
            admission.delete_validating_webhook_configuration(name)


def _delete_inference_services(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    group, version, plural = "serving.kserve.io", "v1beta1", "inferenceservices"
    for item in custom.list_cluster_custom_object(group, version, plural)["items"]:
        meta = item["metadata"]
        custom.delete_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"])

    def gone() -> bool | None:
        return not custom.list_cluster_custom_object(group, version, plural)["items"] or None

    wait_until("the InferenceServices deleted", gone, timeout=60)
