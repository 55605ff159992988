"""The deploy stage's bookkeeping: registry URIs, the deployment record, stopping safely."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.common.errors import ConfigError, ServingError
from components.deploy.core import (
    RECORD_FILE,
    RegistryUri,
    deploy_local,
    parse_registry_uri,
    read_deployment,
    stop_local,
)


def _write_record(state_dir: Path, pid: int) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "model_name": "gdelt-tone",
        "model_version": "3",
        "model_uri": "models:/gdelt-tone/3",
        "url": "http://127.0.0.1:9",
        "port": 9,
        "pid": pid,
        "log_path": str(state_dir / "server-3.log"),
    }
    path = state_dir / RECORD_FILE
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/gdelt-tone@champion", RegistryUri("gdelt-tone", alias="champion")),
        ("models:/gdelt-tone/12", RegistryUri("gdelt-tone", version="12")),
        ("runs:/abc/model", None),
        ("models:/gdelt-tone", None),
        ("models:/a/b/c", None),
        ("/some/local/dir", None),
    ],
)
def test_registry_uris_are_split_and_others_rejected(uri: str, expected: RegistryUri | None) -> None:
    assert parse_registry_uri(uri) == expected


def test_deploy_refuses_a_uri_outside_the_registry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="registry URI"):
        deploy_local(model_name="m", model_uri="runs:/abc/model", tracking_uri="sqlite:///x.db", state_dir=tmp_path)

    assert not (tmp_path / RECORD_FILE).exists()


def test_no_record_means_no_deployment(tmp_path: Path) -> None:
    assert read_deployment(tmp_path) is None
    assert stop_local(tmp_path) is False


def test_record_round_trips(tmp_path: Path) -> None:
    _write_record(tmp_path, pid=4242)

    deployment = read_deployment(tmp_path)

    assert deployment is not None
    assert (deployment.model_version, deployment.port, deployment.pid) == ("3", 9, 4242)
    assert deployment.log_path == tmp_path / "server-3.log"


def test_corrupt_record_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / RECORD_FILE).write_text("{not json", encoding="utf-8")

    with pytest.raises(ServingError, match=RECORD_FILE):
        read_deployment(tmp_path)


def test_stopping_a_dead_server_drops_its_record(tmp_path: Path) -> None:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    _write_record(tmp_path, pid=finished.pid)

    assert stop_local(tmp_path) is False
    assert read_deployment(tmp_path) is None


def test_a_reused_pid_that_is_no_model_server_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _write_record(tmp_path, pid=other.pid)

        assert stop_local(tmp_path) is False
        assert other.poll() is None
        assert read_deployment(tmp_path) is None
    finally:
        other.kill()
        other.wait()
