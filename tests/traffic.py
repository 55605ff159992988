"""Simulated canary traffic for where live traffic cannot run: no kubelet, no Knative here."""

import math
from collections.abc import Callable

import numpy as np

from components.deploy.canary import VariantStats


def add_request(
    rng: np.random.Generator,
    stats: VariantStats,
    *,
    error_rate: float = 0.01,
    latency: float = 0.01,
    score_shift: float = 0.0,
    loss: float = 0.0,
) -> None:
    """One request: an error, or an answer with a latency, a score and (half the time) a labelled loss."""
    stats.requests += 1
    if rng.random() < error_rate:
        stats.errors += 1
        return
    stats.latency.add(math.log(latency * rng.lognormal(0, 0.3)))
    stats.scores.add(float(np.clip(rng.beta(2, 6) + score_shift, 0, 1)))
    if rng.random() < 0.5:
        stats.log_loss.add(float(rng.exponential(0.45)) + loss)


class SimulatedTraffic:
    """Traffic split as the target says: each read adds ``per_read`` requests, a share to the canary.

    Args:
        seed: Random seed.
        share: Reads the canary's current traffic share (percent) from the target.
        per_read: Requests added per read.
        canary: How the canary differs (``add_request`` keywords).
    """

    def __init__(self, seed: int, share: Callable[[], int], per_read: int = 100, **canary: float) -> None:
        self.rng = np.random.default_rng(seed)
        self.share = share
        self.per_read = per_read
        self.canary_quality = canary
        self.stable, self.canary = VariantStats("stable"), VariantStats("canary")

    def __call__(self) -> tuple[VariantStats, VariantStats]:
        percent = self.share()
        for _ in range(self.per_read):
            if self.rng.random() * 100 < percent:
                add_request(self.rng, self.canary, **self.canary_quality)
            else:
                add_request(self.rng, self.stable)
        return self.stable, self.canary
