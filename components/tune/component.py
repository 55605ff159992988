"""KFP wrappers of the tuning stage: create a study, run a worker, select the best trial."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def create_tuning_study(storage: str, study_name: str, trials: int, seconds: float, warm_start: str) -> str:
    """Create the Optuna study the workers share, with its budget and an optional warm start.

    Args:
        storage: Study storage: ``journal:PATH`` / ``PATH.log`` locally, a database URL in a cluster.
        study_name: Study name (reused when it exists).
        trials: Trials that train, over all workers.
        seconds: Wall-clock seconds from now after which no trial starts.
        warm_start: The champion's parameters as JSON, tried first ('' for none).

    Returns:
        The study name.
    """
    import json

    from components.tune.core import TuneBudget, create_study

    params = json.loads(warm_start) if warm_start else None
    return create_study(storage=storage, name=study_name, budget=TuneBudget(trials, seconds), warm_start=params)


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def tune_worker(
    data: Input[Dataset], storage: str, study_name: str, task: str, worker: int, pruner: str, seed: int
) -> int:
    """Run trials of the shared study on the training rows until its budget is spent.

    Args:
        data: Validated training rows (Parquet).
        storage: Study storage.
        study_name: Study name.
        task: Built-in task name or task YAML path.
        worker: This worker's index (seeds its sampler).
        pruner: ``median``, ``hyperband`` or ``none``.
        seed: Base seed of samplers and LightGBM.

    Returns:
        Trials this worker ran.
    """
    from pathlib import Path

    from components.common.storage import read_table
    from components.common.task import load_task
    from components.tune.core import TuneConfig, run_worker

    config = TuneConfig(pruner=pruner, seed=seed)
    frame = read_table(Path(data.path))
    return run_worker(
        storage=storage, name=study_name, frame=frame, task=load_task(task), config=config, worker=int(worker)
    )


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def select_best_params(
    storage: str, study_name: str, worker_trials: list, summary: Output[Artifact], metrics: Output[Metrics]
) -> str:
    """Read the study's best trial, once every worker is done.

    Args:
        storage: Study storage.
        study_name: Study name.
        worker_trials: Trials each worker ran.
        summary: The study summary (JSON): best parameters and value, trial counts.
        metrics: Best validation log loss and trial counts.

    Returns:
        The best parameters as JSON.
    """
    import json
    from dataclasses import asdict
    from pathlib import Path

    from components.common.storage import write_json
    from components.tune.core import summarize_study

    result = summarize_study(storage=storage, name=study_name)
    write_json(asdict(result), Path(summary.path))
    metrics.log_metric("best_log_loss", result.best_value)
    metrics.log_metric("complete", result.complete)
    metrics.log_metric("pruned", result.pruned)
    metrics.log_metric("workers", len(worker_trials))
    metrics.log_metric("worker_trials", sum(int(n) for n in worker_trials))
    return json.dumps(result.best_params, sort_keys=True)
