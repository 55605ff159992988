"""The trained model every stage shares: a LightGBM booster plus the task that defines its inputs.

Saved as a folder: ``booster.txt`` (LightGBM's text format) and ``task.yaml``. Evaluation, the
promotion gate, the MLflow model and the model server all load it through ``TrainedModel``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from components.common.task import TaskSpec
from components.features.core import build_features

__all__ = ["TrainedModel"]

BOOSTER_FILE = "booster.txt"
TASK_FILE = "task.yaml"


@dataclass(frozen=True)
class TrainedModel:
    """A booster and its task.

    Attributes:
        booster: The trained ``lightgbm.Booster``.
        task: The task the booster was trained for.
    """

    booster: Any
    task: TaskSpec

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Return P(label = 1) for each row of raw task columns.

        Args:
            frame: Rows carrying the task's source columns.

        Returns:
            A float array, one probability per row.
        """
        features = build_features(frame, self.task)
        return np.asarray(self.booster.predict(features), dtype="float64")

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder`` and return it."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / BOOSTER_FILE))
        (folder / TASK_FILE).write_text(yaml.safe_dump(self.task.to_dict(), sort_keys=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> "TrainedModel":
        """Load a model written by ``save``."""
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(folder / BOOSTER_FILE))
        task = TaskSpec.from_dict(yaml.safe_load((folder / TASK_FILE).read_text(encoding="utf-8")))
        return cls(booster=booster, task=task)
