"""The ingestion-anomaly agent: is a new batch sound data, or an ingestion incident?

Most production incidents start at ingestion: a missing batch, a truncated file, a schema change,
a re-published old batch. Each looks like drift to the drift tests and would make the loop retrain
on garbage, so every batch is checked against the lake's recent history first:

- **cadence** — batches missing from GDELT's 15-minute rhythm since the previous one;
- **file** — the batch's file was rejected whole (unreadable, empty, failed to download);
- **volume** — row count against recent batches (robust z-score: median and MAD);
- **schema** — share of rows rejected for their shape, encoding or types;
- **nulls** — a column's empty share jumping above its recent level;
- **duplicates** — GLOBALEVENTIDs repeated within the batch or already in the previous batch;
- **staleness** — rows whose DATEADDED is not the batch's time (an old batch served again).

Each check is ``ok``, ``warn`` or ``incident``; the worst is the batch's verdict. An incident
moves the batch's rows out of the lake's events into its quarantine (the raw file stays kept), and
the decision stage treats it as a data-quality incident, not drift.
"""

import math
import statistics
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from components.common.errors import DataValidationError
from components.common.lake import incident_key, quarantine_prefix
from components.common.schema import REQUIRED_COLUMNS
from components.common.storage import write_json
from components.common.store import Store
from components.ingest._lake import (
    EVENTS,
    ManifestEntry,
    Status,
    events_key,
    ingested_batches,
    read_batch,
    read_manifest,
    write_entry,
    write_range_table,
)

__all__ = [
    "Check",
    "QualityConfig",
    "QualityReport",
    "assess",
    "check_batch",
    "check_batch_files",
    "check_range",
    "check_range_files",
    "quality_key",
    "range_markdown",
]

OK, WARN, INCIDENT = "ok", "warn", "incident"
_RANK = {OK: 0, WARN: 1, INCIDENT: 2}


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the agent.

    Attributes:
        cadence_minutes: Minutes between consecutive batches.
        history: Recent batches the volume and null checks compare with.
        min_history: Fewer earlier batches than this and volume and nulls are not judged.
        volume_z: Robust z-score beyond which the row count is anomalous (an incident when the
            count collapses below ``-2 * volume_z``).
        null_rise: Rise of a column's empty share over its recent median that counts as a spike.
        null_storm: Rise that makes the spike an incident (a column arriving mostly empty).
        schema_share: Share of rejected rows above which the batch is an incident.
        duplicate_share: Share of duplicate GLOBALEVENTIDs above which the batch is an incident.
        stale_share: Share of rows with another DATEADDED above which the batch is an incident.
    """

    cadence_minutes: int = 15
    history: int = 96
    min_history: int = 4
    volume_z: float = 3.5
    null_rise: float = 0.2
    null_storm: float = 0.5
    schema_share: float = 0.05
    duplicate_share: float = 0.01
    stale_share: float = 0.5


@dataclass(frozen=True)
class Check:
    """One check's outcome.

    Attributes:
        name: The check.
        status: ``ok``, ``warn`` or ``incident``.
        detail: What was measured, in words.
        value: The measured number the status rests on.
    """

    name: str
    status: str
    detail: str
    value: float = math.nan


@dataclass(frozen=True)
class QualityReport:
    """The agent's report on one batch.

    Attributes:
        batch_id: The batch.
        verdict: The worst check status.
        checks: Every check.
        rows: Rows of the batch in the lake.
    """

    batch_id: str
    verdict: str
    checks: list[Check] = field(default_factory=list)
    rows: int = 0

    @property
    def incident(self) -> bool:
        """Whether the batch is a data-quality incident."""
        return self.verdict == INCIDENT

    def summary(self) -> str:
        """One line: the verdict and the checks that were not ok."""
        issues = [f"{c.name}: {c.detail}" for c in self.checks if c.status != OK]
        return f"data quality {self.verdict}" + (f" ({'; '.join(issues)})" if issues else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {**asdict(self), "summary": self.summary()}

    def markdown(self) -> str:
        """The report as a Markdown table (a KFP Markdown artifact)."""
        lines = [
            f"# Data quality of batch {self.batch_id}: **{self.verdict}**",
            "",
            "| check | status | detail |",
            "|---|---|---|",
        ]
        lines += [f"| {c.name} | {c.status} | {c.detail} |" for c in self.checks]
        return "\n".join(lines) + "\n"


def _time(batch_id: str) -> datetime:
    return datetime.strptime(batch_id, "%Y%m%d%H%M%S")


def _cadence(batch_id: str, previous: str | None, config: QualityConfig) -> Check:
    if previous is None:
        return Check("cadence", OK, "no earlier batch in the lake", 0)
    step = timedelta(minutes=config.cadence_minutes)
    gap = _time(batch_id) - _time(previous)
    missing = max(0, round(gap / step) - 1)
    if not missing:
        return Check("cadence", OK, f"follows {previous}", 0)
    first = [(_time(previous) + step * (i + 1)).strftime("%Y%m%d%H%M%S") for i in range(min(missing, 3))]
    more = ", ..." if missing > 3 else ""
    return Check("cadence", WARN, f"{missing} batch(es) missing since {previous}: {', '.join(first)}{more}", missing)


def _volume(rows: int, history: list[int], config: QualityConfig) -> Check:
    if rows == 0:
        return Check("volume", INCIDENT, "no rows", 0)
    if len(history) < config.min_history:
        return Check("volume", OK, f"{rows} rows; {len(history)} earlier batches, too few to judge", math.nan)
    median = statistics.median(history)
    mad = statistics.median(abs(h - median) for h in history) * 1.4826
    spread = max(mad, 0.05 * median, 1.0)
    z = (rows - median) / spread
    detail = f"{rows} rows vs median {median:.0f} of {len(history)} batches (robust z {z:+.1f})"
    if z < -2 * config.volume_z:
        return Check("volume", INCIDENT, detail + ": volume collapsed", z)
    return Check("volume", WARN if abs(z) > config.volume_z else OK, detail, z)


def _share_check(name: str, count: int, total: int, incident_share: float, what: str) -> Check:
    share = count / total if total else 0.0
    if not count:
        return Check(name, OK, f"no {what}", 0.0)
    status = INCIDENT if share > incident_share else WARN
    return Check(name, status, f"{count} {what} ({share:.1%}; incident above {incident_share:.0%})", share)


def _nulls(null_share: dict[str, float], history: list[dict[str, float]], config: QualityConfig) -> Check:
    spikes, broken = [], []
    for column, share in null_share.items():
        if column in REQUIRED_COLUMNS and share > 0:
            broken.append(f"{column} {share:.1%}")
        past = [h[column] for h in history if column in h]
        if len(past) >= config.min_history:
            level = statistics.median(past)
            if share - level > config.null_storm:
                broken.append(f"{column} {level:.0%}→{share:.0%}")
            elif share - level > config.null_rise:
                spikes.append(f"{column} {level:.0%}→{share:.0%}")
    if broken:
        return Check("nulls", INCIDENT, f"columns empty: {', '.join(broken)}", len(broken))
    if spikes:
        return Check("nulls", WARN, f"empty-field spikes: {', '.join(spikes[:5])}", len(spikes))
    return Check("nulls", OK, "empty shares at their usual level", 0)


def assess(
    batch: list[ManifestEntry],
    history: list[ManifestEntry],
    *,
    repeated_ids: int = 0,
    config: QualityConfig = QualityConfig(),
) -> QualityReport:
    """Judge one batch against the batches before it.

    Args:
        batch: The batch's manifest entries (one per source file; GDELT has one).
        history: Entries of earlier batches, oldest first.
        repeated_ids: GLOBALEVENTIDs of the batch already present in the previous batch.
        config: Thresholds.

    Returns:
        The report.
    """
    batch_id = batch[0].batch_id
    ingested = [e for e in batch if e.status == Status.INGESTED]
    rejected = [e for e in batch if e.status != Status.INGESTED]
    earlier = sorted({e.batch_id for e in history if e.batch_id < batch_id})
    checks = [_cadence(batch_id, earlier[-1] if earlier else None, config)]
    if rejected:
        reasons = "; ".join(f"{e.name}: {e.reason}" for e in rejected)
        checks.append(Check("file", INCIDENT if not ingested else WARN, reasons, len(rejected)))
    else:
        checks.append(Check("file", OK, f"{len(batch)} file(s) read", 0))
    rows = sum(e.rows for e in ingested)
    recent = [e for e in history if e.status == Status.INGESTED and e.batch_id < batch_id][-config.history :]
    checks.append(_volume(rows, [e.rows for e in recent], config))
    rejected_rows = sum(e.rows_quarantined for e in batch)
    checks.append(
        _share_check("schema", rejected_rows, rows + rejected_rows, config.schema_share, "rows rejected at ingest")
    )
    if ingested:
        null_share = {
            c: sum(e.stats["null_share"].get(c, 0) * e.rows for e in ingested) / max(rows, 1)
            for c in ingested[0].stats.get("null_share", {})
        }
        checks.append(_nulls(null_share, [e.stats.get("null_share", {}) for e in recent], config))
        duplicates = sum(e.stats.get("duplicate_ids", 0) for e in ingested) + repeated_ids
        checks.append(_share_check("duplicates", duplicates, rows, config.duplicate_share, "duplicate GLOBALEVENTIDs"))
        stale = sum(e.stats.get("stale_rows", 0) for e in ingested)
        checks.append(
            _share_check("staleness", stale, rows, config.stale_share, f"rows whose DATEADDED is not {batch_id}")
        )
    verdict = max((c.status for c in checks), key=_RANK.__getitem__)
    return QualityReport(batch_id, verdict, checks, rows)


def _repeated_ids(store: Store, batch_id: str, previous: str | None) -> int:
    if previous is None:
        return 0
    try:
        current = read_batch(store, batch_id, ["GLOBALEVENTID"]).column(0)
        before = read_batch(store, previous, ["GLOBALEVENTID"]).column(0)
    except (FileNotFoundError, OSError):
        return 0
    return int(pc.sum(pc.is_in(current, value_set=before.combine_chunks())).as_py() or 0)


def quality_key(batch_id: str) -> str:
    """Key of a batch's quality report (every judged batch has one)."""
    return f"_quality/{batch_id}.json"


def _judge(store: Store, batch_id: str, manifest: dict[str, ManifestEntry], config: QualityConfig) -> QualityReport:
    """Judge a batch against the manifest's earlier batches; on an incident, quarantine it and update ``manifest``."""
    entries = sorted(manifest.values(), key=lambda e: (e.batch_id, e.name))
    batch = [e for e in entries if e.batch_id == batch_id]
    if not batch:
        raise KeyError(f"batch {batch_id} is not in the lake's manifest: ingest it first")
    history = [e for e in entries if e.batch_id < batch_id]
    previous = max((e.batch_id for e in history if e.status == Status.INGESTED), default=None)
    report = assess(batch, history, repeated_ids=_repeated_ids(store, batch_id, previous), config=config)
    store.put_json(quality_key(batch_id), report.to_dict())
    if report.incident:
        store.put_json(incident_key(batch_id), report.to_dict())
        for entry in batch:
            key = events_key(batch_id, entry.name)
            if store.exists(key):
                store.put_bytes(f"{quarantine_prefix(batch_id)}/{key.removeprefix(EVENTS + '/')}", store.get_bytes(key))
                store.delete(key)
            reason = f"data-quality incident: {report.summary()}"
            manifest[entry.name] = write_entry(store, replace(entry, status=Status.QUARANTINED, reason=reason))
    return report


def check_batch(store: Store, batch_id: str, config: QualityConfig = QualityConfig()) -> QualityReport:
    """Judge a batch already in the lake; on an incident, move its rows to quarantine.

    Args:
        store: The lake.
        batch_id: The batch.
        config: Thresholds.

    Returns:
        The report (also written to ``quarantine/<batch_id>/quality.json`` on an incident and to
        ``_quality/<batch_id>.json`` always).

    Raises:
        KeyError: When the lake's manifest has no file of the batch.
    """
    return _judge(store, batch_id, read_manifest(store), config)


def check_range(
    store: Store, *, since: str | None, until: str | None, config: QualityConfig = QualityConfig()
) -> list[QualityReport]:
    """Judge, oldest first, every batch of a range that no earlier run judged (a backfill's check).

    Each batch is judged against the batches before it, so an incident early in the range is out
    of the history of the later ones.

    Args:
        store: The lake.
        since: First batch, inclusive (None: the oldest).
        until: Last batch, inclusive (None: the newest).
        config: Thresholds.

    Returns:
        The reports of the batches judged now, oldest first.
    """
    manifest = read_manifest(store)
    judged = {Path(key).stem for key in store.keys("_quality")}
    return [
        _judge(store, batch_id, manifest, config)
        for batch_id in ingested_batches(store, since, until)
        if batch_id not in judged
    ]


def range_markdown(reports: list[QualityReport], clean: list[str]) -> str:
    """A range's check as Markdown: the batches kept, and each batch judged now with its verdict."""
    incidents = [r for r in reports if r.incident]
    lines = [
        f"# Data quality of {len(clean)} batches kept: {len(reports)} judged now, **{len(incidents)} incidents**",
        "",
        "| batch | verdict | summary |",
        "|---|---|---|",
    ]
    lines += [f"| {r.batch_id} | {r.verdict} | {r.summary()} |" for r in reports]
    return "\n".join(lines) + "\n"


def check_batch_files(
    store: Store, batch_id: str, report_path: Path, markdown_path: Path, config: QualityConfig = QualityConfig()
) -> QualityReport:
    """Judge a batch (see ``check_batch``) and write the report as JSON and Markdown.

    Args:
        store: The lake.
        batch_id: The batch.
        report_path: Where the JSON report is written.
        markdown_path: Where the Markdown report is written.
        config: Thresholds.

    Returns:
        The report.
    """
    report = check_batch(store, batch_id, config)
    write_json(report.to_dict(), report_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(report.markdown(), encoding="utf-8")
    return report


def check_range_files(
    store: Store,
    *,
    since: str | None,
    until: str | None,
    table_path: Path,
    report_path: Path,
    markdown_path: Path,
    config: QualityConfig = QualityConfig(),
) -> tuple[list[str], list[QualityReport]]:
    """Judge a range (see ``check_range``) and hand on its sound batches' rows with the reports.

    Args:
        store: The lake.
        since: First batch, inclusive (None: the oldest).
        until: Last batch, inclusive (None: the newest).
        table_path: Where the kept batches' rows are written (Parquet).
        report_path: Where the reports are written (JSON: kept batches, incidents, each report).
        markdown_path: Where the Markdown summary is written.
        config: Thresholds.

    Returns:
        The batches kept, oldest first, and the reports of the batches judged now.

    Raises:
        DataValidationError: When no batch of the range is left to train on.
    """
    reports = check_range(store, since=since, until=until, config=config)
    clean = ingested_batches(store, since, until)
    incidents = [r.to_dict() for r in reports if r.incident]
    write_json({"kept": clean, "incidents": incidents, "reports": [r.to_dict() for r in reports]}, report_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(range_markdown(reports, clean), encoding="utf-8")
    if not clean:
        raise DataValidationError(
            f"no batch of [{since or 'oldest'}, {until or 'newest'}] passed the data-quality checks: "
            + "; ".join(f"{r['batch_id']}: {r['summary']}" for r in incidents[:5])
        )
    write_range_table(store, clean, table_path)
    return clean, reports
