import json

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from components.common.errors import ConfigError, DataValidationError
from components.drift.calibration import rate_of, replay_rate
from components.drift.core import DriftConfig, compare, detect_drift, profile_features, summarize_window, task_frame
from components.drift.profile import Profile, profile_frame, summarize_frame, summarize_partitions
from components.drift.scenarios import categorical_shift, numeric_shift
from components.drift.univariate import compare_categorical, compare_numeric

DAY = [f"202410221{t}" for t in ("30000", "31500", "33000", "34500", "40000", "43000", "44500", "50000")]


@pytest.fixture(scope="module")
def pool(validated) -> pd.DataFrame:
    """Real validated rows of one day's consecutive batches."""
    return pd.concat([validated(b) for b in DAY], ignore_index=True)


@pytest.mark.parametrize("column", ["GoldsteinScale", "NumMentions", "event_age_days"])
def test_profile_statistics_match_scipy_on_real_columns(pool, task, column) -> None:
    features = task_frame(pool, task)
    reference, window = features.iloc[: len(features) // 2], features.iloc[len(features) // 2 :].copy()
    window[column] = window[column] * 1.1 + 0.5  # a real column, stretched and moved
    profile = profile_frame(reference, numeric=[column], categorical=[])
    result = compare_numeric(profile.numeric[column], summarize_frame(window, profile).numeric[column])
    ref, cur = reference[column].dropna().to_numpy(), window[column].dropna().to_numpy()
    exact = stats.ks_2samp(ref, cur)
    # Edges are reference values; the binned KS can only be lower, by at most one bin's mass.
    assert exact.statistic - 1 / 200 - 1e-9 <= result.statistic <= exact.statistic + 1e-12
    wasserstein = stats.wasserstein_distance(ref, cur) / profile.numeric[column].scale
    # Exact per bin unless the two CDFs cross inside one; then a lower bound (integer counts,
    # stretched, cross inside the gaps between their values).
    assert 0.85 * wasserstein <= result.detail["distance"] <= wasserstein * (1 + 1e-9)


def test_wasserstein_sees_a_shift_smaller_than_the_gap_between_discrete_values(pool, task) -> None:
    reference = task_frame(pool, task)
    window = reference.assign(GoldsteinScale=reference["GoldsteinScale"] + 0.01)
    profile = profile_frame(reference, numeric=["GoldsteinScale"], categorical=[])
    result = compare_numeric(
        profile.numeric["GoldsteinScale"], summarize_frame(window, profile).numeric["GoldsteinScale"]
    )
    expected = 0.01 / profile.numeric["GoldsteinScale"].scale
    assert result.detail["distance"] == pytest.approx(expected, rel=1e-6)


def test_partition_summaries_merge_to_the_whole(pool, task) -> None:
    features = task_frame(pool, task)
    profile = profile_features(
        features.iloc[:5000], numeric=[*task.numeric, *task.derived], categorical=list(task.categorical)
    )
    whole = summarize_window(features, profile)
    parts = [summarize_window(features.iloc[i : i + 2000], profile) for i in range(0, len(features), 2000)]
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    on_dask = summarize_partitions(dd.from_pandas(features, npartitions=5), profile)
    for summary in (merged, on_dask):
        assert summary.rows == whole.rows
        for name, counts in whole.numeric.items():
            assert np.array_equal(summary.numeric[name].at_or_below, counts.at_or_below)
            assert np.allclose(summary.numeric[name].sum_at_or_below, counts.sum_at_or_below, rtol=1e-9)
        for name, counts in whole.categorical.items():
            assert np.array_equal(summary.categorical[name].counts, counts.counts)
    merged_report, whole_report = compare(profile, merged), compare(profile, whole)
    assert merged_report.drifted_features == whole_report.drifted_features
    for a, b in zip(merged_report.features, whole_report.features, strict=True):
        assert (a.statistic, a.p_value) == (b.statistic, b.p_value)  # counts are integers: exact
        assert a.effect == pytest.approx(b.effect, abs=1e-9)  # sums of floats: to rounding


def test_a_stored_profile_gives_the_same_report(pool, task, tmp_path) -> None:
    features = task_frame(pool, task)
    reference, window = features.iloc[:6000], features.iloc[6000:]
    profile = profile_features(reference, numeric=[*task.numeric, *task.derived], categorical=list(task.categorical))
    loaded = Profile.load(profile.save(tmp_path / "profile.json"))
    fresh, stored = (
        compare(profile, summarize_window(window, profile)),
        compare(loaded, summarize_window(window, loaded)),
    )
    assert json.dumps(stored.to_dict(), sort_keys=True) == json.dumps(fresh.to_dict(), sort_keys=True)


def test_unseen_and_vanished_categories_are_reported(pool, task) -> None:
    features = task_frame(pool, task)
    reference = features.iloc[:6000]
    window = features.iloc[6000:].copy()
    window["QuadClass"] = window["QuadClass"].astype(object).where(window["QuadClass"].astype(str) != "4", "9")
    profile = profile_frame(reference, numeric=[], categorical=["QuadClass"])
    result = compare_categorical(
        profile.categorical["QuadClass"], summarize_frame(window, profile).categorical["QuadClass"]
    )
    assert result.detail["unseen[9]"] == (features.iloc[6000:]["QuadClass"].astype(str) == "4").sum()
    assert result.detail["vanished_categories"] == 1  # class 4 vanished
    assert result.p_value < 1e-10


def test_a_profile_rejects_too_few_bins_and_absent_columns(pool) -> None:
    with pytest.raises(ConfigError, match="bins"):
        profile_frame(pool, numeric=["NumMentions"], categorical=[], bins=5)
    with pytest.raises(DataValidationError, match="not in the table"):
        profile_frame(pool, numeric=["NoSuchColumn"], categorical=[])


def test_null_replays_false_alarm_rate_is_at_most_q(pool, task) -> None:
    config = DriftConfig(fdr_q=0.05)
    numeric, categorical = [*task.numeric, *task.derived], list(task.categorical)

    def verdicts(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, bool]:
        groups = reference[task.group_column]
        profile = profile_features(reference, numeric=numeric, categorical=categorical, config=config, groups=groups)
        report = compare(profile, summarize_window(window, profile, groups=window[task.group_column]), config)
        return {
            "dataset": report.dataset_drift,
            "any_feature": bool(report.drifted_features),
            "any_p": any(f.p_adjusted < config.fdr_q for f in report.features),
            "label": report.label_p_value < config.fdr_q,
        }

    # Features are built once: the replays test the statistics, not the feature code. Whole
    # articles go to one side, as they arrive in production.
    features = task_frame(pool, task).assign(**{task.group_column: pool[task.group_column]})
    rates = replay_rate(
        features, verdicts, reference_rows=3000, window_rows=1000, replays=200, group_column=task.group_column
    )
    assert rates["dataset"].replays == 200
    assert rates["dataset"].rate <= config.fdr_q
    assert rates["any_feature"].rate <= config.fdr_q
    assert rates["label"].low <= config.fdr_q  # a single test at level q: consistent with q
    # BH alone, without the effect floor, on p-values whose grouping is estimated: near q, not
    # the certainty of false alarms that independent counting gives (the next test).
    assert rates["any_p"].rate <= 0.2


def test_counting_grouped_rows_as_independent_flags_their_clustering(pool, task) -> None:
    numeric, categorical = [*task.numeric, *task.derived], list(task.categorical)

    def verdicts(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, bool]:
        profile = profile_features(reference, numeric=numeric, categorical=categorical)
        return {"any_p": any(f.p_adjusted < 0.05 for f in compare(profile, summarize_window(window, profile)).features)}

    features = task_frame(pool, task).assign(**{task.group_column: pool[task.group_column]})
    rates = replay_rate(
        features, verdicts, reference_rows=3000, window_rows=1000, replays=30, group_column=task.group_column
    )
    assert rates["any_p"].low > 0.05  # why the group sizes are needed


@pytest.mark.parametrize(
    ("drift", "strength", "feature"),
    [
        (numeric_shift("GoldsteinScale", 0.5), 1.0, "GoldsteinScale"),
        (categorical_shift("EventRootCode", "14"), 0.3, "EventRootCode"),
    ],
)
def test_injected_shifts_are_found_on_the_shifted_feature(pool, task, drift, strength, feature) -> None:
    def verdicts(reference: pd.DataFrame, window: pd.DataFrame) -> dict[str, bool]:
        report = detect_drift(reference, window, task)
        return {
            "shifted": feature in report.drifted_features,
            "others": set(report.drifted_features) - {feature} != set(),
        }

    rates = replay_rate(
        pool, verdicts, reference_rows=3000, window_rows=1000, replays=20, drift=drift, strength=strength
    )
    assert rates["shifted"].rate >= 0.9
    assert rates["others"].rate <= 0.1


def test_rates_carry_a_clopper_pearson_interval() -> None:
    rate = rate_of(3, 200)
    assert rate.low < 0.015 < rate.high
    assert rate.high == pytest.approx(0.0432, abs=1e-3)


def test_replays_need_a_pool_large_enough(pool) -> None:
    with pytest.raises(ConfigError, match="cannot hold"):
        replay_rate(pool.iloc[:100], lambda r, w: {}, reference_rows=80, window_rows=40)
