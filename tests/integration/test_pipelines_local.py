"""Both pipelines through kfp.local's SubprocessRunner on three real GDELT batches."""

import json
from pathlib import Path

import pytest
import requests

from components.deploy.core import read_deployment, stop_local
from components.register.core import find_alias
from pipelines.drift_response import drift_response_pipeline
from pipelines.local import init_local, run_pipeline
from pipelines.settings import Settings
from pipelines.training import training_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    settings = Settings.from_env(home=str(tmp_path_factory.mktemp("home")), data_dir=str(data_dir))
    init_local(settings.pipeline_root)
    yield settings
    stop_local(settings.serving_dir)


def test_training_then_drift_response_on_real_batches(settings: Settings, gdelt_dir: Path) -> None:
    arguments = settings.pipeline_arguments()
    run_pipeline(
        training_pipeline,
        {**arguments, "source_paths": [str(gdelt_dir / "20241022130000.export.CSV")]},
        log_path=settings.logs_dir / "training.log",
    )
    champion = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
    assert champion is not None and champion.version == "1" and champion.metrics["auc"] > 0.5
    deployment = read_deployment(settings.serving_dir)
    assert deployment is not None and deployment.model_version == "1"
    assert requests.get(f"{deployment.url}/v2/models/{settings.model_name}/ready", timeout=5).status_code == 200

    # A batch under the normal policy: the champion is measured and the decision explained.
    first = run_pipeline(
        drift_response_pipeline,
        {**arguments, "source_paths": [str(gdelt_dir / "20241022131500.export.CSV")]},
        log_path=settings.logs_dir / "r1.log",
    )
    assert first["batch_id"] == "20241022131500" and first["rows"] == 1725
    assert first["action"] in {"none", "monitor", "retrain"} and first["reason"]
    assert 0.5 < first["batch_auc"] < 1 and first["baseline_auc"] == pytest.approx(champion.metrics["auc"])

    # A policy that always retrains exercises the branch: window, train, challenger, gate.
    second = run_pipeline(
        drift_response_pipeline,
        {
            **arguments,
            "source_paths": [str(gdelt_dir / "20241022133000.export.CSV")],
            "severe_auc_drop": -1.0,
            "evidently": "always",
        },
        log_path=settings.logs_dir / "r2.log",
    )
    assert second["action"] == "retrain"
    challenger = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name, alias="challenger")
    assert challenger is not None and int(challenger.version) >= 2
    now = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
    assert now is not None
    gate = json.loads(next(settings.pipeline_root.rglob("gate-challenger/result")).read_text())
    assert gate["promote"] == (now.version == challenger.version)
    assert read_deployment(settings.serving_dir).model_version == now.version  # type: ignore[union-attr]
    assert "Drifted Columns" in next(settings.pipeline_root.rglob("detect-data-drift/html")).read_text()
    validated = sorted(p.stem for p in (settings.lake_dir / "validated").glob("*.parquet"))
    assert validated == ["20241022130000", "20241022131500", "20241022133000"]
