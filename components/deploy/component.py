"""KFP wrapper of the deploy stage."""

from kfp import dsl

from components.common.images import COMPONENTS_IMAGE


@dsl.component(base_image=COMPONENTS_IMAGE, install_kfp_package=False)
def deploy_champion(tracking_uri: str, model_name: str, serving_dir: str, port: int) -> str:
    """Serve the registry's champion on a local KServe model server (restarted on a new version).

    Args:
        tracking_uri: MLflow tracking URI the server loads the model from.
        model_name: Registered model name; also the served model's name.
        serving_dir: Folder holding the server's state and logs.
        port: HTTP port (0 picks a free one).

    Returns:
        The server's base URL.
    """
    from pathlib import Path

    from components.deploy.core import deploy_local

    deployment = deploy_local(
        model_name=model_name,
        model_uri=f"models:/{model_name}@champion",
        tracking_uri=tracking_uri,
        state_dir=Path(serving_dir),
        port=port,
    )
    return deployment.url
