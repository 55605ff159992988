"""Parse one GDELT export file's bytes into the typed Events table, quarantining what cannot be typed.

The fast path hands the whole file to Arrow's multithreaded CSV reader with the lake's schema
(codes stay strings; only an empty field is null — "NA" is a FIPS country code). A file Arrow
refuses (a row with the wrong field count, invalid UTF-8, a value of the wrong type, GDELT 1.0's
57/58 fields) takes the careful path: line by line, so every bad row is quarantined with its line
number and reason while the good rows go on.
"""

import io
import zipfile
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from components.common.columns import EVENTS_SCHEMA, parse_column
from components.common.quarantine import QuarantinedRow
from components.common.schema import COLUMN_KINDS, GDELT1_COLUMNS, GDELT2_COLUMNS, ColumnKind

__all__ = ["LAKE_SCHEMA", "LINE_COLUMN", "SOURCE_COLUMN", "ParsedExport", "parse_export", "parse_file", "unpack"]

SOURCE_COLUMN = "_source"
LINE_COLUMN = "_line"

LAKE_SCHEMA = EVENTS_SCHEMA.append(pa.field(SOURCE_COLUMN, pa.string())).append(pa.field(LINE_COLUMN, pa.int64()))
"""The lake's events table: the typed GDELT columns plus each row's source file and line."""

_READ = pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False, double_quote=False)
_CONVERT = pacsv.ConvertOptions(
    column_types=EVENTS_SCHEMA,
    null_values=[""],
    strings_can_be_null=True,
    true_values=[],
    false_values=[],
)


@dataclass(frozen=True)
class ParsedExport:
    """One file's parse.

    Attributes:
        table: The accepted rows in ``LAKE_SCHEMA`` (None when the file is rejected whole).
        rejected: Rows quarantined with their reasons.
        file_reason: Why the whole file was rejected ('' when it was not).
        careful: Whether the line-by-line path was taken.
        size: Uncompressed bytes of the export.
    """

    table: pa.Table | None
    rejected: list[QuarantinedRow] = field(default_factory=list)
    file_reason: str = ""
    careful: bool = False
    size: int = 0


def unpack(content: bytes) -> bytes:
    """Return the export's bytes, unzipping a zip archive (its first member is the export).

    Raises:
        zipfile.BadZipFile: When the archive is truncated or corrupt, or holds no file.
    """
    if not content.startswith(b"PK"):
        return content
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if not members:
                raise zipfile.BadZipFile("the zip archive holds no file")
            return archive.read(members[0])
    except (zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        # A damaged header can claim another compression method or encryption (RuntimeError).
        raise zipfile.BadZipFile(str(exc)) from exc


def parse_export(content: bytes, source: str) -> tuple[pd.DataFrame, list[QuarantinedRow]]:
    """Split an export's bytes into rows mapped onto the GDELT 2.0 columns.

    Args:
        content: The file's bytes (already unzipped).
        source: Name recorded with each row and each rejection.

    Returns:
        The accepted rows (strings, with ``_source`` and ``_line``) and the rejected rows.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
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
        elif len(fields) in (len(GDELT1_COLUMNS), len(GDELT1_COLUMNS) - 1):
            mapped = [""] * width
            for value, target in zip(fields, gdelt1_to_2, strict=False):
                mapped[target] = value
            dateadded = position_2["DATEADDED"]
            if len(mapped[dateadded]) == 8:  # GDELT 1.0 adds whole days: YYYYMMDD
                mapped[dateadded] += "000000"
            rows.append(mapped)
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
    return frame, rejected


def _provenance(table: pa.Table, source: str, lines: pa.Array) -> pa.Table:
    table = table.append_column(SOURCE_COLUMN, pa.repeat(pa.scalar(source, pa.string()), len(table)))
    return table.append_column(LINE_COLUMN, lines)


def _fast(content: bytes, source: str) -> pa.Table | None:
    """Arrow's reader on a clean GDELT 2.0 file; None when the file needs the careful path."""
    lines = content.count(b"\n") + (0 if content.endswith(b"\n") else 1)
    try:
        table = pacsv.read_csv(
            pa.py_buffer(content),
            read_options=pacsv.ReadOptions(column_names=list(GDELT2_COLUMNS)),
            parse_options=_READ,
            convert_options=_CONVERT,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != lines:  # blank lines were skipped: line numbers need the careful path
        return None
    return _provenance(table, source, pa.array(np.arange(1, lines + 1, dtype=np.int64)))


def _careful(content: bytes, source: str) -> tuple[pa.Table, list[QuarantinedRow]]:
    """Line by line: quarantine rows of the wrong shape, encoding or types; type the rest."""
    frame, rejected = parse_export(content, source)
    strings = frame[list(GDELT2_COLUMNS)].apply(lambda s: s.str.strip())
    reasons = pd.Series("", index=frame.index, dtype=object)
    typed: dict[str, pd.Series] = {}
    for column, kind in COLUMN_KINDS.items():
        empty = strings[column] == ""
        parsed = parse_column(strings[column], kind)
        if kind is not ColumnKind.STRING:
            bad = ~empty & parsed.isna()
            reasons[bad] = reasons[bad] + f"; {column} is not a valid {kind.value}"
        if kind is ColumnKind.STRING:
            typed[column] = parsed.where(~empty, None)
        elif kind is ColumnKind.FLOAT:
            typed[column] = parsed.astype("float64")
        else:
            typed[column] = parsed.where(~bad).astype("Int64")
    reasons = reasons.str.removeprefix("; ")
    keep = reasons == ""
    for index in frame.index[~keep]:
        raw = "\t".join(strings.loc[index])
        rejected.append(QuarantinedRow("ingest", source, int(frame.at[index, LINE_COLUMN]), reasons[index], raw))
    good = pd.DataFrame(typed)[keep]
    table = pa.Table.from_pandas(good, schema=EVENTS_SCHEMA, preserve_index=False)
    lines = pa.array(frame.loc[keep, LINE_COLUMN].to_numpy(), pa.int64())
    return _provenance(table, source, lines), sorted(rejected, key=lambda r: r.line)


def parse_file(content: bytes, source: str) -> ParsedExport:
    """Parse an export file's bytes (plain or zipped) into typed rows and rejections.

    Args:
        content: The file as fetched.
        source: The file's name, recorded with every row and rejection.

    Returns:
        The parse; ``file_reason`` says why when no row could be kept.
    """
    try:
        data = unpack(content)
    except zipfile.BadZipFile as exc:
        return ParsedExport(None, file_reason=f"unreadable zip archive (truncated or corrupt): {exc}")
    if not data or data.isspace():
        return ParsedExport(None, file_reason="empty file: no rows", size=len(data))
    table = _fast(data, source)
    if table is not None:
        return ParsedExport(table, size=len(data))
    table, rejected = _careful(data, source)
    if table.num_rows == 0:
        reasons = "; ".join(sorted({r.reason for r in rejected})[:3])
        return ParsedExport(
            None, rejected, f"no row could be kept ({len(rejected)} rejected: {reasons})", size=len(data)
        )
    return ParsedExport(table, rejected, careful=True, size=len(data))
