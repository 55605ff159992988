"""KFP wrapper of the ingest stage."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def ingest_gdelt(source_paths: list, lake_dir: str, raw: Output[Dataset]) -> str:
    """Read GDELT export files into one raw table; quarantine unreadable files and rows.

    Args:
        source_paths: Export files (plain or zipped, GDELT 2.0 or 1.0), as local paths.
        lake_dir: Root of the lake; rejects go to ``<lake_dir>/quarantine/<batch_id>/``.
        raw: The raw table (Parquet), every field a string.

    Returns:
        The batch id (the newest file timestamp).
    """
    from pathlib import Path

    from components.ingest.core import ingest_to_table

    result = ingest_to_table([Path(p) for p in source_paths], raw_path=Path(raw.path), lake=Path(lake_dir))
    raw.metadata.update(
        rows=len(result.raw),
        files_read=result.files_read,
        files_quarantined=len(result.quarantined_files),
        rows_quarantined=len(result.quarantined_rows),
    )
    return result.batch_id
