"""The new routes' wrappers on real artifacts: fetch the previous champion, decide, judge a rollback,
record its outcome; decide an update and continue the champion.

The registry is a real MLflow on SQLite (no server); the models are real (``rollback_models``), and
so is the batch they are judged on.
"""

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Metrics, Model
from mlflow import MlflowClient

from components.common.errors import ModelRegistryError
from components.common.storage import read_json, write_json
from components.decide.component import decide_response, record_outcome
from components.decide.core import DecisionState
from components.drift.core import detect_drift_files
from components.gate.component import gate_rollback
from components.ingest.core import read_export
from components.register.component import fetch_champion
from components.register.core import CHAMPION, Lineage, find_alias, lineage_of, register_model
from components.train.component import update_classifier
from components.train.model import ABSENT_FILE, TrainedModel
from components.validate.core import validate_events


def _fetch(tracking: str, model_name: str, folder: Path) -> tuple[tuple[Any, ...], dict[str, Path]]:
    paths = {name: folder / name for name in ("model", "reference", "baseline", "previous")}
    outputs = fetch_champion.python_func(
        tracking_uri=tracking,
        model_name=model_name,
        model=Model(uri=str(paths["model"])),
        reference=Dataset(uri=str(paths["reference"])),
        baseline=Artifact(uri=str(paths["baseline"])),
        previous=Model(uri=str(paths["previous"])),
    )
    return outputs, paths


def _decide(model_name: str, fetched: dict[str, Path], batch: Path, folder: Path, **settings: Any) -> tuple[Any, ...]:
    """The decide wrapper on the fetched artifacts, a real drift report and an ok quality report."""
    detect_drift_files(
        fetched["reference"],
        batch,
        "gdelt-tone",
        report_path=folder / "drift.json",
        html_path=folder / "drift.html",
        evidently="never",
        model_dir=fetched["model"],
    )
    write_json({"verdict": "ok", "summary": "data quality ok"}, folder / "quality.json")
    arguments: dict[str, Any] = {
        "alpha": 0.01,
        "min_drop": 0.02,
        "severe_drop": 0.08,
        "min_rows": 200,
        "tune_trials": 1,
        **settings,
    }
    return decide_response.python_func(
        model=Model(uri=str(fetched["model"])),
        previous_model=Model(uri=str(fetched["previous"])),
        data=Dataset(uri=str(batch)),
        drift_report=Artifact(uri=str(folder / "drift.json")),
        baseline_scores=Artifact(uri=str(fetched["baseline"])),
        quality_report=Artifact(uri=str(folder / "quality.json")),
        model_name=model_name,
        batch_id="20241022134500",
        incident="",
        state_dir=str(folder / "audit"),
        serving_dir="",
        safety_policy="",
        alert_webhooks="",
        run="run-test",
        investigation=Artifact(uri=str(folder / "investigation.json")),
        decision=Artifact(uri=str(folder / "decision.json")),
        **arguments,
    )


@pytest.fixture(scope="module")
def batch(rollback_models, gdelt_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    table = read_export(gdelt_dir / f"{rollback_models.batch}.export.CSV").table
    assert table is not None
    path = tmp_path_factory.mktemp("batch") / "batch.parquet"
    validate_events(table.to_pandas()).valid.to_parquet(path)
    return path


def test_without_a_previous_champion_nothing_is_rolled_back_and_an_update_continues_the_champion(
    rollback_models,  # type: ignore[no-untyped-def]
    batch: Path,
    tmp_path: Path,
) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = register_model(
        tracking_uri=tracking,
        artifact_root=str(tmp_path / "artifacts"),
        experiment="alone",
        model_name="alone",
        model_dir=rollback_models.folder / "conflict",
        training_data=[rollback_models.folder / "conflict.parquet"],
        lineage=Lineage(),
        alias=CHAMPION,
    )
    (version, _, _, previous_version), fetched = _fetch(tracking, "alone", tmp_path)
    assert (version, previous_version) == (first.version, "")
    assert (fetched["previous"] / ABSENT_FILE).exists() and TrainedModel.load_optional(fetched["previous"]) is None
    # The bad model has lost against its record (0.18 AUC), but there is nothing to roll back to;
    # with updates preferred for losses below 0.5 the champion is to be continued.
    route, action, reason, *_ = _decide("alone", fetched, batch, tmp_path, prefer_update=True, severe_drop=0.5)
    decision = read_json(tmp_path / "decision.json")
    assert decision["investigation"]["loss"] and decision["investigation"]["rollback_gain"] is None
    assert (route, action) == ("update", "update"), reason

    # The update route's step continues the fetched champion's trees on new rows.
    auc = update_classifier.python_func(
        champion=Model(uri=str(fetched["model"])),
        data=Dataset(uri=str(batch)),
        seed=42,
        model=Model(uri=str(tmp_path / "updated")),
        metrics=Metrics(uri=str(tmp_path / "metrics")),
    )
    champion, updated = TrainedModel.load(fetched["model"]), TrainedModel.load(tmp_path / "updated")
    assert updated.booster.num_trees() > champion.booster.num_trees() and 0.5 < auc <= 1
    assert read_json(tmp_path / "updated" / "params.json")["incremental"] is True


def test_the_previous_champion_is_fetched_scored_and_its_rollback_judged_and_learnt(
    rollback_models,  # type: ignore[no-untyped-def]
    batch: Path,
    tmp_path: Path,
) -> None:
    tracking, name = f"sqlite:///{tmp_path / 'mlflow.db'}", "gdelt-tone"
    sound, bad = rollback_models.register_bad_champion(
        tracking_uri=tracking, artifact_root=str(tmp_path / "artifacts"), model_name=name
    )
    (version, _, _, previous_version), fetched = _fetch(tracking, name, tmp_path)
    assert (version, previous_version) == (bad, sound) and not (fetched["previous"] / ABSENT_FILE).exists()
    previous = TrainedModel.load_optional(fetched["previous"])
    original = TrainedModel.load(rollback_models.folder / "sound")
    rows = pd.read_parquet(batch)
    assert previous is not None and (previous.predict_proba(rows) == original.predict_proba(rows)).all()

    route, action, reason, kind, tier, incident, trials, _ = _decide(name, fetched, batch, tmp_path)
    decision = read_json(tmp_path / "decision.json")
    gain = decision["investigation"]["rollback_gain"]
    assert (route, action, tier, trials) == ("rollback", "rollback", "execute", 1), reason
    assert gain > 0.1 and "served before scores" in reason and incident == f"{name}-20241022134500"
    assert kind in ("covariate", "concept")  # a loss with a cause, not a prior shift or bad data

    # The verdict is the gate's for this release: recorded on the previous champion's version.
    promote, why = gate_rollback.python_func(
        decision=Artifact(uri=str(tmp_path / "decision.json")),
        tracking_uri=tracking,
        model_name=name,
        champion_version=bad,
        version=sound,
        result=Artifact(uri=str(tmp_path / "verdict.json")),
    )
    assert promote and why.startswith(f"rollback: version {sound} scores +0.")
    lineage = lineage_of(tracking_uri=tracking, model_name=name, version=sound)
    assert lineage["gate"] == "promote" and lineage["gate_reason"] == why
    logged = MlflowClient(tracking).list_artifacts(lineage["run_id"], "gate")
    assert [a.path for a in logged] == ["gate/rollback.json"]
    assert MlflowClient(tracking).get_run(lineage["run_id"]).data.metrics["gate_rollback_gain"] == pytest.approx(gain)

    # Its benefit is the decision's measured gain, in the knowledge base and the ledger.
    benefit = record_outcome.python_func(
        decision=Artifact(uri=str(tmp_path / "decision.json")),
        gate_result=Artifact(uri=str(tmp_path / "verdict.json")),
        state_dir=str(tmp_path / "audit"),
        serving_dir="",
        version=sound,
    )
    assert benefit == pytest.approx(gain)
    state = DecisionState(tmp_path / "audit")
    story = {e.kind: e.data for e in state.ledger.story(incident)}
    assert story["decided"]["action"] == "rollback" and story["decided"]["tier"] == "execute"
    assert story["gated"] == {
        "version": sound,
        "action": "rollback",
        "promote": True,
        "benefit": pytest.approx(gain),
        "reason": why,
    }
    assert [(o.action, o.benefit) for o in state.knowledge.outcomes] == [("rollback", pytest.approx(gain, abs=1e-6))]

    # A verdict for versions the registry no longer holds in those places is refused, unrecorded.
    with pytest.raises(ModelRegistryError, match="the decision is stale"):
        gate_rollback.python_func(
            decision=Artifact(uri=str(tmp_path / "decision.json")),
            tracking_uri=tracking,
            model_name=name,
            champion_version=sound,
            version=bad,
            result=Artifact(uri=str(tmp_path / "stale.json")),
        )
    assert lineage_of(tracking_uri=tracking, model_name=name, version=bad)["gate_reason"].startswith("test setup")
    assert find_alias(tracking_uri=tracking, model_name=name).version == bad  # type: ignore[union-attr]
