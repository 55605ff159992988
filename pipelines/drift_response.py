"""The drift-response pipeline, run once per new batch.

ingest → check data quality → validate → fetch the champion (and the previous champion) →
detect drift → evaluate champion → decide (score both models on the batch, investigate the
incident, propose a response, rule on it under the safety policy, record it in the audit
ledger; a data-quality incident is never drift) → then, when the policy executes it:

* retrain: select window → tune (an Optuna study, warm-started from the champion, run by
  parallel workers; one trial, the champion's parameters, unless the strategist asked for
  tuning) → train with the best parameters → release the candidate;
* update: select window → continue the champion's trees on the window → release the candidate;
* recalibrate: move the champion's scores to the batch's prior → release the candidate;
* rollback: judge the previous champion on the decision's evidence (its verdict recorded on its
  version, its benefit in the knowledge base and the ledger) → if it passes: release it like a
  challenger (a canary beside the champion; ``champion`` moves back only if it is promoted);

where releasing a candidate is: register it as challenger (with its lineage and the incident)
→ gate (verdict recorded in MLflow; the candidate's measured benefit goes to the knowledge base
and the ledger) → if it passes: release (a canary beside the champion, promoted to champion or
rolled back).
"""

from typing import NamedTuple

from kfp import dsl

from components.common.images import SERVING_IMAGE
from components.decide.component import decide_response, record_outcome
from components.deploy.component import release_challenger
from components.drift.component import detect_data_drift
from components.evaluate.component import evaluate_model
from components.gate.component import gate_challenger, gate_rollback
from components.ingest.component import ingest_gdelt
from components.quality.component import check_data_quality
from components.register.component import fetch_champion, register_model_version
from components.train.component import (
    recalibrate_model,
    select_training_window,
    train_classifier,
    update_classifier,
)
from components.validate.component import validate_gdelt
from pipelines.tuning import tune_study


class DriftResponse(NamedTuple):
    """What one drift-response run concluded (the promotion outcome is read from the registry)."""

    batch_id: str
    rows: int
    drift: str
    batch_auc: float
    baseline_auc: float
    action: str
    reason: str
    kind: str
    tier: str
    incident: str


@dsl.pipeline(name="driftpilot-release-candidate")
def release_candidate(
    candidate: dsl.Input[dsl.Model],
    training_data: dsl.Input[dsl.Dataset],
    holdout: dsl.Input[dsl.Dataset],
    champion: dsl.Input[dsl.Model],
    decision: dsl.Input[dsl.Artifact],
    source_batches: str,
    incident: str,
    study: str,
    state_dir: str,
    tracking_uri: str,
    artifact_root: str,
    model_name: str,
    prefer_challenger: bool,
    canary_policy: str,
    serving_target: str,
    serving_dir: str,
    serving_port: int,
    serving_namespace: str,
    serving_image: str,
    serving_secret: str,
    serving_logger_url: str,
) -> str:
    """Register a candidate as challenger, gate it against the champion, and release it if it passes.

    Args:
        candidate: The candidate model folder.
        training_data: The rows it was fitted on (a sample becomes its drift reference).
        holdout: Rows neither model was fitted on, for the gate.
        champion: The champion's model folder.
        decision: The decision that asked for the candidate (its benefit is learnt from the gate).
        source_batches: The candidate's batches, comma-separated.
        incident: The incident's correlation id.
        study: The Optuna study of its parameters ('' for none).
        state_dir: Folder of the audit ledger and knowledge base.
        tracking_uri: MLflow tracking URI.
        artifact_root: MLflow artifact location for a new experiment.
        model_name: Registered model name.
        prefer_challenger: The gate also passes an equivalent candidate.
        canary_policy: The canary policy as JSON.
        serving_target: ``local``, ``kserve`` or ``kserve-raw``.
        serving_dir: Local target: the serving folder.
        serving_port: Local target: the clients' port.
        serving_namespace: KServe target: the namespace.
        serving_image: KServe target: the serving image.
        serving_secret: KServe target: the predictor's Secret.
        serving_logger_url: KServe target: the logger URL.

    Returns:
        The registered version.
    """
    register = register_model_version(
        model=candidate,
        training_data=training_data,
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        model_name=model_name,
        alias="challenger",
        source_batches=source_batches,
        pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        incident=incident,
        study=study,
    )
    gate = gate_challenger(
        champion=champion,
        challenger=candidate,
        holdout=holdout,
        tracking_uri=tracking_uri,
        model_name=model_name,
        version=register.output,
        prefer_challenger=prefer_challenger,
    )
    record_outcome(
        decision=decision,
        gate_result=gate.outputs["result"],
        state_dir=state_dir,
        serving_dir=serving_dir,
        version=register.output,
    )
    with dsl.If(gate.outputs["Output"] == True, name="release"):  # noqa: E712 (a KFP condition)
        release_challenger(
            tracking_uri=tracking_uri,
            model_name=model_name,
            version=register.output,
            canary_policy=canary_policy,
            target=serving_target,
            serving_dir=serving_dir,
            port=serving_port,
            namespace=serving_namespace,
            image=serving_image,
            env_secret=serving_secret,
            logger_url=serving_logger_url,
            holder=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            incident=incident,
            state_dir=state_dir,
        )
    return register.output


@dsl.pipeline(
    name="driftpilot-drift-response",
    description="Check a new GDELT batch; retrain, update, recalibrate or roll back, and release, if warranted.",
)
def drift_response_pipeline(
    source: str,
    lake_dir: str,
    tracking_uri: str,
    artifact_root: str,
    serving_dir: str,
    study_storage: str,
    batch_id: str = "latest",
    incident: str = "",
    model_name: str = "gdelt-tone",
    task: str = "gdelt-tone",
    fdr_q: float = 0.05,
    drift_share: float = 0.25,
    evidently: str = "on-drift",
    multivariate: bool = True,
    state_dir: str = "",
    safety_policy: str = "",
    alert_webhooks: str = "",
    alpha: float = 0.01,
    min_drop: float = 0.02,
    severe_drop: float = 0.08,
    prefer_update: bool = False,
    min_rows: int = 200,
    window_batches: int = 96,
    holdout_fraction: float = 0.3,
    algorithm: str = "lightgbm",
    tune_workers: list = [0, 1],  # noqa: B006 (a KFP pipeline parameter's default)
    tune_trials: int = 8,
    tune_seconds: float = 300.0,
    prefer_challenger: bool = False,
    seed: int = 42,
    serving_port: int = 0,
    canary_policy: str = "{}",
    serving_target: str = "local",
    serving_namespace: str = "",
    serving_image: str = SERVING_IMAGE,
    serving_secret: str = "",
    serving_logger_url: str = "",
    ingest_workers: int = 0,
    dask_cluster: str = "local",
) -> DriftResponse:
    """Respond to one new batch: detect drift, measure the champion, decide, maybe act and release.

    Args:
        source: GDELT feed base URL, ``s3://`` prefix or local folder of export files.
        lake_dir: The lake: a local folder or ``s3://bucket/prefix``.
        tracking_uri: MLflow tracking URI.
        artifact_root: MLflow artifact location for a new experiment ('' lets the server choose).
        serving_dir: Folder of the local model server's state.
        study_storage: Optuna storage the tuning workers share (a journal file locally, the
            chart's database in a cluster); each run's study is named after the run.
        batch_id: The new batch, ``YYYYMMDDHHMMSS``, or ``latest`` for the source's newest
            (``lastupdate.txt`` on a GDELT feed), which is what a recurring run asks for.
        incident: The incident the run responds to, when the coordinator started it for an
            online drift alarm ('': the batch's own, ``<model_name>-<batch>``); the correlation
            id in the ledger, the Optuna study, MLflow tags and InferenceService annotations.
        model_name: Registered model name.
        task: Built-in task name or task YAML path.
        fdr_q: False-discovery rate across the feature drift tests.
        drift_share: Share of drifted features that makes the dataset drifted.
        evidently: When to render Evidently's HTML report: ``always``, ``on-drift`` or ``never``.
        multivariate: Also test for multivariate drift with a domain classifier.
        state_dir: Folder of the audit ledger, pending approvals, knowledge base and incident
            log ('' for ``audit`` beside ``serving_dir``).
        safety_policy: The safety policy: a YAML file path or YAML text ('' for the built-in
            default; the chart passes its ConfigMap's content).
        alert_webhooks: Comma-separated ``slack=URL`` / ``generic=URL`` ('' for none).
        alpha: Level of the investigator's loss and prior-shift tests.
        min_drop: The smallest AUC drop (below the champion's record) that counts as a loss.
        severe_drop: An AUC drop at or above which the retrain is tuned.
        prefer_update: A loss below ``severe_drop`` gets an incremental update (the champion's
            trees continued on the training window) rather than a retrain.
        min_rows: Batches with fewer valid rows are not acted on.
        window_batches: Validated batches in the retraining window (96: a day of GDELT's 15-minute
            batches), the current one included.
        holdout_fraction: Share of the batch held out for the promotion gate.
        algorithm: ``lightgbm`` or ``catboost``.
        tune_workers: One index per tuning worker; each runs as its own step (a pod in a cluster).
        tune_trials: Trials of the study, over all workers (1: only the champion's parameters).
        tune_seconds: Wall-clock budget of the study.
        prefer_challenger: The gate also promotes a challenger that is equivalent (non-inferior),
            not only a better one.
        seed: Training seed.
        serving_port: Port clients call the served model on (0 picks a free one).
        canary_policy: JSON object of canary policy fields (``steps``, ``min_requests``,
            margins, ``step_timeout_s``); ``{}`` keeps the defaults. A released challenger (or
            the previous champion, on a rollback) takes live traffic in steps and is rolled back
            when it is worse than the champion.
        serving_target: ``local`` (model servers behind a splitter in ``serving_dir``),
            ``kserve`` (a canary on the InferenceService named after the model in
            ``serving_namespace``; KServe's Serverless mode) or ``kserve-raw`` (that
            InferenceService in KServe's RawDeployment mode: the canary runs on pods of its own
            behind the predictor's Service, then KServe's pods are rolled to the promoted model).
        serving_namespace: KServe target: the InferenceService's namespace.
        serving_image: KServe target: the serving image.
        serving_secret: KServe target: Secret with the predictor's environment
            (``MLFLOW_TRACKING_URI``, S3 credentials).
        serving_logger_url: KServe target: where KServe's logger posts requests and responses
            (the drift monitor); '' for none.
        ingest_workers: Dask workers (0: ingest the one batch in the step's own pod).
        dask_cluster: ``local``, ``kubernetes`` (Dask operator) or a scheduler address.

    Returns:
        The batch, its drift summary, the champion's AUC on it, and the decision: the action
        that ran, why, the incident's kind, the safety policy's tier and the incident's id.
    """
    ingest = ingest_gdelt(
        source=source,
        lake_dir=lake_dir,
        since=batch_id,
        until=batch_id,
        workers=ingest_workers,
        cluster=dask_cluster,
    )
    batch = ingest.outputs["Output"]
    quality = check_data_quality(lake_dir=lake_dir, batch_id=batch)
    validate = validate_gdelt(raw=ingest.outputs["raw"], batch_id=batch, lake_dir=lake_dir)
    champion = fetch_champion(tracking_uri=tracking_uri, model_name=model_name)
    drift = detect_data_drift(
        reference=champion.outputs["reference"],
        batch=validate.outputs["valid"],
        model=champion.outputs["model"],
        task=task,
        fdr_q=fdr_q,
        drift_share=drift_share,
        evidently=evidently,
        multivariate=multivariate,
    )
    evaluate = evaluate_model(model=champion.outputs["model"], data=validate.outputs["valid"])
    decide = decide_response(
        model=champion.outputs["model"],
        previous_model=champion.outputs["previous"],
        data=validate.outputs["valid"],
        drift_report=drift.outputs["report"],
        baseline_scores=champion.outputs["baseline"],
        quality_report=quality.outputs["report"],
        model_name=model_name,
        batch_id=batch,
        incident=incident,
        state_dir=state_dir,
        serving_dir=serving_dir,
        safety_policy=safety_policy,
        alpha=alpha,
        min_drop=min_drop,
        severe_drop=severe_drop,
        prefer_update=prefer_update,
        champion_version=champion.outputs["version"],
        window_batches=window_batches,
        min_rows=min_rows,
        tune_trials=tune_trials,
        alert_webhooks=alert_webhooks,
        run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    correlation = decide.outputs["incident"]
    serving = {
        "decision": decide.outputs["decision"],
        "state_dir": state_dir,
        "tracking_uri": tracking_uri,
        "artifact_root": artifact_root,
        "model_name": model_name,
        "prefer_challenger": prefer_challenger,
        "canary_policy": canary_policy,
        "serving_target": serving_target,
        "serving_dir": serving_dir,
        "serving_port": serving_port,
        "serving_namespace": serving_namespace,
        "serving_image": serving_image,
        "serving_secret": serving_secret,
        "serving_logger_url": serving_logger_url,
    }
    with dsl.If(decide.outputs["Output"] == "retrain", name="retrain"):
        window = select_training_window(
            lake_dir=lake_dir,
            batch_id=batch,
            task=task,
            window_batches=decide.outputs["window_batches"],
            holdout_fraction=holdout_fraction,
        ).after(validate)
        tuned = tune_study(
            data=window.outputs["train_data"],
            study_storage=study_storage,
            study_name=correlation,
            task=task,
            workers=tune_workers,
            trials=decide.outputs["trials"],
            seconds=tune_seconds,
            pruner="median",
            seed=seed,
            warm_start=champion.outputs["params"],
            algorithm=algorithm,
        )
        train = train_classifier(
            data=window.outputs["train_data"], task=task, seed=seed, algorithm=algorithm, params=tuned.output
        )
        release_candidate(
            candidate=train.outputs["model"],
            training_data=window.outputs["train_data"],
            holdout=window.outputs["holdout"],
            champion=champion.outputs["model"],
            source_batches=window.outputs["batches"],
            incident=correlation,
            study=correlation,
            **serving,
        )
    with dsl.If(decide.outputs["Output"] == "update", name="update"):
        window = select_training_window(
            lake_dir=lake_dir,
            batch_id=batch,
            task=task,
            window_batches=window_batches,
            holdout_fraction=holdout_fraction,
        ).after(validate)
        updated = update_classifier(champion=champion.outputs["model"], data=window.outputs["train_data"], seed=seed)
        release_candidate(
            candidate=updated.outputs["model"],
            training_data=window.outputs["train_data"],
            holdout=window.outputs["holdout"],
            champion=champion.outputs["model"],
            source_batches=window.outputs["batches"],
            incident=correlation,
            study="",
            **serving,
        )
    with dsl.If(decide.outputs["Output"] == "recalibrate", name="recalibrate"):
        recalibrated = recalibrate_model(
            champion=champion.outputs["model"], data=validate.outputs["valid"], holdout_fraction=holdout_fraction
        )
        release_candidate(
            candidate=recalibrated.outputs["model"],
            training_data=champion.outputs["reference"],
            holdout=recalibrated.outputs["holdout"],
            champion=champion.outputs["model"],
            source_batches=batch,
            incident=correlation,
            study="",
            **serving,
        )
    with dsl.If(decide.outputs["Output"] == "rollback", name="rollback"):
        previous = champion.outputs["previous_version"]
        verdict = gate_rollback(
            decision=decide.outputs["decision"],
            tracking_uri=tracking_uri,
            model_name=model_name,
            champion_version=champion.outputs["version"],
            version=previous,
        )
        record_outcome(
            decision=decide.outputs["decision"],
            gate_result=verdict.outputs["result"],
            state_dir=state_dir,
            serving_dir=serving_dir,
            version=previous,
        )
        with dsl.If(verdict.outputs["Output"] == True, name="release-previous"):  # noqa: E712 (a KFP condition)
            release_challenger(
                tracking_uri=tracking_uri,
                model_name=model_name,
                version=previous,
                canary_policy=canary_policy,
                target=serving_target,
                serving_dir=serving_dir,
                port=serving_port,
                namespace=serving_namespace,
                image=serving_image,
                env_secret=serving_secret,
                logger_url=serving_logger_url,
                holder=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                incident=correlation,
                state_dir=state_dir,
            )
    return DriftResponse(
        batch_id=batch,
        rows=validate.outputs["rows_valid"],
        drift=drift.outputs["summary"],
        batch_auc=evaluate.outputs["Output"],
        baseline_auc=champion.outputs["baseline_auc"],
        action=decide.outputs["action"],
        reason=decide.outputs["reason"],
        kind=decide.outputs["kind"],
        tier=decide.outputs["tier"],
        incident=correlation,
    )
