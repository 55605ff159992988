"""Model drift: how the model's outputs, and its performance, moved between reference and window.

Four views, from cheapest to strongest evidence:

- **prediction shift**: the window's score distribution against the reference's (the numeric
  tests of ``components.drift.univariate``: KS, Wasserstein in reference IQRs, PSI);
- **confidence decay**: the mean confidence ``max(p, 1-p)`` with a Welch interval of its change;
- **estimated performance without labels** (CBPE, confidence-based performance estimation): the
  scores are calibrated on the labelled reference (isotonic regression), then the expected ROC
  curve of the window is built as if each row were positive with its calibrated probability.
  Both reference and window are estimated with the same calibrator, so the estimated *drop*
  does not inherit the calibrator's bias. Its interval draws the labels the estimate assumes.
  The estimate holds while ``P(label | score)`` holds (covariate shift); under concept drift only
  labels tell;
- **realised performance with labels**: the window's AUC against the reference's, with a
  bootstrap interval of the drop.

A performance drop is *predicted* when the estimate (or, with labels, the realised AUC) falls by
at least ``min_auc_drop`` and the interval of the drop excludes zero.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError
from components.drift.profile import profile_frame, summarize_frame
from components.drift.univariate import compare_numeric
from components.evaluate.core import row_aucs

__all__ = ["ModelDrift", "ModelDriftConfig", "detect_model_drift", "estimated_auc"]

_SCORE = "score"


@dataclass(frozen=True)
class ModelDriftConfig:
    """Thresholds of the model-drift verdict.

    Attributes:
        alpha: Significance level of the tests and 1 - coverage of the intervals.
        min_auc_drop: Smallest AUC drop (estimated or realised) that counts.
        score_effect_floor: Smallest Wasserstein distance of the scores, in reference IQRs, that counts.
        draws: Monte Carlo or bootstrap draws for the intervals.
        max_rows: Rows sampled from each side for the intervals.
        seed: Seed of the draws.
    """

    alpha: float = 0.05
    min_auc_drop: float = 0.02
    score_effect_floor: float = 0.1
    draws: int = 200
    max_rows: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha={self.alpha}: use a level in (0, 1)")
        if self.draws < 20:
            raise ConfigError(f"draws={self.draws}: use at least 20 draws")


@dataclass(frozen=True)
class ModelDrift:
    """Model drift of one window.

    Attributes:
        prediction_shift: KS statistic, p-value, Wasserstein effect (IQRs) and PSI of the scores;
            ``drifted`` when significant and above the effect floor.
        confidence: Mean confidence of reference and window, the change and its interval.
        estimated: CBPE: estimated AUC of reference and window, the drop and its interval.
        realised: With window labels: AUC of reference and window, the drop and its interval.
        predicted_drop: The performance drop the loop should act on (realised when labels are
            there, estimated otherwise).
        rows: Reference and window rows scored.
    """

    prediction_shift: dict[str, Any]
    confidence: dict[str, float]
    estimated: dict[str, float]
    realised: dict[str, float] | None
    predicted_drop: bool
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)


def _calibrator(scores: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.isotonic import IsotonicRegression

    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)


def estimated_auc(probabilities: np.ndarray, scores: np.ndarray) -> float:
    """Expected ROC AUC of scores whose rows are positive with the given probabilities (CBPE).

    The expected true- and false-positive rates at every threshold are cumulative sums of
    ``p`` and ``1 - p`` down the ranking; ties in score share a step.

    Args:
        probabilities: Calibrated P(label = 1) per row, shape (n,).
        scores: The model's scores, shape (n,).

    Returns:
        The area under the expected ROC curve (NaN when one class has no expected mass).
    """
    order = np.argsort(-scores, kind="stable")
    ranked, p = scores[order], probabilities[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    tp = np.cumsum(p)[last_of_tie]
    fp = np.cumsum(1.0 - p)[last_of_tie]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return math.nan
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def _sample(values: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    return values if len(values) <= rows else values[rng.choice(len(values), rows, replace=False)]


def _drop_interval(
    reference: np.ndarray, current: np.ndarray, alpha: float, group_sizes: tuple[float, float]
) -> tuple[float, float]:
    """Percentile interval of the AUC drop from draws of each side's AUC.

    Each side's draws (of independent rows) spread ``sqrt(group_size)`` times wider around
    their mean when rows come in groups that share their label; the drop's draws are the
    difference of the widened sides.
    """
    widened = [
        draws.mean() + math.sqrt(size) * (draws - draws.mean())
        for draws, size in zip((reference, current), group_sizes, strict=True)
    ]
    drops = widened[0] - widened[1]
    drops = drops[np.isfinite(drops)]
    if len(drops) == 0:
        return math.nan, math.nan
    low, high = np.quantile(drops, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _drawn_aucs(probabilities: np.ndarray, scores: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """AUCs of ``draws`` label sets drawn from the calibrated probabilities (one ranking for all)."""
    labels = (rng.random((draws, len(scores))) < probabilities).astype("float64")
    positives = labels.sum(axis=1)
    negatives = len(scores) - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return (labels @ stats.rankdata(scores) - positives * (positives + 1) / 2) / (positives * negatives)


def _bootstrap_aucs(labels: np.ndarray, scores: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(labels), (draws, len(labels)))
    return row_aucs(labels[idx].astype("float64"), scores[idx])


def _confidence(
    reference: np.ndarray, window: np.ndarray, alpha: float, group_sizes: tuple[float, float]
) -> dict[str, float]:
    ref_conf, win_conf = np.maximum(reference, 1 - reference), np.maximum(window, 1 - window)
    change = float(win_conf.mean() - ref_conf.mean())
    se = math.sqrt(
        ref_conf.var(ddof=1) * group_sizes[0] / len(ref_conf) + win_conf.var(ddof=1) * group_sizes[1] / len(win_conf)
    )
    z = float(stats.norm.ppf(1 - alpha / 2))
    p_value = float(2 * stats.norm.sf(abs(change) / se)) if se > 0 else (1.0 if change == 0 else 0.0)
    return {
        "reference": float(ref_conf.mean()),
        "current": float(win_conf.mean()),
        "change": change,
        "low": change - z * se,
        "high": change + z * se,
        "p_value": p_value,
    }


def detect_model_drift(
    *,
    reference_scores: np.ndarray,
    reference_labels: np.ndarray,
    current_scores: np.ndarray,
    current_labels: np.ndarray | None = None,
    group_sizes: tuple[float, float] = (1.0, 1.0),
    config: ModelDriftConfig = ModelDriftConfig(),
) -> ModelDrift:
    """Compare the model's behaviour on a window with its behaviour on the labelled reference.

    Args:
        reference_scores: Predicted P(label = 1) on reference rows the model did not train on
            (its validation rows), shape (m,).
        reference_labels: Their 0/1 labels, shape (m,).
        current_scores: Predicted P(label = 1) on the window, shape (n,).
        current_labels: The window's 0/1 labels when they are known, shape (n,).
        group_sizes: The reference's and the window's size-weighted mean group sizes when rows
            come in alike groups (see ``components.drift.profile``). A group's rows share their
            label and nearly their score (GDELT: an article's tone), so the tests count
            ``rows / group_size`` effective rows and each side's draws spread
            ``sqrt(group_size)`` times wider.
        config: Thresholds.

    Returns:
        The model-drift result.

    Raises:
        ConfigError: When shapes disagree or the reference holds one class only.
    """
    ref_s = np.asarray(reference_scores, dtype="float64")
    ref_y = np.asarray(reference_labels, dtype="int64")
    cur_s = np.asarray(current_scores, dtype="float64")
    if ref_s.shape != ref_y.shape or len(ref_s) == 0 or len(cur_s) == 0:
        raise ConfigError("reference scores and labels need one entry per row, and neither side may be empty")
    if len(np.unique(ref_y)) < 2:
        raise ConfigError("the reference labels hold one class: no performance to compare with")
    rng = np.random.default_rng(config.seed)

    scores = profile_frame(pd.DataFrame({_SCORE: ref_s}), numeric=[_SCORE], categorical=[])
    shift = compare_numeric(
        scores.numeric[_SCORE],
        summarize_frame(pd.DataFrame({_SCORE: cur_s}), scores).numeric[_SCORE],
        design_effects=group_sizes,
    )
    prediction_shift: dict[str, Any] = {
        "statistic": shift.statistic,
        "p_value": shift.p_value,
        "effect": shift.effect,
        "psi": shift.psi,
        "drifted": bool(shift.p_value < config.alpha and shift.effect >= config.score_effect_floor),
    }

    calibrate = _calibrator(ref_s, ref_y)
    ref_sample = _sample(np.arange(len(ref_s)), config.max_rows, rng)
    cur_sample = _sample(np.arange(len(cur_s)), config.max_rows, rng)
    ref_p, cur_p = calibrate.predict(ref_s[ref_sample]), calibrate.predict(cur_s[cur_sample])
    ref_est, cur_est = estimated_auc(ref_p, ref_s[ref_sample]), estimated_auc(cur_p, cur_s[cur_sample])
    low, high = _drop_interval(
        _drawn_aucs(ref_p, ref_s[ref_sample], config.draws, rng),
        _drawn_aucs(cur_p, cur_s[cur_sample], config.draws, rng),
        config.alpha,
        group_sizes,
    )
    estimated = {"reference": ref_est, "current": cur_est, "drop": ref_est - cur_est, "low": low, "high": high}
    estimated_drop = bool(estimated["drop"] >= config.min_auc_drop and low > 0)

    realised = None
    predicted = estimated_drop
    if current_labels is not None:
        cur_y = np.asarray(current_labels, dtype="int64")
        if cur_y.shape != cur_s.shape:
            raise ConfigError("current scores and labels need one entry per row")
        if len(np.unique(cur_y)) == 2:
            ref_auc = float(row_aucs(ref_y[None, :].astype("float64"), ref_s[None, :])[0])
            cur_auc = float(row_aucs(cur_y[None, :].astype("float64"), cur_s[None, :])[0])
            low, high = _drop_interval(
                _bootstrap_aucs(ref_y[ref_sample], ref_s[ref_sample], config.draws, rng),
                _bootstrap_aucs(cur_y[cur_sample], cur_s[cur_sample], config.draws, rng),
                config.alpha,
                group_sizes,
            )
            realised = {"reference": ref_auc, "current": cur_auc, "drop": ref_auc - cur_auc, "low": low, "high": high}
            predicted = bool(realised["drop"] >= config.min_auc_drop and low > 0)
    return ModelDrift(
        prediction_shift=prediction_shift,
        confidence=_confidence(ref_s, cur_s, config.alpha, group_sizes),
        estimated=estimated,
        realised=realised,
        predicted_drop=predicted,
        rows={"reference": len(ref_s), "current": len(cur_s)},
    )
