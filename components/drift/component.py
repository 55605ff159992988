"""KFP wrapper of the drift stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def detect_data_drift(
    reference: Input[Dataset],
    batch: Input[Dataset],
    model: Input[Model],
    task: str,
    fdr_q: float,
    drift_share: float,
    evidently: str,
    multivariate: bool,
    report: Output[Artifact],
    html: Output[HTML],
    evidently_report: Output[HTML],
    metrics: Output[Metrics],
) -> NamedTuple(
    "Drift", [("dataset_drift", bool), ("drifted_features", int), ("total_features", int), ("summary", str)]
):
    """Test the batch for data drift and the champion for model drift; write JSON and HTML reports.

    Args:
        reference: The champion's reference rows.
        batch: The new batch's validated rows.
        model: The champion, whose scores are compared (model drift).
        task: Built-in task name or task YAML path.
        fdr_q: False-discovery rate across the feature tests (Benjamini–Hochberg).
        drift_share: Share of drifted features that makes the dataset drifted.
        evidently: When to render Evidently's HTML report (sampled) as ``evidently_report``:
            ``always``, ``on-drift`` or ``never``.
        multivariate: Also run the domain-classifier test (about a second).
        report: The JSON drift report the decision reads.
        html: The report's page: headline, each drifted feature's two distributions, the label,
            the model and the features together, every feature's test.
        evidently_report: Evidently's data drift report, or a line saying it was not rendered.
        metrics: Drift share and per-feature effects.

    Returns:
        The dataset verdict, drifted and total feature counts, and a one-line summary.
    """
    from pathlib import Path

    from components.drift.core import DriftConfig, detect_drift_files

    result = detect_drift_files(
        Path(reference.path),
        Path(batch.path),
        task,
        report_path=Path(report.path),
        html_path=Path(html.path),
        evidently=evidently,
        config=DriftConfig(fdr_q=fdr_q, drift_share=drift_share),
        model_dir=Path(model.path),
        multivariate=multivariate,
        evidently_path=Path(evidently_report.path),
    )
    metrics.log_metric("drift_share", result.drift_share)
    for feature in result.features:
        metrics.log_metric(f"effect.{feature.feature}", feature.effect)
    for name, value in result.section_metrics().items():
        metrics.log_metric(name, value)
    return (result.dataset_drift, len(result.drifted_features), len(result.features), result.summary())
