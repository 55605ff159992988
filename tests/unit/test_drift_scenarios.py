import numpy as np
import pandas as pd
import pytest

from components.common.errors import ConfigError
from components.drift.core import detect_drift
from components.drift.scenarios import (
    Schedule,
    categorical_shift,
    concept_shift,
    drift_stream,
    numeric_shift,
    prior_shift,
)

DAY = ("20241022130000", "20241022131500", "20241022133000", "20241022134500", "20241022140000", "20241022143000")


@pytest.fixture(scope="module")
def batches(validated) -> list[pd.DataFrame]:
    return [validated(b) for b in DAY]


@pytest.fixture(scope="module")
def reference(batches) -> pd.DataFrame:
    return pd.concat(batches[:3], ignore_index=True)


@pytest.mark.parametrize(
    ("schedule", "levels"),
    [
        (Schedule("sudden", start=2), [0, 0, 1, 1, 1, 1]),
        (Schedule("incremental", start=1, length=4), [0, 0.25, 0.5, 0.75, 1, 1]),
        (Schedule("gradual", start=0, length=2), [0.5, 1, 1, 1, 1, 1]),
        (Schedule("recurring", start=1, period=2), [0, 1, 1, 0, 0, 1]),
    ],
)
def test_schedules_unfold_as_named(schedule: Schedule, levels: list[float]) -> None:
    assert [schedule.level(step) for step in range(6)] == levels


def test_a_bad_schedule_or_strength_is_refused(batches) -> None:
    with pytest.raises(ConfigError, match="not one of"):
        Schedule("seasonal", start=0)
    with pytest.raises(ConfigError, match="length >= 1"):
        Schedule("incremental", start=0, length=0)
    with pytest.raises(ConfigError, match=r"within \[0, 1\]"):
        numeric_shift("NumMentions", 1.0)(batches[0], 1.5, np.random.default_rng(0))


def test_covariate_shift_is_found_on_its_feature_and_nowhere_else(reference, batches, task) -> None:
    rng = np.random.default_rng(1)
    null = detect_drift(reference, numeric_shift("GoldsteinScale", 1.0)(batches[3], 0.0, rng), task)
    shifted = detect_drift(reference, numeric_shift("GoldsteinScale", 1.0)(batches[3], 1.0, rng), task)
    assert "GoldsteinScale" not in null.drifted_features
    assert "GoldsteinScale" in shifted.drifted_features
    assert set(shifted.drifted_features) - {"GoldsteinScale"} <= set(null.drifted_features)
    moved = categorical_shift("QuadClass", 4)(batches[3], 0.5, rng)
    assert (moved["QuadClass"] == 4).mean() >= 0.5
    assert "QuadClass" in detect_drift(reference, moved, task).drifted_features


def test_prior_shift_moves_the_label_rate_and_keeps_the_row_count(batches, task) -> None:
    batch = batches[3]
    positive = lambda frame: task.target.apply(frame[task.target.column]).astype(bool)  # noqa: E731
    before = positive(batch).mean()
    half = prior_shift(positive, 0.5)(batch, 0.5, np.random.default_rng(2))
    full = prior_shift(positive, 0.5)(batch, 1.0, np.random.default_rng(2))
    assert len(half) == len(full) == len(batch)
    assert abs(positive(full).mean() - 0.5) <= 1 / len(batch)
    assert abs(positive(half).mean() - (before + 0.5) / 2) <= 1 / len(batch)
    assert detect_drift(batch, full, task).label_p_value < 1e-6


def test_concept_shift_keeps_features_and_label_rate_but_cuts_their_tie(batches, task) -> None:
    batch = batches[3]
    drifted = concept_shift("AvgTone")(batch, 1.0, np.random.default_rng(3))
    features = list(task.source_columns)
    pd.testing.assert_frame_equal(drifted[features], batch[features])
    assert sorted(drifted["AvgTone"]) == sorted(batch["AvgTone"])  # P(y) unchanged
    tie = lambda frame: abs(frame["GoldsteinScale"].astype(float).corr(frame["AvgTone"].astype(float)))  # noqa: E731
    assert tie(batch) > 0.15 and tie(drifted) < tie(batch) / 3


def test_streams_follow_the_schedule_and_leave_the_input_alone(batches) -> None:
    originals = [b.copy() for b in batches]
    inject = numeric_shift("NumMentions", 2.0)
    sudden = drift_stream(batches, inject, Schedule("sudden", start=3), seed=4)
    gradual = drift_stream(batches, inject, Schedule("gradual", start=1, length=4), seed=4)
    for batch, original in zip(batches, originals, strict=True):
        pd.testing.assert_frame_equal(batch, original)
    changed = [
        (s["NumMentions"].astype(float) != b["NumMentions"].astype(float)).mean()
        for s, b in zip(sudden, batches, strict=True)
    ]
    assert changed[:3] == [0, 0, 0] and min(changed[3:]) > 0.99
    for step, level in enumerate(Schedule("gradual", start=1, length=4).level(i) for i in range(len(batches))):
        share = (gradual[step]["NumMentions"].astype(float) != batches[step]["NumMentions"].astype(float)).mean()
        n = len(batches[step])
        assert abs(share - level) <= 4 * np.sqrt(level * (1 - level) / n) + 1e-9, (step, level, share)


def test_gradual_prior_drift_is_refused(batches, task) -> None:
    positive = lambda frame: task.target.apply(frame[task.target.column]).astype(bool)  # noqa: E731
    with pytest.raises(ConfigError, match="resamples rows"):
        drift_stream(batches, prior_shift(positive, 0.5), Schedule("gradual", start=0, length=2))
