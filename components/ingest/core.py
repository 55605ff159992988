"""Read GDELT Events export files (plain or zipped) into one raw table of strings.

Every field stays a string here; typing is the validate stage's job. A file that cannot be read
(empty, truncated zip, not UTF-8 throughout) is quarantined whole; a row with a field count that
is neither GDELT 2.0 (61) nor 1.0 (58, or 57 without SOURCEURL) is quarantined alone. The rest of
the batch goes on.
"""

import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from components.common.errors import IngestError
from components.common.lake import quarantine_dir
from components.common.quarantine import (
    QuarantinedFile,
    QuarantinedRow,
    quarantine_file,
    rows_to_frame,
    write_quarantine,
)
from components.common.schema import GDELT1_COLUMNS, GDELT2_COLUMNS
from components.common.storage import write_table

__all__ = ["IngestResult", "batch_id_for", "ingest_files", "ingest_to_table", "parse_export"]

SOURCE_COLUMN = "_source"
LINE_COLUMN = "_line"
FORMAT_COLUMN = "_format"
_TIMESTAMP = re.compile(r"^(\d{14}|\d{8})")


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion produced.

    Attributes:
        batch_id: Identifier of the batch (the newest file timestamp, e.g. ``20241022130000``).
        raw: All accepted rows, every GDELT 2.0 column as a string plus ``_source``,
            ``_line`` and ``_format`` (``gdelt2`` or ``gdelt1``).
        quarantined_rows: Rejected rows with their reasons.
        quarantined_files: Rejected files with their reasons.
        files_read: Files that produced rows.
    """

    batch_id: str
    raw: pd.DataFrame
    quarantined_rows: pd.DataFrame
    quarantined_files: list[QuarantinedFile]
    files_read: int


def batch_id_for(paths: list[Path]) -> str:
    """Return the batch id: the newest leading timestamp among the file names, else the last stem."""
    stamps = sorted(m.group(1).ljust(14, "0") for p in paths if (m := _TIMESTAMP.match(p.name)))
    if stamps:
        return stamps[-1]
    return sorted(p.name.split(".")[0] for p in paths)[-1] if paths else "empty"


def _read_bytes(path: Path) -> bytes:
    """Return the export's bytes, unzipping ``.zip`` files (the first member is the export)."""
    if path.suffix.lower() != ".zip":
        return path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if not m.endswith("/")]
        if not members:
            raise zipfile.BadZipFile("the zip archive holds no file")
        return archive.read(members[0])


def parse_export(content: bytes, source: str) -> tuple[pd.DataFrame, list[QuarantinedRow]]:
    """Split an export's bytes into rows mapped onto the GDELT 2.0 columns.

    Args:
        content: The file's bytes (already unzipped).
        source: Name recorded with each row and each rejection.

    Returns:
        The accepted rows (strings, with ``_source``, ``_line``, ``_format``) and the rejected rows.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    formats: list[str] = []
    rejected: list[QuarantinedRow] = []
    width = len(GDELT2_COLUMNS)
    position_2 = {c: i for i, c in enumerate(GDELT2_COLUMNS)}
    gdelt1_to_2 = [position_2[c] for c in GDELT1_COLUMNS]
    for number, raw_line in enumerate(content.split(b"\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            line = raw_line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            text = raw_line.decode("utf-8", errors="replace")
            rejected.append(QuarantinedRow("ingest", source, number, f"not valid UTF-8: {exc.reason}", text))
            continue
        fields = line.split("\t")
        if len(fields) == width:
            rows.append(fields)
            formats.append("gdelt2")
        elif len(fields) in (len(GDELT1_COLUMNS), len(GDELT1_COLUMNS) - 1):
            mapped = [""] * width
            for value, target in zip(fields, gdelt1_to_2, strict=False):
                mapped[target] = value
            dateadded = position_2["DATEADDED"]
            if len(mapped[dateadded]) == 8:  # GDELT 1.0 adds whole days: YYYYMMDD
                mapped[dateadded] += "000000"
            rows.append(mapped)
            formats.append("gdelt1")
        else:
            reason = (
                f"{len(fields)} tab-separated fields; expected {width} (GDELT 2.0) or "
                f"{len(GDELT1_COLUMNS)}/{len(GDELT1_COLUMNS) - 1} (GDELT 1.0)"
            )
            rejected.append(QuarantinedRow("ingest", source, number, reason, line))
            continue
        lines.append(number)
    frame = pd.DataFrame(rows, columns=list(GDELT2_COLUMNS), dtype=object)
    frame[SOURCE_COLUMN] = source
    frame[LINE_COLUMN] = pd.Series(lines, dtype="int64")
    frame[FORMAT_COLUMN] = pd.Series(formats, dtype=object)
    return frame, rejected


def ingest_files(paths: list[Path], *, quarantine_dir: Path) -> IngestResult:
    """Read export files into one raw table, quarantining what cannot be read.

    Args:
        paths: Export files (``*.export.CSV``, ``*.export.CSV.zip``, GDELT 1.0 ``*.tsv``).
        quarantine_dir: Folder that receives copies of rejected files.

    Returns:
        The accepted rows (possibly none) and every rejection with its reason.

    Raises:
        IngestError: When no path is given.
    """
    if not paths:
        raise IngestError("no input files given: pass at least one GDELT export path")
    frames: list[pd.DataFrame] = []
    rejected_rows: list[QuarantinedRow] = []
    rejected_files: list[QuarantinedFile] = []
    for path in paths:
        try:
            content = _read_bytes(path)
        except FileNotFoundError:
            rejected_files.append(QuarantinedFile(str(path), "file not found", 0, "", ""))
            continue
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            reason = f"unreadable zip archive (truncated or corrupt): {exc}"
            rejected_files.append(quarantine_file(path, reason, quarantine_dir))
            continue
        if not content.strip():
            rejected_files.append(quarantine_file(path, "empty file: no rows", quarantine_dir))
            continue
        frame, rejected = parse_export(content, path.name)
        rejected_rows.extend(rejected)
        if frame.empty:
            reason = f"no row has a GDELT field count ({len(rejected)} rows rejected)"
            rejected_files.append(quarantine_file(path, reason, quarantine_dir))
            continue
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True) if frames else parse_export(b"", "")[0]
    return IngestResult(
        batch_id=batch_id_for(paths),
        raw=raw,
        quarantined_rows=rows_to_frame(rejected_rows),
        quarantined_files=rejected_files,
        files_read=len(frames),
    )


def ingest_to_table(paths: list[Path], *, raw_path: Path, lake: Path) -> IngestResult:
    """Ingest export files into a raw Parquet table and quarantine what cannot be read.

    Args:
        paths: Export files to read.
        raw_path: Where the raw table is written (Parquet).
        lake: Root of the lake; rejects go to the batch's quarantine folder.

    Returns:
        The ingest result (also written to disk).

    Raises:
        IngestError: When not one file could be read; rejected files are quarantined first.
    """
    folder = quarantine_dir(lake, batch_id_for(paths))
    result = ingest_files(paths, quarantine_dir=folder)
    write_quarantine(folder, "ingest", result.quarantined_rows, result.quarantined_files)
    if result.raw.empty:
        reasons = "; ".join(f"{Path(f.source).name}: {f.reason}" for f in result.quarantined_files)
        raise IngestError(f"no readable GDELT rows in {len(paths)} file(s), see {folder}: {reasons}")
    write_table(result.raw, raw_path)
    return result
