"""The strategist: what to do about an investigated incident, with its benefit, cost and confidence.

One proposal per incident, from the investigation's kind and loss:

* a data-quality incident, too few rows, or nothing moved: ``none`` (a data-quality batch is
  quarantined by ingestion and an alert is raised; nothing is learnt from it);
* drift the model does not feel (no loss): ``monitor``;
* a prior shift: ``recalibrate`` (move the scores to the new prior: seconds, no training);
* a loss the model served before does not have (it wins back ``rollback_share`` of it):
  ``rollback`` (no training);
* a retrain when it pays (``components.decide.value``): the served model's shortfall so far
  (its drops below its record plus what the rows it was not trained on would add) exceeds a
  retrain's cost; ``monitor`` until then, whether or not one batch's loss is significant. It is
  ``retrain`` in the estimate's regime (recency or volume), ``update`` (more trees on the
  recent rows) for a recency retrain when ``prefer_update`` and the loss is mild,
  ``retrain_tune`` when the loss is severe and tuning is available. Without that estimate (no
  evidence carried between batches) a significant loss retrains;
* a loss estimated without labels: ``retrain``, at a discounted confidence (an estimate is
  weaker evidence, so the safety policy usually asks a person);
* a loss that similar past retrains mostly did not fix (at least two of them, fewer than half
  helped): ``escalate``.

Confidence = the evidence's strength (the normal probability of its z score; for a retrain
that pays, the probability that the shortfall exceeds its cost) × the knowledge base's success
rate of the action on similar incidents. Benefit is the loss won back, in the metric's units (a
paying retrain's expected gain over the value's horizon; in log loss relative to the prior's
entropy for a recalibration); cost is in CPU-seconds.
"""

import math
from dataclasses import dataclass, field

from scipy import stats

from components.decide.investigate import Investigation, Signals
from components.decide.knowledge import KnowledgeBase
from components.decide.safety import Proposal
from components.decide.value import ValueConfig, ValueEstimate

__all__ = ["StrategyConfig", "propose"]


@dataclass(frozen=True)
class StrategyConfig:
    """Costs and thresholds of the strategist.

    Attributes:
        severe_drop: A drop of the metric at or above which a retrain is tuned.
        tune: Whether tuning is available (a cluster or a budget for it).
        prefer_update: Mild losses get an incremental update rather than a retrain.
        estimated_discount: Confidence factor of a loss estimated without labels.
        retrain_cpu_seconds: Expected CPU-seconds of a retrain.
        tuning_cpu_seconds: Expected CPU-seconds of a tuning study.
        update_cpu_seconds: Expected CPU-seconds of an incremental update.
        min_gain: The smallest metric gain a rollback must show.
        rollback_share: Share of the loss a rollback must win back to be preferred to retraining.
        value: How the value of retraining is estimated.
    """

    severe_drop: float = 0.08
    tune: bool = True
    prefer_update: bool = False
    estimated_discount: float = 0.7
    retrain_cpu_seconds: float = 120.0
    tuning_cpu_seconds: float = 1200.0
    update_cpu_seconds: float = 20.0
    min_gain: float = 0.02
    rollback_share: float = 0.5
    value: ValueConfig = field(default_factory=ValueConfig)


def _strength(z: float) -> float:
    return float(stats.norm.cdf(z)) if not math.isnan(z) else 0.5


def propose(
    inv: Investigation,
    signals: Signals,
    knowledge: KnowledgeBase,
    config: StrategyConfig = StrategyConfig(),
    value: ValueEstimate | None = None,
) -> Proposal:
    """Propose a response to an investigated incident.

    Args:
        inv: The investigation.
        signals: The incident's measurements.
        knowledge: Past outcomes.
        config: Costs and thresholds.
        value: The value of retraining after this batch (``components.decide.value``); None
            when no evidence is carried between batches (then a significant loss retrains).

    Returns:
        The proposal (the safety policy rules on it).
    """
    causes = tuple(c.feature for c in inv.causes)

    def proposal(
        action: str, strength: float, benefit: float, cost: float, reason: str, tuning: float = 0.0
    ) -> Proposal:
        similar = knowledge.similar(inv.kind, causes, action)
        confidence = round(strength * similar.rate, 4)
        text = f"{reason} ({similar.phrase(action)}; confidence {confidence:.2f})"
        return Proposal(inv.incident, action, confidence, tuning, text, round(benefit, 4), cost)

    if inv.kind == "data_quality":
        return Proposal(inv.incident, "none", 1.0, 0.0, f"{inv.summary}: quarantined, nothing learnt from it")
    if inv.kind == "insufficient" or (inv.kind == "none" and not (value is not None and value.retrain)):
        waiting = f"; a retrain does not pay yet: {value.phrase()}" if value is not None else ""
        return Proposal(inv.incident, "none", 1.0, 0.0, f"{inv.summary}{waiting}")
    if inv.kind == "prior":
        won_back = signals.current_log_loss - signals.recalibrated_log_loss
        return proposal(
            "recalibrate",
            1 - signals.label_p_value,
            won_back,
            1.0,
            f"{inv.summary}; moving the scores to the {signals.label_current_rate:.1%} prior is enough",
        )
    if not inv.loss and value is None:
        return Proposal(inv.incident, "monitor", 1.0, 0.0, f"{inv.summary}; the model holds, watching")
    se = math.hypot(signals.current_se, signals.expected_se)
    rollback_pays = inv.rollback_gain >= max(config.min_gain, config.rollback_share * inv.drop)
    if inv.loss and inv.measured and rollback_pays and se > 0:
        return proposal(
            "rollback",
            _strength(inv.rollback_gain / se),
            inv.rollback_gain,
            0.0,
            f"{inv.summary}; the model served before scores {signals.previous_metric:.3f} on this batch",
        )
    if value is not None and not value.retrain:
        return Proposal(
            inv.incident, "monitor", 1.0, 0.0, f"{inv.summary}; a retrain does not pay yet: {value.phrase()}",
            round(value.gain_over_horizon, 4), 0.0,
        )  # fmt: skip
    retrains = knowledge.similar(inv.kind, causes, "retrain")
    if retrains.matches >= 2 and retrains.successes < retrains.matches / 2:
        return Proposal(
            inv.incident, "escalate", round(retrains.rate, 4), 0.0,
            f"{inv.summary}; {retrains.phrase('retrain')}: a person should look",
            round(inv.drop, 4), 0.0,
        )  # fmt: skip
    if value is not None:  # the shortfall has paid for a retrain: its confidence is the value test's
        strength, benefit = value.confidence, value.gain_over_horizon
        basis = f"; {value.phrase()}"
    else:
        strength = _strength(inv.z) if inv.measured else config.estimated_discount
        benefit = inv.drop
        basis = "" if inv.measured else " (estimated without labels)"
    if inv.drop >= config.severe_drop and config.tune:
        cost = config.retrain_cpu_seconds + config.tuning_cpu_seconds
        return proposal(
            "retrain_tune", strength, benefit, cost, f"{inv.summary}{basis}; severe: retrain and tune",
            config.tuning_cpu_seconds,
        )  # fmt: skip
    if config.prefer_update and inv.drop < config.severe_drop and (value is None or value.regime == "recency"):
        return proposal(
            "update",
            strength,
            benefit,
            config.update_cpu_seconds,
            f"{inv.summary}{basis}; mild: update on recent rows",
        )
    return proposal("retrain", strength, benefit, config.retrain_cpu_seconds, f"{inv.summary}{basis}; retrain")
