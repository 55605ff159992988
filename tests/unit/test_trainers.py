import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss

from components.common.storage import write_table
from components.common.task import load_task
from components.evaluate.core import evaluate_model, population_weights
from components.features.core import build_labels
from components.gate.core import gate_files
from components.train.core import (
    TrainConfig,
    train_files,
    train_model,
    undersample,
    update_model,
    validation_rows,
)
from components.train.model import TrainedModel, prior_corrected
from components.tune.core import TuneBudget, TuneConfig, create_study, run_worker, summarize_study, warm_start_params

EARLY = ("20241022130000", "20241022131500", "20241022133000")


@pytest.fixture(scope="module")
def early(validated) -> pd.DataFrame:
    return pd.concat([validated(b) for b in EARLY], ignore_index=True)


@pytest.fixture(scope="module")
def fraud(data_dir) -> pd.DataFrame:
    """The real credit-card sample (all 492 frauds, 1,230 normal transactions), in a fixed shuffled order."""
    path = data_dir / "creditcard" / "creditcard_sample_jaehyeongAN_1722rows_all492fraud.csv"
    frame = pd.read_csv(path).rename(columns={"Unnamed: 0": "row"})
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_catboost_reads_gdelt_categories_natively_and_is_reproducible(early, validated, task, tmp_path) -> None:
    config = TrainConfig(algorithm="catboost", num_boost_round=150, num_threads=1)
    outcome = train_model(early, task, config)
    later = validated("20241022150000")
    assert outcome.model.algorithm == "catboost" and evaluate_model(outcome.model, later)["auc"] > 0.6
    assert outcome.model.booster.get_cat_feature_indices() == list(range(len(task.categorical)))
    again = train_model(early, task, config)
    assert np.array_equal(again.model.predict_proba(later), outcome.model.predict_proba(later))
    loaded = TrainedModel.load(outcome.model.save(tmp_path / "cb"))
    assert loaded.algorithm == "catboost"
    assert np.allclose(loaded.predict_proba(later), outcome.model.predict_proba(later))
    shares = loaded.importance()
    assert set(shares) == set(task.features) and sum(shares.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_an_incremental_update_adds_rounds_to_the_champion(early, validated, task, algorithm) -> None:
    champion = train_model(early, task, TrainConfig(algorithm=algorithm, num_boost_round=60, num_threads=1)).model
    new = pd.concat([validated("20241022134500"), validated("20241022140000")], ignore_index=True)
    new.loc[new.index[:50], "EventCode"] = "0999"  # a code the champion never saw
    updated = update_model(champion, new, TrainConfig(num_boost_round=40, num_threads=1))
    assert updated.model.algorithm == algorithm and updated.params["algorithm"] == algorithm
    trees = {"lightgbm": lambda m: m.booster.num_trees(), "catboost": lambda m: m.booster.tree_count_}[algorithm]
    assert trees(updated.model) > trees(champion)  # the champion's trees are kept and more are added
    batch = validated("20241022150000")
    assert not np.allclose(updated.model.predict_proba(batch), champion.predict_proba(batch))
    assert evaluate_model(updated.model, batch)["auc"] > 0.6


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_incremental_training_from_a_saved_champion_records_it(early, validated, tmp_path, algorithm) -> None:
    # What the pipeline's update branch does: the champion's folder, as fetched, continued on new rows.
    write_table(early, tmp_path / "early.parquet")
    config = TrainConfig(algorithm=algorithm, num_boost_round=40, num_threads=1)
    train_files([tmp_path / "early.parquet"], "gdelt-tone", tmp_path / "v1", config)
    write_table(validated("20241022134500"), tmp_path / "new.parquet")
    config = TrainConfig(num_boost_round=20, num_threads=1)  # the algorithm is the champion's
    train_files([tmp_path / "new.parquet"], "", tmp_path / "v2", config, champion_dir=tmp_path / "v1")
    params = (tmp_path / "v2" / "params.json").read_text()
    assert '"incremental": true' in params and (tmp_path / "v2" / "profile.json").exists()
    champion, updated = TrainedModel.load(tmp_path / "v1"), TrainedModel.load(tmp_path / "v2")
    trees = {"lightgbm": lambda m: m.booster.num_trees(), "catboost": lambda m: m.booster.tree_count_}[algorithm]
    assert updated.algorithm == algorithm and trees(updated) > trees(champion)


def test_fraud_scores_are_moved_to_the_natural_fraud_rate(fraud) -> None:
    task = load_task("creditcard-fraud")
    outcome = train_model(fraud.iloc[:1300], task, TrainConfig(num_threads=1))
    model = outcome.model
    # The sample keeps every fraud and ~1 in 230 normal rows: the odds ratio undoes that.
    fitted = fraud.iloc[:1300][~validation_rows(fraud.iloc[:1300], task)]
    train_rate = fitted.Class.mean()
    assert model.odds_ratio == pytest.approx((0.00172 / 0.99828) / (train_rate / (1 - train_rate)))
    rest = fraud.iloc[1300:]
    labels = build_labels(rest, task).to_numpy()
    weights = population_weights(labels, task.population_positive_rate)
    assert weights is not None
    # At the natural rate (normal rows weighed up), corrected scores are far better probabilities
    # than the sample-prior ones, and their mean is of the natural rate's order.
    corrected = model.predict_proba(rest)
    raw = prior_corrected(corrected, 1 / model.odds_ratio)
    assert log_loss(labels, corrected, sample_weight=weights) < 0.2 * log_loss(labels, raw, sample_weight=weights)
    assert 0.00172 / 5 < np.average(corrected, weights=weights) < 0.00172 * 5
    scores = evaluate_model(model, rest)
    assert scores["positive_rate"] == pytest.approx(0.00172) and scores["auc"] > 0.95
    assert scores["average_precision"] < scores["auc"]  # precision suffers at the natural rate


def test_a_rare_class_is_undersampled_to_the_tasks_training_rate(fraud) -> None:
    task = load_task("creditcard-fraud")
    # A stream at ~2% fraud, simulated by subsampling the frauds of the shared sample.
    rare = pd.concat([fraud[fraud.Class == 0], fraud[fraud.Class == 1].head(25)]).reset_index(drop=True)
    labels = build_labels(rare, task)
    kept = undersample(rare, labels, task)
    assert kept[labels.to_numpy() == 1].all()  # every fraud kept
    assert labels[kept].mean() == pytest.approx(task.min_train_positive_rate, abs=0.03)
    outcome = train_model(rare, task, TrainConfig(num_threads=1))
    assert outcome.metrics["train_rows"] < 0.3 * len(rare)
    assert prior_corrected(np.array([0.5]), outcome.model.odds_ratio)[0] < 0.05


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_both_datasets_pass_through_the_same_training_and_gate(fraud, early, validated, tmp_path, algorithm) -> None:
    cases = {
        "creditcard-fraud": (fraud.iloc[:700], fraud.iloc[:1300], fraud.iloc[1300:]),
        "gdelt-tone": (validated(EARLY[0]), early, validated("20241022150000")),
    }
    for task_name, (small, large, holdout) in cases.items():
        folder = tmp_path / task_name
        for name, rows in (("small", small), ("large", large)):
            write_table(rows, folder / f"{name}.parquet")
            config = TrainConfig(algorithm=algorithm, num_boost_round=60, num_threads=1)
            train_files([folder / f"{name}.parquet"], task_name, folder / name, config)
        write_table(holdout, folder / "holdout.parquet")
        verdict = gate_files(folder / "small", folder / "large", folder / "holdout.parquet", folder / "gate.json")
        assert verdict.auc is not None and verdict.auc.challenger_auc > 0.6 and verdict.rows == len(holdout)
        assert verdict.log_loss is not None and set(verdict.latency) == {"champion", "challenger"}
        assert json.loads((folder / "gate.json").read_text())["reason"] == verdict.reason
    # The fraud holdout (28.6% fraud) is judged at the natural 0.172%: its log loss is that small.
    assert verdict_of(tmp_path / "creditcard-fraud")["log_loss"]["champion_log_loss"] < 0.02


def verdict_of(folder: Path) -> dict:
    return json.loads((folder / "gate.json").read_text())


def test_catboost_trials_are_pruned_through_the_same_study(early, tmp_path) -> None:
    task = load_task("gdelt-tone")
    storage = str(tmp_path / "cb.log")
    create_study(storage=storage, name="cb", budget=TuneBudget(trials=6, seconds=300))
    config = TuneConfig(algorithm="catboost", num_boost_round=60, seed=3)
    assert run_worker(storage=storage, name="cb", frame=early, task=task, config=config) == 6
    summary = summarize_study(storage=storage, name="cb")
    assert summary.complete + summary.pruned == 6 and "depth" in summary.best_params
    assert set(summary.importance) == set(summary.best_params)


def test_the_warm_start_takes_the_champions_values_of_the_tuned_parameters_only() -> None:
    champion = {"algorithm": "lightgbm", "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20}
    champion |= {"feature_fraction": 0.9, "lambda_l2": 0.001, "seed": 42, "num_boost_round": 400}
    assert warm_start_params("lightgbm", champion) == {
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_child_samples": 20,
        "feature_fraction": 0.9,
        "lambda_l2": 0.001,
    }
    assert warm_start_params("catboost", champion) is None  # another library's parameters
    assert warm_start_params("lightgbm", {"algorithm": "lightgbm", "learning_rate": 0.1}) is None


def test_the_task_file_states_the_natural_rate() -> None:
    task = load_task("creditcard-fraud")
    assert task.population_positive_rate == 0.00172 and task.min_train_positive_rate == 0.1
    assert load_task("gdelt-tone").population_positive_rate == 0.0
