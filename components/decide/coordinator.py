"""The coordinator: online drift alarms in, drift-response runs out, one per incident.

The drift monitor writes each online detector alarm on a served model's inference log to the
lake (``drift-alarms/date=YYYYMMDD/HHMMSS-<model>-<id>.json``). The coordinator polls for alarms
it has not seen, oldest first. An alarm for a model with an open incident younger than the
cooldown joins that incident (``detected``, ``joined``); any other alarm opens an incident,
``<model>-<YYYYMMDDHHMMSS>`` at the alarm's time, and starts one drift-response run for it
through a ``Launcher``: the KFP API (the pipeline version ``kfp-deploy`` uploaded, the run named
after the incident) or ``kfp.local``. The run carries the incident's id into its decision, the
Optuna study, MLflow tags and the InferenceService's annotations. Runs started by the
recurring schedule go on beside it.

What the coordinator has seen and which incidents are open are kept in the decision folder
(``coordinator.json``), so a restarted coordinator neither launches twice nor misses an alarm.
An alarm is marked seen, and entered in the ledger, only after its run was started: a launch that
fails is retried at the next poll. On KFP the launcher is built at the first launch
(``DeferredLauncher``), so the coordinator starts, and serves its metrics, before the KFP API or
the recurring run it copies exists (the release's deploy hook creates that run after the
coordinator is ready).
"""

import datetime as dt
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from components.common.store import Store
from components.decide.core import DecisionState
from components.monitor.core import ALARM_PREFIX

__all__ = ["Coordinator", "DeferredLauncher", "KfpLauncher", "Launch", "Launcher", "LocalLauncher"]


class Launcher(Protocol):
    """Starts a drift-response run for an incident."""

    def launch(self, *, incident: str, model_name: str) -> str:
        """Start the run; return its id."""


@dataclass(frozen=True)
class Launch:
    """A run the coordinator started.

    Attributes:
        incident: The incident's id.
        model_name: The registered model.
        run: The run's id.
        alarm: The lake key of the alarm that opened the incident.
    """

    incident: str
    model_name: str
    run: str
    alarm: str


def _model_name(model: str) -> str:
    """The registered model of an alarm's ``<namespace>/<InferenceService>`` (named after the model)."""
    return model.rsplit("/", 1)[-1]


class Coordinator:
    """Turns alarms into runs, deduplicated per incident.

    Args:
        store: The lake the monitor writes alarms to.
        state: The decision folder (ledger, and the coordinator's own state).
        launcher: What starts runs.
        cooldown_minutes: Alarms of a model within this long of its open incident join it.
        models: Only alarms of these registered models are acted on (empty: every model).
    """

    def __init__(
        self,
        store: Store,
        state: DecisionState,
        launcher: Launcher,
        *,
        cooldown_minutes: float = 60.0,
        models: tuple[str, ...] = (),
    ) -> None:
        self.store = store
        self.state = state
        self.launcher = launcher
        self.cooldown = dt.timedelta(minutes=cooldown_minutes)
        self.models = models
        self.path = state.folder / "coordinator.json"

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"seen": [], "open": {}}
        data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def _save(self, data: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def poll(self) -> list[Launch]:
        """Act on every alarm not seen before.

        Returns:
            The runs started.
        """
        data = self._load()
        seen = set(data["seen"])
        launches = []
        ledger = self.state.ledger
        for key in sorted(k for k in self.store.keys(ALARM_PREFIX) if k.endswith(".json") and k not in seen):
            record = self.store.get_json(key)
            model_name = _model_name(str(record["model"]))
            if self.models and model_name not in self.models:
                seen.add(key)
                continue
            at = dt.datetime.fromisoformat(str(record["detected_at"]))
            alarm = {"alarm": key, "model": record["model"], "endpoint": record.get("endpoint", ""),
                     "detector": record.get("detector"), "mean_before": record.get("mean_before"),
                     "mean_after": record.get("mean_after")}  # fmt: skip
            current = data["open"].get(model_name)
            if current and at - dt.datetime.fromisoformat(current["opened"]) < self.cooldown:
                current["alarms"] += 1
                ledger.append(incident=current["incident"], kind="detected", data={**alarm, "joined": True})
            else:
                incident = f"{model_name}-{at:%Y%m%d%H%M%S}"
                run = self.launcher.launch(incident=incident, model_name=model_name)
                ledger.append(incident=incident, kind="detected", data={**alarm, "joined": False})
                ledger.append(incident=incident, kind="launched", data={"run": run, "model": model_name})
                data["open"][model_name] = {"incident": incident, "opened": at.isoformat(), "alarms": 1, "run": run}
                launches.append(Launch(incident, model_name, run, key))
            seen.add(key)
            data["seen"] = sorted(seen)
            self._save(data)
        self._forget(data)
        return launches

    def _forget(self, data: dict[str, Any]) -> None:
        """Drop seen keys of days a week before the newest alarm's (keys sort by day; alarms come in order).

        Reckoned from the alarms' own times, not the clock: an alarm is never run twice because
        the coordinator ran late.
        """
        if data["seen"]:
            newest = dt.datetime.strptime(max(data["seen"]).split("date=", 1)[1][:8], "%Y%m%d")
            oldest = f"{ALARM_PREFIX}/date={newest - dt.timedelta(days=7):%Y%m%d}"
            data["seen"] = [k for k in data["seen"] if k >= oldest]
            self._save(data)


class KfpLauncher:
    """Starts runs on the KFP API, of the pipeline version ``kfp-deploy`` uploaded.

    Args:
        client: A ``kfp.Client``.
        experiment_id: The experiment the runs go to.
        pipeline_id: The drift-response pipeline.
        version_id: Its version.
        params: The run's parameters (the recurring run's); ``incident`` is added per run.
        service_account: The pods' service account ('' for KFP's default).
    """

    def __init__(
        self,
        client: Any,
        *,
        experiment_id: str,
        pipeline_id: str,
        version_id: str,
        params: Mapping[str, Any],
        service_account: str = "",
    ) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.pipeline_id = pipeline_id
        self.version_id = version_id
        self.params = dict(params)
        self.service_account = service_account

    def launch(self, *, incident: str, model_name: str) -> str:
        """Start a run named after the incident; return its id."""
        run = self.client.run_pipeline(
            experiment_id=self.experiment_id,
            job_name=incident,
            params={**self.params, "model_name": model_name, "incident": incident, "batch_id": "latest"},
            pipeline_id=self.pipeline_id,
            version_id=self.version_id,
            service_account=self.service_account or None,
        )
        return str(run.run_id)


class DeferredLauncher:
    """A launcher built when the first run is launched, and built again at the next launch if building failed.

    Args:
        build: Makes the launcher (e.g. finds the recurring run on the KFP API); it may raise while
            what it needs is not there yet.
    """

    def __init__(self, build: Callable[[], Launcher]) -> None:
        self._build = build
        self._launcher: Launcher | None = None

    def launch(self, *, incident: str, model_name: str) -> str:
        """Build the launcher if it is not built yet, then start the run; return its id."""
        if self._launcher is None:
            self._launcher = self._build()
        return self._launcher.launch(incident=incident, model_name=model_name)


class LocalLauncher:
    """Runs the drift response with ``kfp.local`` in this process (the one-machine default).

    Args:
        run: Runs the pipeline with its arguments and returns its outputs
            (``pipelines.local.run_pipeline`` bound to the drift-response pipeline).
        arguments: The run's arguments; ``incident`` and ``model_name`` are added per run.
    """

    def __init__(self, run: Callable[[dict[str, Any]], Mapping[str, Any]], arguments: Mapping[str, Any]) -> None:
        self.run = run
        self.arguments = dict(arguments)

    def launch(self, *, incident: str, model_name: str) -> str:
        """Run to the end; return the incident (a local run has no other id)."""
        self.run({**self.arguments, "model_name": model_name, "incident": incident, "batch_id": "latest"})
        return incident
