"""Local canaries end to end: real model servers, the splitter, live traffic of real rows, delayed labels."""

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from components.common.errors import ModelRegistryError
from components.common.storage import write_table
from components.decide.core import DecisionState
from components.deploy._process import terminate
from components.deploy.canary import CanaryPolicy
from components.deploy.core import SERVER_MODULE, read_deployment
from components.deploy.lease import RolloutBusyError
from components.deploy.local import read_serving, serve_local, stop_serving
from components.deploy.release import release_local
from components.deploy.traffic import TrafficReplayer
from components.register.core import find_alias, lineage_of, record_gate
from components.serve import payloads
from components.train.core import TrainConfig
from tests.integration.test_serve import MODEL_NAME, _train_and_register

pytestmark = pytest.mark.integration

POLICY = CanaryPolicy(steps=(20, 50), min_requests=150, interval_s=0.5, step_timeout_s=90)


@dataclass(frozen=True)
class Versions:
    tracking_uri: str
    work: Path
    instances: list[dict[str, Any]]
    labels: list[int]


@pytest.fixture(scope="module")
def versions(validated, task, tmp_path_factory: pytest.TempPathFactory) -> Versions:  # type: ignore[no-untyped-def]
    """v1, v2 and v4 (the same data, other seeds: healthy) and v3 (target sign flipped: degraded)."""
    work = tmp_path_factory.mktemp("canary")
    train = pd.concat([validated("20241022130000"), validated("20241022131500")], ignore_index=True)
    table = write_table(train, work / "train.parquet")
    _train_and_register(work, table, "v1", TrainConfig(num_threads=1, seed=1), "champion")
    _train_and_register(work, table, "v2", TrainConfig(num_threads=1, seed=2), "challenger")
    flipped = train.copy()
    flipped["AvgTone"] = -10.0 - flipped["AvgTone"]  # AvgTone < -5 becomes AvgTone > -5
    flipped_table = write_table(flipped, work / "flipped.parquet")
    _train_and_register(work, flipped_table, "v3", TrainConfig(num_threads=1), "challenger")
    _train_and_register(work, table, "v4", TrainConfig(num_threads=1, seed=4), "challenger")
    instances, labels = payloads.labelled_instances(validated("20241022150000").sample(n=600, random_state=0), task)
    return Versions(tracking_uri=f"sqlite:///{work / 'mlflow.db'}", work=work, instances=instances, labels=labels)


@pytest.fixture(scope="module")
def serving(versions: Versions) -> Iterator[Path]:
    """v1 served straight away (nothing served before)."""
    serving_dir = versions.work / "serving"
    served, outcome = serve_local(
        model_name=MODEL_NAME,
        model_uri=f"models:/{MODEL_NAME}/1",
        tracking_uri=versions.tracking_uri,
        serving_dir=serving_dir,
    )
    assert outcome is None and served.routes.stable.version == "1" and served.routes.canary is None
    yield serving_dir
    stop_serving(serving_dir)


def _canary(versions: Versions, serving_dir: Path, version: str):  # type: ignore[no-untyped-def]
    served = read_serving(serving_dir)
    assert served is not None
    with TrafficReplayer(served.url, MODEL_NAME, versions.instances, versions.labels, concurrency=2, label_delay_s=0.5):
        return serve_local(
            model_name=MODEL_NAME,
            model_uri=f"models:/{MODEL_NAME}/{version}",
            tracking_uri=versions.tracking_uri,
            serving_dir=serving_dir,
            policy=POLICY,
        )


def _decisions(serving_dir: Path, version: str) -> list[dict]:  # type: ignore[type-arg]
    lines = (serving_dir / f"canary-v{version}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_a_healthy_canary_is_stepped_then_promoted(versions: Versions, serving: Path) -> None:
    served, outcome = _canary(versions, serving, "2")
    assert outcome is not None and outcome.promoted, outcome
    assert [d.action for d in outcome.decisions] == ["step", "promote"]
    assert served.routes.stable.version == "2" and served.routes.canary is None
    assert read_deployment(serving / "v1") is None  # the old server was stopped
    recorded = _decisions(serving, "2")
    assert [d["action"] for d in recorded] == ["step", "promote"]
    assert recorded[-1]["canary"]["requests"] >= 2 * POLICY.min_requests
    checks = {c["name"]: c for c in recorded[-1]["checks"]}
    assert {name for name, c in checks.items() if c["status"] == "fail"} == set()
    assert checks["divergence"]["samples"][1] >= 2 * POLICY.min_requests  # scores were compared
    assert checks["log_loss"]["samples"][1] > 0  # and delayed labels arrived
    answer = requests.post(
        f"{served.url}/v1/models/{MODEL_NAME}:predict",
        json={"instances": versions.instances[:1]},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-model-version"] == "2"


def test_a_degraded_canary_is_rolled_back_before_full_traffic(versions: Versions, serving: Path) -> None:
    served, outcome = _canary(versions, serving, "3")
    assert outcome is not None and not outcome.promoted
    assert outcome.verdict.action == "rollback" and outcome.verdict.percent < 100
    failed = {c.name for c in outcome.verdict.checks if c.status == "fail"}
    assert failed & {"divergence", "log_loss"}, outcome.verdict.reason
    assert served.routes.stable.version == "2" and served.routes.canary is None
    assert read_deployment(serving / "v3") is None
    assert _decisions(serving, "3")[-1]["action"] == "rollback"


def test_a_canary_whose_server_dies_is_rolled_back_on_errors(versions: Versions, serving: Path) -> None:
    served = read_serving(serving)
    assert served is not None

    def kill_when_canary_serves() -> None:
        for _ in range(600):
            deployment = read_deployment(serving / "v1")
            routes = read_serving(serving)
            if deployment is not None and routes is not None and routes.routes.canary is not None:
                terminate(deployment.pid, SERVER_MODULE, grace_s=1)
                return
            threading.Event().wait(0.1)

    killer = threading.Thread(target=kill_when_canary_serves)
    killer.start()
    _, outcome = _canary(versions, serving, "1")
    killer.join()
    assert outcome is not None and not outcome.promoted
    assert [c.name for c in outcome.verdict.checks if c.status == "fail"] == ["errors"]
    after = read_serving(serving)
    assert after is not None and after.routes.stable.version == "2" and after.routes.canary is None


def test_a_second_rollout_during_a_canary_is_refused(versions: Versions, serving: Path) -> None:
    errors: list[BaseException] = []

    def second() -> None:
        for _ in range(600):
            routes = read_serving(serving)
            if routes is not None and routes.routes.canary is not None:
                break
            threading.Event().wait(0.1)
        try:
            serve_local(
                model_name=MODEL_NAME,
                model_uri=f"models:/{MODEL_NAME}/3",
                tracking_uri=versions.tracking_uri,
                serving_dir=serving,
            )
        except RolloutBusyError as exc:
            errors.append(exc)

    racer = threading.Thread(target=second)
    racer.start()
    _, outcome = _canary(versions, serving, "3")
    racer.join()
    assert len(errors) == 1 and "another rollout is under way" in str(errors[0])
    assert outcome is not None and not outcome.promoted  # the first rollout ran to its own end


def test_release_canaries_a_gate_passed_version_then_makes_it_champion(versions: Versions, serving: Path) -> None:
    from components.deploy.component import release_challenger

    with pytest.raises(ModelRegistryError, match="has not passed the promotion gate"):
        release_local(tracking_uri=versions.tracking_uri, model_name=MODEL_NAME, version="4", serving_dir=serving)
    record_gate(
        tracking_uri=versions.tracking_uri,
        model_name=MODEL_NAME,
        version="4",
        verdict={"promote": True, "reason": "equivalent, preferred"},
    )
    served = read_serving(serving)
    assert served is not None
    with TrafficReplayer(served.url, MODEL_NAME, versions.instances, versions.labels, label_delay_s=0.5):
        result = release_challenger.python_func(
            tracking_uri=versions.tracking_uri,
            model_name=MODEL_NAME,
            version="4",
            canary_policy=json.dumps({"steps": [50], "min_requests": 150, "interval_s": 0.5}),
            target="local",
            serving_dir=str(serving),
            port=0,
            namespace="",
            image="",
            env_secret="",
            logger_url="",
            holder="test-run",
            incident="20241022150000",
            state_dir="",
        )
    assert result == "promoted"
    # The release's end is on the incident's story (the state beside the serving folder when none is named).
    (released,) = DecisionState.of_pipeline("", str(serving)).ledger.story("20241022150000")
    assert released.kind == "released" and released.actor == "test-run" and released.data["promoted"] is True
    assert released.data["version"] == "4" and released.data["steps"][-1]["action"] == "promote"
    champion = find_alias(tracking_uri=versions.tracking_uri, model_name=MODEL_NAME)
    assert champion is not None and champion.version == "4"
    lineage = lineage_of(tracking_uri=versions.tracking_uri, model_name=MODEL_NAME, version="4")
    assert lineage["canary"] == "promoted" and "no check failed" in lineage["canary_reason"]
