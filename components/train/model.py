"""The trained model every stage shares: a boosted model, the library that made it, and its task.

Saved as a folder: the library's own model file (``booster.txt`` for LightGBM, ``model.cbm`` for
CatBoost), ``task.yaml`` and ``model.yaml`` (the library and the prior correction). Evaluation,
the promotion gate, the MLflow model and the model server all load it through ``TrainedModel``.

A pipeline step that may have no model to hand on (the previous champion of a registry that has
had one champion only) still writes its model artifact: ``mark_absent`` leaves ``absent.json``
in it, which ``TrainedModel.load_optional`` reads as "no model". KFP hands an artifact on
whatever it holds, and an empty folder is not uploaded at all in a cluster.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from components.common.task import TaskSpec
from components.features.core import build_features
from components.train.trainers import Trainer, get_trainer

__all__ = ["ABSENT_FILE", "TrainedModel", "mark_absent", "prior_corrected", "recalibration_odds"]

TASK_FILE = "task.yaml"
MODEL_FILE = "model.yaml"
ABSENT_FILE = "absent.json"
"""In a model folder that holds no model: why there is none."""


def mark_absent(folder: Path, reason: str) -> Path:
    """Write a model folder that says it holds no model, and why; return the folder.

    Args:
        folder: The model artifact's folder.
        reason: Why there is no model (read by people looking at the artifact).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ABSENT_FILE).write_text(json.dumps({"model": None, "reason": reason}), encoding="utf-8")
    return folder


def prior_corrected(proba: np.ndarray, odds_ratio: float) -> np.ndarray:
    """Move probabilities learned at one class prior to another (Dal Pozzolo et al., 2015).

    A model trained on rows whose positive odds are ``k`` times the population's predicts
    ``p``; at the population's prior the same row has ``p / (p + k (1 − p))``.

    Args:
        proba: Probabilities at the training prior.
        odds_ratio: Population positive odds over training positive odds (1: no change).

    Returns:
        Probabilities at the population prior.
    """
    if odds_ratio == 1.0:
        return proba
    return odds_ratio * proba / (odds_ratio * proba + 1.0 - proba)


def recalibration_odds(proba: np.ndarray, labels: np.ndarray) -> float:
    """The odds ratio that moves scores from the prior they predict to the rows' own prior.

    Args:
        proba: Scores of labelled rows.
        labels: Their 0/1 labels.

    Returns:
        The factor to multiply a model's ``odds_ratio`` by (``prior_corrected``'s argument).
    """

    def odds(rate: float) -> float:
        rate = min(max(rate, 1e-4), 1 - 1e-4)
        return rate / (1 - rate)

    return odds(float(np.mean(labels))) / odds(float(np.mean(proba)))


@dataclass(frozen=True)
class TrainedModel:
    """A boosted model and its task.

    Attributes:
        booster: The library's model (``lightgbm.Booster`` or ``catboost.CatBoostClassifier``).
        task: The task the model was trained for.
        algorithm: ``lightgbm`` or ``catboost``.
        odds_ratio: Population positive odds over the training rows' (1 when the model was
            trained at the population's prior); predictions are corrected by it.
    """

    booster: Any
    task: TaskSpec
    algorithm: str = "lightgbm"
    odds_ratio: float = 1.0

    @property
    def trainer(self) -> Trainer:
        """The library behind the model."""
        return get_trainer(self.algorithm)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return P(label = 1) at the population prior for each row of raw task columns.

        Args:
            frame: Rows carrying the task's source columns.

        Returns:
            A float array, one probability per row.
        """
        raw = self.trainer.predict(self.booster, build_features(frame, self.task))
        return prior_corrected(raw, self.odds_ratio)

    def importance(self) -> dict[str, float]:
        """Each feature's share of the model's gain."""
        return self.trainer.importance(self.booster)

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder`` and return it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.trainer.save(self.booster, folder / self.trainer.model_file)
        (folder / TASK_FILE).write_text(yaml.safe_dump(self.task.to_dict(), sort_keys=False), encoding="utf-8")
        meta = {"algorithm": self.algorithm, "odds_ratio": self.odds_ratio}
        (folder / MODEL_FILE).write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> "TrainedModel":
        """Load a model written by ``save`` (a folder without ``model.yaml`` holds a LightGBM booster)."""
        meta_file = folder / MODEL_FILE
        meta = yaml.safe_load(meta_file.read_text(encoding="utf-8")) if meta_file.exists() else {}
        algorithm = str(meta.get("algorithm", "lightgbm"))
        trainer = get_trainer(algorithm)
        task = TaskSpec.from_dict(yaml.safe_load((folder / TASK_FILE).read_text(encoding="utf-8")))
        booster = trainer.load(folder / trainer.model_file)
        return cls(booster=booster, task=task, algorithm=algorithm, odds_ratio=float(meta.get("odds_ratio", 1.0)))

    @classmethod
    def load_optional(cls, folder: Path) -> "TrainedModel | None":
        """Load a model folder, or return None when ``mark_absent`` wrote it (there is no model).

        A folder with neither a model nor the marker fails like ``load``: a lost model is not "none".
        """
        return None if (folder / ABSENT_FILE).exists() else cls.load(folder)
