"""KFP wrapper of the ingestion-anomaly agent."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def check_data_quality(
    lake_dir: str,
    batch_id: str,
    report: Output[Artifact],
    markdown: Output[Markdown],
) -> NamedTuple("Quality", [("Output", str), ("summary", str)]):
    """Judge a new batch against the lake's recent history; quarantine it on an incident.

    Args:
        lake_dir: The lake (a local folder or ``s3://bucket/prefix``).
        batch_id: The batch to judge.
        report: Every check with its status and measurement (JSON); the decision reads it.
        markdown: The same as a table, for the KFP UI.

    Returns:
        The verdict (``Output``: ``ok``, ``warn`` or ``incident``) and a one-line summary.
    """
    from pathlib import Path

    from components.common.store import Store
    from components.quality.core import check_batch_files

    result = check_batch_files(Store(lake_dir), batch_id, Path(report.path), Path(markdown.path))
    return (result.verdict, result.summary())
