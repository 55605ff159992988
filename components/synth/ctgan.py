"""CTGAN (Xu et al., 2019), the optional generator: the ``ctgan`` package on PyPI's torch, run on the CPU.

Not installed by default: torch is large. ``pip install 'driftpilot[ctgan]'`` adds both (the
versions ``constraints.txt`` pins); PyPI's Linux wheel of torch is a CUDA build that loads CUDA
only when asked for a GPU, so it trains here on the CPU (``enable_gpu=False``).
"""

from collections.abc import Sequence
from typing import Any

import pandas as pd

from components.common.errors import ConfigError

__all__ = ["CtganGenerator"]


class CtganGenerator:
    """CTGAN over numeric and categorical columns, with ``GaussianCopula``'s ``fit``/``sample`` shape.

    Args:
        numeric: Numeric columns.
        categorical: Categorical columns.
        epochs: Training epochs.
        seed: Seed of torch's and numpy's generators.
    """

    def __init__(self, numeric: Sequence[str], categorical: Sequence[str], *, epochs: int = 100, seed: int = 0):
        self.numeric, self.categorical, self.epochs, self.seed = list(numeric), list(categorical), epochs, seed
        self._model: Any = None

    @staticmethod
    def _import() -> Any:
        try:
            import ctgan
            import torch
        except ImportError as exc:
            raise ConfigError(
                f"CTGAN needs its optional extra: pip install 'driftpilot[ctgan]' (ctgan and torch; {exc})"
            ) from exc
        return ctgan, torch

    def fit(self, frame: pd.DataFrame) -> "CtganGenerator":
        """Train on the rows (categories as strings, missing numbers as NaN)."""
        ctgan, torch = self._import()
        torch.manual_seed(self.seed)
        data = frame[[*self.numeric, *self.categorical]].copy()
        for column in self.categorical:
            data[column] = data[column].astype("object").where(data[column].notna(), "<missing>").astype(str)
        self._model = ctgan.CTGAN(epochs=self.epochs, enable_gpu=False)
        self._model.set_random_state(self.seed)
        self._model.fit(data, discrete_columns=self.categorical)
        return self

    def sample(self, rows: int, *, seed: int = 0) -> pd.DataFrame:
        """Draw synthetic rows.

        Raises:
            ConfigError: When the model was not fitted.
        """
        if self._model is None:
            raise ConfigError("fit CTGAN before sampling")
        self._model.set_random_state(seed)
        out: pd.DataFrame = self._model.sample(rows)
        for column in self.categorical:
            out[column] = out[column].where(out[column] != "<missing>", None)
        return out
