"""Shared fixtures: the real data folder, small real batches from it, models for a rollback, a local MinIO server
a Kubernetes API, and a real single-node cluster."""

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from kubernetes import client

from components.common.storage import write_table
from components.common.task import TaskSpec, load_task
from components.ingest.core import read_export
from components.register.core import CHAMPION, Lineage, promote, record_gate, register_model
from components.train.core import TrainConfig, train_files
from components.validate.core import validate_events
from tests.cluster import NodeCluster, leftovers, run_node_cluster
from tests.servers import KubeApiServer, MinioServer, install_crds, run_kube_apiserver, run_minio

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    assert (path / "gdelt").is_dir(), f"real data not found at {path}: set DRIFTPILOT_DATA_DIR"
    return path


@pytest.fixture(scope="session")
def gdelt_dir(data_dir: Path) -> Path:
    return data_dir / "gdelt"


@pytest.fixture(scope="session")
def task() -> TaskSpec:
    return load_task("gdelt-tone")


@pytest.fixture(scope="session")
def validated(gdelt_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Validated rows of real GDELT 2.0 batches, by batch id."""

    def load(batch_id: str) -> pd.DataFrame:
        table = read_export(gdelt_dir / f"{batch_id}.export.CSV").table
        assert table is not None
        return validate_events(table.to_pandas()).valid

    return load


@dataclass(frozen=True)
class RollbackModels:
    """Two real models of the same three GDELT batches: ``sound`` on all their rows, ``conflict`` on a slice.

    ``conflict`` sees only the events with a negative Goldstein score: on its own validation rows
    (from that slice) it looks fine (AUC 0.69), but it cannot rank the cooperative events of a
    whole batch: on ``batch`` it scores about 0.51, where ``sound`` scores 0.72.

    Attributes:
        folder: ``sound/`` and ``conflict/`` (model folders) and their training rows (``<name>.parquet``).
        training: The batches both were trained on.
        batch: A later batch neither was trained on, where ``conflict``'s loss shows.
    """

    folder: Path
    training: tuple[str, ...] = ("20241022130000", "20241022131500", "20241022133000")
    batch: str = "20241022134500"

    def register_bad_champion(self, *, tracking_uri: str, artifact_root: str, model_name: str) -> tuple[str, str]:
        """Register ``sound`` as a model's first champion, then make ``conflict`` the champion over it.

        ``conflict`` would not pass the real gate against ``sound``: its passing verdict is an
        explicit test setup call of ``record_gate`` (a stand-in for a gate that let a bad model
        through); it is then promoted the normal way (``promote``), so ``sound`` becomes the
        previous champion.

        Returns:
            The versions of ``sound`` and ``conflict``.
        """
        versions = []
        for name, alias in (("sound", CHAMPION), ("conflict", "challenger")):
            ref = register_model(
                tracking_uri=tracking_uri,
                artifact_root=artifact_root,
                experiment=model_name,
                model_name=model_name,
                model_dir=self.folder / name,
                training_data=[self.folder / f"{name}.parquet"],
                lineage=Lineage(source_batches=self.training, kfp_run=f"test-setup-{name}"),
                alias=alias,
            )
            versions.append(ref.version)
        verdict = {"promote": True, "reason": "test setup: stands in for a gate that let a bad model through"}
        record_gate(tracking_uri=tracking_uri, model_name=model_name, version=versions[1], verdict=verdict)
        assert promote(tracking_uri=tracking_uri, model_name=model_name, version=versions[1]) == versions[0]
        return versions[0], versions[1]


@pytest.fixture(scope="session")
def rollback_models(validated, tmp_path_factory: pytest.TempPathFactory) -> RollbackModels:  # type: ignore[no-untyped-def]
    """``RollbackModels``, trained once per session."""
    models = RollbackModels(tmp_path_factory.mktemp("rollback-models"))
    rows = pd.concat([validated(b) for b in models.training], ignore_index=True)
    for name, frame in {"sound": rows, "conflict": rows[pd.to_numeric(rows["GoldsteinScale"]) < 0]}.items():
        write_table(frame, models.folder / f"{name}.parquet")
        config = TrainConfig(num_boost_round=80, num_threads=1)
        train_files([models.folder / f"{name}.parquet"], "gdelt-tone", models.folder / name, config)
    return models


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """A MinIO server on 127.0.0.1 for the session; fails, never skips, when the binary is missing."""
    with run_minio(tmp_path_factory.mktemp("minio")) as server:
        yield server


@pytest.fixture(scope="session")
def kube_apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    """A Kubernetes API server and its etcd on 127.0.0.1 for the session; fails, never skips, when missing."""
    with run_kube_apiserver(tmp_path_factory.mktemp("kube-apiserver")) as server:
        yield server


@pytest.fixture(scope="session")
def kube_api(kube_apiserver: KubeApiServer) -> Iterator[client.ApiClient]:
    """An admin's client of the session's Kubernetes API server."""
    yield from _admin_client(kube_apiserver.url, kube_apiserver.token, kube_apiserver.ca_file)


def _admin_client(url: str, token: str, ca_file: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration(
        host=url, api_key={"authorization": token}, api_key_prefix={"authorization": "Bearer"}
    )
    configuration.ssl_ca_cert = str(ca_file)
    with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture(scope="session")
def kubeconfig(kube_apiserver: KubeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig file for the session's API server (what helm and kubectl read)."""
    path = tmp_path_factory.mktemp("kubeconfig") / "config"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "test",
                "cluster": {"server": kube_apiserver.url, "certificate-authority": str(kube_apiserver.ca_file)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": kube_apiserver.token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.fixture
def kube_namespace(kube_api: client.ApiClient) -> str:
    """A fresh namespace in the session's API server."""
    name = f"driftpilot-{secrets.token_hex(4)}"
    client.CoreV1Api(kube_api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


@pytest.fixture(scope="session")
def crds(kube_api: client.ApiClient) -> list[str]:
    """The real CRDs (KServe, Argo, Prometheus operator, Dask operator) installed in the session's API server."""
    return install_crds(kube_api)


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCluster]:
    """A real single-node cluster for the session (tests/cluster.py); after it stops, nothing of it is left."""
    with run_node_cluster(tmp_path_factory.mktemp("node-cluster")) as cluster:
        yield cluster
    left = leftovers(cluster)
    assert not left, f"the node cluster left traces on the host: {left}"


@pytest.fixture(scope="session")
def node_api(node_cluster: NodeCluster) -> Iterator[client.ApiClient]:
    """An admin's client of the session's node cluster."""
    yield from _admin_client(node_cluster.url, node_cluster.token, node_cluster.ca_file)
