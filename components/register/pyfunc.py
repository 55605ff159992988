"""The MLflow pyfunc form of a trained model: what the registry stores and the server loads."""

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from components.train.model import TrainedModel

__all__ = ["MODEL_ARTIFACT", "DriftpilotPyfunc"]

MODEL_ARTIFACT = "model"
"""Name of the MLflow artifact that holds the ``TrainedModel`` folder."""


class DriftpilotPyfunc(PythonModel):
    """Scores rows of a task's input columns with P(label = 1)."""

    def load_context(self, context: Any) -> None:
        """Load the ``TrainedModel`` folder logged as the ``model`` artifact."""
        from pathlib import Path

        self.model = TrainedModel.load(Path(context.artifacts[MODEL_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """Return one probability per input row."""
        return self.model.predict_proba(model_input)
