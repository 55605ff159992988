"""A soak of the local serving path, shared by ``tests/integration/test_soak.py`` (30 s) and ``tests/bench/soak.py``.

Two registered versions of a model trained on real GDELT batches are served the way ``driftpilot``
serves them on one machine: the splitter in front, version 1 stable and version 2 a canary at half
the traffic, both posting every request and response to a real drift monitor. Clients replay real
rows at a bounded rate and concurrency for the soak's length while the processes' resident memory
is sampled; at the end the servers' own counters say what was answered, logged, dropped and queued.
"""

import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from prometheus_client.parser import text_string_to_metric_families

from components.common.storage import write_table
from components.common.task import load_task
from components.deploy._process import free_port, spawn, terminate, wait_ready
from components.deploy.core import deploy_local, read_deployment, stop_local
from components.deploy.local import LocalRouter, serve_local, stop_serving
from components.deploy.splitter import Backend
from components.deploy.traffic import TrafficReplayer
from components.ingest.core import read_export
from components.register.core import Lineage, register_model
from components.serve import payloads
from components.train.core import TrainConfig, train_files
from components.validate.core import validate_events

MODEL = "gdelt-tone"
TRAIN = ("20241022130000", "20241022131500")
TRAFFIC = "20241022150000"
MONITOR_MODULE = "components.monitor"


def batch_rows(data_dir: Path, batch: str) -> pd.DataFrame:
    """One real export's validated rows."""
    table = read_export(data_dir / "gdelt" / f"{batch}.export.CSV").table
    assert table is not None, batch
    return validate_events(table.to_pandas()).valid


def register_versions(work: Path, data_dir: Path, seeds: tuple[int, ...] = (1, 2)) -> str:
    """Versions 1, 2, ... of ``MODEL``: one per seed, trained on the same real batches; the tracking URI."""
    table = write_table(pd.concat([batch_rows(data_dir, b) for b in TRAIN], ignore_index=True), work / "train.parquet")
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    for seed in seeds:
        train_files([table], MODEL, work / f"model-{seed}", TrainConfig(num_threads=1, seed=seed))
        register_model(
            tracking_uri=tracking_uri, artifact_root=str(work / "artifacts"), experiment="serving-load",
            model_name=MODEL, model_dir=work / f"model-{seed}", training_data=[table],
            lineage=Lineage(source_batches=TRAIN, kfp_run=f"serving-load-{seed}"),
        )  # fmt: skip
    return tracking_uri


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def metric(url: str, name: str, *, required: bool = False, **labels: str) -> float:
    """The sum of a server's ``/metrics`` samples called ``name`` whose labels include ``labels``.

    Raises:
        KeyError: With ``required``, when the server has no such sample (else the sum is 0).
    """
    text = requests.get(f"{url}/metrics", timeout=10).text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    if required and not values:
        raise KeyError(f"{url}/metrics has no {name} {labels or ''}")
    return sum(values)


@contextmanager
def monitor_process(port: int, lake: Path, log: Path) -> Iterator[str]:
    """The drift monitor as it is deployed (``python -m components.monitor``) on ``port``; yields its URL."""
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", MONITOR_MODULE, "--host", "127.0.0.1", "--port", str(port), "--lake", str(lake)]
    child = spawn(command, log)
    wait_ready(
        child, lambda: is_up(f"{url}/healthz"), what="the drift monitor", module=MONITOR_MODULE, log_path=log,
        timeout_s=120, grace_s=10,
    )  # fmt: skip
    try:
        yield url
    finally:
        terminate(child.pid, MONITOR_MODULE, 10)


def is_up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _logged(url: str) -> dict[str, float]:
    return {o: metric(url, "driftpilot_log_events_total", outcome=o) for o in ("sent", "dropped", "failed")}


def _drained(urls: dict[str, str], timeout_s: float = 120.0) -> None:
    """Wait until the servers' loggers have settled every event (their counts stop moving for 2 s)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        now = [_logged(u) for u in urls.values()]
        if now == last:
            return
        last = now
        time.sleep(2)


@dataclass
class SoakReport:
    """What a soak measured.

    Attributes:
        seconds: How long the traffic ran.
        sent: Requests the clients sent.
        failed: Requests that got no 200.
        variants: Per version: requests and errors the splitter counted.
        rss_mb: Per process (``splitter``, ``v1``, ``v2``): RSS samples, first to last.
        log_events: Per version: inference-log events ``sent``, ``dropped`` and ``failed``.
        queue_max: Per version: most events the logger's queue held at a sample.
        monitor_received: Events the monitor took.
    """

    seconds: float
    sent: int
    failed: int
    variants: dict[str, dict[str, int]]
    rss_mb: dict[str, list[float]]
    log_events: dict[str, dict[str, float]]
    queue_max: dict[str, float]
    monitor_received: float

    def rss_growth_mb(self, name: str) -> float:
        """Growth of a process' RSS: the median of the last fifth of samples minus that of the second fifth."""
        samples = self.rss_mb[name]
        fifth = max(len(samples) // 5, 1)
        return statistics.median(samples[-fifth:]) - statistics.median(samples[fifth : 2 * fifth] or samples[:1])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "seconds": round(self.seconds, 1),
            "sent": self.sent,
            "failed": self.failed,
            "variants": self.variants,
            "rss_mb_first_last": {k: [round(v[0], 1), round(v[-1], 1)] for k, v in self.rss_mb.items()},
            "rss_growth_mb": {k: round(self.rss_growth_mb(k), 1) for k in self.rss_mb},
            "log_events": self.log_events,
            "queue_max": self.queue_max,
            "monitor_received": self.monitor_received,
        }


def run_soak(
    work: Path,
    data_dir: Path,
    tracking_uri: str,
    *,
    seconds: float,
    concurrency: int = 4,
    rate_per_s: float = 100.0,
    sample_s: float = 2.0,
) -> SoakReport:
    """Serve versions 1 and 2 behind the splitter with a monitor and load them for ``seconds``."""
    serving_dir = work / "serving"
    with monitor_process(free_port(), work / "lake", work / "monitor.log") as monitor_url:
        try:
            served, _ = serve_local(
                model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri,
                serving_dir=serving_dir, logger_url=monitor_url,
            )  # fmt: skip
            canary = deploy_local(
                model_name=MODEL, model_uri=f"models:/{MODEL}/2", tracking_uri=tracking_uri,
                state_dir=work / "canary", logger_url=monitor_url,
            )  # fmt: skip
            stable = read_deployment(serving_dir / "v1")
            assert stable is not None
            router = LocalRouter(serving_dir, served.url, served.routes.stable, Backend("2", canary.url))
            router.set_canary(50)
            pids = {"splitter": served.splitter_pid, "v1": stable.pid, "v2": canary.pid}
            urls = {"v1": stable.url, "v2": canary.url}
            instances, labels = payloads.labelled_instances(batch_rows(data_dir, TRAFFIC), load_task(MODEL))
            rss: dict[str, list[float]] = {name: [] for name in pids}
            queue_max = dict.fromkeys(urls, 0.0)
            started = time.monotonic()
            with TrafficReplayer(
                served.url, MODEL, instances, labels, concurrency=concurrency, rate_per_s=rate_per_s, label_delay_s=1
            ) as replay:
                while time.monotonic() - started < seconds:
                    time.sleep(sample_s)
                    for name, pid in pids.items():
                        rss[name].append(rss_mb(pid))
                    for name, url in urls.items():
                        queue_max[name] = max(queue_max[name], metric(url, "driftpilot_log_queue", required=True))
                counts = replay.stop()
            elapsed = time.monotonic() - started
            _drained(urls)
            return SoakReport(
                seconds=elapsed,
                sent=counts.sent,
                failed=counts.failed,
                variants={v.version: {"requests": v.requests, "errors": v.errors} for v in router.stats()},
                rss_mb=rss,
                log_events={name: _logged(url) for name, url in urls.items()},
                queue_max=queue_max,
                monitor_received=metric(monitor_url, "driftpilot_monitor_events_received_total"),
            )
        finally:
            stop_local(work / "canary")
            stop_serving(serving_dir)
