"""The training pipeline: ingest → validate → train → register (champion) → deploy."""

from kfp import dsl

from components.deploy.component import deploy_champion
from components.ingest.component import ingest_gdelt
from components.register.component import register_model_version
from components.train.component import train_lightgbm
from components.validate.component import validate_gdelt


@dsl.pipeline(name="driftpilot-training", description="Train the first champion on GDELT batches and serve it.")
def training_pipeline(
    source_paths: list,
    lake_dir: str,
    tracking_uri: str,
    artifact_root: str,
    serving_dir: str,
    model_name: str = "gdelt-tone",
    task: str = "gdelt-tone",
    seed: int = 42,
    serving_port: int = 0,
) -> None:
    """Train on GDELT export files, register the model as champion and serve it.

    Args:
        source_paths: GDELT export files to train on.
        lake_dir: Root of the lake (validated batches, quarantine).
        tracking_uri: MLflow tracking URI.
        artifact_root: MLflow artifact location for a new experiment ('' lets the server choose).
        serving_dir: Folder of the local model server's state.
        model_name: Registered model name.
        task: Built-in task name or task YAML path.
        seed: Training seed.
        serving_port: Model server port (0 picks a free one).
    """
    ingest = ingest_gdelt(source_paths=source_paths, lake_dir=lake_dir)
    validate = validate_gdelt(raw=ingest.outputs["raw"], batch_id=ingest.outputs["Output"], lake_dir=lake_dir)
    train = train_lightgbm(data=validate.outputs["valid"], task=task, seed=seed)
    register = register_model_version(
        model=train.outputs["model"],
        training_data=validate.outputs["valid"],
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        alias="champion",
        source_batch=ingest.outputs["Output"],
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    deploy_champion(tracking_uri=tracking_uri, model_name=model_name, serving_dir=serving_dir, port=serving_port).after(
        register
    )
