from pathlib import Path

import pandas as pd
import pytest

from components.common.errors import DataValidationError
from components.common.store import Store
from components.ingest.core import parse_export, read_export
from components.validate.core import validate_batch, validate_events


@pytest.fixture(scope="module")
def raw(gdelt_dir: Path) -> pd.DataFrame:
    """The batch as text fields, the way a careful reader hands it over."""
    path = gdelt_dir / "20241022130000.export.CSV"
    frame, rejected = parse_export(path.read_bytes(), path.name)
    assert not rejected
    return frame


def test_typed_lake_rows_validate_like_text_rows(raw: pd.DataFrame, gdelt_dir: Path) -> None:
    table = read_export(gdelt_dir / "20241022130000.export.CSV").table
    assert table is not None
    typed, text = validate_events(table.to_pandas()), validate_events(raw)
    assert typed.valid.drop(columns="_source").equals(text.valid.drop(columns="_source"))


def test_real_batch_passes_and_is_typed(raw: pd.DataFrame) -> None:
    result = validate_events(raw)
    assert len(result.valid) == len(raw) and result.quarantined.empty
    assert str(result.valid["GLOBALEVENTID"].dtype) == "Int64"
    assert result.valid["AvgTone"].dtype == "float64"
    assert result.valid["EventCode"].iloc[0] == "043"
    assert pd.isna(result.valid["Actor1Code"].iloc[0])  # empty fields become null


def test_every_bad_row_is_quarantined_with_all_its_reasons(raw: pd.DataFrame) -> None:
    bad = raw.copy()
    bad.loc[0, "QuadClass"] = "7"
    bad.loc[1, "AvgTone"] = "abc"
    bad.loc[2, ["NumMentions", "ActionGeo_Lat"]] = ["", "123.0"]
    bad.loc[4, "GLOBALEVENTID"] = bad.loc[3, "GLOBALEVENTID"]
    bad.loc[5, "EventRootCode"] = "19"
    result = validate_events(bad)
    assert len(result.valid) == len(raw) - 5
    reasons = dict(zip(result.quarantined["line"], result.quarantined["reason"], strict=True))
    assert reasons[1] == "QuadClass outside [1, 4]"
    assert reasons[2] == "AvgTone is not a valid float"
    assert reasons[3] == "NumMentions is empty; ActionGeo_Lat outside [-90, 90]"
    assert reasons[5] == "duplicate GLOBALEVENTID in batch (first kept)"
    assert "EventRootCode is not a prefix of EventCode" in reasons[6]
    assert result.quarantined["raw"].iloc[0].split("\t")[29] == "7"  # the original line is kept
    assert result.summary["rows_quarantined"] == 5


def test_batch_with_no_valid_row_raises_after_quarantining(raw: pd.DataFrame, tmp_path: Path) -> None:
    bad = raw.head(3).copy()
    bad["AvgTone"] = ""
    path = tmp_path / "raw.parquet"
    bad.to_parquet(path)
    with pytest.raises(DataValidationError, match="AvgTone is empty"):
        validate_batch(path, valid_path=tmp_path / "valid.parquet", lake=Store(str(tmp_path / "lake")), batch_id="b1")
    assert len(pd.read_parquet(tmp_path / "lake" / "quarantine" / "b1" / "validate-rows.parquet")) == 3


def test_missing_columns_are_named(raw: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="lacks 1 GDELT columns"):
        validate_events(raw.drop(columns=["AvgTone"]))


def test_a_range_is_kept_as_one_validated_table_per_batch(gdelt_dir: Path, tmp_path: Path) -> None:
    tables = [read_export(gdelt_dir / f"{b}.export.CSV").table for b in ("20241022130000", "20241022131500")]
    raw = pd.concat([t.to_pandas() for t in tables if t is not None], ignore_index=True)
    raw.to_parquet(tmp_path / "raw.parquet")
    lake = Store(str(tmp_path / "lake"))
    validate_batch(tmp_path / "raw.parquet", valid_path=tmp_path / "v.parquet", lake=lake, batch_id="20241022131500")
    assert lake.keys("validated") == ["validated/20241022130000.parquet", "validated/20241022131500.parquet"]
    assert lake.get_table("validated/20241022130000.parquet").num_rows == 1485
