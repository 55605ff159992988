"""Container images the pipelines run on: one tag, derived from the package version."""

from importlib.metadata import PackageNotFoundError, version

__all__ = ["COMPONENTS_IMAGE", "SERVING_IMAGE"]


def _version() -> str:
    try:
        return version("driftpilot")
    except PackageNotFoundError:  # a source checkout that was not installed
        return "0.0.0"


# Both names contain "python": kfp.local's SubprocessRunner warns about images without it.
COMPONENTS_IMAGE = f"docker.io/driftpilot/python-components:{_version()}"
SERVING_IMAGE = f"docker.io/driftpilot/python-serving:{_version()}"
