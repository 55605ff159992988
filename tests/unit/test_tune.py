import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from components.common.errors import ConfigError
from components.tune.core import (
    TuneBudget,
    TuneConfig,
    create_study,
    open_storage,
    run_worker,
    summarize_study,
    top_trials,
)

DAY = ("20241022130000", "20241022131500", "20241022133000", "20241022134500")


@pytest.fixture(scope="module")
def rows(validated) -> pd.DataFrame:
    return pd.concat([validated(b) for b in DAY], ignore_index=True)


def _work(args: tuple[str, Path, int]) -> int:
    from components.common.task import load_task

    storage, data, worker = args
    config = TuneConfig(num_boost_round=60, seed=7)
    return run_worker(
        storage=storage,
        name="s",
        frame=pd.read_parquet(data),
        task=load_task("gdelt-tone"),
        config=config,
        worker=worker,
    )


def test_two_workers_share_one_study_within_its_trial_budget(rows, tmp_path) -> None:
    storage = str(tmp_path / "study.log")
    data = tmp_path / "rows.parquet"
    rows.to_parquet(data)
    warm = {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 0.9, "lambda_l2": 1.0}
    create_study(storage=storage, name="s", budget=TuneBudget(trials=8, seconds=300), warm_start=[warm])
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        ran = pool.map(_work, [(storage, data, 0), (storage, data, 1)])
    summary = summarize_study(storage=storage, name="s")
    assert sum(ran) == 8 == summary.complete + summary.pruned  # exactly the budget, over both workers
    assert all(n >= 1 for n in ran)  # both took part
    assert summary.over_budget == 2  # each worker drew one number past the budget and stopped
    assert summary.best_value < 0.6


def test_the_warm_start_is_the_first_trial_and_the_deadline_stops_workers(rows, task, tmp_path) -> None:
    import optuna

    storage = str(tmp_path / "study.log")
    warm = {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 0.9, "lambda_l2": 1.0}
    create_study(storage=storage, name="w", budget=TuneBudget(trials=50, seconds=0.001), warm_start=[warm])
    assert run_worker(storage=storage, name="w", frame=rows, task=task) == 0  # the deadline has passed
    create_study(storage=storage, name="v", budget=TuneBudget(trials=2, seconds=300), warm_start=[warm])
    run_worker(storage=storage, name="v", frame=rows, task=task, config=TuneConfig(num_boost_round=40))
    first = optuna.load_study(study_name="v", storage=open_storage(storage)).trials[0]
    assert first.params == pytest.approx(warm)


def test_bad_tuning_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="pruner"):
        TuneConfig(pruner="random")
    with pytest.raises(ConfigError, match="budget"):
        TuneBudget(trials=0)


def test_top_trials_are_the_best_complete_ones_and_a_missing_study_gives_none(rows, task, tmp_path) -> None:
    storage = str(tmp_path / "top.log")
    create_study(storage=storage, name="t", budget=TuneBudget(trials=4, seconds=300))
    run_worker(storage=storage, name="t", frame=rows, task=task, config=TuneConfig(num_boost_round=30, pruner="none"))
    best = top_trials(storage=storage, name="t", count=2)
    assert len(best) == 2 and best[0] == summarize_study(storage=storage, name="t").best_params
    assert top_trials(storage=storage, name="elsewhere", count=2) == [] == top_trials(storage=storage, name="", count=2)
    create_study(storage=storage, name="u", budget=TuneBudget(trials=2, seconds=300), warm_start=best)
    run_worker(storage=storage, name="u", frame=rows, task=task, config=TuneConfig(num_boost_round=30))
    import optuna

    tried = [t.params for t in optuna.load_study(study_name="u", storage=open_storage(storage)).trials[:2]]
    assert tried == best  # enqueued in order, best first
