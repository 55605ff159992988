"""Synthetic data fitted to the real GDELT and card rows, its quality checks, and the scenario library."""

import importlib.util
import json
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.common.errors import ConfigError
from components.synth.copula import GaussianCopula
from components.synth.ctgan import CtganGenerator
from components.synth.quality import synthetic_quality
from components.synth.scenarios import dataset_spec, library, real_rows, run_scenarios
from pipelines.cli import main


@pytest.fixture(scope="module")
def gdelt(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The task's features and AvgTone of eight real exports (one day's consecutive batches)."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "gdelt").mkdir()
    for path in sorted((data_dir / "gdelt").glob("20241022*.export.CSV")):
        (folder / "gdelt" / path.name).symlink_to(path)
    return real_rows("gdelt", folder)


def _features(frame: pd.DataFrame, categorical: list[str], numeric: list[str]) -> pd.DataFrame:
    out = frame[[*categorical, *numeric]].copy()
    for column in categorical:
        out[column] = out[column].astype("object").astype("string").astype("category")
    return out


def test_the_copula_keeps_margins_and_the_rules_the_real_rows_keep(gdelt: pd.DataFrame) -> None:
    spec = dataset_spec("gdelt")
    gdelt = gdelt.sample(n=8000, random_state=0).reset_index(drop=True)
    copula = GaussianCopula([*spec.numeric, "AvgTone"], spec.categorical, order_by="AvgTone").fit(gdelt)
    synthetic = copula.sample(len(gdelt), seed=1)
    assert list(synthetic.columns) == copula.columns and len(synthetic) == len(gdelt)
    # CAMEO's hierarchy: the root code is the event code's prefix, and GoldsteinScale is the code's.
    codes = synthetic.dropna(subset=["EventCode", "EventRootCode"])
    assert (codes.apply(lambda r: str(r.EventCode).startswith(str(r.EventRootCode)), axis=1)).all()
    real_goldstein = gdelt.groupby(gdelt["EventCode"].astype("string"))["GoldsteinScale"].first()
    looked_up = real_goldstein.reindex(codes["EventCode"].astype("string")).to_numpy()
    assert np.allclose(looked_up, codes["GoldsteinScale"].to_numpy(), equal_nan=True)
    shuffled = gdelt[copula.columns].apply(lambda c: c.sample(frac=1, random_state=hash(c.name) % 1000).to_numpy())
    ours = synthetic_quality(gdelt, synthetic, numeric=[*spec.numeric, "AvgTone"], categorical=spec.categorical)
    independent = synthetic_quality(gdelt, shuffled, numeric=[*spec.numeric, "AvgTone"], categorical=spec.categorical)
    report = ours.to_dict()
    assert report["mean_ks"] < 0.02 and report["mean_tvd"] < 0.03  # every margin kept
    # The dependence between columns is what a copula adds over sampling each column alone.
    assert ours.association_error < independent.association_error / 2
    assert ours.detection_auc < independent.detection_auc


def test_label_ordered_categories_keep_what_a_model_learns(gdelt: pd.DataFrame) -> None:
    spec = dataset_spec("gdelt")
    test = gdelt.sample(frac=0.3, random_state=0)
    train = gdelt.drop(test.index)
    labels = (test["AvgTone"] < -5).to_numpy(dtype=int)

    def trained_on(frame: pd.DataFrame) -> float:
        x = _features(frame, spec.categorical, spec.numeric)
        params = {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0}
        booster = lgb.train(params, lgb.Dataset(x, (frame["AvgTone"] < -5).astype(int)), num_boost_round=100)
        x_test = _features(test, spec.categorical, spec.numeric)
        for column in spec.categorical:
            x_test[column] = pd.Categorical(x_test[column], categories=x[column].cat.categories)
        return float(roc_auc_score(labels, booster.predict(x_test)))

    aucs = {}
    for order in ("", "AvgTone"):
        copula = GaussianCopula([*spec.numeric, "AvgTone"], spec.categorical, order_by=order).fit(train)
        aucs[order] = trained_on(copula.sample(len(train), seed=2))
    assert aucs["AvgTone"] > aucs[""] + 0.1 and aucs["AvgTone"] > 0.7  # train on synthetic, test on real


def test_ctgan_fits_and_samples_a_real_table_on_the_cpu(gdelt: pd.DataFrame) -> None:
    assert importlib.util.find_spec("torch") and importlib.util.find_spec("ctgan"), "run ./scripts/ensure-ctgan.sh"
    real = gdelt.head(1000)
    generator = CtganGenerator(["NumMentions", "AvgTone"], ["QuadClass", "EventRootCode"], epochs=5, seed=3)
    sample = generator.fit(real).sample(400, seed=1)
    assert list(sample.columns) == ["NumMentions", "AvgTone", "QuadClass", "EventRootCode"] and len(sample) == 400
    for column in ("QuadClass", "EventRootCode"):  # categories come from the real table only
        assert set(sample[column].dropna().astype(str)) <= set(real[column].dropna().astype(str))
    tone, real_tone = sample["AvgTone"], real["AvgTone"]
    assert tone.between(real_tone.min(), real_tone.max()).mean() >= 0.9  # a few epochs: mostly the real range
    assert abs(tone.median() - real_tone.median()) < real_tone.quantile(0.75) - real_tone.quantile(0.25)
    assert sample.equals(generator.sample(400, seed=1))  # seeded
    with pytest.raises(ConfigError, match="fit"):
        CtganGenerator(["AvgTone"], []).sample(5)


def test_ctgan_without_its_extra_says_how_to_install_it(gdelt: pd.DataFrame, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ctgan", None)  # as if not installed: importing it raises ImportError
    with pytest.raises(ConfigError, match=r"driftpilot\[ctgan\]"):
        CtganGenerator(["AvgTone"], ["QuadClass"], epochs=1).fit(gdelt.head(100))


def test_every_scenario_has_ground_truth_and_a_call() -> None:
    for dataset in ("gdelt", "creditcard"):
        scenarios = library(dataset, batches=20, change=10)
        assert len({s.name for s in scenarios}) == len(scenarios) >= 7
        for scenario in scenarios:
            assert scenario.kind in {"none", "covariate", "prior", "concept", "data_quality"}
            assert (scenario.change is None) == (scenario.kind == "none")
            assert scenario.kind == "none" or scenario.drift is not None or scenario.fault
    with pytest.raises(ConfigError, match="before and after"):
        library("gdelt", batches=10, change=8)


def test_scenarios_are_compared_with_what_driftpilot_detected_and_did(data_dir: Path) -> None:
    reported: list[tuple[int, int]] = []
    results = run_scenarios(
        "creditcard", data_dir, batches=12, change=6, rows=600, rounds=30,
        only=("null", "incremental_prior", "schema_break"), progress=lambda *done: reported.append(done),
    )  # fmt: skip
    assert reported == [(1, 3), (2, 3), (3, 3)]
    by_name = {r.scenario.name: r for r in results}
    assert by_name["null"].false_alarms == 0 and by_name["null"].first_action == "none"
    schema = by_name["schema_break"]
    assert schema.delay == 0 and schema.kinds[5] == "data_quality" and schema.first_action == "none"
    prior = by_name["incremental_prior"]
    # The prior shift is answered by a recalibration first (a 600-row first model may later be
    # retrained for volume: the rows it was not trained on pay for one).
    assert prior.delay is not None and prior.first_action == "recalibrate" and prior.delay <= 2
    assert all(r.correct for r in results)


def test_the_cli_writes_the_robustness_report(data_dir: Path, tmp_path: Path) -> None:
    argv = ["scenarios", "run", "--out", str(tmp_path), "--dataset", "creditcard", "--data", str(data_dir),
            "--batches", "10", "--change", "5", "--rows", "500", "--rounds", "20", "--ctgan-epochs", "3"]  # fmt: skip
    argv += ["--only", "sudden_covariate_V14"]
    assert main(argv) == 0
    document = json.loads((tmp_path / "scenarios.json").read_text())
    (scenario,) = document["creditcard"]["scenarios"]
    assert scenario["name"] == "sudden_covariate_V14" and scenario["change"] == 5
    quality = document["creditcard"]["synthetic_quality"]
    assert set(quality) == {"gaussian_copula", "ctgan"}  # both measured (CTGAN's extra is installed)
    assert all(0.5 <= quality[name]["detection_auc"] <= 1 for name in quality), quality
    assert all(quality[name]["fit_seconds"] >= 0 and quality[name]["sample_seconds"] >= 0 for name in quality)
    assert quality["ctgan"]["fit_seconds"] > quality["gaussian_copula"]["fit_seconds"]  # epochs of a network
    page = (tmp_path / "report.html").read_text()
    assert "sudden_covariate_V14" in page and page.count("data:image/png;base64,") == 1


def test_a_synthetic_feed_is_ingested_validated_and_judged_like_the_real_one(data_dir: Path, tmp_path: Path) -> None:
    from components.common.store import Store
    from components.ingest.core import DirectorySource, ingest
    from components.quality.core import check_batch

    exports = sorted((data_dir / "gdelt").glob("20241022*.export.CSV"))[:4]
    data = tmp_path / "data" / "gdelt"
    data.mkdir(parents=True)
    for path in exports:
        (data / path.name).symlink_to(path)
    argv = ["synth-feed", "--out", str(tmp_path / "feed"), "--days", str(6 / 96), "--rows", "400"]
    assert main([*argv, "--data", str(tmp_path / "data"), "--start", "2030-01-01T00:00:00"]) == 0
    files = sorted((tmp_path / "feed").glob("*.export.CSV"))
    assert [f.name[:14] for f in files] == [f"2030010100{m:02d}00" for m in (0, 15, 30, 45)] + [
        "20300101010000",
        "20300101011500",
    ]
    store = Store(str(tmp_path / "lake"))
    summary = ingest(DirectorySource(str(tmp_path / "feed")), store, workers=0)
    assert summary.count("ingested") == 6 and summary.rows == 6 * 400  # every row parsed, none quarantined
    report = check_batch(store, "20300101011500")
    assert report.verdict == "ok", report.summary()  # cadence, volume, nulls, ids, staleness as GDELT's own
