"""Does a canary's share of the traffic bias the latency check? (a script, not a test)

The same model is served twice (an A/A test): version 1 as stable through the local splitter,
and again as the canary, while ``--hogs`` busy processes hold the CPUs and real rows arrive at
``--rate``. For each share in ``--shares`` (held ``--seconds``), the canary's paired latency
windows are collected as the canary analysis collects them (``LatencyWindows``), and their mean
difference (canary − stable, log seconds) is reported with its standard error. With no bias
every difference is near 0; the latency check's margin is ``log(latency_ratio)`` (0.223).

Usage: DRIFTPILOT_DATA_DIR=../shared/data python tests/bench/latency_share.py [--shares 10,50,90,10] [--seconds 60]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from canary_load import _canary  # noqa: E402

from components.common.task import load_task  # noqa: E402
from components.deploy._process import terminate  # noqa: E402
from components.deploy.canary import CanaryPolicy, LatencyWindows  # noqa: E402
from components.deploy.local import LocalRouter, serve_local, stop_serving  # noqa: E402
from components.deploy.splitter import Backend  # noqa: E402
from components.deploy.traffic import TrafficReplayer  # noqa: E402
from components.serve import payloads  # noqa: E402
from tests.soak import MODEL, TRAFFIC, batch_rows, register_versions  # noqa: E402


def _windows(router: LocalRouter, seconds: float) -> dict[str, float]:
    """The paired windows of ``seconds`` at the router's current share."""
    stable_0, canary_0 = router.stats()
    windows = LatencyWindows()
    policy = CanaryPolicy(warmup_requests=canary_0.latency.n)  # the first window opens at once
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        time.sleep(1.0)
        windows.observe(*router.stats(), policy)
    stable, canary = router.stats()
    d = windows.differences
    return {
        "windows": d.n,
        "difference": round(d.mean, 3),
        "standard_error": round(math.sqrt(d.variance / d.n), 3) if d.n > 1 else math.inf,
        "stable_ms": round(1000 * math.exp(stable.latency.minus(stable_0.latency).mean), 2),
        "canary_ms": round(1000 * math.exp(canary.latency.minus(canary_0.latency).mean), 2),
    }


def main() -> None:
    """Measure each share and print one JSON line per share."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shares", default="10,50,90,10", help="canary percentages, in order")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds at each share")
    parser.add_argument("--hogs", type=int, default=6, help="busy processes beside the serving path")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second of the traffic")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            tracking_uri = register_versions(work, data_dir, seeds=(1,))
            serving_dir = work / "serving"
            served, _ = serve_local(
                model_name=MODEL, model_uri=f"models:/{MODEL}/1", tracking_uri=tracking_uri, serving_dir=serving_dir
            )
            child, url = _canary(["-m", "components.serve"], tracking_uri, "1", work / "canary.log")
            router = LocalRouter(serving_dir, served.url, served.routes.stable, Backend("2", url))
            try:
                instances, labels = payloads.labelled_instances(batch_rows(data_dir, TRAFFIC), load_task(MODEL))
                with TrafficReplayer(served.url, MODEL, instances, labels, concurrency=4, rate_per_s=args.rate):
                    for share in (int(s) for s in args.shares.split(",")):
                        router.set_canary(share)
                        print(json.dumps({"share": share, **_windows(router, args.seconds)}), flush=True)
            finally:
                terminate(child.pid, "components.serve", 10)
                stop_serving(serving_dir)
    finally:
        for hog in hogs:
            hog.kill()


if __name__ == "__main__":
    main()
