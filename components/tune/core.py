"""Hyperparameter tuning with Optuna: one study, shared by parallel workers, within a budget.

A study lives in a storage every worker reaches: a journal file locally (``journal:PATH`` or a
path ending in ``.log``), the chart's PostgreSQL (any SQLAlchemy URL) in a cluster. The study
records its budget (trials and a wall-clock deadline) when it is created; each worker asks for
trials until either is spent. Trial numbers are assigned by the storage, so a worker that draws
a number beyond the budget ends that trial unrun (state ``FAIL``, attribute ``over_budget``) and
stops: however many workers race, no more than the budgeted trials train.

Each trial trains LightGBM on the training rows and is scored by its validation log loss (the
rows ``train_model`` would hold out); the median pruner (or Hyperband) stops a trial whose loss
per boosting round trails the others'. A warm start enqueues the champion's parameters as the
first trial.
"""

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError, DataValidationError
from components.common.task import TaskSpec
from components.features.core import build_features, build_labels

__all__ = [
    "PRUNERS",
    "TuneBudget",
    "TuneConfig",
    "TuneSummary",
    "create_study",
    "open_storage",
    "run_worker",
    "summarize_study",
]

PRUNERS = ("median", "hyperband", "none")
_DEADLINE = "deadline"
_BUDGET = "budget_trials"


@dataclass(frozen=True)
class TuneBudget:
    """What a study may spend.

    Attributes:
        trials: Trials that train, over all workers.
        seconds: Wall-clock seconds from the study's creation; no trial starts after them.
    """

    trials: int = 40
    seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.seconds <= 0:
            raise ConfigError(f"a tuning budget needs at least 1 trial and some seconds, got {self}")


@dataclass(frozen=True)
class TuneConfig:
    """How each trial trains.

    Attributes:
        pruner: ``median``, ``hyperband`` or ``none``.
        num_boost_round: Boosting rounds per trial at most.
        early_stopping_rounds: Rounds without improvement before a trial stops on its own.
        valid_fraction: Share of rows held out to score trials (as ``train_model`` does).
        threads: LightGBM threads per trial: 1 when each worker has one core.
        seed: Seed of the sampler (per worker: seed + worker index) and of LightGBM.
    """

    pruner: str = "median"
    num_boost_round: int = 200
    early_stopping_rounds: int = 30
    valid_fraction: float = 0.2
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pruner not in PRUNERS:
            raise ConfigError(f"pruner={self.pruner!r}: use one of {PRUNERS}")


@dataclass(frozen=True)
class TuneSummary:
    """Where a study stands.

    Attributes:
        best_params: The best trial's LightGBM parameters.
        best_value: Its validation log loss.
        best_number: Its trial number.
        complete: Trials that ran to the end.
        pruned: Trials the pruner stopped.
        over_budget: Trials drawn beyond the budget and not run.
    """

    best_params: dict[str, Any]
    best_value: float
    best_number: int
    complete: int
    pruned: int
    over_budget: int


def open_storage(url: str) -> Any:
    """Open an Optuna storage: ``journal:PATH`` or ``PATH.log`` (a journal file), else a database URL."""
    import optuna

    if url.startswith("journal:") or url.endswith(".log"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return optuna.storages.RDBStorage(url)


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=10)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=10)
    return optuna.pruners.NopPruner()


def create_study(*, storage: str, name: str, budget: TuneBudget, warm_start: dict[str, Any] | None = None) -> str:
    """Create a study (or reuse one of that name) with its budget, and enqueue a warm start.

    Args:
        storage: Study storage (see ``open_storage``).
        name: Study name.
        budget: Trials and seconds the study may spend; its deadline starts now.
        warm_start: Parameters to try first (the champion's), enqueued once.

    Returns:
        The study name.
    """
    import optuna

    study = optuna.create_study(
        storage=open_storage(storage), study_name=name, direction="minimize", load_if_exists=True
    )
    if _DEADLINE not in study.user_attrs:
        study.set_user_attr(_DEADLINE, time.time() + budget.seconds)
        study.set_user_attr(_BUDGET, budget.trials)
        if warm_start:
            study.enqueue_trial(warm_start, skip_if_exists=True)
    return name


def _suggest(trial: Any) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def _pruning_callback(trial: Any) -> Any:
    """Report each round's validation log loss to the trial; stop it when the pruner says so."""
    import optuna

    def callback(env: Any) -> None:
        for data_name, metric, value, _ in env.evaluation_result_list:
            if data_name == "valid" and metric == "binary_logloss":
                trial.report(value, env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {env.iteration}")

    return callback


def run_worker(
    *, storage: str, name: str, frame: pd.DataFrame, task: TaskSpec, config: TuneConfig = TuneConfig(), worker: int = 0
) -> int:
    """Run trials of a study until its budget is spent.

    Args:
        storage: Study storage (see ``open_storage``).
        name: Study name (``create_study`` made it).
        frame: Validated training rows.
        task: The task.
        config: How trials train.
        worker: This worker's index (seeds its sampler apart from the others').

    Returns:
        Trials this worker ran (complete or pruned).

    Raises:
        DataValidationError: When the rows hold too few examples or one class.
    """
    import lightgbm as lgb
    import optuna
    from optuna.trial import TrialState

    from components.train.core import validation_rows

    labels = build_labels(frame, task)
    held = validation_rows(frame, task, config.valid_fraction)
    if len(frame) < 50 or labels[~held].nunique() < 2 or labels[held].nunique() < 2:
        raise DataValidationError(f"cannot tune {task.name!r} on {len(frame)} rows: need both classes on both sides")
    features = build_features(frame, task)
    # Built once for every trial; trials change min_data_in_leaf, so no feature is pre-filtered.
    train = lgb.Dataset(
        features[~held],
        labels[~held],
        categorical_feature=list(task.categorical),
        free_raw_data=False,
        params={"feature_pre_filter": False},
    )
    valid = lgb.Dataset(features[held], labels[held], reference=train)
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=config.seed + worker),
        pruner=_pruner(config.pruner),
    )
    deadline, trials = float(study.user_attrs[_DEADLINE]), int(study.user_attrs[_BUDGET])
    ran = 0
    while time.time() < deadline:
        trial = study.ask()
        if trial.number >= trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        params = {
            "objective": "binary",
            "metric": "binary_logloss",
            "seed": config.seed,
            "deterministic": True,
            "num_threads": config.threads,
            "verbosity": -1,
            **_suggest(trial),
        }
        try:
            booster = lgb.train(
                params,
                train,
                num_boost_round=config.num_boost_round,
                valid_sets=[valid],
                valid_names=["valid"],
                callbacks=[_pruning_callback(trial), lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
            )
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except Exception:
            study.tell(trial, state=TrialState.FAIL)  # never left RUNNING in the shared study
            raise
        else:
            trial.set_user_attr("best_iteration", int(booster.best_iteration))
            study.tell(trial, float(booster.best_score["valid"]["binary_logloss"]))
        ran += 1
    return ran


def summarize_study(*, storage: str, name: str) -> TuneSummary:
    """The best trial and the counts of a study.

    Raises:
        ConfigError: When no trial has completed.
    """
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {name!r} has no completed trial")
    best = min(complete, key=lambda t: t.value if t.value is not None else math.inf)
    return TuneSummary(
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else np.nan),
        best_number=best.number,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        over_budget=sum(bool(t.user_attrs.get("over_budget")) for t in trials),
    )
