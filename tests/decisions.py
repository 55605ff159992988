"""A decision state with an escalated response waiting for a person, made by the real decision code."""

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


def _signals() -> Signals:
    """A batch on which the champion lost 0.08 AUC while the features it relies on drifted."""
    return Signals(
        incident=INCIDENT,
        at="2024-10-22T15:00:00+00:00",
        rows=1500,
        metric="auc",
        expected=0.75,
        expected_se=0.005,
        current=0.67,
        current_se=0.01,
        expected_log_loss=0.40,
        current_log_loss=0.47,
        recalibrated_metric=0.67,
        recalibrated_log_loss=0.46,
        label_reference_rate=0.20,
        label_current_rate=0.20,
        label_p_value=0.5,
        features=(FeatureSignal("NumArticles", True, 1.8, 1e-9), FeatureSignal("EventRootCode", False, 0.01, 0.6)),
        importance={"NumArticles": 0.7, "EventRootCode": 0.3},
    )


def escalated_state(folder: Path, validated: Callable[[str], pd.DataFrame], task: TaskSpec) -> DecisionState:
    """An escalated retrain waiting for a person, with the drift report (real GDELT rows) it was decided on."""
    state = DecisionState(folder)
    decision = respond(_signals(), policy=SafetyPolicy(confidence_threshold=1.0))
    assert decision.ruling.tier == "escalate"
    record(decision, state.ledger, approvals=state.approvals(), run="run-1")
    batch = validated("20241022150000").copy()
    batch["NumArticles"] = batch["NumArticles"] * 3
    reference = pd.concat([validated(b) for b in ("20241022130000", "20241022131500")])
    write_json(detect_drift(reference, batch, task).to_dict(), state.drift_report(INCIDENT))
    return state
