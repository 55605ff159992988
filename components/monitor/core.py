"""The drift monitor's logic: KServe inference-log CloudEvents in, Parquet rows in the lake out.

KServe's logger sends every request and every response of a predictor as a binary-mode
CloudEvent over HTTP (``ce-id``, ``ce-type``, ``ce-source``, ``ce-specversion`` headers, the
V1 or V2 payload as body); the request and its response share the ``ce-id``. The monitor pairs
them by id, turns each pair into one row per instance and buffers the rows; the buffer goes to
the lake as one Parquet file when it is full or old enough. A request whose response never
comes (a logger in ``request`` mode, a failed prediction) is written unpaired after a timeout.

Lake layout (the same ``Store`` the pipelines use):

- ``inference-log/date=YYYYMMDD/HHMMSS-<id>.parquet`` — rows with ``ROW_SCHEMA``, partitioned by
  the UTC day they were received;
- ``quarantine/inference-log/date=YYYYMMDD/HHMMSS-<id>.json`` — why an event was rejected, its
  CloudEvents headers, and where its body is kept: ``.body`` beside it, bytes as received;
- ``drift-alarms/date=YYYYMMDD/HHMMSS-<model>-<id>.json`` — a change an online detector found
  in a model's score stream (``components.drift.online``), one small record per alarm.

Every paired row's score feeds one online detector per model and endpoint (ADWIN by default),
so a shift in what a model predicts is seen within minutes, long before labels arrive; the
counts and the means before and after the last change are on ``/metrics``.

Instances and predictions are kept as JSON text: the columns of a model change with its
version, and one stable schema keeps every day of logs readable as one dataset.
"""

import json
import math
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from components.common.errors import ConfigError, DriftpilotError
from components.common.inference_log import REQUEST_TYPE, RESPONSE_TYPE
from components.common.store import Store
from components.drift.online import DriftAlarm, OnlineDriftConfig, OnlineDriftDetector

__all__ = [
    "ALARM_PREFIX",
    "LOG_PREFIX",
    "QUARANTINE_PREFIX",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "ROW_SCHEMA",
    "InferenceEvent",
    "InferenceLogMonitor",
    "MalformedEventError",
    "MonitorConfig",
    "Receipt",
    "alarm_key",
    "log_key",
    "pair_rows",
    "parse_event",
    "payload_rows",
]

LOG_PREFIX = "inference-log"
QUARANTINE_PREFIX = f"quarantine/{LOG_PREFIX}"
ALARM_PREFIX = "drift-alarms"

_KINDS = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
_REQUIRED_ATTRIBUTES = ("id", "type", "source", "specversion")
_EXTENSIONS = ("inferenceservicename", "namespace", "component", "endpoint")
_STRUCTURED = "application/cloudevents+json"

ROW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("received_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("inference_service", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("component", pa.string()),
        pa.field("endpoint", pa.string()),
        pa.field("source", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("instance", pa.string()),
        pa.field("prediction", pa.string()),
        pa.field("score", pa.float64()),
        pa.field("paired", pa.bool_(), nullable=False),
    ]
)
"""One row per instance: ids and routing from the CloudEvent, the instance and its prediction as
JSON text, ``score`` the prediction when it is one number (P(label = 1) for driftpilot's models),
``paired`` False when only one of request and response arrived."""


class MalformedEventError(DriftpilotError):
    """An HTTP request is not a KServe inference-log CloudEvent the monitor can store.

    Attributes:
        reason: A short machine-readable label for metrics (``headers``, ``json``, ``payload``...).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InferenceEvent:
    """One inference-log CloudEvent.

    Attributes:
        event_id: ``ce-id``, shared by a request and its response.
        kind: ``request`` or ``response``.
        source: ``ce-source``.
        attributes: KServe's extensions that are present (``inferenceservicename``,
            ``namespace``, ``component``, ``endpoint``).
        protocol: ``v1`` or ``v2``.
        rows: The payload's instances (requests) or predictions (responses), one per row.
    """

    event_id: str
    kind: str
    source: str
    attributes: Mapping[str, str]
    protocol: str
    rows: tuple[Any, ...]


@dataclass(frozen=True)
class Receipt:
    """What the monitor answers to one HTTP request.

    Attributes:
        status: HTTP status: 200 stored or waiting for its pair, 400 malformed, 409 duplicate,
            503 the buffer is full because the lake cannot be written.
        message: Plain text for the sender (why it was rejected, where the body is kept).
    """

    status: int
    message: str


@dataclass(frozen=True)
class MonitorConfig:
    """When the monitor writes and how much it keeps.

    Attributes:
        flush_rows: Rows that make the buffer flush at once.
        flush_seconds: Age of the oldest buffered row that makes the buffer flush.
        pair_timeout_seconds: How long a request or response waits for its pair before it is
            written unpaired.
        max_buffered_rows: Rows kept while the lake cannot be written; past this, events are
            answered 503.
        online_drift: The online detector each model's score stream feeds (one per model and
            endpoint); None turns online drift detection off.
        online_drift_max_models: Models (and endpoints) watched at most; rows of further ones
            are counted as unwatched, so a stray sender cannot grow memory and metric series
            without bound.
    """

    flush_rows: int = 1000
    flush_seconds: float = 60.0
    pair_timeout_seconds: float = 300.0
    max_buffered_rows: int = 200_000
    online_drift: OnlineDriftConfig | None = field(default_factory=OnlineDriftConfig)
    online_drift_max_models: int = 64

    def __post_init__(self) -> None:
        if self.online_drift_max_models < 1:
            raise ConfigError(f"online_drift_max_models must be >= 1, got {self.online_drift_max_models}")


def _attributes(headers: Mapping[str, str], body: bytes) -> tuple[dict[str, str], bytes]:
    """CloudEvent attributes and data from a binary-mode or a structured-mode HTTP message."""
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type == _STRUCTURED:
        envelope = _json(body, "structured CloudEvent")
        if not isinstance(envelope, dict):
            raise MalformedEventError("a structured CloudEvent must be a JSON object", "json")
        data = envelope.get("data")
        attributes = {k: str(v) for k, v in envelope.items() if k not in ("data", "data_base64")}
        return attributes, json.dumps(data).encode() if data is not None else b""
    if "json" not in content_type:
        raise MalformedEventError(
            f"content type {content_type!r} is not JSON: inference logs carry V1/V2 JSON payloads", "content-type"
        )
    return {k.removeprefix("ce-"): v for k, v in lowered.items() if k.startswith("ce-")}, body


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEventError(f"{what} is not valid JSON: {exc}", "json") from exc


def parse_event(headers: Mapping[str, str], body: bytes) -> InferenceEvent:
    """Read one KServe inference-log CloudEvent.

    Args:
        headers: HTTP headers (any case); binary mode (``ce-*`` headers) or structured mode
            (``Content-Type: application/cloudevents+json``).
        body: The HTTP body: the V1 or V2 request or response.

    Returns:
        The event with its payload split into rows.

    Raises:
        MalformedEventError: A required attribute is missing, the type is not an inference log,
            the body is not JSON or not a V1/V2 payload; the message names what is wrong.
    """
    attributes, data = _attributes(headers, body)
    missing = [f"ce-{name}" for name in _REQUIRED_ATTRIBUTES if not attributes.get(name, "").strip()]
    if missing:
        raise MalformedEventError(
            f"missing CloudEvents attribute(s) {', '.join(missing)}: KServe's logger sends "
            "ce-id, ce-type, ce-source and ce-specversion headers",
            "headers",
        )
    if attributes["specversion"] != "1.0":
        raise MalformedEventError(f"unsupported ce-specversion {attributes['specversion']!r}: expected 1.0", "headers")
    kind = _KINDS.get(attributes["type"])
    if kind is None:
        raise MalformedEventError(
            f"ce-type {attributes['type']!r} is not an inference log: expected {REQUEST_TYPE} or {RESPONSE_TYPE}",
            "type",
        )
    payload = _json(data, f"the {kind} body")
    if not isinstance(payload, dict):
        raise MalformedEventError(f"the {kind} body must be a JSON object, got {type(payload).__name__}", "payload")
    protocol, rows = payload_rows(payload, kind)
    return InferenceEvent(
        event_id=attributes["id"],
        kind=kind,
        source=attributes["source"],
        attributes={k: attributes[k] for k in _EXTENSIONS if k in attributes},
        protocol=protocol,
        rows=tuple(rows),
    )


def payload_rows(payload: Mapping[str, Any], kind: str) -> tuple[str, list[Any]]:
    """Split a V1 or V2 payload into one value per row.

    V1 requests carry ``instances`` (one per row) and responses ``predictions``; V2 requests
    carry ``inputs`` and responses ``outputs``, tensors whose first dimension is the row (a row
    becomes ``{tensor name: value}``, the value a list when the tensor has more dimensions).

    Args:
        payload: The decoded body.
        kind: ``request`` or ``response``.

    Returns:
        ``v1`` or ``v2``, and the rows.

    Raises:
        MalformedEventError: The payload is neither protocol's, or a tensor's data does not fill
            its shape, or the tensors disagree on the number of rows.
    """
    v1_key, v2_key = ("instances", "inputs") if kind == "request" else ("predictions", "outputs")
    if v1_key in payload:
        if not isinstance(payload[v1_key], list):
            raise MalformedEventError(f'V1 "{v1_key}" must be a list', "payload")
        return "v1", list(payload[v1_key])
    if v2_key in payload:
        return "v2", _tensor_rows(payload[v2_key], v2_key)
    raise MalformedEventError(
        f'the {kind} body has neither "{v1_key}" (V1) nor "{v2_key}" (V2); keys: {sorted(payload)[:10]}',
        "payload",
    )


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list):
        return [item for element in data for item in _flatten(element)]
    return [data]


def _tensor_rows(tensors: Any, key: str) -> list[Any]:
    if not isinstance(tensors, list) or not all(isinstance(t, dict) for t in tensors):
        raise MalformedEventError(f'V2 "{key}" must be a list of tensors (objects)', "payload")
    columns: dict[str, list[Any]] = {}
    count: int | None = None
    for tensor in tensors:
        name, shape, data = tensor.get("name"), tensor.get("shape"), tensor.get("data")
        if not isinstance(name, str) or not name:
            raise MalformedEventError(f'a V2 tensor in "{key}" has no name', "payload")
        if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise MalformedEventError(f"V2 tensor {name!r}: shape must be a non-empty list of sizes", "payload")
        if not isinstance(data, list):
            raise MalformedEventError(f"V2 tensor {name!r}: data must be a list", "payload")
        flat = _flatten(data)
        if len(flat) != math.prod(shape):
            raise MalformedEventError(
                f"V2 tensor {name!r}: shape {shape} needs {math.prod(shape)} values, data has {len(flat)}", "payload"
            )
        if count is not None and shape[0] != count:
            raise MalformedEventError(
                f"V2 tensors disagree on rows: {name!r} has {shape[0]}, others {count}", "payload"
            )
        count = shape[0]
        width = math.prod(shape[1:])
        columns[name] = flat if len(shape) == 1 else [flat[i * width : (i + 1) * width] for i in range(count)]
    return [{name: values[i] for name, values in columns.items()} for i in range(count or 0)]


def _score(prediction: Any) -> float | None:
    """The prediction as one number: a plain number, or a V2 row with a single numeric output."""
    if isinstance(prediction, dict) and len(prediction) == 1:
        prediction = next(iter(prediction.values()))
    if isinstance(prediction, bool) or not isinstance(prediction, int | float):
        return None
    return float(prediction)


def pair_rows(
    request: InferenceEvent | None, response: InferenceEvent | None, received_at: datetime
) -> list[dict[str, Any]]:
    """Rows (``ROW_SCHEMA``) of a request and its response, or of one of them alone.

    Args:
        request: The request event, None when it never arrived.
        response: The response event, None when it never arrived.
        received_at: When the pair was completed (or given up on), UTC.

    Returns:
        One row per instance.

    Raises:
        MalformedEventError: Both are given and their row counts differ.
        ValueError: Neither is given.
    """
    first = request or response
    if first is None:
        raise ValueError("pair_rows needs a request or a response")
    if request and response and len(request.rows) != len(response.rows):
        raise MalformedEventError(
            f"event {first.event_id}: the request has {len(request.rows)} rows but the response {len(response.rows)}",
            "pair",
        )
    attributes = {**(response.attributes if response else {}), **(request.attributes if request else {})}
    count = len(first.rows)
    rows = []
    for index in range(count):
        prediction = response.rows[index] if response else None
        rows.append(
            {
                "event_id": first.event_id,
                "received_at": received_at,
                "inference_service": attributes.get("inferenceservicename"),
                "namespace": attributes.get("namespace"),
                "component": attributes.get("component"),
                "endpoint": attributes.get("endpoint"),
                "source": first.source,
                "protocol": first.protocol,
                "row": index,
                "instance": json.dumps(request.rows[index], sort_keys=True) if request else None,
                "prediction": json.dumps(prediction) if response else None,
                "score": _score(prediction),
                "paired": bool(request and response),
            }
        )
    return rows


def _alone(event: InferenceEvent, received_at: datetime) -> list[dict[str, Any]]:
    """Rows of a request or a response whose pair never came."""
    if event.kind == "request":
        return pair_rows(event, None, received_at)
    return pair_rows(None, event, received_at)


def log_key(received_at: datetime, name: str) -> str:
    """Key of a Parquet file of rows received on ``received_at``'s UTC day."""
    return f"{LOG_PREFIX}/date={received_at:%Y%m%d}/{received_at:%H%M%S}-{name}.parquet"


def alarm_key(detected_at: datetime, model: str, name: str) -> str:
    """Key of the JSON record of an online drift alarm raised on ``detected_at``'s UTC day."""
    safe_model = re.sub(r"[^A-Za-z0-9_-]+", "_", model).strip("_")[:64] or "unknown"
    return f"{ALARM_PREFIX}/date={detected_at:%Y%m%d}/{detected_at:%H%M%S}-{safe_model}-{name}.json"


def _model(row: Mapping[str, Any]) -> str:
    """Which model a row belongs to: ``<namespace>/<InferenceService>``, else the CloudEvent source."""
    name = row.get("inference_service")
    if not name:
        return str(row.get("source") or "unknown")
    namespace = row.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a mean over no values is written as null."""
    return value if math.isfinite(value) else None


def _alarm_record(
    model: str, endpoint: str, detector: OnlineDriftDetector, alarm: DriftAlarm, row: Mapping[str, Any]
) -> dict[str, Any]:
    """The lake's record of one alarm: what changed where, and the detector's settings."""
    return {
        "model": model,
        "endpoint": endpoint,
        "detector": alarm.detector,
        "signal": alarm.signal,
        "detected_at": row["received_at"].isoformat(),
        "event_id": row["event_id"],
        "row": row["row"],
        "observation": alarm.observation,
        "change_observation": alarm.change_observation,
        "mean_before": _finite_or_none(alarm.mean_before),
        "count_before": alarm.count_before,
        "mean_after": _finite_or_none(alarm.mean_after),
        "count_after": alarm.count_after,
        "alarms": detector.alarms,
        "config": {"settings": asdict(detector.config.detector), "warmup": detector.config.warmup},
    }


def _label(value: str) -> str:
    """A Prometheus label value, escaped (model names come from the senders' headers)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(value: float) -> str:
    """A sample value in Prometheus' text format."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


@dataclass
class _Pending:
    event: InferenceEvent
    since: float


@dataclass
class _Counters:
    received: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    unpaired: Counter[str] = field(default_factory=Counter)
    pairs: int = 0
    rows_written: int = 0
    files_written: int = 0
    flush_errors: int = 0
    quarantine_errors: int = 0
    last_event: float = 0.0
    last_flush: float = 0.0
    unwatched_rows: int = 0
    alarm_write_errors: int = 0


class InferenceLogMonitor:
    """Pairs inference-log events, buffers their rows and writes them to the lake.

    Thread-safe: an HTTP server calls ``receive`` from many threads and ``tick`` from a timer.
    Writes to the lake happen outside the lock; a failed flush keeps its rows for the next one.
    Online drift alarms are found on the request path but written by ``tick`` and ``close``, so
    a slow lake never delays the logger; a record that could not be written waits for the next
    tick (alarms need rows, so ``max_buffered_rows`` bounds them too while the lake is down).

    Args:
        store: The lake.
        config: Flush, pairing and buffer limits, and the online drift detector.
        clock: Seconds since the epoch (``time.time``; tests pass their own).
    """

    def __init__(self, store: Store, config: MonitorConfig | None = None, clock: Callable[[], float] = time.time):
        self.store = store
        self.config = config or MonitorConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._buffer: list[dict[str, Any]] = []
        self._oldest: float | None = None
        self._counters = _Counters()
        self._detectors: dict[tuple[str, str], OnlineDriftDetector] = {}
        self._alarms: list[tuple[str, dict[str, Any]]] = []

    def _now(self) -> tuple[float, datetime]:
        seconds = self._clock()
        return seconds, datetime.fromtimestamp(seconds, UTC)

    def receive(self, headers: Mapping[str, str], body: bytes) -> Receipt:
        """Take one HTTP request from KServe's logger.

        Args:
            headers: The request's headers.
            body: The request's body.

        Returns:
            The HTTP answer. A malformed event, a duplicate or a request whose response does not
            match it is answered 400 (409 for a duplicate) and its body kept in quarantine.
        """
        seconds, now = self._now()
        try:
            event = parse_event(headers, body)
            with self._lock:
                return self._accept(event, seconds, now)
        except MalformedEventError as exc:
            event_id = {k.lower(): v for k, v in headers.items()}.get("ce-id", "")
            return self._reject(exc, headers, body, now, event_id)

    def _accept(self, event: InferenceEvent, seconds: float, now: datetime) -> Receipt:
        """Pair or park one event; the caller holds the lock."""
        if len(self._buffer) >= self.config.max_buffered_rows:
            return Receipt(503, f"buffer full ({len(self._buffer)} rows): the lake cannot be written")
        self._counters.received[event.kind] += 1
        self._counters.last_event = seconds
        if (event.event_id, event.kind) in self._pending:
            raise MalformedEventError(f"duplicate {event.kind} for ce-id {event.event_id}", "duplicate")
        other = self._pending.pop((event.event_id, "response" if event.kind == "request" else "request"), None)
        if other is None:
            self._pending[(event.event_id, event.kind)] = _Pending(event, seconds)
            return Receipt(200, f"{event.kind} {event.event_id} waits for its pair")
        request, response = (event, other.event) if event.kind == "request" else (other.event, event)
        try:
            rows = pair_rows(request, response, now)
        except MalformedEventError:
            # The parked event is sound on its own: keep it, unpaired; the new one is quarantined.
            self._counters.unpaired[other.event.kind] += 1
            self._add(_alone(other.event, now), seconds)
            raise
        self._counters.pairs += 1
        self._add(rows, seconds)
        self._watch(rows, seconds)
        return Receipt(200, f"{len(rows)} rows of {event.event_id} buffered")

    def _watch(self, rows: list[dict[str, Any]], seconds: float) -> None:
        """Feed paired rows' scores to their model's online detector; the caller holds the lock."""
        config = self.config.online_drift
        if config is None:
            return
        for row in rows:
            key = (_model(row), row["endpoint"] or "")
            detector = self._detectors.get(key)
            if detector is None:
                if len(self._detectors) >= self.config.online_drift_max_models:
                    self._counters.unwatched_rows += 1
                    continue
                detector = self._detectors[key] = OnlineDriftDetector(config)
            alarm = detector.update(row["score"], at=seconds)
            if alarm is not None:
                name = alarm_key(row["received_at"], key[0], uuid.uuid4().hex[:8])
                self._alarms.append((name, _alarm_record(key[0], key[1], detector, alarm, row)))

    def _write_alarms(self) -> list[str]:
        """Write the alarm records waiting; those that fail wait for the next call.

        Returns:
            Keys of the records written.
        """
        with self._lock:
            waiting, self._alarms = self._alarms, []
        written: list[str] = []
        for position, (key, record) in enumerate(waiting):
            try:
                written.append(self.store.put_json(key, record))
            except OSError:  # counted in alarm_write_errors_total; the lake is retried at the next call
                with self._lock:
                    self._counters.alarm_write_errors += 1
                    self._alarms = waiting[position:] + self._alarms
                break
        return written

    def _add(self, rows: list[dict[str, Any]], seconds: float) -> None:
        if rows and self._oldest is None:
            self._oldest = seconds
        self._buffer.extend(rows)

    def count_rejected(self, reason: str) -> None:
        """Count a request rejected before it could be read (e.g. ``size``: its body was too large)."""
        with self._lock:
            self._counters.rejected[reason] += 1

    def _reject(
        self, error: MalformedEventError, headers: Mapping[str, str], body: bytes, now: datetime, event_id: str
    ) -> Receipt:
        with self._lock:
            self._counters.rejected[error.reason] += 1
        kept = {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-") or k.lower() == "content-type"}
        safe_id = "".join(c for c in event_id if c.isalnum() or c in "-_")[:64] or "no-id"
        stem = f"{QUARANTINE_PREFIX}/date={now:%Y%m%d}/{now:%H%M%S}-{safe_id}-{uuid.uuid4().hex[:8]}"
        try:
            body_url = self.store.url(self.store.put_bytes(f"{stem}.body", body))
            self.store.put_json(
                f"{stem}.json",
                {
                    "reason": str(error),
                    "kind": error.reason,
                    "headers": kept,
                    "received_at": now.isoformat(),
                    "body": body_url,
                    "bytes": len(body),
                },
            )
        except OSError as exc:
            with self._lock:
                self._counters.quarantine_errors += 1
            return Receipt(400, f"{error} (the body could not be quarantined: {exc})")
        status = 409 if error.reason == "duplicate" else 400
        return Receipt(status, f"{error}; body kept at {body_url}")

    def _expire(self, seconds: float, now: datetime, everything: bool) -> None:
        """Move requests and responses whose pair is overdue into the buffer, unpaired."""
        with self._lock:
            overdue = [
                key
                for key, pending in self._pending.items()
                if everything or seconds - pending.since >= self.config.pair_timeout_seconds
            ]
            for key in overdue:
                event = self._pending.pop(key).event
                self._counters.unpaired[event.kind] += 1
                self._add(_alone(event, now), seconds)

    def tick(self) -> list[str]:
        """Write overdue unpaired events and flush the buffer if it is full or old enough.

        Alarm records that could not be written before are retried first.

        Returns:
            Keys of the files written: alarm records, then Parquet files (none when nothing was due).
        """
        seconds, now = self._now()
        alarms = self._write_alarms()
        self._expire(seconds, now, everything=False)
        with self._lock:
            due = len(self._buffer) >= self.config.flush_rows or (
                self._oldest is not None and seconds - self._oldest >= self.config.flush_seconds
            )
        return alarms + (self.flush() if due else [])

    def flush(self) -> list[str]:
        """Write every buffered row to the lake now, one file per UTC day.

        Returns:
            Keys of the Parquet files written.

        Raises:
            OSError: The lake could not be written; the rows stay buffered for the next flush.
        """
        with self._flush_lock:
            with self._lock:
                rows, oldest = self._buffer, self._oldest
                self._buffer, self._oldest = [], None
            by_day: dict[str, list[dict[str, Any]]] = {}
            for row in rows:
                by_day.setdefault(f"{row['received_at']:%Y%m%d}", []).append(row)
            written: list[str] = []
            try:
                for day_rows in by_day.values():
                    table = pa.Table.from_pylist(day_rows, schema=ROW_SCHEMA)
                    key = log_key(day_rows[0]["received_at"], uuid.uuid4().hex[:12])
                    written.append(self.store.put_table(key, table))
                    day_rows.clear()
            except OSError:
                with self._lock:
                    self._counters.flush_errors += 1
                    self._buffer = [row for day_rows in by_day.values() for row in day_rows] + self._buffer
                    self._oldest = oldest if self._oldest is None else min(oldest or self._oldest, self._oldest)
                raise
            finally:
                with self._lock:
                    self._counters.files_written += len(written)
                    self._counters.rows_written += len(rows) - sum(len(r) for r in by_day.values())
                    if written:
                        self._counters.last_flush = self._clock()
            return written

    def close(self) -> list[str]:
        """Write waiting alarm records and every waiting request or response unpaired, then flush; for shutdown.

        Returns:
            Keys of the files written: alarm records, then Parquet files.
        """
        seconds, now = self._now()
        alarms = self._write_alarms()
        self._expire(seconds, now, everything=True)
        return alarms + self.flush()

    def metrics(self) -> str:
        """The monitor's counters in Prometheus' text exposition format (version 0.0.4)."""
        with self._lock:
            c = self._counters
            pending = Counter(kind for _, kind in self._pending)
            buffered = len(self._buffer)
            families: list[tuple[str, str, str, list[tuple[str, float]]]] = [
                (
                    "events_received_total",
                    "counter",
                    "Well-formed inference-log CloudEvents received, by type.",
                    [(f'{{type="{k}"}}', c.received[k]) for k in ("request", "response")],
                ),
                (
                    "events_rejected_total",
                    "counter",
                    "HTTP requests rejected (answered 400/409 and quarantined), by reason.",
                    [(f'{{reason="{k}"}}', v) for k, v in sorted(c.rejected.items())] or [("", 0)],
                ),
                ("pairs_total", "counter", "Requests paired with their response.", [("", c.pairs)]),
                (
                    "unpaired_total",
                    "counter",
                    "Requests or responses written without their pair after the timeout, by type.",
                    [(f'{{type="{k}"}}', c.unpaired[k]) for k in ("request", "response")],
                ),
                ("rows_written_total", "counter", "Rows written to the lake.", [("", c.rows_written)]),
                ("files_written_total", "counter", "Parquet files written to the lake.", [("", c.files_written)]),
                ("flush_errors_total", "counter", "Flushes that failed to write the lake.", [("", c.flush_errors)]),
                (
                    "quarantine_errors_total",
                    "counter",
                    "Rejected bodies that could not be kept in quarantine.",
                    [("", c.quarantine_errors)],
                ),
                (
                    "pending_events",
                    "gauge",
                    "Requests or responses waiting for their pair, by type.",
                    [(f'{{type="{k}"}}', pending[k]) for k in ("request", "response")],
                ),
                ("buffered_rows", "gauge", "Rows waiting to be written.", [("", buffered)]),
                (
                    "last_event_timestamp_seconds",
                    "gauge",
                    "When the last event was accepted (0: never).",
                    [("", c.last_event)],
                ),
                (
                    "last_flush_timestamp_seconds",
                    "gauge",
                    "When rows were last written (0: never).",
                    [("", c.last_flush)],
                ),
            ]
            if self.config.online_drift is not None:
                families += self._online_drift_families()
        lines = []
        for name, kind, help_text, samples in families:
            full = f"driftpilot_monitor_{name}"
            lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}"]
            lines += [f"{full}{labels} {_sample(value)}" for labels, value in samples]
        return "\n".join(lines) + "\n"

    def _online_drift_families(self) -> list[tuple[str, str, str, list[tuple[str, float]]]]:
        """Metric families of the online detectors, one series per model and endpoint; the caller holds the lock.

        The endpoint (KServe's ``default`` or ``canary``) is labelled ``kserve_endpoint``: the
        Prometheus Operator sets ``endpoint`` on every scraped series (the port's name).
        """
        watched = sorted(self._detectors.items())
        labels = [
            (f'{{model="{_label(model)}",kserve_endpoint="{_label(endpoint)}",detector="{d.detector_name}"}}', d)
            for (model, endpoint), d in watched
        ]

        def last(d: OnlineDriftDetector, attribute: str) -> float:
            return math.nan if d.last_alarm is None else float(getattr(d.last_alarm, attribute))

        return [
            (
                "online_drift_observations_total",
                "counter",
                "Scores of paired rows fed to the model's online drift detector.",
                [(text, d.observations) for text, d in labels],
            ),
            (
                "online_drift_skipped_total",
                "counter",
                "Paired rows whose prediction is not one finite number, not fed to the detector.",
                [(text, d.skipped) for text, d in labels],
            ),
            (
                "online_drift_alarms_total",
                "counter",
                "Changes the online detector found in the model's score stream, after warm-up.",
                [(text, d.alarms) for text, d in labels],
            ),
            (
                "online_drift_mean_before_change",
                "gauge",
                "Mean score before the last change (NaN: no change yet).",
                [(text, last(d, "mean_before")) for text, d in labels],
            ),
            (
                "online_drift_mean_after_change",
                "gauge",
                "Mean score of the new regime when the last change was found (NaN: no change yet).",
                [(text, last(d, "mean_after")) for text, d in labels],
            ),
            (
                "online_drift_mean",
                "gauge",
                "Running mean score since the last change, or since the start (NaN: no score yet).",
                [(text, d.mean) for text, d in labels],
            ),
            (
                "online_drift_last_change_timestamp_seconds",
                "gauge",
                "When the last change was found (0: never).",
                [(text, (d.last_alarm.at if d.last_alarm else None) or 0.0) for text, d in labels],
            ),
            (
                "online_drift_unwatched_rows_total",
                "counter",
                "Paired rows of models beyond online_drift_max_models, not watched.",
                [("", self._counters.unwatched_rows)],
            ),
            (
                "online_drift_alarm_write_errors_total",
                "counter",
                "Alarm records that could not be written to the lake (retried at the next tick).",
                [("", self._counters.alarm_write_errors)],
            ),
        ]
