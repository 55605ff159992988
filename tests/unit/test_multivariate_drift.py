import numpy as np
import pandas as pd
import pytest

from components.common.errors import ConfigError
from components.drift.core import detect_drift, task_frame
from components.drift.multivariate import MultivariateConfig, detect_multivariate_drift

DAY = ("20241022130000", "20241022131500", "20241022133000", "20241022134500", "20241022140000", "20241022143000")


@pytest.fixture(scope="module")
def pool(validated) -> pd.DataFrame:
    rows = pd.concat([validated(b) for b in DAY], ignore_index=True)
    return rows.iloc[np.random.default_rng(0).permutation(len(rows))].reset_index(drop=True)


def _features(task) -> tuple[list[str], list[str]]:
    return [*task.numeric, *task.derived], list(task.categorical)


def test_two_halves_of_one_pool_are_not_told_apart(pool, task) -> None:
    numeric, categorical = _features(task)
    half = len(pool) // 2
    result = detect_multivariate_drift(
        task_frame(pool.iloc[:half], task), task_frame(pool.iloc[half:], task), numeric=numeric, categorical=categorical
    )
    assert not result.drifted
    assert result.low <= 0.5 <= result.high


def test_a_broken_correlation_with_unchanged_marginals_is_found(pool, task) -> None:
    numeric, categorical = _features(task)
    half = len(pool) // 2
    reference, window = pool.iloc[:half], pool.iloc[half:].copy()
    # CAMEO's QuadClass follows from the event's root code; shuffling it within the window keeps
    # every marginal exactly and breaks only the joint distribution.
    window["QuadClass"] = np.random.default_rng(1).permutation(window["QuadClass"].to_numpy())
    marginal = detect_drift(reference, window, task)
    assert "QuadClass" not in marginal.drifted_features
    result = detect_multivariate_drift(
        task_frame(reference, task), task_frame(window, task), numeric=numeric, categorical=categorical
    )
    assert result.drifted and result.p_value < 1e-6
    assert result.auc > 0.55 and result.low > 0.5
    assert "QuadClass" in result.top_features  # with the codes it no longer matches


def test_the_domain_classifier_refuses_too_few_rows(pool, task) -> None:
    numeric, categorical = _features(task)
    features = task_frame(pool.iloc[:30], task)
    with pytest.raises(ConfigError, match="at least 20 rows"):
        detect_multivariate_drift(features.iloc[:10], features.iloc[10:], numeric=numeric, categorical=categorical)
    with pytest.raises(ConfigError, match="auc_floor"):
        MultivariateConfig(auc_floor=0.4)
