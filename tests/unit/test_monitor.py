"""The drift monitor: KServe inference-log CloudEvents paired, buffered and written as Parquet."""

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import requests

from components.common.errors import ConfigError
from components.common.store import Store
from components.drift.online import OnlineDriftConfig, PageHinkleySettings
from components.monitor.__main__ import build_parser, online_drift_config
from components.monitor.core import (
    ALARM_PREFIX,
    QUARANTINE_PREFIX,
    REQUEST_TYPE,
    RESPONSE_TYPE,
    ROW_SCHEMA,
    InferenceLogMonitor,
    MalformedEventError,
    MonitorConfig,
    parse_event,
)
from components.monitor.server import MonitorServer

# 2024-10-22 13:00:00 UTC, a GDELT batch's time
T0 = 1729602000.0

V1_REQUEST = {
    "instances": [
        {"EventCode": "042", "QuadClass": 1.0, "ActionGeo_CountryCode": "NA"},
        {"EventCode": "190", "QuadClass": 4.0, "ActionGeo_CountryCode": "US"},
    ]
}
V1_RESPONSE = {"predictions": [0.12, 0.81]}
V2_REQUEST = {
    "id": "r-1",
    "inputs": [
        {"name": "EventCode", "shape": [3], "datatype": "BYTES", "data": ["042", "190", "010"]},
        {"name": "QuadClass", "shape": [3], "datatype": "FP64", "data": [1.0, 4.0, 2.0]},
    ],
}
V2_RESPONSE = {
    "id": "r-1",
    "model_name": "gdelt-tone",
    "outputs": [{"name": "probability", "shape": [3], "datatype": "FP64", "data": [0.1, 0.9, 0.3]}],
}


def headers(event_id: str, kind: str, **extra: str) -> dict[str, str]:
    """The headers KServe's logger sends (binary-mode CloudEvents, Go's canonical header case)."""
    return {
        "Ce-Id": event_id,
        "Ce-Type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
        "Ce-Source": "http://localhost:9081/",
        "Ce-Specversion": "1.0",
        "Ce-Time": "2024-10-22T13:00:00.123456789Z",
        "Ce-Inferenceservicename": "gdelt-tone",
        "Ce-Namespace": "driftpilot",
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Content-Type": "application/json",
        **extra,
    }


def body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "lake")).ensure()


def read_log(store: Store) -> list[dict[str, Any]]:
    keys = store.keys("inference-log")
    return [row for key in keys for row in store.get_table(key).to_pylist()]


def test_v1_request_and_response_pair_into_one_row_per_instance(store: Store) -> None:
    clock = Clock()
    monitor = InferenceLogMonitor(store, clock=clock)
    first = monitor.receive(headers("abc-1", "request"), body(V1_REQUEST))
    assert (first.status, "waits for its pair" in first.message) == (200, True)
    clock.now += 0.2
    second = monitor.receive(headers("abc-1", "response"), body(V1_RESPONSE))
    assert second.status == 200 and "2 rows" in second.message

    written = monitor.flush()

    assert written == [k for k in written if k.startswith("inference-log/date=20241022/130000-")]
    table = pq.read_table(store.path(written[0]))
    assert table.schema.equals(ROW_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    assert [r["row"] for r in rows] == [0, 1]
    assert [r["score"] for r in rows] == [0.12, 0.81]
    assert json.loads(rows[0]["instance"]) == V1_REQUEST["instances"][0]
    assert rows[1]["prediction"] == "0.81"
    assert {r["protocol"] for r in rows} == {"v1"}
    assert all(r["paired"] for r in rows)
    assert rows[0]["inference_service"] == "gdelt-tone" and rows[0]["namespace"] == "driftpilot"
    assert rows[0]["endpoint"] == "default" and rows[0]["component"] == "predictor"
    assert rows[0]["received_at"] == datetime.fromtimestamp(T0 + 0.2, UTC).replace(microsecond=200000)


def test_v2_tensors_become_rows_and_the_response_may_come_first(store: Store) -> None:
    monitor = InferenceLogMonitor(store, clock=Clock())
    assert monitor.receive(headers("v2-1", "response"), body(V2_RESPONSE)).status == 200
    assert monitor.receive(headers("v2-1", "request"), body(V2_REQUEST)).status == 200
    monitor.flush()

    rows = read_log(store)
    assert [json.loads(r["instance"]) for r in rows] == [
        {"EventCode": "042", "QuadClass": 1.0},
        {"EventCode": "190", "QuadClass": 4.0},
        {"EventCode": "010", "QuadClass": 2.0},
    ]
    assert [r["score"] for r in rows] == [0.1, 0.9, 0.3]
    assert json.loads(rows[1]["prediction"]) == {"probability": 0.9}
    assert {r["protocol"] for r in rows} == {"v2"}


def test_a_two_dimensional_tensor_keeps_each_row_as_a_list() -> None:
    payload = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}]}
    event = parse_event(headers("m", "request"), body(payload))
    assert event.rows == ({"x": [1, 2, 3]}, {"x": [4, 5, 6]})


def test_structured_mode_cloudevents_are_read_too() -> None:
    envelope = {
        "specversion": "1.0",
        "id": "s-1",
        "type": RESPONSE_TYPE,
        "source": "http://localhost:9081/",
        "inferenceservicename": "gdelt-tone",
        "data": V1_RESPONSE,
    }
    event = parse_event({"content-type": "application/cloudevents+json"}, body(envelope))
    assert (event.event_id, event.kind, event.rows) == ("s-1", "response", (0.12, 0.81))
    assert event.attributes == {"inferenceservicename": "gdelt-tone"}


@pytest.mark.parametrize(
    ("hdrs", "payload", "reason", "words"),
    [
        ({"Ce-Id": ""}, V1_REQUEST, "headers", "missing CloudEvents attribute(s) ce-id"),
        ({"Ce-Specversion": "0.3"}, V1_REQUEST, "headers", "unsupported ce-specversion '0.3'"),
        ({"Ce-Type": "dev.knative.example"}, V1_REQUEST, "type", "is not an inference log"),
        ({"Content-Type": "text/csv"}, V1_REQUEST, "content-type", "is not JSON"),
        ({}, b"{not json", "json", "the request body is not valid JSON"),
        ({}, [1, 2], "payload", "must be a JSON object, got list"),
        ({}, {"rows": []}, "payload", 'neither "instances" (V1) nor "inputs" (V2)'),
        ({}, {"instances": {"a": 1}}, "payload", 'V1 "instances" must be a list'),
        (
            {},
            {"inputs": [{"name": "x", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0]}]},
            "payload",
            "shape [3] needs 3 values, data has 2",
        ),
        (
            {},
            {
                "inputs": [
                    {"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                    {"name": "b", "shape": [3], "datatype": "FP64", "data": [1, 2, 3]},
                ]
            },
            "payload",
            "disagree on rows",
        ),
    ],
)
def test_malformed_events_are_refused_with_the_reason(
    hdrs: dict[str, str], payload: Any, reason: str, words: str
) -> None:
    raw = payload if isinstance(payload, bytes) else body(payload)
    with pytest.raises(MalformedEventError) as caught:
        parse_event(headers("bad-1", "request", **hdrs), raw)
    assert caught.value.reason == reason
    assert words in str(caught.value)


def test_a_malformed_event_is_answered_400_and_its_body_quarantined(store: Store) -> None:
    monitor = InferenceLogMonitor(store, clock=Clock())
    raw = b'{"instances": [1, 2'

    receipt = monitor.receive(headers("../../etc/bad id", "request"), raw)

    assert receipt.status == 400
    assert "not valid JSON" in receipt.message and "body kept at" in receipt.message
    kept = store.keys(QUARANTINE_PREFIX)
    assert len(kept) == 2 and all(k.startswith(f"{QUARANTINE_PREFIX}/date=20241022/130000-etcbadid-") for k in kept)
    record = store.get_json(next(k for k in kept if k.endswith(".json")))
    assert record["kind"] == "json" and "not valid JSON" in record["reason"]
    assert record["headers"]["ce-id"] == "../../etc/bad id" and record["bytes"] == len(raw)
    assert store.get_bytes(next(k for k in kept if k.endswith(".body"))) == raw
    assert 'driftpilot_monitor_events_rejected_total{reason="json"} 1' in monitor.metrics()
    assert store.keys("inference-log") == []


def test_a_response_that_does_not_match_its_request_is_quarantined_and_the_request_kept(store: Store) -> None:
    monitor = InferenceLogMonitor(store, clock=Clock())
    monitor.receive(headers("m-1", "request"), body(V1_REQUEST))
    receipt = monitor.receive(headers("m-1", "response"), body({"predictions": [0.5]}))
    assert receipt.status == 400 and "the request has 2 rows but the response 1" in receipt.message
    monitor.flush()
    rows = read_log(store)
    assert [(r["paired"], r["prediction"]) for r in rows] == [(False, None), (False, None)]
    assert len(store.keys(QUARANTINE_PREFIX)) == 2


def test_a_duplicate_event_is_answered_409(store: Store) -> None:
    monitor = InferenceLogMonitor(store, clock=Clock())
    assert monitor.receive(headers("d-1", "request"), body(V1_REQUEST)).status == 200
    assert monitor.receive(headers("d-1", "request"), body(V1_REQUEST)).status == 409
    assert 'events_rejected_total{reason="duplicate"} 1' in monitor.metrics()


def test_a_request_without_response_is_written_unpaired_after_the_timeout(store: Store) -> None:
    clock = Clock()
    monitor = InferenceLogMonitor(store, MonitorConfig(pair_timeout_seconds=30, flush_seconds=10), clock=clock)
    monitor.receive(headers("lonely", "request"), body(V1_REQUEST))
    clock.now += 29
    assert monitor.tick() == []
    clock.now += 1
    assert monitor.tick() == []  # expired into the buffer; the buffer is not old enough yet
    clock.now += 10
    written = monitor.tick()
    assert len(written) == 1
    rows = read_log(store)
    assert [(r["paired"], r["prediction"], r["score"]) for r in rows] == [(False, None, None)] * 2
    assert 'driftpilot_monitor_unpaired_total{type="request"} 1' in monitor.metrics()


def test_the_buffer_flushes_when_full_and_rows_of_two_days_go_to_two_partitions(store: Store) -> None:
    clock = Clock(T0 + 11 * 3600 - 0.5)  # 23:59:59.5
    monitor = InferenceLogMonitor(store, MonitorConfig(flush_rows=4), clock=clock)
    monitor.receive(headers("a", "request"), body(V1_REQUEST))
    monitor.receive(headers("a", "response"), body(V1_RESPONSE))
    assert monitor.tick() == []
    clock.now += 1
    monitor.receive(headers("b", "request"), body(V1_REQUEST))
    monitor.receive(headers("b", "response"), body(V1_RESPONSE))
    written = monitor.tick()
    assert sorted(k.split("/")[1] for k in written) == ["date=20241022", "date=20241023"]
    metrics = monitor.metrics()
    assert "driftpilot_monitor_rows_written_total 4" in metrics
    assert "driftpilot_monitor_files_written_total 2" in metrics
    assert 'driftpilot_monitor_events_received_total{type="request"} 2' in metrics


class FailingStore(Store):
    fail = True

    def put_bytes(self, key: str, data: bytes) -> str:
        if self.fail:
            raise OSError("lake unreachable")
        return super().put_bytes(key, data)


def test_a_failed_flush_keeps_the_rows_for_the_next_one(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path / "lake"))
    monitor = InferenceLogMonitor(store, MonitorConfig(max_buffered_rows=2), clock=Clock())
    monitor.receive(headers("f", "request"), body(V1_REQUEST))
    monitor.receive(headers("f", "response"), body(V1_RESPONSE))
    with pytest.raises(OSError, match="lake unreachable"):
        monitor.flush()
    assert "driftpilot_monitor_flush_errors_total 1" in monitor.metrics()
    assert "driftpilot_monitor_buffered_rows 2" in monitor.metrics()
    full = monitor.receive(headers("g", "request"), body(V1_REQUEST))
    assert full.status == 503 and "buffer full" in full.message
    store.fail = False
    assert len(monitor.flush()) == 1
    assert len(read_log(store)) == 2
    assert "driftpilot_monitor_rows_written_total 2" in monitor.metrics()


def test_metrics_are_prometheus_text_with_help_and_type_for_every_family(store: Store) -> None:
    text = InferenceLogMonitor(store, clock=Clock()).metrics()
    lines = text.splitlines()
    names = {line.split()[2] for line in lines if line.startswith("# TYPE")}
    assert len(names) == len({line.split()[2] for line in lines if line.startswith("# HELP")}) == 21
    samples = [line for line in lines if not line.startswith("#")]
    assert all(line.split("{")[0].split()[0] in names for line in samples)
    assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in samples)


def send_scores(monitor: InferenceLogMonitor, scores: list[float], prefix: str, **extra: str) -> None:
    """Paired V1 events of 20 instances each whose responses carry the given scores."""
    for start in range(0, len(scores), 20):
        chunk = scores[start : start + 20]
        event_id = f"{prefix}-{start // 20}"
        request = {"instances": [{"QuadClass": float(start + i)} for i in range(len(chunk))]}
        assert monitor.receive(headers(event_id, "request", **extra), body(request)).status == 200
        assert monitor.receive(headers(event_id, "response", **extra), body({"predictions": chunk})).status == 200


def test_a_shift_in_a_models_scores_raises_an_online_drift_alarm_in_metrics_and_the_lake(store: Store) -> None:
    clock = Clock()
    monitor = InferenceLogMonitor(store, clock=clock)
    rng = np.random.default_rng(7)
    before, after = rng.beta(2, 8, 1000).tolist(), rng.beta(8, 2, 1000).tolist()  # means 0.2, then 0.8
    send_scores(monitor, before, "stable")
    send_scores(monitor, rng.beta(2, 8, 1000).tolist(), "canary", **{"Ce-Endpoint": "canary"})
    assert store.keys(ALARM_PREFIX) == []
    clock.now += 60
    send_scores(monitor, after, "shifted")

    assert store.keys(ALARM_PREFIX) == []  # alarms are written by the timer, off the request path
    written = monitor.tick()

    alarms = store.keys(ALARM_PREFIX)
    assert len(alarms) == 1 and alarms[0] in written
    assert alarms[0].startswith(f"{ALARM_PREFIX}/date=20241022/130100-driftpilot_gdelt-tone-")
    first = store.get_json(alarms[0])
    assert (first["model"], first["endpoint"], first["detector"], first["signal"]) == (
        "driftpilot/gdelt-tone",
        "default",
        "adwin",
        "score",
    )
    # Measured: found at the 1,024th score, the change located at the 1,001st (the first shifted one).
    assert 1000 < first["observation"] <= 1100
    assert abs(first["change_observation"] - 1001) <= 5
    assert first["count_before"] + first["count_after"] == first["observation"]
    assert first["event_id"].startswith("shifted-") and first["detected_at"] == "2024-10-22T13:01:00+00:00"
    assert first["mean_before"] == pytest.approx(np.mean(before), abs=0.01)
    assert first["mean_after"] > 0.7
    assert first["config"] == {
        "settings": {"clock": 32, "delta": 0.002, "grace_period": 10, "max_buckets": 5, "min_window_length": 5},
        "warmup": 100,
    }
    metrics = monitor.metrics()
    series = '{model="driftpilot/gdelt-tone",kserve_endpoint="default",detector="adwin"}'
    canary = '{model="driftpilot/gdelt-tone",kserve_endpoint="canary",detector="adwin"}'
    assert f"driftpilot_monitor_online_drift_alarms_total{series} {len(alarms)}" in metrics
    assert f"driftpilot_monitor_online_drift_observations_total{series} 2000" in metrics
    assert f"driftpilot_monitor_online_drift_alarms_total{canary} 0" in metrics  # its scores did not move
    assert f"driftpilot_monitor_online_drift_mean_before_change{canary} NaN" in metrics
    gauges = {
        line.split("{")[0].removeprefix("driftpilot_monitor_online_drift_"): float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("driftpilot_monitor_online_drift_") and series in line
    }
    assert gauges["mean_before_change"] == pytest.approx(first["mean_before"])
    assert gauges["mean_after_change"] == pytest.approx(first["mean_after"])
    assert 0.75 < gauges["mean"] < 0.85  # the new regime's running mean
    assert gauges["last_change_timestamp_seconds"] == T0 + 60


def test_online_drift_settings_come_from_the_command_line_and_off_turns_it_off(store: Store) -> None:
    args = build_parser().parse_args(["--online-drift", "page-hinkley", "--ph-threshold", "5", "--ph-mode", "up"])
    assert online_drift_config(args) == OnlineDriftConfig(
        detector=PageHinkleySettings(threshold=5.0, mode="up"), signal="score", warmup=100
    )
    with pytest.raises(ConfigError, match="ADWIN delta must be in"):
        online_drift_config(build_parser().parse_args(["--adwin-delta", "1.5"]))
    off = online_drift_config(build_parser().parse_args(["--online-drift", "off"]))
    assert off is None

    monitor = InferenceLogMonitor(store, MonitorConfig(online_drift=off), clock=Clock())
    send_scores(monitor, [0.1] * 20, "a")
    assert "online_drift" not in monitor.metrics()


def test_scores_that_are_not_numbers_are_skipped_and_unknown_models_beyond_the_cap_unwatched(store: Store) -> None:
    monitor = InferenceLogMonitor(store, MonitorConfig(online_drift_max_models=1), clock=Clock())
    monitor.receive(headers("s-1", "request"), body(V1_REQUEST))
    monitor.receive(headers("s-1", "response"), body({"predictions": ["yes", None]}))
    send_scores(monitor, [0.5] * 20, "other", **{"Ce-Inferenceservicename": 'tone "v2"\\'})
    metrics = monitor.metrics()
    series = '{model="driftpilot/gdelt-tone",kserve_endpoint="default",detector="adwin"}'
    assert f"driftpilot_monitor_online_drift_skipped_total{series} 2" in metrics
    assert f"driftpilot_monitor_online_drift_observations_total{series} 0" in metrics
    assert "driftpilot_monitor_online_drift_unwatched_rows_total 20" in metrics
    assert "v2" not in metrics

    escaped = InferenceLogMonitor(store, clock=Clock())
    send_scores(escaped, [0.5] * 20, "other", **{"Ce-Inferenceservicename": 'tone "v2"\\'})
    assert 'model="driftpilot/tone \\"v2\\"\\\\"' in escaped.metrics()


def test_an_alarm_the_lake_refuses_is_counted_and_written_at_the_next_tick(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path / "lake"))
    config = MonitorConfig(online_drift=OnlineDriftConfig(warmup=0), flush_rows=10_000, flush_seconds=3600)
    monitor = InferenceLogMonitor(store, config, clock=Clock())
    send_scores(monitor, [0.1] * 500 + [0.9] * 500, "flip")

    assert monitor.tick() == []
    assert "driftpilot_monitor_online_drift_alarm_write_errors_total 1" in monitor.metrics()
    store.fail = False
    written = monitor.tick()

    assert written and all(k.startswith(f"{ALARM_PREFIX}/") for k in written)
    assert store.keys(ALARM_PREFIX) == sorted(written)
    assert store.get_json(written[0])["mean_before"] == pytest.approx(0.1)


@pytest.mark.integration  # a real server on 127.0.0.1
def test_the_server_answers_real_http_requests_and_flushes_on_stop(store: Store) -> None:
    monitor = InferenceLogMonitor(store)
    server = MonitorServer(monitor, host="127.0.0.1", port=0, tick_seconds=0.05, max_body_bytes=4096).start()
    try:
        with requests.Session() as http:  # one kept-alive connection, as KServe's logger does
            assert http.get(f"{server.url}/healthz", timeout=5).text == "ok\n"

            def send(event_id: str) -> None:
                for kind, payload in (("request", V2_REQUEST), ("response", V2_RESPONSE)):
                    answer = requests.post(server.url, data=body(payload), headers=headers(event_id, kind), timeout=5)
                    assert answer.status_code == 200, answer.text

            threads = [threading.Thread(target=send, args=(f"t-{i}",)) for i in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

            bad = http.post(server.url, data=b"[]", headers=headers("x", "request"), timeout=5)
            assert bad.status_code == 400 and "must be a JSON object" in bad.text
            huge = http.post(server.url, data=b"{" + b" " * 5000 + b"}", headers=headers("y", "request"), timeout=5)
            assert huge.status_code == 413
            assert huge.headers["Connection"] == "close"  # the unread body ends the connection; say so
            assert http.get(f"{server.url}/nothing", timeout=5).status_code == 404
            metrics = http.get(f"{server.url}/metrics", timeout=5)
            assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'driftpilot_monitor_events_received_total{type="request"} 8' in metrics.text
            assert 'driftpilot_monitor_events_rejected_total{reason="payload"} 1' in metrics.text
            assert 'driftpilot_monitor_events_rejected_total{reason="size"} 1' in metrics.text
            assert "driftpilot_monitor_pairs_total 8" in metrics.text
            requests.post(server.url, data=body(V1_REQUEST), headers=headers("left", "request"), timeout=5)
    finally:
        server.stop()
    rows = read_log(store)
    assert len(rows) == 8 * 3 + 2
    assert sorted({r["event_id"] for r in rows if r["paired"]}) == sorted(f"t-{i}" for i in range(8))
    assert {r["event_id"] for r in rows if not r["paired"]} == {"left"}
