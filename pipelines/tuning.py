"""The tuning sub-pipeline: one Optuna study, tuned by parallel workers, within a budget.

select window → create study → ParallelFor(workers): tune worker → select best.
"""

from kfp import dsl

from components.train.component import select_training_window
from components.tune.component import create_tuning_study, select_best_params, tune_worker


@dsl.pipeline(name="driftpilot-tuning", description="Tune LightGBM on the recent window with parallel workers.")
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
        warm_start: The champion's parameters as JSON, tried first ('' for none).

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
    study = create_tuning_study(
        storage=study_storage, study_name=study_name, trials=trials, seconds=seconds, warm_start=warm_start
    )
    with dsl.ParallelFor(items=workers, name="tune-workers") as worker:
        # The study's name is the parameter, not the creating step's output: kfp.local (2.17)
        # substitutes the loop item for an upstream output inside a ParallelFor.
        tuned = tune_worker(
            data=window.outputs["train_data"],
            storage=study_storage,
            study_name=study_name,
            task=task,
            worker=worker,
            pruner=pruner,
            seed=seed,
        ).after(study)
    # Collecting every worker's count makes the selection wait for all of them.
    best = select_best_params(storage=study_storage, study_name=study_name, worker_trials=dsl.Collected(tuned.output))
    return best.outputs["Output"]
