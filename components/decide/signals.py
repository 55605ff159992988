"""What the loop measures about an incident's batch: the model's metric, calibration and segments.

``signals_from_scores`` turns the served model's scores on a labelled batch (and the drift,
quality and importance reports) into the ``Signals`` the investigator reads. Log loss is taken
relative to the entropy of the rows' own prior (``relative_log_loss``), so a prior shift alone
does not read as a loss.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from components.decide.investigate import FeatureSignal, Signals, segment_signals

__all__ = ["metric_standard_error", "relative_log_loss", "signals_from_scores"]


def metric_standard_error(metric: str, value: float, positives: int, negatives: int) -> float:
    """A batch metric's standard error: binomial for accuracy, Hanley & McNeil (1982) for AUC."""
    n = positives + negatives
    if math.isnan(value) or n == 0:
        return math.nan
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 1e-6) / n)
    q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value**2) + (negatives - 1) * (q2 - value**2)) / max(
        positives * negatives, 1
    )
    return math.sqrt(max(variance, 1e-9))


def relative_log_loss(log_loss: float, positive_rate: float) -> float:
    """Log loss over the entropy of the rows' own prior: 1 is no better than the prior, 0 is perfect.

    Raw log loss grows with the entropy of the label (a 40% prior is harder to predict than a 20%
    one), so a prior shift alone would look like a loss; relative to the prior's entropy it does not.
    """
    rate = min(max(positive_rate, 1e-6), 1 - 1e-6)
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    return log_loss / entropy


def _metric(metric: str, labels: np.ndarray, proba: np.ndarray) -> tuple[float, float]:
    """The metric and the relative log loss of scores."""
    from components.evaluate.core import score_predictions

    scores = score_predictions(labels, proba)
    return float(scores[metric]), relative_log_loss(float(scores["log_loss"]), float(np.mean(labels)))


def signals_from_scores(
    *,
    incident: str,
    at: str,
    metric: str,
    expected: Mapping[str, float],
    labels: np.ndarray,
    proba: np.ndarray,
    frame: pd.DataFrame | None = None,
    drift: Mapping[str, Any] | None = None,
    importance: Mapping[str, float] | None = None,
    quality: Mapping[str, Any] | None = None,
    previous_proba: np.ndarray | None = None,
    segment_columns: Sequence[str] = (),
) -> Signals:
    """Assemble an incident's signals from the model's scores on its batch and the stages' reports.

    Args:
        incident: The incident's id.
        at: The batch's time (ISO 8601).
        metric: ``auc`` or ``accuracy``.
        expected: The model's record: ``value``, ``se``, ``log_loss`` and the ``positive_rate`` of
            the rows it was measured on (its log loss is taken relative to that prior's entropy), or
            its ``relative_log_loss`` directly.
        labels: The batch's labels (may be empty: no labels yet).
        proba: The model's scores on the batch.
        frame: The batch's rows (for segments).
        drift: The drift stage's report (``components.drift.core.DriftReport.to_dict``).
        importance: The model's importance share per feature.
        quality: The ingestion-anomaly agent's report.
        previous_proba: The scores of the model served before (None: there is none).
        segment_columns: Columns to find the loss's segments in.

    Returns:
        The signals.
    """
    from components.train.model import prior_corrected, recalibration_odds

    labels = np.asarray(labels, dtype="int64")
    positives = int(labels.sum())
    labelled = len(labels) > 0
    current, log_loss = _metric(metric, labels, proba) if labelled else (math.nan, math.nan)
    recal_metric, recal_loss, previous = math.nan, math.nan, math.nan
    if labelled:
        recal_metric, recal_loss = _metric(metric, labels, prior_corrected(proba, recalibration_odds(proba, labels)))
        if previous_proba is not None:
            previous = _metric(metric, labels, previous_proba)[0]
    drift = drift or {}
    model_section = drift.get("sections", {}).get("model", {})
    estimated = (
        model_section.get("estimated", {}).get("drop", math.nan) if isinstance(model_section, Mapping) else math.nan
    )
    multivariate = drift.get("sections", {}).get("multivariate", {})
    features = tuple(
        FeatureSignal(name, bool(f["drifted"]), float(f["effect"]), float(f["p_adjusted"]))
        for name, f in sorted(drift.get("features", {}).items())
    )
    segments = segment_signals(frame, labels, proba, segment_columns) if frame is not None and labelled else ()
    return Signals(
        incident=incident,
        at=at,
        rows=len(labels),
        metric=metric,
        expected=float(expected["value"]),
        expected_se=float(expected.get("se", 0.0)),
        current=current,
        current_se=metric_standard_error(metric, current, positives, len(labels) - positives),
        expected_log_loss=float(
            expected["relative_log_loss"]
            if "relative_log_loss" in expected
            else relative_log_loss(float(expected.get("log_loss", math.nan)), float(expected.get("positive_rate", 0.5)))
        ),
        current_log_loss=log_loss,
        recalibrated_metric=recal_metric,
        recalibrated_log_loss=recal_loss,
        label_reference_rate=float(drift.get("label_reference_rate", math.nan)),
        label_current_rate=float(np.mean(labels)) if labelled else math.nan,
        label_p_value=float(drift.get("label_p_value", math.nan)),
        features=features,
        importance=dict(importance or {}),
        multivariate_drift=bool(multivariate["drifted"]) if "drifted" in multivariate else None,
        estimated_drop=float(estimated) if estimated is not None else math.nan,
        previous_metric=previous,
        quality=str((quality or {}).get("verdict", "ok")),
        quality_summary=str((quality or {}).get("summary", "")),
        segments=segments,
    )
