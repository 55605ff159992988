"""Drift-check speed and memory against Evidently 0.7 (a script, not a test).

One synthetic table of ``--rows`` rows × 25 columns (20 numeric, 5 categorical with 30 classes;
3 numeric columns shifted by 0.3 standard deviations in the window), then, in the same run:

- reading the columns once (a sum over every column): the floor any check has to pay;
- driftpilot against a stored reference profile: load ``profile.json``, summarise the window,
  test and decide (what the loop does per batch; the profile is made when the model is trained);
- driftpilot including profiling the reference;
- Evidently's ``DataDriftPreset`` on ``--evidently-rows`` rows of the same tables (its time grows
  with rows; 0 skips it);
- with ``--dask-rows`` (e.g. 10000000): the window written as Parquet files of 1M rows (row
  groups of 250k) and summarised partition by partition (one per row group) on a local Dask
  client with two threads in a fresh process, with that process's peak RSS.

Each timing is the best of ``--repeat`` runs. Results go to ``tests/bench/out/drift.json``.

Usage: python tests/bench/drift.py [--rows 1000000] [--evidently-rows 1000000] [--dask-rows 0] [--repeat 3]
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.drift.core import DriftConfig, compare  # noqa: E402
from components.drift.profile import Profile, profile_frame, summarize_frame, summarize_partitions  # noqa: E402

NUMERIC = [f"num{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat{i}" for i in range(5)]
SHIFTED = NUMERIC[:3]
SHIFT_SD = 0.3
ROW_GROUP_ROWS = 250_000


def make_table(rows: int, *, shifted: bool, seed: int) -> pd.DataFrame:
    """A table with the benchmark's columns; in the window, ``SHIFTED`` move by ``SHIFT_SD``."""
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        values = rng.standard_normal(rows) if i % 2 else rng.gamma(2.0, 1.0, rows)
        data[name] = values + (SHIFT_SD * values.std() if shifted and name in SHIFTED else 0.0)
    classes = np.array([f"c{k:02d}" for k in range(30)])
    weights = np.geomspace(1.0, 0.05, len(classes))
    for name in CATEGORICAL:
        data[name] = pd.Categorical.from_codes(rng.choice(len(classes), rows, p=weights / weights.sum()), classes)
    return pd.DataFrame(data)


def best(function: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def read_once(frame: pd.DataFrame) -> float:
    """Touch every value once: the time floor of any check over these columns."""
    total = 0.0
    for name in NUMERIC:
        total += float(frame[name].to_numpy().sum())
    for name in CATEGORICAL:
        total += float(frame[name].cat.codes.to_numpy().sum())
    return total


def run_evidently(reference: pd.DataFrame, window: pd.DataFrame) -> list[str]:
    """Evidently's data drift preset; returns the columns it calls drifted."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(window, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        name = str(metric.get("metric_name", ""))
        value = metric.get("value")
        if name.startswith("ValueDrift(column=") and isinstance(value, float):
            column = name.split("column=")[1].split(",")[0].rstrip(")")
            threshold = 0.1 if "method=Wasserstein" in name or "Jensen" in name else 0.05
            is_distance = "Wasserstein" in name or "Jensen" in name or "PSI" in name
            if (value >= threshold) if is_distance else (value < threshold):
                drifted.append(column)
    return sorted(drifted)


def dask_window(rows: int, folder: Path) -> dict[str, Any]:
    """Summarise a ``rows``-row window of Parquet files on a local Dask client, in a fresh process.

    The files (1M rows each) and the reference profile are written first; a new interpreter then
    reads and checks the window, so its peak RSS is the check's alone.
    """
    import subprocess

    part_rows = 1_000_000
    reference = make_table(part_rows, shifted=False, seed=1)
    profile_frame(reference, numeric=NUMERIC, categorical=CATEGORICAL).save(folder / "profile.json")
    del reference
    (folder / "window").mkdir()
    for part in range((rows + part_rows - 1) // part_rows):
        make_table(min(part_rows, rows - part * part_rows), shifted=True, seed=100 + part).to_parquet(
            folder / "window" / f"part-{part:03d}.parquet", index=False, row_group_size=ROW_GROUP_ROWS
        )
    command = [sys.executable, __file__, "--measure-dask", str(folder)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def measure_dask(folder: Path) -> None:
    """Check the window in ``folder`` against its profile on a local Dask client; print JSON."""
    import dask.dataframe as dd
    from dask.distributed import Client

    profile = Profile.load(folder / "profile.json")
    started = time.perf_counter()
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        # One partition per row group: a worker thread holds ~40 MB of window at a time.
        frame = dd.read_parquet(str(folder / "window"), columns=[*NUMERIC, *CATEGORICAL], split_row_groups=True)
        summary = summarize_partitions(frame, profile)
        report = compare(profile, summary)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak),
                "drifted": report.drifted_features,
            }
        )
    )


def main() -> None:
    """Run the benchmark and print and save its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--evidently-rows", type=int, default=1_000_000)
    parser.add_argument("--dask-rows", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out")
    parser.add_argument("--measure-dask", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_dask:
        measure_dask(args.measure_dask)
        return

    reference = make_table(args.rows, shifted=False, seed=1)
    window = make_table(args.rows, shifted=True, seed=2)
    config = DriftConfig()
    results: dict[str, Any] = {"rows": args.rows, "columns": len(NUMERIC) + len(CATEGORICAL), "shifted": SHIFTED}

    results["read_columns_once_s"] = round(best(lambda: read_once(window), args.repeat)[0], 4)

    with tempfile.TemporaryDirectory() as tmp:
        stored = profile_frame(reference, numeric=NUMERIC, categorical=CATEGORICAL, bins=config.bins).save(
            Path(tmp) / "profile.json"
        )
        seconds, report = best(
            lambda: compare(Profile.load(stored), summarize_frame(window, Profile.load(stored))), args.repeat
        )
    results["driftpilot_stored_profile_s"] = round(seconds, 3)
    results["driftpilot_drifted"] = report.drifted_features

    def with_profiling() -> Any:
        profile = profile_frame(reference, numeric=NUMERIC, categorical=CATEGORICAL, bins=config.bins)
        return compare(profile, summarize_frame(window, profile), config)

    seconds, report = best(with_profiling, args.repeat)
    results["driftpilot_with_profiling_s"] = round(seconds, 3)
    print(json.dumps(results, indent=1), flush=True)

    if args.evidently_rows:
        n = min(args.evidently_rows, args.rows)
        seconds, drifted = best(lambda: run_evidently(reference[:n], window[:n]), 1)
        results["evidently_rows"] = n
        results["evidently_s"] = round(seconds, 2)
        results["evidently_drifted"] = drifted
        if n == args.rows:
            results["speedup_stored_profile"] = round(seconds / results["driftpilot_stored_profile_s"], 1)
            results["speedup_with_profiling"] = round(seconds / results["driftpilot_with_profiling_s"], 1)
    if args.dask_rows:
        del reference, window
        with tempfile.TemporaryDirectory() as tmp:
            results["dask"] = dask_window(args.dask_rows, Path(tmp))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "drift.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
