"""The gradient-boosting libraries behind one small interface: LightGBM and CatBoost.

A ``Trainer`` prepares the training and validation rows once (tuning fits many models on them),
fits a model with early stopping on the validation log loss (reporting every round to a callback,
which is how Optuna prunes), continues from an earlier model on new rows (the cheap incremental
update), predicts, saves and loads. Both read categorical features natively: LightGBM as pandas
categories, CatBoost as strings with its ordered target statistics.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from components.common.errors import ConfigError

__all__ = ["ALGORITHMS", "Fit", "Prepared", "Trainer", "get_trainer"]

RoundCallback = Callable[[int, float], None]
"""Called after each boosting round with the round and the validation log loss; raising stops the fit."""


@dataclass(frozen=True)
class Prepared:
    """Training and validation rows in a library's own form, built once and fitted many times.

    Attributes:
        train: The library's training data.
        valid: The library's validation data.
        categorical: Names of the categorical features.
    """

    train: Any
    valid: Any
    categorical: tuple[str, ...]


@dataclass(frozen=True)
class Fit:
    """A fitted model and where early stopping left it.

    Attributes:
        model: The library's model object.
        best_iteration: Rounds kept, a continued model's earlier rounds included.
        valid_log_loss: Validation log loss at the best round.
    """

    model: Any
    best_iteration: int
    valid_log_loss: float


class Trainer(Protocol):
    """What the train and tune stages need from a boosting library."""

    name: str
    model_file: str

    def defaults(self) -> dict[str, Any]:
        """The library's parameters when nothing is tuned."""
        ...

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw a parameter set from an Optuna trial."""
        ...

    def prepare(
        self,
        train: tuple[pd.DataFrame, pd.Series],
        valid: tuple[pd.DataFrame, pd.Series],
        categorical: tuple[str, ...],
        *,
        init_model: Any = None,
    ) -> Prepared:
        """Build the library's datasets (with the categories of ``init_model`` when continuing one)."""
        ...

    def fit(
        self,
        data: Prepared,
        params: dict[str, Any],
        *,
        rounds: int,
        early_stopping: int,
        seed: int,
        threads: int,
        init_model: Any = None,
        on_round: RoundCallback | None = None,
    ) -> Fit:
        """Fit (or continue ``init_model``) with early stopping on the validation log loss."""
        ...

    def predict(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        """Return P(label = 1) per row of features built by ``build_features``."""
        ...

    def importance(self, model: Any) -> dict[str, float]:
        """Return each feature's share of the model's total gain."""
        ...

    def save(self, model: Any, path: Path) -> None:
        """Write the model to ``path``."""
        ...

    def load(self, path: Path) -> Any:
        """Read a model written by ``save``."""
        ...


def _shares(names: list[str], gains: np.ndarray) -> dict[str, float]:
    total = float(np.sum(gains))
    return {name: float(g) / total if total > 0 else 0.0 for name, g in zip(names, gains, strict=True)}


class LightGBMTrainer:
    """LightGBM: histogram trees, categories split natively on pandas ``category`` columns."""

    name = "lightgbm"
    model_file = "booster.txt"

    def defaults(self) -> dict[str, Any]:
        """LightGBM's untuned parameters."""
        return {
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 20,
            "feature_fraction": 0.9,
            "lambda_l2": 1e-3,
        }

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Learning rate, tree size, leaf size, feature sampling and L2 from an Optuna trial."""
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        }

    def prepare(
        self,
        train: tuple[pd.DataFrame, pd.Series],
        valid: tuple[pd.DataFrame, pd.Series],
        categorical: tuple[str, ...],
        *,
        init_model: Any = None,
    ) -> Prepared:
        """Bin the rows once; trials vary ``min_data_in_leaf``, so no feature is pre-filtered."""
        import lightgbm as lgb

        features = [self._align(train[0], init_model), self._align(valid[0], init_model)]
        train_set = lgb.Dataset(
            features[0],
            train[1],
            categorical_feature=list(categorical),
            free_raw_data=False,
            params={"feature_pre_filter": False},
        )
        valid_set = lgb.Dataset(features[1], valid[1], reference=train_set)
        return Prepared(train_set, valid_set, categorical)

    @staticmethod
    def _align(features: pd.DataFrame, model: Any) -> pd.DataFrame:
        """Give categorical columns the categories (and codes) a model was trained with."""
        if model is None or not model.pandas_categorical:
            return features
        aligned = features.copy()
        columns = [c for c in features.columns if isinstance(features[c].dtype, pd.CategoricalDtype)]
        for column, categories in zip(columns, model.pandas_categorical, strict=True):
            aligned[column] = aligned[column].cat.set_categories(categories)
        return aligned

    def fit(
        self,
        data: Prepared,
        params: dict[str, Any],
        *,
        rounds: int,
        early_stopping: int,
        seed: int,
        threads: int,
        init_model: Any = None,
        on_round: RoundCallback | None = None,
    ) -> Fit:
        """Boost up to ``rounds`` rounds; stop after ``early_stopping`` without a better log loss."""
        import lightgbm as lgb

        settings = {
            "objective": "binary",
            "metric": "binary_logloss",
            "cat_smooth": 10,
            "min_data_per_group": 20,
            "seed": seed,
            "deterministic": True,
            "num_threads": threads,
            "verbosity": -1,
            **params,
        }
        callbacks: list[Any] = [lgb.early_stopping(early_stopping, verbose=False)]
        if on_round is not None:

            def report(env: Any) -> None:
                for data_name, metric, value, _ in env.evaluation_result_list:
                    if data_name == "valid" and metric == "binary_logloss":
                        on_round(env.iteration - env.begin_iteration, value)

            callbacks.insert(0, report)
        booster = lgb.train(
            settings,
            data.train,
            num_boost_round=rounds,
            valid_sets=[data.valid],
            valid_names=["valid"],
            init_model=init_model,
            keep_training_booster=False,
            callbacks=callbacks,
        )
        return Fit(booster, int(booster.best_iteration), float(booster.best_score["valid"]["binary_logloss"]))

    def predict(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        """Probabilities from the best iteration."""
        return np.asarray(model.predict(features), dtype="float64")

    def importance(self, model: Any) -> dict[str, float]:
        """Gain shares."""
        return _shares(model.feature_name(), model.feature_importance("gain"))

    def save(self, model: Any, path: Path) -> None:
        """LightGBM's text format."""
        model.save_model(str(path))

    def load(self, path: Path) -> Any:
        """A booster from its text file."""
        import lightgbm as lgb

        return lgb.Booster(model_file=str(path))


_MISSING = "__missing__"


class CatBoostTrainer:
    """CatBoost: symmetric trees, categories encoded by ordered target statistics."""

    name = "catboost"
    model_file = "model.cbm"

    def defaults(self) -> dict[str, Any]:
        """CatBoost's untuned parameters."""
        return {
            "learning_rate": 0.08,
            "depth": 6,
            "l2_leaf_reg": 3.0,
            "random_strength": 1.0,
            "bagging_temperature": 1.0,
        }

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Learning rate, depth, L2, split randomness and bagging temperature from an Optuna trial."""
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "depth": trial.suggest_int("depth", 3, 8),
            "l2_leaf_reg": trial.suggest_float("l2_leaf_reg", 0.1, 30.0, log=True),
            "random_strength": trial.suggest_float("random_strength", 0.1, 10.0, log=True),
            "bagging_temperature": trial.suggest_float("bagging_temperature", 0.0, 2.0),
        }

    @staticmethod
    def _frame(features: pd.DataFrame, categorical: tuple[str, ...]) -> pd.DataFrame:
        """Categories as strings (missing as one category of its own), as CatBoost takes them."""
        out = features.copy()
        for column in categorical:
            out[column] = out[column].astype(object).where(out[column].notna(), _MISSING).astype(str)
        return out

    def prepare(
        self,
        train: tuple[pd.DataFrame, pd.Series],
        valid: tuple[pd.DataFrame, pd.Series],
        categorical: tuple[str, ...],
        *,
        init_model: Any = None,
    ) -> Prepared:
        """Pools with the categorical columns named (CatBoost keeps its own category hashes)."""
        from catboost import Pool

        cats = list(categorical)
        pools = [Pool(self._frame(f, categorical), y.to_numpy(), cat_features=cats) for f, y in (train, valid)]
        return Prepared(pools[0], pools[1], categorical)

    def fit(
        self,
        data: Prepared,
        params: dict[str, Any],
        *,
        rounds: int,
        early_stopping: int,
        seed: int,
        threads: int,
        init_model: Any = None,
        on_round: RoundCallback | None = None,
    ) -> Fit:
        """Boost up to ``rounds`` rounds; stop after ``early_stopping`` without a better log loss."""
        from catboost import CatBoostClassifier

        model = CatBoostClassifier(
            iterations=rounds,
            loss_function="Logloss",
            eval_metric="Logloss",
            random_seed=seed,
            thread_count=threads if threads > 0 else -1,
            od_type="Iter",
            od_wait=early_stopping,
            use_best_model=True,
            allow_writing_files=False,
            verbose=False,
            **params,
        )
        rounds_seen = _CatBoostRounds(on_round) if on_round is not None else None
        model.fit(
            data.train, eval_set=data.valid, init_model=init_model, callbacks=[rounds_seen] if rounds_seen else None
        )
        if rounds_seen is not None and rounds_seen.stopped is not None:
            raise rounds_seen.stopped
        best = model.get_best_score()["validation"]["Logloss"]
        return Fit(model, int(model.tree_count_), float(best))

    def predict(self, model: Any, features: pd.DataFrame) -> np.ndarray:
        """Probabilities of the positive class."""
        categorical = tuple(model.feature_names_[i] for i in model.get_cat_feature_indices())
        return np.asarray(model.predict_proba(self._frame(features, categorical))[:, 1], dtype="float64")

    def importance(self, model: Any) -> dict[str, float]:
        """Loss-change shares (CatBoost's PredictionValuesChange)."""
        return _shares(list(model.feature_names_), np.asarray(model.get_feature_importance()))

    def save(self, model: Any, path: Path) -> None:
        """CatBoost's binary format."""
        model.save_model(str(path))

    def load(self, path: Path) -> Any:
        """A classifier from its binary file."""
        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        model.load_model(str(path))
        return model


class _CatBoostRounds:
    """A CatBoost callback that reports each round's validation log loss.

    CatBoost wraps what a callback raises in its own error, so the exception is kept, the fit
    stopped, and the exception raised again once ``fit`` returns.
    """

    def __init__(self, on_round: RoundCallback) -> None:
        self.on_round = on_round
        self.stopped: Exception | None = None

    def after_iteration(self, info: Any) -> bool:
        """Report the round; False (stop) when the callback raised."""
        try:
            self.on_round(int(info.iteration) - 1, float(info.metrics["validation"]["Logloss"][-1]))
        except Exception as exc:  # re-raised by ``fit``
            self.stopped = exc
            return False
        return True


_TRAINERS: dict[str, Trainer] = {t.name: t for t in (LightGBMTrainer(), CatBoostTrainer())}
ALGORITHMS = tuple(_TRAINERS)


def get_trainer(algorithm: str) -> Trainer:
    """Return the trainer of ``lightgbm`` or ``catboost``.

    Raises:
        ConfigError: For any other name.
    """
    try:
        return _TRAINERS[algorithm]
    except KeyError:
        raise ConfigError(f"algorithm={algorithm!r}: use one of {ALGORITHMS}") from None
