"""Measured, not assumed: false-alarm rates on null replays and detection power on injected drift.

A replay draws a reference and a window of given sizes, without overlap, from one pool of real
rows shuffled afresh each time, so both sides come from the same distribution (a null replay);
a drift from ``components.drift.scenarios`` may then be injected into the window (a power
replay). A detector is any function of (reference, window) that answers whether it alarms. The
rate of alarms is reported with its Clopper–Pearson interval.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from components.common.errors import ConfigError
from components.drift.scenarios import Drift

__all__ = ["Detector", "Rate", "rate_of", "replay_rate"]

Detector = Callable[[pd.DataFrame, pd.DataFrame], dict[str, bool]]


@dataclass(frozen=True)
class Rate:
    """How often a detector alarmed over replays.

    Attributes:
        alarms: Replays on which it alarmed.
        replays: Replays run.
        rate: ``alarms / replays``.
        low: Lower bound of the 95% Clopper–Pearson interval.
        high: Upper bound of the 95% Clopper–Pearson interval.
    """

    alarms: int
    replays: int
    rate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """Return the rate as JSON-ready data."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.rate:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.alarms}/{self.replays})"


def rate_of(alarms: int, replays: int) -> Rate:
    """The rate with its 95% Clopper–Pearson interval."""
    interval = stats.binomtest(alarms, replays).proportion_ci(confidence_level=0.95, method="exact")
    return Rate(alarms, replays, alarms / replays, float(interval.low), float(interval.high))


def _first_bound_from(bounds: np.ndarray, row: int) -> int:
    """The first group boundary at or after ``row`` (the last one when none is)."""
    return int(bounds[min(int(np.searchsorted(bounds, row)), len(bounds) - 1)])


def replay_rate(
    pool: pd.DataFrame,
    detect: Detector,
    *,
    reference_rows: int,
    window_rows: int,
    replays: int = 200,
    drift: Drift | None = None,
    strength: float = 1.0,
    group_column: str | None = None,
    seed: int = 0,
) -> dict[str, Rate]:
    """Run detectors on replays drawn from one pool and count their alarms.

    Args:
        pool: Real rows, exchangeable once shuffled.
        detect: Gives named verdicts (alarm or not) on one reference and one window.
        reference_rows: Reference rows per replay.
        window_rows: Window rows per replay.
        replays: Replays to run.
        drift: Drift injected into every window (None for null replays).
        strength: The drift's strength in [0, 1].
        group_column: Rows sharing a value here are drawn together, onto one side (GDELT: an
            article's events, which share tone and often actors), as they arrive in production;
            sides then hold about the asked rows, to within one group.
        seed: Seed of the shuffles and the injections.

    Returns:
        Each verdict's alarm rate.

    Raises:
        ConfigError: When the pool is smaller than one reference and one window.
    """
    if reference_rows + window_rows > len(pool):
        raise ConfigError(f"a pool of {len(pool)} rows cannot hold {reference_rows} + {window_rows} disjoint rows")
    rng = np.random.default_rng(seed)
    alarms: dict[str, int] = {}
    codes = pd.factorize(pool[group_column])[0] if group_column else np.arange(len(pool))
    for _ in range(replays):
        rank = rng.permutation(codes.max() + 1)[codes]  # each group's place in a random order
        order = np.argsort(rank, kind="stable")
        bounds = np.r_[np.flatnonzero(np.r_[True, np.diff(rank[order]) != 0]), len(order)]
        cut = _first_bound_from(bounds, reference_rows)
        reference = pool.iloc[order[:cut]]
        window = pool.iloc[order[cut : _first_bound_from(bounds, cut + window_rows)]]
        if drift is not None:
            window = drift(window, strength, rng)
        for name, alarmed in detect(reference, window).items():
            alarms[name] = alarms.get(name, 0) + bool(alarmed)
    return {name: rate_of(count, replays) for name, count in alarms.items()}
