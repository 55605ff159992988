"""Record models in MLflow: runs with lineage, registered versions, and the champion alias.

Each registered version carries its training rows' reference sample (the drift stage compares
new batches against the champion's reference) and its validation metrics (the decision stage
measures performance drops against them).
"""

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from components.common.errors import ModelRegistryError
from components.common.storage import read_json, read_table, write_table
from components.drift.profile import PROFILE_FILE
from components.features.core import input_columns
from components.train.model import TrainedModel

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "ModelRef",
    "fetch_champion",
    "find_alias",
    "load_model",
    "load_reference",
    "register_model",
    "set_alias",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
REFERENCE_ARTIFACT = "reference/reference.parquet"
_REFERENCE_ROWS = 50_000


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

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def _experiment_id(client: Any, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))


def _requirements() -> list[str]:
    """Pinned requirements of the served model: driftpilot and what its pyfunc imports."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("driftpilot", "lightgbm", "mlflow", "pandas", "numpy", "PyYAML"):
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
    tags: dict[str, str],
    alias: str = CHALLENGER,
) -> ModelRef:
    """Log a trained model as an MLflow run, register it and point an alias at it.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` locally, ``http://...`` in a cluster).
        artifact_root: Artifact location for a new experiment ('' lets the server choose).
        experiment: MLflow experiment name.
        model_name: Registered model name.
        model_dir: Folder from the train stage (model, ``metrics.json``, ``params.json``).
        training_data: Validated tables the model was trained on; a sample becomes the reference.
        tags: Lineage tags (source batches, pipeline run, incident id).
        alias: Alias to set on the new version.

    Returns:
        The new version.
    """
    import mlflow
    from mlflow.models import infer_signature

    from components.register.pyfunc import MODEL_ARTIFACT, DriftpilotPyfunc

    client = _client(tracking_uri)
    experiment_id = _experiment_id(client, experiment, artifact_root)
    model = TrainedModel.load(model_dir)
    metrics: dict[str, float] = read_json(model_dir / "metrics.json")
    params: dict[str, Any] = read_json(model_dir / "params.json")
    frame = pd.concat([read_table(p) for p in training_data], ignore_index=True)
    reference = frame.sample(n=min(len(frame), _REFERENCE_ROWS), random_state=0) if len(frame) else frame
    example = _signature_frame(frame, model)
    signature = infer_signature(example, model.predict_proba(example))
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({f"valid_{k}": v for k, v in metrics.items() if v == v})
        mlflow.set_tags({**tags, "driftpilot.task": model.task.name})
        write_table(reference, Path(tmp) / "reference.parquet")
        mlflow.log_artifact(str(Path(tmp) / "reference.parquet"), artifact_path="reference")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DriftpilotPyfunc(),
            artifacts={MODEL_ARTIFACT: str(model_dir)},
            signature=signature,
            input_example=example,
            # Stated, not inferred: inference loads the model in a subprocess and takes seconds.
            pip_requirements=_requirements(),
        )
        run_id = run.info.run_id
    version = mlflow.register_model(info.model_uri, model_name, tags=tags)
    client.set_registered_model_alias(model_name, alias, version.version)
    client.set_model_version_tag(model_name, version.version, "driftpilot.metrics", json.dumps(metrics))
    return ModelRef(model_name, str(version.version), run_id, f"models:/{model_name}/{version.version}", metrics)


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


def set_alias(*, tracking_uri: str, model_name: str, version: str, alias: str = CHAMPION) -> None:
    """Point an alias (by default ``champion``) at a version."""
    _client(tracking_uri).set_registered_model_alias(model_name, alias, version)


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
    """Copy the champion's model files (with its drift profile) and reference sample out of MLflow.

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
        for profile in (Path(tmp) / "model").rglob(PROFILE_FILE):  # versions trained before profiles have none
            shutil.copy(profile, model_dir / PROFILE_FILE)
        write_table(load_reference(tracking_uri=tracking_uri, run_id=champion.run_id, dest=Path(tmp)), reference_path)
    return champion
