"""Where the pipeline stages keep batches in the lake (a ``Store``: local folder or S3 prefix).

The ingest stage owns ``raw/``, ``events/``, ``_manifest/`` and ``quarantine/`` (see
``components.ingest``); the validate stage adds each batch's typed valid rows under
``validated/`` and its rejected rows under the batch's quarantine folder; the quality agent marks
a batch it rejects with its report at ``incident_key``, and no training window includes it.
"""

import re

__all__ = ["VALIDATED", "batch_of", "incident_key", "quarantine_prefix", "validated_key"]

VALIDATED = "validated"
_EXPORT = re.compile(r"^(\d{14}|\d{8})\.export\.CSV(\.zip)?$", re.IGNORECASE)


def batch_of(name: str) -> str | None:
    """Return the batch id (``YYYYMMDDHHMMSS``) of an export file name, or None if it is not one."""
    match = _EXPORT.match(name)
    return match.group(1).ljust(14, "0") if match else None


def quarantine_prefix(batch_id: str) -> str:
    """Folder of one batch's rejected files and rows."""
    return f"quarantine/{batch_id}"


def validated_key(batch_id: str) -> str:
    """A validated batch's table."""
    return f"{VALIDATED}/{batch_id}.parquet"


def incident_key(batch_id: str) -> str:
    """The quality report of a batch judged a data-quality incident (absent for sound batches)."""
    return f"{quarantine_prefix(batch_id)}/quality.json"
