"""KFP wrapper of the ingestion-anomaly agent."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Markdown, Output

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


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def check_range_quality(
    lake_dir: str,
    since: str,
    until: str,
    clean: Output[Dataset],
    report: Output[Artifact],
    markdown: Output[Markdown],
) -> NamedTuple("RangeQuality", [("Output", str), ("batches", int), ("incidents", int), ("kept", str)]):
    """Judge every batch of a range not judged before, quarantine incidents, hand on the sound rows.

    Args:
        lake_dir: The lake (a local folder or ``s3://bucket/prefix``).
        since: First batch, ``YYYYMMDD[HHMMSS]`` ('' for the oldest).
        until: Last batch ('' for the newest).
        clean: The rows of the range's batches that are not incidents (Parquet).
        report: Batches kept, incidents and every report (JSON).
        markdown: The batches judged, with their verdicts, for the KFP UI.

    Returns:
        The newest batch kept (``Output``), the number of batches kept and of incidents found,
        and the batches kept (comma-separated, oldest first).
    """
    from pathlib import Path

    from components.common.store import Store
    from components.quality.core import check_range_files

    kept, reports = check_range_files(
        Store(lake_dir),
        since=since or None,
        until=until or None,
        table_path=Path(clean.path),
        report_path=Path(report.path),
        markdown_path=Path(markdown.path),
    )
    clean.metadata.update(batches=len(kept))
    return (kept[-1], len(kept), sum(r.incident for r in reports), ",".join(kept))
