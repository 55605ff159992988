"""Where things live in the lake: one root folder (a local path; an S3 prefix later)."""

from pathlib import Path

__all__ = ["quarantine_dir", "validated_dir", "validated_path"]


def quarantine_dir(lake: Path, batch_id: str) -> Path:
    """Folder of one batch's rejected files and rows."""
    return lake / "quarantine" / batch_id


def validated_dir(lake: Path) -> Path:
    """Folder of validated batches, one ``<batch_id>.parquet`` each."""
    return lake / "validated"


def validated_path(lake: Path, batch_id: str) -> Path:
    """A validated batch's table."""
    return validated_dir(lake) / f"{batch_id}.parquet"
