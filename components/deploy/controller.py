"""The canary controller: step the traffic, judge, then promote or roll back.

One loop for every target. A ``CanaryRouter`` hides where the traffic is split and counted: the
local splitter (``components.deploy.local``) or an InferenceService
(``components.deploy.kserve.InferenceServiceRouter``). The controller moves the canary through
the policy's steps, analyses the traffic seen since the canary began every ``interval_s`` (each
analysis may close a paired latency window), and records every decision. Hold the target's
rollout lock around it: the controller does not take one itself.
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from components.deploy.canary import CanaryPolicy, LatencyWindows, VariantStats, Verdict, judge

__all__ = ["CanaryOutcome", "CanaryRouter", "run_canary"]


class CanaryRouter(Protocol):
    """Where a canary's traffic is split and counted."""

    def set_canary(self, percent: int) -> None:
        """Send ``percent`` of the inference traffic to the canary."""

    def stats(self) -> tuple[VariantStats, VariantStats]:
        """Cumulative stats of (stable, canary)."""

    def promote(self) -> None:
        """Give the canary all traffic; it becomes stable."""

    def roll_back(self) -> None:
        """Give stable all traffic and retire the canary."""


@dataclass(frozen=True)
class CanaryOutcome:
    """How a canary ended.

    Attributes:
        promoted: True when the canary took all traffic.
        verdict: The verdict that ended it.
        decisions: Every decision in order (``step`` verdicts and the last one).
    """

    promoted: bool
    verdict: Verdict
    decisions: tuple[Verdict, ...]


def _answered(stats: VariantStats) -> int:
    return stats.requests - stats.errors


def run_canary(
    router: CanaryRouter,
    policy: CanaryPolicy,
    *,
    record: Callable[[Verdict], None] = lambda verdict: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> CanaryOutcome:
    """Run one canary to its end.

    Args:
        router: The target.
        policy: Steps, margins and timings.
        record: Called with every decision (``step``, ``promote``, ``rollback``) as it is made.
        clock: Monotonic seconds.
        sleep: Waits between analyses.

    Returns:
        The outcome; the target has been promoted or rolled back.

    Raises:
        Exception: Whatever the router raises; the canary is rolled back first when it can be.
    """
    decisions: list[Verdict] = []
    try:
        start_stable, start_canary = copy.deepcopy(router.stats())  # a router may update its stats in place
        latency = LatencyWindows()
        for percent in policy.steps:
            router.set_canary(percent)
            step_began = clock()
            step_base = _answered(router.stats()[1])
            while True:
                sleep(policy.interval_s)
                stable, canary = router.stats()
                stable_since, canary_since = stable.minus(start_stable), canary.minus(start_canary)
                latency.observe(stable_since, canary_since, policy)
                verdict = judge(
                    stable_since,
                    canary_since,
                    latency,
                    policy,
                    percent=percent,
                    step_requests=_answered(canary) - step_base,
                    step_seconds=clock() - step_began,
                )
                if verdict.action == "continue":
                    continue
                decisions.append(verdict)
                record(verdict)
                if verdict.action == "rollback":
                    router.roll_back()
                    return CanaryOutcome(False, verdict, tuple(decisions))
                if verdict.action == "promote":
                    router.promote()
                    return CanaryOutcome(True, verdict, tuple(decisions))
                break
    except BaseException:
        router.roll_back()
        raise
    raise AssertionError("the last step promotes or rolls back")
