"""Online change detection on one stream of numbers: a served model's scores or its errors.

The batch drift test (``components.drift.core``) compares a reference table with a new batch;
this module watches a stream one value at a time with River's detectors, ADWIN (an adaptive
window whose two halves' means are compared with a Hoeffding-style bound) or Page-Hinkley (a
CUSUM of deviations from the running mean). Two signals are worth watching:

- ``score``: the model's predicted probability, available without labels; a change means the
  inputs (or the model) changed, not necessarily that the model got worse;
- ``error``: 0/1 misclassifications (or absolute errors of a regressor) once labels arrive; a
  change means the model's accuracy moved.

Missing values (None, NaN, ±inf, non-numbers) are skipped and counted, never fed to a detector:
one NaN would turn River's running statistics into NaN for good.

A detector says *that* the stream changed, late by construction; where it changed is estimated
afterwards on the latest values, as the split that best separates two means (the maximum-
likelihood single change point), so an alarm reports the level before and after the change and
how long ago it began.
"""

import math
import numbers
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from typing import ClassVar

from river import drift

from components.common.errors import ConfigError

__all__ = [
    "SIGNALS",
    "AdwinSettings",
    "DriftAlarm",
    "OnlineDriftConfig",
    "OnlineDriftDetector",
    "PageHinkleySettings",
    "absolute_errors",
    "detect_changes",
    "misclassification_errors",
]

SIGNALS = ("score", "error")
"""What a stream holds: the model's scores (no labels needed) or its errors (labels needed)."""

_PH_MODES = ("up", "down", "both")


def _require_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _require_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class AdwinSettings:
    """ADWIN's parameters (River's defaults).

    Attributes:
        delta: Significance of the test that the window's two halves have the same mean, in
            (0, 1); smaller means fewer false alarms and later detections.
        clock: Values between two checks for a change; 1 checks at every value.
        max_buckets: Buckets of each size kept before two are merged (memory vs. precision).
        min_window_length: Fewest values either half of the window may hold.
        grace_period: Values seen before the first check.
    """

    name: ClassVar[str] = "adwin"

    delta: float = 0.002
    clock: int = 32
    max_buckets: int = 5
    min_window_length: int = 5
    grace_period: int = 10

    def __post_init__(self) -> None:
        if not 0 < _require_number("ADWIN delta", self.delta) < 1:
            raise ConfigError(f"ADWIN delta must be in (0, 1), got {self.delta!r}")
        _require_int("ADWIN clock", self.clock, 1)
        _require_int("ADWIN max_buckets", self.max_buckets, 1)
        _require_int("ADWIN min_window_length", self.min_window_length, 1)
        _require_int("ADWIN grace_period", self.grace_period, 0)


@dataclass(frozen=True)
class PageHinkleySettings:
    """Page-Hinkley's parameters (River's defaults).

    ``threshold`` and ``delta`` are in the stream's units: River's default threshold of 50 suits
    values of unit scale (e.g. z-scores); for probabilities in [0, 1] a threshold near 1 is
    comparable.

    Attributes:
        min_instances: Values seen before the first check.
        delta: Deviation from the running mean tolerated per value.
        threshold: Cumulated deviation that raises an alarm (lambda).
        alpha: Forgetting factor of the cumulated deviation, in (0, 1].
        mode: ``up`` (increases only), ``down`` or ``both``.
    """

    name: ClassVar[str] = "page-hinkley"

    min_instances: int = 30
    delta: float = 0.005
    threshold: float = 50.0
    alpha: float = 0.9999
    mode: str = "both"

    def __post_init__(self) -> None:
        _require_int("Page-Hinkley min_instances", self.min_instances, 1)
        if _require_number("Page-Hinkley delta", self.delta) < 0:
            raise ConfigError(f"Page-Hinkley delta must be >= 0, got {self.delta!r}")
        if not _require_number("Page-Hinkley threshold", self.threshold) > 0:
            raise ConfigError(f"Page-Hinkley threshold must be > 0, got {self.threshold!r}")
        if not 0 < _require_number("Page-Hinkley alpha", self.alpha) <= 1:
            raise ConfigError(f"Page-Hinkley alpha must be in (0, 1], got {self.alpha!r}")
        if self.mode not in _PH_MODES:
            raise ConfigError(f"Page-Hinkley mode must be one of {', '.join(_PH_MODES)}, got {self.mode!r}")


@dataclass(frozen=True)
class OnlineDriftConfig:
    """Which detector watches a stream, and when its detections count as alarms.

    Attributes:
        detector: ADWIN's or Page-Hinkley's settings; the type chooses the detector.
        signal: What the stream holds, one of ``SIGNALS`` (recorded with each alarm).
        warmup: Valid values seen before a detection counts as an alarm; a detection during
            warm-up still restarts the detector (a fresh deployment's first scores settle).
        history: Latest values kept to locate a change once it is detected (8 bytes each).
    """

    detector: AdwinSettings | PageHinkleySettings = field(default_factory=AdwinSettings)
    signal: str = "score"
    warmup: int = 100
    history: int = 2000

    def __post_init__(self) -> None:
        if not isinstance(self.detector, AdwinSettings | PageHinkleySettings):
            raise ConfigError(
                f"detector must be AdwinSettings or PageHinkleySettings, got {type(self.detector).__name__}"
            )
        if self.signal not in SIGNALS:
            raise ConfigError(f"signal must be one of {', '.join(SIGNALS)}, got {self.signal!r}")
        _require_int("warmup", self.warmup, 0)
        _require_int("history", self.history, 2)


@dataclass(frozen=True)
class DriftAlarm:
    """A change a detector found, after warm-up.

    Attributes:
        index: Position in the stream of the value that raised it, 0-based, counting skipped
            values too (the index of ``values`` in ``detect_changes``).
        observation: Valid values seen up to and including it.
        change_observation: Estimated first valid value of the new regime (same count as
            ``observation``); ``observation - change_observation`` is the detection delay.
        at: The time given with the value (seconds since the epoch), None when none was given.
        detector: ``adwin`` or ``page-hinkley``.
        signal: ``score`` or ``error``.
        mean_before: Mean of the values from the previous change (or the start) up to the
            estimated change; NaN when there are none.
        count_before: How many values ``mean_before`` averages.
        mean_after: Mean of the values from the estimated change up to the alarm.
        count_after: How many values ``mean_after`` averages.
    """

    index: int
    observation: int
    change_observation: int
    at: float | None
    detector: str
    signal: str
    mean_before: float
    count_before: int
    mean_after: float
    count_after: int


def _split(values: Sequence[float]) -> int:
    """Where one change of mean best splits the values: the maximum-likelihood change point.

    Returns:
        The first index of the second part, in 1..len(values)-1 (0 for fewer than two values).
    """
    n = len(values)
    if n < 2:
        return 0
    sums = list(accumulate(values))
    total = sums[-1]
    best, best_k = -1.0, 1
    for k in range(1, n):
        gap = sums[k - 1] / k - (total - sums[k - 1]) / (n - k)
        statistic = k * (n - k) / n * gap * gap
        if statistic > best:
            best, best_k = statistic, k
    return best_k


def _finite(value: object) -> float | None:
    """The value as a float, or None when it is missing, not a real number, NaN or infinite."""
    if value is None or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class OnlineDriftDetector:
    """Feeds one stream, value by value, to ADWIN or Page-Hinkley and keeps what it found.

    Besides the River detector it keeps the running sum and count of the current segment (the
    values since the last change) and its latest ``history`` values; on a detection it splits
    those at the most likely change point, so each alarm carries the mean before and after the
    change, and the new segment starts there. Not thread-safe: the caller serialises ``update``.

    Args:
        config: The detector and its warm-up; defaults to ADWIN on scores.

    Attributes:
        config: The configuration.
        seen: Values given to ``update``, skipped ones included.
        observations: Valid values fed to the detector.
        skipped: Values skipped as missing (None, NaN, ±inf, not a number).
        alarms: Detections after warm-up.
        last_alarm: The latest alarm, None before the first.
    """

    def __init__(self, config: OnlineDriftConfig | None = None) -> None:
        self.config = config or OnlineDriftConfig()
        settings = self.config.detector
        self._detector: drift.ADWIN | drift.PageHinkley
        # The settings' fields are River's own parameter names.
        if isinstance(settings, AdwinSettings):
            self._detector = drift.ADWIN(**asdict(settings))
        else:
            self._detector = drift.PageHinkley(**asdict(settings))
        self.seen = 0
        self.observations = 0
        self.skipped = 0
        self.alarms = 0
        self.last_alarm: DriftAlarm | None = None
        self._sum = 0.0
        self._count = 0
        self._history: deque[float] = deque(maxlen=self.config.history)

    @property
    def detector_name(self) -> str:
        """``adwin`` or ``page-hinkley``."""
        return self.config.detector.name

    @property
    def mean(self) -> float:
        """Running mean of the current segment (since the last change, or the start); NaN when empty."""
        return self._sum / self._count if self._count else math.nan

    def update(self, value: float | None, *, at: float | None = None) -> DriftAlarm | None:
        """Feed one value.

        Args:
            value: The next value of the stream; None, NaN, ±inf and non-numbers are skipped
                and counted in ``skipped``.
            at: When the value was observed, seconds since the epoch (kept in the alarm).

        Returns:
            The alarm when the detector found a change after warm-up, else None.
        """
        index = self.seen
        self.seen += 1
        number = _finite(value)
        if number is None:
            self.skipped += 1
            return None
        self.observations += 1
        self._sum += number
        self._count += 1
        self._history.append(number)
        self._detector.update(number)
        if not self._detector.drift_detected:
            return None
        recent = list(self._history)
        after = recent[_split(recent) :]
        after_sum, after_count = math.fsum(after), len(after)
        before_count = self._count - after_count
        before_mean = (self._sum - after_sum) / before_count if before_count > 0 else math.nan
        # The new segment starts at the estimated change (River restarts its detector empty).
        self._sum, self._count = after_sum, after_count
        self._history.clear()
        self._history.extend(after)
        if self.observations <= self.config.warmup:
            return None
        self.alarms += 1
        self.last_alarm = DriftAlarm(
            index=index,
            observation=self.observations,
            change_observation=self.observations - after_count + 1,
            at=at,
            detector=self.detector_name,
            signal=self.config.signal,
            mean_before=before_mean,
            count_before=before_count,
            mean_after=after_sum / after_count,
            count_after=after_count,
        )
        return self.last_alarm


def detect_changes(values: Iterable[float | None], *, config: OnlineDriftConfig | None = None) -> list[int]:
    """Replay a stream through a fresh detector.

    Args:
        values: The stream in time order; missing values are skipped but keep their position.
        config: The detector and its warm-up; defaults to ADWIN on scores.

    Returns:
        Positions in ``values`` (0-based) of the values that raised an alarm.
    """
    detector = OnlineDriftDetector(config)
    return [alarm.index for value in values if (alarm := detector.update(value)) is not None]


def _pairs(predictions: Sequence[float | None], labels: Sequence[float | None]) -> list[tuple[float, float] | None]:
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    result: list[tuple[float, float] | None] = []
    for prediction, label in zip(predictions, labels, strict=True):
        p, y = _finite(prediction), _finite(label)
        result.append(None if p is None or y is None else (p, y))
    return result


def misclassification_errors(
    *, scores: Sequence[float | None], labels: Sequence[float | None], threshold: float = 0.5
) -> list[float]:
    """The ``error`` signal of a binary classifier: 1.0 where it was wrong, 0.0 where right.

    Args:
        scores: P(label = 1) per row.
        labels: The true labels, 0 or 1, per row.
        threshold: Scores at or above it predict 1.

    Returns:
        One value per row; NaN where the score or the label is missing.

    Raises:
        ValueError: ``scores`` and ``labels`` differ in length.
    """
    return [
        math.nan if pair is None else float((pair[0] >= threshold) != (pair[1] >= 0.5))
        for pair in _pairs(scores, labels)
    ]


def absolute_errors(*, predictions: Sequence[float | None], labels: Sequence[float | None]) -> list[float]:
    """The ``error`` signal of a regressor: ``|prediction - label|`` per row.

    Args:
        predictions: The predictions, in the label's units.
        labels: The true values.

    Returns:
        One value per row; NaN where the prediction or the label is missing.

    Raises:
        ValueError: ``predictions`` and ``labels`` differ in length.
    """
    return [math.nan if pair is None else abs(pair[0] - pair[1]) for pair in _pairs(predictions, labels)]
