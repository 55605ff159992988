"""Drift injected into copies of real data, for tests and for calibrating the detectors.

Three kinds of drift, each a ``Drift``: a function of a frame, a strength in ``[0, 1]`` and a
random generator, returning a drifted copy:

- **covariate** (P(x) moves): a numeric column shifted by a number of its interquartile ranges,
  or a categorical column's values replaced by another category, on a ``strength`` share of rows;
- **prior** (P(y) moves): rows resampled so the label's positive rate moves toward a target;
- **concept** (P(y | x) moves, P(x) and P(y) do not): on a ``strength`` share of rows the target
  column's values are shuffled among themselves, cutting their tie to the features.

``drift_stream`` applies one of them over a sequence of batches on a schedule: **sudden** (full
strength from a batch on), **incremental** (the strength ramps up), **gradual** (rows come from the
drifted data with a probability that ramps up, the rest untouched) or **recurring** (on for a
period, off for a period). The input frames are never changed.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import ConfigError

__all__ = [
    "SCHEDULES",
    "Drift",
    "Schedule",
    "categorical_shift",
    "concept_shift",
    "drift_stream",
    "numeric_shift",
    "prior_shift",
]

SCHEDULES = ("sudden", "incremental", "gradual", "recurring")

Inject = Callable[[pd.DataFrame, float, np.random.Generator], pd.DataFrame]


@dataclass(frozen=True)
class Drift:
    """A drift to inject: called with (frame, strength in [0, 1], random generator), returns a drifted copy.

    Attributes:
        name: What it does, for reports (``numeric_shift(GoldsteinScale, 1.0 IQR)``).
        apply: The function.
        resamples: It draws new rows instead of changing rows in place (prior drift), so it
            cannot be mixed row for row (``gradual``).
    """

    name: str
    apply: Inject
    resamples: bool = False

    def __call__(self, frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        """Return a drifted copy of ``frame`` at ``strength``."""
        return self.apply(frame, strength, rng)


def _rows(frame: pd.DataFrame, share: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask choosing ``share`` of the rows at random (exactly round(share * n) of them)."""
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"a drift's strength must be within [0, 1], got {share}")
    mask = np.zeros(len(frame), dtype=bool)
    mask[rng.choice(len(frame), size=round(share * len(frame)), replace=False)] = True
    return mask


def numeric_shift(column: str, iqrs: float) -> Drift:
    """Covariate drift: add ``iqrs`` interquartile ranges of ``column`` to a share of its rows.

    Args:
        column: A numeric column.
        iqrs: Size of the shift in the column's interquartile ranges (negative moves down).

    Returns:
        The drift.
    """

    def inject(frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        values = pd.to_numeric(frame[column], errors="coerce")
        q1, q3 = values.quantile([0.25, 0.75])
        scale = (q3 - q1) or values.std() or 1.0
        drifted = frame.copy()
        drifted[column] = values.astype("float64")
        mask = _rows(frame, strength, rng) & values.notna().to_numpy()
        drifted.loc[mask, column] += iqrs * scale
        return drifted

    return Drift(f"numeric_shift({column}, {iqrs:g} IQR)", inject)


def categorical_shift(column: str, to: Any) -> Drift:
    """Covariate drift: set a share of ``column``'s values to ``to``, a category (new or not) of its type."""

    def inject(frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        drifted = frame.copy()
        drifted.loc[_rows(frame, strength, rng), column] = to
        return drifted

    return Drift(f"categorical_shift({column} → {to})", inject)


def prior_shift(positive: Callable[[pd.DataFrame], pd.Series], target_rate: float) -> Drift:
    """Prior drift: resample rows (same count) so the positive rate moves toward ``target_rate``.

    At strength ``s`` the rate becomes ``(1 - s) * rate + s * target_rate``; positives and
    negatives are each drawn from their own rows, with replacement only when there are too few.

    Args:
        positive: Labels of a frame's rows as booleans (e.g. ``AvgTone < -5``).
        target_rate: Positive rate at full strength, within (0, 1).

    Returns:
        The drift.
    """
    if not 0.0 < target_rate < 1.0:
        raise ConfigError(f"target_rate must be within (0, 1), got {target_rate}")

    def inject(frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        if not 0.0 <= strength <= 1.0:
            raise ConfigError(f"a drift's strength must be within [0, 1], got {strength}")
        labels = positive(frame).to_numpy(dtype=bool)
        rate = (1 - strength) * labels.mean() + strength * target_rate
        wanted = round(rate * len(frame))
        picks = []
        for pool, count in ((np.flatnonzero(labels), wanted), (np.flatnonzero(~labels), len(frame) - wanted)):
            if count and not len(pool):
                raise ConfigError("prior_shift needs rows of both labels")
            picks.append(rng.choice(pool, size=count, replace=count > len(pool)))
        order = rng.permutation(np.concatenate(picks))
        return frame.iloc[order].reset_index(drop=True)

    return Drift(f"prior_shift(rate → {target_rate:g})", inject, resamples=True)


def concept_shift(target_column: str) -> Drift:
    """Concept drift: shuffle ``target_column`` among a share of rows (P(x) and P(y) unchanged)."""

    def inject(frame: pd.DataFrame, strength: float, rng: np.random.Generator) -> pd.DataFrame:
        drifted = frame.copy()
        rows = np.flatnonzero(_rows(frame, strength, rng))
        column = drifted.columns.get_loc(target_column)
        drifted.iloc[rows, column] = drifted.iloc[rng.permutation(rows), column].to_numpy()
        return drifted

    return Drift(f"concept_shift({target_column} shuffled)", inject)


@dataclass(frozen=True)
class Schedule:
    """How a drift unfolds over a sequence of batches.

    Attributes:
        kind: ``sudden``, ``incremental``, ``gradual`` or ``recurring``.
        start: Index of the first drifted batch.
        length: Batches the ramp takes to reach full strength (incremental, gradual).
        period: Batches on, then as many off (recurring).
    """

    kind: str
    start: int
    length: int = 1
    period: int = 1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ConfigError(f"schedule kind {self.kind!r} is not one of {SCHEDULES}")
        if self.start < 0 or self.length < 1 or self.period < 1:
            raise ConfigError(f"a schedule needs start >= 0, length >= 1 and period >= 1: {self}")

    def level(self, step: int) -> float:
        """Drift level at batch ``step``, in [0, 1] (a strength, or for ``gradual`` a row share)."""
        if step < self.start:
            return 0.0
        if self.kind in ("incremental", "gradual"):
            return min(1.0, (step - self.start + 1) / self.length)
        if self.kind == "recurring":
            return 1.0 if (step - self.start) // self.period % 2 == 0 else 0.0
        return 1.0


def drift_stream(
    batches: Sequence[pd.DataFrame], drift: Drift, schedule: Schedule, *, seed: int = 0
) -> list[pd.DataFrame]:
    """Drifted copies of a sequence of batches, following a schedule.

    For ``gradual`` each row independently comes from the fully drifted batch with probability
    ``level`` (two concepts mixed); every other kind applies the drift at strength ``level``.
    Prior drift resamples rows, so ``gradual`` is refused for it: use ``incremental``.

    Args:
        batches: Batches in time order (unchanged).
        drift: The drift.
        schedule: How it unfolds.
        seed: Seed of the random generator (the stream is reproducible).

    Returns:
        One frame per batch; batches before ``schedule.start`` are returned as they are.

    Raises:
        ConfigError: A ``gradual`` schedule for a drift that resamples rows.
    """
    if schedule.kind == "gradual" and drift.resamples:
        raise ConfigError(f"gradual drift mixes rows one for one: {drift.name} resamples rows (use incremental)")
    rng = np.random.default_rng(seed)
    stream = []
    for step, batch in enumerate(batches):
        level = schedule.level(step)
        if level == 0.0:
            stream.append(batch)
        elif schedule.kind == "gradual":
            drifted = drift(batch, 1.0, rng)
            mixed = batch.copy()
            chosen = rng.random(len(batch)) < level
            mixed.loc[chosen] = drifted.loc[chosen]
            stream.append(mixed)
        else:
            stream.append(drift(batch, level, rng))
    return stream
