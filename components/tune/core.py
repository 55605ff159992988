"""Hyperparameter tuning with Optuna: one study, shared by parallel workers, within a budget.

A study lives in a storage every worker reaches: a journal file locally (``journal:PATH`` or a
path ending in ``.log``), the chart's PostgreSQL (any SQLAlchemy URL) in a cluster. The study
records its budget (trials and a wall-clock deadline) when it is created; each worker asks for
trials until either is spent. Trial numbers are assigned by the storage, so a worker that draws
a number beyond the budget ends that trial unrun (state ``FAIL``, attribute ``over_budget``) and
stops: however many workers race, no more than the budgeted trials train.

Each trial trains LightGBM or CatBoost (``components.train.trainers``) on the training rows and
is scored by its validation log loss (the rows ``train_model`` would hold out, undersampled as
it would); the median pruner (or Hyperband) stops a trial whose loss per boosting round trails
the others'. A warm start enqueues the champion's parameters as the first trial.
"""

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError
from components.common.task import TaskSpec
from components.features.core import build_features

__all__ = [
    "PRUNERS",
    "TuneBudget",
    "TuneConfig",
    "TuneSummary",
    "create_study",
    "open_storage",
    "run_worker",
    "study_report",
    "summarize_study",
    "top_trials",
    "warm_start_params",
]

PRUNERS = ("median", "hyperband", "none")
_DEADLINE = "deadline"
_BUDGET = "budget_trials"
_WARM = "warm_start"
_STARTUP_TRIALS = 10
"""Random trials before TPE models the losses (Optuna's default)."""


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
        algorithm: ``lightgbm`` or ``catboost``.
        pruner: ``median``, ``hyperband`` or ``none``.
        num_boost_round: Boosting rounds per trial at most.
        early_stopping_rounds: Rounds without improvement before a trial stops on its own.
        valid_fraction: Share of rows held out to score trials (as ``train_model`` does).
        threads: LightGBM threads per trial: 1 when each worker has one core.
        seed: Seed of the sampler (per worker: seed + worker index) and of LightGBM.
    """

    algorithm: str = "lightgbm"
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
        best_params: The best trial's library parameters.
        best_value: Its validation log loss.
        best_number: Its trial number.
        complete: Trials that ran to the end.
        pruned: Trials the pruner stopped.
        over_budget: Trials drawn beyond the budget and not run.
        importance: Each tuned parameter's share of the variance of the loss (Optuna's fANOVA);
            empty with fewer than two complete trials.
    """

    best_params: dict[str, Any]
    best_value: float
    best_number: int
    complete: int
    pruned: int
    over_budget: int
    importance: dict[str, float]


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


def create_study(*, storage: str, name: str, budget: TuneBudget, warm_start: list[dict[str, Any]] | None = None) -> str:
    """Create a study (or reuse one of that name) with its budget, and enqueue a warm start.

    Args:
        storage: Study storage (see ``open_storage``).
        name: Study name.
        budget: Trials and seconds the study may spend; its deadline starts now.
        warm_start: Parameter sets to try first, in order (the champion's, then the best trials
            of the study it came from), enqueued once.

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
        study.set_user_attr(_WARM, bool(warm_start))
        for params in warm_start or []:
            study.enqueue_trial(params, skip_if_exists=True)
    return name


class _SpaceRecorder:
    """Stands in for an Optuna trial to list the names a trainer's search space draws."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def suggest_float(self, name: str, low: float, high: float, **_: Any) -> float:
        self.names.append(name)
        return low

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        self.names.append(name)
        return low


def warm_start_params(algorithm: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The champion's values of the parameters a study of ``algorithm`` tunes, if it has them all.

    Args:
        algorithm: The study's library.
        params: The champion's training parameters (its ``params.json``).

    Returns:
        The parameters to enqueue, or None when the champion used another library or lacks one.
    """
    from components.train.trainers import get_trainer

    if params.get("algorithm", "lightgbm") != algorithm:
        return None
    recorder = _SpaceRecorder()
    get_trainer(algorithm).suggest(recorder)
    picked = {name: params[name] for name in recorder.names if name in params}
    return picked if len(picked) == len(recorder.names) else None


_SHRINKAGE_STEP = 0.05
"""Pruning compares trials at equal cumulative shrinkage (rounds × learning rate), one step per 0.05."""


def top_trials(*, storage: str, name: str, count: int) -> list[dict[str, Any]]:
    """The parameters of a study's best complete trials, best first (none when there is no such study).

    Args:
        storage: Study storage.
        name: Study name ('' for none).
        count: Trials to return at most.

    Returns:
        Up to ``count`` parameter sets.
    """
    import optuna
    from optuna.trial import TrialState

    if not name:
        return []
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:  # the champion's study lives in another storage, or was deleted
        return []
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return [dict(t.params) for t in sorted(done, key=lambda t: float(t.value or math.inf))[:count]]


def _reporter(trial: Any, learning_rate: float) -> Any:
    """Report the validation log loss to the trial at each step of cumulative shrinkage; prune when told.

    Boosting at learning rate 0.01 needs ten times the rounds of 0.1 to make the same progress;
    compared round by round, slow learners trail early and get pruned, though they are often
    the best. Steps of cumulative shrinkage compare trials at equal progress instead.
    """
    import optuna

    last = -1

    def on_round(iteration: int, value: float) -> None:
        nonlocal last
        step = int((iteration + 1) * learning_rate / _SHRINKAGE_STEP + 1e-9)
        if step == last:
            return
        last = step
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at round {iteration} (shrinkage step {step})")

    return on_round


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
    import optuna
    from optuna.trial import TrialState

    from components.train.core import training_rows
    from components.train.trainers import get_trainer

    rows = training_rows(frame, task, config.valid_fraction)
    features, labels = build_features(frame, task), rows.labels
    trainer = get_trainer(config.algorithm)
    # Built once for every trial.
    data = trainer.prepare(
        (features[rows.fit], labels[rows.fit]), (features[rows.stop], labels[rows.stop]), task.categorical
    )
    study = optuna.load_study(
        study_name=name,
        storage=open_storage(storage),
        pruner=_pruner(config.pruner),
    )
    deadline, trials = float(study.user_attrs[_DEADLINE]), int(study.user_attrs[_BUDGET])
    # Anchored on the champion's trial, a warm-started study's TPE models the losses after 3 random draws.
    startup = 3 if study.user_attrs.get(_WARM) else _STARTUP_TRIALS
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + worker, n_startup_trials=startup)
    ran = 0
    while time.time() < deadline:
        trial = study.ask()
        if trial.number >= trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        params = trainer.suggest(trial)
        # Without a pruner, reports would only be writes to the shared storage.
        reporter = _reporter(trial, float(params["learning_rate"])) if config.pruner != "none" else None
        try:
            fitted = trainer.fit(
                data,
                params,
                rounds=config.num_boost_round,
                early_stopping=config.early_stopping_rounds,
                seed=config.seed,
                threads=config.threads,
                on_round=reporter,
            )
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except Exception:
            study.tell(trial, state=TrialState.FAIL)  # never left RUNNING in the shared study
            raise
        else:
            trial.set_user_attr("best_iteration", fitted.best_iteration)
            study.tell(trial, fitted.valid_log_loss)
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
    importance: dict[str, float] = {}
    if len(complete) >= 2:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        importance = {
            k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()
        }
    return TuneSummary(
        best_params=dict(best.params),
        best_value=float(best.value if best.value is not None else np.nan),
        best_number=best.number,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        over_budget=sum(bool(t.user_attrs.get("over_budget")) for t in trials),
        importance=importance,
    )


def study_report(summary: TuneSummary, name: str) -> str:
    """An HTML page of a study for the KFP UI: the counts, the best trial and the parameter importances.

    Args:
        summary: The study's summary.
        name: The study's name.

    Returns:
        A self-contained HTML page (bars drawn in CSS, no script).
    """
    from html import escape

    bars = "".join(
        f"<tr><td>{escape(param)}</td><td><div style='background:#4477aa;height:1em;width:{share * 300:.0f}px'>"
        f"</div></td><td>{share:.1%}</td></tr>"
        for param, share in summary.importance.items()
    )
    best = "".join(f"<tr><td>{escape(k)}</td><td>{v:.4g}</td></tr>" for k, v in summary.best_params.items())
    return (
        f"<html><head><meta charset='utf-8'><title>{escape(name)}</title></head><body style='font-family:sans-serif'>"
        f"<h2>Optuna study {escape(name)}</h2>"
        f"<p>{summary.complete} complete, {summary.pruned} pruned, {summary.over_budget} over budget; "
        f"best validation log loss {summary.best_value:.5f} (trial {summary.best_number}).</p>"
        f"<h3>Parameter importance (fANOVA)</h3><table>{bars or '<tr><td>fewer than two complete trials</td></tr>'}"
        f"</table><h3>Best parameters</h3><table>{best}</table></body></html>"
    )
