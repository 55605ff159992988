"""The value of retraining: shortfall evidence, regimes, the deploy test, the volume slope, the strategist on it."""

import math

import pytest

from components.decide.core import DecisionState, respond
from components.decide.investigate import Signals
from components.decide.safety import SafetyPolicy
from components.decide.value import ValueConfig, ValueState, assess, learn_volume, retrained, worth_deploying

CONFIG = ValueConfig()


def _batches(state: ValueState, drops: list[float], *, se: float = 0.01, rows: int = 1000, drift: bool = False):  # type: ignore[no-untyped-def]
    estimates = []
    for drop in drops:
        estimate, state = assess(state, drop=drop, drop_se=se, rows=rows, feature_drift=drift, cost=0.05)
        estimates.append(estimate)
    return estimates, state


def test_a_slow_decay_adds_up_until_it_pays_for_a_retrain_on_the_rows_since_the_change() -> None:
    # A model trained on plenty of rows (no volume to gain): 0.01 below its record each batch.
    state = ValueState.trained_on(CONFIG.max_rows)
    estimates, state = _batches(state, [0.0] + [0.01] * 12)
    triggered = [e.retrain for e in estimates]
    assert not any(triggered[:5]) and triggered[-1], triggered  # no single drop pays; their sum does
    first = triggered.index(True)
    assert estimates[first].shortfall - 1.28 * estimates[first].shortfall_se > 0.05
    assert estimates[first].regime == "recency" and estimates[first].window_batches == first
    assert estimates[first].volume == 0.0 and "recency retrain" in estimates[first].phrase()


def test_a_recency_candidate_kept_out_makes_the_next_reach_back_half_as_far() -> None:
    # A gradual change: the drops start early, so the rows since the change point are mostly old.
    estimates, state = _batches(ValueState.trained_on(CONFIG.max_rows), [0.01] * 8 + [0.05])
    tried = estimates[-1]
    assert tried.retrain and tried.regime == "recency" and tried.window_rows == 9000
    state = retrained(state, tried, served=False, gain=-0.01)
    assert state.recency_rows == 4500 and state.shortfall == 0.0
    estimates, state = _batches(state, [0.05, 0.06])
    assert estimates[-1].regime == "recency" and estimates[-1].window_rows == 4500
    assert estimates[-1].window_batches == 5  # the pipeline's window, in batches
    state = retrained(state, estimates[-1], served=False, gain=0.0)
    estimates, state = _batches(state, [0.05, 0.06])
    assert state.recency_rows == 2250 and estimates[-1].window_rows == 2250
    state = retrained(state, estimates[-1], served=False, gain=0.0)
    assert state.recency_rows == CONFIG.min_rows  # halved again, but never below min_rows
    served = retrained(state, estimates[-1], served=True, gain=0.05)
    assert served.recency_rows == 0  # a new model: every row since its change point again


def test_noise_around_the_record_never_pays() -> None:
    state = ValueState.trained_on(CONFIG.max_rows)
    estimates, _ = _batches(state, [0.015, -0.02, 0.01, -0.015, 0.02, -0.01, 0.005, -0.02] * 5, se=0.015)
    assert not any(e.retrain for e in estimates)


def test_a_data_starved_model_is_retrained_for_volume_on_every_row() -> None:
    state = ValueState.trained_on(500)  # trained on one small batch; the model holds its record
    estimates, _ = _batches(state, [0.0, 0.0, 0.0, 0.0], se=0.01, rows=1000)
    assert [e.regime for e in estimates] == ["volume"] * 4
    assert estimates[0].volume == pytest.approx(0.02 * math.log2(1500 / 500), abs=1e-6)
    assert estimates[-1].retrain and estimates[-1].window_rows == 4500 and estimates[-1].rows_ratio == 9.0


def test_drifting_features_make_a_decay_a_volume_retrain() -> None:
    state = ValueState.trained_on(CONFIG.max_rows)
    estimates, _ = _batches(state, [0.03, 0.03, 0.03], drift=True)
    assert estimates[-1].retrain and estimates[-1].regime == "volume"


def test_a_candidate_serves_only_when_its_gain_pays_over_the_horizon() -> None:
    assert worth_deploying(0.02, 0.005, 0.05)
    assert not worth_deploying(0.02, 0.02, 0.05)  # not surely positive
    assert not worth_deploying(0.004, 0.001, 0.05)  # surely positive, but 10 batches of it do not pay
    assert not worth_deploying(math.nan, 0.0, 0.05)


def test_a_volume_retrain_teaches_the_slope_and_spends_the_evidence() -> None:
    estimates, state = _batches(ValueState.trained_on(1000), [0.0, 0.0, 0.0])
    estimate = estimates[-1]
    assert estimate.rows_ratio == 4.0
    slope = learn_volume(state, estimate, gain=0.08)
    assert slope == pytest.approx(0.5 * 0.02 + 0.5 * 0.08 / 2)
    kept = retrained(state, estimate, served=False, gain=0.0)
    assert (
        kept.shortfall == kept.volume_shortfall == 0.0
        and kept.trained_rows == 4000
        and kept.volume_gain == pytest.approx(0.01)
    )
    new = retrained(state, estimate, served=True, gain=0.08)
    assert new.trained_rows == new.available_rows == 4000 and new.shortfall == 0.0


def _signals(value: ValueState | None, current: float) -> Signals:
    return Signals(
        incident="m-1", at="2024-10-22T13:00:00+00:00", rows=1000, metric="auc", expected=0.80, expected_se=0.005,
        current=current, current_se=0.01, expected_log_loss=0.8, current_log_loss=0.8, recalibrated_metric=current,
        recalibrated_log_loss=0.8, label_reference_rate=0.3, label_current_rate=0.3, label_p_value=0.5,
        value_state=value.to_dict() if value is not None else None,
    )  # fmt: skip


def test_the_strategist_retrains_when_it_pays_and_waits_when_it_does_not() -> None:
    policy = SafetyPolicy(cooldown_minutes=0)
    # A significant loss that has not yet paid for a retrain: monitored, the reason says why.
    waits = respond(_signals(ValueState.trained_on(CONFIG.max_rows), 0.77), policy=policy)
    assert waits.investigation.loss and waits.proposal.action == "monitor"
    assert "does not pay yet" in waits.proposal.reason and waits.value is not None and not waits.value.retrain
    # The same loss on top of what the served model has already cost: retrain, executed.
    owed = ValueState(shortfall=0.1, variance=0.0001, trained_rows=CONFIG.max_rows, available_rows=CONFIG.max_rows)
    pays = respond(_signals(owed, 0.77), policy=policy)
    assert pays.proposal.action == "retrain" and pays.ruling.tier == "execute", pays.ruling.reasons
    assert "expected gain" in pays.proposal.reason and pays.proposal.benefit == pytest.approx(0.3, abs=1e-3)
    # A model at its record with many new rows: a volume retrain though nothing moved.
    starved = ValueState(volume_shortfall=0.1, trained_rows=500, available_rows=8000)
    volume = respond(_signals(starved, 0.80), policy=policy)
    assert volume.investigation.kind == "none" and volume.proposal.action == "retrain"
    assert volume.value is not None and volume.value.regime == "volume"
    # Without evidence carried in, a significant loss retrains at once (the old rule).
    assert respond(_signals(None, 0.77), policy=policy).proposal.action == "retrain"


def test_a_higher_retrain_cost_waits_longer() -> None:
    owed = ValueState(shortfall=0.1, variance=0.0001, trained_rows=CONFIG.max_rows, available_rows=CONFIG.max_rows)
    dear = respond(_signals(owed, 0.77), policy=SafetyPolicy(cooldown_minutes=0, retrain_cost=0.5))
    assert dear.proposal.action == "monitor" and dear.value is not None and dear.value.cost == 0.5
    per_second = SafetyPolicy(cooldown_minutes=0, retrain_cost=0.05, cpu_second_cost=0.01)
    assert per_second.retrain_cost_for(120.0) == pytest.approx(1.25)


def test_the_decision_state_keeps_the_evidence_for_one_champion(tmp_path) -> None:  # type: ignore[no-untyped-def]
    state = DecisionState(tmp_path)
    fresh = state.value_state("m", "3", 1200)
    assert fresh == ValueState.trained_on(1200)
    kept = ValueState(shortfall=0.04, variance=0.001, trained_rows=1200, available_rows=3000, volume_gain=0.03)
    state.keep_value_state("m", "3", kept)
    assert state.value_state("m", "3", 1200) == kept
    moved = state.value_state("m", "4", 5000)  # champion moved: afresh, the slope kept
    assert moved == ValueState.trained_on(5000, 0.03)
