"""Compare a challenger with the champion on the same held-out rows (paired bootstrap on AUC, log loss)."""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from components.common.storage import read_table, write_json
from components.evaluate.core import row_aucs
from components.features.core import build_labels
from components.train.model import TrainedModel

__all__ = ["GateResult", "compare_models", "gate_files"]


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict.

    Attributes:
        promote: The challenger should become champion.
        champion_auc: Champion's AUC on the holdout.
        challenger_auc: Challenger's AUC on the holdout.
        auc_gain: Challenger minus champion.
        gain_ci_low: 5th percentile of the paired bootstrap of the gain.
        gain_ci_high: 95th percentile.
        champion_log_loss: Champion's log loss on the holdout.
        challenger_log_loss: Challenger's log loss on the holdout.
        rows: Holdout rows.
        reason: One sentence.
    """

    promote: bool
    champion_auc: float
    challenger_auc: float
    auc_gain: float
    gain_ci_low: float
    gain_ci_high: float
    champion_log_loss: float
    challenger_log_loss: float
    rows: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        """Return the result as JSON-ready data."""
        return asdict(self)


def _bootstrap_auc_gains(
    labels: np.ndarray, champion: np.ndarray, challenger: np.ndarray, *, n_boot: int, seed: int, chunk: int = 50
) -> np.ndarray:
    """AUC gains of the challenger on ``n_boot`` paired resamples (resamples with one class dropped)."""
    rng = np.random.default_rng(seed)
    gains = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(labels), (min(chunk, n_boot - start), len(labels)))
        y = labels[idx]
        gains.append(row_aucs(y, challenger[idx]) - row_aucs(y, champion[idx]))
    values = np.concatenate(gains)
    return values[np.isfinite(values)]


def compare_models(
    labels: np.ndarray,
    champion_proba: np.ndarray,
    challenger_proba: np.ndarray,
    *,
    min_gain: float = 0.0,
    max_loss: float = 0.02,
    max_log_loss_rise: float = 0.02,
    n_boot: int = 500,
    seed: int = 0,
) -> GateResult:
    """Decide whether the challenger beats the champion on the same rows.

    The challenger is promoted when it is better on these rows in ranking (AUC gain above
    ``min_gain``) or in probability quality (lower log loss), while not plausibly much worse in
    ranking (the lower end of the 90% paired-bootstrap interval of the AUC gain stays above
    ``-max_loss``) nor worse in log loss by more than ``max_log_loss_rise`` (relative).

    Args:
        labels: 0/1 truth of the holdout rows.
        champion_proba: Champion's P(label = 1) per row.
        challenger_proba: Challenger's P(label = 1) per row.
        min_gain: Smallest AUC gain worth a model change.
        max_loss: Largest AUC loss the interval may still admit.
        max_log_loss_rise: Largest relative log-loss rise a ranking gain may come with.
        n_boot: Bootstrap resamples.
        seed: Bootstrap seed.

    Returns:
        The verdict with both AUCs and the interval of the gain.
    """
    labels = np.asarray(labels, dtype="int64")
    nan = float("nan")
    if len(np.unique(labels)) < 2:
        return GateResult(
            False, nan, nan, nan, nan, nan, nan, nan, len(labels), "holdout has one class: AUC undefined, champion kept"
        )
    champion_auc = float(roc_auc_score(labels, champion_proba))
    challenger_auc = float(roc_auc_score(labels, challenger_proba))
    gains = _bootstrap_auc_gains(labels, champion_proba, challenger_proba, n_boot=n_boot, seed=seed)
    low, high = (float(v) for v in np.percentile(gains, [5, 95]))
    gain = challenger_auc - champion_auc
    champion_ll = float(log_loss(labels, np.clip(champion_proba, 1e-7, 1 - 1e-7), labels=[0, 1]))
    challenger_ll = float(log_loss(labels, np.clip(challenger_proba, 1e-7, 1 - 1e-7), labels=[0, 1]))
    ll_rise = challenger_ll / champion_ll - 1
    better = gain > min_gain or ll_rise < 0
    promote = better and low > -max_loss and ll_rise <= max_log_loss_rise
    verdict = "promote challenger" if promote else "keep champion"
    reason = (
        f"{verdict}: AUC {challenger_auc:.3f} vs {champion_auc:.3f} "
        f"(gain {gain:+.3f}, 90% CI [{low:+.3f}, {high:+.3f}]), "
        f"log loss {challenger_ll:.3f} vs {champion_ll:.3f} ({ll_rise:+.1%}) on {len(labels)} rows"
    )
    return GateResult(
        promote, champion_auc, challenger_auc, gain, low, high, champion_ll, challenger_ll, len(labels), reason
    )


def gate_files(champion_dir: Path, challenger_dir: Path, holdout_path: Path, result_path: Path) -> GateResult:
    """Score both saved models on the holdout table and write the verdict as JSON.

    Args:
        champion_dir: The champion's model folder.
        challenger_dir: The challenger's model folder.
        holdout_path: Labelled rows neither model was trained on (Parquet).
        result_path: Where the verdict is written.

    Returns:
        The verdict.
    """
    champion, challenger = TrainedModel.load(champion_dir), TrainedModel.load(challenger_dir)
    holdout = read_table(holdout_path)
    result = compare_models(
        build_labels(holdout, challenger.task).to_numpy(),
        champion.predict_proba(holdout),
        challenger.predict_proba(holdout),
    )
    write_json(result.to_dict(), result_path)
    return result
