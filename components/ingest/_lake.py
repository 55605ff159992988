"""Ingest GDELT export files into the lake on Dask, idempotently and resumably.

Layout of a lake (a local folder or an S3 prefix):

- ``raw/<id>/<file>`` — every fetched file as fetched (zipped), kept whatever became of it;
- ``events/batch=<id>/<file>.parquet`` — typed rows, one partition per batch (its DATEADDED);
- ``_manifest/<file>.json`` — one entry per source file: location, size, md5, rows, status,
  the stats the anomaly agent compares; written only after the file's data is in place, and
  folded into ``_manifest/compacted.jsonl.gz`` once there are many;
- ``quarantine/<id>/`` — why a file was rejected whole (``<file>.json``, pointing at its raw
  copy) and the rejected rows of the others (``ingest-<file>-rows.parquet``).

Each source file is one Dask task: fetch and verify, parse, write. The client records a manifest
entry as each task finishes, so a run that is killed resumes where it stopped, and a second run
over the same range ingests nothing twice (a file is re-ingested only when its published MD5 or
size changed, or its last attempt failed). A task writes to deterministic keys, so redoing a file
whose entry was lost yields the same lake.
"""

import gzip
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common.errors import IngestError, StoreError
from components.common.lake import quarantine_prefix
from components.common.quarantine import rows_to_frame, write_quarantine
from components.common.storage import write_json
from components.common.store import Store
from components.ingest._cluster import dask_client
from components.ingest._parse import parse_file
from components.ingest._sources import FetchError, Source, SourceFile

__all__ = [
    "IngestSummary",
    "ManifestEntry",
    "Status",
    "batch_stats",
    "compact_manifest",
    "events_key",
    "ingest",
    "quarantine_file",
    "raw_key",
    "read_batch",
    "read_manifest",
    "write_entry",
    "write_range_table",
]

EVENTS, MANIFEST, RAW = "events", "_manifest", "raw"
COMPACTED = f"{MANIFEST}/compacted.jsonl.gz"


class Status:
    """Outcome of one source file."""

    INGESTED = "ingested"
    QUARANTINED = "quarantined"
    FAILED = "failed"


def events_key(batch_id: str, name: str) -> str:
    """Key of a source file's typed rows."""
    return f"{EVENTS}/batch={batch_id}/{name.removesuffix('.zip')}.parquet"


@dataclass(frozen=True)
class ManifestEntry:
    """What happened to one source file.

    Attributes:
        name: File name.
        location: Where it was fetched from.
        batch_id: Its batch.
        size: Bytes fetched (the published size when the fetch failed).
        md5: MD5 of the bytes fetched (the published one when the fetch failed).
        status: ``ingested``, ``quarantined`` (rejected whole) or ``failed`` (retried next run).
        rows: Rows written to the lake.
        rows_quarantined: Rows rejected.
        reason: Why the file was quarantined or failed ('' otherwise).
        careful: The line-by-line parser was needed.
        raw_bytes: Uncompressed size.
        seconds: Time spent on the file.
        stats: Per-batch statistics for the anomaly agent (see ``batch_stats``).
        ingested_at: UTC time the entry was written.
    """

    name: str
    location: str
    batch_id: str
    size: int
    md5: str
    status: str
    rows: int = 0
    rows_quarantined: int = 0
    reason: str = ""
    careful: bool = False
    raw_bytes: int = 0
    seconds: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    ingested_at: str = ""

    @property
    def done(self) -> bool:
        """Whether a later run leaves this file alone."""
        return self.status in (Status.INGESTED, Status.QUARANTINED)

    def matches(self, file: SourceFile) -> bool:
        """Whether the entry is for the same bytes the source lists now."""
        return (file.md5 is None or file.md5 == self.md5) and (file.size is None or file.size == self.size)


def batch_stats(table: pa.Table, batch_id: str) -> dict[str, Any]:
    """Statistics of a batch's rows that the anomaly agent tracks over time.

    Args:
        table: Typed rows.
        batch_id: The batch's timestamp.

    Returns:
        ``rows``, ``null_share`` per column, ``duplicate_ids`` (repeats within the batch),
        ``id_min``/``id_max``, and ``stale_rows`` (DATEADDED other than the batch's timestamp).
    """
    rows = table.num_rows
    ids = table.column("GLOBALEVENTID")
    added = table.column("DATEADDED")
    distinct = pc.count_distinct(ids, mode="only_valid").as_py() if rows else 0
    return {
        "rows": rows,
        "null_share": {c: round(table.column(c).null_count / rows, 4) if rows else 0.0 for c in table.column_names},
        "duplicate_ids": int(rows - ids.null_count - distinct),
        "id_min": pc.min(ids).as_py() if rows else None,
        "id_max": pc.max(ids).as_py() if rows else None,
        "stale_rows": int(pc.sum(pc.not_equal(added, pa.scalar(int(batch_id), pa.int64()))).as_py() or 0)
        if rows
        else 0,
    }


def raw_key(batch_id: str, name: str) -> str:
    """Key of a fetched file's bytes."""
    return f"{RAW}/{batch_id}/{name}"


def quarantine_file(store: Store, entry: "ManifestEntry", reason: str, content: bytes | None = None) -> None:
    """Record why a file was rejected whole, with where its bytes are kept.

    Args:
        store: The lake.
        entry: The file's entry.
        reason: Why it was rejected.
        content: Bytes not yet kept in the raw zone (they go to the quarantine folder); None when
            the raw zone has them or none were received.
    """
    folder = quarantine_prefix(entry.batch_id)
    kept = store.url(raw_key(entry.batch_id, entry.name)) if store.exists(raw_key(entry.batch_id, entry.name)) else ""
    if content:
        kept = store.url(store.put_bytes(f"{folder}/files/{entry.name}", content))
    store.put_json(f"{folder}/{entry.name}.json", {"source": entry.location, "reason": reason, "raw": kept})


def ingest_file(source: Source, file: SourceFile, store: Store) -> ManifestEntry:
    """Fetch, verify, parse and write one source file (a Dask task).

    Args:
        source: Where the file comes from.
        file: The file.
        store: The lake.

    Returns:
        The file's manifest entry (not yet recorded).
    """
    started = time.perf_counter()
    entry = ManifestEntry(file.name, file.location, file.batch_id, file.size or 0, file.md5 or "", Status.FAILED)
    try:
        content = source.fetch(file)
    except FetchError as exc:
        quarantine_file(store, entry, str(exc), exc.content)
        return replace(entry, reason=str(exc), seconds=round(time.perf_counter() - started, 3))
    entry = replace(entry, size=len(content), md5=hashlib.md5(content).hexdigest())
    store.put_bytes(raw_key(file.batch_id, file.name), content)
    parsed = parse_file(content, file.name)
    write_quarantine(store, quarantine_prefix(file.batch_id), f"ingest-{file.name}", rows_to_frame(parsed.rejected))
    if parsed.table is None:
        quarantine_file(store, entry, parsed.file_reason)
        entry = replace(
            entry, status=Status.QUARANTINED, reason=parsed.file_reason, rows_quarantined=len(parsed.rejected)
        )
    else:
        store.put_table(events_key(file.batch_id, file.name), parsed.table)
        entry = replace(
            entry,
            status=Status.INGESTED,
            rows=parsed.table.num_rows,
            rows_quarantined=len(parsed.rejected),
            careful=parsed.careful,
            raw_bytes=parsed.size,
            stats=batch_stats(parsed.table, file.batch_id),
        )
    return replace(entry, seconds=round(time.perf_counter() - started, 3))


def write_entry(store: Store, entry: ManifestEntry) -> ManifestEntry:
    """Record a file's entry in the manifest, stamped with the time; return the stamped entry."""
    entry = replace(entry, ingested_at=datetime.now(UTC).isoformat(timespec="seconds"))
    store.put_json(f"{MANIFEST}/{entry.name}.json", asdict(entry))
    return entry


def read_manifest(store: Store) -> dict[str, ManifestEntry]:
    """Return the lake's manifest entries by file name: the compacted ones, then newer single entries."""
    entries: list[dict[str, Any]] = []
    if store.exists(COMPACTED):
        entries += [json.loads(line) for line in gzip.decompress(store.get_bytes(COMPACTED)).splitlines()]
    entries += [store.get_json(key) for key in store.keys(MANIFEST) if key.endswith(".json")]
    return {e["name"]: ManifestEntry(**e) for e in entries}


def compact_manifest(store: Store, *, min_entries: int = 256) -> int:
    """Fold single manifest entries into one compressed file once there are ``min_entries`` of them.

    A run writes one small entry per file (so a killed run loses nothing); reading thousands of
    them from S3 on every run would be slow, so they are folded into ``_manifest/compacted.jsonl.gz``
    (written first, so a crash in between loses nothing). One writer per lake at a time.

    Args:
        store: The lake.
        min_entries: Fold only when at least this many single entries exist.

    Returns:
        The number of entries folded (0 when below the threshold).
    """
    keys = [key for key in store.keys(MANIFEST) if key.endswith(".json")]
    if len(keys) < min_entries:
        return 0
    entries = sorted(read_manifest(store).values(), key=lambda e: e.name)
    lines = "\n".join(json.dumps(asdict(e), sort_keys=True) for e in entries)
    store.put_bytes(COMPACTED, gzip.compress(lines.encode(), mtime=0))
    for key in keys:
        store.delete(key)
    return len(keys)


def read_batch(store: Store, batch_id: str, columns: list[str] | None = None) -> pa.Table:
    """Return one batch's typed rows from the lake (every file of the batch)."""
    return store.get_table(f"{EVENTS}/batch={batch_id}", columns=columns)


def ingested_batches(store: Store, since: str | None = None, until: str | None = None) -> list[str]:
    """Batches in ``[since, until]`` with rows in the lake (quarantined batches excluded), oldest first."""
    low, high = (since or "").ljust(14, "0"), (until or "").ljust(14, "9")
    return sorted(
        {e.batch_id for e in read_manifest(store).values() if e.status == Status.INGESTED and low <= e.batch_id <= high}
    )


@dataclass(frozen=True)
class IngestSummary:
    """What an ingestion run did.

    Attributes:
        listed: Files the source listed in the range.
        skipped: Files already in the lake (done in an earlier run).
        entries: Entries recorded by this run, in completion order.
        duplicates: Files quarantined as duplicates of another file or listing line.
        seconds: Wall time.
    """

    listed: int
    skipped: int
    entries: list[ManifestEntry]
    duplicates: list[ManifestEntry]
    seconds: float

    def count(self, status: str) -> int:
        """Entries of this run with a status."""
        return sum(e.status == status for e in self.entries)

    @property
    def rows(self) -> int:
        """Rows written by this run."""
        return sum(e.rows for e in self.entries)

    @property
    def rows_quarantined(self) -> int:
        """Rows quarantined by this run."""
        return sum(e.rows_quarantined for e in self.entries)

    @property
    def megabytes(self) -> float:
        """Bytes fetched by this run, in MB."""
        return sum(e.size for e in self.entries) / 1e6

    @property
    def raw_megabytes(self) -> float:
        """Uncompressed bytes ingested by this run, in MB."""
        return sum(e.raw_bytes for e in self.entries) / 1e6

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (entries without their stats)."""
        return {
            "listed": self.listed,
            "skipped": self.skipped,
            "ingested": self.count(Status.INGESTED),
            "quarantined": self.count(Status.QUARANTINED) + len(self.duplicates),
            "failed": self.count(Status.FAILED),
            "rows": self.rows,
            "rows_quarantined": self.rows_quarantined,
            "megabytes": round(self.megabytes, 3),
            "raw_megabytes": round(self.raw_megabytes, 3),
            "seconds": round(self.seconds, 3),
            "problems": [
                {"name": e.name, "status": e.status, "reason": e.reason}
                for e in [*self.entries, *self.duplicates]
                if e.reason
            ],
        }


def _duplicate(file: SourceFile, reason: str) -> ManifestEntry:
    return ManifestEntry(
        file.name, file.location, file.batch_id, file.size or 0, file.md5 or "", Status.QUARANTINED, reason=reason
    )


def ingest(
    source: Source,
    store: Store,
    *,
    since: str | None = None,
    until: str | None = None,
    workers: int = 2,
    cluster: str = "local",
    image: str = "",
    progress: Callable[[ManifestEntry, int, int], None] | None = None,
) -> IngestSummary:
    """Ingest the source's export files in ``[since, until]`` that the lake lacks.

    Args:
        source: Where the files come from.
        store: The lake.
        since: First batch (``YYYYMMDD[HHMMSS]``), inclusive; None for the oldest.
        until: Last batch, inclusive; None for the newest.
        workers: Dask workers; 0 processes the files in this process, one after another.
        cluster: ``local``, ``kubernetes`` or a scheduler address (see ``dask_client``).
        image: Worker image of a Kubernetes cluster.
        progress: Called with each recorded entry, the number done and the number planned.

    Returns:
        The run's summary.
    """
    started = time.perf_counter()
    store.ensure()
    listed = source.list(since, until)
    manifest = read_manifest(store)
    known = {e.md5: e.name for e in manifest.values() if e.status == Status.INGESTED}
    plan: list[SourceFile] = []
    duplicates: list[ManifestEntry] = []
    seen: set[str] = set()
    for file in listed:
        if file.name in seen:
            duplicates.append(_duplicate(file, f"duplicate batch: {file.name} is listed more than once"))
        elif not (file.name in manifest and manifest[file.name].done and manifest[file.name].matches(file)):
            plan.append(file)
        seen.add(file.name)
    recorded: dict[str, ManifestEntry] = {}

    def drop_duplicate(entry: ManifestEntry, twin: str) -> ManifestEntry:
        store.delete(events_key(entry.batch_id, entry.name))
        reason = f"duplicate batch: same content (md5 {entry.md5}) as {twin}, already in the lake"
        quarantine_file(store, entry, reason)
        return write_entry(store, replace(entry, status=Status.QUARANTINED, rows=0, stats={}, reason=reason))

    def record(entry: ManifestEntry) -> None:
        twin = known.get(entry.md5)
        if entry.status == Status.INGESTED and twin not in (None, entry.name):
            assert twin is not None
            if twin in recorded and entry.name < twin:  # same bytes twice in one run: the first name wins
                recorded[twin] = drop_duplicate(recorded[twin], entry.name)
            else:
                entry = drop_duplicate(entry, twin)
        if entry.status == Status.INGESTED:
            known[entry.md5] = entry.name
        recorded[entry.name] = entry = write_entry(store, entry)
        if progress is not None:
            progress(entry, len(recorded), len(plan))

    try:
        if workers <= 0 or len(plan) <= 1:
            for file in plan:
                record(ingest_file(source, file, store))
        else:
            from distributed import as_completed

            with dask_client(workers, cluster, image) as client:
                futures = [client.submit(ingest_file, source, file, store, pure=False) for file in plan]
                for future in as_completed(futures):
                    record(future.result())
    except StoreError as exc:
        raise StoreError(
            f"{exc}. {len(recorded)} of the {len(plan)} files planned are in the lake's manifest; "
            "run the ingest again once the object store answers: it resumes with the others"
        ) from exc
    compact_manifest(store)
    return IngestSummary(
        len(listed),
        len(listed) - len(plan) - len(duplicates),
        list(recorded.values()),
        duplicates,
        time.perf_counter() - started,
    )


def ingest_to_table(
    source: Source,
    store: Store,
    *,
    since: str | None,
    until: str | None,
    workers: int,
    cluster: str = "local",
    image: str = "",
    table_path: Path,
    summary_path: Path,
) -> tuple[list[str], int]:
    """Ingest a range of batches, then hand its rows on as one table (the pipeline's ingest step).

    Args:
        source: Where the files come from.
        store: The lake.
        since: First batch, inclusive (None: the oldest; ``latest``: only the source's newest).
        until: Last batch, inclusive (None: the newest).
        workers: Dask workers (0: in this process).
        cluster: ``local``, ``kubernetes`` or a scheduler address.
        image: Worker image of a Kubernetes cluster.
        table_path: Where the range's typed rows are written (Parquet).
        summary_path: Where the run's summary is written (JSON).

    Returns:
        The batches in the table, oldest first, and its row count.

    Raises:
        IngestError: When the lake holds no rows of the range; the run's problems are named.
    """
    if since == "latest":
        since = until = source.latest().batch_id
    summary = ingest(source, store, since=since, until=until, workers=workers, cluster=cluster, image=image)
    document = summary.to_dict()
    write_json(document, summary_path)
    batches = ingested_batches(store, since, until)
    if not batches:
        problems = "; ".join(f"{p['name']}: {p['reason']}" for p in document["problems"][:5]) or "nothing listed"
        raise IngestError(
            f"no rows of [{since or 'oldest'}, {until or 'newest'}] in {store.uri} from {source.location}: {problems}"
        )
    return batches, write_range_table(store, batches, table_path)


def write_range_table(store: Store, batches: list[str], path: Path) -> int:
    """Write the rows of some batches of the lake as one Parquet file; return its row count."""
    table = pa.concat_tables([read_batch(store, b) for b in batches])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows
