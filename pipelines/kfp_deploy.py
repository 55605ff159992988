"""Deploy the pipelines to a Kubeflow Pipelines API and schedule the drift response.

What ``driftpilot kfp-deploy`` (and the chart's post-install Job) does, idempotently:

1. compile every pipeline (training, drift response, tuning);
2. upload each as a pipeline, or as a new version of the pipeline of that name, named
   ``<pipeline>-<package version>-<digest of the compiled YAML>`` (an unchanged pipeline
   reuses its version);
3. find or create the experiment;
4. create the recurring drift-response run on the new version (cron schedule, at most one run
   at a time, no catch-up: a missed batch is picked up by the next run, which asks the feed for
   ``latest``), then delete the runs of the same name it replaces.

Pipeline parameters come from ``--param name=value`` and are typed from the compiled pipeline's
input definitions, so ``ingest_workers=2`` reaches KFP as an integer.
"""

import hashlib
import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from components.common.errors import ConfigError
from components.common.images import COMPONENTS_IMAGE
from components.decide.coordinator import KfpLauncher
from pipelines.pod_env import PodEnv, add_pod_env

__all__ = [
    "DEFAULT_SCHEDULE",
    "DeployResult",
    "KfpClient",
    "UploadedPipeline",
    "deploy",
    "deploy_to_kfp",
    "launcher_for_recurring_run",
    "normalize_cron",
    "parse_params",
    "pipeline_parameters",
    "typed_params",
]

DEFAULT_SCHEDULE = "0 5,20,35,50 * * * *"
"""Every 15 minutes, 5 minutes after each of GDELT's quarter-hour exports is due, so
``lastupdate.txt`` already names the new batch (KFP's cron has a leading seconds field)."""

_DRIFT_RESPONSE = "driftpilot-drift-response"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml reads a compiled pipeline 10x faster
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 6, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_DESCRIPTOR = re.compile(
    r"^@(yearly|annually|monthly|weekly|daily|midnight|hourly|every (\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+)$"
)
_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/(?P<step>\d+))?$")


class KfpClient(Protocol):
    """The part of ``kfp.Client`` the deployment uses (a fake in tests records the same calls)."""

    def get_pipeline_id(self, name: str) -> str | None:
        """``kfp.Client.get_pipeline_id``."""

    def upload_pipeline(
        self,
        pipeline_package_path: str,
        pipeline_name: str | None = ...,
        description: str | None = ...,
        namespace: str | None = ...,
    ) -> Any:
        """``kfp.Client.upload_pipeline``."""

    def upload_pipeline_version(
        self,
        pipeline_package_path: str,
        pipeline_version_name: str,
        pipeline_id: str | None = ...,
        pipeline_name: str | None = ...,
        description: str | None = ...,
    ) -> Any:
        """``kfp.Client.upload_pipeline_version``."""

    def list_pipeline_versions(
        self,
        pipeline_id: str,
        page_token: str = ...,
        page_size: int = ...,
        sort_by: str = ...,
        filter: str | None = ...,
    ) -> Any:
        """``kfp.Client.list_pipeline_versions``."""

    def create_experiment(self, name: str, description: str = ..., namespace: str | None = ...) -> Any:
        """``kfp.Client.create_experiment``."""

    def list_recurring_runs(
        self,
        page_token: str = ...,
        page_size: int = ...,
        sort_by: str = ...,
        experiment_id: str | None = ...,
        namespace: str | None = ...,
        filter: str | None = ...,
    ) -> Any:
        """``kfp.Client.list_recurring_runs``."""

    def create_recurring_run(self, experiment_id: str, job_name: str, **kwargs: Any) -> Any:
        """``kfp.Client.create_recurring_run``."""

    def delete_recurring_run(self, recurring_run_id: str) -> Any:
        """``kfp.Client.delete_recurring_run``."""

    def run_pipeline(
        self,
        experiment_id: str,
        job_name: str,
        pipeline_package_path: str | None = ...,
        params: dict[str, Any] | None = ...,
        pipeline_id: str | None = ...,
        version_id: str | None = ...,
        pipeline_root: str | None = ...,
        enable_caching: bool | None = ...,
        cache_key: str | None = ...,
        service_account: str | None = ...,
    ) -> Any:
        """``kfp.Client.run_pipeline``."""


@dataclass(frozen=True)
class UploadedPipeline:
    """A pipeline version on the KFP API.

    Attributes:
        name: Pipeline name (``driftpilot-training``, ``driftpilot-drift-response``).
        pipeline_id: The pipeline's id.
        version_id: The version's id.
        version_name: The version's name.
        created: False when the same compiled pipeline was already there.
    """

    name: str
    pipeline_id: str
    version_id: str
    version_name: str
    created: bool


@dataclass(frozen=True)
class DeployResult:
    """What a deployment left on the KFP API.

    Attributes:
        pipelines: Every uploaded pipeline version.
        experiment_id: The experiment's id.
        recurring_run_id: The drift-response recurring run's id.
        schedule: Its cron expression (six fields).
        replaced: Ids of the recurring runs it replaced (deleted).
        params: The typed parameters the recurring run passes.
    """

    pipelines: list[UploadedPipeline]
    experiment_id: str
    recurring_run_id: str
    schedule: str
    replaced: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """Read ``name=value`` pairs (a later pair wins).

    Args:
        pairs: The ``--param`` values.

    Returns:
        Values by name, as text.

    Raises:
        ConfigError: A pair has no ``=`` or an empty name.
    """
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param takes name=value, e.g. lake_dir=s3://lake/gdelt; got {pair!r}")
        params[name.strip()] = value
    return params


def _cron_value(text: str, low: int, high: int, names: Mapping[str, int], label: str) -> int:
    value = names.get(text.upper()) if not text.isdigit() else int(text)
    if value is None or not low <= value <= high:
        raise ConfigError(f"cron {label} {text!r} is out of range {low}-{high}")
    return value


def normalize_cron(expression: str) -> str:
    """Check a cron expression and return it in KFP's six-field form.

    KFP schedules with robfig/cron and a leading seconds field; a standard five-field
    expression gets ``0`` seconds. Descriptors (``@hourly``, ``@every 15m``) pass as they are.

    Args:
        expression: Five or six fields (``*/15 * * * *``, ``0 5,20,35,50 * * * *``) or a descriptor.

    Returns:
        The expression with six fields (or the descriptor).

    Raises:
        ConfigError: The expression has another number of fields or a field is not a valid
            list of values, ranges and steps within its bounds.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if not _DESCRIPTOR.match(text):
            raise ConfigError(f"unknown cron descriptor {text!r}: use @hourly, @daily, @every 15m, ...")
        return text
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ConfigError(
            f"cron {expression!r} has {len(fields)} fields: give five (minute hour day month weekday) "
            "or six (with seconds first), e.g. '0 */15 * * * *'"
        )
    for value, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in value.split(","):
            match = _ITEM.match(item)
            if not match:
                raise ConfigError(f"cron {label} {value!r} is not a list of values, ranges and steps")
            if match["step"] is not None and int(match["step"]) == 0:
                raise ConfigError(f"cron {label} {value!r} has a zero step")
            if match["range"] not in ("*", "?"):
                bounds = [_cron_value(part, low, high, names, label) for part in match["range"].split("-")]
                if bounds != sorted(bounds):
                    raise ConfigError(f"cron {label} range {match['range']!r} runs backwards")
    return " ".join(fields)


def pipeline_parameters(compiled: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """The name and input parameter definitions of a compiled pipeline.

    Args:
        compiled: A pipeline compiled to KFP's IR YAML.

    Returns:
        ``pipelineInfo.name`` and ``root.inputDefinitions.parameters`` (by name: ``parameterType``,
        ``isOptional``, ``defaultValue``).
    """
    document = yaml.load(compiled.read_text(), Loader=_YAML_LOADER)
    parameters = document.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return str(document["pipelineInfo"]["name"]), dict(parameters)


def _typed(name: str, text: str, kind: str) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind in ("LIST", "STRUCT"):
            return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"parameter {name}={text!r} is not a valid {kind.lower()}") from exc
    return text


def typed_params(
    definitions: Mapping[str, Mapping[str, Any]], given: Mapping[str, str], pipeline: str
) -> dict[str, Any]:
    """Type ``--param`` values by the pipeline's input definitions and check none is missing.

    Args:
        definitions: ``root.inputDefinitions.parameters`` of the compiled pipeline.
        given: Parameter values as text.
        pipeline: The pipeline's name, for messages.

    Returns:
        The parameters with the types the pipeline declares.

    Raises:
        ConfigError: A parameter is unknown, not of its type, or a required one is missing.
    """
    unknown = sorted(set(given) - set(definitions))
    if unknown:
        raise ConfigError(
            f"{pipeline} has no parameter(s) {', '.join(unknown)}; it takes {', '.join(sorted(definitions))}"
        )
    missing = sorted(n for n, d in definitions.items() if not d.get("isOptional") and n not in given)
    if missing:
        raise ConfigError(f"{pipeline} needs --param for {', '.join(missing)}")
    return {
        name: _typed(name, value, str(definitions[name].get("parameterType", "STRING")))
        for name, value in given.items()
    }


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _existing_version(client: KfpClient, pipeline_id: str, name: str, description: str) -> Any:
    """The version of this name, or the pipeline's first version if it was uploaded from the same file.

    KFP names a pipeline's first version after the pipeline and gives it the pipeline's
    description, which carries the package version and the digest of the compiled file.
    """
    token = ""
    while True:
        page = client.list_pipeline_versions(pipeline_id, page_token=token, page_size=100, sort_by="created_at desc")
        for version in page.pipeline_versions or []:
            if version.display_name == name or version.description == description:
                return version
        token = page.next_page_token or ""
        if not token:
            return None


def _upload(client: KfpClient, compiled: Path, package_version: str, namespace: str | None) -> UploadedPipeline:
    name, _ = pipeline_parameters(compiled)
    digest = hashlib.sha256(compiled.read_bytes()).hexdigest()[:12]
    version_name = f"{name}-{package_version}-{digest}"
    description = f"driftpilot {package_version}, compiled pipeline sha256 {digest}"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(
            str(compiled), pipeline_name=name, description=description, namespace=namespace
        ).pipeline_id
        version = _existing_version(client, pipeline_id, version_name, description)
        return UploadedPipeline(name, pipeline_id, version.pipeline_version_id, version.display_name, True)
    version = _existing_version(client, pipeline_id, version_name, description)
    if version is not None:
        return UploadedPipeline(name, pipeline_id, version.pipeline_version_id, version.display_name, False)
    version = client.upload_pipeline_version(
        str(compiled), pipeline_version_name=version_name, pipeline_id=pipeline_id, description=description
    )
    return UploadedPipeline(name, pipeline_id, version.pipeline_version_id, version_name, True)


def _recurring_runs(client: KfpClient, experiment_id: str, name: str) -> list[Any]:
    runs, token = [], ""
    while True:
        page = client.list_recurring_runs(
            page_token=token, page_size=100, experiment_id=experiment_id, filter=_by_name(name)
        )
        runs += [run for run in page.recurring_runs or [] if run.display_name == name]
        token = page.next_page_token or ""
        if not token:
            return runs


def _recurring_runs_named(client: KfpClient, experiment_id: str, name: str) -> list[str]:
    return [run.recurring_run_id for run in _recurring_runs(client, experiment_id, name)]


def launcher_for_recurring_run(
    client: KfpClient,
    *,
    experiment: str = "driftpilot",
    run_name: str = _DRIFT_RESPONSE,
    namespace: str | None = None,
) -> KfpLauncher:
    """A launcher of incident runs like the recurring run: its pipeline version, parameters and account.

    Args:
        client: A ``kfp.Client``.
        experiment: The recurring run's experiment.
        run_name: The recurring run's display name (``deploy``'s ``run_name``).
        namespace: Kubernetes namespace of a multi-user KFP.

    Returns:
        The launcher (``components.decide.coordinator.KfpLauncher``).

    Raises:
        ConfigError: When no recurring run of that name exists (run ``driftpilot kfp-deploy`` first).
    """
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
    runs = _recurring_runs(client, experiment_id, run_name)
    if not runs:
        raise ConfigError(
            f"no recurring run {run_name!r} in experiment {experiment!r}: run driftpilot kfp-deploy first"
        )
    run = runs[0]
    reference = run.pipeline_version_reference
    return KfpLauncher(
        client,
        experiment_id=experiment_id,
        pipeline_id=reference.pipeline_id,
        version_id=reference.pipeline_version_id,
        params=dict(run.runtime_config.parameters or {}),
        service_account=run.service_account or "",
    )


def deploy(
    client: KfpClient,
    compiled: Sequence[Path],
    *,
    params: Mapping[str, str],
    schedule: str = DEFAULT_SCHEDULE,
    namespace: str | None = None,
    experiment: str = "driftpilot",
    run_name: str = _DRIFT_RESPONSE,
    recurring_pipeline: str = _DRIFT_RESPONSE,
    service_account: str = "",
    package_version: str = COMPONENTS_IMAGE.rsplit(":", 1)[1],
) -> DeployResult:
    """Upload compiled pipelines and (re)create the recurring run of one of them.

    Args:
        client: A ``kfp.Client`` (or anything with its methods).
        compiled: Compiled pipeline YAML files.
        params: The recurring run's parameters as text, typed by the pipeline's definitions.
        schedule: Cron expression, five or six fields (see ``normalize_cron``).
        namespace: Kubernetes namespace of a multi-user KFP (None for a standalone one).
        experiment: Experiment of the recurring run (found or created).
        run_name: Display name of the recurring run; runs of this name are replaced.
        recurring_pipeline: Name of the pipeline to schedule.
        service_account: Kubernetes service account of the run's pods ('' for KFP's default).
        package_version: Names the pipeline versions (the image tag the steps run on).

    Returns:
        What was uploaded and scheduled.

    Raises:
        ConfigError: The schedule or a parameter is invalid, or no compiled pipeline has the
            name to schedule. Nothing is uploaded then.
    """
    cron = normalize_cron(schedule)
    definitions = dict(pipeline_parameters(path) for path in compiled)
    if recurring_pipeline not in definitions:
        raise ConfigError(f"no compiled pipeline is named {recurring_pipeline!r}; have {sorted(definitions)}")
    typed = typed_params(definitions[recurring_pipeline], params, recurring_pipeline)
    uploaded = [_upload(client, path, package_version, namespace) for path in compiled]
    target = next(p for p in uploaded if p.name == recurring_pipeline)
    experiment_id = client.create_experiment(
        name=experiment, description="driftpilot's recurring drift response", namespace=namespace
    ).experiment_id
    previous = _recurring_runs_named(client, experiment_id, run_name)
    run = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=run_name,
        description=f"{recurring_pipeline} on {target.version_name}, cron {cron}",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=typed,
        pipeline_id=target.pipeline_id,
        version_id=target.version_id,
        enabled=True,
        service_account=service_account or None,
    )
    for recurring_run_id in previous:
        client.delete_recurring_run(recurring_run_id)
    return DeployResult(uploaded, experiment_id, run.recurring_run_id, cron, previous, typed)


def deploy_to_kfp(
    host: str,
    *,
    params: Mapping[str, str],
    schedule: str = DEFAULT_SCHEDULE,
    namespace: str | None = None,
    experiment: str = "driftpilot",
    run_name: str = _DRIFT_RESPONSE,
    service_account: str = "",
    pod_env: PodEnv | None = None,
) -> DeployResult:
    """Compile the pipelines and deploy them to the KFP API at ``host`` (see ``deploy``).

    The schedule and the parameters are checked before the API is contacted. Every step pod
    takes ``pod_env``'s ConfigMap and Secrets (if any) as environment variables; the deciding
    steps mount its decision-state volume (if any).
    """
    import kfp

    from pipelines.cli import compile_pipelines

    normalize_cron(schedule)
    with tempfile.TemporaryDirectory(prefix="driftpilot-kfp-") as folder:
        compiled = compile_pipelines(Path(folder))
        for path in compiled:
            add_pod_env(path, pod_env or PodEnv())
        definitions = dict(pipeline_parameters(path) for path in compiled)
        typed_params(definitions[_DRIFT_RESPONSE], params, _DRIFT_RESPONSE)
        return deploy(
            kfp.Client(host=host),
            compiled,
            params=params,
            schedule=schedule,
            namespace=namespace,
            experiment=experiment,
            run_name=run_name,
            service_account=service_account,
        )
