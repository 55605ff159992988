"""The decision layer: the investigator, the strategist, the safety policy and the ledger, on real GDELT batches."""

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common.audit import AuditLedger
from components.common.storage import read_table, write_json
from components.decide.core import DecisionState, decide_files, replay, respond
from components.decide.investigate import FeatureSignal, Signals, investigate, segment_signals
from components.decide.knowledge import KnowledgeBase, Outcome
from components.decide.safety import Blackout, Executed, SafetyPolicy
from components.decide.signals import signals_from_scores
from components.drift.core import detect_drift_files
from components.evaluate.core import score_predictions
from components.ingest._lake import ManifestEntry, Status
from components.quality.core import assess
from components.train.core import TrainConfig, recalibrate_files, train_files
from components.train.model import TrainedModel
from pipelines.cli import main
from tests.decisions import signals as _signals
from tests.servers import WebhookReceiver

POLICY = SafetyPolicy()
AT = "2024-10-22T14:00:00+00:00"


DRIFTED = (FeatureSignal("NumMentions", True, 0.5, 1e-6), FeatureSignal("ActionGeo_CountryCode", True, 0.3, 1e-4))


@pytest.mark.parametrize(
    ("changes", "kind", "action"),
    [
        ({}, "none", "none"),
        (
            {"quality": "incident", "quality_summary": "schema: 40% rows rejected", "current": 0.5},
            "data_quality",
            "none",
        ),
        ({"rows": 120, "current": 0.5}, "insufficient", "none"),
        ({"features": DRIFTED}, "covariate", "monitor"),
        ({"features": DRIFTED, "current": 0.69}, "covariate", "retrain"),
        ({"current": 0.69}, "concept", "retrain"),
        ({"current": 0.60}, "concept", "retrain_tune"),
        # The prior moved 20% → 30%: log loss rose 25% and moving the scores to the new prior wins most of it back.
        (
            {
                "label_current_rate": 0.30,
                "label_p_value": 1e-8,
                "current_log_loss": 0.50,
                "recalibrated_log_loss": 0.42,
            },
            "prior",
            "recalibrate",
        ),
        # A prior shift the correction does not explain is not called one.
        (
            {
                "label_current_rate": 0.30,
                "label_p_value": 1e-8,
                "current_log_loss": 0.50,
                "recalibrated_log_loss": 0.49,
            },
            "none",
            "none",
        ),
    ],
)
def test_the_investigator_classifies_and_the_strategist_proposes(
    changes: dict[str, object], kind: str, action: str
) -> None:
    signals = _signals(**changes)
    decision = respond(signals, policy=POLICY)
    assert (decision.investigation.kind, decision.proposal.action) == (kind, action)
    assert decision.proposal.reason and decision.investigation.summary
    again = respond(signals, policy=POLICY).to_dict()
    assert json.dumps(again, sort_keys=True) == json.dumps(decision.to_dict(), sort_keys=True)  # deterministic


def test_causes_are_ranked_by_drift_times_the_models_reliance() -> None:
    features = (
        FeatureSignal("Unused", True, 2.0, 1e-9),  # the largest shift, but the model ignores it
        FeatureSignal("NumMentions", True, 0.5, 1e-6),
        FeatureSignal("ActionGeo_CountryCode", True, 0.3, 1e-4),
    )
    causes = investigate(_signals(features=features)).causes
    assert [c.feature for c in causes] == ["ActionGeo_CountryCode", "NumMentions", "Unused"]
    assert causes[-1].score == 0.0 and causes[0].score == pytest.approx(0.3 * 0.6)


def test_segments_point_at_where_the_loss_comes_from(validated) -> None:  # type: ignore[no-untyped-def]
    batch = validated("20241022140000")
    labels = (batch["AvgTone"] < -5).to_numpy(dtype="int64")
    scores = np.where(labels == 1, 0.7, 0.2)
    country = batch["ActionGeo_CountryCode"].astype("string").fillna("<missing>")
    worst = country.value_counts().index[1]
    scores = np.where(country == worst, 1 - scores, scores)  # the model is wrong on one country only
    segments = segment_signals(batch, labels, scores, ["ActionGeo_CountryCode", "EventRootCode"])
    found = investigate(_signals(segments=segments, current_log_loss=0.5)).segments
    assert found[0]["column"] == "ActionGeo_CountryCode" and found[0]["value"] == worst
    assert found[0]["excess"] > 2 * found[1]["excess"]


def test_over_budget_and_blackout_become_escalations() -> None:
    signals = _signals(current=0.69)
    now = dt.datetime.fromisoformat(AT)
    busy = tuple(Executed(now - dt.timedelta(hours=h), "retrain") for h in (2, 5, 9, 20))
    over = respond(signals, policy=POLICY, history=busy)
    assert over.ruling.tier == "escalate" and over.action == "none"
    assert "4 retrains in the last 24 h" in over.ruling.reasons[0]
    frozen = SafetyPolicy(blackouts=(Blackout("13:00", "15:00", name="freeze"),))
    held = respond(signals, policy=frozen)
    assert held.ruling.tier == "escalate" and "blackout freeze" in held.ruling.reasons[0]
    assert respond(signals, policy=POLICY).ruling.tier == "execute"


def test_past_outcomes_move_the_confidence() -> None:
    signals = _signals(current=0.69)
    causes = tuple(c.feature for c in investigate(signals).causes)
    fresh = respond(signals, policy=POLICY).proposal.confidence

    def outcome(benefit: float) -> Outcome:
        return Outcome("past", AT, "concept", causes, "retrain", benefit)

    helped = KnowledgeBase([outcome(0.05)] * 3)
    assert respond(signals, policy=POLICY, knowledge=helped).proposal.confidence > fresh
    failed = KnowledgeBase([outcome(-0.01)] * 3)
    stuck = respond(signals, policy=POLICY, knowledge=failed)
    assert stuck.proposal.action == "escalate" and "helped 0 of 3" in stuck.proposal.reason
    assert stuck.ruling.tier == "escalate"


def test_a_loss_estimated_without_labels_asks_a_person() -> None:
    signals = _signals(current=math.nan, current_log_loss=math.nan, rows=1500, estimated_drop=0.05)
    decision = respond(signals, policy=POLICY)
    assert decision.proposal.action == "retrain" and "estimated without labels" in decision.proposal.reason
    assert decision.proposal.confidence < POLICY.confidence_threshold and decision.ruling.tier == "escalate"


def test_replaying_an_incident_log_twice_gives_byte_identical_decisions(tmp_path: Path) -> None:
    incidents = [
        _signals(incident=f"i{k}", at=f"2024-10-22T10:{14 * k:02d}:00+00:00", **changes)
        for k, changes in enumerate([{}, {"current": 0.69}, {"current": 0.68}, {"features": DRIFTED}, {"current": 0.6}])
    ]
    log = tmp_path / "incidents.jsonl"
    log.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in incidents))
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for out in outs:
        assert main(["replay", "--incidents", str(log), "--out", str(out)]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()
    decided = [json.loads(line) for line in outs[0].read_text().splitlines()]
    # Retrains after the first wait out its hour of cooldown: the history grows as the replay goes.
    assert [d["tier"] for d in decided] == ["monitor", "execute", "monitor", "monitor", "monitor"]
    assert [d["proposal"]["action"] for d in decided] == ["none", "retrain", "retrain", "monitor", "retrain_tune"]
    assert "cooling down" in decided[2]["reasons"][0]
    assert [d.action for d in replay(incidents, policy=POLICY)] == [d["action"] for d in decided]


@pytest.fixture(scope="module")
def champion(reference: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("champion")
    reference.to_parquet(folder / "train.parquet")
    train_files([folder / "train.parquet"], "gdelt-tone", folder / "model", TrainConfig(num_boost_round=60))
    return folder / "model"


@pytest.fixture(scope="module")
def reference(validated) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return pd.concat([validated(b) for b in ("20241022130000", "20241022131500", "20241022133000", "20241022134500")])


def _decide(champion: Path, batch: pd.DataFrame, folder: Path, quality: dict[str, object], **kwargs: object):  # type: ignore[no-untyped-def]
    batch.to_parquet(folder / "batch.parquet")
    read_table(folder / "batch.parquet")
    detect_drift_files(
        folder / "batch.parquet",
        folder / "batch.parquet",
        "gdelt-tone",
        report_path=folder / "drift.json",
        html_path=folder / "drift.html",
        evidently="never",
        model_dir=champion,
    )
    write_json(quality, folder / "quality.json")
    return decide_files(
        model_dir=champion,
        data_path=folder / "batch.parquet",
        drift_path=folder / "drift.json",
        baseline_path=champion / "metrics.json",
        quality_path=folder / "quality.json",
        state=DecisionState(folder / "audit"),
        model_name="gdelt-tone",
        batch_id="20241022140000",
        investigation_path=folder / "investigation.json",
        decision_path=folder / "decision.json",
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_schema_break_is_a_data_quality_incident_with_an_alert(champion: Path, validated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def entry(batch_id: str, rows: int, rejected: int = 0) -> ManifestEntry:
        name = f"{batch_id}.export.CSV.zip"
        return ManifestEntry(name, name, batch_id, 1, "", Status.INGESTED, rows, rejected)

    history = [entry(b, 1500) for b in ("20241022130000", "20241022131500", "20241022133000", "20241022134500")]
    broken = assess([entry("20241022140000", 700, rejected=800)], history)  # columns moved: most rows rejected
    assert broken.verdict == "incident" and "schema" in broken.summary()
    receiver = WebhookReceiver()
    try:
        decision = _decide(
            champion, validated("20241022140000"), tmp_path, broken.to_dict(), webhooks=f"slack={receiver.url}"
        )
    finally:
        receiver.server.shutdown()
    assert decision.investigation.kind == "data_quality" and decision.action == "none"
    assert "schema" in decision.proposal.reason and "quarantined" in decision.proposal.reason
    assert len(receiver.bodies) == 1 and "data-quality incident" in receiver.bodies[0]["text"]
    story = DecisionState(tmp_path / "audit").ledger.story("gdelt-tone-20241022140000")
    assert [e.kind for e in story] == ["investigated", "decided", "alerted"]
    assert story[1].data["action"] == "none" and story[2].data["posted"] is True
    assert json.loads((tmp_path / "decision.json").read_text())["kind"] == "data_quality"


def test_an_injected_prior_shift_is_recalibrated_not_retrained(champion: Path, validated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    batch = pd.concat([validated(b) for b in ("20241022140000", "20241022143000", "20241022144500")])
    negative = batch["AvgTone"] >= -5
    # Keep one negative in three: the positive rate roughly doubles, P(x | y) is untouched.
    shifted = batch[~negative | (np.arange(len(batch)) % 3 == 0)].reset_index(drop=True)
    decision = _decide(champion, shifted, tmp_path, {"verdict": "ok", "summary": "data quality ok"})
    inv = decision.investigation
    assert inv.kind == "prior" and inv.prior_shift and inv.recovered > 0.5
    assert decision.proposal.action == "recalibrate" and decision.ruling.tier == "execute"
    factor = recalibrate_files(
        champion,
        tmp_path / "batch.parquet",
        holdout_fraction=0.3,
        out_dir=tmp_path / "recalibrated",
        holdout_path=tmp_path / "holdout.parquet",
    )
    assert factor > 1.5  # the odds of a positive went up
    holdout = read_table(tmp_path / "holdout.parquet")
    labels = (holdout["AvgTone"] < -5).to_numpy(dtype="int64")
    before = score_predictions(labels, TrainedModel.load(champion).predict_proba(holdout))
    after = score_predictions(labels, TrainedModel.load(tmp_path / "recalibrated").predict_proba(holdout))
    assert after["log_loss"] < before["log_loss"] - 0.01 and after["auc"] == pytest.approx(before["auc"])


def test_an_escalation_waits_for_a_person(champion: Path, validated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    batch = validated("20241022140000")
    shifted = batch[(batch["AvgTone"] < -5) | (np.arange(len(batch)) % 3 == 0)].reset_index(drop=True)
    decision = _decide(champion, shifted, tmp_path, {"verdict": "ok"}, safety_policy="confidence_threshold: 1.0\n")
    assert decision.proposal.action == "recalibrate" and decision.ruling.tier == "escalate"
    state = DecisionState(tmp_path / "audit")
    pending = state.approvals().pending()
    assert [p["proposal"]["action"] for p in pending] == ["recalibrate"]
    assert main(["audit", "verify", "--ledger", str(state.ledger.path)]) == 0
    lines = state.ledger.path.read_text().splitlines()
    edited = lines[1].replace('"recalibrate"', '"retrain"')
    state.ledger.path.write_text("\n".join([lines[0], edited, *lines[2:]]) + "\n")
    check = AuditLedger(state.ledger.path).verify()
    assert not check.ok and check.line == 2


def test_signals_from_scores_measure_the_batch_and_its_recalibration() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.4).astype("int64")
    proba = np.clip(0.2 + 0.3 * labels + rng.normal(0, 0.15, 4000), 0.01, 0.99)  # predicts ~20%, truth is 40%
    signals = signals_from_scores(
        incident="x",
        at=AT,
        metric="auc",
        expected={"value": 0.8, "se": 0.01, "log_loss": 0.5},
        labels=labels,
        proba=proba,
    )
    assert signals.rows == 4000 and signals.label_current_rate == pytest.approx(labels.mean())
    assert signals.recalibrated_log_loss < signals.current_log_loss
    assert signals.recalibrated_metric == pytest.approx(signals.current)  # the ranking is untouched
    again = Signals.from_dict(json.loads(json.dumps(signals.to_dict())))
    assert json.dumps(dataclasses.asdict(again)) == json.dumps(dataclasses.asdict(signals))
