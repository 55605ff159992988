"""KFP wrapper of the decide stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def decide_response(
    drift_report: Input[Artifact],
    baseline_scores: Input[Artifact],
    batch_scores: Input[Artifact],
    quality_report: Input[Artifact],
    max_auc_drop: float,
    severe_auc_drop: float,
    max_log_loss_rise: float,
    severe_log_loss_rise: float,
    label_alpha: float,
    min_rows: int,
    decision: Output[Artifact],
) -> NamedTuple("Decision", [("Output", str), ("reason", str)]):
    """Decide what to do about a batch: retrain, monitor, nothing, or skip it.

    Args:
        drift_report: The drift stage's JSON report.
        baseline_scores: The champion's validation metrics (JSON).
        batch_scores: The champion's metrics on the batch (JSON).
        quality_report: The ingestion-anomaly agent's report (JSON); an incident is never drift.
        max_auc_drop: AUC drop that, with drift, triggers a retrain.
        severe_auc_drop: AUC drop that triggers a retrain even without drift.
        max_log_loss_rise: Relative log-loss rise that, with drift, triggers a retrain.
        severe_log_loss_rise: Relative log-loss rise that triggers a retrain even without drift.
        label_alpha: Significance level of the label prior-shift test.
        min_rows: Fewer labelled rows than this are not acted on.
        decision: The decision with its evidence (JSON).

    Returns:
        The action (``Output``: kfp.local 2.17 resolves ``dsl.If`` conditions only on outputs
        named so) and its reason.
    """
    from pathlib import Path

    from components.decide.core import Policy, decide_files

    result = decide_files(
        Path(drift_report.path),
        Path(baseline_scores.path),
        Path(batch_scores.path),
        Path(decision.path),
        Policy(
            max_auc_drop=max_auc_drop,
            severe_auc_drop=severe_auc_drop,
            max_log_loss_rise=max_log_loss_rise,
            severe_log_loss_rise=severe_log_loss_rise,
            label_alpha=label_alpha,
            min_rows=min_rows,
        ),
        Path(quality_report.path),
    )
    return (result.action.value, result.reason)
