"""The model server under a bounded load beside a bare FastAPI app serving the same model (a script, not a test).

One LightGBM model (``gdelt-tone``, trained on the shared export ``20241022130000``) is
registered in a SQLite MLflow under a temporary folder. Two servers take turns, each pinned to
core 0: driftpilot's model server (``python -m components.serve``, KServe V1/V2, validation,
metrics) and ``_bare_app.py`` (FastAPI + uvicorn, the same ``RowScorer``, no validation). wrk
(Debian's ``wrk``), pinned to core 1, drives each with ``--connections`` connections for
``--seconds`` seconds per case:

* ``single``: one real row per request (V1 ``:predict``);
* ``batch``: 100 real rows per request;
* ``v2-single``: one row as V2 ``/infer`` tensors (driftpilot only; the bare app has no V2).

Reported per case: requests/s, p50/p99 latency, non-2xx answers and socket errors. Targets for
the single-row case: driftpilot ≥ 0.8 × the bare app's requests/s, p99 ≤ 10 ms, 0 errors.
Then malformed payloads (wrong type, missing column, unknown column, not JSON, empty list,
wrong V2 datatype) must each get a 4xx. Results go to ``--out``/serve.json.

Usage: python tests/bench/serve.py [--seconds 10] [--connections 16] [--out DIR]
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.common.storage import write_table  # noqa: E402
from components.common.task import load_task  # noqa: E402
from components.deploy._process import free_port  # noqa: E402
from components.features.core import input_columns  # noqa: E402
from components.ingest.core import read_export  # noqa: E402
from components.register.core import CHAMPION, Lineage, register_model  # noqa: E402
from components.serve import payloads  # noqa: E402
from components.train.core import TrainConfig, train_files  # noqa: E402
from components.validate.core import validate_events  # noqa: E402

DATA = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
MODEL = "gdelt-tone"
_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
"""


def _prepare(work: Path) -> tuple[str, Path, list[dict[str, Any]]]:
    """Train, register and return the tracking URI, the model folder and real request rows."""
    task = load_task(MODEL)
    valid = validate_events(read_export(DATA / "gdelt" / "20241022130000.export.CSV").table.to_pandas()).valid
    table = write_table(valid, work / "train.parquet")
    model_dir = work / "model"
    train_files([table], MODEL, model_dir, TrainConfig(num_threads=1))
    tracking = f"sqlite:///{work / 'mlflow.db'}"
    register_model(
        tracking_uri=tracking,
        artifact_root=str(work / "artifacts"),
        experiment="bench-serve",
        model_name=MODEL,
        model_dir=model_dir,
        training_data=[table],
        lineage=Lineage(source_batches=("20241022130000",), kfp_run="bench-serve"),
        alias=CHAMPION,
    )
    later = validate_events(read_export(DATA / "gdelt" / "20241022150000.export.CSV").table.to_pandas()).valid
    return tracking, model_dir, payloads.instances(later[list(input_columns(task))].head(100), task)


@contextmanager
def _server(command: list[str], port: int, ready_path: str, env: dict[str, str], log: Path) -> Iterator[str]:
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(["taskset", "-c", "0", *command], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{command[2:4]} exited: {log.read_text()[-2000:]}")
            try:
                if requests.get(url + ready_path, timeout=1).status_code in (200, 405):
                    break
            except requests.RequestException:
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wrk(url: str, body: dict[str, Any], seconds: int, connections: int, work: Path) -> dict[str, float]:
    body_path = work / f"body-{abs(hash(url))}.json"
    body_path.write_text(json.dumps(body))
    script = work / "post.lua"
    script.write_text(_LUA.format(body=body_path))
    command = [
        "taskset",
        "-c",
        "1",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if not match:
            return float("nan")
        value, unit = float(match[1]), match[2]
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),  # type: ignore[index]
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in socket.groups()) if socket else 0,
    }


def _malformed(url: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    row = rows[0]
    v1 = f"{url}/v1/models/{MODEL}:predict"
    cases = {
        "wrong_type": {"instances": [{**row, "GoldsteinScale": "high"}]},
        "missing_column": {"instances": [{k: v for k, v in row.items() if k != "EventCode"}]},
        "unknown_column": {"instances": [{**row, "Extra": 1}]},
        "empty": {"instances": []},
    }
    statuses = {name: requests.post(v1, json=body, timeout=10).status_code for name, body in cases.items()}
    statuses["not_json"] = requests.post(
        v1, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10
    ).status_code
    v2_body = {"inputs": payloads.v2_inputs([row], load_task(MODEL))}
    v2_body["inputs"][0]["datatype"] = "FP64"
    statuses["v2_wrong_datatype"] = requests.post(
        f"{url}/v2/models/{MODEL}/infer", json=v2_body, timeout=10
    ).status_code
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install wrk")
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    tracking, model_dir, rows = _prepare(work)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BARE_MODEL_DIR": str(model_dir)}
    one, hundred = {"instances": rows[:1]}, {"instances": rows[:100]}
    v2_one = {"inputs": payloads.v2_inputs(rows[:1], load_task(MODEL))}
    results: dict[str, Any] = {"seconds": args.seconds, "connections": args.connections}

    port = free_port()
    ours = [sys.executable, "-m", "components.serve", "--model_name", MODEL, "--model_uri", f"models:/{MODEL}/1",
            "--tracking_uri", tracking, "--http_port", str(port), "--enable_grpc", "false"]  # fmt: skip
    with _server(ours, port, f"/v2/models/{MODEL}/ready", env, work / "driftpilot.log") as url:
        for name, body, path in (
            ("single", one, f"/v1/models/{MODEL}:predict"),
            ("batch", hundred, f"/v1/models/{MODEL}:predict"),
            ("v2-single", v2_one, f"/v2/models/{MODEL}/infer"),
        ):
            results[f"driftpilot_{name}"] = _wrk(url + path, body, args.seconds, args.connections, work)
            print(name, "driftpilot", results[f"driftpilot_{name}"], flush=True)
        results["malformed"] = _malformed(url, rows)
    port = free_port()
    bare = [sys.executable, "-m", "uvicorn", "tests.bench._bare_app:app", "--port", str(port), "--log-level", "warning",
            "--no-access-log"]  # fmt: skip
    with _server(bare, port, f"/v1/models/{MODEL}:predict", env, work / "bare.log") as url:
        for name, body in (("single", one), ("batch", hundred)):
            results[f"bare_{name}"] = _wrk(
                f"{url}/v1/models/{MODEL}:predict", body, args.seconds, args.connections, work
            )
            print(name, "bare", results[f"bare_{name}"], flush=True)

    single, baseline = results["driftpilot_single"], results["bare_single"]
    results["single_throughput_ratio"] = single["requests_per_s"] / baseline["requests_per_s"]
    results["batch_throughput_ratio"] = (
        results["driftpilot_batch"]["requests_per_s"] / results["bare_batch"]["requests_per_s"]
    )
    results["targets"] = {
        "throughput_ratio_at_least_0.8": results["single_throughput_ratio"] >= 0.8,
        "p99_at_most_10_ms": single["p99_ms"] <= 10,
        "no_errors": single["non_2xx"] == 0 and single["socket_errors"] == 0,
        "malformed_all_4xx": all(400 <= s < 500 for s in results["malformed"].values()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(results, indent=2) + "\n")
    print(
        json.dumps(
            {k: results[k] for k in ("single_throughput_ratio", "batch_throughput_ratio", "malformed", "targets")},
            indent=2,
        )
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
