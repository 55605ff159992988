"""KFP wrapper of the validate stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def validate_gdelt(raw: Input[Dataset], batch_id: str, lake_dir: str, valid: Output[Dataset]) -> NamedTuple(
    "Validated", [("rows_valid", int), ("rows_quarantined", int)]
):
    """Type and check raw GDELT rows; quarantine failing rows with their reasons.

    Args:
        raw: The ingest stage's raw table.
        batch_id: The batch id from the ingest stage.
        lake_dir: Root of the lake; valid rows are also kept as ``validated/<batch_id>.parquet``,
            rejects go to ``quarantine/<batch_id>/``.
        valid: The typed valid rows (Parquet).

    Returns:
        Counts of valid and quarantined rows.
    """
    from pathlib import Path

    from components.common.store import Store
    from components.validate.core import validate_batch

    result = validate_batch(Path(raw.path), valid_path=Path(valid.path), lake=Store(lake_dir), batch_id=batch_id)
    valid.metadata.update(rows_valid=len(result.valid), rows_quarantined=len(result.quarantined))
    return (len(result.valid), len(result.quarantined))
