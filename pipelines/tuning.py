"""Tuning: one Optuna study, tuned by parallel workers, within a budget.

``tune_study`` (create study → ParallelFor(workers): tune worker → select best) is the part the
drift response nests; ``tuning_pipeline`` runs it on a batch's training window on its own.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.train.component import select_training_window
from components.tune.component import create_tuning_study, select_best_params, tune_worker


@dsl.pipeline(name="driftpilot-tune-study", description="One Optuna study tuned by parallel workers.")
def tune_study(
    data: Input[Dataset],
    study_storage: str,
    study_name: str,
    task: str,
    workers: list,
    trials: int,
    seconds: float,
    pruner: str,
    seed: int,
    warm_start: str,
    algorithm: str,
) -> str:
    """Create a study, let the workers tune it in parallel, and return its best parameters as JSON.

    Args:
        data: Validated training rows.
        study_storage: Optuna storage the workers share (a journal file locally, the chart's
            database in a cluster).
        study_name: Study name (a nesting pipeline passes its run's name).
        task: Built-in task name or task YAML path.
        workers: One index per worker; each runs as its own step (a pod in a cluster).
        trials: Trials that train, over all workers.
        seconds: Wall-clock budget of the study.
        pruner: ``median``, ``hyperband`` or ``none``.
        seed: Base seed.
        warm_start: The champion's training parameters as JSON, tried first ('' for none).
        algorithm: ``lightgbm`` or ``catboost``.

    Returns:
        The best parameters as JSON.
    """
    study = create_tuning_study(
        storage=study_storage,
        study_name=study_name,
        trials=trials,
        seconds=seconds,
        warm_start=warm_start,
        algorithm=algorithm,
    )
    with dsl.ParallelFor(items=workers, name="tune-workers") as worker:
        tuned = tune_worker(
            data=data,
            study=study.outputs["study"],
            storage=study_storage,
            task=task,
            worker=worker,
            pruner=pruner,
            seed=seed,
            algorithm=algorithm,
        )
    # Collecting every worker's count makes the selection wait for all of them.
    best = select_best_params(
        storage=study_storage, study_name=study.outputs["Output"], worker_trials=dsl.Collected(tuned.output)
    )
    return best.outputs["Output"]


@dsl.pipeline(
    name="driftpilot-tuning", description="Tune LightGBM or CatBoost on the recent window with parallel workers."
)
def tuning_pipeline(
    lake_dir: str,
    batch_id: str,
    study_storage: str,
    study_name: str,
    task: str = "gdelt-tone",
    window_batches: int = 4,
    holdout_fraction: float = 0.3,
    workers: list = [0, 1],  # noqa: B006 (a KFP pipeline parameter's default)
    trials: int = 20,
    seconds: float = 600.0,
    pruner: str = "median",
    seed: int = 0,
    warm_start: str = "",
    algorithm: str = "lightgbm",
) -> str:
    """Tune on the training window of a batch; return the best parameters as JSON.

    Args:
        lake_dir: The lake holding validated batches.
        batch_id: The current batch.
        study_storage: Optuna storage the workers share (a journal file locally, the chart's
            database in a cluster).
        study_name: Study name.
        task: Built-in task name or task YAML path.
        window_batches: Batches in the training window, the current one included.
        holdout_fraction: Share of the current batch kept out (for the promotion gate).
        workers: One index per worker; each runs as its own step (a pod in a cluster).
        trials: Trials that train, over all workers.
        seconds: Wall-clock budget of the study.
        pruner: ``median``, ``hyperband`` or ``none``.
        seed: Base seed.
        warm_start: The champion's training parameters as JSON, tried first ('' for none).
        algorithm: ``lightgbm`` or ``catboost``.

    Returns:
        The best parameters as JSON.
    """
    window = select_training_window(
        lake_dir=lake_dir,
        batch_id=batch_id,
        task=task,
        window_batches=window_batches,
        holdout_fraction=holdout_fraction,
    )
    tuned = tune_study(
        data=window.outputs["train_data"],
        study_storage=study_storage,
        study_name=study_name,
        task=task,
        workers=workers,
        trials=trials,
        seconds=seconds,
        pruner=pruner,
        seed=seed,
        warm_start=warm_start,
        algorithm=algorithm,
    )
    return tuned.output
