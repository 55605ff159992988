"""Canary analysis: is the new model worse than the one it replaces, on live traffic?

Both variants serve real requests at the same time; for each the traffic source keeps running
sums (``VariantStats``). Four checks compare canary with stable, each on a per-request quantity:

* ``errors``: the share of requests not answered 2xx (a transport failure counts);
* ``latency``: the log latency, so the margin is a ratio (25% slower by default), compared in
  paired windows: both variants' mean over the same stretch of time, after the canary's warm-up
  (``LatencyWindows``). A load on the host slows both alike, so it cancels out of each window's
  difference instead of being read as a slower canary;
* ``divergence``: the mean predicted score, two-sided (a model that moves every score by more
  than the margin is not the one the gate judged);
* ``log_loss``: the mean log loss on requests whose labels have arrived (delayed labels).

Each check is a sequential test: an always-valid confidence sequence for the difference of
the two means (Johari, Pekelis & Walsh 2017, the normal-mixture mSPRT inverted into an
interval). The interval may be looked at after every request and still covers the true
difference at every look with probability ``1 − alpha``, so a controller that re-analyses
as often as it likes rolls back a canary that is no worse than the margin with probability at
most ``alpha`` per check. A check fails when the whole interval lies on the wrong side of its
margin, passes when it lies on the right side, and stays open otherwise.
"""

import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "ACTIONS",
    "CanaryPolicy",
    "Check",
    "LatencyWindows",
    "Moments",
    "VariantStats",
    "Verdict",
    "analyse",
    "confidence_radius",
    "judge",
]

ACTIONS = ("continue", "step", "promote", "rollback")
Status = Literal["pass", "fail", "open", "pending"]


@dataclass
class Moments:
    """Running count, sum and sum of squares of one per-request quantity.

    Attributes:
        n: Observations.
        total: Their sum.
        squares: The sum of their squares.
    """

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        """Count one observation."""
        self.n += 1
        self.total += value
        self.squares += value * value

    def minus(self, earlier: "Moments") -> "Moments":
        """The observations made since ``earlier`` (a snapshot of the same sums)."""
        return Moments(self.n - earlier.n, self.total - earlier.total, self.squares - earlier.squares)

    @property
    def mean(self) -> float:
        """The mean (0 without observations)."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The sample variance (0 below two observations)."""
        if self.n < 2:
            return 0.0
        return max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Moments":
        """Read ``{"n", "total", "squares"}``."""
        return cls(int(data["n"]), float(data["total"]), float(data["squares"]))


@dataclass
class VariantStats:
    """What one variant's traffic looked like so far (cumulative).

    Attributes:
        version: The model version the variant serves.
        requests: Requests routed to it.
        errors: Those not answered 2xx (transport failures included).
        latency: Log seconds of the answered requests.
        scores: Predicted scores (one per row).
        log_loss: Log loss of the rows whose label arrived.
    """

    version: str
    requests: int = 0
    errors: int = 0
    latency: Moments = field(default_factory=Moments)
    scores: Moments = field(default_factory=Moments)
    log_loss: Moments = field(default_factory=Moments)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return asdict(self)

    def minus(self, earlier: "VariantStats") -> "VariantStats":
        """The traffic seen since ``earlier`` (a snapshot of the same variant)."""
        return VariantStats(
            version=self.version,
            requests=self.requests - earlier.requests,
            errors=self.errors - earlier.errors,
            latency=self.latency.minus(earlier.latency),
            scores=self.scores.minus(earlier.scores),
            log_loss=self.log_loss.minus(earlier.log_loss),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VariantStats":
        """Read the form ``to_dict`` writes."""
        return cls(
            version=str(data["version"]),
            requests=int(data["requests"]),
            errors=int(data["errors"]),
            latency=Moments.from_dict(data["latency"]),
            scores=Moments.from_dict(data["scores"]),
            log_loss=Moments.from_dict(data["log_loss"]),
        )


@dataclass(frozen=True)
class CanaryPolicy:
    """How a canary is stepped and judged.

    Attributes:
        steps: Canary traffic percentages, in order; passing the last one promotes.
        min_requests: Canary requests each step must see answered (2xx) before it can pass.
        min_samples: Observations per variant (for latency: paired windows) before a check is
            tested at all (the interval is asymptotic).
        alpha: Chance, per check, of rolling back a canary that is within its margin.
        error_margin: Tolerated rise in the error share (absolute).
        latency_ratio: Tolerated ratio of geometric-mean latencies.
        score_margin: Tolerated shift of the mean score, either way.
        log_loss_margin: Tolerated rise in log loss on labelled rows.
        step_timeout_s: A step that does not get ``min_requests`` in this time ends the canary
            with a rollback (no evidence is no promotion).
        interval_s: Seconds between analyses.
        warmup_requests: Canary requests answered before its latency counts: a process just
            started answers its first requests slowly (lazy imports, cold caches, thread pools).
        window_requests: Answered requests each variant needs before a latency window closes.
    """

    steps: tuple[int, ...] = (10, 25, 50)
    min_requests: int = 200
    min_samples: int = 30
    alpha: float = 0.05
    error_margin: float = 0.01
    latency_ratio: float = 1.25
    score_margin: float = 0.1
    log_loss_margin: float = 0.02
    step_timeout_s: float = 300.0
    interval_s: float = 1.0
    warmup_requests: int = 50
    window_requests: int = 5

    def __post_init__(self) -> None:
        if not self.steps or any(not 0 < s < 100 for s in self.steps) or list(self.steps) != sorted(set(self.steps)):
            raise ValueError(f"steps={self.steps}: give increasing percentages strictly between 0 and 100")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha={self.alpha} must be within (0, 1)")
        if self.latency_ratio <= 1 or min(self.error_margin, self.score_margin, self.log_loss_margin) <= 0:
            raise ValueError("margins must be positive and latency_ratio above 1")
        if self.warmup_requests < 0 or self.window_requests < 1:
            raise ValueError("warmup_requests must be at least 0 and window_requests at least 1")

    @classmethod
    def from_json(cls, text: str) -> "CanaryPolicy":
        """Read a policy from a JSON object of some of its fields (the rest keep their defaults).

        Raises:
            ValueError: When the text is not such an object or a value is out of range.
        """
        data = json.loads(text or "{}")
        if not isinstance(data, dict):
            raise ValueError(f"a canary policy is a JSON object of fields, not {text!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown canary policy field(s) {unknown}; known: {sorted(known)}")
        if "steps" in data:
            data["steps"] = tuple(int(step) for step in data["steps"])
        return cls(**data)


@dataclass
class LatencyWindows:
    """Latency compared in paired windows: canary minus stable over the same stretch of time.

    ``observe`` is fed the cumulative stats since the canary began, at every analysis. The first
    window opens once the canary has answered ``warmup_requests``; a window closes when both
    variants have answered ``window_requests`` in it, and the difference of their mean log
    latencies in it is one observation. Both means come from requests served at the same time,
    so what the host's load does to both cancels; the windows' spread measures what is left.

    Attributes:
        differences: The closed windows' differences (canary − stable, log seconds).
        opened: The (stable, canary) latency sums where the open window began; None in warm-up.
    """

    differences: Moments = field(default_factory=Moments)
    opened: tuple[Moments, Moments] | None = None

    def observe(self, stable: VariantStats, canary: VariantStats, policy: CanaryPolicy) -> None:
        """Close the open window when both variants have filled it (open the first after warm-up)."""
        if self.opened is None:
            if canary.latency.n >= policy.warmup_requests:
                self.opened = (replace(stable.latency), replace(canary.latency))
            return
        in_stable, in_canary = stable.latency.minus(self.opened[0]), canary.latency.minus(self.opened[1])
        if min(in_stable.n, in_canary.n) >= policy.window_requests:
            self.differences.add(in_canary.mean - in_stable.mean)
            self.opened = (replace(stable.latency), replace(canary.latency))


@dataclass(frozen=True)
class Check:
    """One comparison of canary with stable.

    Attributes:
        name: ``errors``, ``latency``, ``divergence`` or ``log_loss``.
        difference: Canary minus stable.
        low: Low end of the confidence sequence of the difference.
        high: High end.
        margin: The tolerated difference.
        samples: Observations (stable, canary).
        status: ``pass``, ``fail``, ``open`` (not decided yet) or ``pending`` (too few samples).
        leans_worse: Open with the difference itself beyond the margin: not proven worse, but
            the evidence so far says so (a step does not end on it).
    """

    name: str
    difference: float
    low: float
    high: float
    margin: float
    samples: tuple[int, int]
    status: Status
    leans_worse: bool = False


@dataclass(frozen=True)
class Verdict:
    """What the controller does next.

    Attributes:
        action: ``continue`` (same step), ``step`` (next traffic step), ``promote`` or ``rollback``.
        reason: Plain-language reason.
        percent: Canary traffic share when analysed.
        checks: The checks it rests on.
        stable: Stable's stats analysed.
        canary: Canary's stats analysed.
    """

    action: str
    reason: str
    percent: int
    checks: tuple[Check, ...]
    stable: VariantStats
    canary: VariantStats

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the verdict log's line)."""
        return {
            "action": self.action,
            "reason": self.reason,
            "percent": self.percent,
            "checks": [asdict(c) for c in self.checks],
            "stable": self.stable.to_dict(),
            "canary": self.canary.to_dict(),
        }


def confidence_radius(variance: float, alpha: float, tau2: float) -> float:
    """Half-width of the always-valid confidence interval of a difference of means.

    From the normal-mixture mSPRT: with ``V`` the variance of the estimate ``d`` and ``τ²`` the
    mixture's variance, the mixture likelihood ratio of ``θ`` reaches ``1/alpha`` exactly when
    ``(d − θ)² ≥ 2 V (V + τ²) / τ² · (ln(1/alpha) + ½ ln((V + τ²) / V))``.

    Args:
        variance: Variance of the estimate (sum of the two means' variances).
        alpha: Error rate the interval controls over all looks.
        tau2: Mixture variance: the squared scale of the effects the test is tuned to find.

    Returns:
        The half-width (infinite when ``variance`` is not positive).
    """
    if variance <= 0:
        return math.inf
    spread = math.log(1 / alpha) + 0.5 * math.log((variance + tau2) / variance)
    return math.sqrt(2 * variance * (variance + tau2) / tau2 * spread)


def _bernoulli_variance(hits: int, n: int) -> float:
    """Variance of a share, smoothed so that zero errors still leave some doubt."""
    p = (hits + 1) / (n + 2)
    return p * (1 - p) / n


Estimate = tuple[float, float, float, tuple[int, int]]
"""A check's difference, the variance of it now and at one step's worth of data, and its samples."""


def _shares(stable: tuple[int, int], canary: tuple[int, int], policy: CanaryPolicy) -> Estimate:
    """The difference of two shares (hits, n): canary minus stable."""
    (s_hits, s_n), (c_hits, c_n) = stable, canary
    difference = (c_hits / c_n if c_n else 0.0) - (s_hits / s_n if s_n else 0.0)
    variance = _bernoulli_variance(s_hits, s_n) + _bernoulli_variance(c_hits, c_n) if s_n and c_n else 0.0
    pooled = (s_hits + c_hits + 1) / (s_n + c_n + 2)
    return difference, variance, 2 * pooled * (1 - pooled) / policy.min_requests, (s_n, c_n)


def _means(stable: Moments, canary: Moments, policy: CanaryPolicy) -> Estimate:
    """The difference of two independent means: canary minus stable."""
    difference = canary.mean - stable.mean
    variance = stable.variance / stable.n + canary.variance / canary.n if stable.n and canary.n else 0.0
    return difference, variance, (stable.variance + canary.variance) / policy.min_requests, (stable.n, canary.n)


def _paired(differences: Moments, policy: CanaryPolicy) -> Estimate:
    """The mean of paired differences (one per window; a step holds about ``min_requests / window_requests``)."""
    variance = differences.variance / differences.n if differences.n else 0.0
    step_variance = differences.variance * policy.window_requests / policy.min_requests
    return differences.mean, variance, step_variance, (differences.n, differences.n)


def _test(name: str, estimate: Estimate, margin: float, policy: CanaryPolicy, *, two_sided: bool = False) -> Check:
    """Fail when the canary is surely worse (higher) than stable by over ``margin``; pass when surely within."""
    difference, variance, step_variance, samples = estimate
    if min(samples) < policy.min_samples:
        return Check(name, difference, -math.inf, math.inf, margin, samples, "pending")
    # The mixture is tuned to the difference's variance at one step's worth of requests (and to
    # effects at least the margin's size): the interval is then tightest where decisions fall.
    width = confidence_radius(variance, policy.alpha, max(margin * margin, step_variance))
    low, high = difference - width, difference + width
    if two_sided:
        worse, within = low > margin or high < -margin, -margin < low and high < margin
    else:
        worse, within = low > margin, high < margin
    status: Status = "fail" if worse else "pass" if within else "open"
    leans = status == "open" and (abs(difference) if two_sided else difference) > margin
    return Check(name, difference, low, high, margin, samples, status, leans)


def analyse(
    stable: VariantStats, canary: VariantStats, latency: LatencyWindows, policy: CanaryPolicy
) -> tuple[Check, ...]:
    """Run the four checks on the two variants' stats so far.

    Args:
        stable: The serving model's stats.
        canary: The new model's stats.
        latency: Their paired latency windows.
        policy: Margins and error rate.

    Returns:
        The ``errors``, ``latency``, ``divergence`` and ``log_loss`` checks.
    """
    errors = _shares((stable.errors, stable.requests), (canary.errors, canary.requests), policy)
    return (
        _test("errors", errors, policy.error_margin, policy),
        _test("latency", _paired(latency.differences, policy), math.log(policy.latency_ratio), policy),
        _test("divergence", _means(stable.scores, canary.scores, policy), policy.score_margin, policy, two_sided=True),
        _test("log_loss", _means(stable.log_loss, canary.log_loss, policy), policy.log_loss_margin, policy),
    )


def _said(checks: list[Check]) -> str:
    """The checks' differences with their intervals and margins, for a verdict's reason."""
    return "; ".join(
        f"{c.name} canary − stable = {c.difference:+.4g} (interval {c.low:+.4g} … {c.high:+.4g}, margin {c.margin:.4g})"
        for c in checks
    )


def judge(
    stable: VariantStats,
    canary: VariantStats,
    latency: LatencyWindows,
    policy: CanaryPolicy,
    *,
    percent: int,
    step_requests: int,
    step_seconds: float,
) -> Verdict:
    """Decide the next move of a canary at one traffic step.

    Rollback as soon as any check fails; rollback when the step has waited ``step_timeout_s``
    without ``min_requests``, or with a check still open that leans worse than its margin (a
    canary whose difference is beyond the margin moves on only once its check has decided);
    otherwise move on once the step has its requests (``promote`` after the last step) and
    keep waiting before that.

    Args:
        stable: Stable's cumulative stats.
        canary: Canary's cumulative stats.
        latency: Their paired latency windows.
        policy: The policy.
        percent: The canary's current traffic share.
        step_requests: Canary requests answered 2xx since this step began.
        step_seconds: Seconds since this step began.

    Returns:
        The verdict.
    """
    checks = analyse(stable, canary, latency, policy)

    def verdict(action: str, reason: str) -> Verdict:
        return Verdict(action, reason, percent, checks, stable, canary)

    failed = [c for c in checks if c.status == "fail"]
    if failed:
        return verdict("rollback", f"canary v{canary.version} is worse than v{stable.version}: {_said(failed)}")
    if step_requests < policy.min_requests:
        if step_seconds >= policy.step_timeout_s:
            return verdict(
                "rollback",
                f"only {step_requests} answered canary requests at {percent}% in {step_seconds:.0f} s "
                f"(need {policy.min_requests}): not enough evidence to promote",
            )
        return verdict("continue", f"{step_requests}/{policy.min_requests} answered canary requests at {percent}%")
    leaning = [c for c in checks if c.leans_worse]
    if leaning:
        said = _said(leaning)
        if step_seconds >= policy.step_timeout_s:
            return verdict(
                "rollback", f"still undecided at {percent}% after {step_seconds:.0f} s and leaning worse: {said}"
            )
        return verdict("continue", f"undecided and leaning worse at {percent}%, more requests wanted: {said}")
    open_checks = ", ".join(f"{c.name} ({c.status})" for c in checks if c.status != "pass") or "none"
    if percent >= policy.steps[-1]:
        return verdict("promote", f"no check failed over {canary.requests} canary requests; undecided: {open_checks}")
    return verdict("step", f"no check failed at {percent}% ({step_requests} requests); undecided: {open_checks}")
