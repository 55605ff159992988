"""The demo's release drill: two challengers through the gate and a live canary, one of them faulty.

Both challengers retrain the champion's recipe on its own batches with another seed, so the gate
(run on later batches, ``prefer_challenger``) judges them equivalent. Each is then released
through ``release_local``, the path every promotion takes, while real rows of a later batch
are sent to the serving URL and their labels follow a second later. The first canary is healthy
and is promoted. The second one's server is killed once its canary takes traffic, a fault that
no offline check can see, and the canary analysis rolls it back on errors.
"""

import threading
import time
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from components.common.errors import ConfigError
from pipelines.settings import Settings

__all__ = ["run_release_drill"]


def _say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


def _kill_canary_when_live(serving_dir: Path, version: str, done: threading.Event) -> None:
    """Fault injection: stop the canary's model server as soon as it takes traffic."""
    from components.deploy._process import terminate
    from components.deploy.core import SERVER_MODULE, read_deployment
    from components.deploy.local import read_serving

    while not done.wait(0.1):
        served = read_serving(serving_dir)
        deployment = read_deployment(serving_dir / f"v{version}")
        if served and served.routes.canary and served.routes.canary.version == version and deployment:
            terminate(deployment.pid, SERVER_MODULE, grace_s=1)
            return


def run_release_drill(settings: Settings, train: list[str], later: list[str], out: TextIO) -> list[dict[str, Any]]:
    """Release a healthy and a faulty challenger through the gate and a live canary.

    Args:
        settings: The demo's settings (its lake, registry and serving folder).
        train: The champion's training batches (the challengers train on them too).
        later: Batches after them: the gate's holdout and the live traffic.
        out: Where the drill is narrated.

    Returns:
        One record per challenger: version, gate verdict, canary outcome and decisions.

    Raises:
        ConfigError: When a batch's validated table is missing from the lake.
    """
    from components.common.storage import write_table
    from components.common.store import Store
    from components.common.task import load_task
    from components.deploy.canary import CanaryPolicy
    from components.deploy.local import read_serving
    from components.deploy.release import release_local
    from components.deploy.traffic import TrafficReplayer
    from components.gate.core import GatePolicy, gate_files
    from components.ingest.core import read_batch
    from components.register.core import CHALLENGER, Lineage, find_alias, load_model, record_gate, register_model
    from components.serve import payloads
    from components.train.core import TrainConfig, train_files

    task = load_task(settings.task)
    store = Store(settings.lake)
    work = settings.home / "drill"
    work.mkdir(parents=True, exist_ok=True)

    def table(batches: list[str], name: str) -> tuple[Path, pd.DataFrame]:
        frames = [read_batch(store, b).to_pandas() for b in batches]
        if not frames:
            raise ConfigError(f"no validated batches for the drill's {name}")
        frame = pd.concat(frames, ignore_index=True)
        return write_table(frame, work / f"{name}.parquet"), frame

    training, _ = table(train, "train")
    holdout, holdout_rows = table(later[:3], "holdout")
    live = holdout_rows.sample(n=min(600, len(holdout_rows)), random_state=0)
    instances, labels = payloads.labelled_instances(live, task)
    policy = CanaryPolicy(steps=(20, 50), min_requests=150, interval_s=0.5, step_timeout_s=120)
    records = []
    for seed, fault in ((7, False), (8, True)):
        champion = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
        assert champion is not None
        champion_dir = work / f"champion-v{champion.version}"
        champion_uri = f"models:/{settings.model_name}/{champion.version}"
        load_model(tracking_uri=settings.tracking_uri, model_uri=champion_uri, dest=champion_dir).save(
            champion_dir / "model"
        )
        model_dir = work / f"seed-{seed}"
        train_files([training], settings.task, model_dir, TrainConfig(seed=seed, num_threads=1))
        version = register_model(
            tracking_uri=settings.tracking_uri,
            artifact_root=settings.artifact_root,
            experiment="driftpilot-drill",
            model_name=settings.model_name,
            model_dir=model_dir,
            training_data=[training],
            lineage=Lineage(source_batches=tuple(train), kfp_run=f"release-drill-seed-{seed}"),
            alias=CHALLENGER,
        ).version
        gate = gate_files(
            champion_dir / "model", model_dir, holdout, work / f"gate-{seed}.json", GatePolicy(prefer_challenger=True)
        )
        record_gate(
            tracking_uri=settings.tracking_uri, model_name=settings.model_name, version=version, verdict=gate.to_dict()
        )
        what = "a fault: its server is killed once it takes traffic" if fault else "healthy"
        _say(out, f"challenger v{version} (seed {seed}, {what}); gate: {gate.reason}")
        record: dict[str, Any] = {"version": version, "fault": fault, "gate": gate.promote, "gate_reason": gate.reason}
        records.append(record)
        if not gate.promote:
            _say(out, "  not released: the gate keeps the champion")
            continue
        served = read_serving(settings.serving_dir)
        assert served is not None
        done = threading.Event()
        killer = threading.Thread(
            target=_kill_canary_when_live, args=(settings.serving_dir, version, done), daemon=True
        )
        if fault:
            killer.start()
        began = time.perf_counter()
        traffic = TrafficReplayer(served.url, settings.model_name, instances, labels, label_delay_s=1.0).start()
        try:
            outcome = release_local(
                tracking_uri=settings.tracking_uri,
                model_name=settings.model_name,
                version=version,
                serving_dir=settings.serving_dir,
                port=settings.serving_port,
                policy=policy,
            )
        finally:
            done.set()
            counts = traffic.stop()
        assert outcome is not None
        for decision in outcome.decisions:
            checks = ", ".join(f"{c.name} {c.status}" for c in decision.checks)
            _say(out, f"  {decision.percent:>3}% → {decision.action:8} ({checks}) {decision.reason}")
        now = find_alias(tracking_uri=settings.tracking_uri, model_name=settings.model_name)
        _say(
            out,
            f"  canary {'promoted' if outcome.promoted else 'rolled back'} in {time.perf_counter() - began:.0f}s "
            f"under {counts.sent} live requests ({counts.failed} failed, {counts.labelled} labels); "
            f"champion v{now.version if now else '-'}",
        )
        record.update(
            promoted=outcome.promoted, decisions=[d.action for d in outcome.decisions], reason=outcome.verdict.reason
        )
    return records
