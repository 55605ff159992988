"""A command prints its own lines; what libraries write (warnings, log records, progress bars) goes to its log file.

While a command runs, ``sys.stderr`` is a router to the log file, opened on the first write (a
command whose libraries say nothing leaves no file). Warnings (shown through it whatever filter
or hook was set before) and every logging handler that writes to stderr (MLflow's, Dask's, the
root's) reach it, as do progress bars; MLflow's artifact
progress bars are turned off outright, here and in the processes a command starts. The
command's own lines go to stdout, or to the terminal's stderr through ``terminal()``.
"""

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["library_output_to", "terminal"]

_QUIET_ENVIRONMENT = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
_terminal: list[TextIO] = []


class _Router(io.TextIOBase):
    """Writes to a log file while its command runs, then to whatever ``sys.stderr`` is.

    Handlers that libraries made during the command keep this object as their stream; after the
    command they write where stderr is then, never to a closed file.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.log: TextIO | None = None
        self.open = True

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.open:
            stream = sys.stderr if sys.stderr is not self else sys.__stderr__
            return stream.write(text) if stream is not None else len(text)
        if self.log is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.log = self.path.open("a", encoding="utf-8")
        return self.log.write(text)

    def flush(self) -> None:
        if self.log is not None:
            self.log.flush()

    def close_log(self) -> None:
        self.open = False
        if self.log is not None:
            self.log.close()
            self.log = None


def terminal() -> TextIO:
    """The stream a command's own error lines go to: the terminal's stderr, even while libraries are logged."""
    return _terminal[-1] if _terminal else sys.stderr


@contextlib.contextmanager
def library_output_to(path: Path) -> Iterator[None]:
    """Send what libraries write to stderr to ``path`` (appended) for the duration.

    Args:
        path: The log file; created, with its folder, only when something is written.
    """
    router = _Router(path)
    saved_environment = {name: os.environ.get(name) for name in _QUIET_ENVIRONMENT}
    os.environ.update(_QUIET_ENVIRONMENT)
    _terminal.append(sys.stderr)
    saved, sys.stderr = sys.stderr, router
    saved_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        router.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = showwarning
    try:
        yield
    finally:
        warnings.showwarning = saved_showwarning
        sys.stderr = saved
        _terminal.pop()
        router.close_log()
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
