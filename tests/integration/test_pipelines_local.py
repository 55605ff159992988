"""Both pipelines through kfp.local's SubprocessRunner on three real GDELT batches."""

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from components.common.store import Store
from components.deploy.local import read_serving, stop_serving
from components.deploy.traffic import TrafficReplayer
from components.ingest.mirror import GdeltMirror
from components.monitor.core import InferenceLogMonitor
from components.register.core import find_alias, lineage_of
from components.serve import payloads
from pipelines.cli import main
from pipelines.drift_response import drift_response_pipeline
from pipelines.local import init_local, run_pipeline
from pipelines.settings import Settings
from pipelines.training import training_pipeline
from tests.unit.test_monitor import Clock, send_scores

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):
    settings = Settings.from_env(home=str(tmp_path_factory.mktemp("home")), data_dir=str(data_dir))
    init_local(settings.pipeline_root)
    yield settings
    stop_serving(settings.serving_dir)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory, gdelt_dir: Path):
    """A GDELT mirror of three real batches and a fourth that re-publishes the first one's events."""
    folder = tmp_path_factory.mktemp("feed")
    for batch in BATCHES:
        (folder / f"{batch}.export.CSV").write_bytes((gdelt_dir / f"{batch}.export.CSV").read_bytes())
    stale = (gdelt_dir / "20241022130000.export.CSV").read_bytes().replace(b"\t043\t", b"\t042\t", 1)
    (folder / "20241022134500.export.CSV").write_bytes(stale)
    with GdeltMirror(folder) as mirror:
        yield mirror


BATCHES = ("20241022130000", "20241022131500", "20241022133000")


def test_training_then_drift_response_on_real_batches(
    settings: Settings,
    feed: GdeltMirror,
    validated,
    task,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arguments = {**settings.pipeline_arguments(), "source": feed.url, "ingest_workers": 0}
    run_pipeline(
        training_pipeline,
        {**arguments, "since": BATCHES[0], "until": BATCHES[0]},
        log_path=settings.logs_dir / "training.log",
    )
    champion = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
    assert champion is not None and champion.version == "1" and champion.metrics["auc"] > 0.5
    served = read_serving(settings.serving_dir)
    assert served is not None and served.routes.stable.version == "1" and served.routes.canary is None
    assert requests.get(f"{served.url}/v2/models/{settings.model_name}/ready", timeout=5).status_code == 200

    # A batch under the normal policy: the champion is measured and the decision explained.
    arguments = {**settings.drift_response_arguments(), "source": feed.url, "ingest_workers": 0}
    first = run_pipeline(
        drift_response_pipeline,
        {**arguments, "batch_id": BATCHES[1]},
        log_path=settings.logs_dir / "r1.log",
    )
    assert first["batch_id"] == "20241022131500" and first["rows"] == 1725
    assert first["action"] in {"none", "monitor", "recalibrate", "retrain"} and first["reason"]
    assert first["incident"] == f"{settings.model_name}-20241022131500" and first["tier"] in {"execute", "monitor"}
    assert 0.5 < first["batch_auc"] < 1 and first["baseline_auc"] == pytest.approx(champion.metrics["auc"])

    # A champion trained on one batch is data-starved: the rows of the two batches since add to
    # the value of retraining for volume. A cheap retrain (retrain_cost 0.005 metric-batches), a
    # "severe" threshold and a safety policy that executes any proposal at once exercise the
    # retrain branch: window, a tuned study, train, challenger, gate, and (when the gate passes
    # an equivalent challenger) a canary under live traffic with labels.
    live = validated(BATCHES[2]).sample(n=500, random_state=0)
    traffic = TrafficReplayer(served.url, settings.model_name, *payloads.labelled_instances(live, task))
    with traffic:
        second = run_pipeline(
            drift_response_pipeline,
            {
                **arguments,
                "batch_id": BATCHES[2],
                "alpha": 0.999,
                "min_drop": -1.0,
                "severe_drop": -1.0,
                "safety_policy": "{confidence_threshold: 0.0, cooldown_minutes: 0, retrain_cost: 0.005}",
                "evidently": "always",
                "tune_trials": 4,
                "prefer_challenger": True,
                "canary_policy": json.dumps({"steps": [50], "min_requests": 100, "step_timeout_s": 120}),
            },
            log_path=settings.logs_dir / "r2.log",
        )
    assert second["action"] == "retrain_tune" and second["tier"] == "execute", second["reason"]
    decisions = [json.loads(p.read_text()) for p in settings.pipeline_root.rglob("decide-response/decision")]
    (value,) = [d["value"] for d in decisions if d["incident"] == second["incident"]]
    assert value["retrain"] and value["regime"] == "volume" and value["volume"] > 0 and value["rows_ratio"] > 2
    assert "volume retrain" in second["reason"] and "expected gain" in second["reason"]
    # The retrain was tried: the evidence kept for the champion it was decided for is spent.
    kept = json.loads((settings.decisions.folder / "value" / f"{settings.model_name}.json").read_text())
    assert kept["version"] == "1" and kept["state"]["volume_shortfall"] == 0.0
    challenger = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name, alias="challenger")
    assert challenger is not None and int(challenger.version) >= 2
    now = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
    assert now is not None
    gate = json.loads(next(settings.pipeline_root.rglob("gate-challenger/result")).read_text())
    # The challenger's lineage and the gate's verdict are read back from MLflow.
    lineage = lineage_of(tracking_uri=settings.tracking_uri, model_name=settings.model_name, version=challenger.version)
    assert lineage["source_batches"] == list(BATCHES[:3]) and lineage["incident"] == second["incident"]
    assert lineage["kfp_run"].startswith("driftpilot-drift-response") and lineage["study"] == second["incident"]
    assert lineage["gate"] == ("promote" if gate["promote"] else "keep") and lineage["gate_reason"] == gate["reason"]
    # A challenger the gate passed went through a canary; it is champion only if the canary promoted it.
    assert lineage["canary"] == (
        "" if not gate["promote"] else "promoted" if now.version == challenger.version else "rolled_back"
    )
    # The canary's end is the last chapter of the incident's story on the ledger.
    released = [e for e in settings.decisions.ledger.story(second["incident"]) if e.kind == "released"]
    if gate["promote"]:
        (entry,) = released
        assert entry.data["version"] == challenger.version and entry.data["steps"]
        assert entry.data["promoted"] == (lineage["canary"] == "promoted") and entry.actor.startswith("driftpilot")
    else:
        assert released == []
    study = json.loads(next(settings.pipeline_root.rglob("select-best-params/summary")).read_text())
    assert study["complete"] + study["pruned"] == 4 and set(study["importance"]) == set(study["best_params"])
    after = read_serving(settings.serving_dir)
    assert after is not None and after.routes.stable.version == now.version and after.routes.canary is None
    pages = [p.read_text() for p in settings.pipeline_root.rglob("detect-data-drift/html")]
    assert pages and all("features drifted" in page and "<svg" in page for page in pages)  # the report's page
    evidently = [p.read_text() for p in settings.pipeline_root.rglob("detect-data-drift/evidently_report")]
    assert len(evidently) == len(pages) and any("Drifted Columns" in page for page in evidently)  # the 2nd run's
    assert all("Drifted Columns" in page or "was not rendered" in page for page in evidently)
    for path in settings.pipeline_root.rglob("detect-data-drift/report"):
        sections = json.loads(path.read_text())["sections"]
        assert sections["model"]["rows"]["current"] > 1000 and "estimated" in sections["model"]
        assert 0.0 <= sections["multivariate"]["auc"] <= 1.0
    validated = sorted(p.stem for p in (Path(settings.lake) / "validated").glob("*.parquet"))
    assert validated == list(BATCHES)

    # The served model's scores jump: the monitor's online detector writes an alarm to the lake,
    # and the coordinator starts a run for that incident. Its newest batch is an old one served
    # again: a data-quality incident, never drift.
    monitor = InferenceLogMonitor(Store(settings.lake), clock=Clock())
    rng = np.random.default_rng(0)
    send_scores(monitor, rng.beta(2, 8, 600).tolist(), "before")
    send_scores(monitor, rng.beta(8, 2, 600).tolist(), "after")
    monitor.tick()
    monkeypatch.setenv("DRIFTPILOT_HOME", str(settings.home))
    assert main(["coordinate", "--once", "--source", feed.url, "--model", settings.model_name]) == 0
    assert main(["coordinate", "--once", "--source", feed.url]) == 0  # the alarm is not run twice
    ledger = settings.decisions.ledger
    (launched,) = [e for e in ledger.entries() if e.kind == "launched"]
    third = launched.incident
    assert third.startswith(f"{settings.model_name}-20241022")
    story = {e.kind: e.data for e in ledger.story(third)}
    assert story["investigated"]["kind"] == "data_quality" and story["decided"]["action"] == "none"
    assert "staleness" in story["decided"]["reason"] and "not drift" in story["decided"]["reason"]
    # Every decision is in the audit ledger, chained, under its incident.
    assert ledger.verify().ok
    decided = [e.data for e in ledger.entries() if e.kind == "decided"]
    assert [d["incident"] for d in decided] == [first["incident"], second["incident"], third]
    assert all(d["run"].startswith("driftpilot-drift-response") for d in decided)  # the KFP run beside the incident
    gated = [e for e in ledger.entries() if e.kind == "gated"]
    assert [e.incident for e in gated] == [second["incident"]] and gated[0].data["version"] == challenger.version
    knowledge = settings.decisions.knowledge.outcomes
    assert [(o.incident, o.action) for o in knowledge] == [(second["incident"], "retrain_tune")]
    assert (Path(settings.lake) / "quarantine" / "20241022134500" / "quality.json").exists()
    assert not list((Path(settings.lake) / "events" / "batch=20241022134500").glob("*.parquet"))
