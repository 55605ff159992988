"""The coordinator: alarms the real drift monitor writes become one run per incident; metrics from the ledger."""

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from components.common.store import Store
from components.decide.coordinator import Coordinator, DeferredLauncher
from components.decide.core import DecisionState
from components.decide.metrics import DecisionCollector
from components.monitor.core import ALARM_PREFIX, InferenceLogMonitor
from pipelines.cli import compile_pipelines
from pipelines.kfp_deploy import deploy, launcher_for_recurring_run
from tests.unit.test_kfp_deploy import REQUIRED, RecordingClient
from tests.unit.test_monitor import Clock, send_scores

T0 = dt.datetime(2024, 10, 22, 13, 0, tzinfo=dt.UTC)


class Runs:
    """A launcher that keeps what it was asked to start (the protocol's other side is tested below)."""

    def __init__(self, fail: bool = False) -> None:
        self.started: list[tuple[str, str]] = []
        self.fail = fail

    def launch(self, *, incident: str, model_name: str) -> str:
        if self.fail:
            raise ConnectionError("KFP API unreachable")
        self.started.append((incident, model_name))
        return f"run-{len(self.started)}"


def _shifts(store: Store, minutes: list[int]) -> None:
    """Real alarms: the monitor's detector sees gdelt-tone's scores jump at each of these minutes."""
    clock = Clock(T0.timestamp())
    monitor = InferenceLogMonitor(store, clock=clock)
    rng = np.random.default_rng(3)
    low = True
    send_scores(monitor, rng.beta(2, 8, 600).tolist(), "warm")
    for k, minute in enumerate(minutes):
        clock.now = T0.timestamp() + 60 * minute
        low = not low
        send_scores(monitor, (rng.beta(2, 8, 600) if low else rng.beta(8, 2, 600)).tolist(), f"s{k}")
        monitor.tick()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "lake")).ensure()


def test_alarms_within_the_cooldown_join_one_incident_and_later_ones_open_another(store: Store, tmp_path: Path) -> None:
    _shifts(store, [1, 11, 150])
    alarms = store.keys(ALARM_PREFIX)
    assert len(alarms) >= 3
    state = DecisionState(tmp_path / "audit")
    runs = Runs()
    coordinator = Coordinator(store, state, runs, cooldown_minutes=60)
    launches = coordinator.poll()
    assert [run[0] for run in runs.started] == ["gdelt-tone-20241022130100", "gdelt-tone-20241022153000"]
    assert [launch.run for launch in launches] == ["run-1", "run-2"] and runs.started[0][1] == "gdelt-tone"
    story = state.ledger.story("gdelt-tone-20241022130100")
    assert [e.kind for e in story][:2] == ["detected", "launched"]
    assert [e.data["joined"] for e in story if e.kind == "detected"][1:] == [True] * (len(story) - 2)
    # A restarted coordinator has seen them all: nothing runs twice.
    assert Coordinator(store, state, runs).poll() == []
    assert len(runs.started) == 2 and state.ledger.verify().ok


def test_an_alarm_whose_run_did_not_start_is_retried(store: Store, tmp_path: Path) -> None:
    _shifts(store, [1])
    state = DecisionState(tmp_path / "audit")
    with pytest.raises(ConnectionError):
        Coordinator(store, state, Runs(fail=True)).poll()
    runs = Runs()
    assert [launch.incident for launch in Coordinator(store, state, runs).poll()] == ["gdelt-tone-20241022130100"]
    # The failed attempt left no trace in the ledger: the incident is detected and launched once.
    assert [e.kind for e in state.ledger.story("gdelt-tone-20241022130100")] == ["detected", "launched"]


def test_a_deferred_launcher_is_built_at_the_first_launch_and_again_after_a_failed_build(
    store: Store, tmp_path: Path
) -> None:
    _shifts(store, [1, 150])
    state = DecisionState(tmp_path / "audit")
    runs, builds = Runs(), []

    def build() -> Runs:
        builds.append(len(builds))
        if len(builds) == 1:
            raise ConnectionError("no recurring run yet")
        return runs

    launcher = DeferredLauncher(build)
    coordinator = Coordinator(store, state, launcher, cooldown_minutes=60)
    assert builds == []  # nothing is reached before an alarm needs a run
    with pytest.raises(ConnectionError):
        coordinator.poll()
    assert [launch.run for launch in coordinator.poll()] == ["run-1", "run-2"]
    assert len(builds) == 2  # built once more after the failure, then kept


def test_other_models_alarms_are_left_alone(store: Store, tmp_path: Path) -> None:
    _shifts(store, [1])
    runs = Runs()
    assert Coordinator(store, DecisionState(tmp_path / "audit"), runs, models=("fraud-detector",)).poll() == []
    assert runs.started == []


def test_on_kfp_an_incident_runs_the_recurring_runs_pipeline_version_with_its_parameters(
    store: Store, tmp_path: Path
) -> None:
    client = RecordingClient()
    deployed = deploy(client, compile_pipelines(tmp_path / "compiled"), params=REQUIRED, service_account="pipeline")
    launcher = launcher_for_recurring_run(client)
    _shifts(store, [1])
    (launch,) = Coordinator(store, DecisionState(tmp_path / "audit"), launcher).poll()
    name, call = client.calls[-1]
    assert name == "run_pipeline" and call["job_name"] == launch.incident == "gdelt-tone-20241022130100"
    target = next(p for p in deployed.pipelines if p.name == "driftpilot-drift-response")
    assert (call["pipeline_id"], call["version_id"]) == (target.pipeline_id, target.version_id)
    assert call["params"] == {**deployed.params, "model_name": "gdelt-tone", "incident": launch.incident,
                              "batch_id": "latest"}  # fmt: skip
    assert call["service_account"] == "pipeline" and launch.run.startswith("run-")


def test_decision_metrics_are_read_from_the_ledger(tmp_path: Path) -> None:
    from components.decide.core import record, respond
    from components.decide.safety import SafetyPolicy
    from tests.unit.test_decide import _signals

    state = DecisionState(tmp_path / "audit")
    registry = CollectorRegistry()
    registry.register(DecisionCollector(state))
    for incident, changes in (("a", {"quality": "incident"}), ("b", {"current": 0.69}), ("c", {"current": 0.68})):
        decision = respond(_signals(incident=incident, **changes), policy=SafetyPolicy(confidence_threshold=0.99))
        record(decision, state.ledger, approvals=state.approvals())
    text = generate_latest(registry).decode()
    samples: dict[str, Any] = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if not line.startswith("#")
    }
    assert samples['driftpilot_incidents_total{kind="data_quality"}'] == 1
    assert samples['driftpilot_incidents_total{kind="concept"}'] == 2
    assert samples['driftpilot_decisions_total{action="retrain",tier="escalate"}'] == 2
    assert samples["driftpilot_approvals_pending"] == 2 and samples["driftpilot_ledger_intact"] == 1
    state.approvals().resolve("a5", approve=True, actor="ops")
    again = generate_latest(registry).decode()
    assert "driftpilot_approvals_pending 1.0" in again
