"""Record models in MLflow: runs with lineage, registered versions, the gate's verdicts and the aliases.

Each registered version carries its training rows' reference sample (the drift stage compares
new batches against the champion's reference), its validation metrics (the decision stage
measures performance drops against them) and its lineage: the batches it was trained on, the
incident that caused it, the KFP run and the Optuna study.

Registration happens in three steps, each retried with backoff when the tracking server or the
object store fails: (1) one run logs everything, artifacts included; (2) one request creates the
version with all its tags (a retry first looks for a version of that run, so none is made
twice); (3) the alias is set. When step 3 finally fails the version is deleted again, so no
version is left half-registered. The ``champion`` alias moves only to a version the promotion
gate passed (``record_gate`` then ``promote``), or to the first version of a model.
"""

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from components.common.errors import ModelRegistryError
from components.common.retry import RetryPolicy, retrying
from components.common.storage import read_json, read_table, write_table
from components.drift.profile import PROFILE_FILE
from components.features.core import input_columns
from components.train.model import TrainedModel

__all__ = [
    "CANARY_TAG",
    "CHALLENGER",
    "CHAMPION",
    "Lineage",
    "ModelRef",
    "fetch_champion",
    "find_alias",
    "lineage_of",
    "load_model",
    "load_reference",
    "promote",
    "record_canary",
    "record_gate",
    "register_model",
    "set_alias",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
REFERENCE_ARTIFACT = "reference/reference.parquet"
GATE_TAG = "driftpilot.gate"
CANARY_TAG = "driftpilot.canary"
PARAMS_FILE = "params.json"
_REFERENCE_ROWS = 50_000
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lineage:
    """Where a model came from, kept as tags on its run and its registered version.

    Attributes:
        source_batches: The batches its training rows came from, oldest first.
        incident: The incident (correlation id) that caused the training ('' for none).
        kfp_run: The KFP run that trained it.
        study: The Optuna study its parameters came from ('' when untuned).
        extra: Further tags.
    """

    source_batches: tuple[str, ...] = ()
    incident: str = ""
    kfp_run: str = ""
    study: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The lineage as MLflow tags (``driftpilot.*``)."""
        return {
            "driftpilot.source_batches": ",".join(self.source_batches),
            "driftpilot.incident": self.incident,
            "driftpilot.kfp_run": self.kfp_run,
            "driftpilot.study": self.study,
            **self.extra,
        }


@dataclass(frozen=True)
class ModelRef:
    """A registered model version.

    Attributes:
        name: Registered model name.
        version: Version number, as a string like MLflow's.
        run_id: MLflow run that produced it.
        uri: ``models:/<name>/<version>``.
        metrics: Validation metrics logged with the run.
    """

    name: str
    version: str
    run_id: str
    uri: str
    metrics: dict[str, float]


def _client(tracking_uri: str) -> Any:
    import mlflow

    # MLflow's own HTTP retries would wait minutes in silence; ``_retried`` owns the retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def _transient(exc: BaseException) -> bool:
    """A failure to reach the tracking server or the object store, worth another attempt."""
    import requests
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    network = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)
    return isinstance(exc, (*network, BotoCoreError, S3UploadFailedError))


def _retried(call: Callable[[], T], what: str, policy: RetryPolicy | None) -> T:
    return retrying(call, what=what, error=ModelRegistryError, transient=_transient, policy=policy)


def _experiment_id(client: Any, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))


def _requirements(algorithm: str) -> list[str]:
    """Pinned requirements of the served model: driftpilot and what its pyfunc imports."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("driftpilot", algorithm, "mlflow", "pandas", "numpy", "PyYAML"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def _signature_frame(frame: pd.DataFrame, model: TrainedModel) -> pd.DataFrame:
    """Input rows as a caller sends them: categories as strings, numbers as floats."""
    columns = input_columns(model.task)
    example = frame[list(columns)].head(5).copy()
    for column in columns:
        if column in model.task.categorical:
            example[column] = example[column].astype("string").fillna("").astype(str)
        else:
            example[column] = pd.to_numeric(example[column], errors="coerce").astype("float64")
    return example.reset_index(drop=True)


def register_model(
    *,
    tracking_uri: str,
    artifact_root: str,
    experiment: str,
    model_name: str,
    model_dir: Path,
    training_data: list[Path],
    lineage: Lineage,
    alias: str = CHALLENGER,
    retry: RetryPolicy | None = None,
) -> ModelRef:
    """Log a trained model as an MLflow run, register it and point an alias at it.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` locally, ``http://...`` in a cluster).
        artifact_root: Artifact location for a new experiment ('' lets the server choose).
        experiment: MLflow experiment name.
        model_name: Registered model name.
        model_dir: Folder from the train stage (model, ``metrics.json``, ``params.json``).
        training_data: Validated tables the model was trained on; a sample becomes the reference.
        lineage: Source batches, incident, KFP run and study (tags on the run and the version).
        alias: Alias to set on the new version: ``challenger``, or ``champion`` for a model's first
            version only (later champions pass the gate: ``record_gate``, ``promote``).
        retry: Attempts and backoff for each step (default: ``RetryPolicy.from_env()``).

    Returns:
        The new version.

    Raises:
        ModelRegistryError: When the model already has a champion and ``alias`` is ``champion``,
            or when a step still fails after its retries (nothing is left registered then).
    """
    client = _client(tracking_uri)
    if alias == CHAMPION and find_alias(tracking_uri=tracking_uri, model_name=model_name) is not None:
        raise ModelRegistryError(
            f"{model_name!r} has a champion: register as {CHALLENGER!r}; the gate promotes it (record_gate, promote)"
        )
    model = TrainedModel.load(model_dir)
    metrics: dict[str, float] = read_json(model_dir / "metrics.json")
    tags = {
        **lineage.tags(),
        "driftpilot.task": model.task.name,
        "driftpilot.algorithm": model.algorithm,
        "driftpilot.metrics": json.dumps(metrics),
    }
    if alias == CHAMPION:
        tags[GATE_TAG] = "promote"
        tags["driftpilot.gate.reason"] = "the model's first version: no champion to compare with"
    run_id, model_uri, model_id = _retried(
        lambda: _log_run(client, experiment, artifact_root, model, model_dir, training_data, metrics, tags),
        f"log a run of {model_name!r} to {tracking_uri}",
        retry,
    )
    version = _retried(
        lambda: _create_version(client, model_name, model_uri, run_id, model_id, tags),
        f"register a version of {model_name!r} in {tracking_uri}",
        retry,
    )
    try:
        _point(client, model_name, alias, version, retry)
    except ModelRegistryError:
        _delete_version(client, model_name, version)
        raise
    return ModelRef(model_name, version, run_id, f"models:/{model_name}/{version}", metrics)


def _log_run(
    client: Any,
    experiment: str,
    artifact_root: str,
    model: TrainedModel,
    model_dir: Path,
    training_data: list[Path],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> tuple[str, str, str]:
    """One run with parameters, metrics, tags, the reference sample and the model; FAILED if any fails."""
    import mlflow
    from mlflow.models import infer_signature

    from components.register.pyfunc import MODEL_ARTIFACT, DriftpilotPyfunc

    experiment_id = _experiment_id(client, experiment, artifact_root)
    params: dict[str, Any] = read_json(model_dir / PARAMS_FILE)
    frame = pd.concat([read_table(p) for p in training_data], ignore_index=True)
    reference = frame.sample(n=min(len(frame), _REFERENCE_ROWS), random_state=0) if len(frame) else frame
    example = _signature_frame(frame, model)
    signature = infer_signature(example, model.predict_proba(example))
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({f"valid_{k}": v for k, v in metrics.items() if v == v})
        mlflow.set_tags(tags)
        write_table(reference, Path(tmp) / "reference.parquet")
        mlflow.log_artifact(str(Path(tmp) / "reference.parquet"), artifact_path="reference")
        # MLflow keeps a folder under its own name: copied, it lands at artifacts/model/ whatever it was called.
        folder = shutil.copytree(model_dir, Path(tmp) / MODEL_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DriftpilotPyfunc(),
            artifacts={MODEL_ARTIFACT: str(folder)},
            signature=signature,
            input_example=example,
            # Stated, not inferred: inference loads the model in a subprocess and takes seconds.
            pip_requirements=_requirements(model.algorithm),
        )
    return str(run.info.run_id), str(info.model_uri), str(info.model_id)


def _create_version(client: Any, name: str, source: str, run_id: str, model_id: str, tags: dict[str, str]) -> str:
    """Create the version in one request carrying its tags; a retry finds the one already made."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return str(existing[0].version)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
    return str(version.version)


def _delete_version(client: Any, name: str, version: str) -> None:
    """Remove a version whose alias could not be set; say so when even that fails."""
    try:
        client.delete_model_version(name, version)
    except Exception as exc:  # the server may still be down: the operator is told what to remove
        log.error("version %s of %r has no alias and could not be deleted (%s): delete it by hand", version, name, exc)


def record_gate(
    *, tracking_uri: str, model_name: str, version: str, verdict: dict[str, Any], retry: RetryPolicy | None = None
) -> None:
    """Record the promotion gate's verdict on a version and its run.

    The version gets ``driftpilot.gate`` (``promote`` or ``keep``) and the reason as tags; the
    run gets the gate's numbers as ``gate_*`` metrics and the whole verdict as ``gate/verdict.json``.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The challenger's version.
        verdict: The gate's result (``GateResult.to_dict()``): ``promote`` and ``reason`` at least.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Raises:
        ModelRegistryError: When the verdict cannot be recorded after the retries.
    """
    client = _client(tracking_uri)

    def record() -> None:
        run_id = client.get_model_version(model_name, version).run_id
        numbers = {f"gate_{k}": float(v) for k, v in _flat(verdict).items() if isinstance(v, (int, float))}
        client.log_batch(run_id, metrics=[_metric(k, v) for k, v in numbers.items() if math.isfinite(v)])
        client.log_dict(run_id, verdict, "gate/verdict.json")
        client.set_model_version_tag(model_name, version, "driftpilot.gate.reason", str(verdict["reason"]))
        # Last: a version counts as passed only once everything above is recorded.
        client.set_model_version_tag(model_name, version, GATE_TAG, "promote" if verdict["promote"] else "keep")

    _retried(record, f"record the gate's verdict on version {version} of {model_name!r}", retry)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}_"))
        elif not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _metric(key: str, value: float) -> Any:
    import time

    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)


def promote(*, tracking_uri: str, model_name: str, version: str, retry: RetryPolicy | None = None) -> str:
    """Point ``champion`` at a version the promotion gate passed; serving follows the alias.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The version to promote.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Returns:
        The version that was champion before ('' when there was none).

    Raises:
        ModelRegistryError: When the gate did not pass the version, or the registry cannot be reached.
    """
    client = _client(tracking_uri)
    tags = _retried(
        lambda: client.get_model_version(model_name, version).tags, f"read version {version} of {model_name!r}", retry
    )
    if tags.get(GATE_TAG) != "promote":
        why = tags.get("driftpilot.gate.reason", "the promotion gate has not judged it")
        raise ModelRegistryError(f"version {version} of {model_name!r} may not become {CHAMPION!r}: {why}")
    previous = find_alias(tracking_uri=tracking_uri, model_name=model_name)
    _point(client, model_name, CHAMPION, version, retry)
    return previous.version if previous else ""


def record_canary(
    *,
    tracking_uri: str,
    model_name: str,
    version: str,
    promoted: bool,
    reason: str,
    decisions: list[dict[str, Any]],
    retry: RetryPolicy | None = None,
) -> None:
    """Record how a version's canary ended: tags on the version, every decision on its run.

    The version gets ``driftpilot.canary`` (``promoted`` or ``rolled_back``) and the reason; the
    run gets ``canary/decisions.json``.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The canary's version.
        promoted: Whether the canary took all traffic.
        reason: The last decision's reason.
        decisions: Every decision (``Verdict.to_dict()``), in order.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Raises:
        ModelRegistryError: When the outcome cannot be recorded after the retries.
    """
    client = _client(tracking_uri)

    def record() -> None:
        run_id = client.get_model_version(model_name, version).run_id
        client.log_dict(run_id, {"promoted": promoted, "decisions": decisions}, "canary/decisions.json")
        client.set_model_version_tag(model_name, version, f"{CANARY_TAG}.reason", reason[:4000])
        client.set_model_version_tag(model_name, version, CANARY_TAG, "promoted" if promoted else "rolled_back")

    _retried(record, f"record the canary of version {version} of {model_name!r}", retry)


def lineage_of(*, tracking_uri: str, model_name: str, version: str) -> dict[str, Any]:
    """Read a registered version's lineage and its gate verdict back from MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The version.

    Returns:
        ``source_batches`` (a list), ``incident``, ``kfp_run``, ``study``, ``run_id``, ``task``,
        ``algorithm``, ``gate``, ``gate_reason``, ``canary`` (``promoted``, ``rolled_back`` or '')
        and ``canary_reason``.
    """
    found = _client(tracking_uri).get_model_version(model_name, version)
    tags = found.tags
    batches = tags.get("driftpilot.source_batches", "")
    return {
        "source_batches": batches.split(",") if batches else [],
        "incident": tags.get("driftpilot.incident", ""),
        "kfp_run": tags.get("driftpilot.kfp_run", ""),
        "study": tags.get("driftpilot.study", ""),
        "run_id": str(found.run_id),
        "task": tags.get("driftpilot.task", ""),
        "algorithm": tags.get("driftpilot.algorithm", ""),
        "gate": tags.get(GATE_TAG, ""),
        "gate_reason": tags.get("driftpilot.gate.reason", ""),
        "canary": tags.get(CANARY_TAG, ""),
        "canary_reason": tags.get(f"{CANARY_TAG}.reason", ""),
    }


def find_alias(*, tracking_uri: str, model_name: str, alias: str = CHAMPION) -> ModelRef | None:
    """Return the version an alias points at, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    metrics = json.loads(version.tags.get("driftpilot.metrics", "{}"))
    return ModelRef(
        model_name, str(version.version), str(version.run_id), f"models:/{model_name}/{version.version}", metrics
    )


def set_alias(
    *, tracking_uri: str, model_name: str, version: str, alias: str = CHALLENGER, retry: RetryPolicy | None = None
) -> None:
    """Point an alias other than ``champion`` at a version (``promote`` moves ``champion``).

    Raises:
        ModelRegistryError: For ``champion``, or when the registry cannot be reached.
    """
    if alias == CHAMPION:
        raise ModelRegistryError(f"{CHAMPION!r} moves only through the promotion gate: record_gate, then promote")
    _point(_client(tracking_uri), model_name, alias, version, retry)


def _point(client: Any, model_name: str, alias: str, version: str, retry: RetryPolicy | None) -> None:
    _retried(
        lambda: client.set_registered_model_alias(model_name, alias, version),
        f"point {alias!r} at version {version} of {model_name!r}",
        retry,
    )


def load_model(*, tracking_uri: str, model_uri: str, dest: Path) -> TrainedModel:
    """Download a registered model's files into ``dest`` and load them.

    Raises:
        ModelRegistryError: When the model cannot be downloaded.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from components.register.pyfunc import MODEL_ARTIFACT

    _client(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest))
    except MlflowException as exc:
        raise ModelRegistryError(f"cannot download {model_uri} from {tracking_uri}: {exc}") from exc
    return TrainedModel.load(Path(local) / "artifacts" / MODEL_ARTIFACT)


def load_reference(*, tracking_uri: str, run_id: str, dest: Path) -> pd.DataFrame:
    """Download the reference sample logged with a model's run.

    Raises:
        ModelRegistryError: When the run has no reference sample.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    _client(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(dest))
    except MlflowException as exc:
        raise ModelRegistryError(f"run {run_id} has no reference sample: {exc}") from exc
    return read_table(Path(local))


def fetch_champion(*, tracking_uri: str, model_name: str, model_dir: Path, reference_path: Path) -> ModelRef:
    """Copy the champion's model files (with its drift profile and parameters) and reference sample out of MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        model_dir: Where the ``TrainedModel`` folder is written.
        reference_path: Where the reference sample is written (Parquet).

    Returns:
        The champion version.

    Raises:
        ModelRegistryError: When the model has no champion yet.
    """
    champion = find_alias(tracking_uri=tracking_uri, model_name=model_name)
    if champion is None:
        raise ModelRegistryError(
            f"{model_name!r} has no {CHAMPION!r} alias in {tracking_uri}: run the training pipeline first"
        )
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(tracking_uri=tracking_uri, model_uri=champion.uri, dest=Path(tmp) / "model")
        model.save(model_dir)
        for name in (PROFILE_FILE, PARAMS_FILE):  # versions trained before profiles have none
            for found in (Path(tmp) / "model").rglob(name):
                shutil.copy(found, model_dir / name)
        write_table(load_reference(tracking_uri=tracking_uri, run_id=champion.run_id, dest=Path(tmp)), reference_path)
    return champion
