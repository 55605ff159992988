"""KFP wrapper of the evaluate stage."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model], data: Input[Dataset], scores: Output[Artifact], metrics: Output[Metrics]
) -> float:
    """Score a model on labelled rows (AUC, average precision, log loss, Brier, F1...).

    Args:
        model: A model folder from the train stage or the registry.
        data: Labelled validated rows.
        scores: The metrics as JSON, for later stages.
        metrics: The metrics, for the KFP UI.

    Returns:
        AUC (NaN when the rows hold one class).
    """
    from pathlib import Path

    from components.evaluate.core import evaluate_files

    result = evaluate_files(Path(model.path), Path(data.path), Path(scores.path))
    for name, value in result.items():
        metrics.log_metric(name, value)
    return result["auc"]
