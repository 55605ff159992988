"""Train a LightGBM classifier for a task, with early stopping on a held-out slice."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.common.errors import DataValidationError
from components.common.lake import VALIDATED, incident_key, validated_key
from components.common.storage import read_table, write_json
from components.common.store import Store
from components.common.task import TaskSpec, load_task
from components.evaluate.core import score_predictions
from components.features.core import build_features, build_labels, split_by_key
from components.train.model import TrainedModel

__all__ = ["TrainConfig", "TrainOutcome", "select_window", "train_files", "train_model", "validation_rows"]


@dataclass(frozen=True)
class TrainConfig:
    """LightGBM settings and the validation split.

    Attributes:
        num_boost_round: Upper bound on boosting rounds (early stopping picks the best).
        learning_rate: Shrinkage per round.
        num_leaves: Leaves per tree.
        min_child_samples: Minimum rows per leaf.
        feature_fraction: Share of features sampled per tree.
        early_stopping_rounds: Rounds without improvement on the validation slice before stopping.
        valid_fraction: Share of rows (chosen by id hash) held out for early stopping and metrics.
        seed: Random seed; training is deterministic given data and seed.
        num_threads: LightGBM threads (0: LightGBM's default).
    """

    num_boost_round: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.9
    early_stopping_rounds: int = 30
    valid_fraction: float = 0.2
    seed: int = 42
    num_threads: int = 0


@dataclass(frozen=True)
class TrainOutcome:
    """A trained model and how it did on its validation slice.

    Attributes:
        model: The trained model.
        metrics: Validation metrics (see ``score_predictions``) plus ``best_iteration``,
            ``train_rows`` and ``valid_rows``.
        params: The LightGBM parameters used.
    """

    model: TrainedModel
    metrics: dict[str, float]
    params: dict[str, float | int | str]


def validation_rows(
    frame: pd.DataFrame, task: TaskSpec, valid_fraction: float = TrainConfig.valid_fraction
) -> np.ndarray:
    """The rows ``train_model`` holds out of training (by a hash of the split column).

    Rows of any table that this returns True for were never trained on by a model trained on a
    table holding them, so their scores are out of sample (drift checks calibrate on them).

    Args:
        frame: Rows with the task's split column.
        task: The task spec.
        valid_fraction: The training's validation share.

    Returns:
        A boolean array, True for held-out rows.
    """
    return split_by_key(frame[task.split_column], valid_fraction, salt="train-valid")


def train_model(frame: pd.DataFrame, task: TaskSpec, config: TrainConfig = TrainConfig()) -> TrainOutcome:
    """Train a binary LightGBM model on validated rows.

    Args:
        frame: Validated rows with the task's columns and target.
        task: The task spec.
        config: Training settings.

    Returns:
        The model with its validation metrics.

    Raises:
        DataValidationError: When there are too few rows or only one class to learn from.
    """
    import lightgbm as lgb

    labels = build_labels(frame, task)
    if len(frame) < 50 or labels.nunique() < 2:
        raise DataValidationError(
            f"cannot train {task.name!r} on {len(frame)} rows with {labels.nunique()} class(es): "
            "need at least 50 rows and both classes"
        )
    features = build_features(frame, task)
    held_out = validation_rows(frame, task, config.valid_fraction)
    params: dict[str, float | int | str] = {
        "objective": "binary",
        "metric": "auc",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_child_samples": config.min_child_samples,
        "feature_fraction": config.feature_fraction,
        "cat_smooth": 10,
        "min_data_per_group": 20,
        "seed": config.seed,
        "deterministic": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }
    train_set = lgb.Dataset(features[~held_out], labels[~held_out], categorical_feature=list(task.categorical))
    valid_set = lgb.Dataset(features[held_out], labels[held_out], reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    model = TrainedModel(booster=booster, task=task)
    scores = score_predictions(labels[held_out].to_numpy(), model.predict_proba(frame[held_out]))
    scores.update(
        best_iteration=float(booster.best_iteration),
        train_rows=float((~held_out).sum()),
        valid_rows=float(held_out.sum()),
    )
    return TrainOutcome(model=model, metrics=scores, params=params)


def train_files(
    data_paths: list[Path], task_name: str, model_dir: Path, config: TrainConfig = TrainConfig()
) -> TrainOutcome:
    """Train on Parquet tables and save the model and its metrics into ``model_dir``.

    Args:
        data_paths: Validated tables; rows are concatenated in the given order.
        task_name: Built-in task name or task YAML path.
        model_dir: Output folder: the model files plus ``metrics.json``, ``params.json`` and the
            training rows' drift profile (``profile.json``).
        config: Training settings.

    Returns:
        The training outcome.
    """
    from components.drift.core import profile_task
    from components.drift.profile import PROFILE_FILE

    frame = pd.concat([read_table(p) for p in data_paths], ignore_index=True)
    task = load_task(task_name)
    outcome = train_model(frame, task, config)
    outcome.model.save(model_dir)
    # The drift stage compares every later batch with this profile of all the training rows.
    profile_task(frame, task).save(model_dir / PROFILE_FILE)
    write_json(outcome.metrics, model_dir / "metrics.json")
    write_json({**outcome.params, **asdict(config)}, model_dir / "params.json")
    return outcome


def select_window(
    lake: Store, batch_id: str, task_name: str, *, window_batches: int, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pick the rows to retrain on and the rows to judge the retrained model by.

    The training window is the ``window_batches`` newest validated batches up to ``batch_id``
    that the quality agent did not reject;
    the holdout is the share of the current batch (by the task's group key) kept out of it, so
    the challenger and the champion are compared on rows neither has seen.

    Args:
        lake: Root of the lake holding the validated batches.
        batch_id: The current batch.
        task_name: Built-in task name or task YAML path.
        window_batches: Batches in the window, the current one included.
        holdout_fraction: Share of the current batch held out for the promotion gate.

    Returns:
        The training rows and the holdout rows.

    Raises:
        DataValidationError: When the current batch has not been validated into the lake.
    """
    task = load_task(task_name)
    keys = [k for k in lake.keys(VALIDATED) if k.endswith(".parquet") and k <= validated_key(batch_id)]
    if not keys or keys[-1] != validated_key(batch_id) or lake.exists(incident_key(batch_id)):
        raise DataValidationError(f"batch {batch_id} is not in {lake.url(VALIDATED)}: validate it first")
    window: list[str] = []  # newest first; incidents are looked up only until the window is full
    for key in reversed(keys[:-1]):
        if len(window) == window_batches - 1:
            break
        if not lake.exists(incident_key(Path(key).stem)):
            window.append(key)
    current = lake.get_table(keys[-1]).to_pandas()
    held_out = split_by_key(current[task.split_column], holdout_fraction, salt="gate")
    past = [lake.get_table(k).to_pandas() for k in reversed(window)]
    train = pd.concat([*past, current[~held_out]], ignore_index=True)
    return train, current[held_out].reset_index(drop=True)
