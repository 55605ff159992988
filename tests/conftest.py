"""Shared fixtures: the real data folder, small real batches from it, a local MinIO server and a Kubernetes API."""

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from components.common.task import TaskSpec, load_task
from components.ingest.core import read_export
from components.validate.core import validate_events
from tests.servers import KubeApiServer, MinioServer, run_kube_apiserver, run_minio

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
