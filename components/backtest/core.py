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
from dataclasses import replace as dc_replace
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
from components.decide.value import ValueState, retrained, worth_deploying
from components.train.model import prior_corrected, recalibration_odds

__all__ = [
    "BacktestConfig",
    "Batch",
    "PolicyRun",
    "Stream",
    "csv_stream",
    "frame_stream",
    "gdelt_stream",
    "kpis",
    "replay_driftpilot",
    "replay_static",
    "run_backtest",
    "upf_area",
    "write_backtest",
    "write_report",
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
        window: Rows the baselines (and driftpilot's first model) train on; 0 for all rows seen.
        periods: The k of the ``periodic_<k>`` baselines.
        costs: The retrain costs (metric-batches) driftpilot also runs at, for the frontier and
            UPF's area metric (log-spaced over two orders of magnitude).
        holdout_fraction: Share of the newest batch held out of driftpilot's candidate, to judge it.
        refit: A candidate that passes is fitted again on its whole window, the held-out rows
            too (a second fit, charged), so the served model has the newest rows.
        alpha: driftpilot's test level.
        min_drop: The smallest drop of the batch metric driftpilot acts on.
        seed: Training seed.
        safety: driftpilot's safety policy (escalations are not executed: nobody approves them).
        batch_hours: Hours between batches of a history without times (the policy's clock).
    """

    rounds: int = 200
    window: int = 5000
    periods: tuple[int, ...] = tuple(range(2, 21))
    costs: tuple[float, ...] = (0.005, 0.016, 0.05, 0.16, 0.5)
    holdout_fraction: float = 0.3
    refit: bool = True
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
    return frame_stream(
        pd.read_csv(path),
        target=target,
        time_column=time_column,
        batch_size=batch_size,
        metric=metric,
        source=str(path),
    )


def frame_stream(
    frame: pd.DataFrame,
    *,
    target: str,
    time_column: str | None = None,
    batch_size: int = 1000,
    metric: str = "auto",
    source: str = "a table",
) -> Stream:
    """A labelled table as a stream (``csv_stream``'s rules; ``source`` names it in errors and reports).

    Raises:
        ConfigError: When a column is missing, the target is not binary or there are fewer than
            two batches.
    """
    for column in (target, time_column):
        if column and column not in frame.columns:
            raise ConfigError(f"{source} has no column {column!r}; columns: {list(frame.columns)}")
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
    return _stream(batches, metric, source, int((~present).sum()))


def gdelt_stream(folder: Path, *, task_name: str = "gdelt-tone", metric: str = "auto", batch_rows: int = 0) -> Stream:
    """Read a folder of GDELT 2.0 exports as one batch per export (validated rows, the task's features).

    With ``batch_rows`` the exports' rows, in time order, are cut into batches of that many
    rows instead (each named and timed after the export its first row came from).

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
    if batch_rows and batches:
        features = pd.concat([b.features for b in batches], ignore_index=True)
        for column in features.columns:  # exports with other categories concatenate to objects
            if isinstance(batches[0].features[column].dtype, pd.CategoricalDtype):
                features[column] = features[column].astype("category")
        labels = np.concatenate([b.labels for b in batches])
        origin = np.repeat(np.arange(len(batches)), [len(b.labels) for b in batches])
        batches = [
            Batch(f"{batches[origin[i]].name}+{i}", features.iloc[i : i + batch_rows].reset_index(drop=True),
                  labels[i : i + batch_rows], batches[origin[i]].at)
            for i in range(0, len(labels), batch_rows)
        ]  # fmt: skip
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
    """Fits and scores for every policy of one stream: each fit is made once and charged to each policy using it."""

    def __init__(self, stream: Stream, config: BacktestConfig) -> None:
        self.stream = stream
        self.config = config
        first = stream.batches[0].features
        self.categorical = [c for c in first.columns if isinstance(first[c].dtype, pd.CategoricalDtype)]
        self.features = pd.concat([b.features for b in stream.batches], ignore_index=True)
        for column in self.categorical:  # batches with other categories concatenate to objects
            self.features[column] = self.features[column].astype("category")
        self.labels = np.concatenate([b.labels for b in stream.batches])
        self.ends = np.cumsum([len(b.labels) for b in stream.batches])
        self._fits: dict[tuple[int, int], tuple[Any, float]] = {}
        self._scores: dict[tuple[int, int, int], np.ndarray] = {}
        self._profiles: dict[tuple[int, int], Any] = {}

    def span(self, last: int, rows: int, held_out: int = 0) -> tuple[int, int]:
        """Rows ``[start, end)``: the last ``rows`` (0: all) of batches 0..last, less its newest ``held_out``."""
        end = int(self.ends[last]) - held_out
        return (max(0, end - rows) if rows else 0, end)

    def fit(self, span: tuple[int, int], run: PolicyRun) -> tuple[int, int]:
        """Fit LightGBM on the span's rows (once per stream); its CPU-seconds are charged to ``run``."""
        if span not in self._fits:
            import lightgbm as lgb

            started = time.process_time()
            params = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20,
                      "num_threads": 1, "verbose": -1, "seed": self.config.seed, "deterministic": True}  # fmt: skip
            data = lgb.Dataset(self.features.iloc[span[0] : span[1]], self.labels[span[0] : span[1]])
            booster = lgb.train(params, data, num_boost_round=self.config.rounds)
            self._fits[span] = (booster, time.process_time() - started)
        run.train_seconds += self._fits[span][1]
        return span

    def seconds(self) -> float:
        """The mean CPU-seconds of the fits so far."""
        return float(np.mean([s for _, s in self._fits.values()])) if self._fits else 0.0

    def scores(self, span: tuple[int, int], t: int) -> np.ndarray:
        """The scores of the model fitted on ``span`` on batch t."""
        key = (*span, t)
        if key not in self._scores:
            self._scores[key] = np.asarray(self._fits[span][0].predict(self.stream.batches[t].features), "float64")
        return self._scores[key]

    def profile(self, span: tuple[int, int]) -> Any:
        """The drift reference of the span's rows."""
        if span not in self._profiles:
            from components.drift.core import LABEL, profile_features

            frame = self.features.iloc[span[0] : span[1]].copy()
            frame[LABEL] = pd.Series(self.labels[span[0] : span[1]], index=frame.index).astype("string")
            numeric = [c for c in frame.columns if c != LABEL and c not in self.categorical]
            self._profiles[span] = profile_features(frame, numeric=numeric, categorical=self.categorical)
        return self._profiles[span]

    def importance(self, span: tuple[int, int]) -> dict[str, float]:
        """The model's gain importance share per feature."""
        booster = self._fits[span][0]
        gains = np.asarray(booster.feature_importance("gain"), dtype="float64")
        total = float(gains.sum())
        return {n: float(g) / total if total else 0.0 for n, g in zip(booster.feature_name(), gains, strict=True)}


def _replay(stream: Stream, config: BacktestConfig, name: str, period: int, trainer: _Trainer) -> PolicyRun:
    """A baseline: retrain after every ``period``-th batch on the last ``window`` rows (0: never)."""
    run = PolicyRun(name)
    model = trainer.fit(trainer.span(0, config.window), run)
    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        proba = trainer.scores(model, t)
        run.batch_metrics.append(_score(stream.metric, batch.labels, proba))
        run.labels.append(batch.labels)
        run.scores.append(proba)
        if period and t % period == 0 and t < len(stream.batches) - 1:
            model = trainer.fit(trainer.span(t, config.window), run)
            run.retrain_after.append(t)
            run.reasons.append(f"after {batch.name}: every {period} batches")
    return run


def _paired_gain(metric: str, labels: np.ndarray, old: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    """The new scores' metric minus the old ones' on the same rows, and its standard error."""
    if metric == "accuracy":
        diff = ((new >= 0.5) == labels).astype("float64") - ((old >= 0.5) == labels).astype("float64")
        return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.inf
    if not 0 < labels.sum() < len(labels):
        return math.nan, math.nan
    from components.gate.stats import compare_aucs

    compared = compare_aucs(labels, old, new)
    return float(compared.gain), float(compared.se)


def _log_loss(labels: np.ndarray, proba: np.ndarray) -> float:
    """Log loss relative to the entropy of the rows' prior (``relative_log_loss``)."""
    proba = np.clip(proba, 1e-7, 1 - 1e-7)
    raw = -float(np.mean(np.where(labels == 1, np.log(proba), np.log(1 - proba))))
    return relative_log_loss(raw, float(np.mean(labels)))


@dataclass(frozen=True)
class _Served:
    """A model as driftpilot serves it: its training rows and its prior correction."""

    span: tuple[int, int]
    odds: float = 1.0

    @property
    def rows(self) -> int:
        return self.span[1] - self.span[0]


def _drift_report(profile: Any, batch: Batch) -> dict[str, Any]:
    from components.drift.core import LABEL, compare, summarize_window

    frame = batch.features.copy()
    frame[LABEL] = pd.Series(batch.labels, index=frame.index).astype("string")
    return compare(profile, summarize_window(frame, profile)).to_dict()


def replay_driftpilot(
    stream: Stream, config: BacktestConfig = BacktestConfig(), *, cost: float | None = None, trainer: Any = None
) -> PolicyRun:
    """The decision layer on the stream: investigate, weigh the value of retraining, propose, rule, then act and learn.

    After each batch the evidence on the value of retraining (``components.decide.value``) goes
    into the signals; a retrain that pays fits one candidate in the estimate's regime (the rows
    since the change point, or every row since, at most ``max_rows``), with the newest
    ``holdout_fraction`` of the batch held out, as the pipeline's training window holds them
    out; it serves when its gain there pays its cost (``worth_deploying``), refitted on the
    whole window when ``config.refit``. Other actions: a
    recalibration to the latest prior, a rollback to the model served before. Escalations are
    not executed; tuning and updates are not available here. Each response's benefit on the
    next batch goes to the knowledge base.

    Args:
        stream: The history.
        config: How models train and the policy decides.
        cost: A retrain's cost in metric-batches (None: the safety policy's ``retrain_cost``);
            the run is named ``driftpilot@<cost>`` when given.
        trainer: Fits shared with other policies of the same stream (None: its own).
    """
    trainer = trainer if trainer is not None else _Trainer(stream, config)
    policy = config.safety if cost is None else dc_replace(config.safety, retrain_cost=cost)
    run = PolicyRun("driftpilot" if cost is None else f"driftpilot@{cost:g}")
    knowledge = KnowledgeBase()
    investigator = InvestigatorConfig(alpha=config.alpha, min_drop=config.min_drop)
    first = stream.batches[0].features
    segment_columns = [c for c in trainer.categorical if first[c].nunique() <= 50]
    origin = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)

    served, previous = _Served(trainer.fit(trainer.span(0, config.window), run)), None
    strategy = StrategyConfig(tune=False, retrain_cpu_seconds=trainer.seconds())
    value = ValueState.trained_on(served.rows, strategy.value.volume_prior)
    record: list[tuple[float, float, float]] = []  # the served model's (metric, se, relative log loss)
    history: list[Executed] = []
    pending: tuple[Decision, _Served] | None = None  # an action whose benefit the next batch measures

    def predict(model: _Served, t: int) -> np.ndarray:
        return prior_corrected(trainer.scores(model.span, t), model.odds)

    for t in range(1, len(stream.batches)):
        batch = stream.batches[t]
        proba = predict(served, t)
        metric = _score(stream.metric, batch.labels, proba)
        run.batch_metrics.append(metric)
        run.labels.append(batch.labels)
        run.scores.append(proba)
        if pending is not None:  # the benefit in the metric, or in log loss for a recalibration
            done, before = pending
            if done.proposal.action == "recalibrate":
                benefit = _log_loss(batch.labels, predict(before, t)) - _log_loss(batch.labels, proba)
            else:
                benefit = metric - _score(stream.metric, batch.labels, predict(before, t))
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
            drift=_drift_report(trainer.profile(served.span), batch),
            importance=trainer.importance(served.span),
            quality=batch.quality,
            previous_proba=predict(previous, t) if previous is not None else None,
            segment_columns=segment_columns,
        )
        signals = dc_replace(signals, value_state=value.to_dict())
        record.append((signals.current, signals.current_se, signals.current_log_loss))
        decision = respond(
            signals, policy=policy, history=history, knowledge=knowledge, investigator=investigator, strategy=strategy
        )
        run.decisions.append(decision)
        value = decision.value_state or value
        action = decision.action
        if action in ("none", "monitor", "escalate"):
            continue
        history.append(Executed(dt.datetime.fromisoformat(at), action))
        before = served
        if action == "retrain" and decision.value is not None:
            estimate = decision.value
            held = round(len(batch.labels) * config.holdout_fraction)
            candidate = _Served(trainer.fit(trainer.span(t, estimate.window_rows, held), run))
            labels = batch.labels[len(batch.labels) - held :]
            gain, gain_se = _paired_gain(stream.metric, labels, proba[-held:], predict(candidate, t)[-held:])
            deploys = worth_deploying(gain, gain_se, policy.retrain_cost_for(strategy.retrain_cpu_seconds),
                                      strategy.value)  # fmt: skip
            value = retrained(value, estimate, served=deploys, gain=gain, config=strategy.value)
            run.retrain_after.append(t)
            verdict = (
                f"candidate {gain:+.4f} ± {gain_se:.4f} on the held-out rows: {'serves' if deploys else 'kept out'}"
            )
            run.reasons.append(f"after {batch.name}: retrain ({verdict}): {decision.proposal.reason}")
            if not deploys:
                continue
            served = _Served(trainer.fit(trainer.span(t, estimate.window_rows), run)) if config.refit else candidate
        elif action == "recalibrate":
            served = _Served(served.span, served.odds * recalibration_odds(proba, batch.labels))
            run.reasons.append(f"after {batch.name}: {action}: {decision.proposal.reason}")
        elif action == "rollback" and previous is not None:
            served = previous
            value = ValueState.trained_on(served.rows, value.volume_gain)
            run.reasons.append(f"after {batch.name}: {action}: {decision.proposal.reason}")
        else:
            continue
        previous = before
        if action != "recalibrate":  # the same trees keep their record
            record = []
        pending = (decision, before)
    return run


def replay_static(stream: Stream, config: BacktestConfig = BacktestConfig()) -> PolicyRun:
    """The static model: trained on the first batch, never retrained."""
    return _replay(stream, config, "static", 0, _Trainer(stream, config))


def run_backtest(
    stream: Stream,
    config: BacktestConfig = BacktestConfig(),
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[PolicyRun]:
    """Replay the stream under every policy; fits are shared (each charged to every policy using it).

    Args:
        stream: The labelled batches.
        config: The replay's settings.
        progress: Called with (policies replayed, policies) after each one.

    Returns:
        One run per policy: static, every_batch, periodic_<k> (each k), driftpilot (at the safety
        policy's ``retrain_cost``) and ``driftpilot@<cost>`` for each of ``config.costs``.
    """
    trainer = _Trainer(stream, config)
    total = 3 + len(config.periods) + len(config.costs)
    runs: list[PolicyRun] = []

    def keep(run: PolicyRun) -> None:
        runs.append(run)
        if progress is not None:
            progress(len(runs), total)

    keep(_replay(stream, config, "static", 0, trainer))
    keep(_replay(stream, config, "every_batch", 1, trainer))
    for k in config.periods:
        keep(_replay(stream, config, f"periodic_{k}", k, trainer))
    keep(replay_driftpilot(stream, config, trainer=trainer))
    for cost in config.costs:
        keep(replay_driftpilot(stream, config, cost=cost, trainer=trainer))
    return runs


def upf_area(mean_metric: float, retrains: float, batches: int, costs: Sequence[float]) -> float:
    """UPF's area metric of a fixed policy: its metric less the retrains' cost per batch, averaged over the costs.

    Regol et al. (ICML 2025) score a policy by its performance-plus-cost curve over a range of
    cost ratios; here a retrain costs ``c`` metric-batches, so at ratio ``c`` a policy is worth
    ``mean_metric − c · retrains / batches`` per batch.
    """
    return float(np.mean([mean_metric - c * retrains / batches for c in costs]))


def _share(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def kpis(stream: Stream, runs: Sequence[PolicyRun]) -> dict[str, Any]:
    """The ``kpis.json`` document of one stream: every policy, the frontier and UPF's area metric.

    UPF's area is taken over the costs driftpilot ran at (its ``driftpilot@<cost>`` runs), or
    ``BacktestConfig.costs`` when there are none.
    """
    costs = [float(r.name.split("@")[1]) for r in runs if r.name.startswith("driftpilot@")] or list(
        BacktestConfig.costs
    )
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
    scored = len(stream.batches) - 1
    static, every = policies["static"], policies["every_batch"]
    gain = every["mean_batch_metric"] - static["mean_batch_metric"]
    ours = policies["driftpilot"]
    ours_run = next(run for run in runs if run.name == "driftpilot")
    fixed = {n: p for n, p in policies.items() if not n.startswith("driftpilot")}
    area = {n: upf_area(p["mean_batch_metric"], p["retrains"], scored, costs) for n, p in fixed.items()}
    at_cost = [policies.get(f"driftpilot@{c:g}") for c in costs]
    if all(p is not None for p in at_cost):  # driftpilot adapts to each cost: its run at that cost
        area["driftpilot"] = float(np.mean([
            p["mean_batch_metric"] - c * p["retrains"] / scored for p, c in zip(at_cost, costs, strict=True) if p
        ]))  # fmt: skip
    periodic = {n: p for n, p in fixed.items() if n.startswith("periodic_")}
    mean = ours["mean_batch_metric"]
    beaten_by = sorted(
        (n for n, p in periodic.items() if p["retrains"] <= ours["retrains"] and p["mean_batch_metric"] > mean),
        key=lambda n: int(n.split("_")[1]),
    )
    return {
        "metric": stream.metric,
        "source": stream.source,
        "batches": len(stream.batches),
        "rows_without_label": stream.unlabelled_rows,
        "policies": policies,
        "driftpilot_share_of_gain": (mean - static["mean_batch_metric"]) / gain if gain > 0 else math.nan,
        "driftpilot_share_of_retrains": _share(ours["retrains"], every["retrains"]),
        "driftpilot_share_of_seconds": _share(ours["train_seconds"], every["train_seconds"]),
        "driftpilot_beaten_by": beaten_by,
        "upf_costs": list(costs),
        "upf_area": area,
        "upf_beats_every_periodic": bool("driftpilot" in area and all(area["driftpilot"] > area[n] for n in periodic)),
        "driftpilot_actions": dict(sorted(Counter(d.action for d in ours_run.decisions if d.action != "none").items())),
        "driftpilot_escalations": sum(d.ruling.tier == "escalate" for d in ours_run.decisions),
        "driftpilot_responses": ours_run.reasons,
    }  # fmt: skip


def _frontier(documents: Sequence[dict[str, Any]], key: str, label: str, path: Path) -> None:
    """One panel a stream: mean metric against ``key`` for every policy; the schedules joined."""
    import matplotlib.pyplot as plt

    columns = min(4, len(documents))
    rows = math.ceil(len(documents) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis, document in zip(axes.flat, documents, strict=False):
        policies = document["policies"]
        schedule = [policies[n] for n in ("static", "every_batch", *sorted(
            (n for n in policies if n.startswith("periodic_")), key=lambda n: int(n.split("_")[1])))]  # fmt: skip
        schedule.sort(key=lambda p: p[key])
        axis.plot([p[key] for p in schedule], [p["mean_batch_metric"] for p in schedule], "o-", ms=3, lw=1,
                  color="grey", label="static, periodic_k, every_batch")  # fmt: skip
        ours = [(n, p) for n, p in policies.items() if n.startswith("driftpilot@")]
        axis.plot([p[key] for _, p in ours], [p["mean_batch_metric"] for _, p in ours], "*", ms=9,
                  color="tab:red", label="driftpilot at each cost")  # fmt: skip
        axis.plot(policies["driftpilot"][key], policies["driftpilot"]["mean_batch_metric"], "*", ms=14,
                  color="black", label="driftpilot (policy's cost)")  # fmt: skip
        axis.set_title(Path(document["source"]).name[:40], fontsize=9)
        axis.set_xlabel(label, fontsize=8)
        axis.set_ylabel(document["metric"], fontsize=8)
    for axis in list(axes.flat)[len(documents) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_report(documents: Sequence[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Write streams' ``kpis`` documents as ``kpis.json`` (under ``streams``) and the two frontier plots."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    document = {"streams": list(documents)}
    (out / "kpis.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    _frontier(documents, "retrains", "retrains", out / "frontier.png")
    _frontier(documents, "train_seconds", "training CPU-seconds", out / "frontier-seconds.png")
    return document


def write_backtest(results: Sequence[tuple[Stream, Sequence[PolicyRun]]], out: Path) -> dict[str, Any]:
    """Write ``kpis.json`` (one document a stream under ``streams``), ``backtest.png``, the frontiers and the page.

    ``backtest.png``: the first stream's batch metric per policy (static, every_batch,
    driftpilot), driftpilot's retrains marked. ``frontier.png`` and ``frontier-seconds.png``:
    one panel a stream, the mean metric against the retrains and against the training seconds.
    ``report.html``: the plots and every stream's policies (``components.backtest.page``).
    """
    import matplotlib.pyplot as plt

    document = write_report([kpis(stream, runs) for stream, runs in results], out)
    stream, runs = results[0]
    figure, axis = plt.subplots(figsize=(11, 4.5))
    for run in runs:
        if run.name in ("static", "every_batch", "driftpilot"):
            label, width = f"{run.name} ({len(run.retrain_after)} retrains)", 2 if run.name == "driftpilot" else 1
            axis.plot(range(1, len(run.batch_metrics) + 1), run.batch_metrics, label=label, lw=width)
    for after in next(r for r in runs if r.name == "driftpilot").retrain_after:
        axis.axvline(after + 0.5, color="black", lw=0.6, ls=":")
    axis.set_xlabel("batch (scored before its labels are learnt)")
    axis.set_ylabel(stream.metric)
    axis.set_title(f"Prequential backtest of {stream.source} (dotted: driftpilot retrains)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "backtest.png", dpi=110)
    plt.close(figure)
    from components.backtest.page import render_backtest_html

    (out / "report.html").write_text(render_backtest_html(document["streams"], out), encoding="utf-8")
    return document
