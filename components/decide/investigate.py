"""The investigator: what kind of incident is this, what caused it, and what does it cost the model?

It reads one incident's ``Signals`` (the stages' measurements of a batch) and answers with an
``Investigation``:

* **kind**, the first that applies:

  - ``data_quality``: the ingestion-anomaly agent called the batch an incident (a truncated
    export, a re-published old batch). It looks like drift, but it is bad data: nothing is learnt
    from it.
  - ``insufficient``: too few labelled rows to measure anything.
  - ``prior``: the label's prior moved significantly and moving the model's scores to the new
    prior (``recalibrated_*``) lowers the log loss by ``min_recalibration_gain`` and wins back
    at least ``recovery`` of its excess over the record (and of the metric's drop, if any). The
    ranking still holds; only the calibration is off.
  - ``concept``: a significant loss with no feature drift: the mapping from inputs to label
    changed.
  - ``covariate``: features drifted (with or without a loss).
  - ``none``: nothing moved.

* **loss**: the model's metric on the batch against its own record (the champion's validation
  score, or its recent batches), a one-sided test at ``alpha`` on the two standard errors, with a
  practical floor ``min_drop``. Without labels the drift stage's estimated drop stands in, and
  ``measured`` says so.
* **causes**: drifted features ranked by drift effect × the model's importance of the feature
  (a large shift of an unused feature does not matter).
* **segments**: where the loss comes from: the segments (a country, an event root code) whose
  rows add most to the batch's excess log loss over the model's record.

Pure and deterministic: the same signals give the same investigation.
"""

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError

__all__ = [
    "KINDS",
    "Cause",
    "FeatureSignal",
    "Investigation",
    "InvestigatorConfig",
    "SegmentSignal",
    "Signals",
    "investigate",
    "segment_signals",
]

KINDS = ("data_quality", "insufficient", "prior", "concept", "covariate", "none")


@dataclass(frozen=True)
class FeatureSignal:
    """One feature's drift test.

    Attributes:
        feature: The column.
        drifted: The drift stage's verdict (significant after FDR control and above its floor).
        effect: The drift effect (Wasserstein/IQR or Jensen–Shannon, noise removed).
        p_adjusted: The FDR-adjusted p-value.
    """

    feature: str
    drifted: bool
    effect: float
    p_adjusted: float


@dataclass(frozen=True)
class SegmentSignal:
    """The model's log loss on one segment of the batch.

    Attributes:
        column: The segmenting column.
        value: The segment.
        rows: Its rows in the batch.
        share: Its share of the batch's rows.
        log_loss: The model's log loss on it.
    """

    column: str
    value: str
    rows: int
    share: float
    log_loss: float


@dataclass(frozen=True)
class Signals:
    """What the stages measured about one incident's batch.

    Attributes:
        incident: The incident's correlation id.
        at: The batch's time (ISO 8601, UTC); rulings are made at this time, so a replay rules alike.
        rows: Labelled rows in the batch.
        metric: The model's yardstick (``auc`` or ``accuracy``).
        expected: The model's record on that metric (its validation score, or recent batches).
        expected_se: The record's standard error.
        current: The metric on the batch (NaN when unmeasurable, e.g. one class).
        current_se: Its standard error.
        expected_log_loss: The record's log loss, relative to its prior's entropy (see
            ``components.decide.core.relative_log_loss``; every log loss here is relative).
        current_log_loss: Relative log loss on the batch.
        recalibrated_metric: The metric on the batch after moving scores to the batch's prior.
        recalibrated_log_loss: Relative log loss after the same.
        label_reference_rate: Positive rate the model was trained at.
        label_current_rate: Positive rate of the batch.
        label_p_value: The prior-shift test's p-value (NaN when untestable).
        features: Every tested feature's drift.
        importance: The model's importance share per feature (sums to 1).
        multivariate_drift: The domain classifier's verdict (None when not run).
        estimated_drop: The drift stage's label-free estimate of the metric's drop (NaN: none).
        previous_metric: The metric on the batch of the model served before the current one
            (NaN when there is none): a rollback's worth.
        quality: The ingestion-anomaly agent's verdict (``ok``, ``warn``, ``incident``).
        quality_summary: Its one-line summary.
        segments: The model's loss per segment of the batch.
        value_state: The evidence on the value of retraining carried from the served model's
            earlier batches (``components.decide.value.ValueState.to_dict``; None: none kept, and
            a significant loss retrains).
    """

    incident: str
    at: str
    rows: int
    metric: str
    expected: float
    expected_se: float
    current: float
    current_se: float
    expected_log_loss: float
    current_log_loss: float
    recalibrated_metric: float
    recalibrated_log_loss: float
    label_reference_rate: float
    label_current_rate: float
    label_p_value: float
    features: tuple[FeatureSignal, ...] = ()
    importance: Mapping[str, float] = field(default_factory=dict)
    multivariate_drift: bool | None = None
    estimated_drop: float = math.nan
    previous_metric: float = math.nan
    quality: str = "ok"
    quality_summary: str = ""
    segments: tuple[SegmentSignal, ...] = ()
    value_state: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``from_dict`` reads it back)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Signals":
        """Read signals written by ``to_dict``.

        Raises:
            ConfigError: When a field is missing or unknown, or ``at`` is not an ISO 8601 time.
        """
        values = dict(data)
        try:
            dt.datetime.fromisoformat(str(values.get("at")))
        except ValueError as exc:
            raise ConfigError(f"incident {values.get('incident')!r}: at={values.get('at')!r} is not ISO 8601") from exc
        known = {f.name for f in fields(cls)}
        if set(values) - known or {"incident", "at", "rows", "metric"} - set(values):
            raise ConfigError(
                f"incident {values.get('incident')!r}: unknown fields {sorted(set(values) - known)} or missing "
                f"{sorted({'incident', 'at', 'rows', 'metric'} - set(values))}"
            )
        values["features"] = tuple(FeatureSignal(**f) for f in values.get("features", ()))
        values["segments"] = tuple(SegmentSignal(**s) for s in values.get("segments", ()))
        values["importance"] = dict(values.get("importance", {}))
        for key, value in values.items():
            if value is None and key not in ("multivariate_drift", "value_state"):
                values[key] = math.nan
        return cls(**values)


@dataclass(frozen=True)
class InvestigatorConfig:
    """Thresholds of the investigation.

    Attributes:
        alpha: Level of the one-sided loss test and of the prior-shift test.
        min_drop: The smallest drop of the metric that counts as a loss.
        min_recalibration_gain: The smallest fall of the (relative) log loss a prior correction
            must give to count as a fix (0.02: 2% of the prior's entropy).
        recovery: Share of the loss a prior correction must win back to call the incident a prior shift.
        min_rows: Fewer labelled rows are too few to measure.
        important: Importance share at or above which a drifted feature counts as drift the model feels.
    """

    alpha: float = 0.01
    min_drop: float = 0.02
    min_recalibration_gain: float = 0.02
    recovery: float = 0.5
    min_rows: int = 200
    important: float = 0.05


@dataclass(frozen=True)
class Cause:
    """A drifted feature, weighed by how much the model relies on it.

    Attributes:
        feature: The column.
        effect: Its drift effect.
        importance: The model's importance share of it.
        score: ``effect × importance``, the ranking key.
    """

    feature: str
    effect: float
    importance: float
    score: float


@dataclass(frozen=True)
class Investigation:
    """The investigator's findings.

    Attributes:
        incident: The incident's id.
        kind: One of ``KINDS``.
        loss: A significant loss of the metric was found (or, without labels, is estimated).
        measured: The loss was measured on labels (False: estimated from the scores).
        drop: Expected metric minus the batch's (NaN when unmeasurable).
        z: The drop in standard errors.
        log_loss_rise: Relative rise of log loss over the record.
        recovered: Share of the excess log loss a prior correction wins back (NaN when no excess).
        prior_shift: The label's prior moved significantly.
        feature_drift: Features the model relies on drifted (or the domain classifier says so).
        causes: Drifted features, most likely cause first (at most five).
        segments: Segments adding most excess loss (at most three), with their excess.
        rollback_gain: The previous model's metric on the batch minus the current one's.
        summary: The findings in one sentence.
    """

    incident: str
    kind: str
    loss: bool
    measured: bool
    drop: float
    z: float
    log_loss_rise: float
    recovered: float
    prior_shift: bool
    feature_drift: bool
    causes: tuple[Cause, ...]
    segments: tuple[dict[str, Any], ...]
    rollback_gain: float
    summary: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


def _causes(signals: Signals) -> tuple[Cause, ...]:
    drifted = [f for f in signals.features if f.drifted]
    causes = [
        Cause(f.feature, f.effect, float(signals.importance.get(f.feature, 0.0)),
              f.effect * float(signals.importance.get(f.feature, 0.0)))
        for f in drifted
    ]  # fmt: skip
    return tuple(sorted(causes, key=lambda c: (-c.score, -c.effect, c.feature))[:5])


def _segments(signals: Signals) -> tuple[dict[str, Any], ...]:
    """Segments by the excess log loss they add to the batch: share × (their loss − the record's)."""
    baseline = signals.expected_log_loss
    if math.isnan(baseline):
        return ()
    ranked = sorted(
        ((s.share * (s.log_loss - baseline), s) for s in signals.segments if s.log_loss > baseline),
        key=lambda pair: (-pair[0], pair[1].column, pair[1].value),
    )
    return tuple(
        {"column": s.column, "value": s.value, "rows": s.rows, "log_loss": round(s.log_loss, 4),
         "excess": round(excess, 4)}
        for excess, s in ranked[:3]
    )  # fmt: skip


def investigate(signals: Signals, config: InvestigatorConfig = InvestigatorConfig()) -> Investigation:
    """Classify an incident, rank its causes and measure its impact.

    Args:
        signals: The incident's measurements.
        config: Thresholds.

    Returns:
        The investigation.
    """
    s = signals
    z_alpha = float(stats.norm.ppf(1 - config.alpha))
    drop = s.expected - s.current
    spread = math.hypot(s.current_se, s.expected_se)
    z = drop / spread if spread > 0 and not math.isnan(drop) else math.nan
    measured = not math.isnan(drop)
    if measured:
        loss = drop >= config.min_drop and z > z_alpha
    else:
        loss = not math.isnan(s.estimated_drop) and s.estimated_drop >= config.min_drop
        drop = s.estimated_drop
    rise = s.current_log_loss / s.expected_log_loss - 1 if s.expected_log_loss > 0 else math.nan
    excess = s.current_log_loss - s.expected_log_loss
    gain = s.current_log_loss - s.recalibrated_log_loss
    recovered = gain / excess if excess > 0 else math.nan
    recovers = gain >= config.min_recalibration_gain and not recovered < config.recovery
    prior_shift = s.label_p_value < config.alpha
    if measured and loss:  # the metric must recover too: accuracy can, AUC cannot (the ranking is kept)
        won_back = (s.recalibrated_metric - s.current) / drop
        recovers = recovers and s.metric != "auc" and won_back >= config.recovery
    causes = _causes(s)
    feature_drift = any(c.importance >= config.important for c in causes) or bool(s.multivariate_drift)
    rollback_gain = s.previous_metric - s.current
    if s.quality == "incident":
        kind = "data_quality"
    elif s.rows < config.min_rows:
        kind = "insufficient"
    elif prior_shift and recovers:
        kind = "prior"
    elif loss and not feature_drift:
        kind = "concept"
    elif feature_drift or loss:
        kind = "covariate"
    else:
        kind = "none"
    investigation = Investigation(
        incident=s.incident,
        kind=kind,
        loss=bool(loss) and kind not in ("data_quality", "insufficient"),
        measured=measured,
        drop=drop,
        z=z,
        log_loss_rise=rise,
        recovered=recovered,
        prior_shift=prior_shift,
        feature_drift=feature_drift,
        causes=causes,
        segments=_segments(s),
        rollback_gain=rollback_gain,
        summary="",
    )
    return _with_summary(investigation, s)


def _with_summary(inv: Investigation, s: Signals) -> Investigation:
    if inv.kind == "data_quality":
        text = f"data-quality incident ({s.quality_summary or 'ingestion agent'}), not drift"
    elif inv.kind == "insufficient":
        text = f"only {s.rows} labelled rows: too few to measure"
    else:
        parts = []
        if inv.measured and not math.isnan(inv.drop):
            parts.append(f"{s.metric} {s.current:.3f} vs its record {s.expected:.3f} (z={inv.z:.1f})")
        elif not math.isnan(inv.drop):
            parts.append(f"estimated {s.metric} drop {inv.drop:+.3f} (no labels)")
        if not math.isnan(inv.log_loss_rise):
            parts.append(f"log loss {inv.log_loss_rise:+.0%}")
        if inv.prior_shift:
            won = f", a prior correction wins back {inv.recovered:.0%}" if not math.isnan(inv.recovered) else ""
            parts.append(f"prior {s.label_reference_rate:.1%}→{s.label_current_rate:.1%}{won}")
        if inv.causes:
            parts.append(
                "drifted: " + ", ".join(f"{c.feature} ({c.effect:.2f}×{c.importance:.0%})" for c in inv.causes)
            )
        if inv.segments and (inv.loss or inv.log_loss_rise > 0):
            parts.append("loss from " + ", ".join(f"{g['column']}={g['value']}" for g in inv.segments))
        label = {"prior": "prior shift", "concept": "concept drift", "covariate": "covariate drift"}.get(inv.kind)
        head = f"{label}{' with a loss' if inv.loss else ', no loss'}" if label else "no drift, no loss"
        text = f"{head}: " + "; ".join(parts) if parts else head
    return replace(inv, summary=text)


def segment_signals(
    frame: pd.DataFrame,
    labels: np.ndarray,
    scores: np.ndarray,
    columns: Sequence[str],
    *,
    min_rows: int = 30,
    top: int = 20,
) -> tuple[SegmentSignal, ...]:
    """The model's log loss per segment of a batch.

    Args:
        frame: The batch's rows.
        labels: Their 0/1 labels.
        scores: The model's P(label = 1) for them.
        columns: Segmenting columns (categorical: a country, an event root code).
        min_rows: Segments with fewer rows are left out (their loss is noise).
        top: The largest segments kept per column.

    Returns:
        One signal per segment, columns in the order given, larger segments first.
    """
    labels = np.asarray(labels, dtype="float64")
    scores = np.clip(np.asarray(scores, dtype="float64"), 1e-7, 1 - 1e-7)
    losses = -(labels * np.log(scores) + (1 - labels) * np.log(1 - scores))
    out: list[SegmentSignal] = []
    total = len(labels)
    for column in columns:
        if column not in frame.columns or not total:
            continue
        values = frame[column].astype("string").fillna("<missing>").to_numpy()
        table = (
            pd.DataFrame({"value": values, "loss": losses}).groupby("value", sort=True)["loss"].agg(["size", "mean"])
        )
        table = table[table["size"] >= min_rows].sort_values(["size"], ascending=False, kind="stable").head(top)
        out.extend(
            SegmentSignal(column, str(value), int(row["size"]), float(row["size"]) / total, float(row["mean"]))
            for value, row in table.iterrows()
        )
    return tuple(out)
