"""Canary decisions on a busy machine (a script, not a test).

Two versions of a LightGBM model trained on real GDELT batches (other seeds: both healthy) are
registered in MLflow on SQLite; version 1 is served through the local splitter with live traffic
of real rows and delayed labels the whole time, while ``--hogs`` busy processes hold the CPUs.
Version 2 is then released ``--trials`` times as a healthy canary (the real model server) and
``--trials`` times as a canary 2x slower (``_slow_server.py``: the same server, each answer held
back as long as it took), alternating, each under the default ``CanaryPolicy`` (or ``--steps`` /
``--min-requests``). The canary's outcome is recorded and the stable version kept serving.
``--canary-model 1`` serves stable's own model as the canary (an A/A test of the latency check).

Reported: the healthy canaries promoted and the slow ones rolled back, each with its exact
(Clopper-Pearson) 95% interval, the reasons of the wrong decisions, the latency differences the
analysis saw, and seconds per release. Results go to ``tests/bench/out/canary_load.json``.

Usage: DRIFTPILOT_DATA_DIR=../shared/data python tests/bench/canary_load.py [--trials 50] [--hogs 6] [--rate 60]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from scipy.stats import binomtest  # noqa: E402

from components.common.task import load_task  # noqa: E402
from components.deploy._process import free_port, spawn, terminate, wait_ready  # noqa: E402
from components.deploy.canary import CanaryPolicy  # noqa: E402
from components.deploy.controller import run_canary  # noqa: E402
from components.deploy.local import LocalRouter, LocalServing, serve_local, stop_serving  # noqa: E402
from components.deploy.splitter import Backend  # noqa: E402
from components.deploy.traffic import TrafficReplayer  # noqa: E402
from components.serve import payloads  # noqa: E402
from tests.soak import MODEL, TRAFFIC, batch_rows, is_up, register_versions  # noqa: E402

SLOW_SERVER = Path(__file__).with_name("_slow_server.py")


class _Trial(LocalRouter):
    """The splitter's routes for one trial: whatever the canary's outcome, version 1 keeps serving."""

    def promote(self) -> None:
        LocalRouter.roll_back(self)


def _canary(script: list[str], tracking_uri: str, version: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, *script, "--model_name", MODEL, "--model_uri", f"models:/{MODEL}/{version}",
        "--tracking_uri", tracking_uri, "--http_port", str(port), "--enable_grpc", "false",
    ]  # fmt: skip
    child = spawn(command, log)
    ready = f"{url}/v2/models/{MODEL}/ready"
    what = f"canary at {url}"
    wait_ready(child, lambda: is_up(ready), what=what, module=script[-1], log_path=log, timeout_s=180, grace_s=10)
    return child, url


def _release(
    served: LocalServing,
    script: list[str],
    tracking_uri: str,
    version: str,
    policy: CanaryPolicy,
    work: Path,
    trial: int,
) -> dict[str, Any]:
    """One canary run by ``script`` on the model of ``version`` beside version 1, to its outcome."""
    child, url = _canary(script, tracking_uri, version, work / f"canary-{trial}.log")
    started = time.monotonic()
    try:
        outcome = run_canary(_Trial(work / "serving", served.url, served.routes.stable, Backend("2", url)), policy)
    finally:
        terminate(child.pid, script[-1], 10)
    latency = {c.name: c for c in outcome.verdict.checks}["latency"]
    return {
        "promoted": outcome.promoted,
        "reason": outcome.verdict.reason,
        "latency_difference": round(latency.difference, 3),
        "latency_status": latency.status,
        "latency_windows": latency.samples[1],
        "seconds": round(time.monotonic() - started, 1),
    }


def _interval(successes: int, trials: int) -> list[float]:
    if trials == 0:
        return [0.0, 1.0]
    ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    return [round(ci.low, 3), round(ci.high, 3)]


def main() -> None:
    """Release the canaries and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="releases of each kind (healthy, 2x slower)")
    parser.add_argument("--hogs", type=int, default=6, help="busy processes beside the serving path")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second of the traffic")
    parser.add_argument("--steps", default="", help="canary steps, e.g. 10,25,50 (default: the policy's)")
    parser.add_argument("--min-requests", type=int, default=0, help="canary requests per step (0: the policy's)")
    parser.add_argument(
        "--canary-model", default="2", help="registered version the canary serves (1: stable's own model, an A/A test)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out" / "canary_load.json")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    policy = CanaryPolicy()
    if args.steps or args.min_requests:
        policy = CanaryPolicy(
            steps=tuple(int(s) for s in args.steps.split(",")) if args.steps else policy.steps,
            min_requests=args.min_requests or policy.min_requests,
        )
    kinds = {"healthy": ["-m", "components.serve"], "slow": [str(SLOW_SERVER)]}
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            tracking_uri = register_versions(work, data_dir)
            serving_dir = work / "serving"
            served, _ = serve_local(
                model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri, serving_dir=serving_dir
            )
            try:
                instances, labels = payloads.labelled_instances(batch_rows(data_dir, TRAFFIC), load_task(MODEL))
                with TrafficReplayer(served.url, MODEL, instances, labels, concurrency=4, rate_per_s=args.rate) as rp:
                    for trial in range(2 * args.trials):
                        kind = "healthy" if trial % 2 == 0 else "slow"
                        results[kind].append(
                            _release(served, kinds[kind], tracking_uri, args.canary_model, policy, work, trial)
                        )
                        print(f"{trial + 1:3d} {kind:7} {results[kind][-1]}", flush=True)
                    counts = rp.stop()
            finally:
                stop_serving(serving_dir)
    finally:
        for hog in hogs:
            hog.kill()
    healthy = sum(r["promoted"] for r in results["healthy"])
    slow = sum(not r["promoted"] for r in results["slow"])
    report = {
        "policy": {"steps": policy.steps, "min_requests": policy.min_requests, "latency_ratio": policy.latency_ratio},
        "hogs": args.hogs,
        "canary_model": args.canary_model,
        "rate_per_s": args.rate,
        "healthy_promoted": [healthy, len(results["healthy"])],
        "healthy_promoted_interval": _interval(healthy, len(results["healthy"])),
        "slow_rolled_back": [slow, len(results["slow"])],
        "slow_rolled_back_interval": _interval(slow, len(results["slow"])),
        "wrong_decisions": [r["reason"] for kind, good in (("healthy", True), ("slow", False))
                            for r in results[kind] if r["promoted"] != good],
        "latency_difference_median": {k: statistics.median(r["latency_difference"] for r in v) for k, v in
                                      results.items() if v},
        "seconds_per_release_median": statistics.median(r["seconds"] for v in results.values() for r in v),
        "requests_sent": counts.sent,
        "requests_failed": counts.failed,
        "trials": results,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    summary = {k: v for k, v in report.items() if k != "trials"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
