"""Quarantine: where rejected input goes, with the reason, so nothing is ever silently dropped.

Rejected rows become records of one shape (stage, source, line, reason, raw) whatever stage
rejected them, kept in the batch's quarantine folder of the lake.
"""

from dataclasses import asdict, dataclass

import pandas as pd
import pyarrow as pa

from components.common.store import Store

__all__ = [
    "QUARANTINE_COLUMNS",
    "QuarantinedRow",
    "rows_to_frame",
    "write_quarantine",
]

QUARANTINE_COLUMNS = ("stage", "source", "line", "reason", "raw")


@dataclass(frozen=True)
class QuarantinedRow:
    """One rejected input row.

    Attributes:
        stage: The stage that rejected it (``ingest``, ``validate``).
        source: The file it came from.
        line: 1-based line number in that file (0 when unknown).
        reason: Why it was rejected, in words a person can act on.
        raw: The original line, tab-separated as in the source.
    """

    stage: str
    source: str
    line: int
    reason: str
    raw: str


def rows_to_frame(rows: list[QuarantinedRow]) -> pd.DataFrame:
    """Return quarantined rows as a table with ``QUARANTINE_COLUMNS`` (empty but typed if none)."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(QUARANTINE_COLUMNS))
    return frame.astype({"stage": str, "source": str, "line": "int64", "reason": str, "raw": str})


def write_quarantine(store: Store, prefix: str, stage: str, rows: pd.DataFrame) -> None:
    """Write a stage's rejected rows (Parquet) into a batch's quarantine folder, if there are any.

    Args:
        store: The lake.
        prefix: The batch's quarantine folder, e.g. ``quarantine/<batch_id>``.
        stage: The rejecting stage; names the file written.
        rows: Rejected rows with ``QUARANTINE_COLUMNS``.
    """
    if len(rows):
        store.put_table(f"{prefix}/{stage}-rows.parquet", pa.Table.from_pandas(rows, preserve_index=False))
