from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.common.errors import DataValidationError
from components.common.lake import incident_key
from components.common.storage import write_table
from components.common.store import Store
from components.evaluate.core import evaluate_model, row_aucs, score_predictions
from components.gate.core import GatePolicy, compare_models
from components.gate.stats import Latency
from components.train.core import TrainConfig, select_window, train_model
from components.train.model import TrainedModel


@pytest.fixture(scope="module")
def outcome(validated, task):
    frame = pd.concat([validated("20241022130000"), validated("20241022131500"), validated("20241022133000")])
    return train_model(frame, task, TrainConfig(num_threads=1))


def test_trained_model_beats_chance_on_a_later_real_batch(outcome, validated) -> None:
    assert outcome.metrics["auc"] > 0.6
    later = evaluate_model(outcome.model, validated("20241022150000"))
    assert later["auc"] > 0.6 and later["rows"] == 1866


def test_training_is_reproducible_and_saved_model_predicts_the_same(outcome, validated, task, tmp_path: Path) -> None:
    frame = pd.concat([validated("20241022130000"), validated("20241022131500"), validated("20241022133000")])
    again = train_model(frame, task, TrainConfig(num_threads=1))
    batch = validated("20241022140000")
    assert np.array_equal(again.model.predict_proba(batch), outcome.model.predict_proba(batch))
    loaded = TrainedModel.load(outcome.model.save(tmp_path / "m"))
    assert np.allclose(loaded.predict_proba(batch), outcome.model.predict_proba(batch))


def test_one_class_data_is_refused(validated, task) -> None:
    frame = validated("20241022130000")
    with pytest.raises(DataValidationError, match="both classes"):
        train_model(frame[frame.AvgTone >= -5], task)


def test_scores_on_known_values() -> None:
    scores = score_predictions(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    assert scores["auc"] == 0.75 and scores["accuracy"] == 0.5 and scores["positive_rate"] == 0.5
    assert np.isnan(score_predictions(np.array([1, 1]), np.array([0.2, 0.9]))["auc"])


def test_gate_promotes_a_better_challenger_and_keeps_a_worse_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    good = 1 / (1 + np.exp(-(2.0 * labels - 1 + rng.normal(0, 1, 1000))))
    weak = 1 / (1 + np.exp(-(0.4 * labels - 0.2 + rng.normal(0, 1, 1000))))
    promoted = compare_models(labels, weak, good)
    assert promoted.promote and promoted.checks["auc_better"] and promoted.auc is not None
    assert promoted.log_loss is not None and promoted.log_loss.challenger_log_loss < promoted.log_loss.champion_log_loss
    kept = compare_models(labels, good, weak)
    assert not kept.promote and "keep champion: challenger worse" in kept.reason
    assert kept.auc is not None and kept.auc.gain < 0


def test_an_equivalent_challenger_is_promoted_only_when_policy_prefers_it() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 3000)
    signal = 1.2 * labels + rng.normal(0, 1, 3000)
    champion = 1 / (1 + np.exp(-(signal - 0.6)))
    challenger = 1 / (1 + np.exp(-(signal - 0.6 + rng.normal(0, 0.05, 3000))))  # the same model, jittered
    assert not compare_models(labels, champion, challenger).promote
    preferred = compare_models(labels, champion, challenger, policy=GatePolicy(prefer_challenger=True))
    assert preferred.promote and "equivalent" in preferred.reason


def test_guardrails_keep_a_better_ranker_that_is_miscalibrated_or_slow() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 2000)
    # Calibrated scores: class means ±m with unit noise have log-likelihood ratio 2·m·s.
    weak_signal, sharp_signal = 0.8 * labels - 0.4 + rng.normal(0, 1, 2000), 2.0 * labels - 1 + rng.normal(0, 1, 2000)
    weak, sharp = 1 / (1 + np.exp(-0.8 * weak_signal)), 1 / (1 + np.exp(-2.0 * sharp_signal))
    overconfident = 1 / (1 + np.exp(-8.0 * sharp_signal))  # ranks as well as sharp, probabilities off
    kept = compare_models(labels, weak, overconfident)
    assert kept.auc is not None and kept.auc.p_better < 0.05 and not kept.checks["calibration"]
    assert not kept.promote and "guardrail calibration" in kept.reason
    fast, slow = Latency(1.0, 2.0, 1e5), Latency(20.0, 40.0, 1e3)
    slowed = compare_models(labels, weak, sharp, latency={"champion": fast, "challenger": slow})
    assert not slowed.promote and not slowed.checks["latency"] and "latency" in slowed.reason
    assert compare_models(labels, weak, sharp, latency={"champion": fast, "challenger": fast}).promote


def test_grouped_rows_count_once_in_the_gate() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 120)
    champion = 1 / (1 + np.exp(-(1.0 * labels - 0.5 + rng.normal(0, 1, 120))))
    challenger = 1 / (1 + np.exp(-(1.3 * labels - 0.65 + rng.normal(0, 1, 120))))
    copies = np.repeat(np.arange(120), 30)  # each row reported by 30 events of one article
    naive = compare_models(labels[copies], champion[copies], challenger[copies])
    grouped = compare_models(labels[copies], champion[copies], challenger[copies], groups=copies)
    assert naive.auc is not None and grouped.auc is not None
    assert grouped.auc.se > 4 * naive.auc.se and grouped.auc.groups == 120


def test_gate_promotes_a_recalibrated_challenger_with_the_same_ranking() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(2000) < 0.3).astype("int64")
    score = 1.5 * labels + rng.normal(0, 1, 2000)
    calibrated = 1 / (1 + np.exp(-(score - 1.2)))
    miscalibrated = 1 / (1 + np.exp(-(score - 3.0)))  # same order, prior far too low
    verdict = compare_models(labels, miscalibrated, calibrated)
    assert verdict.promote and verdict.checks["log_loss_better"] and "log loss" in verdict.reason
    assert verdict.auc is not None and abs(verdict.auc.gain) < 1e-12


def test_window_holds_out_part_of_the_current_batch(validated, task, tmp_path: Path) -> None:
    lake = Store(str(tmp_path))
    for batch in ("20241022130000", "20241022131500", "20241022133000"):
        write_table(validated(batch), tmp_path / "validated" / f"{batch}.parquet")
    write_table(validated("20241022134500"), tmp_path / "validated" / "20241022124500.parquet")
    lake.put_json(incident_key("20241022124500"), {"verdict": "incident"})  # never trained on
    train, holdout, batches = select_window(
        lake, "20241022131500", "gdelt-tone", window_batches=3, holdout_fraction=0.3
    )
    assert batches == ["20241022130000", "20241022131500"]  # the incident is skipped, no future batch
    current = validated("20241022131500")
    assert len(train) + len(holdout) == len(validated("20241022130000")) + len(current)
    assert set(holdout.GLOBALEVENTID) <= set(current.GLOBALEVENTID)
    assert not set(holdout.GLOBALEVENTID) & set(train.GLOBALEVENTID)
    assert not set(validated("20241022133000").GLOBALEVENTID) & set(train.GLOBALEVENTID)  # no future rows
    with pytest.raises(DataValidationError, match="validate it first"):
        select_window(lake, "20991231000000", "gdelt-tone", window_batches=2, holdout_fraction=0.3)


def test_row_aucs_match_sklearn_with_ties() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (4, 400))
    scores = np.round(rng.normal(size=(4, 400)), 1)  # many ties
    assert np.allclose(row_aucs(labels, scores), [roc_auc_score(y, s) for y, s in zip(labels, scores, strict=True)])
