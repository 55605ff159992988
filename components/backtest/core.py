"""Backtest: replay a labelled history batch by batch and compare retraining policies on it.

Prequential (test, then learn): the first batch trains the first model; every later batch is
scored by the model of the moment (its metric is that batch's result), then its labels become
known and the policy may retrain on data up to and including it. Policies:

* ``static``: never retrains;
* ``every_batch``: retrains after every batch on the last ``window`` rows;
* ``periodic_<k>``: retrains after every k-th batch on the last ``window`` rows;
* ``driftpilot``: the decision layer itself (``components.decide``): after every batch the
  investigator reads the served model's metric against its own record since it was trained (a
  one-sided test at ``alpha``, a drop of at least ``min_drop``), the features' drift against
  its training rows, the label's prior and the loss per segment; the strategist proposes, the
  safety policy rules (at the batch's time), and an executed response runs: a retrain on the
  window (recent rows or all rows) that does better on the latest batch when both are trained
  without it, an incremental update, a recalibration to the latest prior, or a rollback to the
  model served before. Each response's benefit on the next batch goes to the knowledge base.

Every policy trains the same LightGBM model (``rounds`` trees, one thread). KPIs per policy: the
mean of the batch metrics, the metric over every scored row pooled, the retrains (updates
included; recalibrations and rollbacks train nothing) and the seconds spent training.
"""

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError
from components.decide.core import Decision, respond
from components.decide.investigate import InvestigatorConfig
from components.decide.knowledge import KnowledgeBase, Outcome
from components.decide.safety import Executed, SafetyPolicy
from components.decide.signals import relative_log_loss, signals_from_scores
from components.decide.strategy import StrategyConfig
from components.train.model import prior_corrected, recalibration_odds

__all__ = [
    "BacktestConfig",
    "Batch",
    "PolicyRun",
    "Stream",
    "csv_stream",
    "gdelt_stream",
    "kpis",
    "replay_driftpilot",
    "replay_static",
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
        at: Its time (ISO 8601, UTC; '' when the history has none).
        quality: The ingestion-anomaly agent's report on it (None: not checked).
    """

    name: str
    features: pd.DataFrame
    labels: np.ndarray
    at: str = ""
    quality: dict[str, Any] | None = None


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
        safety: driftpilot's safety policy (escalations are not executed: nobody approves them).
        batch_hours: Hours between batches of a history without times (the policy's clock).
    """

    rounds: int = 200
    window: int = 5000
    periods: tuple[int, ...] = (3, 5, 10)
    alpha: float = 0.01
    min_drop: float = 0.02
    seed: int = 0
    safety: SafetyPolicy = field(default_factory=SafetyPolicy)
    batch_hours: float = 24.0


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
        name = path.name.split(".")[0]
        at = dt.datetime.strptime(name, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC).isoformat()
        batches.append(Batch(name, build_features(valid, task).reset_index(drop=True), labels, at))
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
        decisions: driftpilot's decision per batch it ruled on.
    """

    name: str
    batch_metrics: list[float] = field(default_factory=list)
    retrain_after: list[int] = field(default_factory=list)
    train_seconds: float = 0.0
    labels: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


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


def _replay(stream: Stream, config: BacktestConfig, name: str, period: int) -> PolicyRun:
    """A baseline: retrain after every ``period``-th batch on the last ``window`` rows (0: never)."""
    trainer = _Trainer(stream, config)
    run = PolicyRun(name)
    model = trainer.fit(*trainer.rows(0, config.window), run)
    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        proba = np.asarray(model.predict(batch.features), dtype="float64")
        run.batch_metrics.append(_score(stream.metric, batch.labels, proba))
        run.labels.append(batch.labels)
        run.scores.append(proba)
        if period and t % period == 0 and t < len(stream.batches) - 1:
            model = trainer.fit(*trainer.rows(t, config.window), run)
            run.retrain_after.append(t)
            run.reasons.append(f"after {batch.name}: every {period} batches")
    return run


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


def _log_loss(labels: np.ndarray, proba: np.ndarray) -> float:
    """Log loss relative to the entropy of the rows' prior (``relative_log_loss``)."""
    proba = np.clip(proba, 1e-7, 1 - 1e-7)
    raw = -float(np.mean(np.where(labels == 1, np.log(proba), np.log(1 - proba))))
    return relative_log_loss(raw, float(np.mean(labels)))


@dataclass(frozen=True)
class _Served:
    """A model as driftpilot serves it: a booster, its prior correction and its drift reference."""

    booster: Any
    profile: Any
    odds: float = 1.0

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        return prior_corrected(np.asarray(self.booster.predict(features), dtype="float64"), self.odds)

    def importance(self) -> dict[str, float]:
        gains = np.asarray(self.booster.feature_importance("gain"), dtype="float64")
        total = float(gains.sum())
        return {n: float(g) / total if total else 0.0 for n, g in zip(self.booster.feature_name(), gains, strict=True)}


def _drift_reference(trainer: _Trainer, features: pd.DataFrame, labels: np.ndarray) -> Any:
    from components.drift.core import LABEL, profile_features

    frame = features.copy()
    frame[LABEL] = pd.Series(labels, index=frame.index).astype("string")
    numeric = [c for c in frame.columns if c != LABEL and c not in trainer.categorical]
    return profile_features(frame, numeric=numeric, categorical=trainer.categorical)


def _drift_report(profile: Any, batch: Batch) -> dict[str, Any]:
    from components.drift.core import LABEL, compare, summarize_window

    frame = batch.features.copy()
    frame[LABEL] = pd.Series(batch.labels, index=frame.index).astype("string")
    return compare(profile, summarize_window(frame, profile)).to_dict()


def replay_driftpilot(stream: Stream, config: BacktestConfig = BacktestConfig()) -> PolicyRun:
    """The decision layer on the stream: investigate, propose, rule, then act and learn.

    Actions: ``retrain`` (on the window that validates better), ``update`` (more trees on the
    latest batch), ``recalibrate`` (move the scores to the latest batch's prior), ``rollback``
    (serve the previous model again). Escalations are not executed. Tuning is not available here.
    Each action's benefit is measured on the next batch (the new model's metric minus the old
    one's) and kept in the knowledge base the strategist consults.
    """
    trainer = _Trainer(stream, config)
    run = PolicyRun("driftpilot")
    knowledge = KnowledgeBase()
    investigator = InvestigatorConfig(alpha=config.alpha, min_drop=config.min_drop)
    strategy = StrategyConfig(tune=False)
    choose_window = _driftpilot_window(stream, config)
    first = stream.batches[0].features
    segment_columns = [c for c in trainer.categorical if first[c].nunique() <= 50]
    origin = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    def fit(last: int, window: int) -> _Served:
        features, labels = trainer.rows(last, window)
        return _Served(trainer.fit(features, labels, run), _drift_reference(trainer, features, labels))

    served, previous = fit(0, config.window), None
    record: list[tuple[float, float, float]] = []  # the served model's (metric, se, relative log loss)
    history: list[Executed] = []
    pending: tuple[Decision, _Served] | None = None  # an action whose benefit the next batch measures
    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        proba = served.predict(batch.features)
        value = _score(stream.metric, batch.labels, proba)
        run.batch_metrics.append(value)
        run.labels.append(batch.labels)
        run.scores.append(proba)
        if pending is not None:  # the benefit in the metric, or in log loss for a recalibration
            done, before = pending
            if done.proposal.action == "recalibrate":
                benefit = _log_loss(batch.labels, before.predict(batch.features)) - _log_loss(batch.labels, proba)
            else:
                benefit = value - _score(stream.metric, batch.labels, before.predict(batch.features))
            causes = tuple(c.feature for c in done.investigation.causes)
            if not math.isnan(benefit):
                knowledge.add(Outcome(done.signals.incident, done.signals.at, done.investigation.kind, causes,
                                      done.proposal.action, round(benefit, 6)))  # fmt: skip
            pending = None
        if t == len(stream.batches) - 1:
            break
        earlier = [r for r in record if not math.isnan(r[0])]
        expected = {"value": math.nan, "se": 0.0, "relative_log_loss": math.nan}
        if earlier:
            values = [r[0] for r in earlier]
            spread = float(np.var(values, ddof=1)) if len(values) > 1 else 0.0  # the sample variance
            expected = {"value": float(np.mean(values)), "se": math.sqrt(spread / len(values)),
                        "relative_log_loss": float(np.mean([r[2] for r in earlier]))}  # fmt: skip
        at = batch.at or (origin + dt.timedelta(hours=config.batch_hours * t)).isoformat()
        signals = signals_from_scores(
            incident=f"{stream.metric}-{batch.name}".replace(" ", "-"),
            at=at,
            metric=stream.metric,
            expected=expected,
            labels=batch.labels,
            proba=proba,
            frame=batch.features,
            drift=_drift_report(served.profile, batch),
            importance=served.importance(),
            quality=batch.quality,
            previous_proba=previous.predict(batch.features) if previous is not None else None,
            segment_columns=segment_columns,
        )
        record.append((signals.current, signals.current_se, signals.current_log_loss))
        decision = respond(
            signals, policy=config.safety, history=history, knowledge=knowledge, investigator=investigator,
            strategy=strategy,
        )  # fmt: skip
        run.decisions.append(decision)
        action = decision.action
        if action in ("none", "monitor", "escalate"):
            continue
        history.append(Executed(dt.datetime.fromisoformat(at), action))
        before = served
        if action in ("retrain", "retrain_tune"):
            served = fit(t, choose_window(t, trainer, run))
        elif action == "update":
            import lightgbm as lgb

            started = time.perf_counter()
            params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "num_threads": 1,
                      "verbose": -1, "seed": config.seed, "deterministic": True}  # fmt: skip
            booster = lgb.train(params, lgb.Dataset(batch.features, batch.labels), num_boost_round=config.rounds // 4,
                                init_model=served.booster, keep_training_booster=True)  # fmt: skip
            run.train_seconds += time.perf_counter() - started
            served = _Served(booster, served.profile, served.odds)
        elif action == "recalibrate":
            served = _Served(served.booster, served.profile, served.odds * recalibration_odds(proba, batch.labels))
        elif action == "rollback" and previous is not None:
            served = previous
        previous = before
        if action != "recalibrate":  # the same trees keep their record
            record = []
        pending = (decision, before)
        if action in ("update", "retrain", "retrain_tune"):
            run.retrain_after.append(t)
        run.reasons.append(f"after {batch.name}: {action}: {decision.proposal.reason}")
    return run


def replay_static(stream: Stream, config: BacktestConfig = BacktestConfig()) -> PolicyRun:
    """The static model: trained on the first batch, never retrained."""
    return _replay(stream, config, "static", 0)


def run_backtest(stream: Stream, config: BacktestConfig = BacktestConfig()) -> list[PolicyRun]:
    """Replay the stream under every policy.

    Returns:
        One run per policy: static, every_batch, periodic_<k> (each k), driftpilot.
    """
    runs = [replay_static(stream, config), _replay(stream, config, "every_batch", 1)]
    runs.extend(_replay(stream, config, f"periodic_{k}", k) for k in config.periods)
    runs.append(replay_driftpilot(stream, config))
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
    ours_run = next(run for run in runs if run.name == "driftpilot")
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
        "driftpilot_actions": dict(sorted(Counter(d.action for d in ours_run.decisions if d.action != "none").items())),
        "driftpilot_escalations": sum(d.ruling.tier == "escalate" for d in ours_run.decisions),
        "driftpilot_responses": ours_run.reasons,
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
