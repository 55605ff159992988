import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar as statsmodels_mcnemar

from components.gate.stats import calibration_error, compare_aucs, mcnemar, prediction_latency


def _scored_rows(rng: np.random.Generator, rows: int, *, signal: tuple[float, float] = (1.0, 1.0), decimals: int = 1):
    """Labels and two models' scores; rounding makes ties between and within classes."""
    labels = (rng.random(rows) < 0.4).astype("int64")
    champion = np.round(signal[0] * labels + rng.normal(size=rows), decimals)
    challenger = np.round(signal[1] * labels + rng.normal(size=rows), decimals)
    return labels, champion, challenger


def _delong_variance_of_gain(labels: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> float:
    """DeLong, DeLong & Clarke-Pearson (1988) variance of the AUC difference, straight from the O(m·n) kernel."""
    positive = labels == 1
    v10, v01 = [], []
    for scores in (champion, challenger):
        x, y = scores[positive][:, None], scores[~positive][None, :]
        psi = (x > y) + 0.5 * (x == y)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    covariance = s10 / positive.sum() + s01 / (~positive).sum()
    contrast = np.array([-1.0, 1.0])
    return float(contrast @ covariance @ contrast)


def test_singleton_variance_matches_direct_delong() -> None:
    rng = np.random.default_rng(1)
    for rows in (40, 150, 301):
        labels, champion, challenger = _scored_rows(rng, rows)
        m, n = int(labels.sum()), int(rows - labels.sum())
        result = compare_aucs(labels, champion, challenger)
        # The influence-function variance differs from DeLong's by a factor between (1 - 1/m) and (1 - 1/n).
        assert result.se**2 == pytest.approx(
            _delong_variance_of_gain(labels, champion, challenger), rel=1.5 / min(m, n)
        )
        assert result.groups == rows and result.rows == rows


def test_aucs_equal_sklearn_with_ties() -> None:
    labels, champion, challenger = _scored_rows(np.random.default_rng(2), 500, decimals=0)
    result = compare_aucs(labels, champion, challenger)
    assert result.champion_auc == pytest.approx(roc_auc_score(labels, champion), abs=1e-12)
    assert result.challenger_auc == pytest.approx(roc_auc_score(labels, challenger), abs=1e-12)
    assert result.gain == pytest.approx(result.challenger_auc - result.champion_auc)


def test_duplicated_rows_add_no_evidence_when_grouped() -> None:
    labels, champion, challenger = _scored_rows(np.random.default_rng(3), 400)
    base = compare_aucs(labels, champion, challenger)
    copies = np.repeat(np.arange(len(labels)), 5)
    grouped = compare_aucs(labels[copies], champion[copies], challenger[copies], groups=copies)
    naive = compare_aucs(labels[copies], champion[copies], challenger[copies])
    assert grouped.gain == pytest.approx(base.gain)
    assert grouped.groups == 400 and grouped.rows == 2000
    assert grouped.se == pytest.approx(base.se, rel=0.10)
    assert naive.se == pytest.approx(base.se / math.sqrt(5), rel=0.10)


def test_group_keys_may_be_strings() -> None:
    labels, champion, challenger = _scored_rows(np.random.default_rng(4), 200)
    keys = np.array([f"article-{i // 3}" for i in range(200)])
    by_string = compare_aucs(labels, champion, challenger, keys)
    by_int = compare_aucs(labels, champion, challenger, np.arange(200) // 3)
    assert by_string.se == pytest.approx(by_int.se) and by_string.groups == 67


def test_clearly_better_challenger_is_significant() -> None:
    labels, champion, challenger = _scored_rows(np.random.default_rng(5), 600, signal=(0.5, 2.0))
    result = compare_aucs(labels, champion, challenger, confidence=0.95)
    assert result.p_better < 0.01
    assert 0 < result.ci_low < result.gain < result.ci_high
    assert result.to_dict()["gain"] == result.gain


def test_equally_good_models_reject_at_the_nominal_rate_even_when_rows_are_clustered() -> None:
    rng = np.random.default_rng(0)
    clustered_p, naive_p, all_p = [], [], []
    for holdout in range(300):
        clustered = holdout % 2 == 1
        if clustered:
            # Articles of 1-6 events: events share the label and part of each model's score.
            groups = np.repeat(np.arange(80), rng.integers(1, 7, size=80))
        else:
            groups = np.arange(int(rng.integers(200, 400)))
        articles = int(groups.max()) + 1
        labels = (rng.random(articles) < 0.4).astype("int64")[groups]
        champion, challenger = (
            labels + clustered * rng.normal(size=articles)[groups] + rng.normal(size=len(labels)) for _ in range(2)
        )
        p = compare_aucs(labels, champion, challenger, groups if clustered else None).p_better
        all_p.append(p)
        if clustered:
            clustered_p.append(p)
            naive_p.append(compare_aucs(labels, champion, challenger).p_better)
    assert 0.02 <= np.mean(np.array(all_p) < 0.05) <= 0.09
    assert 0.02 <= np.mean(np.array(clustered_p) < 0.05) <= 0.09
    # Ignoring the clusters would promote challengers that are no better far too often.
    assert np.mean(np.array(naive_p) < 0.05) > 0.09


def test_one_class_holdout_is_refused() -> None:
    with pytest.raises(ValueError, match="one class"):
        compare_aucs(np.ones(10), np.arange(10.0), np.arange(10.0))


def test_identical_models_show_no_gain() -> None:
    labels, champion, _ = _scored_rows(np.random.default_rng(6), 100)
    result = compare_aucs(labels, champion, champion)
    assert result.gain == 0 and result.se == 0 and result.p_better == 1.0


def _predictions(rng: np.random.Generator, rows: int, champion_error: float, challenger_error: float):
    labels = rng.integers(0, 2, size=rows)
    champion = np.where(rng.random(rows) < champion_error, 1 - labels, labels)
    challenger = np.where(rng.random(rows) < challenger_error, 1 - labels, labels)
    return labels, champion, challenger


@pytest.mark.parametrize(("rows", "challenger_error"), [(400, 0.15), (400, 0.25), (60, 0.1), (30, 0.25)])
def test_mcnemar_matches_statsmodels(rows: int, challenger_error: float) -> None:
    labels, champion, challenger = _predictions(np.random.default_rng(rows), rows, 0.2, challenger_error)
    result = mcnemar(labels, champion, challenger)
    champion_right, challenger_right = champion == labels, challenger == labels
    table = pd.crosstab(champion_right, challenger_right).reindex(index=[True, False], columns=[True, False]).fillna(0)
    discordant = result.champion_only + result.challenger_only
    assert result.champion_only == int((champion_right & ~challenger_right).sum())
    assert result.challenger_only == int((challenger_right & ~champion_right).sum())
    assert result.champion_accuracy == pytest.approx(champion_right.mean())
    asymptotic = statsmodels_mcnemar(table.to_numpy(), exact=False, correction=False)
    assert result.statistic == pytest.approx(asymptotic.statistic)
    reference = asymptotic if discordant >= 25 else statsmodels_mcnemar(table.to_numpy(), exact=True)
    assert result.p_value == pytest.approx(reference.pvalue)


def test_mcnemar_exact_branch_is_used_for_few_discordant_rows() -> None:
    labels = np.zeros(50, dtype="int64")
    champion, challenger = labels.copy(), labels.copy()
    champion[:8] = 1  # champion wrong on 8 rows the challenger gets right, and vice versa on 1
    challenger[10] = 1
    result = mcnemar(labels, champion, challenger)
    assert (result.champion_only, result.challenger_only) == (1, 8)
    assert result.p_value == pytest.approx(statsmodels_mcnemar([[41, 1], [8, 0]], exact=True).pvalue)
    assert result.p_value > statsmodels_mcnemar([[41, 1], [8, 0]], exact=False, correction=False).pvalue


def test_clustered_mcnemar_reduces_to_plain_with_singletons() -> None:
    labels, champion, challenger = _predictions(np.random.default_rng(7), 500, 0.2, 0.14)
    plain = mcnemar(labels, champion, challenger)
    singletons = mcnemar(labels, champion, challenger, groups=np.arange(500))
    assert plain.champion_only + plain.challenger_only >= 25
    assert singletons.statistic == pytest.approx(plain.statistic)
    assert singletons.p_value == pytest.approx(plain.p_value)


def test_clustered_mcnemar_discounts_duplicated_rows() -> None:
    labels, champion, challenger = _predictions(np.random.default_rng(8), 150, 0.2, 0.14)
    copies = np.repeat(np.arange(150), 4)
    base = mcnemar(labels, champion, challenger, groups=np.arange(150))
    grouped = mcnemar(labels[copies], champion[copies], challenger[copies], groups=copies)
    naive = mcnemar(labels[copies], champion[copies], challenger[copies])
    assert grouped.statistic == pytest.approx(base.statistic)
    assert naive.statistic == pytest.approx(4 * base.statistic)


def test_mcnemar_without_discordant_rows() -> None:
    labels = np.array([0, 1, 1, 0])
    result = mcnemar(labels, labels, labels, groups=[1, 1, 2, 2])
    assert (result.statistic, result.p_value, result.champion_only, result.challenger_only) == (0.0, 1.0, 0, 0)


def test_calibration_error_is_small_for_calibrated_and_large_for_shifted_probabilities() -> None:
    rng = np.random.default_rng(9)
    proba = rng.uniform(0.0, 0.7, size=20_000)
    labels = (rng.random(20_000) < proba).astype("int64")
    assert calibration_error(labels, proba) < 0.02
    assert calibration_error(labels, proba + 0.3) == pytest.approx(0.3, abs=0.02)


def test_calibration_error_uses_equal_mass_bins_of_sorted_probabilities() -> None:
    # Two bins of two rows, {0.01, 0.02} and {0.03, 0.04}: (|0 - 0.015| + |1 - 0.035|) / 2.
    # Equal-width bins would pool all four rows (0.475); unsorted halves would give 0.475 too.
    assert calibration_error([1, 0, 0, 1], [0.04, 0.02, 0.01, 0.03], bins=2) == pytest.approx(0.49)


def test_prediction_latency_measures_and_ranks_speed() -> None:
    rows = pd.DataFrame({"x": np.arange(7.0), "y": np.arange(7.0) ** 2})

    def fast(frame: pd.DataFrame) -> np.ndarray:
        return frame["x"].to_numpy() * 2

    def slow(frame: pd.DataFrame) -> np.ndarray:
        time.sleep(0.002)
        return frame["x"].to_numpy() * 2

    measured = prediction_latency({"quick": fast, "sluggish": slow}, rows, single=50, batch=300, repeats=3)
    quick, sluggish = measured["quick"], measured["sluggish"]
    for latency in (quick, sluggish):
        values = list(latency.to_dict().values())
        assert all(math.isfinite(v) and v > 0 for v in values)
        assert latency.single_p50_ms <= latency.single_p95_ms
    assert sluggish.single_p50_ms >= 2.0 > quick.single_p50_ms
    assert sluggish.batch_rows_per_s < quick.batch_rows_per_s


def test_prediction_latency_sees_every_row_and_the_full_batch_and_alternates_the_models() -> None:
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    calls: list[tuple[str, int]] = []
    seen: set[float] = set()

    def recorder(name: str) -> Callable[[pd.DataFrame], None]:
        def record(frame: pd.DataFrame) -> None:
            calls.append((name, len(frame)))
            seen.update(frame["x"])

        return record

    prediction_latency({"a": recorder("a"), "b": recorder("b")}, rows, single=4, batch=10, repeats=2)
    warm = [("a", 1), ("b", 1)]
    one_row = [("a", 1)] * 2 + [("b", 1)] * 2 + [("b", 1)] * 2 + [("a", 1)] * 2  # order swaps each row
    assert calls == warm + one_row * 2 + [("a", 10)] * 2 + [("b", 10)] * 2
    assert seen == {1.0, 2.0, 3.0}


def test_prediction_latency_keeps_a_preempted_call_out_of_a_row_time() -> None:
    rows = pd.DataFrame({"x": [1.0]})
    count = {"calls": 0}

    def sometimes_stalled(frame: pd.DataFrame) -> None:
        count["calls"] += 1
        if count["calls"] % 3 == 2:  # one call in three stalls, as on a busy host
            time.sleep(0.02)

    latency = prediction_latency({"m": sometimes_stalled}, rows, single=20, batch=5, repeats=3)["m"]
    assert latency.single_p95_ms < 5.0  # every row had an unstalled call
    with pytest.raises(ValueError, match="predicts is empty"):
        prediction_latency({}, rows)
