"""The first deterministic response policy: what to do about one batch, and why.

A batch the ingestion-anomaly agent calls a data-quality incident is not acted on at all: a
truncated file or a re-published old batch looks like drift but retraining on it would learn
garbage. Retraining costs compute and risks a worse model, so the policy retrains only when a measured
performance loss says the champion is hurting. Loss is measured two ways on the batch's labelled
rows against the champion's own validation scores: the AUC drop (ranking) and the relative rise
in log loss (probability quality; a prior shift leaves ranking intact but miscalibrates every
score). A loss retrains together with evidence of drift — data drift across the features or a
significant shift of the label's prior — or, when severe, without it (concept drift the feature
tests cannot see). Drift without loss is watched, not acted on. The same inputs always give the
same decision.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from components.common.storage import read_json, write_json

__all__ = ["Action", "Decision", "Evidence", "Policy", "decide", "decide_files"]


class Action(StrEnum):
    """What the loop does about a batch."""

    RETRAIN = "retrain"
    MONITOR = "monitor"
    NONE = "none"
    SKIP = "skip"


@dataclass(frozen=True)
class Policy:
    """Thresholds of the response policy.

    Attributes:
        max_auc_drop: AUC drop below the champion's validation AUC that, with drift, retrains.
        severe_auc_drop: AUC drop that retrains even without drift.
        max_log_loss_rise: Relative log-loss rise over the champion's validation log loss that,
            with drift, retrains (0.25: 25% worse).
        severe_log_loss_rise: Relative log-loss rise that retrains even without drift.
        label_alpha: Significance level of the label prior-shift test.
        min_rows: Batches with fewer labelled rows are too noisy to act on.
    """

    max_auc_drop: float = 0.03
    severe_auc_drop: float = 0.08
    max_log_loss_rise: float = 0.25
    severe_log_loss_rise: float = 0.6
    label_alpha: float = 0.01
    min_rows: int = 200


@dataclass(frozen=True)
class Evidence:
    """What the policy reads about one batch.

    Attributes:
        dataset_drift: The drift stage's verdict over the features.
        drifted_features: Number of drifted features.
        total_features: Number of features tested.
        label_p_value: p-value of the label's prior shift (NaN when untestable).
        label_reference_rate: Positive rate the champion was trained on.
        label_current_rate: Positive rate in the batch.
        baseline_auc: The champion's AUC on its validation slice.
        batch_auc: The champion's AUC on the batch (NaN when the batch holds one class).
        baseline_log_loss: The champion's log loss on its validation slice.
        batch_log_loss: The champion's log loss on the batch.
        rows: Labelled rows in the batch.
        quality: The ingestion-anomaly agent's verdict (``ok``, ``warn``, ``incident``).
        quality_summary: The agent's one-line summary.
    """

    dataset_drift: bool
    drifted_features: int
    total_features: int
    label_p_value: float
    label_reference_rate: float
    label_current_rate: float
    baseline_auc: float
    batch_auc: float
    baseline_log_loss: float
    batch_log_loss: float
    rows: int
    quality: str = "ok"
    quality_summary: str = ""

    @classmethod
    def from_reports(
        cls,
        drift: Mapping[str, Any],
        baseline: Mapping[str, Any],
        batch: Mapping[str, Any],
        quality: Mapping[str, Any] | None = None,
    ) -> "Evidence":
        """Assemble the evidence from the stages' reports.

        Args:
            drift: The drift stage's JSON report.
            baseline: The champion's validation metrics.
            batch: The champion's metrics on the batch.
            quality: The ingestion-anomaly agent's report (None: not checked).

        Returns:
            The evidence.
        """
        return cls(
            dataset_drift=bool(drift["dataset_drift"]),
            drifted_features=len(drift["drifted_features"]),
            total_features=len(drift["features"]),
            label_p_value=_number(drift["label_p_value"]),
            label_reference_rate=_number(drift["label_reference_rate"]),
            label_current_rate=_number(drift["label_current_rate"]),
            baseline_auc=_number(baseline.get("auc")),
            batch_auc=_number(batch.get("auc")),
            baseline_log_loss=_number(baseline.get("log_loss")),
            batch_log_loss=_number(batch.get("log_loss")),
            rows=int(_number(batch.get("rows"))),
            quality=str((quality or {}).get("verdict", "ok")),
            quality_summary=str((quality or {}).get("summary", "")),
        )


@dataclass(frozen=True)
class Decision:
    """A decision with its evidence.

    Attributes:
        action: The action.
        reason: One sentence a person can check against the numbers.
        auc_drop: Champion's validation AUC minus its AUC on the batch (NaN when unmeasurable).
        log_loss_rise: Relative rise of the champion's log loss on the batch (NaN when unmeasurable).
        evidence: What the decision was made from.
    """

    action: Action
    reason: str
    auc_drop: float
    log_loss_rise: float
    evidence: Evidence

    def to_dict(self) -> dict[str, object]:
        """Return the decision as JSON-ready data."""
        return {**asdict(self), "action": self.action.value}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def decide(evidence: Evidence, policy: Policy = Policy()) -> Decision:
    """Decide how to respond to a batch.

    Args:
        evidence: Drift and performance measurements of the batch.
        policy: Thresholds.

    Returns:
        The decision.
    """
    e = evidence
    drop = e.baseline_auc - e.batch_auc
    rise = e.batch_log_loss / e.baseline_log_loss - 1 if e.baseline_log_loss > 0 else math.nan

    def decision(action: Action, reason: str) -> Decision:
        return Decision(action, reason, drop, rise, e)

    if e.quality == "incident":
        return decision(Action.SKIP, f"{e.quality_summary}: a data-quality incident, not drift; batch quarantined")
    if e.rows < policy.min_rows:
        return decision(Action.SKIP, f"only {e.rows} labelled rows (< {policy.min_rows}): too few to act on")
    signals = []
    if e.dataset_drift:
        signals.append(f"data drift in {e.drifted_features}/{e.total_features} features")
    if e.label_p_value < policy.label_alpha:
        signals.append(f"prior shift {e.label_reference_rate:.1%}→{e.label_current_rate:.1%} (p={e.label_p_value:.1g})")
    drift = "; ".join(signals) or f"no drift ({e.drifted_features}/{e.total_features} features)"
    auc = f"AUC {e.batch_auc:.3f} vs {e.baseline_auc:.3f}" if not math.isnan(drop) else "AUC not measurable"
    loss = f"log loss {e.batch_log_loss:.3f} vs {e.baseline_log_loss:.3f} ({rise:+.0%})"
    measured = f"{auc}, {loss}"
    if drop >= policy.severe_auc_drop or rise >= policy.severe_log_loss_rise:
        return decision(Action.RETRAIN, f"severe loss, drift or not: {measured}; {drift}")
    hurt = drop >= policy.max_auc_drop or rise >= policy.max_log_loss_rise
    if signals and hurt:
        return decision(Action.RETRAIN, f"{drift}, and the champion lost: {measured}")
    if signals:
        return decision(Action.MONITOR, f"{drift}, but the champion holds: {measured}")
    if hurt:
        return decision(Action.MONITOR, f"{measured}: a loss without drift, below severe")
    return decision(Action.NONE, f"{drift}; champion holds: {measured}")


def decide_files(
    drift_path: Path,
    baseline_path: Path,
    batch_path: Path,
    decision_path: Path,
    policy: Policy = Policy(),
    quality_path: Path | None = None,
) -> Decision:
    """Decide from the stages' JSON outputs and write the decision as JSON.

    Args:
        drift_path: The drift stage's report.
        baseline_path: The champion's validation metrics.
        batch_path: The champion's metrics on the batch.
        decision_path: Where the decision is written.
        policy: Thresholds.
        quality_path: The ingestion-anomaly agent's report, if the batch was checked.

    Returns:
        The decision.
    """
    quality = read_json(quality_path) if quality_path is not None else None
    evidence = Evidence.from_reports(read_json(drift_path), read_json(baseline_path), read_json(batch_path), quality)
    result = decide(evidence, policy)
    write_json(result.to_dict(), decision_path)
    return result
