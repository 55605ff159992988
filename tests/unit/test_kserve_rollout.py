"""When a RawDeployment rollout's predictor container is given up on, read from real Kubernetes status objects."""

from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
)

from components.deploy.kserve import _why_stuck


def _status(state: V1ContainerState, restarts: int = 0, last: V1ContainerState | None = None) -> V1ContainerStatus:
    return V1ContainerStatus(
        name="kserve-container", image="serving", image_id="", ready=False, restart_count=restarts,
        state=state, last_state=last or V1ContainerState(),
    )  # fmt: skip


def _exited(code: int, message: str = "") -> V1ContainerState:
    return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, message=message))


def test_a_starting_or_running_container_may_yet_become_ready() -> None:
    assert _why_stuck(_status(V1ContainerState(waiting=V1ContainerStateWaiting(reason="ContainerCreating")))) == ""
    assert _why_stuck(_status(V1ContainerState(running=V1ContainerStateRunning()))) == ""


def test_a_first_exit_is_given_another_start_a_repeated_one_is_not() -> None:
    log = "Traceback (most recent call last):\nModelRegistryError: models:/m/404 not found"
    assert _why_stuck(_status(_exited(1, log))) == ""  # a transient failure (registry briefly down) is retried
    backing_off = V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"))
    why = _why_stuck(_status(backing_off, restarts=1, last=_exited(1, log)))
    assert why == "exited with code 1, restarted 1 time(s): ModelRegistryError: models:/m/404 not found"
    assert _why_stuck(_status(_exited(1), restarts=2)) == "exited with code 1, restarted 2 time(s)"


def test_a_clean_exit_and_a_missing_image_are_told_apart() -> None:
    assert _why_stuck(_status(_exited(0), restarts=1)) == ""  # a server that stopped cleanly is restarted
    pulling = V1ContainerState(waiting=V1ContainerStateWaiting(reason="ImagePullBackOff", message="not found"))
    assert _why_stuck(_status(pulling)) == "ImagePullBackOff: not found"
