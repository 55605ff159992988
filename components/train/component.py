"""KFP wrappers of the train stage: pick the retraining window, train a model."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def select_training_window(
    lake_dir: str,
    batch_id: str,
    task: str,
    window_batches: int,
    holdout_fraction: float,
    train_data: Output[Dataset],
    holdout: Output[Dataset],
) -> NamedTuple("Window", [("train_rows", int), ("holdout_rows", int), ("batches", str)]):
    """Pick the recent validated batches to retrain on and hold out part of the current batch.

    Args:
        lake_dir: The lake holding validated batches (a local folder or ``s3://bucket/prefix``).
        batch_id: The current batch.
        task: Built-in task name or task YAML path.
        window_batches: Batches in the training window, the current one included.
        holdout_fraction: Share of the current batch (by group key) kept for the promotion gate.
        train_data: Rows to train on (Parquet).
        holdout: Rows to judge challenger and champion by (Parquet).

    Returns:
        Row counts of both tables and the window's batches (comma-separated, oldest first).
    """
    from pathlib import Path

    from components.common.storage import write_table
    from components.common.store import Store
    from components.train.core import select_window

    rows, held, batches = select_window(
        Store(lake_dir), batch_id, task, window_batches=window_batches, holdout_fraction=holdout_fraction
    )
    write_table(rows, Path(train_data.path))
    write_table(held, Path(holdout.path))
    return (len(rows), len(held), ",".join(batches))


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def train_classifier(
    data: Input[Dataset],
    task: str,
    seed: int,
    model: Output[Model],
    metrics: Output[Metrics],
    algorithm: str = "lightgbm",
    params: str = "",
) -> float:
    """Train a LightGBM or CatBoost classifier with early stopping on a held-out slice of groups.

    Args:
        data: Validated rows with the task's columns and target.
        task: Built-in task name or task YAML path.
        seed: Random seed; same data and seed give the same model.
        model: The model folder (model file, task, metrics, params, drift profile).
        metrics: Validation metrics.
        algorithm: ``lightgbm`` or ``catboost``.
        params: Library parameters as JSON over its defaults (a tuning study's best; '' for none).

    Returns:
        Validation AUC.
    """
    import json
    from pathlib import Path

    from components.train.core import TrainConfig, train_files

    config = TrainConfig(algorithm=algorithm, params=json.loads(params) if params else {}, seed=seed)
    outcome = train_files([Path(data.path)], task, Path(model.path), config)
    for name, value in outcome.metrics.items():
        metrics.log_metric(name, value)
    return outcome.metrics["auc"]


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def update_classifier(
    champion: Input[Model], data: Input[Dataset], seed: int, model: Output[Model], metrics: Output[Metrics]
) -> float:
    """Continue boosting the champion on the new rows (the cheap incremental update).

    Args:
        champion: The champion's model folder.
        data: New validated rows.
        seed: Random seed.
        model: The updated model folder.
        metrics: Validation metrics on the new rows' held-out slice.

    Returns:
        Validation AUC.
    """
    from pathlib import Path

    from components.train.core import TrainConfig, train_files

    config = TrainConfig(num_boost_round=100, seed=seed)
    outcome = train_files([Path(data.path)], "", Path(model.path), config, champion_dir=Path(champion.path))
    for name, value in outcome.metrics.items():
        metrics.log_metric(name, value)
    return outcome.metrics["auc"]


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def recalibrate_model(
    champion: Input[Model],
    data: Input[Dataset],
    holdout_fraction: float,
    model: Output[Model],
    holdout: Output[Dataset],
) -> float:
    """Move the champion's scores to the batch's label prior (trees unchanged): the prior-shift fix.

    Args:
        champion: The champion's model folder.
        data: The batch's validated rows.
        holdout_fraction: Share of the batch held out for the promotion gate.
        model: The recalibrated model folder.
        holdout: The held-out rows the gate compares the two models on.

    Returns:
        The factor the champion's prior odds were multiplied by.
    """
    from pathlib import Path

    from components.train.core import recalibrate_files

    return recalibrate_files(
        Path(champion.path),
        Path(data.path),
        holdout_fraction=holdout_fraction,
        out_dir=Path(model.path),
        holdout_path=Path(holdout.path),
    )
