import math
import re

import numpy as np
import pandas as pd
import pytest

from components.drift.core import DriftReport, compare, detect_drift, profile_features, summarize_window
from components.drift.page import render_report_html

BATCHES = ("20241022130000", "20241022131500", "20241022133000")


@pytest.fixture(scope="module")
def reference(validated) -> pd.DataFrame:
    return pd.concat([validated(b) for b in BATCHES])


@pytest.fixture(scope="module")
def tripled(reference, task, validated) -> DriftReport:
    batch = validated("20241022150000").copy()
    batch["NumArticles"] = batch["NumArticles"] * 3
    return detect_drift(reference, batch, task)


def test_the_headline_names_what_moved_how_far_and_what_the_dataset_rule_concluded(tripled: DriftReport) -> None:
    by_name = {f.feature: f for f in tripled.features}
    assert by_name["NumArticles"].drifted
    headline = tripled.headline()
    drifted = len(tripled.drifted_features)
    assert headline.startswith(f"{drifted} of {len(tripled.features)} features drifted: ")
    words = by_name["NumArticles"].words()
    assert words in headline and re.fullmatch(r"NumArticles \+[0-9.]+ IQR \(median [0-9.]+ → [0-9.]+\)", words)
    side = "at or above" if tripled.dataset_drift else "below"
    assert f"{tripled.drift_share:.0%} of the features, {side} the 25% drift share" in headline
    assert tripled.summary().startswith(headline)


def test_a_fall_reads_as_a_fall_and_a_category_names_its_largest_mover(reference, task, validated) -> None:
    batch = validated("20241022150000").copy()
    batch["GoldsteinScale"] = batch["GoldsteinScale"] - 6
    batch["EventRootCode"] = "19"
    by_name = {f.feature: f for f in detect_drift(reference, batch, task).features}
    assert by_name["GoldsteinScale"].words().startswith("GoldsteinScale −")
    root = by_name["EventRootCode"].words()
    assert root.startswith("EventRootCode JS ") and root.endswith(" pts)") and "(19 +" in root


def test_each_histogram_holds_both_sides_whole_distribution(tripled: DriftReport) -> None:
    for feature in tripled.features:
        picture = feature.histogram
        assert len(picture["bins"]) == len(picture["reference"]) == len(picture["current"]) >= 2, feature.feature
        assert math.isclose(sum(picture["reference"]), 1.0, abs_tol=1e-3), feature.feature
        assert math.isclose(sum(picture["current"]), 1.0, abs_tol=1e-3), feature.feature
    articles = next(f for f in tripled.features if f.feature == "NumArticles").histogram
    above = [share for label, share in zip(articles["bins"], articles["current"], strict=True) if label.startswith(">")]
    # Tripled counts reach past every reference value: the batch has a bin there, the reference none.
    assert above and above[0] > 0
    assert articles["reference"][articles["bins"].index(next(b for b in articles["bins"] if b.startswith(">")))] == 0


def test_the_page_pictures_every_drifted_feature_with_its_numbers(tripled: DriftReport) -> None:
    page = render_report_html(tripled)
    assert f"<h1>{tripled.headline()}</h1>" in page
    figures = re.findall(r"<figure>.*?</figure>", page)
    assert len(figures) == len(tripled.drifted_features) and all("<svg" in f for f in figures)
    articles = next(f for f in figures if "NumArticles" in f)
    assert "adjusted p" in articles and "outside the reference" in articles and "PSI" in articles
    assert page.count("<tr") == len(tripled.features) + 1  # every feature's test, and the header
    assert "The label" in page and "<script" not in page


def test_names_and_categories_are_escaped_on_the_page() -> None:
    rng = np.random.default_rng(0)
    name = "<script>alert(1)</script>"
    reference = pd.DataFrame({name: rng.normal(size=2000), "kind": rng.choice(["<b>", "a"], size=2000)})
    current = pd.DataFrame({name: rng.normal(size=2000) + 3, "kind": rng.choice(["<b>", "a"], size=2000, p=[0.9, 0.1])})
    profile = profile_features(reference, numeric=[name], categorical=["kind"])
    report = compare(profile, summarize_window(current, profile))
    assert set(report.drifted_features) == {name, "kind"}
    page = render_report_html(report)
    assert "<script>" not in page and "&lt;script&gt;" in page and "<b>" not in page and "&lt;b&gt;" in page
