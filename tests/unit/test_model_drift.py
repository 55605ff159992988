import numpy as np
import pandas as pd
import pytest

from components.common.errors import ConfigError
from components.common.task import TargetRule, TaskSpec
from components.drift.core import detect_drift
from components.drift.model import detect_model_drift, estimated_auc
from components.drift.scenarios import concept_shift, numeric_shift
from components.features.core import build_labels
from components.train.core import train_model

IGNORED = "V26"


@pytest.fixture(scope="module")
def fraud(data_dir) -> pd.DataFrame:
    """The real credit-card fraud sample (1,722 rows, 492 frauds)."""
    path = data_dir / "creditcard" / "creditcard_sample_jaehyeongAN_1722rows_all492fraud.csv"
    return pd.read_csv(path).rename(columns={"Unnamed: 0": "row"})


def _task(*, without: str = "") -> TaskSpec:
    numeric = tuple(c for c in (*(f"V{i}" for i in range(1, 29)), "Amount") if c != without)
    return TaskSpec("creditcard-fraud", TargetRule("Class", "eq", 1), (), numeric, id_column="row")


@pytest.fixture(scope="module")
def setup(fraud):
    """A model that never sees ``IGNORED``, its out-of-sample reference, and a window."""
    order = np.random.default_rng(0).permutation(len(fraud))
    train, reference, window = (fraud.iloc[order[a:b]] for a, b in ((0, 900), (900, 1300), (1300, len(fraud))))
    model = train_model(train, _task(without=IGNORED)).model
    gains = dict(zip(model.booster.feature_name(), model.booster.feature_importance("gain"), strict=True))
    return model, reference, window, max(gains, key=lambda name: gains[name])


def _model_drift(model, reference: pd.DataFrame, window: pd.DataFrame, *, labels: bool = False):
    return detect_model_drift(
        reference_scores=model.predict_proba(reference),
        reference_labels=build_labels(reference, model.task).to_numpy(),
        current_scores=model.predict_proba(window),
        current_labels=build_labels(window, model.task).to_numpy() if labels else None,
    )


def test_a_shift_the_model_ignores_is_data_drift_but_not_a_predicted_drop(setup) -> None:
    model, reference, window, _ = setup
    shifted = numeric_shift(IGNORED, -2.0)(window, 1.0, np.random.default_rng(1))
    assert detect_drift(reference, shifted, _task()).drifted_features == [IGNORED]
    result = _model_drift(model, reference, shifted)
    assert not result.prediction_shift["drifted"]
    assert not result.predicted_drop
    assert result.estimated["low"] <= 0 <= result.estimated["high"]


def test_the_same_shift_on_the_top_feature_is_both(setup) -> None:
    model, reference, window, top = setup
    shifted = numeric_shift(top, -2.0)(window, 1.0, np.random.default_rng(1))
    assert top in detect_drift(reference, shifted, _task()).drifted_features
    result = _model_drift(model, reference, shifted)
    assert result.prediction_shift["drifted"]
    assert result.predicted_drop  # estimated without labels (CBPE)
    assert result.estimated["drop"] >= 0.02 and result.estimated["low"] > 0
    assert result.realised is None


def test_concept_drift_needs_labels_to_be_seen(setup) -> None:
    model, reference, window, _ = setup
    drifted = concept_shift("Class")(window, 0.5, np.random.default_rng(2))
    unlabelled = _model_drift(model, reference, drifted)
    labelled = _model_drift(model, reference, drifted, labels=True)
    assert not unlabelled.predicted_drop  # the inputs did not move
    assert labelled.realised is not None and labelled.predicted_drop
    assert labelled.realised["drop"] > 0.1 and labelled.realised["low"] > 0


def test_estimated_auc_is_the_expected_auc_of_calibrated_scores() -> None:
    rng = np.random.default_rng(0)
    scores = rng.beta(2, 5, 3000)
    expected = estimated_auc(scores, scores)
    draws = []
    for _ in range(300):
        labels = rng.random(len(scores)) < scores
        ranks = pd.Series(scores).rank().to_numpy()
        n1 = labels.sum()
        draws.append((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(scores) - n1)))
    assert expected == pytest.approx(np.mean(draws), abs=0.005)


def test_confidence_decay_is_measured_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.3
    confident = np.clip(np.where(labels, 0.9, 0.1) + rng.normal(0, 0.05, 2000), 0.01, 0.99)
    unsure = np.clip(0.5 + rng.normal(0, 0.1, 2000), 0.01, 0.99)
    result = detect_model_drift(reference_scores=confident, reference_labels=labels, current_scores=unsure)
    assert result.confidence["change"] < -0.3
    assert result.confidence["high"] < 0 and result.confidence["p_value"] < 1e-6


def test_a_one_class_reference_is_refused() -> None:
    with pytest.raises(ConfigError, match="one class"):
        detect_model_drift(reference_scores=np.full(10, 0.2), reference_labels=np.zeros(10), current_scores=np.ones(5))
