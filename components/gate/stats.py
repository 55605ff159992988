"""Paired, cluster-robust statistics for comparing a challenger with the champion on one holdout.

Rows of a holdout are not always independent: GDELT events coded from one news article share
its label and most of its features. Every paired test here therefore takes an optional
``groups`` array (one key per row; ``None`` makes each row its own group) and sums evidence per
group before estimating a variance, so that 5 copies of one article count as one observation.
"""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = [
    "AucComparison",
    "Latency",
    "LossComparison",
    "McNemarResult",
    "calibration_error",
    "compare_aucs",
    "compare_log_losses",
    "mcnemar",
    "prediction_latency",
]

# Below this many discordant rows the chi-square approximation of McNemar's test is poor.
_EXACT_MCNEMAR_BELOW = 25


@dataclass(frozen=True)
class AucComparison:
    """Paired comparison of two models' ROC AUC on the same rows.

    Attributes:
        champion_auc: Champion's AUC (ties count 1/2).
        challenger_auc: Challenger's AUC.
        gain: Challenger minus champion.
        se: Cluster-robust standard error of the gain.
        z: ``gain / se``.
        p_better: One-sided p-value of "the challenger ranks better" (gain > 0).
        ci_low: Lower end of the two-sided interval of the gain at the requested confidence.
        ci_high: Upper end of that interval.
        groups: Independent groups (clusters) the variance rests on.
        rows: Rows compared.
    """

    champion_auc: float
    challenger_auc: float
    gain: float
    se: float
    z: float
    p_better: float
    ci_low: float
    ci_high: float
    groups: int
    rows: int

    def to_dict(self) -> dict[str, object]:
        """Return the comparison as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class McNemarResult:
    """Paired comparison of two models' hard predictions on the same rows.

    Attributes:
        champion_accuracy: Share of rows the champion gets right.
        challenger_accuracy: Share of rows the challenger gets right.
        champion_only: Rows only the champion gets right.
        challenger_only: Rows only the challenger gets right.
        statistic: Chi-square statistic (1 degree of freedom), cluster-adjusted when groups are given.
        p_value: Two-sided p-value of "both are equally accurate" (exact binomial when few
            rows are discordant and no groups are given).
    """

    champion_accuracy: float
    challenger_accuracy: float
    champion_only: int
    challenger_only: int
    statistic: float
    p_value: float

    def to_dict(self) -> dict[str, object]:
        """Return the result as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Latency:
    """How fast a model predicts.

    Attributes:
        single_p50_ms: Median time of a one-row prediction, in milliseconds.
        single_p95_ms: 95th percentile of that time, in milliseconds.
        batch_rows_per_s: Rows per second on one batch (best of the repeats).
    """

    single_p50_ms: float
    single_p95_ms: float
    batch_rows_per_s: float

    def to_dict(self) -> dict[str, object]:
        """Return the measurement as JSON-ready data."""
        return asdict(self)


def _binary_labels(labels: ArrayLike) -> np.ndarray:
    """Labels as a 1-D int array of 0/1, or ValueError."""
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {values.shape}")
    if not np.isin(values, [0, 1]).all():
        raise ValueError("labels must be 0/1 (or booleans)")
    return values.astype("int64")


def _scores(values: ArrayLike, rows: int, name: str) -> np.ndarray:
    """Scores as a finite 1-D float array of ``rows`` values, or ValueError."""
    array = np.asarray(values, dtype="float64")
    if array.shape != (rows,):
        raise ValueError(f"{name} must hold one value per row ({rows}), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


def _group_codes(groups: ArrayLike | None, rows: int) -> np.ndarray:
    """One integer code per row, 0..K-1, from arbitrary group keys (``None``: one group per row)."""
    if groups is None:
        return np.arange(rows)
    keys = np.asarray(groups)
    if keys.shape != (rows,):
        raise ValueError(f"groups must hold one key per row ({rows}), got shape {keys.shape}")
    codes, _ = pd.factorize(keys)
    if (codes < 0).any():
        raise ValueError("groups hold missing keys: give every row a group (its own if it stands alone)")
    return codes


def _placements(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong placement values in O(N log N).

    Returns:
        For each positive the share of negatives scored below it, and for each negative the share
        of positives scored above it; ties count 1/2.
    """
    negative_sorted, positive_sorted = np.sort(negative), np.sort(positive)
    below = np.searchsorted(negative_sorted, positive, side="left")
    below_or_tied = np.searchsorted(negative_sorted, positive, side="right")
    v10 = (below + below_or_tied) / (2 * len(negative))
    at_or_below = np.searchsorted(positive_sorted, negative, side="right")
    below_only = np.searchsorted(positive_sorted, negative, side="left")
    v01 = ((len(positive) - at_or_below) + (len(positive) - below_only)) / (2 * len(positive))
    return v10, v01


def _auc_influence(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC and each row's contribution to its deviation: (V10 - A)/m for positives, (V01 - A)/n for negatives."""
    positive = labels == 1
    m, n = int(positive.sum()), int((~positive).sum())
    v10, v01 = _placements(scores[positive], scores[~positive])
    auc = float(v10.mean())
    influence = np.empty(len(labels))
    influence[positive] = (v10 - auc) / m
    influence[~positive] = (v01 - auc) / n
    return auc, influence


def compare_aucs(
    labels: ArrayLike,
    champion: ArrayLike,
    challenger: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    confidence: float = 0.90,
) -> AucComparison:
    """Compare two models' ROC AUC on the same rows with DeLong's paired test, cluster-robust.

    Uses DeLong placement values and the clustered variance of Obuchowski (1997): each row's
    influence on the AUC gain (challenger minus champion) is summed per group, and the variance
    of the gain is ``K/(K-1) * sum_k z_k**2`` over the K group sums ``z_k``. With one row per
    group this is the variance of DeLong, DeLong & Clarke-Pearson (1988) times a factor between
    ``(1 - 1/m) K/(K-1)`` and ``(1 - 1/n) K/(K-1)`` (m positives, n negatives), i.e. within 1/min(m, n).

    Args:
        labels: 0/1 truth per row, shape (n,).
        champion: Champion's scores per row (any monotone score; probabilities do), shape (n,).
        challenger: Challenger's scores per row, shape (n,).
        groups: Group key per row, shape (n,); rows sharing a key are treated as correlated
            (e.g. events coded from one article). ``None``: every row is independent.
        confidence: Coverage of the two-sided interval of the gain, in (0, 1).

    Returns:
        Both AUCs, the gain, its standard error, z, the one-sided p-value of a positive gain and
        the interval.

    Raises:
        ValueError: If the labels hold one class only (AUC undefined), the rows form fewer than two
            groups, inputs differ in length or hold non-finite scores, or ``confidence`` is not in (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    y = _binary_labels(labels)
    rows = len(y)
    champion_scores = _scores(champion, rows, "champion")
    challenger_scores = _scores(challenger, rows, "challenger")
    if y.min(initial=1) == y.max(initial=0):
        raise ValueError(f"labels hold one class only ({rows} rows): AUC is undefined, compare on a mixed holdout")
    codes = _group_codes(groups, rows)
    clusters = int(codes.max()) + 1
    if clusters < 2:
        raise ValueError("all rows form one group: the variance of the gain cannot be estimated")

    champion_auc, champion_influence = _auc_influence(y, champion_scores)
    challenger_auc, challenger_influence = _auc_influence(y, challenger_scores)
    per_group = np.bincount(codes, weights=challenger_influence - champion_influence, minlength=clusters)
    se = math.sqrt(clusters / (clusters - 1) * float(per_group @ per_group))
    gain = challenger_auc - champion_auc
    if se > 0:
        z = gain / se
        p_better = float(stats.norm.sf(z))
    else:
        # Every group moves the AUC by exactly the gain: it is known without error.
        z = math.copysign(math.inf, gain) if gain != 0 else 0.0
        p_better = 0.0 if gain > 0 else 1.0
    half_width = float(stats.norm.ppf(0.5 + confidence / 2)) * se
    return AucComparison(
        champion_auc=champion_auc,
        challenger_auc=challenger_auc,
        gain=gain,
        se=se,
        z=z,
        p_better=p_better,
        ci_low=gain - half_width,
        ci_high=gain + half_width,
        groups=clusters,
        rows=rows,
    )


@dataclass(frozen=True)
class LossComparison:
    """Paired comparison of two models' mean log loss on the same rows.

    Attributes:
        champion_log_loss: Champion's mean log loss.
        challenger_log_loss: Challenger's mean log loss.
        reduction: Champion minus challenger (positive: the challenger's probabilities are better).
        se: Cluster-robust standard error of the reduction.
        p_better: One-sided p-value of "the challenger's loss is lower".
    """

    champion_log_loss: float
    challenger_log_loss: float
    reduction: float
    se: float
    p_better: float

    def to_dict(self) -> dict[str, object]:
        """Return the comparison as JSON-ready data."""
        return asdict(self)


def compare_log_losses(
    labels: ArrayLike,
    champion: ArrayLike,
    challenger: ArrayLike,
    groups: ArrayLike | None = None,
    weights: ArrayLike | None = None,
) -> LossComparison:
    """Compare two models' log loss on the same rows: a paired, cluster-robust z-test of the mean difference.

    Log loss judges probabilities, not only their order: a recalibrated challenger with the
    champion's ranking wins here and ties on AUC.

    Args:
        labels: 0/1 truth per row.
        champion: Champion's probabilities per row.
        challenger: Challenger's probabilities per row.
        groups: Group key per row (``None``: every row is independent).
        weights: Row weights (e.g. ``population_weights``): the losses are weighted means.

    Returns:
        Both losses, the reduction, its standard error and the one-sided p-value.

    Raises:
        ValueError: If inputs differ in length, hold non-finite values, or form fewer than two groups.
    """
    y = _binary_labels(labels)
    rows = len(y)

    def losses(proba: ArrayLike, name: str) -> np.ndarray:
        p = np.clip(_scores(proba, rows, name), 1e-7, 1 - 1e-7)
        return -(y * np.log(p) + (1 - y) * np.log(1 - p))

    champion_loss, challenger_loss = losses(champion, "champion"), losses(challenger, "challenger")
    codes = _group_codes(groups, rows)
    clusters = int(codes.max()) + 1
    if clusters < 2:
        raise ValueError("all rows form one group: the variance of the difference cannot be estimated")
    w = np.ones(rows) if weights is None else _scores(weights, rows, "weights")
    w = w / w.sum()
    difference = champion_loss - challenger_loss
    reduction = float(w @ difference)
    per_group = np.bincount(codes, weights=w * (difference - reduction), minlength=clusters)
    se = math.sqrt(clusters / (clusters - 1) * float(per_group @ per_group))
    p_better = float(stats.norm.sf(reduction / se)) if se > 0 else (0.0 if reduction > 0 else 1.0)
    return LossComparison(float(w @ champion_loss), float(w @ challenger_loss), reduction, se, p_better)


def mcnemar(
    labels: ArrayLike,
    champion_pred: ArrayLike,
    challenger_pred: ArrayLike,
    groups: ArrayLike | None = None,
) -> McNemarResult:
    """Test whether two models' hard predictions are equally accurate on the same rows (McNemar).

    The statistic is ``(sum_k d_k)**2 / sum_k d_k**2`` with ``d_k`` the challenger-only minus
    champion-only count of group k (Durkalski et al. 2003), chi-square with 1 degree of freedom;
    with one row per group it is the uncorrected McNemar ``(b - c)**2 / (b + c)``. Without groups
    and with fewer than 25 discordant rows the p-value comes from the exact binomial test instead.

    Args:
        labels: Truth per row, shape (n,).
        champion_pred: Champion's predicted label per row, shape (n,).
        challenger_pred: Challenger's predicted label per row, shape (n,).
        groups: Group key per row, shape (n,); ``None``: every row is independent.

    Returns:
        Both accuracies, the discordant counts, the statistic and the two-sided p-value
        (statistic 0 and p-value 1 when no row is discordant).

    Raises:
        ValueError: If the inputs are empty, not 1-D or differ in length.
    """
    truth = np.asarray(labels)
    rows = len(truth)
    if truth.ndim != 1 or rows == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {truth.shape}")
    champion_values, challenger_values = np.asarray(champion_pred), np.asarray(challenger_pred)
    if champion_values.shape != (rows,) or challenger_values.shape != (rows,):
        shapes = f"{champion_values.shape} and {challenger_values.shape}"
        raise ValueError(f"predictions must hold one value per row ({rows}), got {shapes}")
    champion_right, challenger_right = champion_values == truth, challenger_values == truth
    codes = _group_codes(groups, rows)
    champion_only = int((champion_right & ~challenger_right).sum())
    challenger_only = int((challenger_right & ~champion_right).sum())
    difference = challenger_right.astype("int64") - champion_right.astype("int64")
    per_group = np.bincount(codes, weights=difference)
    spread = float(per_group @ per_group)
    if spread == 0:
        statistic, p_value = 0.0, 1.0
    else:
        statistic = float(per_group.sum()) ** 2 / spread
        p_value = float(stats.chi2.sf(statistic, df=1))
        discordant = champion_only + challenger_only
        if groups is None and discordant < _EXACT_MCNEMAR_BELOW:
            p_value = float(stats.binomtest(challenger_only, discordant, 0.5).pvalue)
    return McNemarResult(
        champion_accuracy=float(champion_right.mean()),
        challenger_accuracy=float(challenger_right.mean()),
        champion_only=champion_only,
        challenger_only=challenger_only,
        statistic=statistic,
        p_value=p_value,
    )


def calibration_error(labels: ArrayLike, proba: ArrayLike, bins: int = 10, weights: ArrayLike | None = None) -> float:
    """Expected calibration error over equal-mass bins.

    Rows are sorted by predicted probability and cut into ``bins`` bins of (nearly) equal size;
    the error is ``sum_b (w_b / W) * |mean_w(y_b) - mean_w(p_b)|`` (weighted means, unit weights
    by default).

    Args:
        labels: 0/1 truth per row, shape (n,).
        proba: Predicted P(label = 1) per row, shape (n,).
        bins: Number of bins (fewer when there are fewer rows).
        weights: Row weights (e.g. ``population_weights``); None weighs rows equally.

    Returns:
        The error, in probability units (0 is perfectly calibrated).

    Raises:
        ValueError: If there are no rows, ``bins`` is below 1, or the inputs differ in length.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    y = _binary_labels(labels)
    if len(y) == 0:
        raise ValueError("no rows to measure calibration on")
    p = _scores(proba, len(y), "proba")
    w = np.ones(len(y)) if weights is None else _scores(weights, len(y), "weights")
    order = np.argsort(p, kind="stable")
    error = 0.0
    for chunk in np.array_split(order, min(bins, len(y))):
        mass = float(w[chunk].sum())
        error += abs(float(w[chunk] @ y[chunk]) - float(w[chunk] @ p[chunk])) if mass > 0 else 0.0
    return error / float(w.sum())


def prediction_latency(
    predicts: Mapping[str, Callable[[pd.DataFrame], object]],
    rows: pd.DataFrame,
    *,
    single: int = 200,
    batch: int = 1000,
    repeats: int = 5,
) -> dict[str, Latency]:
    """Time models' predictions on one-row frames and on one batch, side by side.

    The models are timed in turn on the same inputs, their order alternating from one input to the
    next, so a busy host slows them alike and a comparison stays fair under CPU contention. Each
    one-row time is the fastest of ``repeats`` calls on that row: a call the scheduler preempted says
    nothing about the model, while a row that is slow on every call does. The batch repeats ``rows``
    cyclically up to ``batch`` rows and is timed ``repeats`` times a model, keeping the fastest. One
    untimed call warms each model up first. A 1 ms predict costs about ``(single + 1) * repeats`` ms a
    model.

    Args:
        predicts: Each model's name and its function taking a DataFrame and returning predictions.
        rows: Example input rows (at least one).
        single: One-row inputs to time.
        batch: Rows in the batch.
        repeats: Calls per one-row input and per batch.

    Returns:
        Each model's median and 95th percentile one-row latency and its batch throughput, by name.

    Raises:
        ValueError: If ``rows`` or ``predicts`` is empty or a count is below 1.
    """
    if rows.empty:
        raise ValueError("rows is empty: latency needs at least one example row")
    if not predicts:
        raise ValueError("predicts is empty: name at least one model to time")
    if min(single, batch, repeats) < 1:
        raise ValueError(f"single, batch and repeats must be at least 1, got {single}, {batch}, {repeats}")
    names = list(predicts)
    for name in names:
        predicts[name](rows.iloc[:1])

    def fastest(name: str, frame: pd.DataFrame) -> float:
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            predicts[name](frame)
            best = min(best, time.perf_counter() - start)
        return best

    seconds = {name: np.empty(single) for name in names}
    for i in range(single):
        row = rows.iloc[[i % len(rows)]]
        for name in names if i % 2 == 0 else reversed(names):
            seconds[name][i] = fastest(name, row)
    frame = rows.iloc[np.arange(batch) % len(rows)].reset_index(drop=True)
    batch_best = {name: fastest(name, frame) for name in names}
    out = {}
    for name in names:
        p50, p95 = np.percentile(seconds[name], [50, 95]) * 1000
        best = batch_best[name]
        out[name] = Latency(
            single_p50_ms=float(p50),
            single_p95_ms=float(p95),
            batch_rows_per_s=batch / best if best > 0 else math.inf,
        )
    return out
