"""A soak of the serving path (a script, not a test): ``tests/soak.py`` for ``--seconds``.

Reports requests, errors, each process' RSS growth (median of the last fifth of the samples minus
the second fifth's), the inference-log events sent, dropped and failed, the loggers' largest queue
and the events the monitor took. Results go to ``tests/bench/out/soak.json``.

Usage: DRIFTPILOT_DATA_DIR=../shared/data python tests/bench/soak.py [--seconds 600] [--rate 100] [--concurrency 4]
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.soak import register_versions, run_soak  # noqa: E402


def main() -> None:
    """Soak and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second over all clients")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out" / "soak.json")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tracking_uri = register_versions(work, data_dir)
        report = run_soak(
            work, data_dir, tracking_uri, seconds=args.seconds, concurrency=args.concurrency, rate_per_s=args.rate,
            sample_s=5.0,
        )  # fmt: skip
    summary = {"rate_per_s": args.rate, "concurrency": args.concurrency, **report.to_dict()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**summary, "rss_mb": report.rss_mb}, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
