"""Multivariate drift: can a classifier tell the window's rows from the reference's?

Per-feature tests miss a change in how features go together (the same marginals, new joint
distribution). A domain classifier sees the joint: equal-sized samples of both sides are
labelled 0 (reference) and 1 (window), a small LightGBM model is cross-fitted on them, and
every row gets a score from the model that did not see it. Under no drift those out-of-fold
scores carry no information about the side, so their AUC is 0.5 up to noise: the Mann–Whitney
test of window scores above reference scores gives the p-value, and the Hanley–McNeil standard
error the interval. A floor on the AUC keeps huge samples from flagging negligible differences.
The features the classifier leans on most (gain) say where the difference lies.

When rows come in alike groups (GDELT: an article's events), a group's rows stay in one fold
(else the classifier recognises the group, not the side) and the test counts
``rows / group_size`` effective rows per side.

The false-alarm rate of this test is measured on null replays of real data (see
``components.drift.calibration``), not assumed.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError
from components.drift.profile import group_size

__all__ = ["MultivariateConfig", "MultivariateDrift", "detect_multivariate_drift"]


@dataclass(frozen=True)
class MultivariateConfig:
    """Settings of the domain-classifier test.

    Attributes:
        alpha: Significance level of the test; 1 - coverage of the interval.
        auc_floor: Smallest out-of-fold AUC that counts as drift.
        max_rows: Rows sampled from each side (the test's cost and power grow with it).
        folds: Cross-fitting folds.
        rounds: Boosting rounds of each fold's model.
        seed: Seed of the sampling, the folds and the model.
    """

    alpha: float = 0.05
    auc_floor: float = 0.55
    max_rows: int = 5_000
    folds: int = 5
    rounds: int = 60
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha={self.alpha}: use a level in (0, 1)")
        if not 0.5 <= self.auc_floor < 1:
            raise ConfigError(f"auc_floor={self.auc_floor}: use an AUC in [0.5, 1)")
        if self.folds < 2 or self.max_rows < 50:
            raise ConfigError("use at least 2 folds and 50 rows per side")


@dataclass(frozen=True)
class MultivariateDrift:
    """The domain classifier's verdict.

    Attributes:
        auc: Out-of-fold AUC of telling window rows from reference rows.
        low: Lower bound of its interval.
        high: Upper bound of its interval.
        p_value: One-sided Mann–Whitney p-value of AUC > 0.5.
        drifted: Significant at ``alpha`` and at or above the AUC floor.
        rows: Rows used from each side.
        top_features: The features the classifier leaned on most, with their share of gain.
    """

    auc: float
    low: float
    high: float
    p_value: float
    drifted: bool
    rows: int
    top_features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


def _encode(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Numbers as float64 and categories as pandas categories sharing one set of levels."""
    out = pd.DataFrame(index=frame.index)
    for column in numeric:
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in categorical:
        out[column] = frame[column].astype("string").astype("category")
    return out


def _hanley_mcneil(auc: float, positives: float, negatives: float) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def detect_multivariate_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    groups: tuple[pd.Series, pd.Series] | None = None,
    config: MultivariateConfig = MultivariateConfig(),
) -> MultivariateDrift:
    """Test whether a classifier can tell the window's rows from the reference's.

    Args:
        reference: Reference rows.
        current: Window rows.
        numeric: Numeric features.
        categorical: Categorical features.
        groups: The group of each reference and window row, when rows come in alike groups.
        config: Settings.

    Returns:
        The verdict.

    Raises:
        ConfigError: When no feature is named or a side has fewer than 20 rows.
    """
    import lightgbm as lgb

    columns = [*numeric, *categorical]
    if not columns:
        raise ConfigError("name at least one feature for the domain classifier")
    rows = min(config.max_rows, len(reference), len(current))
    if rows < 20:
        raise ConfigError(f"the domain classifier needs at least 20 rows per side, got {rows}")
    rng = np.random.default_rng(config.seed)
    picks = [rng.choice(len(frame), rows, replace=False) for frame in (reference, current)]
    data = _encode(
        pd.concat([f.iloc[p] for f, p in zip((reference, current), picks, strict=True)]), numeric, categorical
    )
    side = np.r_[np.zeros(rows), np.ones(rows)]
    if groups is None:
        fold = rng.permutation(np.arange(2 * rows) % config.folds)
        sizes = (1.0, 1.0)
    else:
        keys = pd.concat([g.iloc[p] for g, p in zip(groups, picks, strict=True)], ignore_index=True)
        codes = pd.factorize(keys.astype(str) + np.where(side == 1, "|w", "|r"))[0]
        fold = rng.permutation(codes.max() + 1)[codes] % config.folds
        sizes = (group_size(keys.iloc[:rows]), group_size(keys.iloc[rows:]))
    scores = np.zeros(2 * rows)
    gain = np.zeros(len(columns))
    params = {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 20,
        "feature_fraction": 0.8,
        "seed": config.seed,
        "num_threads": 1,
        "verbosity": -1,
        "deterministic": True,
    }
    for k in range(config.folds):
        train = fold != k
        booster = lgb.train(params, lgb.Dataset(data[train], side[train]), num_boost_round=config.rounds)
        scores[~train] = booster.predict(data[~train])
        gain += booster.feature_importance("gain")
    auc = float(stats.mannwhitneyu(scores[side == 1], scores[side == 0]).statistic) / (rows * rows)
    n_ref, n_cur = rows / sizes[0], rows / sizes[1]
    # Mann–Whitney's normal approximation, at the effective sizes.
    p_value = float(stats.norm.sf((auc - 0.5) / math.sqrt((n_ref + n_cur + 1) / (12 * n_ref * n_cur))))
    se = _hanley_mcneil(auc, n_cur, n_ref)
    z = float(stats.norm.ppf(1 - config.alpha / 2))
    shares = gain / gain.sum() if gain.sum() > 0 else gain
    top = sorted(zip(columns, shares, strict=True), key=lambda item: -item[1])[:5]
    return MultivariateDrift(
        auc=auc,
        low=max(0.0, auc - z * se),
        high=min(1.0, auc + z * se),
        p_value=p_value,
        drifted=bool(p_value < config.alpha and auc >= config.auc_floor),
        rows=rows,
        top_features={name: round(float(share), 4) for name, share in top if share > 0},
    )
