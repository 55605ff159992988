"""``driftpilot drift``: compare two tables (or a stored profile and a table) and write the report.

Outputs in the chosen folder:

- ``report.json`` — the typed report: ``dataset_drift``, ``features`` (name → test, statistic,
  p_value, p_adjusted, effect, drifted, psi, detail, histogram), the label's test under
  ``sections.target`` when a target is named, and the inputs' provenance under ``sections.inputs``;
- ``profile.json`` — the reference's profile, to pass as ``--reference`` next time (a window is
  then compared without reading the reference again);
- ``report.html`` — the page a person reads: the headline, each drifted feature's reference and
  window distributions with the test's numbers, the label, every feature's test
  (``components.drift.page``); ``evidently.html`` beside it when Evidently's report is asked for;
- ``quarantine/<reference|current>.jsonl`` — rows a GDELT export's parser rejected, with reasons.
"""

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from components.common.errors import ConfigError
from components.common.storage import write_json
from components.common.task import load_task
from components.drift.core import (
    LABEL,
    DriftConfig,
    DriftReport,
    compare,
    profile_features,
    summarize_window,
    task_frame,
    task_groups,
    write_report_pages,
)
from components.drift.inputs import InputTable, infer_roles, read_input, target_is_discrete
from components.drift.profile import PROFILE_FILE, Profile

__all__ = ["DEFAULT_GDELT_TASK", "run_drift_command"]

DEFAULT_GDELT_TASK = "gdelt-tone"


def _quarantine(table: InputTable, out_dir: Path, name: str) -> int:
    if not table.rejected:
        return 0
    path = out_dir / "quarantine" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in table.rejected:
            out.write(json.dumps(asdict(row)) + "\n")
    return len(table.rejected)


@dataclass(frozen=True)
class _Features:
    """A table's compared columns (and ``LABEL``), their roles, the columns skipped, the rows' groups."""

    frame: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    skipped: dict[str, str]
    groups: pd.Series | None = None


def _features(table: InputTable, task_name: str | None, target: str | None) -> _Features:
    frame = table.frame
    if task_name is None and table.gdelt:
        task_name = DEFAULT_GDELT_TASK
    if target is not None and target not in frame.columns:
        raise ConfigError(f"--target {target!r} is not a column of the table (it has {list(frame.columns)[:30]})")
    if task_name is not None:
        task = load_task(task_name)
        features = task_frame(frame, task)
        if target is not None:
            features[LABEL] = frame[target]
        numeric = [*task.numeric, *task.derived]
        return _Features(features, numeric, list(task.categorical), {}, task_groups(frame, task))
    roles = infer_roles(frame, exclude=(target,) if target else ())
    features = frame[[*roles.numeric, *roles.categorical]].copy()
    if target is not None:
        features[LABEL] = frame[target]
    return _Features(features, roles.numeric, roles.categorical, roles.skipped)


def run_drift_command(
    reference: Path,
    current: Path,
    *,
    out_dir: Path,
    target: str | None = None,
    task: str | None = None,
    evidently: bool = False,
    config: DriftConfig = DriftConfig(),
) -> DriftReport:
    """Compare a window with a reference and write the outputs.

    Args:
        reference: A GDELT export, Parquet file or CSV with a header; or a ``profile.json``
            written by an earlier run.
        current: The window: a GDELT export, Parquet file or CSV with a header.
        out_dir: Output folder (created).
        target: A label column, tested for a prior shift apart from the features.
        task: A built-in task name or task YAML whose features are compared (default: every
            column by its type; for GDELT exports, the ``gdelt-tone`` task).
        evidently: Also render Evidently's report (sampled) as ``evidently.html``, linked from ``report.html``.
        config: Thresholds.

    Returns:
        The report.

    Raises:
        ConfigError: When a column named is absent, or Evidently is asked for with a stored profile.
        DataValidationError: When an input cannot be read.
    """
    stored = reference.suffix.lower() == ".json"
    if stored and evidently:
        raise ConfigError("Evidently's report needs the reference rows, not a stored profile")
    out_dir.mkdir(parents=True, exist_ok=True)
    window_table = read_input(current)
    window = _features(window_table, task, target)
    quarantined = {"current": _quarantine(window_table, out_dir, "current")}
    reference_features = window
    if stored:
        profile = Profile.load(reference)
        if task is None and not window_table.gdelt:
            # Compare the columns the profile holds, whatever roles the window's types suggest.
            frame = window_table.frame.assign(**({LABEL: window_table.frame[target]} if target else {}))
            window = replace(window, frame=frame)
    else:
        reference_table = read_input(reference)
        reference_features = _features(reference_table, task, target)
        labels = reference_features.frame.get(LABEL)
        profile = profile_features(
            reference_features.frame,
            numeric=reference_features.numeric,
            categorical=reference_features.categorical,
            config=config,
            label_discrete=labels is None or target_is_discrete(labels),
            groups=reference_features.groups,
        )
        profile.save(out_dir / PROFILE_FILE)
        quarantined["reference"] = _quarantine(reference_table, out_dir, "reference")
    absent = [c for c in profile.columns if c not in window.frame.columns and c != LABEL]
    if absent:
        raise ConfigError(f"the window lacks profiled columns {absent}")
    summary = summarize_window(window.frame, profile, groups=window.groups)
    report = compare(profile, summary, config)
    if target is not None and "target" in report.sections:
        report.sections["target"]["feature"] = target
    report.sections["inputs"] = {
        "reference": str(reference),
        "current": str(current),
        "skipped_columns": reference_features.skipped,
        "quarantined_rows": quarantined,
    }
    write_json(report.to_dict(), out_dir / "report.json")
    sides = (
        (reference_features.frame, window.frame, reference_features.numeric, reference_features.categorical)
        if evidently
        else None
    )
    write_report_pages(report, out_dir / "report.html", evidently=sides)
    return report
