"""The strategist: what to do about an investigated incident, with its benefit, cost and confidence.

One proposal per incident, from the investigation's kind and loss:

* a data-quality incident, too few rows, or nothing moved: ``none`` (a data-quality batch is
  quarantined by ingestion and an alert is raised; nothing is learnt from it);
* drift the model does not feel (no loss): ``monitor``;
* a prior shift: ``recalibrate`` (move the scores to the new prior: seconds, no training);
* a loss the model served before does not have (it wins back ``rollback_share`` of it):
  ``rollback`` (no training);
* a loss measured on labels: ``retrain`` on a recent window, ``update`` (more trees on the
  recent rows) when ``prefer_update`` and the loss is mild, ``retrain_tune`` when the loss is
  severe and tuning is available;
* a loss estimated without labels: ``retrain``, at a discounted confidence (an estimate is
  weaker evidence, so the safety policy usually asks a person);
* a loss that similar past retrains mostly did not fix (at least two of them, fewer than half
  helped): ``escalate``.

Confidence = the evidence's strength (the normal probability of its z score) × the knowledge
base's success rate of the action on similar incidents. Benefit is the loss won back, in the
metric's units (in log loss relative to the prior's entropy for a recalibration); cost is in
CPU-seconds.
"""

import math
from dataclasses import dataclass

from scipy import stats

from components.decide.investigate import Investigation, Signals
from components.decide.knowledge import KnowledgeBase
from components.decide.safety import Proposal

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


def _strength(z: float) -> float:
    return float(stats.norm.cdf(z)) if not math.isnan(z) else 0.5


def propose(
    inv: Investigation, signals: Signals, knowledge: KnowledgeBase, config: StrategyConfig = StrategyConfig()
) -> Proposal:
    """Propose a response to an investigated incident.

    Args:
        inv: The investigation.
        signals: The incident's measurements.
        knowledge: Past outcomes.
        config: Costs and thresholds.

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
    if inv.kind in ("insufficient", "none"):
        return Proposal(inv.incident, "none", 1.0, 0.0, inv.summary)
    if inv.kind == "prior":
        won_back = signals.current_log_loss - signals.recalibrated_log_loss
        return proposal(
            "recalibrate",
            1 - signals.label_p_value,
            won_back,
            1.0,
            f"{inv.summary}; moving the scores to the {signals.label_current_rate:.1%} prior is enough",
        )
    if not inv.loss:
        return Proposal(inv.incident, "monitor", 1.0, 0.0, f"{inv.summary}; the model holds, watching")
    se = math.hypot(signals.current_se, signals.expected_se)
    rollback_pays = inv.rollback_gain >= max(config.min_gain, config.rollback_share * inv.drop)
    if inv.measured and rollback_pays and se > 0:
        return proposal(
            "rollback",
            _strength(inv.rollback_gain / se),
            inv.rollback_gain,
            0.0,
            f"{inv.summary}; the model served before scores {signals.previous_metric:.3f} on this batch",
        )
    retrains = knowledge.similar(inv.kind, causes, "retrain")
    if retrains.matches >= 2 and retrains.successes < retrains.matches / 2:
        return Proposal(
            inv.incident, "escalate", round(retrains.rate, 4), 0.0,
            f"{inv.summary}; {retrains.phrase('retrain')}: a person should look",
            round(inv.drop, 4), 0.0,
        )  # fmt: skip
    strength = _strength(inv.z) if inv.measured else config.estimated_discount
    basis = "" if inv.measured else " (estimated without labels)"
    if inv.drop >= config.severe_drop and config.tune:
        cost = config.retrain_cpu_seconds + config.tuning_cpu_seconds
        return proposal(
            "retrain_tune", strength, inv.drop, cost, f"{inv.summary}{basis}; severe: retrain and tune",
            config.tuning_cpu_seconds,
        )  # fmt: skip
    if config.prefer_update and inv.drop < config.severe_drop:
        return proposal(
            "update",
            strength,
            inv.drop,
            config.update_cpu_seconds,
            f"{inv.summary}{basis}; mild: update on recent rows",
        )
    return proposal("retrain", strength, inv.drop, config.retrain_cpu_seconds, f"{inv.summary}{basis}; retrain")
