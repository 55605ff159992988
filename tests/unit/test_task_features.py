import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common.errors import ConfigError
from components.common.task import TaskSpec, load_task
from components.features.core import build_features, build_labels, input_columns, split_by_key


def test_builtin_task_roundtrips_through_yaml(tmp_path: Path, task: TaskSpec) -> None:
    import yaml

    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(task.to_dict()), encoding="utf-8")
    assert load_task(str(path)) == task
    assert task.target.describe() == "AvgTone < -5.0"
    assert "AvgTone" not in task.features


def test_target_used_as_feature_is_refused(task: TaskSpec) -> None:
    data = task.to_dict()
    data["numeric"] = [*data["numeric"], "AvgTone"]
    with pytest.raises(ConfigError, match="target column"):
        TaskSpec.from_dict(data)


def test_unknown_task_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="built-in name"):
        load_task("no-such-task")


def test_features_and_labels_on_a_real_batch(validated, task: TaskSpec) -> None:
    frame = validated("20241022130000")
    features = build_features(frame, task)
    assert list(features.columns) == list(task.features)
    assert isinstance(features["EventCode"].dtype, pd.CategoricalDtype)
    assert features["QuadClass"].cat.categories.tolist() == ["1", "2", "3", "4"]
    assert features["event_age_days"].iloc[0] == 365  # SQLDATE 20231023, DATEADDED 20241022
    labels = build_labels(frame, task)
    assert labels.tolist() == (frame["AvgTone"] < -5).astype(int).tolist()
    assert 0.1 < labels.mean() < 0.3


def test_request_rows_and_training_rows_encode_alike(validated, task: TaskSpec) -> None:
    frame = validated("20241022130000").head(50)
    request = frame[list(input_columns(task))].copy()
    for column in task.categorical:
        request[column] = request[column].astype("string").fillna("").astype(str)
    for column in set(request.columns) - set(task.categorical):
        request[column] = pd.to_numeric(request[column]).astype("float64")
    a, b = build_features(frame, task), build_features(request, task)
    for column in task.categorical:
        assert a[column].astype(object).fillna("?").tolist() == b[column].astype(object).fillna("?").tolist()
    assert np.allclose(a[list(task.numeric)], b[list(task.numeric)], equal_nan=True)


def test_split_is_deterministic_and_keeps_groups_together(validated, task: TaskSpec) -> None:
    frame = validated("20241022130000")
    held = split_by_key(frame[task.split_column], 0.3)
    assert np.array_equal(held, split_by_key(frame[task.split_column].sample(frac=1, random_state=1).sort_index(), 0.3))
    assert math.isclose(held.mean(), 0.3, abs_tol=0.06)
    per_article = pd.Series(held).groupby(frame[task.split_column].to_numpy()).nunique()
    assert (per_article == 1).all()
