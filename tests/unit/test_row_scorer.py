"""The server's pandas-free scoring equals the model's own, on real rows and awkward values."""

import math

import numpy as np
import pandas as pd
import pytest

from components.common.task import load_task
from components.features.core import DERIVED_FEATURES, DERIVED_ROW_FEATURES, input_columns
from components.serve import payloads
from components.serve.model import InputColumn, columns_from_instances
from components.serve.scoring import RowScorer
from components.train.core import TrainConfig, train_model


def _typed(rows: pd.DataFrame, task) -> dict:  # type: ignore[no-untyped-def,type-arg]
    columns = tuple(InputColumn(c, c in task.categorical) for c in input_columns(task))
    return columns_from_instances(payloads.instances(rows[list(input_columns(task))], task), columns)


def test_gdelt_rows_score_exactly_as_the_model_does_including_unseen_empty_and_missing_values(validated) -> None:  # type: ignore[no-untyped-def]
    task = load_task("gdelt-tone")
    model = train_model(validated("20241022130000"), task, TrainConfig(num_threads=1)).model
    rows = validated("20241022150000").head(400).copy()
    rows.loc[rows.index[0], "EventCode"] = None
    rows.loc[rows.index[2], "Actor1CountryCode"] = "never-seen"
    rows.loc[rows.index[3], "SQLDATE"] = np.nan
    rows.loc[rows.index[4], "GoldsteinScale"] = np.nan
    typed = _typed(rows, task)
    typed["ActionGeo_Type"][1] = "  "  # blank: missing, as in training
    fast = RowScorer(model).score(typed, len(rows))
    assert np.array_equal(fast, model.predict_proba(pd.DataFrame(typed)))
    assert np.isfinite(fast).all()


def test_fraud_rows_keep_the_prior_correction() -> None:
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "creditcard"
    frame = pd.read_csv(next(data.glob("creditcard_sample_*.csv"))).rename(columns={"Unnamed: 0": "row"})
    task = load_task("creditcard-fraud")
    model = train_model(frame.iloc[:1300], task, TrainConfig(num_threads=1)).model
    rest = frame.iloc[1300:]
    typed = _typed(rest, task)
    assert model.odds_ratio != 1.0
    assert np.allclose(
        RowScorer(model).score(typed, len(rest)), model.predict_proba(pd.DataFrame(typed)), rtol=0, atol=1e-15
    )


@pytest.mark.parametrize(
    ("sqldate", "dateadded"),
    [
        (20241020, 20241022130000),
        ("20241020", "20241022130000"),
        (20240230, 20241022130000),
        (None, 20241022130000),
        (2024102, 20241022130000),
        (20241022.0, 20241022130000.0),
        ("junk", 20241022130000),
    ],
)
def test_the_row_form_of_a_derived_feature_equals_the_frame_form(sqldate: object, dateadded: object) -> None:
    frame = pd.DataFrame({"SQLDATE": [sqldate], "DATEADDED": [dateadded]})
    expected = float(DERIVED_FEATURES["event_age_days"][1](frame).iloc[0])
    got = DERIVED_ROW_FEATURES["event_age_days"](sqldate, dateadded)
    assert (math.isnan(expected) and math.isnan(got)) or got == expected


def test_a_catboost_model_is_not_taken() -> None:
    task = load_task("gdelt-tone")

    class _Model:
        algorithm = "catboost"

    assert not RowScorer.supports(_Model())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="LightGBM"):
        RowScorer(_Model())  # type: ignore[arg-type]
    assert task.derived == ("event_age_days",)
