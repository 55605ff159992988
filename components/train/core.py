"""Train a classifier for a task (LightGBM or CatBoost), with early stopping on a held-out slice.

``train_model`` fits from scratch; ``update_model`` continues the champion on new rows (the cheap
incremental update). Both hold out the same rows by a hash of the task's group key, undersample
negatives when the task asks for it, and record the odds ratio that moves the model's
probabilities back to the population's prior.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import DataValidationError
from components.common.lake import VALIDATED, incident_key, validated_key
from components.common.storage import read_table, write_json
from components.common.store import Store
from components.common.task import TaskSpec, load_task
from components.evaluate.core import population_weights, score_predictions
from components.features.core import build_features, build_labels, split_by_key
from components.train.model import TrainedModel
from components.train.trainers import get_trainer

__all__ = [
    "TrainConfig",
    "TrainOutcome",
    "select_window",
    "train_files",
    "train_model",
    "training_rows",
    "undersample",
    "update_model",
    "validation_rows",
]


@dataclass(frozen=True)
class TrainConfig:
    """Training settings and the validation split.

    Attributes:
        algorithm: ``lightgbm`` or ``catboost``.
        params: Library parameters over its defaults (a tuning study's best, say).
        num_boost_round: Upper bound on boosting rounds (early stopping picks the best).
        early_stopping_rounds: Rounds without a better validation log loss before stopping.
        valid_fraction: Share of rows (chosen by group-key hash) held out for early stopping and metrics.
        seed: Random seed; training is deterministic given data and seed.
        num_threads: Library threads (0: the library's default).
    """

    algorithm: str = "lightgbm"
    params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    valid_fraction: float = 0.2
    seed: int = 42
    num_threads: int = 0


@dataclass(frozen=True)
class TrainOutcome:
    """A trained model and how it did on its validation slice.

    Attributes:
        model: The trained model.
        metrics: Validation metrics (see ``score_predictions``; at the task's population prior)
            plus ``best_iteration``, ``train_rows``, ``valid_rows`` and ``valid_log_loss_train_prior``
            (the early-stopping loss).
        params: The library parameters used.
    """

    model: TrainedModel
    metrics: dict[str, float]
    params: dict[str, Any]


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


def undersample(frame: pd.DataFrame, labels: pd.Series, task: TaskSpec) -> np.ndarray:
    """Rows to keep so positives make up at least the task's ``min_train_positive_rate``.

    Negatives are dropped by a hash of the group key (deterministic, whole groups at a time);
    every positive is kept.

    Args:
        frame: Labelled rows.
        labels: Their 0/1 labels.
        task: The task spec.

    Returns:
        A boolean array, True for rows to keep.
    """
    positives = int(labels.sum())
    negatives = len(labels) - positives
    target = task.min_train_positive_rate
    if target <= 0 or negatives == 0 or positives / len(labels) >= target:
        return np.ones(len(labels), dtype=bool)
    keep_share = positives * (1 - target) / (target * negatives)
    kept = split_by_key(frame[task.split_column], keep_share, salt="undersample")
    return kept | (labels.to_numpy() == 1)


def _odds(rate: float) -> float:
    return rate / (1 - rate)


@dataclass(frozen=True)
class TrainingRows:
    """Labels and the split every fit uses (training and tuning alike).

    Attributes:
        labels: 0/1 labels of all rows.
        held_out: Rows held out of training (``validation_rows``).
        fit: Rows the model fits on (not held out, kept by ``undersample``).
        stop: Rows early stopping scores (held out, kept by ``undersample``).
    """

    labels: pd.Series
    held_out: np.ndarray
    fit: np.ndarray
    stop: np.ndarray


def training_rows(frame: pd.DataFrame, task: TaskSpec, valid_fraction: float) -> TrainingRows:
    """Label the rows and split them into fitting and early-stopping rows.

    Args:
        frame: Validated rows with the task's columns and target.
        task: The task spec.
        valid_fraction: Share of groups held out.

    Returns:
        The labels and the split.

    Raises:
        DataValidationError: When there are under 50 rows, or a side of the split holds one class.
    """
    labels = build_labels(frame, task)
    if len(frame) < 50 or labels.nunique() < 2:
        raise DataValidationError(
            f"cannot train {task.name!r} on {len(frame)} rows with {labels.nunique()} class(es): "
            "need at least 50 rows and both classes"
        )
    held_out = validation_rows(frame, task, valid_fraction)
    kept = undersample(frame, labels, task)
    fit, stop = ~held_out & kept, held_out & kept
    if labels[fit].nunique() < 2 or labels[stop].nunique() < 2:
        raise DataValidationError(f"cannot train {task.name!r}: a split of {len(frame)} rows holds one class only")
    return TrainingRows(labels, held_out, fit, stop)


def _fit(
    frame: pd.DataFrame, task: TaskSpec, config: TrainConfig, champion: TrainedModel | None = None
) -> TrainOutcome:
    rows = training_rows(frame, task, config.valid_fraction)
    labels, held_out, fit_rows, stop_rows = rows.labels, rows.held_out, rows.fit, rows.stop
    features = build_features(frame, task)
    trainer = get_trainer(config.algorithm)
    init = champion.booster if champion is not None else None
    data = trainer.prepare(
        (features[fit_rows], labels[fit_rows]),
        (features[stop_rows], labels[stop_rows]),
        task.categorical,
        init_model=init,
    )
    params = {**trainer.defaults(), **config.params}
    fitted = trainer.fit(
        data,
        params,
        rounds=config.num_boost_round,
        early_stopping=config.early_stopping_rounds,
        seed=config.seed,
        threads=config.num_threads,
        init_model=init,
    )
    rate = task.population_positive_rate
    odds_ratio = _odds(rate) / _odds(float(labels[fit_rows].mean())) if rate > 0 else 1.0
    model = TrainedModel(booster=fitted.model, task=task, algorithm=trainer.name, odds_ratio=odds_ratio)
    truth = labels[held_out].to_numpy()
    scores = score_predictions(
        truth, model.predict_proba(frame[held_out]), weights=population_weights(truth, task.population_positive_rate)
    )
    scores.update(
        best_iteration=float(fitted.best_iteration),
        train_rows=float(fit_rows.sum()),
        valid_rows=float(held_out.sum()),
        valid_log_loss_train_prior=fitted.valid_log_loss,
    )
    return TrainOutcome(model=model, metrics=scores, params={"algorithm": trainer.name, **params})


def train_model(frame: pd.DataFrame, task: TaskSpec, config: TrainConfig = TrainConfig()) -> TrainOutcome:
    """Train a binary classifier on validated rows.

    Args:
        frame: Validated rows with the task's columns and target.
        task: The task spec.
        config: Training settings.

    Returns:
        The model with its validation metrics.

    Raises:
        DataValidationError: When there are too few rows or only one class to learn from.
    """
    return _fit(frame, task, config)


def update_model(
    champion: TrainedModel, frame: pd.DataFrame, config: TrainConfig = TrainConfig(num_boost_round=100)
) -> TrainOutcome:
    """Continue boosting the champion on new rows: trees are added, none are refit.

    Cheaper than retraining (only the new rows are read, and few rounds are added), and the
    champion's categories and library are kept.

    Args:
        champion: The model to continue.
        frame: New validated rows.
        config: Settings of the added rounds (its ``algorithm`` is the champion's).

    Returns:
        The updated model with its validation metrics on the new rows' held-out slice.

    Raises:
        DataValidationError: When there are too few rows or only one class to learn from.
    """
    settings = TrainConfig(**{**asdict(config), "algorithm": champion.algorithm})
    return _fit(frame, champion.task, settings, champion)


def train_files(
    data_paths: list[Path],
    task_name: str,
    model_dir: Path,
    config: TrainConfig = TrainConfig(),
    *,
    champion_dir: Path | None = None,
) -> TrainOutcome:
    """Train on Parquet tables and save the model and its metrics into ``model_dir``.

    Args:
        data_paths: Validated tables; rows are concatenated in the given order.
        task_name: Built-in task name or task YAML path.
        model_dir: Output folder: the model files plus ``metrics.json``, ``params.json`` and the
            training rows' drift profile (``profile.json``).
        config: Training settings.
        champion_dir: A model folder to continue (``update_model``) instead of training anew.

    Returns:
        The training outcome.
    """
    from components.drift.core import profile_task
    from components.drift.profile import PROFILE_FILE

    frame = pd.concat([read_table(p) for p in data_paths], ignore_index=True)
    if champion_dir is not None:
        outcome = update_model(TrainedModel.load(champion_dir), frame, config)
    else:
        outcome = train_model(frame, load_task(task_name), config)
    outcome.model.save(model_dir)
    # The drift stage compares every later batch with this profile of all the training rows.
    profile_task(frame, outcome.model.task).save(model_dir / PROFILE_FILE)
    write_json(outcome.metrics, model_dir / "metrics.json")
    settings = {k: v for k, v in asdict(config).items() if k != "params"}
    write_json({**settings, **outcome.params, "incremental": champion_dir is not None}, model_dir / "params.json")
    return outcome


def select_window(
    lake: Store, batch_id: str, task_name: str, *, window_batches: int, holdout_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
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
        The training rows, the holdout rows and the window's batches (oldest first).

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
    batches = [Path(k).stem for k in reversed(window)] + [batch_id]
    return train, current[held_out].reset_index(drop=True), batches


def recalibrate_files(
    model_dir: Path, data_path: Path, *, holdout_fraction: float, out_dir: Path, holdout_path: Path
) -> float:
    """Move a model's scores to the prior of a new batch: the cheap fix for a prior shift.

    The trees are kept; only the model's prior correction (``odds_ratio``) changes, fitted on the
    batch's rows outside the gate's holdout (the same split ``select_window`` holds out), so the
    gate judges the result on rows it was not fitted on.

    Args:
        model_dir: The model to recalibrate (its folder, with its drift profile).
        data_path: The batch's validated rows (Parquet).
        holdout_fraction: Share of the batch held out for the gate.
        out_dir: The recalibrated model's folder (the drift profile is kept).
        holdout_path: Where the held-out rows are written (Parquet).

    Returns:
        The factor the model's odds ratio was multiplied by.

    Raises:
        DataValidationError: When the rows to fit on hold one class only.
    """
    import shutil

    from components.train.model import recalibration_odds

    model = TrainedModel.load(model_dir)
    frame = read_table(data_path)
    held_out = split_by_key(frame[model.task.split_column], holdout_fraction, salt="gate")
    fit = frame[~held_out]
    labels = build_labels(fit, model.task).to_numpy()
    if len(np.unique(labels)) < 2:
        raise DataValidationError(f"{data_path}: {len(fit)} rows to recalibrate on hold one class only")
    factor = recalibration_odds(model.predict_proba(fit), labels)
    shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
    recalibrated = TrainedModel(model.booster, model.task, model.algorithm, model.odds_ratio * factor)
    recalibrated.save(out_dir)
    outcome = score_predictions(labels, recalibrated.predict_proba(fit))
    write_json({**outcome, "recalibration_factor": factor}, out_dir / "metrics.json")
    holdout_path.parent.mkdir(parents=True, exist_ok=True)
    frame[held_out].reset_index(drop=True).to_parquet(holdout_path)
    return factor
