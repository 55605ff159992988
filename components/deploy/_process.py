"""Local server processes: start detached, check, stop by process group, lock a state folder."""

import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from components.common.errors import ServingError

HOST = "127.0.0.1"
_LOG_TAIL_LINES = 40

# Processes this interpreter started, kept so they can be reaped (no zombies, no
# "subprocess still running" warnings); a server started by another process is found by pid.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@contextmanager
def locked(state_dir: Path, *, wait: bool = True, busy: Callable[[], Exception] | None = None) -> Iterator[None]:
    """Hold a state folder's lock across processes.

    Args:
        state_dir: The folder (created if absent).
        wait: Block until the lock is free; when False, raise ``busy()`` if it is held.
        busy: Makes the error raised when the lock is held and ``wait`` is False.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise (busy() if busy else ServingError(f"{state_dir} is locked by another process")) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    """True when the process runs (not exited, not a zombie)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return True  # no procfs: kill(0) is all we know
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _runs(pid: int, module: str) -> bool:
    """True unless procfs shows the pid now belongs to something other than ``python -m module``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return module.encode() in cmdline.split(b"\0")


def _wait_exit(pid: int, timeout_s: float) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[pid]
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return not alive(pid)


def terminate(pid: int, module: str, grace_s: float) -> bool:
    """Stop a ``python -m module`` process group: SIGTERM, then SIGKILL after ``grace_s`` seconds.

    Returns:
        True when a running process was stopped, False when none was running under ``pid``.

    Raises:
        ServingError: When the process may not be signalled or survives SIGKILL.
    """
    if not alive(pid) or not _runs(pid, module):
        _CHILDREN.pop(pid, None)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError as exc:
            raise ServingError(f"not allowed to stop {module} pid {pid}: {exc}") from exc
        if _wait_exit(pid, grace_s if sig == signal.SIGTERM else 10.0):
            return True
    if alive(pid):
        raise ServingError(f"{module} pid {pid} survived SIGKILL")
    return True


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def spawn(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a detached process (its own session and process group) logging to ``log_path``.

    Raises:
        ServingError: When it cannot be started.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        try:
            child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        except OSError as exc:
            raise ServingError(f"cannot start {' '.join(command)}: {exc}") from exc
    _CHILDREN[child.pid] = child
    return child


def wait_ready(
    child: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    module: str,
    log_path: Path,
    timeout_s: float,
    grace_s: float,
) -> None:
    """Wait until ``ready()``; stop the process and raise if it exits or times out first.

    Raises:
        ServingError: The process exited or was not ready in time; the message ends with its log.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            _CHILDREN.pop(child.pid, None)
            raise ServingError(
                f"{what} exited with code {child.returncode} before it was ready; "
                f"last lines of {log_path}:\n{tail(log_path)}"
            )
        if ready():
            return
        time.sleep(0.2)
    terminate(child.pid, module, grace_s)
    raise ServingError(
        f"{what} not ready after {timeout_s:.0f} s (stopped it); last lines of {log_path}:\n{tail(log_path)}"
    )
