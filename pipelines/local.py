"""Run pipelines on this machine with kfp.local's SubprocessRunner (one Python process per step)."""

import builtins
import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["init_local", "run_pipeline"]


def init_local(pipeline_root: Path) -> None:
    """Point kfp.local at ``pipeline_root`` and run steps in this interpreter's environment.

    Steps run with the installed driftpilot package, as they would on its image in a cluster.
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Our component image is not a stock Python image; locally it is this environment instead.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))


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
