"""Data drift between a reference table (the champion's training rows) and a new batch.

Per feature: numeric columns get a two-sample Kolmogorov–Smirnov test and a Wasserstein distance
scaled by the reference's interquartile range; categorical columns get a χ² test over the
reference's categories (rare and unseen ones pooled into one bucket) and the Jensen–Shannon
distance. A feature drifts when its Benjamini–Hochberg-adjusted p-value is below ``q`` *and* its
effect reaches a floor, so large batches do not flag negligible shifts. Effects are measured
above sampling noise (the distance same-sized samples of the reference reach by chance), so
small batches over long-tailed categories do not flag their own sparsity. The label's prior is
tested the same way but reported apart: it is not a model input.
"""

import html
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from components.common.errors import ConfigError
from components.common.storage import read_table, write_json
from components.common.task import TaskSpec, load_task
from components.features.core import build_features, build_labels

__all__ = [
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "detect_drift",
    "detect_drift_files",
    "render_evidently_report",
    "render_table_html",
]

_OTHER = "__other__"
_EVIDENTLY_MODES = ("always", "on-drift", "never")
_NOISE_DRAWS = 7


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift verdict.

    Attributes:
        fdr_q: False-discovery rate controlled across the features' tests (Benjamini–Hochberg).
        numeric_effect_floor: Smallest Wasserstein distance, in reference IQRs, that counts.
        categorical_effect_floor: Smallest Jensen–Shannon distance (base 2, 0..1) that counts.
        drift_share: Share of drifted features at or above which the dataset has drifted.
        min_category_share: Reference categories rarer than this are pooled with unseen ones.
    """

    fdr_q: float = 0.05
    numeric_effect_floor: float = 0.1
    categorical_effect_floor: float = 0.1
    drift_share: float = 0.25
    min_category_share: float = 0.005


@dataclass(frozen=True)
class FeatureDrift:
    """The drift test of one feature.

    Attributes:
        feature: Column name.
        kind: ``numeric`` or ``categorical``.
        test: ``ks`` or ``chi2``.
        statistic: The test statistic.
        p_value: Raw p-value.
        p_adjusted: Benjamini–Hochberg-adjusted p-value.
        effect: Wasserstein/IQR (numeric) or Jensen–Shannon distance (categorical), less the
            distance a same-sized sample of the reference reaches by chance (never below 0).
        effect_name: ``wasserstein_iqr`` or ``jensen_shannon``.
        drifted: Significant after FDR control and at or above the effect floor.
        detail: Largest movers (categorical) or quantiles (numeric), for people.
    """

    feature: str
    kind: str
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    effect: float
    effect_name: str
    drifted: bool
    detail: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DriftReport:
    """Drift of one batch against a reference.

    Attributes:
        features: One entry per model feature.
        drifted_features: Names of drifted features.
        drift_share: Share of features that drifted.
        dataset_drift: ``drift_share`` reached the configured threshold.
        label_reference_rate: Positive rate in the reference.
        label_current_rate: Positive rate in the batch.
        label_p_value: χ² p-value of the label's prior shift.
        reference_rows: Rows in the reference.
        current_rows: Rows in the batch.
        config: The thresholds used.
    """

    features: list[FeatureDrift]
    drifted_features: list[str]
    drift_share: float
    dataset_drift: bool
    label_reference_rate: float
    label_current_rate: float
    label_p_value: float
    reference_rows: int
    current_rows: int
    config: DriftConfig

    def to_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready data."""
        return asdict(self)

    def summary(self) -> str:
        """One line for people: verdict, drifted features and the label prior."""
        verdict = "DRIFT" if self.dataset_drift else "no drift"
        top = sorted((f for f in self.features if f.drifted), key=lambda f: -f.effect)[:3]
        names = ", ".join(f"{f.feature}({f.effect:.2f})" for f in top) or "none"
        return (
            f"{verdict}: {len(self.drifted_features)}/{len(self.features)} features [{names}]; "
            f"label rate {self.label_reference_rate:.1%}→{self.label_current_rate:.1%}"
        )


def _sampling_noise(reference: pd.Series, size: int, distance: Callable[[pd.Series], float]) -> float:
    """Median distance between the reference and same-sized samples of itself.

    Distances between empirical distributions are biased upwards on small samples (most for
    categories with a long tail); this is the level a batch of ``size`` rows reaches by chance.
    """
    rng = np.random.default_rng(0)
    draws = [distance(reference.iloc[rng.integers(0, len(reference), size)]) for _ in range(_NOISE_DRAWS)]
    return float(np.median(draws))


def _numeric_drift(reference: pd.Series, current: pd.Series) -> tuple[float, float, float, dict[str, float]]:
    ref_series = reference.dropna()
    ref = ref_series.to_numpy(dtype="float64")
    cur = current.dropna().to_numpy(dtype="float64")
    if len(ref) == 0 or len(cur) == 0:
        return 0.0, 1.0, 0.0, {}
    result = stats.ks_2samp(ref, cur)
    q25, q75 = np.percentile(ref, [25, 75])
    scale = q75 - q25 or float(np.std(ref)) or 1.0

    def distance(sample: pd.Series) -> float:
        return float(stats.wasserstein_distance(ref, sample.to_numpy(dtype="float64")) / scale)

    observed = distance(pd.Series(cur))
    noise = _sampling_noise(ref_series, len(cur), distance)
    detail = {
        "distance": observed,
        "noise": noise,
        "reference_median": float(np.median(ref)),
        "current_median": float(np.median(cur)),
        "current_missing": float(current.isna().mean()),
    }
    return float(result.statistic), float(result.pvalue), max(0.0, observed - noise), detail


def _categorical_drift(
    reference: pd.Series, current: pd.Series, min_share: float
) -> tuple[float, float, float, dict[str, float]]:
    ref = reference.astype(object).where(reference.notna(), "__missing__")
    cur = current.astype(object).where(current.notna(), "__missing__")
    shares = ref.value_counts(normalize=True)
    kept = set(shares[shares >= min_share].index)
    ref_counts = ref.where(ref.isin(kept), _OTHER).value_counts()
    cur_counts = cur.where(cur.isin(kept), _OTHER).value_counts()
    categories = sorted(set(ref_counts.index) | set(cur_counts.index), key=str)
    table = np.array(
        [[ref_counts.get(c, 0) for c in categories], [cur_counts.get(c, 0) for c in categories]], dtype="float64"
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0, {}
    chi2 = stats.chi2_contingency(table, correction=False)
    pooled_ref = ref.where(ref.isin(kept), _OTHER)
    p_ref = pooled_ref.value_counts(normalize=True)

    def distance(sample: pd.Series) -> float:
        p_sample = sample.where(sample.isin(kept), _OTHER).value_counts(normalize=True)
        aligned = pd.concat([p_ref, p_sample], axis=1).fillna(0.0).to_numpy().T
        return float(jensenshannon(aligned[0], aligned[1], base=2))

    observed = distance(cur)
    noise = _sampling_noise(ref, len(cur), distance)
    changes = (cur_counts / cur_counts.sum()).sub(ref_counts / ref_counts.sum(), fill_value=0.0)
    movers = changes.reindex(changes.abs().sort_values(ascending=False).index[:5])
    detail = {
        "distance": observed,
        "noise": noise,
        **{f"share_change[{c}]": round(float(d), 4) for c, d in movers.items()},
    }
    return float(chi2.statistic), float(chi2.pvalue), max(0.0, observed - noise), detail


def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, task: TaskSpec, config: DriftConfig = DriftConfig()
) -> DriftReport:
    """Test every feature of a task for drift and decide the dataset verdict.

    Args:
        reference: Validated reference rows (the champion's training sample).
        current: Validated rows of the new batch.
        task: The task whose features and label are compared.
        config: Thresholds.

    Returns:
        The drift report.
    """
    ref_x, cur_x = build_features(reference, task), build_features(current, task)
    raw: list[tuple[str, str, str, float, float, float, str, dict[str, float]]] = []
    for column in task.features:
        if column in task.categorical:
            stat, p, effect, detail = _categorical_drift(ref_x[column], cur_x[column], config.min_category_share)
            raw.append((column, "categorical", "chi2", stat, p, effect, "jensen_shannon", detail))
        else:
            stat, p, effect, detail = _numeric_drift(ref_x[column], cur_x[column])
            raw.append((column, "numeric", "ks", stat, p, effect, "wasserstein_iqr", detail))
    p_values = np.array([r[4] for r in raw])
    adjusted = stats.false_discovery_control(p_values, method="bh") if len(p_values) else p_values
    features = []
    for (column, kind, test, stat, p, effect, effect_name, detail), p_adj in zip(raw, adjusted, strict=True):
        floor = config.categorical_effect_floor if kind == "categorical" else config.numeric_effect_floor
        drifted = bool(p_adj < config.fdr_q and effect >= floor)
        features.append(FeatureDrift(column, kind, test, stat, p, float(p_adj), effect, effect_name, drifted, detail))
    drifted_names = [f.feature for f in features if f.drifted]
    share = len(drifted_names) / len(features) if features else 0.0

    ref_y, cur_y = build_labels(reference, task), build_labels(current, task)
    counts = np.array(
        [[ref_y.sum(), len(ref_y) - ref_y.sum()], [cur_y.sum(), len(cur_y) - cur_y.sum()]], dtype="float64"
    )
    label_p = float(stats.chi2_contingency(counts, correction=False).pvalue) if counts.min() > 0 else math.nan
    return DriftReport(
        features=features,
        drifted_features=drifted_names,
        drift_share=share,
        dataset_drift=share >= config.drift_share,
        label_reference_rate=float(ref_y.mean()) if len(ref_y) else math.nan,
        label_current_rate=float(cur_y.mean()) if len(cur_y) else math.nan,
        label_p_value=label_p,
        reference_rows=len(reference),
        current_rows=len(current),
        config=config,
    )


def render_evidently_report(
    reference: pd.DataFrame, current: pd.DataFrame, task: TaskSpec, html_path: Path, *, max_rows: int = 5000
) -> Path:
    """Write Evidently's data drift report (HTML) for people to browse.

    Both tables are sampled to ``max_rows`` rows so the report stays quick on large batches; the
    verdict the loop acts on is ``detect_drift``'s, computed on all rows.

    Args:
        reference: Validated reference rows.
        current: Validated batch rows.
        task: The task whose features are shown.
        html_path: Output file.
        max_rows: Sample size per table.

    Returns:
        The path written.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        sample = frame.sample(n=min(len(frame), max_rows), random_state=0)
        features = build_features(sample, task)
        for column in task.categorical:
            features[column] = features[column].astype(object).where(features[column].notna(), "")
        return features.reset_index(drop=True)

    definition = DataDefinition(
        numerical_columns=[*task.numeric, *task.derived], categorical_columns=list(task.categorical)
    )
    ref = Dataset.from_pandas(prepare(reference), data_definition=definition)
    cur = Dataset.from_pandas(prepare(current), data_definition=definition)
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    return html_path


def detect_drift_files(
    reference_path: Path,
    batch_path: Path,
    task_name: str,
    *,
    report_path: Path,
    html_path: Path,
    evidently: str = "on-drift",
    config: DriftConfig = DriftConfig(),
) -> DriftReport:
    """Compare a batch table with a reference table; write the JSON report and an HTML report.

    Args:
        reference_path: Reference rows (Parquet).
        batch_path: Batch rows (Parquet).
        task_name: Built-in task name or task YAML path.
        report_path: Where the JSON report is written.
        html_path: Where the HTML report is written: Evidently's data drift report, or the table
            of per-feature tests when Evidently is not rendered.
        evidently: ``always``, ``on-drift`` (only when the dataset drifted: it costs seconds) or
            ``never``.
        config: Thresholds.

    Returns:
        The drift report.

    Raises:
        ConfigError: When ``evidently`` is not one of the three modes.
    """
    if evidently not in _EVIDENTLY_MODES:
        raise ConfigError(f"evidently={evidently!r}: use one of {_EVIDENTLY_MODES}")
    task = load_task(task_name)
    reference, batch = read_table(reference_path), read_table(batch_path)
    report = detect_drift(reference, batch, task, config)
    write_json(report.to_dict(), report_path)
    if evidently == "always" or (evidently == "on-drift" and report.dataset_drift):
        render_evidently_report(reference, batch, task, html_path)
    else:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_table_html(report), encoding="utf-8")
    return report


def render_table_html(report: DriftReport) -> str:
    """Return a small self-contained HTML page with the per-feature tests of a report."""
    rows = "".join(
        f"<tr{' class=d' if f.drifted else ''}><td>{html.escape(f.feature)}</td><td>{f.test}</td>"
        f"<td>{f.p_adjusted:.2g}</td><td>{f.effect:.3f}</td><td>{'yes' if f.drifted else 'no'}</td></tr>"
        for f in report.features
    )
    return (
        "<!doctype html><meta charset=utf-8><title>driftpilot drift report</title>"
        "<style>body{font:14px sans-serif}td,th{padding:2px 8px}.d{background:#fdd}</style>"
        f"<h1>{html.escape(report.summary())}</h1>"
        f"<p>{report.current_rows} rows against {report.reference_rows} reference rows; "
        f"Benjamini–Hochberg q={report.config.fdr_q}.</p>"
        "<table><tr><th>feature</th><th>test</th><th>adjusted p</th><th>effect</th><th>drifted</th></tr>"
        f"{rows}</table>"
    )
