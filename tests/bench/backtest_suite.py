"""The backtest suite: every policy on real and synthetic streams, their time-shuffled copies, several batch sizes.

Streams: Elec2 (file order), the shared GDELT 2.0 exports (time order, cut into batches of rows),
the credit-card transactions (``Time`` order), River's synthetic generators (``--kinds``, each
with ``--seeds``), and a time-shuffled copy of each (no drift). Every stream runs at each
``--batch-sizes``. Writes ``kpis.json``, ``frontier.png`` and ``frontier-seconds.png`` under
``--out`` (one folder per batch size) and prints one row per stream: static, every_batch,
the best periodic schedule at no more retrains than driftpilot, driftpilot (metric, retrains,
training CPU-seconds), its shares of every_batch's gain, retrains and seconds, and UPF's area.

Run: ``.venv/bin/python tests/bench/backtest_suite.py --out /tmp/suite`` (about an hour on two
cores with the defaults; ``--quick`` is one seed, batch size 1,000, no card stream: ~15 minutes).
Synthetic streams are generated once into ``$DRIFTPILOT_CACHE/streams`` (River is slow).
"""

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pandas as pd

DATA = Path(os.environ.get("DRIFTPILOT_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
CACHE = Path(os.environ.get("DRIFTPILOT_CACHE", Path.home() / ".cache" / "driftpilot")) / "streams"


def _synthetic(kind: str, seed: int) -> pd.DataFrame:
    from components.backtest.streams import synthetic_frame

    path = CACHE / f"{kind}-{seed}.parquet"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        synthetic_frame(kind, seed=seed).to_parquet(path)
    return pd.read_parquet(path)


def _stream(name: str, batch_size: int) -> Any:
    from components.backtest.core import frame_stream, gdelt_stream
    from components.backtest.streams import LABEL, shuffled

    base, _, shuffle = name.partition(":")
    if base == "gdelt" and not shuffle:
        return gdelt_stream(DATA / "gdelt", batch_rows=batch_size)
    if base == "gdelt":
        stream = gdelt_stream(DATA / "gdelt", batch_rows=batch_size)
        frame = pd.concat([b.features for b in stream.batches], ignore_index=True)
        for column in stream.batches[0].features.columns:
            if isinstance(stream.batches[0].features[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype("category")
        frame[LABEL] = pd.concat([pd.Series(b.labels) for b in stream.batches], ignore_index=True)
        target, time_column = LABEL, None
    elif base == "elec2":
        frame, target, time_column = pd.read_csv(DATA / "streams" / "elec2.csv"), "class", None
    elif base == "card":
        frame = pd.read_csv(next((DATA / "creditcard").glob("*.csv")), index_col=0)
        target, time_column = "Class", "Time"
    else:
        kind, seed = base.rsplit("-", 1)
        frame, target, time_column = _synthetic(kind, int(seed)), LABEL, None
    if shuffle:
        frame = shuffled(frame.sort_values(time_column) if time_column else frame, seed=0)
        time_column = None
    return frame_stream(frame, target=target, time_column=time_column, batch_size=batch_size, source=name)


def _run(job: tuple[str, int]) -> dict[str, Any]:
    from components.backtest.core import BacktestConfig, kpis, run_backtest

    name, batch_size = job
    stream = _stream(name, batch_size)
    return {"kpis": kpis(stream, run_backtest(stream, BacktestConfig())), "name": name}


def _row(name: str, document: dict[str, Any]) -> str:
    policies = document["policies"]
    ours, every, static = policies["driftpilot"], policies["every_batch"], policies["static"]
    fewer = [p for n, p in policies.items() if n.startswith("periodic_") and p["retrains"] <= ours["retrains"]]
    best = max(fewer, key=lambda p: p["mean_batch_metric"]) if fewer else None
    area = document["upf_area"]
    best_area = max(v for n, v in area.items() if n.startswith("periodic_"))
    cells = [
        f"{name:18}",
        document["metric"][:3],
        f"{static['mean_batch_metric']:.3f}",
        f"{every['mean_batch_metric']:.3f} ({every['retrains']}, {every['train_seconds']:.0f}s)",
        f"{best['mean_batch_metric']:.3f} ({best['retrains']})" if best else "-",
        f"{ours['mean_batch_metric']:.3f} ({ours['retrains']}, {ours['train_seconds']:.0f}s)",
        f"{document['driftpilot_share_of_gain']:.2f}",
        f"{document['driftpilot_share_of_retrains']:.0%}",
        f"{document['driftpilot_share_of_seconds']:.0%}",
        f"{area['driftpilot']:.4f} vs {best_area:.4f}",
        ",".join(document["driftpilot_beaten_by"]) or "-",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    """Run the suite and print its table."""
    from components.backtest.core import write_report
    from components.backtest.streams import SYNTHETIC_KINDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1000, 500, 2000])
    parser.add_argument("--kinds", nargs="+", default=list(SYNTHETIC_KINDS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="one seed, batch size 1,000, no card stream")
    args = parser.parse_args()
    seeds, sizes = ([1], [1000]) if args.quick else (args.seeds, args.batch_sizes)
    real = ["elec2", "gdelt"] + ([] if args.quick else ["card"])
    names = real + [f"{kind}-{seed}" for kind in args.kinds for seed in seeds]
    names += [f"{name}:shuffled" for name in names]
    header = (
        "stream | metric | static | every_batch (retrains, s) | best periodic ≤ ours | driftpilot | gain | "
        "retrains | seconds | UPF area (ours vs best periodic) | beaten by"
    )
    for size in sizes:
        # The card stream (1,722 rows) is cut into batches of a tenth of the size asked.
        jobs = [(n, max(size // 10, 50) if n.startswith("card") else size) for n in names]
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(_run, jobs))
        write_report([r["kpis"] for r in results], args.out / f"batch-{size}")
        print(f"\nbatch size {size}\n\n| {header} |\n|{'---|' * (header.count('|') + 1)}")
        for result in results:
            print(_row(result["name"], result["kpis"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
