"""Tuning core: parallel workers, pruning and warm start on real GDELT rows (a script, not a test).

The rows are every validated row of the GDELT 2.0 15-minute exports in ``../shared/data/gdelt``
(about 41k; at most ``--rows``, keeping whole articles by a hash of SOURCEURL when there are
more), in DATEADDED order, for task ``gdelt-tone``. Every study keeps a journal file in a
temporary folder and trains LightGBM with one thread for at most ``--rounds`` rounds; its
deadline is a day away, so only the trial budget ends it. Three measures:

1. Parallel workers: one study of ``--trials`` trials (``pruner="none"``) run by ONE worker
   process pinned to core 0, then a fresh study run by TWO worker processes pinned to cores 0
   and 1 (``run_worker`` with worker indices 0 and 1). Processes are spawned and each reads the
   rows from a Parquet file the parent wrote, so both runs pay the same start-up. Speed-up =
   trials/s of two over trials/s of one, on wall time from the first start to the last exit
   (target ≥ 1.8). The two-worker study must hold exactly ``--trials`` COMPLETE trials.
2. Pruning: the same budget and rows, one pinned worker, ``pruner="median"`` against
   ``pruner="none"`` with the same sampler seed, for each of ``--seeds`` seeds. Time ratio
   none/median on the seconds spent inside ``run_worker`` (the pruner cannot shorten process
   start-up or reading the rows; the wall-time ratio is reported beside it), target ≥ 2.5 on the
   mean; relative loss of the best validation log loss (best_median − best_none)/best_none,
   target ≤ 0.2% on the mean.
3. Warm start: the rows are split at ``--split`` (DATEADDED): the OLDER slice (by default the
   2016 and 2019 batches and the 2024-10-22 day) and the NEWER slice (November-December 2024).
   A champion study tunes the older slice; its 5 best trials' parameters (``top_trials``, best
   first, as the drift response enqueues them) warm-start a study on the newer slice, beside a
   cold study with the same budget. The champion and the
   cold study use seed s, the warm study seed s + 1000: with one seed its random start-up trials
   would be the cold study's shifted by one, and it would "reach" B_cold by copying it. Trials
   the warm study needs to reach the cold study's best B_cold (cumulative best, in trial-number
   order), target ≤ ``--trials``/2 on every seed; the cold study's trials to its own best are
   reported beside it. These run in this process, one worker each (no times are taken).

Results go to ``--out``/tune.json (``tune-quick.json`` with ``--quick``, so a check never
overwrites a full run).

Usage: python tests/bench/tune.py [--quick] [--out DIR] [--rows 200000] [--trials 40] [--seeds 3]
       [--rounds 100] [--split 20241101000000]
"""

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from components.common.task import TaskSpec, load_task  # noqa: E402
from components.tune.core import (  # noqa: E402
    TuneBudget,
    TuneConfig,
    TuneSummary,
    create_study,
    open_storage,
    run_worker,
    summarize_study,
    top_trials,
)

TASK = "gdelt-tone"
DEADLINE_S = 86_400.0  # a day: the trial budget, not the clock, ends every study here
SPEEDUP_TARGET = 1.8
PRUNING_TIME_TARGET = 2.5
PRUNING_LOSS_TARGET = 0.002
WARM_SEED_OFFSET = 1000
WARM_TRIALS = 5


@dataclass(frozen=True)
class Settings:
    """One run's sizes.

    Attributes:
        rows: Most validated rows to use.
        trials: Trial budget of every study.
        seeds: Sampler seeds 0..seeds-1 for the pruning and warm-start measures.
        rounds: Boosting rounds per trial at most.
        split: DATEADDED (YYYYMMDDHHMMSS) from which rows belong to the newer slice.
    """

    rows: int
    trials: int
    seeds: int
    rounds: int
    split: int


@dataclass(frozen=True)
class StudyRun:
    """One study run by pinned worker processes.

    Attributes:
        wall_s: Seconds from starting the first process to the last one's exit.
        tune_s: Seconds from the first ``run_worker`` call to the last one's return.
        trials_s: Seconds from the first trial's start to the last trial's end (the study's
            records): ``tune_s`` less preparing the rows and datasets.
        trials_per_worker: Trials each worker ran.
        summary: The study's summary once every worker is done.
    """

    wall_s: float
    tune_s: float
    trials_s: float
    trials_per_worker: list[int]
    summary: TuneSummary


def quiet() -> None:
    """Silence Optuna's per-study info lines and LightGBM's warning about validation datasets."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Overriding the parameters from Reference Dataset")


def load_rows(data_dir: Path, task: TaskSpec, limit: int) -> pd.DataFrame:
    """The validated rows of every GDELT 2.0 15-minute export, in DATEADDED order.

    Args:
        data_dir: The shared data folder (holding ``gdelt/``).
        task: The task (its group column keeps articles whole when rows are dropped).
        limit: Most rows to keep; beyond it, whole articles are kept by a hash of the group key.

    Returns:
        Validated rows, oldest batch first.
    """
    from components.features.core import split_by_key
    from components.ingest.core import read_export
    from components.validate.core import validate_events

    frames = []
    for path in sorted((data_dir / "gdelt").glob("[0-9]" * 14 + ".export.CSV")):
        table = read_export(path).table
        if table is None:
            raise SystemExit(f"{path} was rejected whole by the ingest parser")
        frames.append(validate_events(table.to_pandas()).valid)
    rows = pd.concat(frames, ignore_index=True)
    if len(rows) > limit:
        rows = rows[split_by_key(rows[task.split_column], limit / len(rows), salt="bench-tune")]
    return rows.sort_values(task.time_column, kind="stable").reset_index(drop=True)


def new_study(folder: Path, name: str, trials: int, warm_start: list[dict[str, Any]] | None = None) -> str:
    """Create a study in its own journal file under ``folder``; return its storage URL."""
    storage = f"journal:{folder / name}.log"
    create_study(storage=storage, name=name, budget=TuneBudget(trials, DEADLINE_S), warm_start=warm_start)
    return storage


def work(storage: str, name: str, rows_path: str, config: TuneConfig, worker: int, core: int, queue: Any) -> None:
    """A worker process: pin to ``core``, read the rows, run trials, send back its times.

    Args:
        storage: Study storage.
        name: Study name.
        rows_path: Parquet file of the validated rows.
        config: How trials train.
        worker: Worker index (seeds its sampler).
        core: The one CPU this process may run on.
        queue: Where ``{worker, ran, tuned_from, tuned_to}`` (epoch seconds) is put.
    """
    os.sched_setaffinity(0, {core})  # before run_worker imports LightGBM and sizes its thread pool
    quiet()
    frame = pd.read_parquet(rows_path)
    task = load_task(TASK)
    tuned_from = time.time()
    ran = run_worker(storage=storage, name=name, frame=frame, task=task, config=config, worker=worker)
    queue.put({"worker": worker, "ran": ran, "tuned_from": tuned_from, "tuned_to": time.time()})


def run_pinned(storage: str, name: str, rows_path: Path, config: TuneConfig, cores: list[int]) -> StudyRun:
    """Run a study with one spawned worker process per core in ``cores`` (worker i on cores[i]).

    Raises:
        RuntimeError: When a worker process fails.
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=work, args=(storage, name, str(rows_path), config, worker, core, queue))
        for worker, core in enumerate(cores)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"study {name!r}: worker processes exited with {failed}")
    reports = sorted((queue.get(timeout=10) for _ in processes), key=lambda r: int(r["worker"]))
    return StudyRun(
        wall_s=wall,
        tune_s=max(r["tuned_to"] for r in reports) - min(r["tuned_from"] for r in reports),
        trials_s=trial_span(storage, name),
        trials_per_worker=[int(r["ran"]) for r in reports],
        summary=summarize_study(storage=storage, name=name),
    )


def trial_span(storage: str, name: str) -> float:
    """Seconds from the first trial's start to the last finished trial's end."""
    import optuna

    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(deepcopy=False)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds()


def state_counts(storage: str, name: str) -> dict[str, int]:
    """Trials of a study per state (``FAIL`` split into over-budget draws and real failures)."""
    import optuna

    counts: dict[str, int] = {}
    for trial in optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(deepcopy=False):
        state = trial.state.name
        if state == "FAIL" and trial.user_attrs.get("over_budget"):
            state = "OVER_BUDGET"
        counts[state] = counts.get(state, 0) + 1
    return counts


def measure_workers(folder: Path, rows_path: Path, settings: Settings, cores: list[int]) -> dict[str, Any]:
    """Measure 1: one pinned worker against two pinned workers on the same budget."""
    config = TuneConfig(num_boost_round=settings.rounds, threads=1, pruner="none", seed=0)
    runs, counts = {}, {}
    for label, used in (("one", cores[:1]), ("two", cores[:2])):
        storage = new_study(folder, f"workers-{label}", settings.trials)
        runs[label] = run_pinned(storage, f"workers-{label}", rows_path, config, used)
        counts[label] = state_counts(storage, f"workers-{label}")
        run = runs[label]
        print(
            f"  {label} worker(s) on cores {used}: wall {run.wall_s:.1f} s, in run_worker {run.tune_s:.1f} s, "
            f"trials {run.trials_s:.1f} s, "
            f"trials per worker {run.trials_per_worker}, states {counts[label]}, best {run.summary.best_value:.5f}",
            flush=True,
        )
    one, two = runs["one"], runs["two"]
    rate_one, rate_two = one.summary.complete / one.wall_s, two.summary.complete / two.wall_s
    budget_held = (
        two.summary.complete == settings.trials
        and sum(two.trials_per_worker) == settings.trials
        and set(counts["two"]) <= {"COMPLETE", "OVER_BUDGET"}
    )
    print(
        f"  two-worker study: {two.summary.complete} COMPLETE of a budget of {settings.trials} "
        f"({two.summary.over_budget} over-budget draws left unrun): {'as budgeted' if budget_held else 'WRONG'}",
        flush=True,
    )
    return {
        "cores": cores[:2],
        "one": _run_dict(one, counts["one"]),
        "two": _run_dict(two, counts["two"]),
        "trials_per_s_one": round(rate_one, 3),
        "trials_per_s_two": round(rate_two, 3),
        "speedup_wall": round(rate_two / rate_one, 3),
        "speedup_in_run_worker": round((two.summary.complete / two.tune_s) / (one.summary.complete / one.tune_s), 3),
        "speedup_trials_only": round((two.summary.complete / two.trials_s) / (one.summary.complete / one.trials_s), 3),
        "two_complete_equals_budget": budget_held,
    }


def _run_dict(run: StudyRun, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "wall_s": round(run.wall_s, 2),
        "in_run_worker_s": round(run.tune_s, 2),
        "trials_s": round(run.trials_s, 2),
        "trials_per_worker": run.trials_per_worker,
        "states": counts,
        "best_value": run.summary.best_value,
        "best_number": run.summary.best_number,
    }


def measure_pruning(folder: Path, rows_path: Path, settings: Settings, core: int) -> dict[str, Any]:
    """Measure 2: the median pruner against none, one pinned worker, per seed."""
    per_seed: list[dict[str, Any]] = []
    for seed in range(settings.seeds):
        runs = {}
        for pruner in ("none", "median"):
            name = f"pruning-{pruner}-{seed}"
            config = TuneConfig(num_boost_round=settings.rounds, threads=1, pruner=pruner, seed=seed)
            runs[pruner] = run_pinned(new_study(folder, name, settings.trials), name, rows_path, config, [core])
        none, median = runs["none"], runs["median"]
        row: dict[str, Any] = {
            "seed": seed,
            "none_in_run_worker_s": round(none.tune_s, 2),
            "median_in_run_worker_s": round(median.tune_s, 2),
            "none_wall_s": round(none.wall_s, 2),
            "median_wall_s": round(median.wall_s, 2),
            "median_pruned": median.summary.pruned,
            "median_complete": median.summary.complete,
            "time_ratio": round(none.tune_s / median.tune_s, 3),
            "trials_ratio": round(none.trials_s / median.trials_s, 3),
            "wall_ratio": round(none.wall_s / median.wall_s, 3),
            "best_none": none.summary.best_value,
            "best_median": median.summary.best_value,
            "relative_loss": (median.summary.best_value - none.summary.best_value) / none.summary.best_value,
        }
        per_seed.append(row)
        print(
            f"  seed {seed}: none {none.tune_s:.1f} s (wall {none.wall_s:.1f}), median {median.tune_s:.1f} s "
            f"(wall {median.wall_s:.1f}, {median.summary.pruned} pruned), ratio {row['time_ratio']:.2f}; "
            f"best none {none.summary.best_value:.5f}, median {median.summary.best_value:.5f}, "
            f"relative loss {row['relative_loss']:+.3%}",
            flush=True,
        )
    return {
        "per_seed": per_seed,
        "mean_time_ratio": round(statistics.fmean(r["time_ratio"] for r in per_seed), 3),
        "mean_wall_ratio": round(statistics.fmean(r["wall_ratio"] for r in per_seed), 3),
        "mean_trials_ratio": round(statistics.fmean(r["trials_ratio"] for r in per_seed), 3),
        "mean_relative_loss": statistics.fmean(r["relative_loss"] for r in per_seed),
    }


def trials_to_reach(storage: str, name: str, target: float) -> int | None:
    """Trials (counted from 1, in number order) until the cumulative best is ≤ ``target``; None if never."""
    import optuna
    from optuna.trial import TrialState

    best = math.inf
    trials = optuna.load_study(study_name=name, storage=open_storage(storage)).get_trials(deepcopy=False)
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            best = min(best, trial.value)
        if best <= target:
            return trial.number + 1
    return None


@dataclass(frozen=True)
class LocalStudy:
    """A study run in this process.

    Attributes:
        storage: Its storage URL.
        name: Its name.
        summary: Its summary once the budget is spent.
    """

    storage: str
    name: str
    summary: TuneSummary


def tune_here(
    folder: Path,
    name: str,
    frame: pd.DataFrame,
    task: TaskSpec,
    config: TuneConfig,
    trials: int,
    warm_start: list[dict[str, Any]] | None = None,
) -> LocalStudy:
    """Create a study and spend its budget with one worker in this process."""
    storage = new_study(folder, name, trials, warm_start)
    run_worker(storage=storage, name=name, frame=frame, task=task, config=config)
    return LocalStudy(storage, name, summarize_study(storage=storage, name=name))


def measure_warm_start(folder: Path, rows: pd.DataFrame, task: TaskSpec, settings: Settings) -> dict[str, Any]:
    """Measure 3: a champion tuned on the older slice warm-starts a study on the newer one, per seed."""
    added = rows[task.time_column].astype("int64")
    older, newer = rows[added < settings.split], rows[added >= settings.split]
    slices = {
        name: {"rows": len(part), "from": int(part[task.time_column].min()), "to": int(part[task.time_column].max())}
        for name, part in (("older", older), ("newer", newer))
    }
    print(f"  older slice {slices['older']}, newer slice {slices['newer']}", flush=True)
    per_seed: list[dict[str, Any]] = []
    for seed in range(settings.seeds):
        config = TuneConfig(num_boost_round=settings.rounds, threads=1, pruner="none", seed=seed)
        champion = tune_here(folder, f"champion-{seed}", older, task, config, settings.trials)
        cold = tune_here(folder, f"cold-{seed}", newer, task, config, settings.trials)
        # With the cold study's seed, the warm study's random start-up trials would be the cold
        # study's, one trial later (an enqueued trial draws nothing from the sampler).
        warm_config = replace(config, seed=seed + WARM_SEED_OFFSET)
        # The champion's parameters, then its study's next best trials (as the drift response does).
        earlier = top_trials(storage=champion.storage, name=champion.name, count=WARM_TRIALS)
        warm = tune_here(folder, f"warm-{seed}", newer, task, warm_config, settings.trials, earlier)
        needed = trials_to_reach(warm.storage, warm.name, cold.summary.best_value)
        row: dict[str, Any] = {
            "seed": seed,
            "warm_seed": seed + WARM_SEED_OFFSET,
            "champion_best_on_older": champion.summary.best_value,
            "champion_params": champion.summary.best_params,
            "b_cold": cold.summary.best_value,
            "cold_trials_to_its_best": cold.summary.best_number + 1,
            "warm_best": warm.summary.best_value,
            "warm_first_trial_value": _first_value(warm.storage, warm.name),
            "warm_trials_to_b_cold": needed,
        }
        per_seed.append(row)
        print(
            f"  seed {seed}: champion {champion.summary.best_value:.5f} on older; "
            f"cold best {cold.summary.best_value:.5f} at trial {cold.summary.best_number + 1}; "
            f"warm first trial {row['warm_first_trial_value']:.5f}, best {warm.summary.best_value:.5f}, "
            f"reaches B_cold after {needed if needed is not None else 'never'} trials",
            flush=True,
        )
    reached = [r["warm_trials_to_b_cold"] for r in per_seed]
    return {
        "split_dateadded": settings.split,
        "slices": slices,
        "per_seed": per_seed,
        "worst_warm_trials_to_b_cold": None if None in reached else max(reached),
        "mean_warm_trials_to_b_cold": None if None in reached else statistics.fmean(reached),
        "mean_cold_trials_to_its_best": statistics.fmean(r["cold_trials_to_its_best"] for r in per_seed),
    }


def _first_value(storage: str, name: str) -> float:
    import optuna

    value = optuna.load_study(study_name=name, storage=open_storage(storage)).trials[0].value
    return math.nan if value is None else float(value)


def verdicts(results: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """The table's rows: each measure, its value, its target and whether it is met."""
    workers, pruning, warm = results["parallel"], results["pruning"], results["warm_start"]
    worst = warm["worst_warm_trials_to_b_cold"]
    half = settings.trials / 2
    return [
        {
            "measure": "parallel speed-up, 2 vs 1 pinned workers (wall)",
            "value": f"{workers['speedup_wall']:.2f}x",
            "target": f">= {SPEEDUP_TARGET}x",
            "pass": workers["speedup_wall"] >= SPEEDUP_TARGET,
        },
        {
            "measure": "two-worker study: COMPLETE trials == budget",
            "value": f"{workers['two']['states'].get('COMPLETE', 0)}",
            "target": f"== {settings.trials}",
            "pass": workers["two_complete_equals_budget"],
        },
        {
            "measure": "pruning time ratio none/median (in run_worker, mean)",
            "value": f"{pruning['mean_time_ratio']:.2f}x",
            "target": f">= {PRUNING_TIME_TARGET}x",
            "pass": pruning["mean_time_ratio"] >= PRUNING_TIME_TARGET,
        },
        {
            "measure": "pruning relative loss of best log loss (mean)",
            "value": f"{pruning['mean_relative_loss']:+.3%}",
            "target": f"<= {PRUNING_LOSS_TARGET:.1%}",
            "pass": pruning["mean_relative_loss"] <= PRUNING_LOSS_TARGET,
        },
        {
            "measure": "warm start: trials to reach B_cold (worst seed)",
            "value": "never" if worst is None else str(worst),
            "target": f"<= {half:g}",
            "pass": worst is not None and worst <= half,
        },
    ]


def print_table(rows: list[dict[str, Any]], notes: list[str]) -> None:
    """Print the verdict table, then the notes (measures without a target)."""
    width = max(len(r["measure"]) for r in rows)
    print(f"\n{'measure':<{width}}  {'value':>10}  {'target':>10}  result")
    for r in rows:
        print(f"{r['measure']:<{width}}  {r['value']:>10}  {r['target']:>10}  {'PASS' if r['pass'] else 'FAIL'}")
    for note in notes:
        print(f"  note: {note}")


def main() -> None:
    """Run the three measures and print and save their numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k rows, 8 trials, 1 seed: a check that it runs")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "bench" / "out", help="folder for the JSON")
    parser.add_argument("--rows", type=int, help="most validated rows (default 200000; quick 20000)")
    parser.add_argument("--trials", type=int, help="trial budget of every study (default 40; quick 8)")
    parser.add_argument("--seeds", type=int, help="seeds of measures 2 and 3 (default 3; quick 1)")
    parser.add_argument("--rounds", type=int, default=100, help="boosting rounds per trial at most")
    parser.add_argument("--split", type=int, default=20241101000000, help="DATEADDED where the newer slice starts")
    args = parser.parse_args()
    settings = Settings(
        rows=args.rows or (20_000 if args.quick else 200_000),
        trials=args.trials or (8 if args.quick else 40),
        seeds=args.seeds or (1 if args.quick else 3),
        rounds=args.rounds,
        split=args.split,
    )
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit(f"the parallel measure needs two cores; this process may use {cores}")
    quiet()
    started = time.perf_counter()
    task = load_task(TASK)
    rows = load_rows(args.data, task, settings.rows)
    print(f"{len(rows)} validated GDELT rows for {TASK} (at most {settings.rows}); {settings}", flush=True)
    results: dict[str, Any] = {"task": TASK, "rows": len(rows), "quick": args.quick, "settings": asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        folder = Path(tmp)
        rows_path = folder / "rows.parquet"
        rows.to_parquet(rows_path, index=False)
        print("1. parallel workers", flush=True)
        results["parallel"] = measure_workers(folder, rows_path, settings, cores)
        print("2. pruning", flush=True)
        results["pruning"] = measure_pruning(folder, rows_path, settings, cores[0])
        print("3. warm start", flush=True)
        results["warm_start"] = measure_warm_start(folder, rows, task, settings)
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["verdicts"] = verdicts(results, settings)
    warm = results["warm_start"]
    notes = [
        f"speed-up inside run_worker (no process start-up): {results['parallel']['speedup_in_run_worker']:.2f}x",
        f"speed-up over the trials alone (no start-up, no dataset build): "
        f"{results['parallel']['speedup_trials_only']:.2f}x",
        f"pruning wall-time ratio none/median (mean): {results['pruning']['mean_wall_ratio']:.2f}x",
        f"pruning ratio over the trials alone (mean): {results['pruning']['mean_trials_ratio']:.2f}x",
        f"cold study's trials to its own best (mean): {warm['mean_cold_trials_to_its_best']:.1f}",
        f"warm start's trials to B_cold per seed: {[r['warm_trials_to_b_cold'] for r in warm['per_seed']]}",
        f"total {results['seconds']} s",
    ]
    results["notes"] = notes
    print_table(results["verdicts"], notes)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("tune-quick.json" if args.quick else "tune.json")
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
