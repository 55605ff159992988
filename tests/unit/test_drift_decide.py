import math
from pathlib import Path

import pandas as pd
import pytest

from components.decide.core import Action, decide
from components.drift.core import DriftConfig, detect_drift, detect_drift_files


@pytest.fixture(scope="module")
def reference(validated) -> pd.DataFrame:
    return pd.concat([validated(b) for b in ("20241022130000", "20241022131500", "20241022133000", "20241022134500")])


def test_resampled_reference_raises_no_false_alarm(reference, task) -> None:
    alarms = [
        detect_drift(reference, reference.sample(n=1500, random_state=seed), task).dataset_drift for seed in range(10)
    ]
    assert sum(alarms) == 0


def test_injected_covariate_shift_is_detected(reference, task, validated) -> None:
    batch = validated("20241022140000").copy()
    batch["NumMentions"] = batch["NumMentions"] * 5
    batch["QuadClass"] = 4
    batch["EventRootCode"] = "19"
    report = detect_drift(reference, batch, task)
    assert {"NumMentions", "QuadClass", "EventRootCode"} <= set(report.drifted_features)
    by_name = {f.feature: f for f in report.features}
    assert by_name["NumMentions"].test == "ks" and by_name["QuadClass"].test == "chi2"
    assert by_name["QuadClass"].p_adjusted >= by_name["QuadClass"].p_value


def test_label_prior_is_reported_apart(reference, task, validated) -> None:
    batch = validated("20241022150000")
    report = detect_drift(reference, batch, task)
    assert math.isclose(report.label_current_rate, (batch.AvgTone < -5).mean())
    assert report.label_p_value < 0.01  # 13.5% against ~19.5%: a real prior shift


def test_effect_floor_stops_trivial_significant_shifts(reference, task) -> None:
    shifted = reference.copy()
    shifted["GoldsteinScale"] = shifted["GoldsteinScale"] + 0.01
    report = detect_drift(reference, shifted, task, DriftConfig())
    assert "GoldsteinScale" not in report.drifted_features


def test_files_write_json_and_table_html_without_drift(reference, task, tmp_path: Path) -> None:
    ref_path, cur_path = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    reference.to_parquet(ref_path)
    reference.sample(n=1000, random_state=0).to_parquet(cur_path)
    report = detect_drift_files(
        ref_path,
        cur_path,
        "gdelt-tone",
        report_path=tmp_path / "r.json",
        html_path=tmp_path / "r.html",
        evidently="on-drift",
    )
    assert not report.dataset_drift
    page = (tmp_path / "r.html").read_text()
    assert "<table>" in page and "Drifted Columns" not in page
    assert '"dataset_drift": false' in (tmp_path / "r.json").read_text()


def test_evidently_report_is_rendered_when_asked(reference, task, validated, tmp_path: Path) -> None:
    ref_path, cur_path = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    reference.to_parquet(ref_path)
    validated("20241022140000").to_parquet(cur_path)
    detect_drift_files(
        ref_path,
        cur_path,
        "gdelt-tone",
        report_path=tmp_path / "r.json",
        html_path=tmp_path / "r.html",
        evidently="always",
    )
    page = (tmp_path / "r.html").read_text()
    assert "Drifted Columns" in page and len(page) > 100_000  # Evidently's self-contained report


@pytest.mark.parametrize(
    ("drift", "baseline", "batch", "rows", "action"),
    [
        (True, 0.75, 0.70, 1000, Action.RETRAIN),
        (False, 0.75, 0.65, 1000, Action.RETRAIN),
        (True, 0.75, 0.74, 1000, Action.MONITOR),
        (False, 0.75, 0.71, 1000, Action.MONITOR),
        (False, 0.75, 0.76, 1000, Action.NONE),
        (True, 0.75, 0.50, 100, Action.SKIP),
        (True, 0.75, math.nan, 1000, Action.MONITOR),
    ],
)
def test_policy_table(drift: bool, baseline: float, batch: float, rows: int, action: Action) -> None:
    evidence = dict(dataset_drift=drift, drifted_features=5 if drift else 1, total_features=16,
                    baseline_auc=baseline, batch_auc=batch, rows=rows)
    decision = decide(**evidence)
    assert decision.action is action and decision.reason
    assert decide(**evidence).to_dict().__repr__() == decision.to_dict().__repr__()  # deterministic
