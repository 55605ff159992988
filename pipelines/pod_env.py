"""What step pods of a compiled pipeline take from the cluster: a ConfigMap, Secrets, the decision volume.

In a cluster the steps find the lake, MLflow, S3 and the Optuna storage through environment
variables that the Helm chart keeps in a ConfigMap (settings) and Secrets (credentials). KFP sets
them per task through its Kubernetes platform spec (``kfp.kubernetes.use_config_map_as_env`` /
``use_secret_as_env``). The names are the release's, known when the pipelines are deployed, not
when they are defined, so they are added to the compiled files: the platform entries are produced
by ``kfp.kubernetes`` itself (on a one-step probe pipeline) and copied to every executor.

The steps that read and append to the decision state (the audit ledger, approvals, knowledge
base: ``STATE_STEPS``) also mount its PersistentVolumeClaim, so every run and the coordinator
share one ledger.
"""

import copy
import functools
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.common.errors import ConfigError

__all__ = ["SETTINGS_KEYS", "STATE_STEPS", "PodEnv", "add_pod_env", "parse_secret_env"]

SETTINGS_KEYS = (
    "DRIFTPILOT_LAKE",
    "DRIFTPILOT_TRACKING_URI",
    "DRIFTPILOT_S3_ENDPOINT",
    "AWS_REGION",
    "DRIFTPILOT_SERVING_IMAGE",
    "DRIFTPILOT_OPTUNA_STORAGE",
    "DRIFTPILOT_POD_ENV",
)
"""Keys of the settings ConfigMap, each set as the variable of the same name when present.
``DRIFTPILOT_POD_ENV`` names this ConfigMap and the Secrets, so a step can give the pods it
starts (Dask workers) the same environment by reference."""

STATE_STEPS = ("exec-decide-response", "exec-record-outcome", "exec-release-challenger")
"""Executors that mount the decision state's volume."""


@dataclass(frozen=True)
class PodEnv:
    """Where step pods take their environment from.

    Attributes:
        config_map: Settings ConfigMap ('' for none); its ``SETTINGS_KEYS`` present become
            variables (a key it lacks is skipped).
        secrets: Secret name → {key in the Secret: variable name}; every key must exist.
        state_pvc: PersistentVolumeClaim of the decision state ('' for none).
        state_mount: Where ``STATE_STEPS`` mount it (the pipeline's ``state_dir``).
    """

    config_map: str = ""
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    state_pvc: str = ""
    state_mount: str = "/var/lib/driftpilot/decisions"


def parse_secret_env(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """Parse ``NAME:KEY=VAR[,KEY=VAR...]`` flags into Secret name → {key: variable}.

    Raises:
        ConfigError: A flag is malformed.
    """
    secrets: dict[str, dict[str, str]] = {}
    for spec in specs:
        name, _, pairs = spec.partition(":")
        mapping = dict(pair.split("=", 1) for pair in pairs.split(",") if "=" in pair)
        if not name or not mapping or len(mapping) != len(pairs.split(",")):
            raise ConfigError(f"secret env {spec!r} is not NAME:KEY=VAR[,KEY=VAR...]")
        secrets.setdefault(name, {}).update(mapping)
    return secrets


def _platform_entries(env: PodEnv) -> dict[str, Any]:
    """The Kubernetes platform entries of one executor, as kfp.kubernetes writes them."""
    secrets = tuple((name, tuple(mapping.items())) for name, mapping in env.secrets.items())
    return copy.deepcopy(_compiled_entries(env.config_map, secrets, ("", "")))


def _state_entries(env: PodEnv) -> dict[str, Any]:
    """The platform entries that mount the decision state's volume."""
    return copy.deepcopy(_compiled_entries("", (), (env.state_pvc, env.state_mount)))


@functools.cache
def _compiled_entries(
    config_map: str, secrets: tuple[tuple[str, tuple[tuple[str, str], ...]], ...], pvc: tuple[str, str]
) -> dict[str, Any]:
    """Compile a one-step probe pipeline once per environment and return its executor's entries."""
    from kfp import compiler, dsl, kubernetes

    @dsl.container_component
    def probe() -> dsl.ContainerSpec:
        return dsl.ContainerSpec(image="probe", command=["true"])

    @dsl.pipeline(name="probe")
    def probe_pipeline() -> None:
        task = probe()
        if config_map:
            kubernetes.use_config_map_as_env(task, config_map, {k: k for k in SETTINGS_KEYS}, optional=True)
        for name, mapping in secrets:
            kubernetes.use_secret_as_env(task, name, dict(mapping))
        if pvc[0]:
            kubernetes.mount_pvc(task, pvc_name=pvc[0], mount_path=pvc[1])

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.yaml"
        compiler.Compiler().compile(probe_pipeline, str(path))
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    if len(documents) == 1:
        return {}
    entries: dict[str, Any] = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-probe"]
    return entries


def _mounts_state(executor: str) -> bool:
    """Whether an executor is one of ``STATE_STEPS`` (KFP numbers a component's further uses: ``-2``, ...)."""
    return any(executor == step or re.fullmatch(rf"{re.escape(step)}-\d+", executor) for step in STATE_STEPS)


def add_pod_env(compiled: Path, env: PodEnv) -> int:
    """Give every step of a compiled pipeline the ConfigMap's and Secrets' variables, in place.

    ``STATE_STEPS`` also mount the decision state's volume.

    Args:
        compiled: A pipeline compiled to KFP's YAML (with or without a platform spec).
        env: The ConfigMap, Secrets and the decision state's volume.

    Returns:
        The number of executors changed.
    """
    if not env.config_map and not env.secrets and not env.state_pvc:
        return 0
    entries = _platform_entries(env) if env.config_map or env.secrets else {}
    state = _state_entries(env) if env.state_pvc else {}
    documents = list(yaml.safe_load_all(compiled.read_text(encoding="utf-8")))
    if len(documents) == 1:
        documents.append({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {}}}}})
    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"].setdefault("executors", {})
    names = list(documents[0]["deploymentSpec"]["executors"])
    for name in names:
        config = executors.setdefault(name, {})
        for kind, values in [*entries.items(), *(state.items() if _mounts_state(name) else ())]:
            config[kind] = [*config.get(kind, []), *values]
    compiled.write_text(yaml.safe_dump_all(documents, sort_keys=True), encoding="utf-8")
    return len(names)
