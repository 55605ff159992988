import math
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from components.common.task import load_task
from components.drift.core import DriftConfig, DriftReport, detect_drift, detect_drift_files, profile_task
from components.drift.profile import PROFILE_FILE, Profile
from components.train.core import TrainConfig, train_files


def _drift_files(reference: pd.DataFrame, batch: pd.DataFrame, folder: Path, evidently: str) -> DriftReport:
    """Write reference and batch as Parquet and run the file-level drift stage on them."""
    ref_path, cur_path = folder / "ref.parquet", folder / "cur.parquet"
    reference.to_parquet(ref_path)
    batch.to_parquet(cur_path)
    report_path, html_path = folder / "r.json", folder / "r.html"
    return detect_drift_files(
        ref_path, cur_path, "gdelt-tone", report_path=report_path, html_path=html_path, evidently=evidently
    )


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
    labels = [(frame.AvgTone < -5).to_numpy() for frame in (reference, batch)]
    table = [[int(y.sum()), int((~y).sum())] for y in labels]
    independent = stats.chi2_contingency(table, correction=False).pvalue
    # 13.5% against ~19.5%: rows counted one by one make it look certain; an article's events
    # share its tone, and counted by article the shift is weak evidence.
    assert independent < 0.01
    assert 0.01 < report.label_p_value < 0.2


def test_effect_floor_stops_trivial_significant_shifts(reference, task) -> None:
    shifted = reference.copy()
    shifted["GoldsteinScale"] = shifted["GoldsteinScale"] + 0.01
    report = detect_drift(reference, shifted, task, DriftConfig())
    assert "GoldsteinScale" not in report.drifted_features


def test_files_write_json_and_the_page_without_drift(reference, task, tmp_path: Path) -> None:
    report = _drift_files(reference, reference.sample(n=1000, random_state=0), tmp_path, "on-drift")
    assert not report.dataset_drift
    page = (tmp_path / "r.html").read_text()
    assert "<table>" in page and "Drifted Columns" not in page and "evidently.html" not in page
    assert "No feature drifted; the largest effects" in page and page.count("<svg") == 3
    assert not (tmp_path / "evidently.html").exists()
    assert '"dataset_drift": false' in (tmp_path / "r.json").read_text()


def test_evidently_report_is_rendered_beside_the_page_when_asked(reference, task, validated, tmp_path: Path) -> None:
    _drift_files(reference, validated("20241022140000"), tmp_path, "always")
    evidently = (tmp_path / "evidently.html").read_text()
    assert "Drifted Columns" in evidently and len(evidently) > 100_000  # Evidently's self-contained report
    page = (tmp_path / "r.html").read_text()
    assert '<a href="evidently.html">' in page and "Drifted Columns" not in page


def test_the_drift_stage_compares_with_the_profile_stored_at_training(reference, validated, tmp_path: Path) -> None:
    train_path, sample_path, batch_path = (
        tmp_path / "train.parquet",
        tmp_path / "sample.parquet",
        tmp_path / "b.parquet",
    )
    reference.to_parquet(train_path)
    reference.sample(n=1000, random_state=0).to_parquet(sample_path)
    batch = validated("20241022150000")
    batch.to_parquet(batch_path)
    train_files([train_path], "gdelt-tone", tmp_path / "model", TrainConfig(num_boost_round=30))
    stored = Profile.load(tmp_path / "model" / PROFILE_FILE)
    assert stored.rows == len(reference) and stored.group_size > 1  # all the rows, articles counted
    report = detect_drift_files(
        sample_path,
        batch_path,
        "gdelt-tone",
        report_path=tmp_path / "r.json",
        html_path=tmp_path / "r.html",
        evidently="never",
        model_dir=tmp_path / "model",
    )
    assert report.reference_rows == len(reference)  # not the 1,000-row sample
    assert report.sections["reference"]["profile"].startswith("the champion's training rows")
    assert stored.to_dict() == profile_task(reference, load_task("gdelt-tone")).to_dict()
    assert {"prediction_shift", "estimated", "realised"} <= set(report.sections["model"])
