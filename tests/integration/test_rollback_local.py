"""A rollback through the drift-response pipeline (kfp.local): a bad champion, a real batch, the previous champion back.

The registry holds two real models of the same GDELT batches (``rollback_models``): ``sound``, the
first champion, and ``conflict``, trained on the conflict events only and made champion over it
(its passing gate verdict is the fixture's explicit setup call). The pipeline then runs on a
later real batch with its default thresholds and safety policy: the champion has lost against
its record, the previous champion wins back the loss, the strategist proposes ``rollback``, the
policy executes it, and the previous champion goes through the canary on live labelled traffic.
"""

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.deploy.local import read_serving, serve_local, stop_serving
from components.deploy.traffic import TrafficReplayer
from components.ingest.mirror import GdeltMirror
from components.register.core import PREVIOUS_CHAMPION, champion_history, find_alias, lineage_of
from components.serve import payloads
from pipelines.drift_response import drift_response_pipeline
from pipelines.local import init_local, run_pipeline
from pipelines.settings import Settings

pytestmark = pytest.mark.integration

LIVE = "20241022140000"
"""The batch whose rows make the canary's live traffic (labels delivered a second later)."""


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, data_dir: Path):  # type: ignore[no-untyped-def]
    settings = Settings.from_env(home=str(tmp_path_factory.mktemp("home")), data_dir=str(data_dir))
    init_local(settings.pipeline_root)
    yield settings
    stop_serving(settings.serving_dir)


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory, gdelt_dir: Path, rollback_models):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("feed")
    shutil.copy(gdelt_dir / f"{rollback_models.batch}.export.CSV", folder)
    with GdeltMirror(folder) as mirror:
        yield mirror


def test_a_champion_worse_than_its_predecessor_is_rolled_back_through_the_canary(
    settings: Settings,
    feed: GdeltMirror,
    rollback_models,  # type: ignore[no-untyped-def]
    validated,  # type: ignore[no-untyped-def]
    task,  # type: ignore[no-untyped-def]
) -> None:
    name, tracking = settings.model_name, settings.tracking_uri
    sound, bad = rollback_models.register_bad_champion(
        tracking_uri=tracking, artifact_root=settings.artifact_root, model_name=name
    )
    # The bad champion serves, as its release left it.
    served, outcome = serve_local(
        model_name=name, model_uri=f"models:/{name}/{bad}", tracking_uri=tracking, serving_dir=settings.serving_dir
    )
    assert outcome is None and served.routes.stable.version == bad

    live = validated(LIVE).sample(n=600, random_state=0)
    traffic = TrafficReplayer(served.url, name, *payloads.labelled_instances(live, task))
    # The previous champion's mean score is ~0.17 below the bad champion's (that is what is wrong
    # with the champion): the divergence margin is widened so that the canary judges it on errors,
    # latency and log loss on the delayed labels.
    canary = {"steps": [50], "min_requests": 100, "step_timeout_s": 120, "score_margin": 0.3}
    arguments = {**settings.drift_response_arguments(), "source": feed.url, "ingest_workers": 0}
    with traffic:
        result = run_pipeline(
            drift_response_pipeline,
            {**arguments, "batch_id": rollback_models.batch, "evidently": "never", "canary_policy": json.dumps(canary)},
            log_path=settings.logs_dir / "rollback.log",
        )
    assert (result["action"], result["tier"]) == ("rollback", "execute"), result["reason"]
    assert "the model served before scores" in result["reason"] and result["kind"] in {"covariate", "concept"}
    assert result["batch_auc"] < 0.6 < result["baseline_auc"]  # the champion lost against its own record

    # The previous champion passed the rollback's verdict and the canary, and is champion again.
    champion = find_alias(tracking_uri=tracking, model_name=name)
    previous = find_alias(tracking_uri=tracking, model_name=name, alias=PREVIOUS_CHAMPION)
    assert champion is not None and champion.version == sound
    assert previous is not None and previous.version == bad
    lineage = lineage_of(tracking_uri=tracking, model_name=name, version=sound)
    assert lineage["gate"] == "promote" and lineage["gate_reason"].startswith(f"rollback: version {sound} scores +")
    assert lineage["canary"] == "promoted", lineage["canary_reason"]
    tags = MlflowClient(tracking).get_model_version(name, sound).tags
    assert json.loads(tags["driftpilot.rollback"]) == {"from": bad, "reason": lineage["gate_reason"]}
    terms = champion_history(tracking_uri=tracking, model_name=name)
    assert [(t.version, t.via) for t in terms] == [(sound, "rollback"), (bad, "promote")]
    assert terms[1].until == terms[0].since and terms[0].until == ""
    after = read_serving(settings.serving_dir)
    assert after is not None and after.routes.stable.version == sound and after.routes.canary is None

    # The ledger has the decision and its outcome under the incident; the knowledge base learnt it.
    ledger = settings.decisions.ledger
    assert ledger.verify().ok
    story = {e.kind: e.data for e in ledger.story(result["incident"])}
    assert story["decided"]["action"] == "rollback" and story["decided"]["tier"] == "execute"
    assert story["decided"]["run"].startswith("driftpilot-drift-response")
    gated = story["gated"]
    assert (gated["version"], gated["action"], gated["promote"]) == (sound, "rollback", True)
    assert gated["benefit"] > 0.1 and gated["reason"] == lineage["gate_reason"]
    outcomes = settings.decisions.knowledge.outcomes
    assert [(o.incident, o.action) for o in outcomes] == [(result["incident"], "rollback")]
    assert outcomes[0].benefit == pytest.approx(gated["benefit"], abs=1e-6)
