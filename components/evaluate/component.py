"""KFP wrapper of the evaluate stage."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def evaluate_model(model: Input[Model], data: Input[Dataset], metrics: Output[Metrics]) -> float:
    """Score a model on labelled rows (AUC, average precision, log loss, Brier, F1...).

    Args:
        model: A model folder from the train stage or the registry.
        data: Labelled validated rows.
        metrics: The metrics.

    Returns:
        AUC (NaN when the rows hold one class).
    """
    from pathlib import Path

    from components.evaluate.core import evaluate_files

    result = evaluate_files(Path(model.path), Path(data.path), Path(metrics.path).with_suffix(".scores.json"))
    for name, value in result.items():
        metrics.log_metric(name, value)
    return result["auc"]
