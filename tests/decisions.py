"""Decision-layer test inputs: a batch's signals, and a decision state with an escalation waiting for a person."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from components.common.storage import write_json
from components.common.task import TaskSpec
from components.decide.core import DecisionState, record, respond
from components.decide.investigate import FeatureSignal, Signals
from components.decide.safety import SafetyPolicy
from components.drift.core import detect_drift

INCIDENT = "gdelt-tone-20241022150000"


def signals(**changes: object) -> Signals:
    """A batch on which the champion holds its record: AUC 0.75 ± 0.01, log loss 0.40, prior 20%."""
    base: dict[str, object] = dict(
        incident="gdelt-tone-20241022140000",
        at="2024-10-22T14:00:00+00:00",
        rows=1500,
        metric="auc",
        expected=0.75,
        expected_se=0.005,
        current=0.75,
        current_se=0.01,
        expected_log_loss=0.40,
        current_log_loss=0.40,
        recalibrated_metric=0.75,
        recalibrated_log_loss=0.40,
        label_reference_rate=0.20,
        label_current_rate=0.20,
        label_p_value=0.5,
        features=(
            FeatureSignal("NumMentions", False, 0.0, 0.9),
            FeatureSignal("ActionGeo_CountryCode", False, 0.02, 0.4),
        ),
        importance={"NumMentions": 0.3, "ActionGeo_CountryCode": 0.6, "IsRootEvent": 0.1},
    )
    return Signals(**{**base, **changes})  # type: ignore[arg-type]


def escalated_state(folder: Path, validated: Callable[[str], pd.DataFrame], task: TaskSpec) -> DecisionState:
    """An escalated retrain waiting for a person, with the drift report (real GDELT rows) it was decided on."""
    state = DecisionState(folder)
    lost = signals(
        incident=INCIDENT,
        at="2024-10-22T15:00:00+00:00",
        current=0.67,
        current_log_loss=0.47,
        recalibrated_metric=0.67,
        recalibrated_log_loss=0.46,
        features=(FeatureSignal("NumArticles", True, 1.8, 1e-9), FeatureSignal("EventRootCode", False, 0.01, 0.6)),
        importance={"NumArticles": 0.7, "EventRootCode": 0.3},
    )  # the champion lost 0.08 AUC while the feature it relies on most drifted
    decision = respond(lost, policy=SafetyPolicy(confidence_threshold=1.0))
    assert decision.ruling.tier == "escalate"
    record(decision, state.ledger, approvals=state.approvals(), run="run-1")
    batch = validated("20241022150000").copy()
    batch["NumArticles"] = batch["NumArticles"] * 3
    reference = pd.concat([validated(b) for b in ("20241022130000", "20241022131500")])
    write_json(detect_drift(reference, batch, task).to_dict(), state.drift_report(INCIDENT))
    return state
