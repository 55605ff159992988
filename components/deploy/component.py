"""KFP wrappers of the deploy stage."""

from kfp import dsl

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def deploy_champion(tracking_uri: str, model_name: str, serving_dir: str, port: int) -> str:
    """Serve the registry's champion locally, behind the traffic splitter clients call.

    Args:
        tracking_uri: MLflow tracking URI the server loads the model from.
        model_name: Registered model name; also the served model's name.
        serving_dir: Folder holding the servers' state and logs.
        port: The splitter's HTTP port (0 picks a free one).

    Returns:
        The base URL clients call.
    """
    from pathlib import Path

    from components.deploy.local import serve_local

    served, _ = serve_local(
        model_name=model_name,
        model_uri=f"models:/{model_name}@champion",
        tracking_uri=tracking_uri,
        serving_dir=Path(serving_dir),
        port=port,
    )
    return served.url


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def release_challenger(
    tracking_uri: str,
    model_name: str,
    version: str,
    canary_policy: str,
    target: str,
    serving_dir: str,
    port: int,
    namespace: str,
    image: str,
    env_secret: str,
    logger_url: str,
    holder: str,
    incident: str,
    state_dir: str,
) -> str:
    """Canary a version the gate passed beside the champion; promote it or roll it back.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name; also the served model's and InferenceService's name.
        version: The version the gate passed.
        canary_policy: JSON object of ``CanaryPolicy`` fields (steps, margins, timings); ``{}``
            for the defaults.
        target: ``local`` (model servers behind the splitter on this machine), ``kserve``
            (the InferenceService's canary revision; KServe's Serverless mode) or ``kserve-raw``
            (KServe's RawDeployment mode: the canary on pods of its own beside KServe's).
        serving_dir: Local target: folder of the servers' state and logs.
        port: Local target: the splitter's HTTP port (0 picks a free one).
        namespace: KServe target: the InferenceService's namespace.
        image: KServe target: the serving image.
        env_secret: KServe target: Secret with the predictor's environment.
        logger_url: KServe target: where KServe's logger posts requests and responses ('' none).
        holder: Who releases (the KFP run), named to a rollout that is refused.
        incident: The incident the version answers; the release's steps go on its ledger story.
        state_dir: The decision state's folder ('' for ``audit`` beside ``serving_dir``).

    Returns:
        ``promoted``, ``rolled_back`` or ``served`` (nothing served before).
    """
    from pathlib import Path

    from components.decide.core import DecisionState, record_release
    from components.deploy.canary import CanaryPolicy
    from components.deploy.release import release_kserve, release_local

    common = {"tracking_uri": tracking_uri, "model_name": model_name, "version": version}
    policy = CanaryPolicy.from_json(canary_policy)
    if target not in ("local", "kserve", "kserve-raw"):
        raise ValueError(f"target={target!r}: use local, kserve or kserve-raw")
    if target != "local":
        outcome = release_kserve(
            **common,
            mode="RawDeployment" if target == "kserve-raw" else "Serverless",
            namespace=namespace,
            image=image,
            env_secret=env_secret,
            logger_url=logger_url,
            holder=holder,
            incident=incident,
            policy=policy,
        )
    else:
        outcome = release_local(**common, serving_dir=Path(serving_dir), port=port, policy=policy)
    if outcome is None:
        return "served"
    record_release(
        DecisionState.of_pipeline(state_dir, serving_dir), incident=incident, version=version, outcome=outcome,
        actor=holder,
    )  # fmt: skip
    return "promoted" if outcome.promoted else "rolled_back"
