"""Data drift between a reference (the champion's training rows) and a window of new rows.

The reference is profiled once (``components.drift.profile``) and every window is summarised
against that profile with mergeable counts, so the same verdict is reached on a pandas frame, on
Dask partitions, or against a profile stored with the model. Per feature the tests of
``components.drift.univariate`` give a p-value and an effect above sampling noise. A feature
drifts when its Benjamini–Hochberg-adjusted p-value is below ``q`` *and* its effect reaches a
floor, so large windows do not flag negligible shifts; the dataset drifts when the share of
drifted features reaches ``drift_share``. The label's prior is tested the same way but reported
apart: it is not a model input.
"""

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError
from components.common.storage import read_table, write_json
from components.common.task import TaskSpec, load_task
from components.drift.page import render_report_html
from components.drift.profile import (
    MISSING,
    OTHER,
    PROFILE_FILE,
    Profile,
    WindowSummary,
    group_size,
    profile_frame,
    summarize_frame,
)
from components.drift.univariate import ColumnTest, compare_categorical, compare_numeric
from components.features.core import build_features, build_labels

__all__ = [
    "LABEL",
    "DriftConfig",
    "DriftReport",
    "FeatureDrift",
    "compare",
    "detect_drift",
    "detect_drift_files",
    "profile_features",
    "profile_task",
    "render_evidently_report",
    "summarize_window",
    "task_frame",
    "task_groups",
    "write_report_pages",
]

LABEL = "__label__"
_EVIDENTLY_MODES = ("always", "on-drift", "never")
_MIN_CALIBRATION_ROWS = 100


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift verdict.

    Attributes:
        fdr_q: False-discovery rate controlled across the features' tests (Benjamini–Hochberg).
        numeric_effect_floor: Smallest Wasserstein distance, in reference IQRs, that counts.
        categorical_effect_floor: Smallest Jensen–Shannon distance (base 2, 0..1) that counts.
        drift_share: Share of drifted features at or above which the dataset has drifted.
        min_category_share: Reference categories rarer than this are pooled with unseen ones.
        bins: Quantile levels per numeric reference column.
    """

    fdr_q: float = 0.05
    numeric_effect_floor: float = 0.1
    categorical_effect_floor: float = 0.1
    drift_share: float = 0.25
    min_category_share: float = 0.005
    bins: int = 200

    def __post_init__(self) -> None:
        if not 0 < self.fdr_q < 1:
            raise ConfigError(f"fdr_q={self.fdr_q}: use a false-discovery rate in (0, 1)")
        if not 0 < self.drift_share <= 1:
            raise ConfigError(f"drift_share={self.drift_share}: use a share in (0, 1]")


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
            distance samples of the reference's sizes reach by chance (never below 0).
        effect_name: ``wasserstein_iqr`` or ``jensen_shannon``.
        drifted: Significant after FDR control and at or above the effect floor.
        psi: Population stability index on the reference's deciles (numeric; NaN otherwise).
        detail: Distances, noise, medians, largest movers, unseen categories, for people.
        histogram: The reference's and the window's distributions side by side (see ``ColumnTest``).
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
    psi: float = math.nan
    detail: dict[str, float] = field(default_factory=dict)
    histogram: dict[str, list[Any]] = field(default_factory=dict)

    def detail_by(self, name: str) -> dict[str, float]:
        """The ``detail`` entries ``name[key]``, by key (e.g. ``share_change`` by category)."""
        prefix = f"{name}["
        return {k[len(prefix) : -1]: v for k, v in self.detail.items() if k.startswith(prefix) and k.endswith("]")}

    def words(self) -> str:
        """What moved, for people: ``NumArticles +1.9 IQR (median 1 → 3)`` or ``EventRootCode JS 0.21 (14 +12 pts)``."""
        if self.kind == "numeric":
            shift = self.detail.get("mean_shift_iqr", 0.0)
            sign = "+" if shift > 0 else "−" if shift < 0 else ""
            line = f"{self.feature} {sign}{self.effect:.2g} IQR"
            before, after = self.detail.get("reference_median"), self.detail.get("current_median")
            if before is not None and after is not None and before != after:
                line += f" (median {before:.4g} → {after:.4g})"
            return line
        changes = self.detail_by("share_change")
        line = f"{self.feature} JS {self.effect:.2f}"
        if changes:
            category, change = max(changes.items(), key=lambda item: abs(item[1]))
            shown = {OTHER: "rare or new", MISSING: "missing"}.get(category, category)
            points = f"{change * 100:+.0f}".replace("-", "−")
            line += f" ({shown} {points} pts)"
        return line


@dataclass(frozen=True)
class DriftReport:
    """Drift of one window against a reference.

    Attributes:
        features: One entry per feature.
        drifted_features: Names of drifted features.
        drift_share: Share of features that drifted.
        dataset_drift: ``drift_share`` reached the configured threshold.
        label_reference_rate: Positive rate in the reference (NaN without a binary label).
        label_current_rate: Positive rate in the window.
        label_p_value: χ² p-value of the label's prior shift (NaN when untestable).
        reference_rows: Rows in the reference.
        current_rows: Rows in the window.
        config: The thresholds used.
        sections: Further results by name (``multivariate``, ``model``), JSON-ready.
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
    sections: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready data; ``features`` maps each name to its test."""
        data = asdict(self)
        data["features"] = {f["feature"]: f for f in data["features"]}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DriftReport":
        """Read ``to_dict``'s data (unknown keys are ignored: a newer writer's)."""
        feature_fields = {f.name for f in fields(FeatureDrift)}
        config_fields = {f.name for f in fields(DriftConfig)}
        known = {f.name for f in fields(cls)} - {"features", "config"}
        return cls(
            features=[
                FeatureDrift(**{k: v for k, v in f.items() if k in feature_fields})
                for f in dict(data.get("features", {})).values()
            ],
            config=DriftConfig(**{k: v for k, v in dict(data.get("config", {})).items() if k in config_fields}),
            **{k: v for k, v in data.items() if k in known},
        )

    def section_metrics(self) -> dict[str, float]:
        """Flat numbers of the model-drift and multivariate sections, named for a metrics exporter."""
        out: dict[str, float] = {}
        model = self.sections.get("model", {})
        for view in ("estimated", "realised"):
            if isinstance(model.get(view), dict):
                out[f"model.{view}_auc"] = float(model[view]["current"])
                out[f"model.{view}_auc_drop"] = float(model[view]["drop"])
        if "prediction_shift" in model:
            out["model.prediction_psi"] = float(model["prediction_shift"]["psi"])
            out["model.confidence_change"] = float(model["confidence"]["change"])
        if "auc" in self.sections.get("multivariate", {}):
            out["multivariate.auc"] = float(self.sections["multivariate"]["auc"])
        return out

    def headline(self) -> str:
        """What moved and what the dataset rule concluded.

        E.g. ``1 of 9 features drifted: NumArticles +1.9 IQR (median 1 → 3); dataset verdict: no drift
        (11% of the features, below the 25% drift share)``.
        """
        drifted = sorted((f for f in self.features if f.drifted), key=lambda f: -f.effect)
        line = f"{len(drifted)} of {len(self.features)} features drifted"
        if drifted:
            line += ": " + ", ".join(f.words() for f in drifted[:3])
            line += f" and {len(drifted) - 3} more" if len(drifted) > 3 else ""
        side = "at or above" if self.dataset_drift else "below"
        verdict = "DRIFT" if self.dataset_drift else "no drift"
        return (
            f"{line}; dataset verdict: {verdict} ({self.drift_share:.0%} of the features, {side} the "
            f"{self.config.drift_share:.0%} drift share)"
        )

    def summary(self) -> str:
        """One line for people: the headline, the label's prior, the model and the features taken together."""
        line = self.headline()
        if not math.isnan(self.label_reference_rate):
            line += f"; label rate {self.label_reference_rate:.1%} → {self.label_current_rate:.1%}"
        model = self.sections.get("model", {})
        if "estimated" in model:
            view = "realised" if model.get("realised") else "estimated"
            drop = model[view]["drop"]
            acted = "a drop to act on" if model["predicted_drop"] else "within noise"
            line += f"; model: {view} AUC drop {drop:+.3f} ({acted})"
        if "auc" in self.sections.get("multivariate", {}):
            multivariate = self.sections["multivariate"]
            told = "the features moved together" if multivariate["drifted"] else "not told apart"
            line += f"; domain classifier AUC {multivariate['auc']:.2f} ({told})"
        return line


def _label_rates(profile: Profile, window: WindowSummary) -> tuple[float, float, float]:
    """Positive rates and the prior-shift p-value of a binary label (NaN when there is none).

    A two-proportion z-test at the effective sizes ``rows / design_effect``, so rows that share
    their label (events of one article) count about once per group, not once per row.
    """
    if LABEL not in profile.categorical or LABEL not in window.categorical:
        return math.nan, math.nan, math.nan
    categories = profile.categorical[LABEL].categories
    if "1" not in categories:
        return math.nan, math.nan, math.nan
    one = categories.index("1")
    sides = []
    for counts, size in (
        (profile.categorical[LABEL].counts, profile.design_effect(LABEL, profile.group_size)),
        (window.categorical[LABEL].counts, profile.design_effect(LABEL, window.group_size)),
    ):
        total = float(counts.sum())
        sides.append((float(counts[one]) / total if total else math.nan, total / size))
    (p_ref, n_ref), (p_cur, n_cur) = sides
    if not (n_ref and n_cur):
        return p_ref, p_cur, math.nan
    pooled = (p_ref * n_ref + p_cur * n_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    p_value = float(2 * stats.norm.sf(abs(p_ref - p_cur) / se)) if se > 0 else math.nan
    return p_ref, p_cur, p_value


def compare(profile: Profile, window: WindowSummary, config: DriftConfig = DriftConfig()) -> DriftReport:
    """Test every profiled feature of a window and decide the dataset verdict.

    Args:
        profile: The reference profile; a column named ``LABEL`` is the label, tested apart.
        window: The window's summary against that profile.
        config: Thresholds.

    Returns:
        The drift report; the label's test, when profiled and present, is ``sections["target"]``.
    """

    def effects(name: str) -> tuple[float, float]:
        return profile.design_effect(name, profile.group_size), profile.design_effect(name, window.group_size)

    tests: dict[str, ColumnTest] = {}
    for name, numeric in profile.numeric.items():
        if name in window.numeric:
            tests[name] = compare_numeric(numeric, window.numeric[name], design_effects=effects(name))
    for name, categorical in profile.categorical.items():
        if name in window.categorical:
            tests[name] = compare_categorical(categorical, window.categorical[name], design_effects=effects(name))
    target = tests.pop(LABEL, None)
    p_values = np.array([t.p_value for t in tests.values()])
    adjusted = stats.false_discovery_control(p_values, method="bh") if len(p_values) else p_values
    features = []
    for (name, t), p_adjusted in zip(tests.items(), adjusted, strict=True):
        floor = config.categorical_effect_floor if t.kind == "categorical" else config.numeric_effect_floor
        drifted = bool(p_adjusted < config.fdr_q and t.effect >= floor)
        features.append(_feature(name, t, float(p_adjusted), drifted))
    drifted_names = [f.feature for f in features if f.drifted]
    share = len(drifted_names) / len(features) if features else 0.0
    reference_rate, current_rate, label_p = _label_rates(profile, window)
    sections: dict[str, Any] = {}
    if target is not None:
        sections["target"] = asdict(_feature(LABEL, target, target.p_value, target.p_value < config.fdr_q))
    return DriftReport(
        features=features,
        drifted_features=drifted_names,
        drift_share=share,
        dataset_drift=share >= config.drift_share,
        label_reference_rate=reference_rate,
        label_current_rate=current_rate,
        label_p_value=label_p,
        reference_rows=profile.rows,
        current_rows=window.rows,
        config=config,
        sections=sections,
    )


def _feature(name: str, t: ColumnTest, p_adjusted: float, drifted: bool) -> FeatureDrift:
    return FeatureDrift(feature=name, p_adjusted=p_adjusted, drifted=drifted, **vars(t))


def profile_features(
    frame: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    config: DriftConfig = DriftConfig(),
    label_discrete: bool = True,
    groups: pd.Series | None = None,
) -> Profile:
    """Profile reference features, and the label when the frame has a ``LABEL`` column.

    Args:
        frame: Reference rows.
        numeric: Numeric features.
        categorical: Categorical features.
        config: Thresholds (bins and category pooling).
        label_discrete: Profile the label as classes (never pooled, however rare a class);
            otherwise as a number.
        groups: The group of each row when rows come in alike groups (see ``profile_frame``).

    Returns:
        The profile.
    """
    features = profile_frame(
        frame,
        numeric=numeric,
        categorical=categorical,
        bins=config.bins,
        min_category_share=config.min_category_share,
        groups=groups,
    )
    if LABEL not in frame.columns:
        return features
    label = profile_frame(
        frame,
        numeric=[] if label_discrete else [LABEL],
        categorical=[LABEL] if label_discrete else [],
        bins=config.bins,
        min_category_share=0.0,
        groups=groups,
    )
    return Profile(
        {**features.numeric, **label.numeric},
        {**features.categorical, **label.categorical},
        features.rows,
        features.group_size,
        {**features.intraclass, **label.intraclass},
    )


def summarize_window(frame: pd.DataFrame, profile: Profile, *, groups: pd.Series | None = None) -> WindowSummary:
    """Summarise a window against a profile; a profiled label the window lacks is left out.

    Args:
        frame: The window's features (and ``LABEL``).
        profile: The reference profile.
        groups: The group of each row when rows come in alike groups (None: independent).

    Returns:
        The window's summary.
    """
    if LABEL not in frame.columns:
        profile = replace(
            profile,
            numeric={k: v for k, v in profile.numeric.items() if k != LABEL},
            categorical={k: v for k, v in profile.categorical.items() if k != LABEL},
        )
    return summarize_frame(frame, profile, groups=groups)


def task_groups(frame: pd.DataFrame, task: TaskSpec) -> pd.Series | None:
    """The group of each row (GDELT: its article), or None when the task or frame has none."""
    if task.group_column and task.group_column in frame.columns:
        return frame[task.group_column]
    return None


def task_frame(frame: pd.DataFrame, task: TaskSpec) -> pd.DataFrame:
    """A task's features plus its 0/1 label as text (``LABEL``) when the frame has the target."""
    features = build_features(frame, task)
    if task.target.column in frame.columns:
        features[LABEL] = build_labels(frame, task).astype("string")
    return features


def profile_task(reference: pd.DataFrame, task: TaskSpec, config: DriftConfig = DriftConfig()) -> Profile:
    """Profile a task's features and label on reference rows (validated, source columns)."""
    numeric = [*task.numeric, *task.derived]
    frame = task_frame(reference, task)
    categorical = list(task.categorical)
    return profile_features(
        frame, numeric=numeric, categorical=categorical, config=config, groups=task_groups(reference, task)
    )


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
    profile = profile_task(reference, task, config)
    window = summarize_window(task_frame(current, task), profile, groups=task_groups(current, task))
    return compare(profile, window, config)


def render_evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    html_path: Path,
    *,
    numeric: list[str],
    categorical: list[str],
    max_rows: int = 5000,
) -> Path:
    """Write Evidently's data drift report (HTML) for people to browse.

    Both tables are sampled to ``max_rows`` rows so the report stays quick on large windows; the
    verdict the loop acts on is ``compare``'s, computed on all rows.

    Args:
        reference: Reference features.
        current: Window features.
        html_path: Output file.
        numeric: Numeric features shown.
        categorical: Categorical features shown.
        max_rows: Sample size per table.

    Returns:
        The path written.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    def prepare(frame: pd.DataFrame) -> pd.DataFrame:
        sample = frame[[*numeric, *categorical]].sample(n=min(len(frame), max_rows), random_state=0)
        for column in categorical:
            sample[column] = sample[column].astype("string").fillna("").astype(object)
        return sample.reset_index(drop=True)

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
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
    model_dir: Path | None = None,
    multivariate: bool = False,
    evidently_path: Path | None = None,
) -> DriftReport:
    """Compare a batch table with a reference table; write the JSON report and the HTML pages.

    Args:
        reference_path: Reference rows (Parquet): the champion's training sample.
        batch_path: Batch rows (Parquet).
        task_name: Built-in task name or task YAML path.
        report_path: Where the JSON report is written.
        html_path: Where the report's page is written (``components.drift.page``).
        evidently: When Evidently's data drift report is rendered besides: ``always``, ``on-drift``
            (only when the dataset drifted: it costs seconds) or ``never``.
        config: Thresholds.
        model_dir: The champion (``TrainedModel`` folder): its stored profile, when it has one,
            is the reference of the data-drift tests; adds model drift (``sections.model``),
            calibrated on the reference rows the champion held out of training.
        multivariate: Adds the domain-classifier test (``sections.multivariate``).
        evidently_path: Where Evidently's report goes (see ``write_report_pages``).

    Returns:
        The drift report.

    Raises:
        ConfigError: When ``evidently`` is not one of the three modes.
    """
    if evidently not in _EVIDENTLY_MODES:
        raise ConfigError(f"evidently={evidently!r}: use one of {_EVIDENTLY_MODES}")
    task = load_task(task_name)
    raw_reference, raw_batch = read_table(reference_path), read_table(batch_path)
    reference, batch = task_frame(raw_reference, task), task_frame(raw_batch, task)
    numeric, categorical = [*task.numeric, *task.derived], list(task.categorical)
    stored = model_dir / PROFILE_FILE if model_dir is not None else None
    if stored is not None and stored.exists():
        profile, source = Profile.load(stored), "the champion's training rows, profiled when it was trained"
    else:
        groups = task_groups(raw_reference, task)
        profile = profile_features(reference, numeric=numeric, categorical=categorical, config=config, groups=groups)
        source = "the champion's reference sample"
    window = summarize_window(batch, profile, groups=task_groups(raw_batch, task))
    report = compare(profile, window, config)
    report.sections["reference"] = {"profile": source, "rows": profile.rows, "group_size": profile.group_size}
    if model_dir is not None:
        report.sections["model"] = _model_section(model_dir, raw_reference, raw_batch)
    if multivariate:
        from components.drift.multivariate import detect_multivariate_drift

        sides = (task_groups(raw_reference, task), task_groups(raw_batch, task))
        result = detect_multivariate_drift(
            reference,
            batch,
            numeric=numeric,
            categorical=categorical,
            groups=None if sides[0] is None or sides[1] is None else (sides[0], sides[1]),
        )
        report.sections["multivariate"] = result.to_dict()
    write_json(report.to_dict(), report_path)
    rendered = evidently == "always" or (evidently == "on-drift" and report.dataset_drift)
    shown = (reference, batch, numeric, categorical) if rendered else None
    write_report_pages(report, html_path, evidently=shown, evidently_path=evidently_path)
    return report


def _model_section(model_dir: Path, reference: pd.DataFrame, batch: pd.DataFrame) -> dict[str, Any]:
    """Model drift of the champion on the batch, or why it could not be measured."""
    from components.drift.model import detect_model_drift
    from components.train.core import validation_rows
    from components.train.model import TrainedModel

    model = TrainedModel.load(model_dir)
    held = reference[validation_rows(reference, model.task)]
    labels = build_labels(held, model.task).to_numpy()
    if len(held) < _MIN_CALIBRATION_ROWS or len(np.unique(labels)) < 2:
        return {"skipped": f"{len(held)} held-out reference rows with {len(np.unique(labels))} class(es)"}
    has_labels = model.task.target.column in batch.columns
    result = detect_model_drift(
        reference_scores=model.predict_proba(held),
        reference_labels=labels,
        current_scores=model.predict_proba(batch),
        current_labels=build_labels(batch, model.task).to_numpy() if has_labels else None,
        group_sizes=(group_size(task_groups(held, model.task)), group_size(task_groups(batch, model.task))),
    )
    return result.to_dict()


def write_report_pages(
    report: DriftReport,
    html_path: Path,
    *,
    evidently: tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]] | None = None,
    evidently_path: Path | None = None,
) -> None:
    """Write the report's page, and Evidently's report of the same rows when asked for, linked from it.

    Args:
        report: The report.
        html_path: The page (``render_report_html``).
        evidently: Reference and window features with their numeric and categorical columns, to
            render Evidently's report (sampled) from; None: not rendered.
        evidently_path: Where Evidently's report goes (default: ``evidently.html`` beside the page);
            when it is not rendered, a line there says so.
    """
    html_path.parent.mkdir(parents=True, exist_ok=True)
    target = evidently_path or html_path.with_name("evidently.html")
    extra = ""
    if evidently is not None:
        reference, current, numeric, categorical = evidently
        render_evidently_report(reference, current, target, numeric=numeric, categorical=categorical)
        where = f'<a href="{target.name}">{target.name}</a>' if evidently_path is None else "its own HTML artifact"
        extra = f"<p>Evidently's data drift report of these rows (sampled): {where}.</p>"
    elif evidently_path is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "<!doctype html><meta charset=utf-8><p>Evidently's report was not rendered for this batch (it is "
            "rendered when the dataset drifted, or always when asked for).</p>",
            encoding="utf-8",
        )
    html_path.write_text(render_report_html(report, extra=extra), encoding="utf-8")
