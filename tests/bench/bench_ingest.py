"""Ingestion throughput on a synthetic GDELT feed built from the real rows (a script, not a test).

Builds a feed of 15-minute export files (plain, as GDELT's exports are once unzipped) from the
real rows in ``../shared/data/gdelt``: each synthetic batch takes real rows, with fresh
GLOBALEVENTIDs and the batch's DATEADDED. Then, in the same run and on the same files, it times:

- driftpilot's ingestion (fetch + md5, keep raw, parse and type, write Parquet, manifest) on a
  Dask LocalCluster with 1 and with 2 workers (one core each);
- pyarrow's CSV reader and polars' CSV reader, reading the same files into the same column types
  (all cores, no Parquet, no checks, no bookkeeping): the parsing speed of the engines alone.

MB/s are uncompressed input megabytes (1e6 bytes) per wall-clock second.

``--days N`` times a synthetic feed from ``components.synth.feed`` instead: N days of 15-minute
batches whose rows a Gaussian copula fitted to the real exports draws (every field new).

Usage: python tests/bench/bench_ingest.py [--gb 1.0 | --days N [--rows 1500]] [--file-mb 8] [--out DIR] [--keep]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def build_feed(data_dir: Path, folder: Path, total_bytes: int, file_bytes: int) -> list[Path]:
    """Write synthetic 15-minute batches of real rows until ``total_bytes`` are written."""
    from datetime import datetime, timedelta

    lines = []
    for path in sorted((data_dir / "gdelt").glob("[0-9]" * 14 + ".export.CSV")):
        lines += path.read_bytes().rstrip(b"\n").split(b"\n")
    parts = [line.split(b"\t") for line in lines]
    middles = [b"\t".join(p[1:59]) for p in parts]
    urls = [p[60] for p in parts]
    folder.mkdir(parents=True, exist_ok=True)
    written, paths, event_id, row = 0, [], 1_300_000_000, 0
    stamp = datetime(2025, 1, 1)
    while written < total_bytes:
        added = stamp.strftime("%Y%m%d%H%M%S").encode()
        chunk, size = [], 0
        while size < file_bytes:
            i = row % len(parts)
            line = b"%d\t%s\t%s\t%s" % (event_id, middles[i], added, urls[i])
            chunk.append(line)
            size += len(line) + 1
            event_id += 1
            row += 1
        path = folder / f"{added.decode()}.export.CSV"
        path.write_bytes(b"\n".join(chunk) + b"\n")
        paths.append(path)
        written += size
        stamp += timedelta(minutes=15)
    return paths


def _ours(feed: Path, lake: Path, workers: int) -> dict[str, float]:
    from components.common.store import Store
    from components.ingest.core import DirectorySource, ingest

    shutil.rmtree(lake, ignore_errors=True)
    started = time.perf_counter()
    summary = ingest(DirectorySource(str(feed)), Store(str(lake)), workers=workers)
    seconds = time.perf_counter() - started
    busy = summary.seconds
    assert summary.count("ingested") == summary.listed, summary.to_dict()["problems"][:3]
    return {"seconds": seconds, "rows": summary.rows, "task_seconds": busy}


def _pyarrow(paths: list[Path]) -> dict[str, float]:
    import pyarrow.csv as pacsv

    from components.common.columns import EVENTS_SCHEMA

    started = time.perf_counter()
    rows = 0
    for path in paths:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=EVENTS_SCHEMA.names),
            parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
            convert_options=pacsv.ConvertOptions(column_types=EVENTS_SCHEMA),
        )
        rows += table.num_rows
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _polars(paths: list[Path]) -> dict[str, float]:
    import polars as pl
    import pyarrow as pa

    from components.common.columns import EVENTS_SCHEMA

    kinds = {pa.int64(): pl.Int64, pa.float64(): pl.Float64, pa.string(): pl.String}
    schema = {f.name: kinds[f.type] for f in EVENTS_SCHEMA}
    started = time.perf_counter()
    rows = 0
    for path in paths:
        frame = pl.read_csv(path, separator="\t", has_header=False, quote_char=None, schema=schema)
        rows += frame.height
    return {"seconds": time.perf_counter() - started, "rows": rows}


def main() -> None:
    """Build the feed, time every reader, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=1.0, help="feed size in GB (default 1.0)")
    parser.add_argument("--file-mb", type=float, default=8.0, help="size of one batch file in MB (default 8)")
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    )
    parser.add_argument("--days", type=float, default=0.0, help="a synthetic feed of this many days instead")
    parser.add_argument("--rows", type=int, default=1500, help="rows per synthetic batch (default 1500)")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out")
    parser.add_argument("--keep", action="store_true", help="keep the feed and lakes")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="driftpilot-bench-"))
    try:
        started = time.perf_counter()
        if args.days:
            from datetime import UTC, datetime

            from components.synth.feed import SyntheticFeed

            feed = SyntheticFeed(sorted((args.data / "gdelt").glob("[0-9]" * 14 + ".export.CSV")))
            start = datetime(2030, 1, 1, tzinfo=UTC)
            paths = feed.write(work / "feed", start=start, batches=round(args.days * 96), rows=args.rows).files
        else:
            paths = build_feed(args.data, work / "feed", int(args.gb * 1e9), int(args.file_mb * 1e6))
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        print(
            f"feed: {len(paths)} files, {megabytes:.0f} MB, built in {time.perf_counter() - started:.0f} s", flush=True
        )
        results: dict[str, dict[str, float]] = {}
        for name, run in (
            ("pyarrow.csv", lambda: _pyarrow(paths)),
            ("polars", lambda: _polars(paths)),
            ("driftpilot, 1 worker", lambda: _ours(work / "feed", work / "lake1", 1)),
            ("driftpilot, 2 workers", lambda: _ours(work / "feed", work / "lake2", 2)),
        ):
            result = run()
            result["mb_per_s"] = megabytes / result["seconds"]
            results[name] = result
            print(
                f"{name:24} {result['seconds']:7.1f} s  {result['mb_per_s']:6.0f} MB/s  {int(result['rows'])} rows",
                flush=True,
            )
        one, two = results["driftpilot, 1 worker"], results["driftpilot, 2 workers"]
        speedup = one["seconds"] / two["seconds"]
        print(f"2 workers vs 1: {speedup:.2f}x (target >= 1.6x); end to end {two['mb_per_s']:.0f} MB/s (target >= 250)")
        args.out.mkdir(parents=True, exist_ok=True)
        report = {
            "files": len(paths),
            "megabytes": megabytes,
            "file_mb": args.file_mb,
            "results": results,
            "speedup": speedup,
        }
        (args.out / "ingest.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
