import re
from pathlib import Path

import pytest
import yaml

from components.common.errors import ConfigError
from pipelines.cli import compile_pipelines
from pipelines.pod_env import SETTINGS_KEYS, STATE_STEPS, PodEnv, add_pod_env, parse_secret_env


def test_every_step_pod_gets_the_settings_and_the_secrets(tmp_path: Path) -> None:
    env = PodEnv(
        "driftpilot-pipeline-env",
        parse_secret_env(["driftpilot-minio:root-user=AWS_ACCESS_KEY_ID,root-password=AWS_SECRET_ACCESS_KEY"]),
    )
    for path in compile_pipelines(tmp_path):
        before = yaml.safe_load(path.read_text())
        changed = add_pod_env(path, env)
        spec, platform = yaml.safe_load_all(path.read_text())
        assert spec == before  # the pipeline itself is unchanged
        executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        assert changed == len(spec["deploymentSpec"]["executors"]) == len(executors) >= 4
        for config in executors.values():
            (config_map,) = config["configMapAsEnv"]
            assert config_map["configMapName"] == "driftpilot-pipeline-env" and config_map["optional"] is True
            assert {k["envVar"] for k in config_map["keyToEnv"]} == set(SETTINGS_KEYS)
            (secret,) = config["secretAsEnv"]
            assert secret["secretName"] == "driftpilot-minio"
            assert {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]} == {
                ("root-user", "AWS_ACCESS_KEY_ID"),
                ("root-password", "AWS_SECRET_ACCESS_KEY"),
            }


def test_a_second_pass_adds_to_what_is_there_and_no_env_changes_nothing(tmp_path: Path) -> None:
    path = compile_pipelines(tmp_path)[0]
    original = path.read_text()
    assert add_pod_env(path, PodEnv()) == 0 and path.read_text() == original
    add_pod_env(path, PodEnv(secrets={"a": {"k": "A"}}))
    add_pod_env(path, PodEnv(secrets={"b": {"k": "B"}}))
    _, platform = yaml.safe_load_all(path.read_text())
    for config in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        assert [s["secretName"] for s in config["secretAsEnv"]] == ["a", "b"]


def test_the_deciding_and_releasing_steps_alone_mount_the_decision_state(tmp_path: Path) -> None:
    env = PodEnv("driftpilot-pipeline-env", state_pvc="driftpilot-decisions", state_mount="/var/lib/decisions")
    (path,) = [p for p in compile_pipelines(tmp_path) if p.name == "drift_response_pipeline.yaml"]
    add_pod_env(path, env)
    spec, platform = yaml.safe_load_all(path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {name for name, config in executors.items() if "pvcMount" in config}
    # Every use of each step mounts it: the releases after a retrain, a recalibration, a rollback, ...
    assert {re.sub(r"-\d+$", "", name) for name in mounted} == set(STATE_STEPS)
    releases = {name for name in spec["deploymentSpec"]["executors"] if name.startswith("exec-release-challenger")}
    assert len(releases) >= 2 and releases <= mounted and mounted <= set(spec["deploymentSpec"]["executors"])
    for name in mounted:
        (mount,) = executors[name]["pvcMount"]
        assert mount["mountPath"] == "/var/lib/decisions" and "driftpilot-decisions" in yaml.safe_dump(mount)
        assert executors[name]["configMapAsEnv"][0]["configMapName"] == "driftpilot-pipeline-env"


@pytest.mark.parametrize("flag", ["nocolon", "name:", "name:key", "name:k=V,broken", ":k=V"])
def test_a_malformed_secret_flag_is_refused(flag: str) -> None:
    with pytest.raises(ConfigError, match="NAME:KEY=VAR"):
        parse_secret_env([flag])
