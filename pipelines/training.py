"""The training pipeline: ingest → check the range's data quality → validate → train → register (champion) → deploy."""

from kfp import dsl

from components.deploy.component import deploy_champion
from components.ingest.component import ingest_gdelt
from components.quality.component import check_range_quality
from components.register.component import register_model_version
from components.train.component import train_classifier
from components.validate.component import validate_gdelt


@dsl.pipeline(name="driftpilot-training", description="Train the first champion on GDELT batches and serve it.")
def training_pipeline(
    source: str,
    since: str,
    until: str,
    lake_dir: str,
    tracking_uri: str,
    artifact_root: str,
    serving_dir: str,
    model_name: str = "gdelt-tone",
    task: str = "gdelt-tone",
    seed: int = 42,
    algorithm: str = "lightgbm",
    serving_port: int = 0,
    ingest_workers: int = 2,
    dask_cluster: str = "local",
) -> None:
    """Train on a range of GDELT batches, register the model as champion and serve it.

    Args:
        source: GDELT feed base URL, ``s3://`` prefix or local folder of export files.
        since: First batch to train on, ``YYYYMMDD[HHMMSS]`` ('' for the oldest).
        until: Last batch to train on ('' for the newest).
        lake_dir: The lake: a local folder or ``s3://bucket/prefix``.
        tracking_uri: MLflow tracking URI.
        artifact_root: MLflow artifact location for a new experiment ('' lets the server choose).
        serving_dir: Folder of the local model server's state.
        model_name: Registered model name.
        task: Built-in task name or task YAML path.
        seed: Training seed.
        algorithm: ``lightgbm`` or ``catboost``.
        serving_port: Model server port (0 picks a free one).
        ingest_workers: Dask workers ingesting the range.
        dask_cluster: ``local``, ``kubernetes`` (Dask operator) or a scheduler address.
    """
    ingest = ingest_gdelt(
        source=source,
        lake_dir=lake_dir,
        since=since,
        until=until,
        workers=ingest_workers,
        cluster=dask_cluster,
    )
    # Incidents (a missing or re-published batch, a schema break) are quarantined, not trained on.
    quality = check_range_quality(lake_dir=lake_dir, since=since, until=until).after(ingest)
    validate = validate_gdelt(raw=quality.outputs["clean"], batch_id=quality.outputs["Output"], lake_dir=lake_dir)
    train = train_classifier(data=validate.outputs["valid"], task=task, seed=seed, algorithm=algorithm)
    register = register_model_version(
        model=train.outputs["model"],
        training_data=validate.outputs["valid"],
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        alias="champion",
        source_batches=quality.outputs["kept"],
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    deploy_champion(tracking_uri=tracking_uri, model_name=model_name, serving_dir=serving_dir, port=serving_port).after(
        register
    )
