"""Quarantine: where rejected input goes, with the reason, so nothing is ever silently dropped.

Rejected rows become records of one shape (stage, source, line, reason, raw) whatever stage
rejected them; rejected files are copied whole next to a JSON record of why.
"""

import hashlib
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from components.common.storage import write_json, write_table

__all__ = [
    "QUARANTINE_COLUMNS",
    "QuarantinedFile",
    "QuarantinedRow",
    "quarantine_file",
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


@dataclass(frozen=True)
class QuarantinedFile:
    """One rejected input file.

    Attributes:
        source: Where the file was read from.
        reason: Why it was rejected.
        size: Size in bytes.
        md5: Hex MD5 of the content (GDELT publishes MD5s, so this is comparable).
        copy: Where the bytes were kept ('' when the file could not be read at all).
    """

    source: str
    reason: str
    size: int
    md5: str
    copy: str


def rows_to_frame(rows: list[QuarantinedRow]) -> pd.DataFrame:
    """Return quarantined rows as a table with ``QUARANTINE_COLUMNS`` (empty but typed if none)."""
    frame = pd.DataFrame([asdict(r) for r in rows], columns=list(QUARANTINE_COLUMNS))
    return frame.astype({"stage": str, "source": str, "line": "int64", "reason": str, "raw": str})


def quarantine_file(source: Path, reason: str, folder: Path) -> QuarantinedFile:
    """Copy a rejected file into ``folder/files/`` and describe it.

    Args:
        source: The rejected file.
        reason: Why it was rejected.
        folder: The batch's quarantine folder.

    Returns:
        The record of the quarantined file.
    """
    try:
        content = source.read_bytes()
    except OSError:
        return QuarantinedFile(str(source), reason, 0, "", "")
    target = folder / "files" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return QuarantinedFile(str(source), reason, len(content), hashlib.md5(content).hexdigest(), str(target))


def write_quarantine(folder: Path, stage: str, rows: pd.DataFrame, files: list[QuarantinedFile] | None = None) -> None:
    """Write a stage's rejected rows (Parquet) and files (JSON) into a quarantine folder.

    Args:
        folder: The batch's quarantine folder, e.g. ``<lake>/quarantine/<batch_id>``.
        stage: The rejecting stage; names the files written.
        rows: Rejected rows with ``QUARANTINE_COLUMNS``.
        files: Rejected files, if the stage rejects whole files.
    """
    if len(rows):
        write_table(rows, folder / f"{stage}-rows.parquet")
    if files:
        write_json([asdict(f) for f in files], folder / f"{stage}-files.json")
