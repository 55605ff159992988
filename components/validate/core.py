"""Validate raw GDELT rows: schema, types, required fields, value ranges and duplicate ids.

A row that fails any check goes to quarantine with every reason it failed; the others come out
typed (ints as nullable ``Int64``, floats as ``float64``, codes as strings, empty as null).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from components.common.columns import parse_column
from components.common.errors import DataValidationError
from components.common.lake import batch_of, quarantine_prefix, validated_key
from components.common.quarantine import rows_to_frame, write_quarantine
from components.common.schema import COLUMN_KINDS, GDELT2_COLUMNS, REQUIRED_COLUMNS, ColumnKind
from components.common.storage import read_table, write_table
from components.common.store import Store

__all__ = ["ValidationResult", "validate_batch", "validate_events"]

_SOURCE, _LINE = "_source", "_line"

# Documented ranges of GDELT fields (closed intervals).
_RANGES: dict[str, tuple[float, float]] = {
    "QuadClass": (1, 4),
    "IsRootEvent": (0, 1),
    "GoldsteinScale": (-10, 10),
    "AvgTone": (-100, 100),
    "NumMentions": (0, np.inf),
    "NumSources": (0, np.inf),
    "NumArticles": (0, np.inf),
    "Actor1Geo_Type": (0, 5),
    "Actor2Geo_Type": (0, 5),
    "ActionGeo_Type": (0, 5),
    "Actor1Geo_Lat": (-90, 90),
    "Actor2Geo_Lat": (-90, 90),
    "ActionGeo_Lat": (-90, 90),
    "Actor1Geo_Long": (-180, 180),
    "Actor2Geo_Long": (-180, 180),
    "ActionGeo_Long": (-180, 180),
}


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one batch.

    Attributes:
        valid: Typed rows that passed every check (provenance columns ``_source``/``_line`` kept).
        quarantined: Rejected rows (``QUARANTINE_COLUMNS``), each with all its reasons.
        summary: Counts per reason and the null share of every column among valid rows.
    """

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)


def validate_events(raw: pd.DataFrame, *, max_future_days: int = 1) -> ValidationResult:
    """Type and check raw GDELT rows; quarantine every row that fails with its reasons.

    Args:
        raw: Every GDELT 2.0 column, as text or already typed by the ingest stage, plus
            ``_source`` and ``_line``.
        max_future_days: How far SQLDATE may lie after DATEADDED, in days (GDELT dates events
            by their report; a later date means a corrupt row).

    Returns:
        Typed valid rows, quarantined rows and a summary.

    Raises:
        DataValidationError: When GDELT columns are missing from the table.
    """
    missing = [c for c in GDELT2_COLUMNS if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"raw table lacks {len(missing)} GDELT columns ({', '.join(missing[:5])}...): "
            "feed it the ingest stage's output"
        )
    strings = raw[list(GDELT2_COLUMNS)].astype("string[pyarrow]").fillna("").apply(lambda s: s.str.strip())
    joined = pd.Series("", index=raw.index, dtype=object)
    per_reason: dict[str, int] = {}

    def flag(mask: pd.Series, text: str) -> None:
        hits = int(mask.sum())
        if hits:
            joined[mask] = joined[mask] + "; " + text
            per_reason[text] = per_reason.get(text, 0) + hits

    typed: dict[str, pd.Series] = {}
    for column, kind in COLUMN_KINDS.items():
        empty = strings[column] == ""
        if column in REQUIRED_COLUMNS:
            flag(empty, f"{column} is empty")
        parsed = parse_column(strings[column], kind)
        if kind is not ColumnKind.STRING:
            flag(~empty & parsed.isna(), f"{column} is not a valid {kind.value}")
            low, high = _RANGES.get(column, (-np.inf, np.inf))
            flag(parsed.notna() & ((parsed < low) | (parsed > high)), f"{column} outside [{low}, {high}]")
            typed[column] = parsed
        else:
            typed[column] = parsed.where(~empty, None)

    code, root = strings["EventCode"], strings["EventRootCode"]
    prefix = pd.Series([c.startswith(r) for c, r in zip(code, root, strict=True)], index=raw.index)
    flag((code != "") & (root != "") & ~prefix.astype(bool), "EventRootCode is not a prefix of EventCode")
    event_day = pd.to_datetime(strings["SQLDATE"], format="%Y%m%d", errors="coerce")
    added_day = pd.to_datetime(strings["DATEADDED"].str[:8], format="%Y%m%d", errors="coerce")
    flag(
        (event_day - added_day).dt.days > max_future_days, f"SQLDATE more than {max_future_days} day(s) after DATEADDED"
    )
    ids = strings["GLOBALEVENTID"]
    flag((ids != "") & ids.duplicated(keep="first"), "duplicate GLOBALEVENTID in batch (first kept)")

    joined = joined.str.removeprefix("; ")
    bad = joined != ""
    source = raw[_SOURCE] if _SOURCE in raw else pd.Series("", index=raw.index)
    line = raw[_LINE] if _LINE in raw else pd.Series(0, index=raw.index)
    quarantined = rows_to_frame([])
    if bad.any():
        quarantined = pd.DataFrame(
            {
                "stage": "validate",
                "source": source[bad].astype(str),
                "line": line[bad].astype("int64"),
                "reason": joined[bad],
                "raw": strings[bad].agg("\t".join, axis=1),
            }
        ).reset_index(drop=True)

    valid = pd.DataFrame(typed)[~bad].copy()
    for column, kind in COLUMN_KINDS.items():
        if kind in (ColumnKind.INT, ColumnKind.DATE8, ColumnKind.TIMESTAMP14):
            valid[column] = valid[column].astype("Int64")
        elif kind is ColumnKind.FLOAT:
            valid[column] = valid[column].astype("float64")
        else:
            valid[column] = valid[column].astype(object)
    valid[_SOURCE] = source[~bad].astype(str)
    valid[_LINE] = line[~bad].astype("int64")
    valid = valid.reset_index(drop=True)

    summary: dict[str, object] = {
        "rows_in": len(raw),
        "rows_valid": len(valid),
        "rows_quarantined": int(bad.sum()),
        "reasons": per_reason,
        "null_share": {c: round(float(valid[c].isna().mean()), 4) for c in GDELT2_COLUMNS} if len(valid) else {},
    }
    return ValidationResult(valid=valid, quarantined=quarantined, summary=summary)


def validate_batch(raw_path: Path, *, valid_path: Path, lake: Store, batch_id: str) -> ValidationResult:
    """Validate an ingested batch file, writing valid rows and quarantining the rest.

    Args:
        raw_path: Parquet written by the ingest stage.
        valid_path: Where the typed valid rows are written (Parquet).
        lake: The lake: valid rows are also kept as validated tables, one per batch (the batch of
            each row's source file; a range ingested at once is split back into its batches),
            rejected rows go to the quarantine folder of ``batch_id`` with a summary.
        batch_id: The batch's id (the newest, for a range).

    Returns:
        The validation result (also written to disk).

    Raises:
        DataValidationError: When no row passes; the rejected rows are quarantined first.
    """
    result = validate_events(read_table(raw_path))
    folder = quarantine_prefix(batch_id)
    write_quarantine(lake, folder, "validate", result.quarantined)
    lake.put_json(f"{folder}/validate-summary.json", result.summary)
    if result.valid.empty:
        reasons = result.summary["reasons"]
        assert isinstance(reasons, dict)
        top = ", ".join(f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        raise DataValidationError(
            f"no valid rows among {result.summary['rows_in']}; all quarantined in {lake.url(folder)}: "
            f"most common reasons: {top}"
        )
    write_table(result.valid, valid_path)
    batches = result.valid[_SOURCE].map(lambda name: batch_of(name) or batch_id)
    for batch, rows in result.valid.groupby(batches, sort=True):
        lake.put_table(validated_key(str(batch)), pa.Table.from_pandas(rows, preserve_index=False))
    return result
