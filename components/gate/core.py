"""The promotion gate: does the challenger replace the champion?

Both models score the same labelled holdout (rows neither was trained on). The challenger is
promoted when the guardrails hold and it is

- **better**: a significantly higher AUC (DeLong's paired test) or a significantly lower log loss
  (a paired test of the per-row losses), with its AUC not plausibly worse by more than a margin; or
- **equivalent and preferred by policy**: its AUC is non-inferior (the interval's low end above
  ``-auc_margin``) and the policy prefers a fresher model when it is no worse.

Guardrails: accuracy not significantly worse (McNemar's paired test), calibration error not
higher by more than ``max_ece_rise``, and single-row latency within ``max_latency_ratio`` of the
champion's (above a floor). Every test is cluster-robust: rows of one group (one GDELT article)
count as one observation.

A rollback (releasing the previous champion again) is judged too, by ``judge_rollback``, on the
decision's own evidence: the previous champion's metric minus the champion's on the incident's
labelled batch.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.storage import read_json, read_table, write_json
from components.evaluate.core import population_weights
from components.features.core import build_labels
from components.gate.stats import (
    AucComparison,
    Latency,
    LossComparison,
    McNemarResult,
    calibration_error,
    compare_aucs,
    compare_log_losses,
    mcnemar,
    prediction_latency,
)
from components.train.model import TrainedModel

__all__ = ["GatePolicy", "GateResult", "compare_models", "gate_files", "judge_rollback", "judge_rollback_files"]


@dataclass(frozen=True)
class GatePolicy:
    """What the gate asks of a challenger.

    Attributes:
        alpha: Significance level of "better" (one-sided) and of the accuracy guardrail.
        auc_margin: Largest AUC loss the gain's 90% interval may admit.
        prefer_challenger: Promote an equivalent (non-inferior) challenger, e.g. because it was
            trained on fresher data; otherwise only a better one is promoted.
        max_ece_rise: Largest rise in expected calibration error.
        max_latency_ratio: Largest ratio of the challenger's to the champion's p95 single-row latency.
        latency_floor_ms: Latencies below this many milliseconds always pass.
    """

    alpha: float = 0.05
    auc_margin: float = 0.01
    prefer_challenger: bool = False
    max_ece_rise: float = 0.02
    max_latency_ratio: float = 2.0
    latency_floor_ms: float = 5.0


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict and the evidence behind it.

    Attributes:
        promote: The challenger should become champion.
        reason: One sentence.
        rows: Holdout rows.
        auc: The paired AUC comparison (None when the holdout holds one class).
        log_loss: The paired log-loss comparison.
        accuracy: McNemar's paired comparison of accuracy at 0.5.
        calibration: Expected calibration error of each model (``champion``, ``challenger``).
        latency: Each model's latency (``champion``, ``challenger``), when measured.
        checks: Each condition and whether it held.
    """

    promote: bool
    reason: str
    rows: int
    auc: AucComparison | None
    log_loss: LossComparison | None
    accuracy: McNemarResult | None
    calibration: dict[str, float] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return asdict(self)

    def metrics(self) -> dict[str, float]:
        """The headline numbers (KFP metrics, MLflow ``gate_*`` metrics)."""
        out: dict[str, float] = {"rows": float(self.rows)}
        if self.auc is not None:
            out.update(
                champion_auc=self.auc.champion_auc,
                challenger_auc=self.auc.challenger_auc,
                auc_gain=self.auc.gain,
                gain_ci_low=self.auc.ci_low,
                gain_ci_high=self.auc.ci_high,
                auc_p_better=self.auc.p_better,
            )
        if self.log_loss is not None:
            out.update(
                champion_log_loss=self.log_loss.champion_log_loss,
                challenger_log_loss=self.log_loss.challenger_log_loss,
                log_loss_p_better=self.log_loss.p_better,
            )
        if self.accuracy is not None:
            out.update(
                champion_accuracy=self.accuracy.champion_accuracy,
                challenger_accuracy=self.accuracy.challenger_accuracy,
                mcnemar_p=self.accuracy.p_value,
            )
        out.update({f"{who}_ece": value for who, value in self.calibration.items()})
        out.update({f"{who}_p95_ms": value.single_p95_ms for who, value in self.latency.items()})
        return out


def compare_models(
    labels: np.ndarray,
    champion_proba: np.ndarray,
    challenger_proba: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    policy: GatePolicy = GatePolicy(),
    latency: dict[str, Latency] | None = None,
) -> GateResult:
    """Decide whether the challenger replaces the champion, from both models' scores on the same rows.

    Args:
        labels: 0/1 truth of the holdout rows.
        champion_proba: Champion's P(label = 1) per row.
        challenger_proba: Challenger's P(label = 1) per row.
        groups: Group key per row (rows of one group are correlated); None: rows are independent.
        weights: Row weights giving the rows the population's prior (``population_weights``)
            for the probability checks (log loss, calibration); None weighs rows equally.
        policy: Margins, levels and guardrails.
        latency: Each model's measured latency (``champion``, ``challenger``); None skips that guardrail.

    Returns:
        The verdict with every comparison.
    """
    labels = np.asarray(labels, dtype="int64")
    if len(np.unique(labels)) < 2 or (groups is not None and len(pd.unique(groups)) < 2):
        return GateResult(
            False,
            "holdout has one class or one group: the models cannot be told apart, champion kept",
            len(labels),
            None,
            None,
            None,
        )
    auc = compare_aucs(labels, champion_proba, challenger_proba, groups)
    loss = compare_log_losses(labels, champion_proba, challenger_proba, groups, weights)
    accuracy = mcnemar(labels, champion_proba >= 0.5, challenger_proba >= 0.5, groups)
    calibration = {
        "champion": calibration_error(labels, champion_proba, weights=weights),
        "challenger": calibration_error(labels, challenger_proba, weights=weights),
    }
    latency = latency or {}
    checks = {
        "auc_better": auc.p_better < policy.alpha,
        "log_loss_better": loss.p_better < policy.alpha,
        "auc_non_inferior": auc.ci_low > -policy.auc_margin,
        "accuracy_not_worse": not (
            accuracy.p_value < policy.alpha and accuracy.challenger_accuracy < accuracy.champion_accuracy
        ),
        "calibration": calibration["challenger"] <= calibration["champion"] + policy.max_ece_rise,
    }
    if latency:
        slow = latency["challenger"].single_p95_ms
        allowed = max(policy.latency_floor_ms, policy.max_latency_ratio * latency["champion"].single_p95_ms)
        checks["latency"] = slow <= allowed
    guardrails = [name for name in ("accuracy_not_worse", "calibration", "latency") if not checks.get(name, True)]
    better = (checks["auc_better"] or checks["log_loss_better"]) and checks["auc_non_inferior"]
    equivalent = checks["auc_non_inferior"] and policy.prefer_challenger
    promote = not guardrails and (better or equivalent)
    evidence = (
        f"AUC {auc.challenger_auc:.3f} vs {auc.champion_auc:.3f} (gain {auc.gain:+.3f}, 90% CI "
        f"[{auc.ci_low:+.3f}, {auc.ci_high:+.3f}], p={auc.p_better:.3g}), log loss {loss.challenger_log_loss:.3f} "
        f"vs {loss.champion_log_loss:.3f} (p={loss.p_better:.3g}) on {len(labels)} rows in {auc.groups} groups"
    )
    if promote:
        reason = f"promote challenger: {'better' if better else 'equivalent, and policy prefers it'}; {evidence}"
    elif better or equivalent:
        reason = f"keep champion: guardrail {', '.join(guardrails)} failed; {evidence}"
    else:
        reason = f"keep champion: challenger {'not better' if checks['auc_non_inferior'] else 'worse'}; {evidence}"
    return GateResult(promote, reason, len(labels), auc, loss, accuracy, calibration, latency, checks)


def gate_files(
    champion_dir: Path,
    challenger_dir: Path,
    holdout_path: Path,
    result_path: Path,
    policy: GatePolicy = GatePolicy(),
) -> GateResult:
    """Score both saved models on the holdout table, time them, and write the verdict as JSON.

    Args:
        champion_dir: The champion's model folder.
        challenger_dir: The challenger's model folder.
        holdout_path: Labelled rows neither model was trained on (Parquet).
        result_path: Where the verdict is written.
        policy: Margins, levels and guardrails.

    Returns:
        The verdict.
    """
    champion, challenger = TrainedModel.load(champion_dir), TrainedModel.load(challenger_dir)
    holdout = read_table(holdout_path)
    task = challenger.task
    groups = holdout[task.group_column].astype(str).to_numpy() if task.group_column in holdout else None
    labels = build_labels(holdout, task).to_numpy()
    latency = prediction_latency(
        {"champion": champion.predict_proba, "challenger": challenger.predict_proba},
        holdout,
        single=30,
        batch=500,
        repeats=3,
    )
    result = compare_models(
        labels,
        champion.predict_proba(holdout),
        challenger.predict_proba(holdout),
        groups=groups,
        weights=population_weights(labels, task.population_positive_rate),
        policy=policy,
        latency=latency,
    )
    write_json(result.to_dict(), result_path)
    return result


def judge_rollback(decision: Mapping[str, Any], *, champion: str, previous: str) -> dict[str, Any]:
    """The gate's verdict on a rollback: may the previous champion serve again?

    A challenger is judged on a holdout; a rollback on what the decision measured: the previous
    champion's metric minus the champion's (``rollback_gain``) on the incident's labelled batch,
    a batch neither model was trained on. It passes when the decision executes a rollback and
    the gain is positive. The canary then judges the previous champion on live traffic, as it
    judges a challenger.

    Args:
        decision: The decide stage's decision (``components.decide.core.Decision.to_dict()``).
        champion: The champion's version (the model the decision measured).
        previous: The previous champion's version (the one rolled back to).

    Returns:
        The verdict: ``promote``, ``reason``, ``kind`` (``rollback``) and ``rollback`` (``from``,
        ``to``, ``gain``, ``incident``), in the shape ``record_outcome_files`` and
        ``components.register.core.record_rollback_verdict`` read.
    """
    measured = decision["investigation"].get("rollback_gain")  # NaN (no previous champion) is written as null
    gain = float(measured) if measured is not None else math.nan
    incident = str(decision["incident"])
    executed = decision["action"] == "rollback"
    promote = executed and math.isfinite(gain) and gain > 0
    if promote:
        reason = f"rollback: version {previous} scores {gain:+.4f} over version {champion} on {incident}'s batch"
    elif not executed:
        reason = f"no rollback: the decision on {incident} executes {decision['action']!r}"
    else:
        reason = f"no rollback: version {previous} is not better than version {champion} on {incident}'s batch"
    rollback = {"from": champion, "to": previous, "gain": gain, "incident": incident}
    return {"promote": promote, "reason": reason, "kind": "rollback", "rollback": rollback}


def judge_rollback_files(*, decision_path: Path, result_path: Path, champion: str, previous: str) -> dict[str, Any]:
    """Judge a rollback from the decision's JSON and write the verdict as JSON (``judge_rollback``).

    Args:
        decision_path: The decide stage's decision.
        result_path: Where the verdict is written.
        champion: The champion's version.
        previous: The previous champion's version.

    Returns:
        The verdict.
    """
    verdict = judge_rollback(read_json(decision_path), champion=champion, previous=previous)
    write_json(verdict, result_path)
    return verdict
