"""The embedded demo: train on the earliest real GDELT batches, replay the rest through the loop.

Everything runs on this machine: kfp.local runs the pipelines, MLflow keeps its registry in
SQLite, and a local KServe model server serves the champion. All outputs live under one folder.
"""

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

import pandas as pd
import requests

from components.common.errors import ConfigError
from pipelines.settings import Settings

__all__ = ["DemoOptions", "run_demo"]


@dataclass(frozen=True)
class DemoOptions:
    """What the demo replays.

    Attributes:
        train_batches: How many of the earliest batches the first champion is trained on.
        max_replay: Replay at most this many of the later batches (0: all). Ten keep the demo
            within ten minutes from a fresh clone on two cores; each replay takes about 20 s.
        keep_serving: Leave the model server running at the end.
        drill: End with the release drill (``pipelines.drill``): a healthy and a faulty
            challenger through the gate and a live canary.
    """

    train_batches: int = 10
    max_replay: int = 10
    keep_serving: bool = False
    drill: bool = True


_DEMO_CANARY = {"steps": [50], "min_requests": 100, "step_timeout_s": 120, "interval_s": 0.5}


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _serving_version(settings: Settings) -> str:
    from components.register.core import find_alias

    champion = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
    return champion.version if champion else "-"


def _request_rows(batch_id: str, settings: Settings, n: int) -> pd.DataFrame:
    """Real rows of a batch from the lake, as a client would send them (the model's input columns)."""
    from components.common.store import Store
    from components.common.task import load_task
    from components.features.core import input_columns
    from components.ingest.core import read_batch

    task = load_task(settings.task)
    columns = list(input_columns(task))
    rows = read_batch(Store(settings.lake), batch_id, columns=columns).to_pandas().head(n)
    for column in columns:
        if column in task.categorical:
            rows[column] = rows[column].astype("string").fillna("").astype(str)
        else:
            rows[column] = pd.to_numeric(rows[column]).astype("float64")
    return rows


def _query_server(url: str, model: str, rows: pd.DataFrame, out: TextIO) -> None:
    """Send the same rows through V1 and V2 and print the answers and latencies."""
    instances = json.loads(rows.to_json(orient="records"))
    started = time.perf_counter()
    v1 = requests.post(f"{url}/v1/models/{model}:predict", json={"instances": instances}, timeout=30)
    v1_ms = (time.perf_counter() - started) * 1000
    v1.raise_for_status()
    inputs = []
    for column in rows.columns:
        is_text = rows[column].dtype == object
        inputs.append(
            {
                "name": column,
                "shape": [len(rows)],
                "datatype": "BYTES" if is_text else "FP64",
                "data": rows[column].tolist(),
            }
        )
    started = time.perf_counter()
    v2 = requests.post(f"{url}/v2/models/{model}/infer", json={"inputs": inputs}, timeout=30)
    v2_ms = (time.perf_counter() - started) * 1000
    v2.raise_for_status()
    v1_p = v1.json()["predictions"]
    v2_p = v2.json()["outputs"][0]["data"]
    _say(out, f"V1 {url}/v1/models/{model}:predict  {len(rows)} rows in {v1_ms:.1f} ms")
    _say(out, f"   P(AvgTone < -5) = {[round(p, 3) for p in v1_p]}")
    _say(out, f"V2 {url}/v2/models/{model}/infer     {len(rows)} rows in {v2_ms:.1f} ms")
    _say(out, f"   P(AvgTone < -5) = {[round(p, 3) for p in v2_p]}")


def run_demo(
    settings: Settings, options: DemoOptions = DemoOptions(), out: TextIO = sys.stdout
) -> list[dict[str, Any]]:
    """Run the demo; return one record per replayed batch.

    Args:
        settings: Where state goes (the demo starts ``settings.home`` afresh) and what it reads.
        options: How many batches to train on and replay.
        out: Where progress and results are printed.

    Returns:
        The replayed batches' outcomes (batch, rows, drift, AUCs, action, reason, serving version).

    Raises:
        ConfigError: When there are not enough batches to train on and replay.
    """
    from components.deploy.local import read_serving, stop_serving
    from components.ingest.core import HttpSource
    from components.ingest.mirror import GdeltMirror
    from pipelines.local import init_local

    if "DRIFTPILOT_CANARY_POLICY" not in os.environ:
        # The demo's clients send 20 requests/s: one step at half the traffic judges a release in ~10 s.
        settings = replace(settings, canary_policy=json.dumps(_DEMO_CANARY))
    if settings.home.exists():
        stop_serving(settings.serving_dir)
        shutil.rmtree(settings.home)
    settings.home.mkdir(parents=True)
    init_local(settings.pipeline_root)
    began = time.perf_counter()
    _say(out, f"driftpilot demo: outputs in {settings.home}")
    with GdeltMirror(settings.data_dir) as mirror:
        batches = [f.batch_id for f in HttpSource(mirror.url).list()]
        if len(batches) <= options.train_batches:
            raise ConfigError(f"{len(batches)} batches in {settings.data_dir}: need more than {options.train_batches}")
        train, replay = batches[: options.train_batches], batches[options.train_batches :]
        later = len(replay)
        replay = replay[: options.max_replay] if options.max_replay else replay
        _say(out, f"GDELT feed mirrored at {mirror.url} ({len(batches)} real 15-minute exports)")
        if len(replay) < later:
            _say(out, f"replaying {len(replay)} of the {later} later batches (--max-replay 0 replays all)")
        records = _replay(settings, mirror.url, train, replay, out, began)
    summary: dict[str, Any] = {"replay": records}
    if options.drill:
        from pipelines.drill import run_release_drill

        _say(out, "release drill: two challengers through the gate and a live canary (real rows, delayed labels)")
        summary["drill"] = run_release_drill(settings, train, replay, out)
    (settings.home / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    served = read_serving(settings.serving_dir)
    if served is None:
        raise ConfigError(f"nothing is served from {settings.serving_dir}")
    _say(out, f"serving {settings.model_name} v{served.routes.stable.version} at {served.url} (traffic splitter)")
    _query_server(served.url, settings.model_name, _request_rows(replay[-1], settings, 5), out)
    if not options.keep_serving:
        stop_serving(settings.serving_dir)
        _say(out, "model servers stopped (use --keep-serving to leave them running)")
    ledger, approvals = settings.decisions.ledger, settings.decisions.approvals().pending()
    check = ledger.verify()
    _say(
        out,
        f"audit ledger {ledger.path}: {check.entries} entries, chain {'intact' if check.ok else 'BROKEN'}; "
        f"{len(approvals)} escalation(s) waiting (driftpilot approvals); an incident's story: "
        f"DRIFTPILOT_HOME={settings.home} driftpilot audit show {records[-1]['incident']}",
    )
    actions = pd.Series([r["action"] for r in records]).value_counts().to_dict()
    _say(
        out,
        f"done in {time.perf_counter() - began:.0f}s: actions {actions}; summary {settings.home / 'demo-summary.json'}",
    )
    _say(
        out,
        f"the demo's incidents and approvals: DRIFTPILOT_HOME={settings.home} driftpilot ui, then "
        f"http://127.0.0.1:8090/incidents/{records[-1]['incident']}",
    )
    return records


def _replay(
    settings: Settings, source: str, train: list[str], replay: list[str], out: TextIO, began: float
) -> list[dict[str, Any]]:
    """Train the first champion, then run the drift response on each later batch in time order."""
    from pipelines.local import run_pipeline
    from pipelines.training import training_pipeline

    arguments = {**settings.pipeline_arguments(), "source": source}
    _say(out, f"training the first champion on {len(train)} batches ({train[0]}..{train[-1]}) ...")
    run_pipeline(
        training_pipeline,
        {**arguments, "since": train[0], "until": train[-1]},
        log_path=settings.logs_dir / "training.log",
    )
    champion = _serving_version(settings)
    _say(out, f"champion v{champion} trained, registered and served ({time.perf_counter() - began:.0f}s)")
    _say(out, f"replaying {len(replay)} batches through drift_response_pipeline (logs: {settings.logs_dir})")
    _say(out, f"{'batch':14}  {'rows':>5}  {'AUC':>5} {'base':>5}  {'kind':12} {'action':21} serving  drift | reason")
    records = []
    with _live_traffic(settings, train[-1]):  # clients, so that a release's canary has traffic to judge
        for index, batch in enumerate(replay, start=1):
            records.append(_replay_batch(settings, source, batch, f"{index}/{len(replay)}", out))
    return records


def _live_traffic(settings: Settings, batch: str) -> Any:
    """Clients sending a batch's real rows to the serving URL at 20 requests/s, labels following."""
    from components.common.store import Store
    from components.common.task import load_task
    from components.deploy.local import read_serving
    from components.deploy.traffic import TrafficReplayer
    from components.ingest.core import read_batch
    from components.serve import payloads

    task = load_task(settings.task)
    rows = read_batch(Store(settings.lake), batch).to_pandas()
    served = read_serving(settings.serving_dir)
    if served is None:
        raise ConfigError(f"nothing is served from {settings.serving_dir}")
    instances, labels = payloads.labelled_instances(rows, task)
    return TrafficReplayer(served.url, settings.model_name, instances, labels, concurrency=1, rate_per_s=20)


def _release_said(settings: Settings, before: str) -> str:
    """What became of the run's challenger: rejected by the gate, rolled back by its canary, or promoted."""
    from components.register.core import CHALLENGER, find_alias, lineage_of

    challenger = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name, alias=CHALLENGER)
    if challenger is None:
        return ""
    lineage = lineage_of(tracking_uri=settings.tracking_uri, model_name=settings.model_name, version=challenger.version)
    if lineage["gate"] != "promote":
        return f" → challenger v{challenger.version} rejected by gate"
    if lineage["canary"] == "rolled_back":
        return f" → challenger v{challenger.version} rolled back by its canary: {lineage['canary_reason']}"
    return f" → promoted v{challenger.version}" if challenger.version != before else ""


def _replay_batch(settings: Settings, source: str, batch: str, position: str, out: TextIO) -> dict[str, Any]:
    """One drift-response run; its line printed and its record returned."""
    from pipelines.drift_response import drift_response_pipeline
    from pipelines.local import run_pipeline

    champion = _serving_version(settings)
    step = time.perf_counter()
    result = run_pipeline(
        drift_response_pipeline,
        {**settings.drift_response_arguments(), "source": source, "batch_id": batch},
        log_path=settings.logs_dir / f"drift-response-{batch}.log",
    )
    serving = _serving_version(settings)
    candidate = result["action"] in ("update", "retrain", "retrain_tune", "recalibrate")
    outcome = _release_said(settings, champion) if candidate else ""
    record = {**result, "serving": serving, "seconds": round(time.perf_counter() - step, 1)}
    _say(
        out,
        f"{result['batch_id']:14}  {result['rows']:>5}  {result['batch_auc']:.3f} {result['baseline_auc']:.3f}  "
        f"{result['kind']:12} {result['action'] + ' (' + result['tier'] + ')':21} v{serving:<6}  "
        f"{result['drift']} | {result['reason']}{outcome}"
        f"  [{position}, {record['seconds']}s]",
    )
    return record
