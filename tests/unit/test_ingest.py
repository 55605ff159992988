import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from components.common.store import Store
from components.ingest.core import (
    LAKE_SCHEMA,
    DirectorySource,
    SourceFile,
    Status,
    batch_of,
    compact_manifest,
    ingest,
    parse_file,
    parse_file_list,
    raw_key,
    read_batch,
    read_export,
    read_manifest,
)
from pipelines.cli import main


def _zip(content: bytes, name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def export(gdelt_dir: Path) -> bytes:
    return (gdelt_dir / "20241022130000.export.CSV").read_bytes()


def test_plain_and_zipped_exports_give_the_same_typed_rows(export: bytes) -> None:
    plain = parse_file(export, "20241022130000.export.CSV")
    zipped = parse_file(_zip(export, "20241022130000.export.CSV"), "20241022130000.export.CSV")
    assert plain.table is not None and zipped.table is not None and not plain.careful
    assert plain.table.num_rows == export.count(b"\n") == 1485
    assert plain.table.drop_columns("_source").equals(zipped.table.drop_columns("_source"))
    assert plain.table.schema.equals(LAKE_SCHEMA)
    assert plain.table.column("EventCode")[0].as_py() == "043"  # codes keep their leading zeros
    assert plain.table.column("_line").to_pylist()[:3] == [1, 2, 3]


def test_na_stays_a_country_code_and_only_empty_is_null() -> None:
    row = ["1"] * 61
    row[7] = "NA"  # Actor1CountryCode: FIPS code of the Netherlands Antilles
    row[6] = ""
    row[59] = "20241022130000"
    parsed = parse_file(("\t".join(row) + "\n").encode(), "x")
    assert parsed.table is not None
    assert parsed.table.column("Actor1CountryCode")[0].as_py() == "NA"
    assert parsed.table.column("Actor1Name")[0].as_py() is None


def test_gdelt1_rows_of_57_and_58_fields_map_onto_the_2_0_layout(gdelt_dir: Path) -> None:
    parsed = read_export(gdelt_dir / "gdelt1_daily_20160728_sample.export.tsv")
    assert parsed.table is not None and parsed.careful and not parsed.rejected
    assert parsed.table.num_rows == 710
    assert parsed.table.column("Actor1Geo_ADM2Code").null_count == 710
    assert all(len(str(v)) == 14 for v in parsed.table.column("DATEADDED").to_pylist())
    assert parsed.table.column("SOURCEURL").null_count == 201  # the 57-field backfile rows


def test_truncated_zip_and_empty_file_are_rejected_whole(export: bytes) -> None:
    whole = _zip(export, "a.export.CSV")
    assert "truncated or corrupt" in parse_file(whole[: len(whole) // 2], "a").file_reason
    assert parse_file(b"", "b").file_reason == "empty file: no rows"
    assert "holds no file" in parse_file(_zip(b"", "dir/"), "c").file_reason
    # Found by fuzzing: a damaged header naming another compression method, or encryption, raised.
    for offset, value in ((8, 99), (6, 1)):  # the local header's method; its flags' encryption bit
        damaged = bytearray(_zip(export[:2000], "a.export.CSV"))
        central = damaged.rindex(b"PK\x01\x02") + 2  # the central directory entry is what zipfile reads
        damaged[central + offset] = value
        assert "truncated or corrupt" in parse_file(bytes(damaged), "d").file_reason


def test_wrong_field_count_type_and_encoding_errors_quarantine_only_their_rows(export: bytes) -> None:
    lines = export.split(b"\n")[:5]
    lines[1] += b"\textra"
    lines[2] = lines[2][:20] + b"\xff" + lines[2][20:]
    fields = lines[3].split(b"\t")
    fields[31] = b"many"  # NumMentions
    lines[3] = b"\t".join(fields)
    parsed = parse_file(b"\n".join(lines) + b"\n", "f.export.CSV")
    assert parsed.table is not None and parsed.careful
    assert parsed.table.column("_line").to_pylist() == [1, 5]
    reasons = {r.line: r.reason for r in parsed.rejected}
    assert reasons[2].startswith("62 tab-separated fields; expected 61")
    assert reasons[3].startswith("not valid UTF-8")
    assert reasons[4] == "NumMentions is not a valid int"
    assert all(r.raw for r in parsed.rejected)  # the original line is kept


@pytest.mark.parametrize("value", [b"inf", b"-Infinity", b"1e400", b"1e30"])
def test_an_integer_field_of_no_whole_number_quarantines_its_row(export: bytes, value: bytes) -> None:
    """Found by fuzzing: an infinite or out-of-range integer field raised OverflowError for the whole file."""
    lines = export.split(b"\n")[:3]
    fields = lines[1].split(b"\t")
    fields[31] = value  # NumMentions
    lines[1] = b"\t".join(fields)
    parsed = parse_file(b"\n".join(lines) + b"\n", "f.export.CSV")
    assert parsed.table is not None and parsed.table.column("_line").to_pylist() == [1, 3]
    assert [(r.line, r.reason) for r in parsed.rejected] == [(2, "NumMentions is not a valid int")]


def test_file_lists_keep_only_exports_and_resolve_urls() -> None:
    text = (
        "150383 297a16b493de7cf6ca809a7cc31d0b93 http://data.gdeltproject.org/gdeltv2/20150218230000.export.CSV.zip\n"
        "318084 bb27f78ba45f69a17ea6ed7755e9f8ff http://data.gdeltproject.org/gdeltv2/20150218230000.mentions.CSV.zip\n"
        "garbage line\n"
        # Found by fuzzing: a size of digits that are not ASCII ("¹", "٣") raised ValueError.
        "\u00b9\u0663 297a16b493de7cf6ca809a7cc31d0b93 http://data.gdeltproject.org/gdeltv2/20150218231500.export.CSV.zip\n"
    )
    [file] = parse_file_list(text, "http://data.gdeltproject.org/gdeltv2/")
    assert file == SourceFile(
        "20150218230000.export.CSV.zip",
        "http://data.gdeltproject.org/gdeltv2/20150218230000.export.CSV.zip",
        150383,
        "297a16b493de7cf6ca809a7cc31d0b93",
    )
    assert batch_of("20160728.export.CSV.zip") == "20160728000000" and batch_of("x.gkg.csv") is None


@pytest.fixture()
def feed(gdelt_dir: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "feed"
    folder.mkdir()
    for name in ("20241022130000", "20241022131500", "20241022133000"):
        (folder / f"{name}.export.CSV").write_bytes((gdelt_dir / f"{name}.export.CSV").read_bytes())
    return folder


def test_folder_ingestion_fills_the_lake_once(feed: Path, tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lake"))
    first = ingest(DirectorySource(str(feed)), store, workers=0)
    assert first.count(Status.INGESTED) == 3 and first.rows == 1485 + 1725 + 1627
    assert read_batch(store, "20241022131500").num_rows == 1725
    assert store.exists(raw_key("20241022131500", "20241022131500.export.CSV"))
    entry = read_manifest(store)["20241022130000.export.CSV"]
    assert entry.md5 and entry.rows == 1485 and entry.stats["duplicate_ids"] == 0 and entry.stats["stale_rows"] == 0
    assert entry.raw_bytes == entry.size == (feed / entry.name).stat().st_size
    again = ingest(DirectorySource(str(feed)), store, workers=0)
    assert again.rows == 0 and again.skipped == 3 and not again.entries


def test_a_compacted_manifest_reads_the_same_and_keeps_the_lake_idempotent(feed: Path, tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lake"))
    ingest(DirectorySource(str(feed)), store, workers=0)
    before = read_manifest(store)
    assert compact_manifest(store, min_entries=2) == 3
    assert store.keys("_manifest") == ["_manifest/compacted.jsonl.gz"] and read_manifest(store) == before
    path = feed / "20241022133000.export.CSV"
    path.write_bytes(b"\n".join(path.read_bytes().split(b"\n")[:50]) + b"\n")
    again = ingest(DirectorySource(str(feed)), store, workers=0)
    assert [e.name for e in again.entries] == [path.name] and read_manifest(store)[path.name].rows == 50


def test_range_limits_what_is_ingested(feed: Path, tmp_path: Path) -> None:
    summary = ingest(DirectorySource(str(feed)), Store(str(tmp_path / "lake")), since="20241022131500", workers=0)
    assert [e.batch_id for e in summary.entries] == ["20241022131500", "20241022133000"]


def test_bad_files_are_quarantined_and_the_rest_goes_on(feed: Path, tmp_path: Path, export: bytes) -> None:
    (feed / "20241022134500.export.CSV").write_bytes(b"")
    whole = _zip(export, "20241022140000.export.CSV")
    (feed / "20241022140000.export.CSV.zip").write_bytes(whole[:1000])
    (feed / "20241022143000.export.CSV").write_bytes((feed / "20241022130000.export.CSV").read_bytes())
    store = Store(str(tmp_path / "lake"))
    summary = ingest(DirectorySource(str(feed)), store, workers=0)
    reasons = {p["name"]: p["reason"] for p in summary.to_dict()["problems"]}
    assert reasons["20241022134500.export.CSV"] == "empty file: no rows"
    assert "truncated or corrupt" in reasons["20241022140000.export.CSV.zip"]
    assert "duplicate batch: same content" in reasons["20241022143000.export.CSV"]
    assert summary.count(Status.INGESTED) == 3 and summary.count(Status.QUARANTINED) == 3
    record = store.get_json("quarantine/20241022140000/20241022140000.export.CSV.zip.json")
    assert "truncated" in record["reason"] and Path(record["raw"]).read_bytes() == whole[:1000]
    assert not store.keys("events/batch=20241022143000")


def test_a_republished_file_is_ingested_again(feed: Path, tmp_path: Path, gdelt_dir: Path) -> None:
    store = Store(str(tmp_path / "lake"))
    ingest(DirectorySource(str(feed)), store, workers=0)
    path = feed / "20241022133000.export.CSV"
    path.write_bytes(b"\n".join(path.read_bytes().split(b"\n")[:100]) + b"\n")
    summary = ingest(DirectorySource(str(feed)), store, workers=0)
    assert [e.name for e in summary.entries] == [path.name]
    assert read_batch(store, "20241022133000").num_rows == 100


def test_store_writes_are_atomic_and_listed_by_prefix(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "s")).ensure()
    store.put_table("t/a.parquet", pa.table({"x": [1, 2]}))
    store.put_json("t/b.json", {"k": 1})
    assert store.keys("t") == ["t/a.parquet", "t/b.json"]
    assert store.get_table("t/a.parquet").num_rows == 2 and store.get_json("t/b.json") == {"k": 1}
    assert not list((tmp_path / "s" / "_tmp").iterdir())


def test_cli_ingest_prints_each_file_and_a_summary(
    feed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = tmp_path / "lake"
    args = ["ingest", "--source", str(feed), "--lake", str(lake), "--workers", "0"]
    assert main([*args, "--since", "20241022131500"]) == 0
    out = capsys.readouterr().out
    assert "[1/2] 20241022131500.export.CSV  ingested  1725 rows" in out
    assert "2 files listed, 0 already in the lake, 2 ingested, 0 quarantined, 0 failed; 3352 rows" in out
    assert main(args) == 0
    assert "3 files listed, 2 already in the lake, 1 ingested" in capsys.readouterr().out
