"""Fuzz every parser of outside input for a time budget each (a script, not a test).

The targets and their properties are ``tests/fuzz.py``'s (the suite runs them briefly). Each target
runs in rounds of ``--round`` Hypothesis examples with fresh randomness until ``--seconds`` are spent;
a round that breaks a property is recorded (exception type, message, shrunk input) and fuzzing goes on.
Crashes are reported distinct by exception type and the line that raised. Results go to
``tests/bench/out/fuzz.json``.

Usage: DRIFTPILOT_DATA_DIR=../shared/data python tests/bench/fuzz.py [--seconds 120] [--round 200] [--only NAME]
"""

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.fuzz import Target, offline_targets, serving_target  # noqa: E402


def _crashes(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _crashes(inner)]
    return [error]


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if "/components/" in f.filename] or frames
    last = inside[-1] if inside else None
    return f"{Path(last.filename).relative_to(REPO) if last else '?'}:{last.lineno if last else 0}"


def fuzz(target: Target, seconds: float, examples: int) -> dict[str, Any]:
    """Run ``target`` for ``seconds`` in rounds of ``examples``; count executions and distinct crashes."""
    executions = 0
    crashes: dict[str, dict[str, Any]] = {}

    def counted(value: Any) -> None:
        nonlocal executions
        executions += 1
        target.check(value)

    run = settings(
        max_examples=examples, deadline=None, database=None, print_blob=False,
        suppress_health_check=list(HealthCheck),
    )(given(target.strategy)(counted))  # fmt: skip
    started = time.monotonic()
    rounds = 0
    while time.monotonic() - started < seconds:
        rounds += 1
        try:
            run()
        except Exception as error:  # every failure is a finding to report
            for crash in _crashes(error):
                key = f"{type(crash).__name__} at {_where(crash)}"
                found = crashes.setdefault(key, {"rounds": 0, "message": str(crash)[:300]})
                found["rounds"] += 1
    elapsed = time.monotonic() - started
    return {
        "executions": executions,
        "seconds": round(elapsed, 1),
        "per_second": round(executions / elapsed, 1),
        "rounds": rounds,
        "crashes": crashes,
    }


def _print(name: str, result: dict[str, Any]) -> None:
    print(
        f"{name:30} {result['executions']:8d} executions in {result['seconds']:6.1f} s "
        f"({result['per_second']:7.1f}/s), {len(result['crashes'])} distinct crash(es)",
        flush=True,
    )
    for key, crash in result["crashes"].items():
        print(f"    {key} ({crash['rounds']} rounds): {crash['message']}", flush=True)


def main() -> None:
    """Fuzz each target and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="budget per target")
    parser.add_argument("--round", type=int, default=200, help="Hypothesis examples per round")
    parser.add_argument("--only", default="", help="fuzz the target of this name alone")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out" / "fuzz.json")
    args = parser.parse_args()
    data_dir = Path(os.environ.get("DRIFTPILOT_DATA_DIR", REPO.parent / "shared" / "data"))
    report: dict[str, Any] = {"seconds_per_target": args.seconds, "targets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "serving").mkdir()
        with serving_target(work / "serving", data_dir) as serving:
            for target in [*offline_targets(data_dir, work), serving]:
                if args.only and target.name != args.only:
                    continue
                report["targets"][target.name] = fuzz(target, args.seconds, args.round)
                _print(target.name, report["targets"][target.name])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
