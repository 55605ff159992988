"""Release a challenger the promotion gate passed: a judged canary, then the champion alias.

Every promotion takes this path, locally (``release_local``: the splitter beside the serving
model) or in a cluster (``release_kserve``: the InferenceService's canary revision, stats from
the predictor pods). The registry's ``champion`` alias moves only after the canary promoted the
version (or when nothing served before); the canary's outcome is recorded on the version
either way.
"""

from collections.abc import Callable
from pathlib import Path

from components.common.errors import ModelRegistryError
from components.deploy.canary import CanaryPolicy
from components.deploy.controller import CanaryOutcome

__all__ = ["release_kserve", "release_local"]


def _gated(
    *, tracking_uri: str, model_name: str, version: str, run: Callable[[], CanaryOutcome | None]
) -> CanaryOutcome | None:
    from components.register.core import lineage_of, promote, record_canary

    verdict = lineage_of(tracking_uri=tracking_uri, model_name=model_name, version=version)
    if verdict["gate"] != "promote":
        raise ModelRegistryError(
            f"version {version} of {model_name!r} has not passed the promotion gate "
            f"({verdict['gate'] or 'not judged'}): it is not released"
        )
    outcome = run()
    if outcome is not None:
        record_canary(
            tracking_uri=tracking_uri,
            model_name=model_name,
            version=version,
            promoted=outcome.promoted,
            reason=outcome.verdict.reason,
            decisions=[d.to_dict() for d in outcome.decisions],
        )
    if outcome is None or outcome.promoted:
        promote(tracking_uri=tracking_uri, model_name=model_name, version=version)
    return outcome


def release_local(
    *,
    tracking_uri: str,
    model_name: str,
    version: str,
    serving_dir: Path,
    port: int = 0,
    policy: CanaryPolicy | None = None,
) -> CanaryOutcome | None:
    """Release a gate-passed version on this machine (``serve_local``).

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name (also the served name).
        version: The version to release.
        serving_dir: The serving folder.
        port: The splitter's port (0 picks a free one).
        policy: The canary policy.

    Returns:
        The canary's outcome, or None when the version was served straight away.

    Raises:
        ModelRegistryError: The gate has not passed the version.
        RolloutBusyError: Another rollout is under way.
    """
    from components.deploy.local import serve_local

    def run() -> CanaryOutcome | None:
        return serve_local(
            model_name=model_name,
            model_uri=f"models:/{model_name}/{version}",
            tracking_uri=tracking_uri,
            serving_dir=serving_dir,
            port=port,
            policy=policy,
        )[1]

    return _gated(tracking_uri=tracking_uri, model_name=model_name, version=version, run=run)


def release_kserve(
    *,
    tracking_uri: str,
    model_name: str,
    version: str,
    namespace: str,
    image: str,
    env_secret: str,
    holder: str,
    incident: str = "",
    logger_url: str = "",
    policy: CanaryPolicy | None = None,
    kubeconfig: str | None = None,
    mode: str = "Serverless",
) -> CanaryOutcome | None:
    """Release a gate-passed version on its InferenceService (named after the model) in a cluster.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name; also the InferenceService's name.
        version: The version to release.
        namespace: The InferenceService's namespace.
        image: The serving image.
        env_secret: Secret whose keys join the predictor's environment (S3 credentials when the
            tracking server does not serve artifacts); '' for none. ``MLFLOW_TRACKING_URI`` is set.
        holder: Who releases (the KFP run): held in the rollout lease.
        incident: The incident the version answers, put in an annotation.
        logger_url: Where KServe's logger posts requests and responses ('' for none).
        policy: The canary policy.
        kubeconfig: A kubeconfig path; None uses the pod's service account.
        mode: KServe's deployment mode of the InferenceService: ``Serverless`` (a canary
            revision) or ``RawDeployment`` (canary pods beside KServe's own).

    Returns:
        The canary's outcome, or None when the InferenceService was created (nothing to compare)
        or already serves the version.

    Raises:
        ModelRegistryError: The gate has not passed the version.
        RolloutBusyError: Another rollout holds the InferenceService.
    """
    from components.common.kube import api_client
    from components.deploy.kserve import PredictorSpec, release
    from components.deploy.metrics import PodMetricsSource

    api = api_client(kubeconfig)
    spec = PredictorSpec(
        name=model_name,
        image=image,
        model_uri=f"models:/{model_name}/{version}",
        env={"MLFLOW_TRACKING_URI": tracking_uri},
        env_secret=env_secret,
        logger_url=logger_url,
        annotations={"driftpilot.io/model-version": version, "driftpilot.io/incident": incident},
        mode=mode,
    )

    def run() -> CanaryOutcome | None:
        return release(
            api,
            namespace,
            spec,
            policy or CanaryPolicy(),
            holder=holder,
            stats=PodMetricsSource(api, namespace, model_name, mode=mode),
        )

    return _gated(tracking_uri=tracking_uri, model_name=model_name, version=version, run=run)
