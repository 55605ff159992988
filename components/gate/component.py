"""KFP wrapper of the promotion gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def gate_challenger(
    champion: Input[Model],
    challenger: Input[Model],
    holdout: Input[Dataset],
    result: Output[Artifact],
    metrics: Output[Metrics],
) -> NamedTuple("Gate", [("Output", bool), ("reason", str)]):
    """Compare challenger and champion on the same unseen rows (paired bootstrap on AUC; log loss).

    Args:
        champion: The serving champion's model folder.
        challenger: The retrained model's folder.
        holdout: Labelled rows neither was trained on.
        result: The verdict (JSON).
        metrics: Both AUCs and the gain's interval.

    Returns:
        Whether to promote (``Output``, the name kfp.local 2.17 resolves in ``dsl.If``), and why.
    """
    from pathlib import Path

    from components.gate.core import gate_files

    verdict = gate_files(Path(champion.path), Path(challenger.path), Path(holdout.path), Path(result.path))
    names = ("champion_auc", "challenger_auc", "auc_gain", "gain_ci_low", "gain_ci_high")
    for name in (*names, "champion_log_loss", "challenger_log_loss"):
        metrics.log_metric(name, getattr(verdict, name))
    return (verdict.promote, verdict.reason)
