"""How close a synthetic table is to the real one it was fitted to.

* **per column**: the Kolmogorov–Smirnov statistic and the Wasserstein distance in the real
  column's interquartile ranges (numeric), the total variation distance (categorical);
* **association**: the mean absolute difference of the pairwise association matrices —
  Spearman's ρ between numeric columns, the correlation ratio η between a categorical and a
  numeric one, Cramér's V between categorical ones — so 0 is every pairwise dependence kept;
* **detectability**: the cross-validated AUC of a classifier (LightGBM, native categoricals)
  told to separate real rows from synthetic ones: 0.5 when it cannot, 1.0 when it always can.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SynthQuality", "association_matrix", "synthetic_quality"]


@dataclass(frozen=True)
class SynthQuality:
    """The checks' results.

    Attributes:
        columns: Per column: ``ks`` and ``wasserstein_iqr`` (numeric) or ``tvd`` (categorical).
        association_error: Mean absolute difference of the association matrices.
        detection_auc: Real-vs-synthetic classifier AUC (cross-validated).
        rows: Real and synthetic rows compared.
    """

    columns: dict[str, dict[str, float]]
    association_error: float
    detection_auc: float
    rows: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, with the per-column means."""
        data = asdict(self)
        for metric in ("ks", "wasserstein_iqr", "tvd"):
            values = [c[metric] for c in self.columns.values() if metric in c]
            data[f"mean_{metric}"] = float(np.mean(values)) if values else math.nan
        return data


def _codes(values: pd.Series) -> np.ndarray:
    return values.astype("object").where(values.notna(), "\x00missing").astype("string").to_numpy()


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    table = pd.crosstab(a, b).to_numpy()
    if min(table.shape) < 2:
        return 0.0
    chi2 = stats.chi2_contingency(table, correction=False)[0]
    return float(math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))


def _eta(categories: np.ndarray, values: np.ndarray) -> float:
    present = ~np.isnan(values)
    frame = pd.DataFrame({"c": categories[present], "v": values[present]})
    total = float(((frame["v"] - frame["v"].mean()) ** 2).sum())
    if total == 0:
        return 0.0
    groups = frame.groupby("c")["v"].agg(["size", "mean"])
    between = float((groups["size"] * (groups["mean"] - frame["v"].mean()) ** 2).sum())
    return math.sqrt(between / total)


def association_matrix(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> np.ndarray:
    """Pairwise associations in [0, 1] (|ρ|, η or V), columns numeric first."""
    columns = [*numeric, *categorical]
    numbers = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64") for c in numeric}
    codes = {c: _codes(frame[c]) for c in categorical}
    matrix = np.eye(len(columns))
    for i, a in enumerate(columns):
        for j in range(i + 1, len(columns)):
            b = columns[j]
            if a in numbers and b in numbers:
                both = ~np.isnan(numbers[a]) & ~np.isnan(numbers[b])
                rho = stats.spearmanr(numbers[a][both], numbers[b][both]).statistic if both.sum() > 2 else 0.0
                value = abs(float(np.nan_to_num(rho)))
            elif a in codes and b in codes:
                value = _cramers_v(codes[a], codes[b])
            else:
                category, number = (codes[a], numbers[b]) if a in codes else (codes[b], numbers[a])
                value = _eta(category, number)
            matrix[i, j] = matrix[j, i] = value
    return matrix


def _detection_auc(real: pd.DataFrame, synthetic: pd.DataFrame, categorical: Sequence[str], seed: int) -> float:
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    both = pd.concat([real, synthetic], ignore_index=True)
    for column in both.columns:
        if column in categorical:
            both[column] = both[column].astype("object").astype("string").astype("category")
        else:
            both[column] = pd.to_numeric(both[column], errors="coerce")
    labels = np.r_[np.zeros(len(real)), np.ones(len(synthetic))]
    scores = np.zeros(len(both))
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20,
              "num_threads": 1, "verbose": -1, "seed": seed, "deterministic": True}  # fmt: skip
    for train, test in StratifiedKFold(3, shuffle=True, random_state=seed).split(both, labels):
        booster = lgb.train(params, lgb.Dataset(both.iloc[train], labels[train]), num_boost_round=100)
        scores[test] = booster.predict(both.iloc[test])
    return float(roc_auc_score(labels, scores))


def synthetic_quality(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    seed: int = 0,
) -> SynthQuality:
    """Compare a synthetic table with the real one.

    Args:
        real: Real rows.
        synthetic: Synthetic rows (same columns).
        numeric: Numeric columns compared.
        categorical: Categorical columns compared.
        seed: Seed of the classifier's folds.

    Returns:
        The checks' results.
    """
    columns: dict[str, dict[str, float]] = {}
    for column in numeric:
        a = pd.to_numeric(real[column], errors="coerce").dropna().to_numpy(dtype="float64")
        b = pd.to_numeric(synthetic[column], errors="coerce").dropna().to_numpy(dtype="float64")
        q1, q3 = np.quantile(a, [0.25, 0.75])
        scale = (q3 - q1) or float(np.std(a)) or 1.0
        columns[column] = {
            "ks": float(stats.ks_2samp(a, b).statistic),
            "wasserstein_iqr": float(stats.wasserstein_distance(a, b) / scale),
        }
    for column in categorical:
        p = pd.Series(_codes(real[column])).value_counts(normalize=True)
        q = pd.Series(_codes(synthetic[column])).value_counts(normalize=True)
        columns[column] = {"tvd": float(0.5 * p.subtract(q, fill_value=0).abs().sum())}
    error = np.abs(association_matrix(real, numeric, categorical) - association_matrix(synthetic, numeric, categorical))
    pairs = np.triu_indices(len(columns), k=1)
    return SynthQuality(
        columns=columns,
        association_error=float(error[pairs].mean()) if len(pairs[0]) else 0.0,
        detection_auc=_detection_auc(
            real[[*numeric, *categorical]], synthetic[[*numeric, *categorical]], categorical, seed
        ),
        rows=(len(real), len(synthetic)),
    )
