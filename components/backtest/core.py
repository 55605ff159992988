"""Backtest: replay a labelled history batch by batch and compare retraining policies on it.

Prequential (test, then learn): the first batch trains the first model; every later batch is
scored by the model of the moment (its metric is that batch's result), then its labels become
known and the policy may retrain on data up to and including it. Policies:

* ``static``: never retrains;
* ``every_batch``: retrains after every batch on the last ``window`` rows;
* ``periodic_<k>``: retrains after every k-th batch on the last ``window`` rows;
* ``driftpilot``: retrains when the model's latest batch is significantly worse than its own
  record since it was trained (a one-sided test at ``alpha`` on the batch metric's standard
  error, and a drop of at least ``min_drop``), on the window (recent rows or all rows) that
  does better on the latest batch when both are trained without it.

Every policy trains the same LightGBM model (``rounds`` trees, one thread). KPIs per policy: the
mean of the batch metrics, the metric over every scored row pooled, the retrains and the
seconds spent training.
"""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError

__all__ = [
    "BacktestConfig",
    "Batch",
    "PolicyRun",
    "Stream",
    "csv_stream",
    "gdelt_stream",
    "kpis",
    "run_backtest",
    "write_backtest",
]


@dataclass(frozen=True)
class Batch:
    """One batch of the history.

    Attributes:
        name: Its name (a GDELT batch id, or ``rows a-b``).
        features: Model inputs (categories as ``category``, numbers as floats).
        labels: 0/1 labels.
    """

    name: str
    features: pd.DataFrame
    labels: np.ndarray


@dataclass(frozen=True)
class Stream:
    """A labelled history in time order.

    Attributes:
        batches: The batches.
        metric: ``accuracy`` or ``auc``.
        source: Where it came from.
        unlabelled_rows: Rows left out because their label was missing.
    """

    batches: tuple[Batch, ...]
    metric: str
    source: str
    unlabelled_rows: int = 0


@dataclass(frozen=True)
class BacktestConfig:
    """How the policies train and decide.

    Attributes:
        rounds: Boosting rounds per model.
        window: Rows the baselines (and driftpilot's recent window) train on; 0 for all rows seen.
        periods: The k of the ``periodic_<k>`` baselines.
        alpha: driftpilot's test level.
        min_drop: The smallest drop of the batch metric driftpilot acts on.
        seed: Training seed.
    """

    rounds: int = 200
    window: int = 5000
    periods: tuple[int, ...] = (3, 5, 10)
    alpha: float = 0.01
    min_drop: float = 0.02
    seed: int = 0


def _binary(values: pd.Series, column: str) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and a mask of the rows that have one."""
    present = values.notna().to_numpy()
    distinct = sorted(values[present].unique().tolist())
    if len(distinct) > 2:
        raise ConfigError(f"target {column!r} has {len(distinct)} values; the backtest takes a binary target")
    if not distinct:
        raise ConfigError(f"target {column!r} has no values")
    positive = distinct[-1]
    return (values == positive).to_numpy(dtype="int8"), present


def csv_stream(
    path: Path, *, target: str, time_column: str | None = None, batch_size: int = 1000, metric: str = "auto"
) -> Stream:
    """Read a CSV history: every column but the target (and the time column) is a feature.

    Args:
        path: The CSV (with a header).
        target: The binary label's column.
        time_column: Column to order rows by (left out of the features); None keeps file order.
        batch_size: Rows per batch.
        metric: ``accuracy``, ``auc`` or ``auto`` (AUC when the rarer class is under 30% of rows).

    Returns:
        The stream.

    Raises:
        ConfigError: When a column is missing, the target is not binary or there are fewer than
            two batches.
    """
    frame = pd.read_csv(path)
    for column in (target, time_column):
        if column and column not in frame.columns:
            raise ConfigError(f"{path} has no column {column!r}; columns: {list(frame.columns)}")
    if time_column:
        frame = frame.sort_values(time_column, kind="stable")
    labels, present = _binary(frame[target], target)
    frame, labels = frame[present].reset_index(drop=True), labels[present]
    features = frame.drop(columns=[c for c in (target, time_column) if c])
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]):
            features[column] = features[column].astype("string").astype("category")
        else:
            features[column] = features[column].astype("float64")
    batches = tuple(
        Batch(f"rows {start}-{min(start + batch_size, len(frame)) - 1}", features.iloc[start : start + batch_size],
              labels[start : start + batch_size])
        for start in range(0, len(frame), batch_size)
    )  # fmt: skip
    return _stream(batches, metric, str(path), int((~present).sum()))


def gdelt_stream(folder: Path, *, task_name: str = "gdelt-tone", metric: str = "auto") -> Stream:
    """Read a folder of GDELT 2.0 exports as one batch per export (validated rows, the task's features).

    Raises:
        ConfigError: When the folder holds fewer than two exports.
    """
    from components.common.task import load_task
    from components.features.core import build_features, build_labels
    from components.ingest.core import read_export
    from components.validate.core import validate_events

    task = load_task(task_name)
    files = sorted(p for p in folder.iterdir() if ".export.CSV" in p.name)
    batches = []
    for path in files:
        table = read_export(path).table
        if table is None:
            continue
        valid = validate_events(table.to_pandas()).valid
        labels = build_labels(valid, task).to_numpy(dtype="int8")
        batches.append(Batch(path.name.split(".")[0], build_features(valid, task).reset_index(drop=True), labels))
    return _stream(tuple(batches), metric, str(folder))


def _stream(batches: tuple[Batch, ...], metric: str, source: str, unlabelled: int = 0) -> Stream:
    if len(batches) < 2:
        raise ConfigError(f"{source} gives {len(batches)} batch(es); a backtest needs at least two")
    if metric == "auto":
        rate = float(np.mean(np.concatenate([b.labels for b in batches])))
        metric = "auc" if min(rate, 1 - rate) < 0.3 else "accuracy"
    if metric not in ("accuracy", "auc"):
        raise ConfigError(f"metric {metric!r}: use accuracy, auc or auto")
    return Stream(batches, metric, source, unlabelled)


def _score(metric: str, labels: np.ndarray, proba: np.ndarray) -> float:
    if metric == "accuracy":
        return float(np.mean((proba >= 0.5) == labels))
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, proba)) if 0 < labels.sum() < len(labels) else math.nan


def _standard_error(metric: str, labels: np.ndarray, value: float) -> float:
    """The batch metric's standard error (binomial for accuracy, Hanley & McNeil for AUC)."""
    n = len(labels)
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 1e-6) / n)
    positives = int(labels.sum())
    negatives = n - positives
    q1, q2 = value / (2 - value), 2 * value * value / (1 + value)
    variance = (value * (1 - value) + (positives - 1) * (q1 - value**2) + (negatives - 1) * (q2 - value**2)) / max(
        positives * negatives, 1
    )
    return math.sqrt(max(variance, 1e-9))


@dataclass
class PolicyRun:
    """One policy's replay.

    Attributes:
        name: The policy.
        batch_metrics: Metric per scored batch (batches 1..n).
        retrain_after: Indices of the batches after which it retrained.
        train_seconds: Seconds spent training (the first model included).
        labels: Every scored row's label, pooled.
        scores: Every scored row's score, pooled.
        reasons: Why it retrained, per retrain.
    """

    name: str
    batch_metrics: list[float] = field(default_factory=list)
    retrain_after: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    labels: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)


class _Trainer:
    def __init__(self, stream: Stream, config: BacktestConfig) -> None:
        self.stream = stream
        self.config = config
        first = stream.batches[0].features
        self.categorical = [c for c in first.columns if isinstance(first[c].dtype, pd.CategoricalDtype)]

    def rows(self, last: int, window: int) -> tuple[pd.DataFrame, np.ndarray]:
        """The last ``window`` rows (0: all) of batches 0..last."""
        features = pd.concat([b.features for b in self.stream.batches[: last + 1]], ignore_index=True)
        for column in self.categorical:  # batches with other categories concatenate to objects
            features[column] = features[column].astype("category")
        labels = np.concatenate([b.labels for b in self.stream.batches[: last + 1]])
        if window and len(labels) > window:
            features, labels = features.iloc[-window:], labels[-window:]
        return features, labels

    def fit(self, features: pd.DataFrame, labels: np.ndarray, run: PolicyRun) -> Any:
        import lightgbm as lgb

        started = time.perf_counter()
        params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
                  "num_threads": 1, "verbose": -1, "seed": self.config.seed, "deterministic": True}  # fmt: skip
        booster = lgb.train(params, lgb.Dataset(features, labels), num_boost_round=self.config.rounds)
        run.train_seconds += time.perf_counter() - started
        return booster


Decide = Callable[[int, PolicyRun, list[tuple[float, float]]], tuple[bool, str]]


def _replay(stream: Stream, config: BacktestConfig, name: str, decide: Decide, window: Callable[..., int]) -> PolicyRun:
    trainer = _Trainer(stream, config)
    run = PolicyRun(name)
    model = trainer.fit(*trainer.rows(0, config.window), run)
    record: list[tuple[float, float]] = []  # the current model's (metric, standard error) per batch
    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        proba = np.asarray(model.predict(batch.features), dtype="float64")
        value = _score(stream.metric, batch.labels, proba)
        run.batch_metrics.append(value)
        run.labels.append(batch.labels)
        run.scores.append(proba)
        record.append((value, _standard_error(stream.metric, batch.labels, value)))
        if t == len(stream.batches) - 1:
            break
        retrain, reason = decide(t, run, record)
        if retrain:
            model = trainer.fit(*trainer.rows(t, window(t, trainer, run)), run)
            run.retrain_after.append(t)
            run.reasons.append(f"after {batch.name}: {reason}")
            record = []
    return run


def _driftpilot_decide(stream: Stream, config: BacktestConfig) -> Decide:
    from scipy.stats import norm

    z = float(norm.ppf(1 - config.alpha))

    def decide(t: int, run: PolicyRun, record: list[tuple[float, float]]) -> tuple[bool, str]:
        earlier = [m for m, _ in record[:-1] if not math.isnan(m)]
        latest, se = record[-1]
        if not earlier or math.isnan(latest):
            return False, ""
        expected = float(np.mean(earlier))
        drop = expected - latest
        spread = math.sqrt(se**2 + float(np.var(earlier)) / len(earlier))
        if drop >= config.min_drop and drop > z * spread:
            return (
                True,
                f"{stream.metric} {latest:.3f} vs its record {expected:.3f} (drop {drop:.3f} > {z:.2f}·{spread:.3f})",
            )
        return False, ""

    return decide


def _driftpilot_window(stream: Stream, config: BacktestConfig) -> Callable[..., int]:
    def window(t: int, trainer: _Trainer, run: PolicyRun) -> int:
        """The window that, trained without batch t, scores batch t better: recent rows or all rows."""
        if not config.window:
            return 0
        latest = stream.batches[t]
        best, chosen = -math.inf, config.window
        for candidate in (config.window, 0):
            model = trainer.fit(*trainer.rows(t - 1, candidate), run)
            value = _score(stream.metric, latest.labels, np.asarray(model.predict(latest.features), dtype="float64"))
            if value > best:
                best, chosen = value, candidate
        return chosen

    return window


def run_backtest(stream: Stream, config: BacktestConfig = BacktestConfig()) -> list[PolicyRun]:
    """Replay the stream under every policy.

    Returns:
        One run per policy: static, every_batch, periodic_<k> (each k), driftpilot.
    """

    def fixed(t: int, trainer: _Trainer, run: PolicyRun) -> int:
        return config.window

    def every(k: int) -> Decide:
        return lambda t, run, record: (t % k == 0, f"every {k} batches")

    runs = [
        _replay(stream, config, "static", lambda t, run, record: (False, ""), fixed),
        _replay(stream, config, "every_batch", every(1), fixed),
    ]
    runs.extend(_replay(stream, config, f"periodic_{k}", every(k), fixed) for k in config.periods)
    runs.append(
        _replay(stream, config, "driftpilot", _driftpilot_decide(stream, config), _driftpilot_window(stream, config))
    )
    return runs


def kpis(stream: Stream, runs: Sequence[PolicyRun]) -> dict[str, Any]:
    """The ``kpis.json`` document."""
    policies = {}
    for run in runs:
        metrics = [m for m in run.batch_metrics if not math.isnan(m)]
        pooled = _score(stream.metric, np.concatenate(run.labels), np.concatenate(run.scores))
        policies[run.name] = {
            "mean_batch_metric": float(np.mean(metrics)) if metrics else math.nan,
            "overall_metric": pooled,
            "retrains": len(run.retrain_after),
            "train_seconds": round(run.train_seconds, 3),
        }
    static, every = policies["static"]["mean_batch_metric"], policies["every_batch"]["mean_batch_metric"]
    gain = every - static
    ours = policies["driftpilot"]
    return {
        "metric": stream.metric,
        "source": stream.source,
        "batches": len(stream.batches),
        "rows_without_label": stream.unlabelled_rows,
        "policies": policies,
        "driftpilot_share_of_gain": (ours["mean_batch_metric"] - static) / gain if gain > 0 else math.nan,
        "driftpilot_share_of_retrains": (
            ours["retrains"] / policies["every_batch"]["retrains"] if policies["every_batch"]["retrains"] else math.nan
        ),
        "driftpilot_retrains": [r for run in runs if run.name == "driftpilot" for r in run.reasons],
    }


def write_backtest(stream: Stream, runs: Sequence[PolicyRun], out: Path) -> dict[str, Any]:
    """Write ``kpis.json`` and ``backtest.png`` (batch metric per policy, driftpilot's retrains marked)."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    document = kpis(stream, runs)
    (out / "kpis.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    figure, axis = plt.subplots(figsize=(11, 4.5))
    for run in runs:
        label = f"{run.name} ({len(run.retrain_after)} retrains)"
        axis.plot(
            range(1, len(run.batch_metrics) + 1),
            run.batch_metrics,
            label=label,
            lw=2 if run.name == "driftpilot" else 1,
        )
    for after in next(r for r in runs if r.name == "driftpilot").retrain_after:
        axis.axvline(after + 0.5, color="black", lw=0.6, ls=":")
    axis.set_xlabel("batch (scored before its labels are learnt)")
    axis.set_ylabel(stream.metric)
    axis.set_title(f"Prequential backtest of {stream.source} (dotted: driftpilot retrains)")
    axis.legend(fontsize=8, ncol=2)
    figure.tight_layout()
    figure.savefig(out / "backtest.png", dpi=110)
    plt.close(figure)
    return document
