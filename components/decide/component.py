"""KFP wrapper of the decide stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def decide_response(
    dataset_drift: bool,
    drifted_features: int,
    total_features: int,
    baseline_auc: float,
    batch_auc: float,
    rows: int,
    max_auc_drop: float,
    severe_auc_drop: float,
    min_rows: int,
    decision: Output[Artifact],
) -> NamedTuple("Decision", [("Output", str), ("reason", str)]):
    """Decide what to do about a batch: retrain, monitor, nothing, or skip it.

    Args:
        dataset_drift: The drift stage's verdict.
        drifted_features: Drifted feature count.
        total_features: Tested feature count.
        baseline_auc: The champion's validation AUC.
        batch_auc: The champion's AUC on the batch.
        rows: Labelled rows in the batch.
        max_auc_drop: AUC drop that, with drift, triggers a retrain.
        severe_auc_drop: AUC drop that triggers a retrain even without drift.
        min_rows: Fewer labelled rows than this are not acted on.
        decision: The decision with its evidence (JSON).

    Returns:
        The action (``Output``: kfp.local 2.17 resolves ``dsl.If`` conditions only on outputs
        named so) and its reason.
    """
    from pathlib import Path

    from components.common.storage import write_json
    from components.decide.core import Policy, decide

    result = decide(
        dataset_drift=dataset_drift,
        drifted_features=drifted_features,
        total_features=total_features,
        baseline_auc=baseline_auc,
        batch_auc=batch_auc,
        rows=rows,
        policy=Policy(max_auc_drop=max_auc_drop, severe_auc_drop=severe_auc_drop, min_rows=min_rows),
    )
    write_json(result.to_dict(), Path(decision.path))
    return (result.action.value, result.reason)
