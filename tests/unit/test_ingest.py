import io
import zipfile
from pathlib import Path

import pytest

from components.common.errors import IngestError
from components.common.schema import GDELT2_COLUMNS
from components.ingest.core import batch_id_for, ingest_files, ingest_to_table


def _zip(source: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(source, arcname=source.name)
    return target


def test_plain_and_zipped_exports_give_the_same_rows(gdelt_dir: Path, tmp_path: Path) -> None:
    plain = gdelt_dir / "20241022130000.export.CSV"
    zipped = _zip(plain, tmp_path / "20241022130000.export.CSV.zip")
    a = ingest_files([plain], quarantine_dir=tmp_path / "q").raw
    b = ingest_files([zipped], quarantine_dir=tmp_path / "q").raw
    assert len(a) == sum(1 for _ in plain.open(encoding="utf-8")) == 1485
    assert a[list(GDELT2_COLUMNS)].equals(b[list(GDELT2_COLUMNS)])
    assert a.loc[0, "EventCode"] == "043"  # leading zeros kept
    assert set(a["_format"]) == {"gdelt2"}


def test_gdelt1_rows_of_57_and_58_fields_map_onto_the_2_0_layout(gdelt_dir: Path, tmp_path: Path) -> None:
    result = ingest_files([gdelt_dir / "gdelt1_daily_20160728_sample.export.tsv"], quarantine_dir=tmp_path)
    assert len(result.raw) == 710 and result.quarantined_rows.empty
    assert set(result.raw["_format"]) == {"gdelt1"}
    assert (result.raw["Actor1Geo_ADM2Code"] == "").all()
    assert result.raw["DATEADDED"].str.len().eq(14).all()
    assert (result.raw["SOURCEURL"] == "").sum() == 201  # the 57-field backfile rows


def test_truncated_zip_is_quarantined_and_the_rest_goes_on(gdelt_dir: Path, tmp_path: Path) -> None:
    good = gdelt_dir / "20241022131500.export.CSV"
    whole = _zip(gdelt_dir / "20241022130000.export.CSV", tmp_path / "full.zip").read_bytes()
    broken = tmp_path / "20241022130000.export.CSV.zip"
    broken.write_bytes(whole[: len(whole) // 2])
    result = ingest_files([broken, good], quarantine_dir=tmp_path / "q")
    assert len(result.raw) == 1725
    [rejected] = result.quarantined_files
    assert "truncated or corrupt" in rejected.reason
    assert Path(rejected.copy).read_bytes() == broken.read_bytes()


def test_wrong_column_count_and_empty_file_are_quarantined_with_reasons(gdelt_dir: Path, tmp_path: Path) -> None:
    lines = (gdelt_dir / "20241022130000.export.CSV").read_text(encoding="utf-8").splitlines()
    cut = tmp_path / "20241022130000.export.CSV"
    cut.write_text("\n".join("\t".join(line.split("\t")[:40]) for line in lines[:10]) + "\n", encoding="utf-8")
    mixed = tmp_path / "20241022131500.export.CSV"
    mixed.write_text("\n".join([lines[0], lines[1] + "\textra", lines[2]]) + "\n", encoding="utf-8")
    empty = tmp_path / "20241022133000.export.CSV"
    empty.write_bytes(b"")
    result = ingest_files([cut, mixed, empty], quarantine_dir=tmp_path / "q")
    assert len(result.raw) == 2  # the two good rows of the mixed file
    reasons = {Path(f.source).name: f.reason for f in result.quarantined_files}
    assert reasons[empty.name] == "empty file: no rows"
    assert "no row has a GDELT field count" in reasons[cut.name]
    rows = result.quarantined_rows
    assert len(rows) == 11
    assert rows.loc[rows.source == mixed.name, "line"].tolist() == [2]
    assert "62 tab-separated fields; expected 61" in rows.loc[rows.source == mixed.name, "reason"].iloc[0]


def test_non_utf8_line_is_quarantined_alone(gdelt_dir: Path, tmp_path: Path) -> None:
    lines = (gdelt_dir / "20241022130000.export.CSV").read_bytes().split(b"\n")[:3]
    path = tmp_path / "20241022130000.export.CSV"
    path.write_bytes(b"\n".join([lines[0], lines[1][:20] + b"\xff" + lines[1][20:], lines[2]]))
    result = ingest_files([path], quarantine_dir=tmp_path / "q")
    assert len(result.raw) == 2
    assert result.quarantined_rows["reason"].str.startswith("not valid UTF-8").tolist() == [True]


def test_nothing_readable_raises_after_quarantining(tmp_path: Path) -> None:
    empty = tmp_path / "20241022130000.export.CSV"
    empty.write_bytes(b"")
    with pytest.raises(IngestError, match="empty file"):
        ingest_to_table([empty], raw_path=tmp_path / "raw.parquet", lake=tmp_path / "lake")
    assert (tmp_path / "lake" / "quarantine" / "20241022130000" / "ingest-files.json").exists()


def test_batch_id_is_the_newest_timestamp() -> None:
    names = [Path("20241022131500.export.CSV.zip"), Path("20241022130000.export.CSV"), Path("20160728.export.tsv")]
    assert batch_id_for(names) == "20241022131500"


def test_zip_helper_roundtrip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("dir/", "")
    path = tmp_path / "x.export.CSV.zip"
    path.write_bytes(buffer.getvalue())
    result = ingest_files([path], quarantine_dir=tmp_path / "q")
    assert "holds no file" in result.quarantined_files[0].reason
