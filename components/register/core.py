"""Record models in MLflow: runs with lineage, registered versions, the gate's verdicts and the aliases.

Each registered version carries its training rows' reference sample (the drift stage compares
new batches against the champion's reference), its validation metrics (the decision stage
measures performance drops against them) and its lineage: the batches it was trained on, the
incident that caused it, the KFP run and the Optuna study.

Registration happens in three steps, each retried with backoff when the tracking server or the
object store fails: (1) one run logs everything, artifacts included; (2) one request creates the
version with all its tags (a retry first looks for a version of that run, so none is made
twice), marked ``driftpilot.registration: pending``; (3) the alias is set and the mark removed.
When step 3 finally fails the version is deleted again, so no version is left half-registered;
when even that cannot reach the registry (it went down for good after step 2), the next
registration of the model deletes the version still pending from before.

The ``champion`` alias moves only to a version the promotion gate passed (``record_gate`` then
``promote``), to the first version of a model, or back to the previous champion (``rollback``: a
known-good model, no new verdict needed).

Champions are kept in history. The version that loses ``champion`` gets ``previous-champion``
(the decision stage scores it on each batch: a rollback's worth), and each champion's latest term
is tagged on its version: ``driftpilot.champion_from`` and ``driftpilot.champion_until`` (ISO 8601,
UTC; '' while it serves) and ``driftpilot.champion_via`` (``first version``, ``promote`` or
``rollback``), and a rollback's origin and reason as ``driftpilot.rollback``; ``champion_history``
reads them back, newest first. ``previous-champion`` is moved first and put back when
``champion`` cannot be moved, so a failed promotion leaves both aliases as they were; the tags
are written once both have moved.
"""

import datetime as dt
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from components.common.errors import ModelRegistryError
from components.common.retry import RetryPolicy, retrying
from components.common.storage import read_json, read_table, write_table
from components.drift.profile import PROFILE_FILE
from components.features.core import input_columns
from components.train.model import TrainedModel

__all__ = [
    "CANARY_TAG",
    "CHALLENGER",
    "CHAMPION",
    "PENDING_TAG",
    "PREVIOUS_CHAMPION",
    "ChampionTerm",
    "Lineage",
    "ModelRef",
    "champion_history",
    "fetch_champion",
    "fetch_previous_champion",
    "find_alias",
    "lineage_of",
    "load_model",
    "load_reference",
    "promote",
    "record_canary",
    "record_gate",
    "record_rollback_verdict",
    "register_model",
    "rollback",
    "set_alias",
]

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"
CHAMPION_FROM_TAG = "driftpilot.champion_from"
CHAMPION_UNTIL_TAG = "driftpilot.champion_until"
CHAMPION_VIA_TAG = "driftpilot.champion_via"
ROLLBACK_TAG = "driftpilot.rollback"
REFERENCE_ARTIFACT = "reference/reference.parquet"
GATE_TAG = "driftpilot.gate"
CANARY_TAG = "driftpilot.canary"
PENDING_TAG = "driftpilot.registration"
# A version still pending this long after it was made belongs to a registration whose retries are
# long over: one that failed and could not delete it.
_ABANDONED_AFTER_S = 600.0
PARAMS_FILE = "params.json"
_REFERENCE_ROWS = 50_000
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
# What the registry answers for a model or an alias that does not exist.
_MISSING_CODES = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lineage:
    """Where a model came from, kept as tags on its run and its registered version.

    Attributes:
        source_batches: The batches its training rows came from, oldest first.
        incident: The incident (correlation id) that caused the training ('' for none).
        kfp_run: The KFP run that trained it.
        study: The Optuna study its parameters came from ('' when untuned).
        extra: Further tags.
    """

    source_batches: tuple[str, ...] = ()
    incident: str = ""
    kfp_run: str = ""
    study: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def tags(self) -> dict[str, str]:
        """The lineage as MLflow tags (``driftpilot.*``)."""
        return {
            "driftpilot.source_batches": ",".join(self.source_batches),
            "driftpilot.incident": self.incident,
            "driftpilot.kfp_run": self.kfp_run,
            "driftpilot.study": self.study,
            **self.extra,
        }


@dataclass(frozen=True)
class ModelRef:
    """A registered model version.

    Attributes:
        name: Registered model name.
        version: Version number, as a string like MLflow's.
        run_id: MLflow run that produced it.
        uri: ``models:/<name>/<version>``.
        metrics: Validation metrics logged with the run.
    """

    name: str
    version: str
    run_id: str
    uri: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class ChampionTerm:
    """A version's latest term as champion.

    Attributes:
        version: The version.
        since: When it became champion (ISO 8601, UTC).
        until: When it lost the alias ('' while it is champion).
        via: How it became champion: ``first version``, ``promote`` or ``rollback``.
    """

    version: str
    since: str
    until: str
    via: str


def _client(tracking_uri: str) -> Any:
    import mlflow

    # MLflow's own HTTP retries would wait minutes in silence; ``_retried`` owns the retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri)


def _transient(exc: BaseException) -> bool:
    """A failure to reach the tracking server or the object store, worth another attempt."""
    import requests
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code in _TRANSIENT_CODES
    network = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout)
    return isinstance(exc, (*network, BotoCoreError, S3UploadFailedError))


def _retried(call: Callable[[], T], what: str, policy: RetryPolicy | None) -> T:
    return retrying(call, what=what, error=ModelRegistryError, transient=_transient, policy=policy)


def _experiment_id(client: Any, name: str, artifact_root: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = f"{artifact_root.rstrip('/')}/{name}" if artifact_root else None
    return str(client.create_experiment(name, artifact_location=location))


def _requirements(algorithm: str) -> list[str]:
    """Pinned requirements of the served model: driftpilot and what its pyfunc imports."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("driftpilot", algorithm, "mlflow", "pandas", "numpy", "PyYAML"):
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            continue
    return pins


def _signature_frame(frame: pd.DataFrame, model: TrainedModel) -> pd.DataFrame:
    """Input rows as a caller sends them: categories as strings, numbers as floats."""
    columns = input_columns(model.task)
    example = frame[list(columns)].head(5).copy()
    for column in columns:
        if column in model.task.categorical:
            example[column] = example[column].astype("string").fillna("").astype(str)
        else:
            example[column] = pd.to_numeric(example[column], errors="coerce").astype("float64")
    return example.reset_index(drop=True)


def register_model(
    *,
    tracking_uri: str,
    artifact_root: str,
    experiment: str,
    model_name: str,
    model_dir: Path,
    training_data: list[Path],
    lineage: Lineage,
    alias: str = CHALLENGER,
    retry: RetryPolicy | None = None,
) -> ModelRef:
    """Log a trained model as an MLflow run, register it and point an alias at it.

    Args:
        tracking_uri: MLflow tracking URI (``sqlite:///...`` locally, ``http://...`` in a cluster).
        artifact_root: Artifact location for a new experiment ('' lets the server choose).
        experiment: MLflow experiment name.
        model_name: Registered model name.
        model_dir: Folder from the train stage (model, ``metrics.json``, ``params.json``).
        training_data: Validated tables the model was trained on; a sample becomes the reference.
        lineage: Source batches, incident, KFP run and study (tags on the run and the version).
        alias: Alias to set on the new version: ``challenger``, or ``champion`` for a model's first
            version only (later champions pass the gate: ``record_gate``, ``promote``).
        retry: Attempts and backoff for each step (default: ``RetryPolicy.from_env()``).

    Returns:
        The new version.

    Raises:
        ModelRegistryError: When the model already has a champion and ``alias`` is ``champion``,
            or when a step still fails after its retries (nothing is left registered then).
    """
    client = _client(tracking_uri)
    if alias == CHAMPION and find_alias(tracking_uri=tracking_uri, model_name=model_name) is not None:
        raise ModelRegistryError(
            f"{model_name!r} has a champion: register as {CHALLENGER!r}; the gate promotes it (record_gate, promote)"
        )
    model = TrainedModel.load(model_dir)
    metrics: dict[str, float] = read_json(model_dir / "metrics.json")
    tags = {
        **lineage.tags(),
        "driftpilot.task": model.task.name,
        "driftpilot.algorithm": model.algorithm,
        "driftpilot.metrics": json.dumps(metrics),
    }
    if alias == CHAMPION:
        tags[GATE_TAG] = "promote"
        tags["driftpilot.gate.reason"] = "the model's first version: no champion to compare with"
        tags.update({CHAMPION_FROM_TAG: _now(), CHAMPION_UNTIL_TAG: "", CHAMPION_VIA_TAG: "first version"})

    def log_run() -> tuple[str, str, str]:
        _delete_abandoned(client, model_name)  # first, what failed registrations of the model left
        return _log_run(client, experiment, artifact_root, model, model_dir, training_data, metrics, tags)

    run_id, model_uri, model_id = _retried(log_run, f"log a run of {model_name!r} to {tracking_uri}", retry)
    version = _retried(
        lambda: _create_version(client, model_name, model_uri, run_id, model_id, {**tags, PENDING_TAG: "pending"}),
        f"register a version of {model_name!r} in {tracking_uri}",
        retry,
    )

    def finish() -> None:
        client.set_registered_model_alias(model_name, alias, version)
        client.delete_model_version_tag(model_name, version, PENDING_TAG)

    try:
        _retried(finish, f"point {alias!r} at version {version} of {model_name!r}", retry)
    except ModelRegistryError:
        _delete_version(client, model_name, version)
        raise
    return ModelRef(model_name, version, run_id, f"models:/{model_name}/{version}", metrics)


def _log_run(
    client: Any,
    experiment: str,
    artifact_root: str,
    model: TrainedModel,
    model_dir: Path,
    training_data: list[Path],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> tuple[str, str, str]:
    """One run with parameters, metrics, tags, the reference sample and the model; FAILED if any fails."""
    import mlflow
    from mlflow.models import infer_signature

    from components.register.pyfunc import MODEL_ARTIFACT, DriftpilotPyfunc

    experiment_id = _experiment_id(client, experiment, artifact_root)
    params: dict[str, Any] = read_json(model_dir / PARAMS_FILE)
    frame = pd.concat([read_table(p) for p in training_data], ignore_index=True)
    reference = frame.sample(n=min(len(frame), _REFERENCE_ROWS), random_state=0) if len(frame) else frame
    example = _signature_frame(frame, model)
    signature = infer_signature(example, model.predict_proba(example))
    with mlflow.start_run(experiment_id=experiment_id) as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({k: v for k, v in params.items() if v is not None})
        mlflow.log_metrics({f"valid_{k}": v for k, v in metrics.items() if v == v})
        mlflow.set_tags(tags)
        write_table(reference, Path(tmp) / "reference.parquet")
        mlflow.log_artifact(str(Path(tmp) / "reference.parquet"), artifact_path="reference")
        # MLflow keeps a folder under its own name: copied, it lands at artifacts/model/ whatever it was called.
        folder = shutil.copytree(model_dir, Path(tmp) / MODEL_ARTIFACT)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DriftpilotPyfunc(),
            artifacts={MODEL_ARTIFACT: str(folder)},
            signature=signature,
            input_example=example,
            # Stated, not inferred: inference loads the model in a subprocess and takes seconds.
            pip_requirements=_requirements(model.algorithm),
        )
    return str(run.info.run_id), str(info.model_uri), str(info.model_id)


def _create_version(client: Any, name: str, source: str, run_id: str, model_id: str, tags: dict[str, str]) -> str:
    """Create the version in one request carrying its tags; a retry finds the one already made."""
    from mlflow.exceptions import MlflowException

    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return str(existing[0].version)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, model_id=model_id)
    return str(version.version)


def _delete_abandoned(client: Any, name: str) -> None:
    """Delete the versions that failed registrations left pending (see the module's docstring)."""
    pending = client.search_model_versions(f"name='{name}' and tags.`{PENDING_TAG}` = 'pending'")
    now_ms = dt.datetime.now(dt.UTC).timestamp() * 1000
    for found in pending:
        if now_ms - found.creation_timestamp > _ABANDONED_AFTER_S * 1000:
            log.warning(
                "deleting version %s of %r: its registration failed before it got an alias", found.version, name
            )
            client.delete_model_version(name, found.version)


def _delete_version(client: Any, name: str, version: str) -> None:
    """Remove a version whose alias could not be set; say so when even that fails."""
    try:
        client.delete_model_version(name, version)
    except Exception as exc:  # the server may still be down: the next registration deletes it
        log.error(
            "version %s of %r has no alias and could not be deleted (%s): the model's next registration "
            "deletes it once it has been pending %.0f s, or delete it by hand",
            version, name, exc, _ABANDONED_AFTER_S,
        )  # fmt: skip


def record_gate(
    *, tracking_uri: str, model_name: str, version: str, verdict: dict[str, Any], retry: RetryPolicy | None = None
) -> None:
    """Record the promotion gate's verdict on a version and its run.

    The version gets ``driftpilot.gate`` (``promote`` or ``keep``) and the reason as tags; the
    run gets the gate's numbers as ``gate_*`` metrics and the whole verdict as ``gate/verdict.json``.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The challenger's version.
        verdict: The gate's result (``GateResult.to_dict()``): ``promote`` and ``reason`` at least.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Raises:
        ModelRegistryError: When the verdict cannot be recorded after the retries.
    """
    _record_verdict(_client(tracking_uri), model_name, version, verdict, "gate/verdict.json", retry)


def _record_verdict(
    client: Any, model_name: str, version: str, verdict: dict[str, Any], artifact: str, retry: RetryPolicy | None
) -> None:
    def record() -> None:
        run_id = client.get_model_version(model_name, version).run_id
        numbers = {f"gate_{k}": float(v) for k, v in _flat(verdict).items() if isinstance(v, (int, float))}
        client.log_batch(run_id, metrics=[_metric(k, v) for k, v in numbers.items() if math.isfinite(v)])
        client.log_dict(run_id, verdict, artifact)
        client.set_model_version_tag(model_name, version, "driftpilot.gate.reason", str(verdict["reason"])[:4000])
        # Last: a version counts as passed only once everything above is recorded.
        client.set_model_version_tag(model_name, version, GATE_TAG, "promote" if verdict["promote"] else "keep")

    _retried(record, f"record the gate's verdict on version {version} of {model_name!r}", retry)


def record_rollback_verdict(
    *, tracking_uri: str, model_name: str, verdict: dict[str, Any], retry: RetryPolicy | None = None
) -> None:
    """Record a rollback's verdict on the previous champion, as the gate's verdict of that version.

    A rollback releases the previous champion through the path a challenger takes (a canary,
    then ``promote``), which asks for a passed verdict on the version; the verdict it had is
    from its own promotion, against another champion. This one is the evidence for this release
    (``components.gate.core.judge_rollback``): ``driftpilot.gate`` and its reason are set on the
    version (``promote``, or ``keep`` when the previous champion is not better), the numbers
    logged as ``gate_*`` metrics and the whole verdict as ``gate/rollback.json`` on its run (the
    verdict of its own promotion, ``gate/verdict.json``, is kept).

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        verdict: ``promote``, ``reason`` and ``rollback`` with ``from`` (the champion the decision
            measured) and ``to`` (the previous champion), versions as strings.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Raises:
        ModelRegistryError: When the registry moved since the decision (``champion`` is not
            ``from`` or ``previous-champion`` is not ``to``: nothing is recorded), or when the
            verdict cannot be recorded after the retries.
    """
    client = _client(tracking_uri)
    source, target = str(verdict["rollback"]["from"]), str(verdict["rollback"]["to"])
    champion = _alias_version(client, model_name, CHAMPION, retry)
    previous = _alias_version(client, model_name, PREVIOUS_CHAMPION, retry)
    if (champion, previous) != (source, target):
        raise ModelRegistryError(
            f"a rollback of {model_name!r} from version {source} to {target} was decided, but {CHAMPION!r} is "
            f"{champion or 'unset'} and {PREVIOUS_CHAMPION!r} is {previous or 'unset'} now: the decision is stale, "
            "nothing is recorded"
        )
    _record_verdict(client, model_name, target, verdict, "gate/rollback.json", retry)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}_"))
        elif not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out


def _metric(key: str, value: float) -> Any:
    import time

    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), 0)


def promote(*, tracking_uri: str, model_name: str, version: str, retry: RetryPolicy | None = None) -> str:
    """Point ``champion`` at a version the promotion gate passed; serving follows the alias.

    The version losing ``champion`` becomes ``previous-champion``. Promoting the previous
    champion (a rollback released through a canary, ``record_rollback_verdict``'s verdict on it)
    is recorded as a rollback.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The version to promote.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Returns:
        The version that was champion before ('' when there was none).

    Raises:
        ModelRegistryError: When the gate did not pass the version, or the registry cannot be reached.
    """
    client = _client(tracking_uri)
    tags = _retried(
        lambda: client.get_model_version(model_name, version).tags, f"read version {version} of {model_name!r}", retry
    )
    if tags.get(GATE_TAG) != "promote":
        why = tags.get("driftpilot.gate.reason", "the promotion gate has not judged it")
        raise ModelRegistryError(f"version {version} of {model_name!r} may not become {CHAMPION!r}: {why}")
    previous = _alias_version(client, model_name, CHAMPION, retry) or ""
    if previous and previous != version and _alias_version(client, model_name, PREVIOUS_CHAMPION, retry) == version:
        record = {"from": previous, "reason": tags.get("driftpilot.gate.reason", "")[:2000]}
        _crown(client, model_name, version, previous, "rollback", {ROLLBACK_TAG: json.dumps(record)}, retry)
    else:
        _crown(client, model_name, version, previous, "promote", {}, retry)
    return previous


def rollback(*, tracking_uri: str, model_name: str, reason: str, retry: RetryPolicy | None = None) -> str:
    """Point ``champion`` back at the previous champion, straight away (no canary, no new verdict).

    The previous champion served until the current one replaced it: a known-good model. The
    version rolled back from becomes ``previous-champion`` (as any version losing ``champion``
    does), so a second rollback undoes the first. The rollback is recorded on the version it
    restores: ``driftpilot.champion_via`` = ``rollback`` and ``driftpilot.rollback`` (JSON: the
    version rolled back from and the reason). Pipelines roll back through a canary instead
    (``record_rollback_verdict``, then the release path, whose ``promote`` records the same).

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        reason: Why, for the record (an incident, an operator's note).
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Returns:
        The version that is champion now.

    Raises:
        ModelRegistryError: When the model has no champion or no previous champion, or the
            registry cannot be reached (nothing moved then).
    """
    client = _client(tracking_uri)
    champion = _alias_version(client, model_name, CHAMPION, retry)
    previous = _alias_version(client, model_name, PREVIOUS_CHAMPION, retry)
    if champion is None or previous is None:
        missing = CHAMPION if champion is None else PREVIOUS_CHAMPION
        raise ModelRegistryError(
            f"cannot roll {model_name!r} back: it has no {missing!r} in {tracking_uri} (a previous champion exists "
            f"only once {CHAMPION!r} has moved from one version to another)"
        )
    record = json.dumps({"from": champion, "reason": reason[:2000]})
    _crown(client, model_name, previous, champion, "rollback", {ROLLBACK_TAG: record}, retry)
    return previous


def champion_history(*, tracking_uri: str, model_name: str, retry: RetryPolicy | None = None) -> list[ChampionTerm]:
    """The versions that have been champion, newest first, each with its latest term.

    A version champion twice (rolled back to) is listed once, at its latest term. Versions
    promoted before champion history was kept have no term and are not listed.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Returns:
        The terms, the current champion's first ('' ``until``); empty for an unknown model.

    Raises:
        ModelRegistryError: When the registry cannot be reached after the retries.
    """
    client = _client(tracking_uri)
    versions = _retried(
        lambda: client.search_model_versions(f"name='{model_name}'"), f"list the versions of {model_name!r}", retry
    )
    terms = [
        ChampionTerm(
            str(v.version),
            v.tags[CHAMPION_FROM_TAG],
            v.tags.get(CHAMPION_UNTIL_TAG, ""),
            v.tags.get(CHAMPION_VIA_TAG, ""),
        )
        for v in versions
        if v.tags.get(CHAMPION_FROM_TAG) and PENDING_TAG not in v.tags  # a pending version never served
    ]
    return sorted(terms, key=lambda t: (t.since, int(t.version)), reverse=True)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _crown(
    client: Any,
    model_name: str,
    version: str,
    previous: str,
    via: str,
    tags: dict[str, str],
    retry: RetryPolicy | None,
) -> None:
    """Point ``champion`` at ``version``, ``previous-champion`` at the version losing it, and tag both terms."""
    if previous == version:  # already champion: nothing changes hands
        _point(client, model_name, CHAMPION, version, retry)
        return
    if previous:
        before = _alias_version(client, model_name, PREVIOUS_CHAMPION, retry)
        _point(client, model_name, PREVIOUS_CHAMPION, previous, retry)
        try:
            _point(client, model_name, CHAMPION, version, retry)
        except ModelRegistryError:
            _restore_alias(client, model_name, PREVIOUS_CHAMPION, before)
            raise
    else:
        _point(client, model_name, CHAMPION, version, retry)
    now = _now()

    def record() -> None:
        for key, value in {**tags, CHAMPION_FROM_TAG: now, CHAMPION_UNTIL_TAG: "", CHAMPION_VIA_TAG: via}.items():
            client.set_model_version_tag(model_name, version, key, value)
        if previous:
            client.set_model_version_tag(model_name, previous, CHAMPION_UNTIL_TAG, now)

    what = f"record the champion terms of versions {previous or '-'} → {version} of {model_name!r} ({CHAMPION!r} moved)"
    _retried(record, what, retry)


def _restore_alias(client: Any, model_name: str, alias: str, version: str | None) -> None:
    """Put an alias back after a failed move; say so when even that fails."""
    try:
        if version:
            client.set_registered_model_alias(model_name, alias, version)
        else:
            client.delete_registered_model_alias(model_name, alias)
    except Exception as exc:  # the server may still be down: the operator is told what to fix
        log.error(
            "%r of %r could not be put back to %s (%s): set it by hand", alias, model_name, version or "unset", exc
        )


def record_canary(
    *,
    tracking_uri: str,
    model_name: str,
    version: str,
    promoted: bool,
    reason: str,
    decisions: list[dict[str, Any]],
    retry: RetryPolicy | None = None,
) -> None:
    """Record how a version's canary ended: tags on the version, every decision on its run.

    The version gets ``driftpilot.canary`` (``promoted`` or ``rolled_back``) and the reason; the
    run gets ``canary/decisions.json``.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The canary's version.
        promoted: Whether the canary took all traffic.
        reason: The last decision's reason.
        decisions: Every decision (``Verdict.to_dict()``), in order.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Raises:
        ModelRegistryError: When the outcome cannot be recorded after the retries.
    """
    client = _client(tracking_uri)

    def record() -> None:
        run_id = client.get_model_version(model_name, version).run_id
        client.log_dict(run_id, {"promoted": promoted, "decisions": decisions}, "canary/decisions.json")
        client.set_model_version_tag(model_name, version, f"{CANARY_TAG}.reason", reason[:4000])
        client.set_model_version_tag(model_name, version, CANARY_TAG, "promoted" if promoted else "rolled_back")

    _retried(record, f"record the canary of version {version} of {model_name!r}", retry)


def lineage_of(*, tracking_uri: str, model_name: str, version: str) -> dict[str, Any]:
    """Read a registered version's lineage and its gate verdict back from MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        version: The version.

    Returns:
        ``source_batches`` (a list), ``incident``, ``kfp_run``, ``study``, ``run_id``, ``task``,
        ``algorithm``, ``gate``, ``gate_reason``, ``canary`` (``promoted``, ``rolled_back`` or '')
        and ``canary_reason``.
    """
    found = _client(tracking_uri).get_model_version(model_name, version)
    tags = found.tags
    batches = tags.get("driftpilot.source_batches", "")
    return {
        "source_batches": batches.split(",") if batches else [],
        "incident": tags.get("driftpilot.incident", ""),
        "kfp_run": tags.get("driftpilot.kfp_run", ""),
        "study": tags.get("driftpilot.study", ""),
        "run_id": str(found.run_id),
        "task": tags.get("driftpilot.task", ""),
        "algorithm": tags.get("driftpilot.algorithm", ""),
        "gate": tags.get(GATE_TAG, ""),
        "gate_reason": tags.get("driftpilot.gate.reason", ""),
        "canary": tags.get(CANARY_TAG, ""),
        "canary_reason": tags.get(f"{CANARY_TAG}.reason", ""),
    }


def find_alias(
    *, tracking_uri: str, model_name: str, alias: str = CHAMPION, retry: RetryPolicy | None = None
) -> ModelRef | None:
    """Return the version an alias points at (``champion``, ``previous-champion``, ``challenger``).

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        alias: The alias.
        retry: Attempts and backoff (default: ``RetryPolicy.from_env()``).

    Returns:
        The version, or None when the model or the alias does not exist.

    Raises:
        ModelRegistryError: When the registry cannot be reached after the retries (an unreachable
            registry is not an empty one).
    """
    version = _alias_target(_client(tracking_uri), model_name, alias, retry)
    if version is None:
        return None
    metrics = json.loads(version.tags.get("driftpilot.metrics", "{}"))
    return ModelRef(
        model_name, str(version.version), str(version.run_id), f"models:/{model_name}/{version.version}", metrics
    )


def _alias_target(client: Any, model_name: str, alias: str, retry: RetryPolicy | None) -> Any:
    """The model version an alias points at (MLflow's), None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    def read() -> Any:
        try:
            return client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if exc.error_code in _MISSING_CODES:
                return None
            raise

    return _retried(read, f"read alias {alias!r} of {model_name!r}", retry)


def _alias_version(client: Any, model_name: str, alias: str, retry: RetryPolicy | None) -> str | None:
    found = _alias_target(client, model_name, alias, retry)
    return str(found.version) if found is not None else None


def set_alias(
    *, tracking_uri: str, model_name: str, version: str, alias: str = CHALLENGER, retry: RetryPolicy | None = None
) -> None:
    """Point an alias other than ``champion`` and ``previous-champion`` at a version.

    ``promote`` and ``rollback`` move those two, together.

    Raises:
        ModelRegistryError: For ``champion`` or ``previous-champion``, or when the registry cannot be reached.
    """
    if alias == CHAMPION:
        raise ModelRegistryError(f"{CHAMPION!r} moves only through the promotion gate: record_gate, then promote")
    if alias == PREVIOUS_CHAMPION:
        raise ModelRegistryError(f"{PREVIOUS_CHAMPION!r} moves only with {CHAMPION!r}: promote, or rollback")
    _point(_client(tracking_uri), model_name, alias, version, retry)


def _point(client: Any, model_name: str, alias: str, version: str, retry: RetryPolicy | None) -> None:
    _retried(
        lambda: client.set_registered_model_alias(model_name, alias, version),
        f"point {alias!r} at version {version} of {model_name!r}",
        retry,
    )


def load_model(*, tracking_uri: str, model_uri: str, dest: Path) -> TrainedModel:
    """Download a registered model's files into ``dest`` and load them.

    Raises:
        ModelRegistryError: When the model cannot be downloaded.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from components.register.pyfunc import MODEL_ARTIFACT

    _client(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dest))
    except MlflowException as exc:
        raise ModelRegistryError(f"cannot download {model_uri} from {tracking_uri}: {exc}") from exc
    return TrainedModel.load(Path(local) / "artifacts" / MODEL_ARTIFACT)


def load_reference(*, tracking_uri: str, run_id: str, dest: Path) -> pd.DataFrame:
    """Download the reference sample logged with a model's run.

    Raises:
        ModelRegistryError: When the run has no reference sample.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    _client(tracking_uri)
    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=str(dest))
    except MlflowException as exc:
        raise ModelRegistryError(f"run {run_id} has no reference sample: {exc}") from exc
    return read_table(Path(local))


def fetch_champion(*, tracking_uri: str, model_name: str, model_dir: Path, reference_path: Path) -> ModelRef:
    """Copy the champion's model files (with its drift profile and parameters) and reference sample out of MLflow.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        model_dir: Where the ``TrainedModel`` folder is written.
        reference_path: Where the reference sample is written (Parquet).

    Returns:
        The champion version.

    Raises:
        ModelRegistryError: When the model has no champion yet.
    """
    champion = find_alias(tracking_uri=tracking_uri, model_name=model_name)
    if champion is None:
        raise ModelRegistryError(
            f"{model_name!r} has no {CHAMPION!r} alias in {tracking_uri}: run the training pipeline first"
        )
    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(tracking_uri=tracking_uri, model_uri=champion.uri, dest=Path(tmp) / "model")
        model.save(model_dir)
        for name in (PROFILE_FILE, PARAMS_FILE):  # versions trained before profiles have none
            for found in (Path(tmp) / "model").rglob(name):
                shutil.copy(found, model_dir / name)
        write_table(load_reference(tracking_uri=tracking_uri, run_id=champion.run_id, dest=Path(tmp)), reference_path)
    return champion


def fetch_previous_champion(*, tracking_uri: str, model_name: str, model_dir: Path) -> ModelRef | None:
    """Copy the previous champion's model files out of MLflow, or mark the folder as holding none.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name.
        model_dir: Where the ``TrainedModel`` folder is written; without a previous champion it
            gets the marker ``components.train.model.mark_absent`` writes
            (``TrainedModel.load_optional`` reads it as None).

    Returns:
        The previous champion, or None when ``champion`` has never moved from one version to another.
    """
    from components.train.model import mark_absent

    previous = find_alias(tracking_uri=tracking_uri, model_name=model_name, alias=PREVIOUS_CHAMPION)
    if previous is None:
        mark_absent(model_dir, f"{model_name!r} has no {PREVIOUS_CHAMPION!r} in {tracking_uri}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        load_model(tracking_uri=tracking_uri, model_uri=previous.uri, dest=Path(tmp)).save(model_dir)
    return previous
