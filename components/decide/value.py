"""The value of retraining: what a retrain available now would gain, with its uncertainty, against its cost.

A retrain pays for two reasons, and the estimate keeps them apart:

* **decay** (the recency regime): the served model scores below its own record. One batch's
  drop is noise; the drops add up: their sum since the model was trained (a CUSUM, reset to 0
  when the model does better than its record), with its variance ``V`` from the batches'
  standard errors, is what serving it has cost so far against a model as good as its record.
  Old rows describe the world that is gone: the recency retrain keeps only the batches since
  the model last scored at its record (the change point).
* **volume** (the volume regime): the model is data-starved. Every doubling of its training
  rows is worth ``volume_gain`` of the metric (a learning-curve slope, learnt from the
  retrains' measured gains, ``learn_volume``), so rows that arrived since it was trained add
  ``volume_gain × log2(available / trained)`` per batch. The volume retrain keeps every row
  since the last change point (at most ``max_rows``).

The shortfall ``R`` is the two sums (metric units × batches).

The decision is ski rental (a rent-or-buy test): retrain once the shortfall so far, less ``z``
standard errors, exceeds what a retrain costs (``retrain_cost`` metric-batches, plus
``cpu_second_cost`` per CPU-second of it; fields of the safety policy). Paying for a retrain as
soon as what waiting has cost matches its price is within a factor two of the best schedule in
hindsight, whatever the stream does. A retrain's candidate is then judged on the newest
labelled rows, held out of its training (``worth_deploying``): it serves when its gain's lower
bound is positive and its gain over ``horizon`` batches pays the cost.

The regime is explicit: decay with no drift of the features the model uses (the mapping moved)
is recency; otherwise (more rows, or inputs that moved into regions old rows still describe)
volume. Pure and deterministic: ``ValueState`` is plain data (``to_dict``/``from_dict``), kept
by the caller between batches.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["ValueConfig", "ValueEstimate", "ValueState", "assess", "learn_volume", "retrained", "worth_deploying"]


@dataclass(frozen=True)
class ValueConfig:
    """How the value of retraining is estimated.

    Attributes:
        horizon: Batches a deployed retrain's gain is counted over (its expected service time).
        z: Standard errors the shortfall must clear (1.28: 90% sure it exceeds the cost, above the
            safety policy's default confidence threshold with the knowledge base's prior), and a
            candidate's gain's lower bound.
        volume_prior: Metric gain per doubling of the training rows before any retrain measured it.
        volume_memory: Weight of the old slope when a measured retrain updates it (0: forget).
        max_rows: The most rows a volume retrain trains on.
        min_rows: The fewest rows a recency retrain trains on (it reaches back before the change
            point when the batches since hold fewer).
    """

    horizon: int = 10
    z: float = 1.28
    volume_prior: float = 0.02
    volume_memory: float = 0.5
    max_rows: int = 10_000
    min_rows: int = 2_000


@dataclass(frozen=True)
class ValueState:
    """What the estimate carries from batch to batch for the served model.

    Attributes:
        shortfall: The drops summed since the model was trained (or since the last retrain
            that did not serve), reset to 0 whenever the sum falls below it (a CUSUM: a model
            doing better than its record owes nothing, but that does not pay back what more rows
            would bring).
        variance: The variance of ``shortfall``.
        volume_shortfall: The volume shortfalls summed over the same batches.
        trained_rows: Rows the served model was trained on (after a candidate that did not serve:
            the rows it had, so the same rows do not ask again).
        available_rows: Rows a volume retrain would train on now (at most ``max_rows``).
        batches_since_record: Batches since the served model last scored at its record (the
            recency window, in batches).
        rows_since_record: Rows of those batches.
        recency_rows: The most rows a recency retrain takes (0: every row since the change
            point); a recency candidate that did not serve halves it (at least ``min_rows``):
            a gradual change makes the change point too early, so the next try reaches back less.
        volume_gain: The learning-curve slope: metric gain per doubling of the training rows.
    """

    shortfall: float = 0.0
    variance: float = 0.0
    volume_shortfall: float = 0.0
    trained_rows: int = 0
    available_rows: int = 0
    batches_since_record: int = 0
    rows_since_record: int = 0
    recency_rows: int = 0
    volume_gain: float = ValueConfig.volume_prior

    @classmethod
    def trained_on(cls, rows: int, volume_gain: float = ValueConfig.volume_prior) -> "ValueState":
        """The state of a model just trained on ``rows`` rows."""
        return cls(trained_rows=rows, available_rows=rows, volume_gain=volume_gain)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ValueState":
        """Read ``to_dict``'s data (unknown keys are ignored: a newer writer's)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class ValueEstimate:
    """The value of a retrain available after one batch.

    Attributes:
        decay: The batch's drop below the served model's record (0 when unmeasured).
        volume: The expected gain per batch of training on the rows available now.
        expected_gain: Metric gain per batch a retrain now would bring (``decay + volume``, at
            least 0), and ``gain_over_horizon`` that × ``horizon``.
        gain_over_horizon: See ``expected_gain``.
        shortfall: ``R`` after this batch, and ``shortfall_se`` its standard error.
        shortfall_se: See ``shortfall``.
        cost: What a retrain costs, in metric-batches.
        retrain: Whether it pays now: ``shortfall − z · shortfall_se > cost``.
        regime: ``recency`` (drop the rows before the change point) or ``volume`` (keep them).
        window_rows: Rows the retrain trains on.
        window_batches: Batches of the recency window (0 for the volume regime: every batch
            since the last change point).
        rows_ratio: ``window_rows`` over the served model's training rows.
    """

    decay: float
    volume: float
    expected_gain: float
    gain_over_horizon: float
    shortfall: float
    shortfall_se: float
    cost: float
    retrain: bool
    regime: str
    window_rows: int
    window_batches: int
    rows_ratio: float

    @property
    def confidence(self) -> float:
        """The probability that the shortfall exceeds the cost (normal approximation)."""
        from scipy import stats

        if self.shortfall_se <= 0:
            return 1.0 if self.shortfall > self.cost else 0.0
        return float(stats.norm.cdf((self.shortfall - self.cost) / self.shortfall_se))

    def phrase(self) -> str:
        """One line: the gain expected and the cost it is weighed against."""
        window = (
            f"the last {self.window_batches} batch(es), {self.window_rows:,} rows"
            if self.regime == "recency"
            else f"{self.window_rows:,} rows ({self.rows_ratio:.1f}× the model's)"
        )
        return (
            f"{self.regime} retrain on {window}: expected gain {self.expected_gain:+.4f}/batch (decay "
            f"{self.decay:+.4f}, volume {self.volume:+.4f}), shortfall so far {self.shortfall:.3f} ± "
            f"{self.shortfall_se:.3f} against a cost of {self.cost:.3f}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data, with the confidence."""
        return {**asdict(self), "confidence": self.confidence}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ValueEstimate":
        """Read ``to_dict``'s data."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def assess(
    state: ValueState,
    *,
    drop: float,
    drop_se: float,
    rows: int,
    feature_drift: bool,
    cost: float,
    config: ValueConfig = ValueConfig(),
) -> tuple[ValueEstimate, ValueState]:
    """Add one labelled batch to the evidence and estimate the value of retraining now.

    Args:
        state: The evidence so far for the served model.
        drop: The served model's record minus its metric on the batch (NaN: unmeasured).
        drop_se: The drop's standard error.
        rows: The batch's labelled rows (they become available to a retrain).
        feature_drift: Whether features the model relies on drifted (the investigator's finding).
        cost: A retrain's cost in metric-batches (``SafetyPolicy.retrain_cost_for``).
        config: The estimate's settings.

    Returns:
        The estimate, and the state after this batch (for the next batch, unless a retrain
        serves: then ``retrained``).
    """
    decay, decay_var = _finite(drop), _finite(drop_se) ** 2
    at_record = not decay > 0
    since = 0 if at_record else state.batches_since_record + 1
    since_rows = 0 if at_record else state.rows_since_record + rows
    available = min(state.available_rows + rows, config.max_rows)
    trained = max(state.trained_rows, 1)
    volume = state.volume_gain * max(0.0, math.log2(available / trained))
    decayed, variance = state.shortfall + decay, state.variance + decay_var
    if decayed < 0:  # the model does better than its record: no decay is owed
        decayed, variance = 0.0, 0.0
    owed = state.volume_shortfall + volume
    shortfall, se = decayed + owed, math.sqrt(variance)
    retrain = shortfall - config.z * se > cost
    recency = decay > volume and not feature_drift and since > 0
    reach = min(since_rows, state.recency_rows or since_rows, config.max_rows)
    window_rows = max(reach, min(config.min_rows, available)) if recency else available
    batch_rows = since_rows / since if since else rows
    expected = max(decay + volume, 0.0)
    estimate = ValueEstimate(
        decay=round(decay, 6),
        volume=round(volume, 6),
        expected_gain=round(expected, 6),
        gain_over_horizon=round(expected * config.horizon, 6),
        shortfall=round(shortfall, 6),
        shortfall_se=round(se, 6),
        cost=round(cost, 6),
        retrain=retrain,
        regime="recency" if recency else "volume",
        window_rows=int(window_rows),
        window_batches=max(1, math.ceil(window_rows / max(batch_rows, 1))) if recency else 0,
        rows_ratio=round(window_rows / trained, 4),
    )
    after = replace(
        state,
        shortfall=decayed,
        variance=variance,
        volume_shortfall=owed,
        available_rows=available,
        batches_since_record=since,
        rows_since_record=since_rows,
    )
    return estimate, after


def worth_deploying(gain: float, gain_se: float, cost: float, config: ValueConfig = ValueConfig()) -> bool:
    """Whether a retrain's candidate should serve: its gain on held-out newest rows pays its cost.

    Args:
        gain: The candidate's metric minus the served model's, on rows neither was trained on.
        gain_se: The gain's standard error.
        cost: A retrain's cost in metric-batches.
        config: ``z`` and ``horizon``.
    """
    return math.isfinite(gain) and gain - config.z * _finite(gain_se) > 0 and gain * config.horizon >= cost


def learn_volume(state: ValueState, estimate: ValueEstimate, gain: float, config: ValueConfig = ValueConfig()) -> float:
    """The learning-curve slope after a volume retrain measured ``gain`` at its rows ratio.

    A recency retrain, or one on less than ~1.4× the rows, says nothing of the slope.

    Returns:
        The new ``volume_gain``.
    """
    doublings = math.log2(estimate.rows_ratio) if estimate.rows_ratio > 0 else 0.0
    if estimate.regime != "volume" or doublings < 0.5 or not math.isfinite(gain):
        return state.volume_gain
    measured = max(gain, 0.0) / doublings
    return config.volume_memory * state.volume_gain + (1 - config.volume_memory) * measured


def retrained(
    state: ValueState, estimate: ValueEstimate, *, served: bool, gain: float, config: ValueConfig = ValueConfig()
) -> ValueState:
    """The state after a retrain was tried: a new model's, or the old one's with the evidence spent.

    Args:
        state: The state ``assess`` returned for the batch the retrain followed.
        estimate: That batch's estimate.
        served: Whether the candidate serves now.
        gain: Its measured gain over the served model (NaN: not measured).
        config: The estimate's settings.
    """
    slope = learn_volume(state, estimate, gain, config)
    if served:
        return ValueState.trained_on(estimate.window_rows, slope)
    # Kept: what the shortfall so far said is spent, and the rows it had count as the model's.
    trained = max(state.trained_rows, estimate.window_rows)
    reach = max(config.min_rows, estimate.window_rows // 2) if estimate.regime == "recency" else state.recency_rows
    return replace(state, shortfall=0.0, variance=0.0, volume_shortfall=0.0, trained_rows=trained,
                   recency_rows=reach, volume_gain=slope)  # fmt: skip
