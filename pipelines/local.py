"""Run pipelines on this machine with kfp.local: one Python process per step, or one container of its image."""

import builtins
import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["init_local", "run_pipeline"]


def init_local(pipeline_root: Path, *, docker: dict[str, Any] | None = None) -> None:
    """Point kfp.local at ``pipeline_root`` and choose where the steps run.

    By default they run in this interpreter's environment (kfp.local's SubprocessRunner), with
    the installed driftpilot package, as they would on its image in a cluster. With ``docker``
    each step runs in a container of its component's image (kfp.local's DockerRunner; the image
    must be in the local Docker engine: nothing is pulled), as a KFP pod would run it: the
    compiled component, the image's Python and packages, the image's user (uid 10001).

    Args:
        pipeline_root: Where the steps' outputs go. A DockerRunner container sees this folder
            alone (at the same path), so every folder a step reads or writes (the lake, the
            decision state, the Optuna journal) must be under it and writable by uid 10001.
        docker: ``docker run`` arguments of every step container (``network_mode``,
            ``environment``, ...); None runs the steps as subprocesses.
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    if docker is not None:
        _find_docker_hub_images_by_their_engine_tags()
        local.init(runner=local.DockerRunner(**docker), pipeline_root=str(pipeline_root))
        return
    # Our component image is not a stock Python image; locally it is this environment instead.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))


def _find_docker_hub_images_by_their_engine_tags() -> None:
    """Let kfp.local's DockerRunner find our images in the engine instead of pulling them.

    It looks the component's image up among the engine's tags as written, but the engine tags
    a ``docker.io/`` image without that prefix (``docker.io/driftpilot/python-components:X``
    is listed as ``driftpilot/python-components:X``), so it never finds one and pulls it.
    Its name normaliser is given Docker's own normalisation first.
    """
    from kfp.local import docker_task_handler

    normalise = docker_task_handler.add_latest_tag_if_not_present
    if getattr(normalise, "drops_docker_io", False):
        return

    def drop_docker_io(image: str) -> str:
        for prefix in ("docker.io/library/", "docker.io/"):
            if image.startswith(prefix):
                image = image.removeprefix(prefix)
                break
        return normalise(image=image)

    drop_docker_io.drops_docker_io = True  # type: ignore[attr-defined]
    docker_task_handler.add_latest_tag_if_not_present = drop_docker_io


@contextlib.contextmanager
def _captured(log_path: Path) -> Iterator[None]:
    """Send kfp.local's step output and log records to ``log_path`` instead of the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        root = logging.getLogger()
        saved = root.handlers[:]
        root.handlers = [handler]
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            root.handlers = saved


def run_pipeline(pipeline: Callable[..., Any], arguments: dict[str, Any], *, log_path: Path | None = None) -> Any:
    """Run a pipeline locally (after ``init_local``) and return its outputs.

    Args:
        pipeline: A ``@dsl.pipeline`` function.
        arguments: Its arguments.
        log_path: Where step output goes; the terminal when None.

    Returns:
        The pipeline's outputs: a dict for several, a value for one, None for none.
    """
    context = _captured(log_path) if log_path is not None else contextlib.nullcontext()
    printer = builtins.print
    try:
        with context:
            task = pipeline(**arguments)
    finally:
        # kfp.local indents step output by swapping builtins.print around each task; the tasks of a
        # ParallelFor run in threads and restore it out of order, which leaves every later print
        # of this process indented.
        builtins.print = printer
    return getattr(task, "outputs", None)
