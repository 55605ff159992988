import builtins
import json

import pyarrow as pa
import pytest

from components.common.lake import validated_key
from components.common.store import Store
from components.tune.core import summarize_study
from pipelines.local import init_local, run_pipeline
from pipelines.tuning import tuning_pipeline

pytestmark = pytest.mark.integration

BATCHES = ("20241022130000", "20241022131500", "20241022133000")


def test_two_tuning_workers_share_one_study_within_its_budget(validated, tmp_path) -> None:
    lake = Store(str(tmp_path / "lake"))
    for batch in BATCHES:
        lake.put_table(validated_key(batch), pa.Table.from_pandas(validated(batch), preserve_index=False))
    init_local(tmp_path / "pipeline-root")
    storage = str(tmp_path / "study.log")
    warm = {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 0.9, "lambda_l2": 1.0}
    printer = builtins.print
    outputs = run_pipeline(
        tuning_pipeline,
        {
            "lake_dir": lake.root,
            "batch_id": BATCHES[-1],
            "study_storage": storage,
            "study_name": "tune-test",
            "workers": [0, 1],
            "trials": 6,
            "seconds": 600.0,
            "warm_start": json.dumps(warm),
        },
        log_path=tmp_path / "tuning.log",
    )
    assert builtins.print is printer  # kfp.local's per-task print indentation does not outlive the run
    summary = summarize_study(storage=storage, name="tune-test")
    assert summary.complete + summary.pruned == 6  # the budget, over both worker steps
    assert summary.over_budget == 2  # each worker stopped at the first number past it
    assert json.loads(outputs["Output"]) == summary.best_params
