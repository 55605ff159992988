"""KFP wrappers of the register stage: record a version, fetch the champion and the previous one."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def register_model_version(
    model: Input[Model],
    training_data: Input[Dataset],
    tracking_uri: str,
    artifact_root: str,
    model_name: str,
    alias: str,
    source_batches: str,
    pipeline_run: str,
    incident: str = "",
    study: str = "",
) -> str:
    """Log a trained model to MLflow with its lineage, register a version and set an alias on it.

    Args:
        model: The model folder from the train stage.
        training_data: The rows it was trained on (a sample becomes the drift reference).
        tracking_uri: MLflow tracking URI.
        artifact_root: Artifact location for a new experiment ('' lets the server choose).
        model_name: Registered model name (also the experiment name).
        alias: Alias to point at the new version: ``challenger``, or ``champion`` for a model's
            first version.
        source_batches: The batches of the training data, comma-separated, oldest first.
        pipeline_run: The KFP run that trained it.
        incident: The incident that caused the training ('' for none).
        study: The Optuna study its parameters came from ('' when untuned).

    Returns:
        The new version number.
    """
    from pathlib import Path

    from components.register.core import Lineage, register_model

    lineage = Lineage(tuple(b for b in source_batches.split(",") if b), incident, pipeline_run, study)
    ref = register_model(
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        experiment=model_name,
        model_name=model_name,
        model_dir=Path(model.path),
        training_data=[Path(training_data.path)],
        alias=alias,
        lineage=lineage,
    )
    return ref.version


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def fetch_champion(
    tracking_uri: str,
    model_name: str,
    model: Output[Model],
    reference: Output[Dataset],
    baseline: Output[Artifact],
    previous: Output[Model],
) -> NamedTuple("Champion", [("version", str), ("baseline_auc", float), ("params", str), ("previous_version", str)]):
    """Copy the serving champion, its training reference sample and the previous champion out of MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        model: The champion's model folder.
        reference: A sample of the champion's training rows.
        baseline: The champion's validation metrics (JSON).
        previous: The previous champion's model folder (the version that lost ``champion`` to
            this one); without one, a folder holding only ``absent.json`` (an artifact is handed
            on whatever it holds).

    Returns:
        The champion's version, its validation AUC, its training parameters (JSON, with the
        Optuna study they came from under ``study``; a tuning study's warm start) and the
        previous champion's version ('' when there is none).
    """
    import json
    from pathlib import Path

    from components.common.storage import read_json, write_json
    from components.register.core import PARAMS_FILE, fetch_previous_champion, lineage_of
    from components.register.core import fetch_champion as fetch

    ref = fetch(
        tracking_uri=tracking_uri,
        model_name=model_name,
        model_dir=Path(model.path),
        reference_path=Path(reference.path),
    )
    before = fetch_previous_champion(tracking_uri=tracking_uri, model_name=model_name, model_dir=Path(previous.path))
    write_json(ref.metrics, Path(baseline.path))
    params_file = Path(model.path) / PARAMS_FILE
    # The study the champion's parameters came from travels with them (a warm start reads its best trials).
    study = lineage_of(tracking_uri=tracking_uri, model_name=model_name, version=ref.version)["study"]
    params = json.dumps({**read_json(params_file), "study": study}, sort_keys=True) if params_file.exists() else ""
    return (ref.version, float(ref.metrics.get("auc", float("nan"))), params, before.version if before else "")
