"""The CLI's settings: environment variables ``DRIFTPILOT_*``, overridden by flags, read at run time."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from components.decide.core import DecisionState

__all__ = ["Settings"]

_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where driftpilot keeps its state and which model it manages.

    Attributes:
        home: Root of all local state (``DRIFTPILOT_HOME``, default ``./.driftpilot``).
        data_dir: Real data folder with ``gdelt/`` (``DRIFTPILOT_DATA_DIR``, default ``../shared/data``
            beside the repository).
        tracking_uri: MLflow tracking URI (``DRIFTPILOT_TRACKING_URI``, default SQLite under home).
        artifact_root: MLflow artifact location (``DRIFTPILOT_ARTIFACT_ROOT``, default under home).
        model_name: Registered model name (``DRIFTPILOT_MODEL_NAME``).
        task: Built-in task name or task YAML path (``DRIFTPILOT_TASK``).
        serving_port: Local model server port, 0 for a free one (``DRIFTPILOT_SERVING_PORT``).
        lake_uri: The lake, a local folder or ``s3://bucket/prefix`` (``DRIFTPILOT_LAKE``, default
            ``<home>/lake``; S3 settings as in ``components.common.store``).
        study_storage: Optuna storage of the tuning studies (``DRIFTPILOT_OPTUNA_STORAGE``, default
            a journal file under home).
        canary_policy: JSON object of canary policy fields for releases (``DRIFTPILOT_CANARY_POLICY``,
            default ``{}``: the defaults of ``components.deploy.canary.CanaryPolicy``).
        state_dir: The decision state's folder: audit ledger, approvals, knowledge base,
            incident log (``DRIFTPILOT_STATE_DIR``, default ``<home>/audit``).
    """

    home: Path
    data_dir: Path
    tracking_uri: str
    artifact_root: str
    model_name: str = "gdelt-tone"
    task: str = "gdelt-tone"
    serving_port: int = 0
    lake_uri: str = ""
    study_storage: str = ""
    canary_policy: str = "{}"
    state_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read settings from ``DRIFTPILOT_*`` variables, then apply non-None overrides.

        Args:
            env: The environment (``os.environ`` when None).
            overrides: Field values from flags; None means "not given".

        Returns:
            The settings.
        """
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}
        home = Path(str(given.pop("home", env.get("DRIFTPILOT_HOME", ".driftpilot")))).resolve()
        settings = cls(
            home=home,
            data_dir=Path(env.get("DRIFTPILOT_DATA_DIR", str(_REPO.parent / "shared" / "data"))).resolve(),
            tracking_uri=env.get("DRIFTPILOT_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"),
            artifact_root=env.get("DRIFTPILOT_ARTIFACT_ROOT", str(home / "mlflow" / "artifacts")),
            model_name=env.get("DRIFTPILOT_MODEL_NAME", "gdelt-tone"),
            task=env.get("DRIFTPILOT_TASK", "gdelt-tone"),
            serving_port=int(env.get("DRIFTPILOT_SERVING_PORT", "0")),
            lake_uri=env.get("DRIFTPILOT_LAKE", ""),
            study_storage=env.get("DRIFTPILOT_OPTUNA_STORAGE", f"journal:{home / 'optuna' / 'studies.log'}"),
            canary_policy=env.get("DRIFTPILOT_CANARY_POLICY", "{}"),
            state_dir=env.get("DRIFTPILOT_STATE_DIR", ""),
        )
        if "data_dir" in given:
            given["data_dir"] = Path(str(given["data_dir"])).resolve()
        return replace(settings, **given)  # type: ignore[arg-type]

    @property
    def lake(self) -> str:
        """The lake: raw files, events, manifest, validated batches and quarantine."""
        return self.lake_uri or str(self.home / "lake")

    @property
    def serving_dir(self) -> Path:
        """The local model server's state and logs."""
        return self.home / "serving"

    @property
    def pipeline_root(self) -> Path:
        """kfp.local's artifacts, one folder per run and task."""
        return self.home / "pipeline-root"

    @property
    def decisions(self) -> DecisionState:
        """The audit ledger, approvals, knowledge base and incident log (``home/audit`` by default)."""
        return DecisionState(Path(self.state_dir) if self.state_dir else self.home / "audit")

    @property
    def logs_dir(self) -> Path:
        """Logs of local pipeline runs."""
        return self.home / "logs"

    def drift_response_arguments(self) -> dict[str, object]:
        """Arguments of the drift-response pipeline beyond those the pipelines share."""
        if self.study_storage.startswith("journal:"):
            Path(self.study_storage.removeprefix("journal:")).parent.mkdir(parents=True, exist_ok=True)
        return {
            **self.pipeline_arguments(),
            "study_storage": self.study_storage,
            "canary_policy": self.canary_policy,
            "state_dir": str(self.decisions.folder),
        }

    def pipeline_arguments(self) -> dict[str, object]:
        """Arguments both pipelines share."""
        return {
            "lake_dir": self.lake,
            "tracking_uri": self.tracking_uri,
            "artifact_root": self.artifact_root,
            "serving_dir": str(self.serving_dir),
            "model_name": self.model_name,
            "task": self.task,
            "serving_port": self.serving_port,
        }
