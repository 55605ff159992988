"""Shared fixtures: the real data folder and small real batches from it."""

import os
from pathlib import Path

import pandas as pd
import pytest

from components.common.task import TaskSpec, load_task
from components.ingest.core import ingest_files
from components.validate.core import validate_events

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
    scratch = tmp_path_factory.mktemp("quarantine")

    def load(batch_id: str) -> pd.DataFrame:
        raw = ingest_files([gdelt_dir / f"{batch_id}.export.CSV"], quarantine_dir=scratch).raw
        return validate_events(raw).valid

    return load
