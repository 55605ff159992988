"""The decision layer's loop for one incident: investigate → value → propose → rule → record.

``respond`` is pure: the incident's signals, the safety policy, the executed history and the
knowledge base give one ``Decision`` (investigation, the value of retraining when the signals
carry its evidence, proposal, ruling), the same every time.
Rulings are made at the incident's own time, never the wall clock, so ``replay`` of an incident
log gives byte-identical decisions. ``record`` does the side effects: ledger entries, a pending
approval for an escalation, alerts.
"""

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from components.common.audit import AuditLedger, LedgerError
from components.decide.investigate import Investigation, InvestigatorConfig, Signals, investigate
from components.decide.knowledge import KnowledgeBase, Outcome
from components.decide.safety import Executed, Proposal, Ruling, SafetyPolicy, rule
from components.decide.signals import metric_standard_error, signals_from_scores
from components.decide.strategy import StrategyConfig, propose
from components.decide.value import ValueEstimate, ValueState, assess, retrained

__all__ = [
    "Decision",
    "DecisionState",
    "decide_files",
    "executed_history",
    "incident_id",
    "load_safety_policy",
    "record",
    "record_outcome_files",
    "record_release",
    "replay",
    "replay_files",
    "respond",
]


@dataclass(frozen=True)
class Decision:
    """What the loop decided about one incident.

    Attributes:
        signals: What it was decided from.
        investigation: The investigator's findings.
        proposal: The strategist's proposal.
        ruling: The safety policy's tier and reasons.
        value: The value of retraining after this batch (None: no evidence was carried in).
        value_state: The evidence to carry to the next batch of the same model (None: as above).
    """

    signals: Signals
    investigation: Investigation
    proposal: Proposal
    ruling: Ruling
    value: ValueEstimate | None = None
    value_state: ValueState | None = None

    @property
    def action(self) -> str:
        """The action that runs now: the proposal's when the ruling executes it, else ``none``."""
        return self.proposal.action if self.ruling.tier == "execute" else "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (the signals are kept apart, in the incident log)."""
        return {
            "incident": self.signals.incident,
            "at": self.signals.at,
            "kind": self.investigation.kind,
            "action": self.action,
            "tier": self.ruling.tier,
            "proposal": asdict(self.proposal),
            "reasons": list(self.ruling.reasons),
            "investigation": self.investigation.to_dict(),
            "value": self.value.to_dict() if self.value is not None else None,
        }


def _time(at: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(at)
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def respond(
    signals: Signals,
    *,
    policy: SafetyPolicy,
    history: Sequence[Executed] = (),
    knowledge: KnowledgeBase | None = None,
    investigator: InvestigatorConfig = InvestigatorConfig(),
    strategy: StrategyConfig = StrategyConfig(),
) -> Decision:
    """Investigate an incident, propose a response and rule on it.

    Args:
        signals: The incident's measurements.
        policy: The safety policy.
        history: Responses executed before.
        knowledge: Past outcomes (None: none).
        investigator: The investigator's thresholds.
        strategy: The strategist's costs and thresholds.

    Returns:
        The decision.
    """
    investigation = investigate(signals, investigator)
    value, after = None, None
    if signals.value_state is not None:
        after = ValueState.from_dict(signals.value_state)
        if investigation.measured and investigation.kind not in ("data_quality", "insufficient"):
            value, after = assess(
                after,
                drop=investigation.drop,
                drop_se=math.hypot(signals.current_se, signals.expected_se),
                rows=signals.rows,
                feature_drift=investigation.feature_drift,
                cost=policy.retrain_cost_for(strategy.retrain_cpu_seconds),
                config=strategy.value,
            )
    proposal = propose(investigation, signals, knowledge or KnowledgeBase(), strategy, value)
    ruling = rule(proposal, tuple(history), policy, _time(signals.at))
    return Decision(signals, investigation, proposal, ruling, value, after)


def _canonical(data: Any) -> str:
    def clean(value: Any) -> Any:
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 6)
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def replay(
    incidents: Iterable[Signals],
    *,
    policy: SafetyPolicy,
    knowledge: KnowledgeBase | None = None,
    investigator: InvestigatorConfig = InvestigatorConfig(),
    strategy: StrategyConfig = StrategyConfig(),
) -> list[Decision]:
    """Decide a sequence of incidents in order; each executed response joins the history.

    Returns:
        One decision per incident.
    """
    history: list[Executed] = []
    decisions = []
    for signals in incidents:
        decision = respond(
            signals, policy=policy, history=history, knowledge=knowledge, investigator=investigator, strategy=strategy
        )
        if decision.ruling.tier == "execute":
            history.append(Executed(_time(signals.at), decision.proposal.action, decision.proposal.tuning_cpu_seconds))
        decisions.append(decision)
    return decisions


def replay_files(incident_log: Path, out: Path, *, policy: SafetyPolicy, knowledge: KnowledgeBase | None = None) -> int:
    """Replay an incident log (JSON Lines of signals) and write the decisions as JSON Lines.

    The output is canonical JSON (sorted keys, rounded floats, NaN as null), so two replays of
    one log under one policy are byte-identical.

    Returns:
        The number of decisions written.
    """
    lines = [line for line in incident_log.read_text(encoding="utf-8").splitlines() if line.strip()]
    decisions = replay((Signals.from_dict(json.loads(line)) for line in lines), policy=policy, knowledge=knowledge)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(_canonical(d.to_dict()) + "\n" for d in decisions), encoding="utf-8")
    return len(decisions)


def executed_history(ledger: AuditLedger) -> list[Executed]:
    """The responses executed so far: ``decided`` entries ruled ``execute``, and approved escalations."""
    history = []
    for entry in ledger.entries():
        executed = (entry.kind == "decided" and entry.data.get("tier") == "execute") or entry.kind == "approved"
        if executed and entry.data.get("action") not in (None, "none", "monitor"):
            history.append(
                Executed(_time(entry.time), str(entry.data["action"]), float(entry.data.get("tuning_cpu_seconds", 0.0)))
            )
    return history


def record(
    decision: Decision,
    ledger: AuditLedger,
    *,
    approvals: Any = None,
    alerter: Any = None,
    at: dt.datetime | None = None,
    run: str = "",
) -> dict[str, Any]:
    """Write a decision down: ``investigated`` and ``decided`` ledger entries, an approval, alerts.

    Args:
        decision: The decision.
        ledger: The audit ledger.
        approvals: ``components.decide.approvals.Approvals`` (None: escalations are only recorded).
        alerter: ``components.decide.alerts.Alerter`` (None: no alerts).
        at: The entries' time (default: now).
        run: The pipeline run that decided ('' for none), kept on the ``decided`` entry.

    Returns:
        ``approval`` (its id, or None) and ``alerts`` (titles posted or held).
    """
    from components.decide.alerts import Alert

    inv, proposal, ruling = decision.investigation, decision.proposal, decision.ruling
    ledger.append(incident=inv.incident, kind="investigated", data=json.loads(_canonical(inv.to_dict())), at=at)
    ledger.append(
        incident=inv.incident,
        kind="decided",
        data=json.loads(
            _canonical({**asdict(proposal), "tier": ruling.tier, "reasons": list(ruling.reasons), "run": run})
        ),
        at=at,
    )
    approval = approvals.request(ruling, at=at) if approvals is not None and ruling.tier == "escalate" else None
    alerts = []
    if inv.kind == "data_quality":
        alerts.append(
            Alert(inv.incident, "data-quality", "critical", f"{inv.incident}: data-quality incident", inv.summary)
        )
    if ruling.tier == "escalate":
        alerts.append(Alert(
            inv.incident, "escalation", "warning",
            f"{inv.incident}: {proposal.action} needs approval{f' ({approval})' if approval else ''}",
            f"{proposal.reason}. Held because: {'; '.join(ruling.reasons)}",
        ))  # fmt: skip
    elif ruling.tier == "execute":
        alerts.append(Alert(inv.incident, "response", "info", f"{inv.incident}: {proposal.action}", proposal.reason))
    if alerter is not None:
        for alert in alerts:
            outcome = alerter.send(alert)
            ledger.append(
                incident=inv.incident,
                kind="alerted",
                data={"title": alert.title, "posted": outcome.posted, "failed": [list(f) for f in outcome.failed]},
                at=at,
            )
    return {"approval": approval, "alerts": [a.title for a in alerts]}


def load_safety_policy(text: str) -> SafetyPolicy:
    """The safety policy from a YAML file path or YAML text ('' for the built-in default).

    Raises:
        ConfigError: When it is not a valid policy.
    """
    from components.decide.safety import DEFAULT_POLICY_FILE

    if not text.strip():
        return SafetyPolicy.from_yaml(DEFAULT_POLICY_FILE)
    if "\n" not in text and Path(text).is_file():
        return SafetyPolicy.from_yaml(Path(text))
    return SafetyPolicy.from_text(text, source=f"YAML text {text[:80]!r} (or give a file path)")


@dataclass(frozen=True)
class DecisionState:
    """Where an installation keeps its decisions (a folder; ``ledger.jsonl``, approvals, knowledge).

    Attributes:
        folder: The folder.
    """

    folder: Path

    @classmethod
    def of_pipeline(cls, state_dir: str, serving_dir: str) -> "DecisionState":
        """A pipeline's state: ``state_dir``, or ``audit`` beside ``serving_dir`` (the CLI home's layout)."""
        return cls(Path(state_dir) if state_dir else Path(serving_dir).parent / "audit")

    @property
    def ledger(self) -> AuditLedger:
        """The audit ledger."""
        return AuditLedger(self.folder / "ledger.jsonl")

    @property
    def knowledge(self) -> KnowledgeBase:
        """The knowledge base of past outcomes."""
        return KnowledgeBase.load(self.folder / "knowledge.jsonl")

    @property
    def incidents(self) -> Path:
        """The incident log: every incident's signals, one JSON line each (what ``replay`` reads)."""
        return self.folder / "incidents.jsonl"

    def drift_report(self, incident: str) -> Path:
        """Where the drift report an incident was decided on is kept (``reports/<incident>.json``)."""
        return self.folder / "reports" / f"{incident}.json"

    def value_state(self, model_name: str, version: str, trained_rows: int) -> ValueState:
        """The evidence on the value of retraining kept for the model's serving version.

        Kept in ``value/<model>.json`` for one version: when ``champion`` has moved since, the
        new champion starts afresh from its training rows (the learnt volume slope is kept).
        """
        path = self.folder / "value" / f"{model_name}.json"
        kept = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        state = ValueState.from_dict(kept.get("state", {}))
        return state if kept.get("version") == version else ValueState.trained_on(trained_rows, state.volume_gain)

    def keep_value_state(self, model_name: str, version: str, value: ValueState) -> None:
        """Keep the evidence for the model's serving version (``value_state`` reads it)."""
        path = self.folder / "value" / f"{model_name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": version, "state": value.to_dict()}, sort_keys=True), encoding="utf-8")

    def approvals(self) -> Any:
        """The pending and resolved approvals."""
        from components.decide.approvals import Approvals

        return Approvals(self.folder / "approvals", self.ledger)


def incident_id(model_name: str, batch_id: str) -> str:
    """The correlation id of the incident a batch raises for a model."""
    return f"{model_name}-{batch_id}"


def decide_files(
    *,
    model_dir: Path,
    data_path: Path,
    drift_path: Path,
    baseline_path: Path,
    quality_path: Path | None,
    state: DecisionState,
    model_name: str,
    batch_id: str,
    incident: str = "",
    safety_policy: str = "",
    investigator: InvestigatorConfig = InvestigatorConfig(),
    strategy: StrategyConfig = StrategyConfig(),
    webhooks: str = "",
    run: str = "",
    previous_model_dir: Path | None = None,
    champion_version: str = "",
    investigation_path: Path,
    decision_path: Path,
) -> Decision:
    """The pipeline's decide stage: score the champion and its predecessor on the batch, decide, record, write JSON.

    The previous champion's scores on the labelled batch are what a rollback is worth
    (``Signals.previous_metric``): the strategist proposes one when they win back enough of the
    champion's loss. The evidence on the value of retraining is carried between runs for the
    champion's version in the decision state (``DecisionState.value_state``), so a slow decay
    and the rows the champion was not trained on add up over batches as they do in the backtest.

    Args:
        model_dir: The champion's model folder.
        data_path: The batch's validated rows (Parquet).
        drift_path: The drift stage's report.
        baseline_path: The champion's validation metrics (its record).
        quality_path: The ingestion-anomaly agent's report (None: not checked).
        state: The installation's decision state.
        model_name: The registered model's name (with the batch, the incident's id).
        batch_id: The batch (``YYYYMMDDHHMMSS``): the decision's time.
        incident: The incident's id when the run was started for one (the coordinator's); ''
            names it after the model and the batch.
        safety_policy: ``load_safety_policy``'s argument.
        investigator: The investigator's thresholds.
        strategy: The strategist's settings.
        webhooks: Alert webhooks, comma-separated ``slack=URL`` or ``generic=URL`` ('' for none).
        run: The pipeline run deciding (its name goes on the ledger's ``decided`` entry).
        previous_model_dir: The previous champion's model folder (None, or a folder
            ``components.train.model.mark_absent`` wrote, when there is none).
        champion_version: The champion's registered version ('': no evidence is carried between
            runs, and a significant loss retrains).
        investigation_path: Where the investigation is written (JSON).
        decision_path: Where the decision is written (JSON).

    Returns:
        The decision.
    """
    from components.common.storage import read_json, read_table, write_json
    from components.decide.alerts import Alerter, Webhook
    from components.features.core import build_labels
    from components.train.model import TrainedModel

    model = TrainedModel.load(model_dir)
    previous = TrainedModel.load_optional(previous_model_dir) if previous_model_dir is not None else None
    frame = read_table(data_path)
    baseline = read_json(baseline_path)
    labelled = model.task.target.column in frame.columns
    labels = build_labels(frame, model.task).to_numpy() if labelled else np.zeros(0, dtype="int64")
    positives = round(float(baseline.get("rows", 0)) * float(baseline.get("positive_rate", 0)))
    expected = {
        "value": float(baseline["auc"]),
        "se": metric_standard_error("auc", float(baseline["auc"]), positives, int(baseline.get("rows", 0)) - positives),
        "log_loss": float(baseline.get("log_loss", math.nan)),
        "positive_rate": float(baseline.get("positive_rate", math.nan)),
    }
    at = dt.datetime.strptime(batch_id, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC).isoformat()
    drift = read_json(drift_path)
    signals = signals_from_scores(
        incident=incident or incident_id(model_name, batch_id),
        at=at,
        metric="auc",
        expected=expected,
        labels=labels,
        proba=model.predict_proba(frame) if labelled else np.zeros(0),
        frame=frame,
        drift=drift,
        importance=model.importance(),
        quality=read_json(quality_path) if quality_path is not None else None,
        previous_proba=previous.predict_proba(frame) if previous is not None and labelled else None,
        segment_columns=model.task.categorical,
    )
    if champion_version:
        trained = int(float(baseline.get("train_rows", 0)))
        value = state.value_state(model_name, champion_version, trained)
        signals = replace(signals, value_state=value.to_dict())
    try:
        state.incidents.parent.mkdir(parents=True, exist_ok=True)
        with state.incidents.open("a", encoding="utf-8") as log:
            log.write(_canonical(signals.to_dict()) + "\n")
        write_json(drift, state.drift_report(signals.incident))
    except OSError as exc:
        raise LedgerError(f"cannot record the signals in {state.folder}: {exc}; nothing was decided") from exc
    ledger = state.ledger
    decision = respond(
        signals,
        policy=load_safety_policy(safety_policy),
        history=executed_history(ledger),
        knowledge=state.knowledge,
        investigator=investigator,
        strategy=strategy,
    )
    if champion_version and decision.value_state is not None:
        state.keep_value_state(model_name, champion_version, decision.value_state)
    hooks = [Webhook(url, kind) for kind, _, url in (h.partition("=") for h in webhooks.split(",") if h.strip())]
    record(decision, ledger, approvals=state.approvals(), alerter=Alerter(hooks) if hooks else None, run=run)
    write_json(json.loads(_canonical(decision.investigation.to_dict())), investigation_path)
    champion = {"model": model_name, "version": champion_version} if champion_version else None
    write_json(json.loads(_canonical({**decision.to_dict(), "champion": champion})), decision_path)
    return decision


def record_release(state: DecisionState, *, incident: str, version: str, outcome: Any, actor: str = "") -> None:
    """Append a canary's end to the incident's story: ``released``, with each step's verdict.

    Args:
        state: The installation's decision state.
        incident: The incident the version answers.
        version: The version released.
        outcome: The release's ``components.deploy.controller.CanaryOutcome``.
        actor: Who released (the KFP run).

    Raises:
        LedgerError: When the ledger cannot take the entry.
    """
    steps = [{"percent": v.percent, "action": v.action} for v in outcome.decisions]
    state.ledger.append(
        incident=incident,
        kind="released",
        actor=actor or "driftpilot",
        data={"version": version, "promoted": bool(outcome.promoted), "reason": outcome.verdict.reason, "steps": steps},
    )


def record_outcome_files(*, state: DecisionState, decision_path: Path, gate_path: Path, version: str) -> Outcome:
    """Learn from a gated candidate: its measured benefit goes to the knowledge base and the ledger.

    A retrain decided on the value of retraining spends its evidence (``value.retrained``; kept
    for the champion the decision names, its gain updating the volume slope).

    The benefit is measured on the gate's holdout (rows neither model was fitted on): the AUC
    gain over the champion for a retrain or an update, the fall of log loss for a recalibration
    (its ranking is the champion's). A rollback has no holdout: its benefit is the previous
    champion's metric minus the champion's on the incident's batch (the investigation's
    ``rollback_gain``, rows neither was trained on), and its verdict is ``judge_rollback``'s.

    Args:
        state: The installation's decision state.
        decision_path: The decide stage's decision (JSON).
        gate_path: The gate's result (JSON), or a rollback's verdict.
        version: The candidate's registered version (for a rollback, the previous champion's).

    Returns:
        The outcome recorded.
    """
    from components.common.storage import read_json

    decision, gate = read_json(decision_path), read_json(gate_path)
    action = str(decision["proposal"]["action"])
    if action == "rollback":
        gain = decision["investigation"].get("rollback_gain")  # NaN is written as null
        benefit = float(gain) if gain is not None else math.nan
    elif action == "recalibrate" and gate.get("log_loss"):
        benefit = float(gate["log_loss"]["champion_log_loss"]) - float(gate["log_loss"]["challenger_log_loss"])
    elif gate.get("auc"):
        benefit = float(gate["auc"]["gain"])
    else:
        benefit = math.nan
    investigation = decision["investigation"]
    outcome = Outcome(
        incident=str(decision["incident"]),
        at=str(decision["at"]),
        kind=str(investigation["kind"]),
        causes=tuple(c["feature"] for c in investigation["causes"]),
        action=action,
        benefit=round(benefit, 6),
    )
    if not math.isnan(benefit):
        state.knowledge.add(outcome)
    champion = decision.get("champion") or {}
    if decision.get("value") and champion and action in ("retrain", "retrain_tune", "update"):
        # The retrain was tried: its evidence is spent, and its gain measures the volume slope.
        estimate = ValueEstimate.from_dict(decision["value"])
        kept = state.value_state(champion["model"], champion["version"], estimate.window_rows)
        spent = retrained(kept, estimate, served=bool(gate["promote"]), gain=benefit)
        state.keep_value_state(champion["model"], champion["version"], spent)
    state.ledger.append(
        incident=outcome.incident,
        kind="gated",
        data=json.loads(_canonical({"version": version, "action": action, "promote": bool(gate["promote"]),
                                    "benefit": benefit, "reason": gate["reason"]})),
    )  # fmt: skip
    return outcome
