"""Ingestion over the real GDELT feed protocol (a local mirror) into a lake on a real MinIO server."""

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import ExitStack
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests
from minio import Minio

from components.common.store import Store
from components.ingest.core import HttpSource, ObjectStoreSource, Status, compact_manifest, ingest, read_manifest
from components.ingest.mirror import GdeltMirror
from tests.servers import MinioServer, run_minio

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _s3(server: MinioServer, bucket: str) -> Store:
    return Store(
        f"s3://{bucket}/lake",
        {
            "endpoint_override": server.address,
            "scheme": "http",
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "region": "us-east-1",
            "allow_bucket_creation": True,
        },
    )


def _env(server: MinioServer) -> dict[str, str]:
    return {
        **os.environ,
        "DRIFTPILOT_S3_ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
    }


def _rows(path: Path) -> int:
    return path.read_bytes().count(b"\n")


def test_mirror_speaks_the_gdelt_protocol(gdelt_dir: Path) -> None:
    with GdeltMirror(gdelt_dir) as mirror:
        master = requests.get(f"{mirror.url}masterfilelist.txt", timeout=5)
        size, md5, url = master.text.splitlines()[0].split()
        body = requests.get(url, timeout=5).content
        assert hashlib.md5(body).hexdigest() == md5
        assert int(size) == len(body) and zipfile.ZipFile(io.BytesIO(body)).namelist() == ["20161013151500.export.CSV"]
        again = requests.get(f"{mirror.url}masterfilelist.txt", headers={"If-None-Match": master.headers["ETag"]})
        assert again.status_code == 304
        last = requests.get(f"{mirror.url}lastupdate.txt", timeout=5).text
        assert last.split()[2].endswith("20241223120000.export.CSV.zip")
        assert HttpSource(mirror.url).latest().batch_id == "20241223120000"
        mirror.requests.clear()
        [newest] = HttpSource(mirror.url).list("20241223120000", "20241223120000")
        assert newest.batch_id == "20241223120000" and mirror.requests == ["lastupdate.txt"]


def test_every_shared_export_lands_in_the_minio_lake_once(gdelt_dir: Path, minio_server: MinioServer) -> None:
    exports = sorted(gdelt_dir.glob("[0-9]" * 14 + ".export.CSV"))
    store = _s3(minio_server, "lake-all")
    with GdeltMirror(gdelt_dir) as mirror:
        source = HttpSource(mirror.url)
        first = ingest(source, store, workers=2)
        second = ingest(source, store, workers=2)
    assert first.count(Status.INGESTED) == len(exports) == 26
    assert first.rows + first.rows_quarantined == sum(_rows(p) for p in exports)
    in_lake = sum(
        pq.ParquetFile(store.fs.open_input_file(store.path(k))).metadata.num_rows for k in store.keys("events")
    )
    assert in_lake == first.rows
    assert second.rows == 0 and second.skipped == 26 and not second.entries
    manifest = read_manifest(store)
    assert compact_manifest(store, min_entries=1) == 26 and read_manifest(store) == manifest


def test_a_bucket_of_exports_is_a_source(gdelt_dir: Path, minio_server: MinioServer, tmp_path: Path) -> None:
    client = Minio(minio_server.address, minio_server.access_key, minio_server.secret_key, secure=False)
    client.make_bucket("exports")
    batches = ("20241022130000", "20241022131500")
    for batch in batches:
        client.fput_object("exports", f"gdelt/{batch}.export.CSV", str(gdelt_dir / f"{batch}.export.CSV"))
    client.put_object("exports", "gdelt/notes.txt", io.BytesIO(b"not an export"), length=13)
    source = ObjectStoreSource("s3://exports/gdelt", _s3(minio_server, "exports").options)
    assert [f.batch_id for f in source.list()] == list(batches) and source.latest().batch_id == batches[1]
    summary = ingest(source, Store(str(tmp_path / "lake")), workers=0)
    assert summary.rows == sum(_rows(gdelt_dir / f"{b}.export.CSV") for b in batches)


def _faulty_feed(gdelt_dir: Path, folder: Path) -> dict[str, str]:
    """Real batches, each broken in one of the ways a feed breaks; returns batch -> mirror fault."""
    folder.mkdir()
    batches = sorted(p.name[:14] for p in gdelt_dir.glob("202410*.export.CSV"))
    for batch in batches:
        (folder / f"{batch}.export.CSV").write_bytes((gdelt_dir / f"{batch}.export.CSV").read_bytes())
    lines = (folder / f"{batches[1]}.export.CSV").read_bytes().split(b"\n")
    lines[5] += b"\tone-too-many"
    lines[9] = lines[9][:30] + b"\xc3\x28" + lines[9][30:]
    (folder / f"{batches[1]}.export.CSV").write_bytes(b"\n".join(lines))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{batches[2]}.export.CSV", (folder / f"{batches[2]}.export.CSV").read_bytes())
    (folder / f"{batches[2]}.export.CSV").unlink()
    (folder / f"{batches[2]}.export.CSV.zip").write_bytes(zipped.getvalue()[:5000])  # truncated
    (folder / f"{batches[3]}.export.CSV").write_bytes(b"")
    return {batches[4]: "md5", batches[5]: "404", batches[6]: "500", batches[7]: "timeout", batches[8]: "duplicate"}


def test_each_feed_fault_is_quarantined_with_its_reason(gdelt_dir: Path, tmp_path: Path) -> None:
    faults = _faulty_feed(gdelt_dir, tmp_path / "feed")
    store = Store(str(tmp_path / "lake"))
    with GdeltMirror(tmp_path / "feed", faults=faults, delay_s=2.0) as mirror:
        summary = ingest(HttpSource(mirror.url, timeout_s=0.5, retries=1, backoff_s=0.05), store, workers=2)
    reasons = {p["name"][:14]: p["reason"] for p in summary.to_dict()["problems"]}
    batch = {fault: name for name, fault in faults.items()}
    assert "does not match the published" in reasons[batch["md5"]]
    assert "HTTP 404" in reasons[batch["404"]]
    assert "HTTP 500" in reasons[batch["500"]]
    assert "timed out" in reasons[batch["timeout"]]
    assert "listed more than once" in reasons[batch["duplicate"]]
    assert reasons["20241022133000"].startswith("unreadable zip archive (truncated or corrupt)")
    assert reasons["20241022134500"] == "empty file: no rows"
    rows = pq.read_table(tmp_path / "lake" / "quarantine" / "20241022131500").to_pandas()
    assert sorted(rows["line"]) == [6, 10]
    reasons_by_line = dict(zip(rows["line"], rows["reason"], strict=True))
    assert reasons_by_line[6].startswith("62 tab-separated fields") and reasons_by_line[10].startswith(
        "not valid UTF-8"
    )
    assert summary.count(Status.INGESTED) == 4  # 13:00, 13:15 (less two rows), and two good ones
    manifest = read_manifest(store)
    assert {e.status for e in manifest.values() if e.name[:14] in {batch["404"], batch["500"]}} == {Status.FAILED}
    assert Path(store.get_json("quarantine/20241022134500/20241022134500.export.CSV.zip.json")["raw"]).exists()
    for fault in ("md5", "404", "500", "timeout"):
        name = f"{batch[fault]}.export.CSV.zip"
        record = store.get_json(f"quarantine/{batch[fault]}/{name}.json")
        assert record["reason"] == reasons[batch[fault]]
        assert bool(record["raw"]) == (fault == "md5")  # the mismatching bytes are kept


def _lake_contents(store: Store) -> dict[str, object]:
    """What a lake holds, without the timings: tables by key, manifest entries, quarantine keys."""
    entries = {
        name: {k: v for k, v in vars(e).items() if k not in ("seconds", "ingested_at")}
        for name, e in read_manifest(store).items()
    }
    tables = {k: store.get_table(k) for k in store.keys("events")}
    return {"tables": tables, "manifest": entries, "raw": store.keys("raw"), "quarantine": store.keys("quarantine")}


def test_a_killed_backfill_resumes_to_the_same_lake(gdelt_dir: Path, minio_server: MinioServer) -> None:
    with GdeltMirror(gdelt_dir, latency_s=0.4) as mirror:
        command = [sys.executable, "-m", "pipelines.cli", "ingest", "--source", mirror.url, "--workers", "2"]
        killed = subprocess.Popen(
            [*command, "--lake", "s3://lake-resumed/lake"], cwd=REPO, env=_env(minio_server), start_new_session=True
        )
        resumed = _s3(minio_server, "lake-resumed")
        deadline = time.monotonic() + 120
        while len(resumed.keys("_manifest")) < 5 and time.monotonic() < deadline and killed.poll() is None:
            time.sleep(0.05)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        done_before = len(resumed.keys("_manifest"))
        assert 5 <= done_before < 26, "the backfill was not interrupted midway"
        for lake in ("s3://lake-resumed/lake", "s3://lake-whole/lake"):
            subprocess.run([*command, "--lake", lake], cwd=REPO, env=_env(minio_server), check=True, timeout=300)
    _assert_same(_lake_contents(resumed), _lake_contents(_s3(minio_server, "lake-whole")))


def _assert_same(lake: dict[str, object], whole: dict[str, object]) -> None:
    """The two lakes hold the same manifest entries, raw files, quarantine records and tables."""
    assert lake["manifest"] == whole["manifest"]
    assert lake["raw"] == whole["raw"] and lake["quarantine"] == whole["quarantine"]
    tables, whole_tables = lake["tables"], whole["tables"]
    assert isinstance(tables, dict) and isinstance(whole_tables, dict) and tables.keys() == whole_tables.keys()
    assert all(tables[k].equals(whole_tables[k]) for k in tables)


@pytest.mark.parametrize("back", ["while-the-run-retries", "after-the-run-gave-up"])
def test_minio_killed_mid_ingest_and_started_again_ends_in_the_same_lake(
    back: str, gdelt_dir: Path, minio_server: MinioServer, tmp_path: Path
) -> None:
    with GdeltMirror(gdelt_dir, latency_s=0.4) as mirror, ExitStack() as servers:
        command = [sys.executable, "-m", "pipelines.cli", "ingest", "--source", mirror.url, "--workers", "2"]
        whole = f"lake-whole-{back}"
        subprocess.run([*command, "--lake", f"s3://{whole}/lake"], cwd=REPO, env=_env(minio_server), check=True)
        total = len(_s3(minio_server, whole).keys("_manifest"))
        own = servers.enter_context(run_minio(tmp_path))
        lake, log = _s3(own, "lake"), tmp_path / "ingest.log"
        # Retries that outlast MinIO's restart on a busy machine (1 + 2 + 4 + 8 + 15 + 15 + 15 s), or
        # that give up while it is down (0.1 + 0.2 + 0.4 s).
        waits = {"DRIFTPILOT_RETRY_ATTEMPTS": "8", "DRIFTPILOT_RETRY_INITIAL_S": "1"}
        if not back.startswith("while"):
            waits = {"DRIFTPILOT_RETRY_ATTEMPTS": "4", "DRIFTPILOT_RETRY_INITIAL_S": "0.1"}
        with log.open("wb") as out:
            run = subprocess.Popen(
                [*command, "--lake", "s3://lake/lake"], cwd=REPO, env={**_env(own), **waits}, stdout=out, stderr=out
            )
        deadline = time.monotonic() + 120
        while (done := len(lake.keys("_manifest"))) < 5 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        os.kill(own.pid, signal.SIGKILL)
        assert run.poll() is None and 5 <= done < total, "MinIO was not killed midway through the ingest"
        if back.startswith("while"):
            time.sleep(1.0)
            again = servers.enter_context(run_minio(tmp_path, again=own))
            assert run.wait(timeout=300) == 0, log.read_text()
        else:
            assert run.wait(timeout=300) == 2  # the CLI's exit code of a driftpilot error
            said = log.read_text()
            assert "Traceback (most recent call last)" not in said, said
            assert f"object store at {own.address}" in said and "run the ingest again" in said, said
            again = servers.enter_context(run_minio(tmp_path, again=own))
            subprocess.run([*command, "--lake", "s3://lake/lake"], cwd=REPO, env=_env(again), check=True, timeout=300)
        _assert_same(_lake_contents(_s3(again, "lake")), _lake_contents(_s3(minio_server, whole)))
