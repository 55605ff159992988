"""The registry on a real ``mlflow server`` whose artifacts live on a real MinIO server.

A champion, a better and a deliberately worse challenger go through the gate; lineage is read
back from each version; the champions' history is kept and a rollback restores the previous
one; then the object store and the tracking server are stopped in turn and registration (and a
rollback) must retry, fail with a clear error, and leave neither a version nor a moved alias.
"""

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common.errors import ModelRegistryError
from components.common.retry import RetryPolicy
from components.common.storage import write_table
from components.common.store import Store
from components.gate.core import gate_files
from components.register.core import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION,
    Lineage,
    champion_history,
    fetch_previous_champion,
    find_alias,
    lineage_of,
    promote,
    record_gate,
    record_rollback_verdict,
    register_model,
    rollback,
    set_alias,
)
from components.train.core import TrainConfig, train_files
from components.train.model import TrainedModel
from tests.servers import MinioServer, MlflowServer, run_minio, run_mlflow

pytestmark = pytest.mark.integration

MODEL = "gdelt-tone"
FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.2, max_wait_s=0.5)


@dataclass
class Stack:
    minio: MinioServer
    mlflow: MlflowServer
    work: Path
    home: Path
    servers: ExitStack

    def restart(self, server: "AbstractContextManager[MlflowServer]") -> MlflowServer:
        """Start a server that the module's teardown stops."""
        return self.servers.enter_context(server)

    def register(self, name: str, batches: tuple[str, ...], alias: str = CHALLENGER, **lineage: str) -> str:
        ref = register_model(
            tracking_uri=self.mlflow.url,
            artifact_root="",
            experiment=MODEL,
            model_name=MODEL,
            model_dir=self.work / name,
            training_data=[self.work / f"{name}.parquet"],
            lineage=Lineage(source_batches=batches, **lineage),
            alias=alias,
            retry=FAST_RETRY,
        )
        return ref.version


def _s3_env(minio: MinioServer) -> dict[str, str]:
    return {
        "MLFLOW_S3_ENDPOINT_URL": minio.endpoint,
        "AWS_ACCESS_KEY_ID": minio.access_key,
        "AWS_SECRET_ACCESS_KEY": minio.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _store(minio: MinioServer) -> Store:
    return Store("s3://mlflow", minio.s3_options())


def _train(work: Path, name: str, rows: pd.DataFrame) -> None:
    write_table(rows, work / f"{name}.parquet")
    train_files([work / f"{name}.parquet"], MODEL, work / name, TrainConfig(num_boost_round=80, num_threads=1))


@pytest.fixture(scope="module")
def models(validated, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1 on one batch; a better challenger on four; a worse one on labels scrambled across articles."""
    work = tmp_path_factory.mktemp("models")
    _train(work, "v1", validated("20241022130000"))
    more = pd.concat([validated(b) for b in ("20241022130000", "20241022131500", "20241022133000")])
    _train(work, "better", pd.concat([more, validated("20241022134500")], ignore_index=True))
    scrambled = more.copy()
    scrambled["AvgTone"] = np.random.default_rng(0).permutation(scrambled["AvgTone"].to_numpy())
    _train(work, "worse", scrambled)
    write_table(validated("20241022150000"), work / "holdout.parquet")
    return work


@pytest.fixture(scope="module")
def stack(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One MinIO and one tracking server for the module; the tests below stop them in turn, MinIO last."""
    work = tmp_path_factory.mktemp("registry")
    (work / "minio").mkdir()
    with ExitStack() as stack:
        minio = stack.enter_context(run_minio(work / "minio"))
        _store(minio).ensure()
        server = stack.enter_context(run_mlflow(work, artifacts="s3://mlflow/artifacts", env=_s3_env(minio)))
        yield Stack(minio, server, models, work, stack)


def _versions(url: str) -> list[str]:
    from mlflow import MlflowClient

    return sorted(v.version for v in MlflowClient(url).search_model_versions(f"name='{MODEL}'"))


def test_only_a_better_challenger_passes_the_gate_and_moves_the_champion(stack: Stack) -> None:
    url = stack.mlflow.url
    v1 = stack.register("v1", ("20241022130000",), alias=CHAMPION, kfp_run="run-train")
    lineage = lineage_of(tracking_uri=url, model_name=MODEL, version=v1)
    assert lineage["source_batches"] == ["20241022130000"] and lineage["kfp_run"] == "run-train"
    assert lineage["gate"] == "promote" and "first version" in lineage["gate_reason"]
    keys = _store(stack.minio).keys("artifacts")
    assert any(k.endswith("reference/reference.parquet") for k in keys)  # artifacts went to MinIO
    assert any(k.endswith("artifacts/model/booster.txt") for k in keys), keys

    with pytest.raises(ModelRegistryError, match="has a champion"):
        stack.register("better", ("20241022130000",), alias=CHAMPION)
    batches = ("20241022130000", "20241022131500", "20241022133000", "20241022134500")
    worse = stack.register("worse", batches[:3], incident="inc-7", kfp_run="run-9", study="study-9")
    verdict = gate_files(
        stack.work / "v1", stack.work / "worse", stack.work / "holdout.parquet", stack.work / "gate.json"
    )
    assert not verdict.promote and "worse" in verdict.reason
    record_gate(tracking_uri=url, model_name=MODEL, version=worse, verdict=verdict.to_dict())
    with pytest.raises(ModelRegistryError, match="may not become 'champion'"):
        promote(tracking_uri=url, model_name=MODEL, version=worse)
    with pytest.raises(ModelRegistryError, match="only through the promotion gate"):
        set_alias(tracking_uri=url, model_name=MODEL, version=worse, alias=CHAMPION)
    assert find_alias(tracking_uri=url, model_name=MODEL).version == v1  # type: ignore[union-attr]

    better = stack.register("better", batches, incident="inc-8", kfp_run="run-10", study="study-10")
    verdict = gate_files(
        stack.work / "v1", stack.work / "better", stack.work / "holdout.parquet", stack.work / "gate.json"
    )
    assert verdict.promote, verdict.reason
    record_gate(tracking_uri=url, model_name=MODEL, version=better, verdict=verdict.to_dict())
    assert promote(tracking_uri=url, model_name=MODEL, version=better) == v1
    assert find_alias(tracking_uri=url, model_name=MODEL).version == better  # type: ignore[union-attr]

    from mlflow import MlflowClient

    lineage = lineage_of(tracking_uri=url, model_name=MODEL, version=better)
    assert lineage["source_batches"] == list(batches) and lineage["incident"] == "inc-8"
    assert lineage["kfp_run"] == "run-10" and lineage["study"] == "study-10" and lineage["gate"] == "promote"
    run = MlflowClient(url).get_run(lineage["run_id"])
    assert run.data.metrics["gate_auc_p_better"] < 0.05 and run.data.tags["driftpilot.incident"] == "inc-8"
    logged = MlflowClient(url).list_artifacts(lineage["run_id"], "gate")
    assert [a.path for a in logged] == ["gate/verdict.json"]
    assert lineage_of(tracking_uri=url, model_name=MODEL, version=worse)["gate"] == "keep"


def _tags(url: str, version: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return dict(MlflowClient(url).get_model_version(MODEL, version).tags)


def test_the_version_losing_champion_is_the_previous_champion_and_a_rollback_restores_it(
    stack: Stack, tmp_path: Path
) -> None:
    url = stack.mlflow.url
    # The first test made v1 the first champion, then promoted the better challenger over it.
    champion = find_alias(tracking_uri=url, model_name=MODEL)
    previous = find_alias(tracking_uri=url, model_name=MODEL, alias=PREVIOUS_CHAMPION)
    assert champion is not None and previous is not None and previous.version == "1" != champion.version
    history = champion_history(tracking_uri=url, model_name=MODEL)
    assert [(t.version, t.via) for t in history] == [(champion.version, "promote"), ("1", "first version")]
    assert history[0].until == "" and history[1].until == history[0].since > history[1].since
    with pytest.raises(ModelRegistryError, match="moves only with 'champion'"):
        set_alias(tracking_uri=url, model_name=MODEL, version=champion.version, alias=PREVIOUS_CHAMPION)
    # The decision stage gets the previous champion's real model files.
    ref = fetch_previous_champion(tracking_uri=url, model_name=MODEL, model_dir=tmp_path / "previous")
    assert ref == previous
    holdout = pd.read_parquet(stack.work / "holdout.parquet")
    restored = TrainedModel.load(tmp_path / "previous").predict_proba(holdout)
    assert np.allclose(restored, TrainedModel.load(stack.work / "v1").predict_proba(holdout))

    # A rollback verdict for versions the registry does not hold there is refused, nothing recorded.
    stale = {"promote": True, "reason": "stale", "rollback": {"from": "1", "to": champion.version, "gain": 0.1}}
    with pytest.raises(ModelRegistryError, match="the decision is stale"):
        record_rollback_verdict(tracking_uri=url, model_name=MODEL, verdict=stale, retry=FAST_RETRY)
    assert lineage_of(tracking_uri=url, model_name=MODEL, version=champion.version)["gate_reason"] != "stale"

    # A rollback restores the previous champion at once; the version it leaves becomes the previous one.
    assert rollback(tracking_uri=url, model_name=MODEL, reason="inc-9: the champion lost 0.18 AUC") == "1"
    assert find_alias(tracking_uri=url, model_name=MODEL).version == "1"  # type: ignore[union-attr]
    after = find_alias(tracking_uri=url, model_name=MODEL, alias=PREVIOUS_CHAMPION)
    assert after is not None and after.version == champion.version
    tags = _tags(url, "1")
    assert tags["driftpilot.champion_via"] == "rollback" and tags["driftpilot.champion_until"] == ""
    assert json.loads(tags["driftpilot.rollback"]) == {
        "from": champion.version,
        "reason": "inc-9: the champion lost 0.18 AUC",
    }
    history = champion_history(tracking_uri=url, model_name=MODEL)
    assert [(t.version, t.via) for t in history] == [("1", "rollback"), (champion.version, "promote")]
    assert history[1].until == history[0].since

    # Promoting the previous champion again (a rollback released through a canary) is a rollback too.
    assert promote(tracking_uri=url, model_name=MODEL, version=champion.version) == "1"
    assert [(t.version, t.via) for t in champion_history(tracking_uri=url, model_name=MODEL)] == [
        (champion.version, "rollback"),
        ("1", "rollback"),
    ]
    assert find_alias(tracking_uri=url, model_name=MODEL, alias=PREVIOUS_CHAMPION).version == "1"  # type: ignore[union-attr]
    reason = lineage_of(tracking_uri=url, model_name=MODEL, version=champion.version)["gate_reason"]
    assert json.loads(_tags(url, champion.version)["driftpilot.rollback"]) == {"from": "1", "reason": reason}

    # A model whose champion never moved has nothing to roll back to.
    solo = register_model(
        tracking_uri=url,
        artifact_root="",
        experiment="solo",
        model_name="solo",
        model_dir=stack.work / "v1",
        training_data=[stack.work / "v1.parquet"],
        lineage=Lineage(),
        alias=CHAMPION,
        retry=FAST_RETRY,
    )
    with pytest.raises(ModelRegistryError, match="no 'previous-champion'"):
        rollback(tracking_uri=url, model_name="solo", reason="nothing to restore")
    assert find_alias(tracking_uri=url, model_name="solo").version == solo.version  # type: ignore[union-attr]
    assert fetch_previous_champion(tracking_uri=url, model_name="solo", model_dir=tmp_path / "none") is None
    assert TrainedModel.load_optional(tmp_path / "none") is None
    assert [(t.version, t.via) for t in champion_history(tracking_uri=url, model_name="solo")] == [
        (solo.version, "first version")
    ]


def test_with_the_tracking_server_stopped_nothing_moves_and_the_error_says_where(stack: Stack) -> None:
    url = stack.mlflow.url
    champion = find_alias(tracking_uri=url, model_name=MODEL)
    verdict = {"promote": True, "reason": "stands in for a passing gate"}
    v2 = stack.register("better", ("20241022131500",))
    before = _versions(url)
    os.kill(stack.mlflow.pid, signal.SIGTERM)
    time.sleep(1.0)
    with pytest.raises(ModelRegistryError, match=r"could not record the gate's verdict .* after 3 attempts"):
        record_gate(tracking_uri=url, model_name=MODEL, version=v2, verdict=verdict, retry=FAST_RETRY)
    with pytest.raises(ModelRegistryError, match="after 3 attempts"):
        promote(tracking_uri=url, model_name=MODEL, version=v2, retry=FAST_RETRY)
    with pytest.raises(ModelRegistryError, match=r"could not read alias 'champion' .* after 3 attempts"):
        rollback(tracking_uri=url, model_name=MODEL, reason="the server is down", retry=FAST_RETRY)
    with pytest.raises(ModelRegistryError, match=f"could not log a run .*{url}"):
        stack.register("worse", ("20241022131500",))
    port = int(url.rsplit(":", 1)[1])
    stack.mlflow = stack.restart(
        run_mlflow(stack.home, artifacts="s3://mlflow/artifacts", env=_s3_env(stack.minio), port=port)
    )
    assert _versions(url) == before  # the third registration left nothing
    assert find_alias(tracking_uri=url, model_name=MODEL) == champion  # and the rollback moved nothing
    assert lineage_of(tracking_uri=url, model_name=MODEL, version=v2)["gate"] == ""  # no verdict half-written


def test_with_the_object_store_stopped_registration_retries_then_fails_leaving_nothing(stack: Stack) -> None:
    url = stack.mlflow.url
    before, champion = _versions(url), find_alias(tracking_uri=url, model_name=MODEL)
    assert champion is not None
    os.kill(stack.minio.pid, signal.SIGTERM)
    time.sleep(1.0)
    started = time.monotonic()
    with pytest.raises(ModelRegistryError, match=r"could not log a run of 'gdelt-tone' .* after 3 attempts"):
        stack.register("better", ("20241022131500",))
    assert time.monotonic() - started > 0.6  # two backoff waits of 0.2 s and 0.4 s at least
    assert _versions(url) == before  # no half-registered version
    assert find_alias(tracking_uri=url, model_name=MODEL) == champion
