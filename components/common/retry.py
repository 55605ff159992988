"""Retry a call that reaches a remote service (the tracking server, the object store) with backoff."""

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from components.common.errors import DriftpilotError

__all__ = ["RetryPolicy", "retrying"]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        attempts: Calls in all (1: no retry).
        initial_s: Wait before the second call; it doubles each time.
        max_wait_s: Longest single wait.
    """

    attempts: int = 4
    initial_s: float = 1.0
    max_wait_s: float = 15.0

    @classmethod
    def from_env(cls) -> "RetryPolicy":
        """The policy set by ``DRIFTPILOT_RETRY_ATTEMPTS`` and ``DRIFTPILOT_RETRY_INITIAL_S``."""
        return cls(
            attempts=int(os.environ.get("DRIFTPILOT_RETRY_ATTEMPTS", cls.attempts)),
            initial_s=float(os.environ.get("DRIFTPILOT_RETRY_INITIAL_S", cls.initial_s)),
        )


def retrying(
    call: Callable[[], T],
    *,
    what: str,
    error: type[DriftpilotError],
    transient: Callable[[BaseException], bool],
    policy: RetryPolicy | None = None,
) -> T:
    """Run ``call``, retrying transient failures with exponential backoff.

    Args:
        call: The call.
        what: What the call does, for the error (``register version 3 of gdelt-tone``).
        error: The error raised when every attempt failed.
        transient: Whether a failure is worth another attempt; any other is raised at once.
        policy: Attempts and waits (default: ``RetryPolicy.from_env()``).

    Returns:
        What ``call`` returned.

    Raises:
        DriftpilotError: Of type ``error``, naming ``what``, the attempts and the last cause.
    """
    from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    policy = policy or RetryPolicy.from_env()
    retryer = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.initial_s, max=policy.max_wait_s),
        retry=retry_if_exception(transient),
        before_sleep=lambda state: log.warning(
            "%s failed (attempt %d of %d): %s",
            what,
            state.attempt_number,
            policy.attempts,
            state.outcome.exception() if state.outcome else None,
        ),
    )
    try:
        return retryer(call)
    except RetryError as exc:
        cause = exc.last_attempt.exception()
    # Raised outside the handler, so the error does not carry tenacity's RetryError as its context
    # (its future holds a lock: the error could not be pickled back from a Dask worker).
    raise error(f"could not {what} after {policy.attempts} attempts: {cause}") from cause
