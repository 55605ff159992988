"""The first deterministic response policy: what to do about one batch, and why.

Retraining costs compute and risks a worse model, so the policy retrains only when a measured
performance drop says the champion is hurting: with data drift (covariate shift hurting the
model) or, when the drop is severe, without it (concept drift the feature tests cannot see).
Drift without a drop is watched, not acted on. The same inputs always give the same decision.
"""

import math
from dataclasses import asdict, dataclass
from enum import StrEnum

__all__ = ["Action", "Decision", "Policy", "decide"]


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
        max_auc_drop: AUC drop below the champion's validation AUC that, with data drift,
            triggers a retrain.
        severe_auc_drop: AUC drop that triggers a retrain even without data drift.
        min_rows: Batches with fewer labelled rows are too noisy to act on.
    """

    max_auc_drop: float = 0.03
    severe_auc_drop: float = 0.08
    min_rows: int = 200


@dataclass(frozen=True)
class Decision:
    """A decision with its evidence.

    Attributes:
        action: The action.
        reason: One sentence a person can check against the numbers.
        auc_drop: Champion's validation AUC minus its AUC on the batch (NaN when unmeasurable).
    """

    action: Action
    reason: str
    auc_drop: float

    def to_dict(self) -> dict[str, object]:
        """Return the decision as JSON-ready data."""
        return {**asdict(self), "action": self.action.value}


def decide(
    *,
    dataset_drift: bool,
    drifted_features: int,
    total_features: int,
    baseline_auc: float,
    batch_auc: float,
    rows: int,
    policy: Policy = Policy(),
) -> Decision:
    """Decide how to respond to a batch.

    Args:
        dataset_drift: The drift stage's dataset verdict.
        drifted_features: Number of drifted features.
        total_features: Number of features tested.
        baseline_auc: The champion's AUC on its validation slice.
        batch_auc: The champion's AUC on the batch's labelled rows.
        rows: Labelled rows in the batch.
        policy: Thresholds.

    Returns:
        The decision.
    """
    drift = f"{drifted_features}/{total_features} features drifted"
    if rows < policy.min_rows:
        return Decision(Action.SKIP, f"only {rows} labelled rows (< {policy.min_rows}): too few to act on", math.nan)
    if math.isnan(batch_auc) or math.isnan(baseline_auc):
        return Decision(Action.MONITOR, f"{drift}; AUC not measurable on this batch (one class)", math.nan)
    drop = baseline_auc - batch_auc
    auc = f"AUC {batch_auc:.3f} vs baseline {baseline_auc:.3f} (drop {drop:+.3f})"
    if drop >= policy.severe_auc_drop:
        return Decision(Action.RETRAIN, f"{auc} ≥ severe {policy.severe_auc_drop}; {drift}", drop)
    if dataset_drift and drop >= policy.max_auc_drop:
        return Decision(Action.RETRAIN, f"data drift ({drift}) and {auc} ≥ {policy.max_auc_drop}", drop)
    if dataset_drift:
        return Decision(Action.MONITOR, f"data drift ({drift}) but {auc} < {policy.max_auc_drop}", drop)
    if drop >= policy.max_auc_drop:
        return Decision(
            Action.MONITOR, f"{auc} without data drift ({drift}); below severe {policy.severe_auc_drop}", drop
        )
    return Decision(Action.NONE, f"{drift}; {auc} within {policy.max_auc_drop}", drop)
