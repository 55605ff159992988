"""Score a model on labelled rows: ranking, calibration and thresholded metrics."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics

from components.common.storage import read_table, write_json
from components.features.core import build_labels
from components.train.model import TrainedModel

__all__ = ["evaluate_model", "population_weights", "row_aucs", "score_predictions"]


def row_aucs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row-wise ROC AUC (Mann–Whitney, ties averaged) of label and score matrices.

    Args:
        labels: 0/1 truth, shape (draws, n).
        scores: Scores, shape (draws, n).

    Returns:
        One AUC per row, shape (draws,); NaN for a row with one class only.
    """
    ranks = stats.rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * labels).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)


def population_weights(labels: np.ndarray, population_rate: float) -> np.ndarray | None:
    """Row weights that give labelled rows the positive rate of the population the model serves.

    Negatives are weighed up (or down) so that weighted positives make up ``population_rate``:
    on rows whose negatives were sampled at random, weighted metrics estimate the population's.

    Args:
        labels: 0/1 truth.
        population_rate: The population's positive rate (0: the rows' own; no weights).

    Returns:
        One weight per row, or None when no reweighting applies.
    """
    labels = np.asarray(labels, dtype="int64")
    positives = int(labels.sum())
    if population_rate <= 0 or positives == 0 or positives == len(labels):
        return None
    negative_weight = positives * (1 - population_rate) / (population_rate * (len(labels) - positives))
    return np.where(labels == 1, 1.0, negative_weight)


def score_predictions(
    labels: np.ndarray, proba: np.ndarray, *, threshold: float = 0.5, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Compute binary classification metrics.

    Args:
        labels: 0/1 truth, shape (n,).
        proba: Predicted P(label = 1), shape (n,).
        threshold: Probability at or above which a row is predicted positive.
        weights: Row weights (see ``population_weights``); None weighs rows equally.

    Returns:
        ``auc`` and ``average_precision`` (NaN when the labels hold one class), ``log_loss``,
        ``brier``, ``accuracy``, ``f1``, ``positive_rate`` (truth), ``predicted_rate`` and
        ``rows`` (unweighted); rates and scores are weighted.
    """
    labels = np.asarray(labels, dtype="int64")
    proba = np.clip(np.asarray(proba, dtype="float64"), 1e-7, 1 - 1e-7)
    predicted = (proba >= threshold).astype("int64")
    both = len(np.unique(labels)) == 2
    w = weights
    return {
        "auc": float(metrics.roc_auc_score(labels, proba, sample_weight=w)) if both else math.nan,
        "average_precision": float(metrics.average_precision_score(labels, proba, sample_weight=w))
        if both
        else math.nan,
        "log_loss": float(metrics.log_loss(labels, proba, labels=[0, 1], sample_weight=w)),
        "brier": float(metrics.brier_score_loss(labels, proba, sample_weight=w)),
        "accuracy": float(metrics.accuracy_score(labels, predicted, sample_weight=w)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0, sample_weight=w)),
        "positive_rate": float(np.average(labels, weights=w)),
        "predicted_rate": float(np.average(predicted, weights=w)),
        "rows": float(len(labels)),
    }


def evaluate_model(model: TrainedModel, frame: pd.DataFrame) -> dict[str, float]:
    """Score a model on labelled rows of its task, at its task's population prior when it names one."""
    labels = build_labels(frame, model.task).to_numpy()
    weights = population_weights(labels, model.task.population_positive_rate)
    return score_predictions(labels, model.predict_proba(frame), weights=weights)


def evaluate_files(model_dir: Path, data_path: Path, metrics_path: Path) -> dict[str, float]:
    """Score a saved model on a Parquet table and write the metrics as JSON.

    Args:
        model_dir: Folder written by ``TrainedModel.save``.
        data_path: Labelled validated rows (Parquet).
        metrics_path: Where the metrics JSON is written.

    Returns:
        The metrics.
    """
    result = evaluate_model(TrainedModel.load(model_dir), read_table(data_path))
    write_json(result, metrics_path)
    return result
