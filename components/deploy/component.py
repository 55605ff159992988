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
    tracking_uri: str, model_name: str, version: str, serving_dir: str, port: int, canary_policy: str
) -> str:
    """Canary a version the gate passed beside the champion; promote it or roll it back.

    Args:
        tracking_uri: MLflow tracking URI.
        model_name: Registered model name; also the served model's name.
        version: The version the gate passed.
        serving_dir: Folder holding the servers' state and logs.
        port: The splitter's HTTP port (0 picks a free one).
        canary_policy: JSON object of ``CanaryPolicy`` fields (steps, margins, timings); ``{}``
            for the defaults.

    Returns:
        ``promoted``, ``rolled_back`` or ``served`` (nothing served before).
    """
    from pathlib import Path

    from components.deploy.canary import CanaryPolicy
    from components.deploy.local import release_version

    outcome = release_version(
        tracking_uri=tracking_uri,
        model_name=model_name,
        version=version,
        serving_dir=Path(serving_dir),
        port=port,
        policy=CanaryPolicy.from_json(canary_policy),
    )
    if outcome is None:
        return "served"
    return "promoted" if outcome.promoted else "rolled_back"
