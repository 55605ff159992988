"""KFP wrappers of the tuning stage: create a study, run a worker, select the best trial."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def create_tuning_study(
    storage: str,
    study_name: str,
    trials: int,
    seconds: float,
    warm_start: str,
    study: Output[Artifact],
    algorithm: str = "lightgbm",
) -> str:
    """Create the Optuna study the workers share, with its budget and an optional warm start.

    Args:
        storage: Study storage: ``journal:PATH`` / ``PATH.log`` locally, a database URL in a cluster.
        study_name: Study name (reused when it exists).
        trials: Trials that train, over all workers.
        seconds: Wall-clock seconds from now after which no trial starts.
        warm_start: The champion's training parameters as JSON, tried first when it used the
            same library, then the best 5 trials of the study named under ``study`` ('' for none).
        study: The study's name (JSON ``{"name": ...}``) for the workers: an artifact reaches
            the tasks of a ``ParallelFor`` intact on every runner (kfp.local 2.17 hands them the
            loop item in place of an upstream parameter, and the iteration's name for a run-name
            placeholder).
        algorithm: ``lightgbm`` or ``catboost``.

    Returns:
        The study name.
    """
    import json
    from pathlib import Path

    from components.common.storage import write_json
    from components.tune.core import TuneBudget, create_study, top_trials, warm_start_params

    champion = json.loads(warm_start) if warm_start else {}
    first = warm_start_params(algorithm, champion) if champion else None
    # Then the best trials of the study the champion came from, when it tuned the same library.
    earlier = top_trials(storage=storage, name=champion.get("study", ""), count=5) if first else []
    warm = [first, *(p for p in earlier if p != first)] if first else []
    create_study(storage=storage, name=study_name, budget=TuneBudget(trials, seconds), warm_start=warm)
    write_json({"name": study_name}, Path(study.path))
    return study_name


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def tune_worker(
    data: Input[Dataset],
    study: Input[Artifact],
    storage: str,
    task: str,
    worker: int,
    pruner: str,
    seed: int,
    algorithm: str = "lightgbm",
) -> int:
    """Run trials of the shared study on the training rows until its budget is spent.

    Args:
        data: Validated training rows (Parquet).
        study: The study to tune (``create_tuning_study``'s ``study``).
        storage: Study storage.
        task: Built-in task name or task YAML path.
        worker: This worker's index (seeds its sampler).
        pruner: ``median``, ``hyperband`` or ``none``.
        seed: Base seed of samplers and the library.
        algorithm: ``lightgbm`` or ``catboost``.

    Returns:
        Trials this worker ran.
    """
    from pathlib import Path

    from components.common.storage import read_json, read_table
    from components.common.task import load_task
    from components.tune.core import TuneConfig, run_worker

    config = TuneConfig(algorithm=algorithm, pruner=pruner, seed=seed)
    frame = read_table(Path(data.path))
    return run_worker(
        storage=storage,
        name=read_json(Path(study.path))["name"],
        frame=frame,
        task=load_task(task),
        config=config,
        worker=int(worker),
    )


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def select_best_params(
    storage: str,
    study_name: str,
    worker_trials: list,
    summary: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> str:
    """Read the study's best trial, once every worker is done.

    Args:
        storage: Study storage.
        study_name: Study name.
        worker_trials: Trials each worker ran.
        summary: The study summary (JSON): best parameters and value, trial counts, importances.
        report: The summary and the parameter-importance bars (HTML, for the KFP UI).
        metrics: Best validation log loss and trial counts.

    Returns:
        The best parameters as JSON.
    """
    import json
    from dataclasses import asdict
    from pathlib import Path

    from components.common.storage import write_json
    from components.tune.core import study_report, summarize_study

    result = summarize_study(storage=storage, name=study_name)
    write_json(asdict(result), Path(summary.path))
    Path(report.path).write_text(study_report(result, study_name), encoding="utf-8")
    metrics.log_metric("best_log_loss", result.best_value)
    metrics.log_metric("complete", result.complete)
    metrics.log_metric("pruned", result.pruned)
    metrics.log_metric("workers", len(worker_trials))
    metrics.log_metric("worker_trials", sum(int(n) for n in worker_trials))
    return json.dumps(result.best_params, sort_keys=True)
