"""KFP wrapper of the decide stage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def decide_response(
    model: Input[Model],
    previous_model: Input[Model],
    data: Input[Dataset],
    drift_report: Input[Artifact],
    baseline_scores: Input[Artifact],
    quality_report: Input[Artifact],
    model_name: str,
    batch_id: str,
    incident: str,
    state_dir: str,
    serving_dir: str,
    safety_policy: str,
    alpha: float,
    min_drop: float,
    severe_drop: float,
    min_rows: int,
    tune_trials: int,
    alert_webhooks: str,
    run: str,
    investigation: Output[Artifact],
    decision: Output[Artifact],
    prefer_update: bool = False,
    champion_version: str = "",
    window_batches: int = 96,
) -> NamedTuple(
    "Decision",
    [
        ("Output", str),
        ("action", str),
        ("reason", str),
        ("kind", str),
        ("tier", str),
        ("incident", str),
        ("trials", int),
        ("window_batches", int),
    ],
):
    """Investigate the batch's incident, propose a response, rule on it under the safety policy.

    Args:
        model: The champion's model folder.
        previous_model: The previous champion's model folder (``fetch_champion``'s, holding only
            ``absent.json`` when there is none): scored on the batch, it is what a rollback is worth.
        data: The batch's validated rows.
        drift_report: The drift stage's JSON report.
        baseline_scores: The champion's validation metrics (JSON): its record.
        quality_report: The ingestion-anomaly agent's report (JSON); an incident is never drift.
        model_name: The registered model; with the batch it names the incident (the correlation
            id of the ledger, the Optuna study, MLflow tags and InferenceService annotations).
        batch_id: The batch (``YYYYMMDDHHMMSS``): the time the policy rules at.
        incident: The incident the run was started for ('': one named after the model and batch).
        state_dir: Folder of the audit ledger, approvals, knowledge base and incident log ('':
            ``audit`` beside ``serving_dir``, as the CLI's home lays it out).
        serving_dir: The local serving folder.
        safety_policy: The safety policy: a YAML file path or YAML text ('' for the default).
        alpha: Level of the loss and prior-shift tests.
        min_drop: The smallest AUC drop that counts as a loss.
        severe_drop: An AUC drop at or above which a retrain is tuned.
        min_rows: Fewer labelled rows are too few to act on.
        tune_trials: Trials of a tuning study (1: tuning is never proposed).
        alert_webhooks: Comma-separated ``slack=URL`` / ``generic=URL`` ('' for none).
        run: The KFP run deciding (kept on the ledger's ``decided`` entry, beside the incident).
        investigation: The investigation (JSON): kind, causes, segments, impact.
        decision: The decision (JSON): proposal, ruling and reasons.
        prefer_update: A measured loss below ``severe_drop`` gets an incremental update of the
            champion (more trees on recent rows) rather than a retrain.
        champion_version: The champion's version: the evidence on the value of retraining is
            carried between runs for it ('': none is, and a significant loss retrains).
        window_batches: The retraining window's batches (a volume retrain's window).

    Returns:
        The route (``Output``: ``retrain`` for a retrain or a tuned retrain, ``update``,
        ``recalibrate``, ``rollback``, or ``none``; kfp.local 2.17 resolves ``dsl.If`` conditions
        only on outputs named so), the action that runs now (``none`` unless the policy executes the
        proposal), its reason, the incident's kind, the ruling's tier, the incident's id, the
        trials the retrain's study runs (``tune_trials`` for a tuned retrain, else 1: the
        champion's parameters) and the retraining window's batches (for a recency retrain, the
        batches since the change point; else ``window_batches``).
    """
    from pathlib import Path

    from components.decide.core import DecisionState, decide_files
    from components.decide.investigate import InvestigatorConfig
    from components.decide.strategy import StrategyConfig

    result = decide_files(
        model_dir=Path(model.path),
        previous_model_dir=Path(previous_model.path),
        champion_version=champion_version,
        data_path=Path(data.path),
        drift_path=Path(drift_report.path),
        baseline_path=Path(baseline_scores.path),
        quality_path=Path(quality_report.path),
        state=DecisionState.of_pipeline(state_dir, serving_dir),
        model_name=model_name,
        batch_id=batch_id,
        incident=incident,
        safety_policy=safety_policy,
        investigator=InvestigatorConfig(alpha=alpha, min_drop=min_drop, min_rows=min_rows),
        strategy=StrategyConfig(severe_drop=severe_drop, tune=tune_trials > 1, prefer_update=prefer_update),
        webhooks=alert_webhooks,
        run=run,
        investigation_path=Path(investigation.path),
        decision_path=Path(decision.path),
    )
    action = result.action
    route = "retrain" if action == "retrain_tune" else action
    route = route if route in ("retrain", "update", "recalibrate", "rollback") else "none"
    trials = tune_trials if action == "retrain_tune" else 1
    tier, proposed = result.ruling.tier, result.proposal.action
    held = tier != "execute" and proposed not in ("none", "monitor")  # the policy held a response back: say why
    reason = (
        f"{result.proposal.reason}; {tier}: " + "; ".join(result.ruling.reasons) if held else result.proposal.reason
    )
    value = result.value
    # A recency retrain keeps the batches since the change point; a volume retrain the whole window.
    window = (
        min(max(value.window_batches, 1), window_batches) if value and value.regime == "recency" else window_batches
    )
    return (route, action, reason, result.investigation.kind, tier, result.signals.incident, trials, window)


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def record_outcome(
    decision: Input[Artifact], gate_result: Input[Artifact], state_dir: str, serving_dir: str, version: str
) -> float:
    """Record what a candidate measurably gave (the gate's holdout) in the knowledge base and the ledger.

    Args:
        decision: The decide stage's decision (JSON).
        gate_result: The gate's result (JSON), or ``gate_rollback``'s verdict for a rollback.
        state_dir: Folder of the audit ledger and knowledge base ('': ``audit`` beside ``serving_dir``).
        serving_dir: The local serving folder.
        version: The candidate's registered version (for a rollback, the previous champion's).

    Returns:
        The benefit: AUC gain for a retrain or an update, log-loss fall for a recalibration, the
        previous champion's AUC gain on the batch for a rollback.
    """
    from pathlib import Path

    from components.decide.core import DecisionState, record_outcome_files

    outcome = record_outcome_files(
        state=DecisionState.of_pipeline(state_dir, serving_dir),
        decision_path=Path(decision.path),
        gate_path=Path(gate_result.path),
        version=version,
    )
    return outcome.benefit
