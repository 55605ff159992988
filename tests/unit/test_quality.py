from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common.errors import DataValidationError
from components.common.store import Store
from components.ingest.core import DirectorySource, Status, ingest, read_manifest
from components.quality.core import QualityConfig, check_batch, check_range, check_range_files

DAY = [
    "20241022130000",
    "20241022131500",
    "20241022133000",
    "20241022134500",
    "20241022140000",
    "20241022143000",  # 14:15 is missing from GDELT's own history
]


def _lines(gdelt_dir: Path, batch: str) -> list[bytes]:
    return (gdelt_dir / f"{batch}.export.CSV").read_bytes().rstrip(b"\n").split(b"\n")


def _with_field(line: bytes, index: int, value: bytes) -> bytes:
    fields = line.split(b"\t")
    fields[index] = value
    return b"\t".join(fields)


@pytest.fixture()
def lake(gdelt_dir: Path, tmp_path: Path) -> tuple[Path, Store]:
    feed = tmp_path / "feed"
    feed.mkdir()
    for batch in DAY:
        (feed / f"{batch}.export.CSV").write_bytes((gdelt_dir / f"{batch}.export.CSV").read_bytes())
    store = Store(str(tmp_path / "lake"))
    ingest(DirectorySource(str(feed)), store, workers=0)
    return feed, store


def _add(feed: Path, store: Store, batch: str, lines: list[bytes]) -> None:
    (feed / f"{batch}.export.CSV").write_bytes(b"\n".join(lines) + b"\n")
    ingest(DirectorySource(str(feed)), store, since=batch, until=batch, workers=0)


def test_real_batches_are_sound_and_the_known_gap_is_flagged(lake: tuple[Path, Store]) -> None:
    _, store = lake
    report = check_batch(store, "20241022143000")
    checks = {c.name: c for c in report.checks}
    assert report.verdict == "warn" and not report.incident
    assert checks["cadence"].status == "warn" and "20241022141500" in checks["cadence"].detail
    assert all(checks[name].status == "ok" for name in ("file", "volume", "schema", "nulls", "duplicates", "staleness"))
    assert check_batch(store, "20241022131500").verdict == "ok"


def test_a_collapsed_batch_is_an_incident_and_leaves_the_events(lake: tuple[Path, Store], gdelt_dir: Path) -> None:
    feed, store = lake
    _add(feed, store, "20241022144500", _lines(gdelt_dir, "20241022144500")[:10])
    report = check_batch(store, "20241022144500")
    assert report.incident and "volume collapsed" in report.summary()
    assert not store.keys("events/batch=20241022144500")
    assert store.keys("quarantine/20241022144500")
    assert read_manifest(store)["20241022144500.export.CSV"].status == Status.QUARANTINED


def test_a_republished_old_batch_is_stale(lake: tuple[Path, Store], gdelt_dir: Path) -> None:
    feed, store = lake
    old = _lines(gdelt_dir, "20241022130000")
    old[0] = _with_field(old[0], 30, b"5.0")  # not byte-identical, so not caught as a duplicate file
    _add(feed, store, "20241022144500", old)
    checks = {c.name: c for c in check_batch(store, "20241022144500").checks}
    assert checks["staleness"].status == "incident" and checks["staleness"].value == 1.0


def test_repeated_ids_and_empty_required_fields_are_incidents(lake: tuple[Path, Store], gdelt_dir: Path) -> None:
    feed, store = lake
    lines = _lines(gdelt_dir, "20241022144500")
    repeated = [_with_field(line, 59, b"20241022144500") for line in _lines(gdelt_dir, "20241022143000")[:200]]
    lines = [_with_field(line, 34, b"") if i % 3 == 0 else line for i, line in enumerate(lines)]  # AvgTone
    _add(feed, store, "20241022144500", lines + repeated)
    checks = {c.name: c for c in check_batch(store, "20241022144500").checks}
    assert checks["duplicates"].status == "incident" and "200 duplicate" in checks["duplicates"].detail
    assert checks["nulls"].status == "incident" and "AvgTone" in checks["nulls"].detail


def test_an_empty_field_spike_in_an_optional_column_is_a_warning(lake: tuple[Path, Store], gdelt_dir: Path) -> None:
    feed, store = lake
    lines = _lines(gdelt_dir, "20241022144500")
    # ActionGeo_CountryCode emptied on every third row: a spike of about 33 points
    lines = [_with_field(line, 53, b"") if i % 3 == 0 else line for i, line in enumerate(lines)]
    _add(feed, store, "20241022144500", lines)
    report = check_batch(store, "20241022144500", QualityConfig(min_history=3))
    checks = {c.name: c for c in report.checks}
    assert checks["nulls"].status == "warn" and "ActionGeo_CountryCode" in checks["nulls"].detail
    assert report.verdict == "warn"


def test_a_column_arriving_mostly_empty_is_an_incident(lake: tuple[Path, Store], gdelt_dir: Path) -> None:
    feed, store = lake
    lines = [_with_field(line, 53, b"") for line in _lines(gdelt_dir, "20241022144500")]  # ActionGeo_CountryCode
    _add(feed, store, "20241022144500", lines)
    report = check_batch(store, "20241022144500", QualityConfig(min_history=3))
    checks = {c.name: c for c in report.checks}
    assert checks["nulls"].status == "incident" and "ActionGeo_CountryCode" in checks["nulls"].detail
    assert report.verdict == "incident"


def test_a_backfill_range_is_judged_once_and_its_incident_is_left_out(
    lake: tuple[Path, Store], gdelt_dir: Path, tmp_path: Path
) -> None:
    feed, store = lake
    _add(feed, store, "20241022144500", _lines(gdelt_dir, "20241022144500")[:10])  # collapsed
    _add(feed, store, "20241022150000", _lines(gdelt_dir, "20241022150000"))
    paths = {name: tmp_path / "out" / name for name in ("clean.parquet", "report.json", "report.md")}
    kept, reports = check_range_files(
        store,
        since="20241022",
        until=None,
        table_path=paths["clean.parquet"],
        report_path=paths["report.json"],
        markdown_path=paths["report.md"],
    )
    assert [r.batch_id for r in reports] == [*DAY, "20241022144500", "20241022150000"]
    assert [r.batch_id for r in reports if r.incident] == ["20241022144500"]
    assert kept == [*DAY, "20241022150000"]
    rows = pq.read_table(paths["clean.parquet"], columns=["DATEADDED"]).column(0).to_pylist()
    assert set(rows) == {int(b) for b in kept}
    assert len(rows) == sum(len(_lines(gdelt_dir, b)) for b in kept)
    assert "**1 incidents**" in paths["report.md"].read_text()
    assert check_range(store, since="20241022", until=None) == []  # judged once: a re-run judges nothing


def test_a_range_with_only_incidents_is_refused(lake: tuple[Path, Store], gdelt_dir: Path, tmp_path: Path) -> None:
    feed, store = lake
    _add(feed, store, "20241022144500", _lines(gdelt_dir, "20241022144500")[:10])
    check_range(store, since=None, until="20241022143000")
    with pytest.raises(DataValidationError, match=r"20241022144500.*volume collapsed"):
        check_range_files(
            store,
            since="20241022144500",
            until="20241022144500",
            table_path=tmp_path / "t.parquet",
            report_path=tmp_path / "r.json",
            markdown_path=tmp_path / "r.md",
        )
