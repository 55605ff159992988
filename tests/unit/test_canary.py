"""Canary analysis, the controller loop and the splitter's bookkeeping, without servers."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from components.deploy.canary import (
    CanaryPolicy,
    LatencyWindows,
    Moments,
    VariantStats,
    Verdict,
    analyse,
    confidence_radius,
    judge,
)
from components.deploy.controller import run_canary
from components.deploy.splitter import Backend, Routes, TrafficSplitter, _canary_side, _scores, write_routes
from tests.traffic import SimulatedTraffic, add_request

POLICY = CanaryPolicy()


def _traffic(
    rng: np.random.Generator, n: int, every: int = 20, **degradation: float
) -> tuple[VariantStats, VariantStats, LatencyWindows]:
    """``n`` requests to each of stable and canary, their latency windows observed every ``every``."""
    stable, canary, windows = VariantStats("1"), VariantStats("2"), LatencyWindows()
    for end in range(1, n + 1):
        add_request(rng, stable)
        add_request(rng, canary, **degradation)
        if end % every == 0:
            windows.observe(stable, canary, POLICY)
    return stable, canary, windows


def test_the_radius_is_where_the_mixture_likelihood_ratio_reaches_one_over_alpha() -> None:
    variance, alpha, tau2 = 0.004, 0.05, 0.01
    radius = confidence_radius(variance, alpha, tau2)
    ratio = math.sqrt(variance / (variance + tau2)) * math.exp(tau2 * radius**2 / (2 * variance * (variance + tau2)))
    assert ratio == pytest.approx(1 / alpha)
    assert confidence_radius(variance / 4, alpha, tau2) < radius  # more data, narrower
    assert confidence_radius(0.0, alpha, tau2) == math.inf


def _looks(rng: np.random.Generator, version: str, n: int, every: int, *, worse_by: float = 0.0) -> list[VariantStats]:
    """The cumulative stats of ``n`` requests seen after every ``every`` requests.

    ``worse_by`` 1 puts every quantity exactly one margin worse than the reference traffic (0).
    """
    error = rng.random(n) < 0.01 + worse_by * POLICY.error_margin
    latency = np.where(error, 0.0, np.log(0.01 * POLICY.latency_ratio**worse_by * rng.lognormal(0, 0.3, n)))
    score = np.where(error, 0.0, rng.beta(2, 6, n) + worse_by * POLICY.score_margin)
    labelled = ~error & (rng.random(n) < 0.5)
    loss = np.where(labelled, rng.exponential(0.45, n) + worse_by * POLICY.log_loss_margin, 0.0)

    def moments(values: np.ndarray, kept: np.ndarray, end: int) -> Moments:
        return Moments(int(kept[:end].sum()), float(values[:end].sum()), float((values[:end] ** 2).sum()))

    return [
        VariantStats(
            version,
            requests=end,
            errors=int(error[:end].sum()),
            latency=moments(latency, ~error, end),
            scores=moments(score, ~error, end),
            log_loss=moments(loss, labelled, end),
        )
        for end in range(every, n + 1, every)
    ]


def test_a_canary_at_its_margins_is_rarely_rolled_back_however_often_it_is_analysed() -> None:
    """Exactly one margin worse on every check, analysed after every 20 requests for 2,000.

    That is the null hypothesis's edge, where false rollbacks are likeliest: each check may fail
    in at most alpha of the runs.
    """
    rng = np.random.default_rng(7)
    runs = 300
    failures = {"errors": 0, "latency": 0, "divergence": 0, "log_loss": 0}
    for _ in range(runs):
        failed: set[str] = set()
        looks = zip(_looks(rng, "1", 2000, 20), _looks(rng, "2", 2000, 20, worse_by=1.0), strict=True)
        windows = LatencyWindows()
        for stable, canary in looks:
            windows.observe(stable, canary, POLICY)
            failed |= {c.name for c in analyse(stable, canary, windows, POLICY) if c.status == "fail"}
        for name in failed:
            failures[name] += 1
    assert all(count / runs <= POLICY.alpha for count in failures.values()), failures


@pytest.mark.parametrize(
    ("degradation", "check"),
    [
        ({"error_rate": 0.08}, "errors"),
        ({"latency": 0.02}, "latency"),
        ({"score_shift": 0.25}, "divergence"),
        ({"score_shift": -0.2}, "divergence"),
        ({"loss": 0.2}, "log_loss"),
    ],
)
def test_each_degradation_fails_its_check_within_a_thousand_requests(degradation: dict, check: str) -> None:  # type: ignore[type-arg]
    statuses = {c.name: c.status for c in analyse(*_traffic(np.random.default_rng(1), 1000, **degradation), POLICY)}
    assert statuses[check] == "fail"
    assert [name for name, status in statuses.items() if status == "fail"] == [check]


def test_a_canary_within_every_margin_passes_every_check() -> None:
    assert {c.status for c in analyse(*_traffic(np.random.default_rng(2), 20_000), POLICY)} == {"pass"}


def test_too_few_samples_are_pending_not_judged() -> None:
    stable = VariantStats("1", requests=10, errors=10)
    canary = VariantStats("2", requests=10, errors=0)
    assert {c.status for c in analyse(stable, canary, LatencyWindows(), POLICY)} == {"pending"}


def test_judge_steps_promotes_waits_and_times_out() -> None:
    rng = np.random.default_rng(3)
    stable, canary, windows = _traffic(rng, 500)
    first, last = POLICY.steps[0], POLICY.steps[-1]

    def action(percent: int, step_requests: int, step_seconds: float = 5) -> str:
        return judge(
            stable, canary, windows, POLICY, percent=percent, step_requests=step_requests, step_seconds=step_seconds
        ).action

    assert action(first, 500) == "step" and action(last, 500) == "promote" and action(first, 10) == "continue"
    timed_out = judge(
        stable, canary, windows, POLICY, percent=first, step_requests=10, step_seconds=POLICY.step_timeout_s
    )
    assert timed_out.action == "rollback" and "not enough evidence" in timed_out.reason
    stable, broken, windows = _traffic(rng, 500, error_rate=0.5)
    verdict = judge(stable, broken, windows, POLICY, percent=first, step_requests=500, step_seconds=5)
    assert verdict.action == "rollback" and "errors" in verdict.reason
    assert json.loads(json.dumps(verdict.to_dict()))["canary"]["errors"] == broken.errors


def _noisy_latency(rng: np.random.Generator, difference: float, windows: int = 40) -> LatencyWindows:
    """Paired windows whose differences are so spread that their interval decides nothing."""
    noisy = LatencyWindows()
    for value in rng.normal(difference, 3.0, windows):
        noisy.differences.add(float(value))
    noisy.differences.total += (difference - noisy.differences.mean) * windows  # the mean exactly
    return noisy


def test_an_undecided_check_that_leans_worse_holds_the_step_then_rolls_back() -> None:
    rng = np.random.default_rng(5)
    stable, canary, _ = _traffic(rng, 500)
    last = POLICY.steps[-1]

    def verdict(difference: float, step_seconds: float = 5.0) -> Verdict:
        noisy = _noisy_latency(rng, difference)
        return judge(stable, canary, noisy, POLICY, percent=last, step_requests=500, step_seconds=step_seconds)

    held = verdict(0.5)  # twice as slow by the estimate, but not proven (the interval is wide)
    latency = {c.name: c for c in held.checks}["latency"]
    assert latency.status == "open" and latency.leans_worse and held.action == "continue", held
    timed_out = verdict(0.5, step_seconds=POLICY.step_timeout_s)
    assert timed_out.action == "rollback" and "leaning worse" in timed_out.reason and "latency" in timed_out.reason
    within = verdict(0.05)  # as undecided, but its estimate is within the margin: the step ends
    latency = {c.name: c for c in within.checks}["latency"]
    assert latency.status == "open" and not latency.leans_worse and within.action == "promote", within


def _loaded_canary(rng: np.random.Generator, slower: float) -> tuple[VariantStats, VariantStats, LatencyWindows]:
    """A host whose load quadruples latency over the canary's life while its share grows from 10% to 50%.

    Its first 50 requests are four times slower (a process warming up); after that it is ``slower``
    times stable's latency.
    """
    stable, canary, windows = VariantStats("1"), VariantStats("2"), LatencyWindows()
    for look in range(400):
        load, share = 4 ** (look / 400), 0.1 + 0.4 * look / 400
        for _ in range(20):
            if rng.random() < share:
                warm = 4.0 if canary.requests < 50 else slower
                add_request(rng, canary, latency=0.01 * load * warm)
            else:
                add_request(rng, stable, latency=0.01 * load)
        windows.observe(stable, canary, POLICY)
    return stable, canary, windows


def test_latency_is_judged_in_paired_windows_after_the_warm_up() -> None:
    """A load that rises with the canary's share, and a slow start, fail no healthy canary; 2x slower fails."""
    margin = math.log(POLICY.latency_ratio)
    for seed in range(8):
        stable, canary, windows = _loaded_canary(np.random.default_rng(seed), slower=1.0)
        assert canary.latency.mean - stable.latency.mean > margin  # pooled over time, it would look slower
        latency = {c.name: c for c in analyse(stable, canary, windows, POLICY)}["latency"]
        assert latency.status == "pass" and latency.samples[0] > 100, latency
        stable, canary, windows = _loaded_canary(np.random.default_rng(seed), slower=2.0)
        assert {c.name: c.status for c in analyse(stable, canary, windows, POLICY)}["latency"] == "fail"


def test_policy_rejects_bad_steps_and_margins() -> None:
    bad_policies = (
        {"steps": ()},
        {"steps": (50, 10)},
        {"steps": (10, 100)},
        {"alpha": 0},
        {"latency_ratio": 1.0},
        {"window_requests": 0},
        {"warmup_requests": -1},
    )
    for bad in bad_policies:
        with pytest.raises(ValueError):
            CanaryPolicy(**bad)  # type: ignore[arg-type]


def test_moments_since_a_snapshot() -> None:
    moments = Moments()
    for value in (1.0, 2.0):
        moments.add(value)
    snapshot = Moments(moments.n, moments.total, moments.squares)
    for value in (3.0, 5.0, 7.0):
        moments.add(value)
    since = moments.minus(snapshot)
    assert (since.n, since.mean, since.variance) == (3, 5.0, 4.0)


class _SimulatedTarget:
    """A router whose traffic is simulated: canary requests arrive in proportion to its share."""

    def __init__(self, seed: int, **canary: float) -> None:
        self.shares: list[int] = []
        self.traffic = SimulatedTraffic(seed, lambda: self.shares[-1] if self.shares else 0, **canary)
        self.ended = ""
        self.fail_after: int | None = None

    def set_canary(self, percent: int) -> None:
        self.shares.append(percent)

    def stats(self) -> tuple[VariantStats, VariantStats]:
        if self.fail_after is not None and len(self.shares) > self.fail_after:
            raise ConnectionError("traffic source gone")
        return self.traffic()

    def promote(self) -> None:
        self.ended = "promoted"

    def roll_back(self) -> None:
        self.ended = "rolled back"


def _run(target: _SimulatedTarget, recorded: list) -> object:  # type: ignore[type-arg]
    policy = CanaryPolicy(steps=(10, 30, 50), interval_s=1)
    clock = iter(range(10_000))
    return run_canary(target, policy, record=recorded.append, clock=lambda: float(next(clock)), sleep=lambda s: None)


def test_the_controller_steps_through_every_share_then_promotes() -> None:
    target, recorded = _SimulatedTarget(4), []  # type: ignore[var-annotated]
    outcome = _run(target, recorded)
    assert target.shares == [10, 30, 50] and target.ended == "promoted"
    assert outcome.promoted and [v.action for v in recorded] == ["step", "step", "promote"]  # type: ignore[attr-defined]


def test_the_controller_rolls_back_a_failing_canary_at_its_first_step() -> None:
    target, recorded = _SimulatedTarget(5, error_rate=0.3), []  # type: ignore[var-annotated]
    outcome = _run(target, recorded)
    assert target.shares == [10] and target.ended == "rolled back"
    assert not outcome.promoted and [v.action for v in recorded] == ["rollback"]  # type: ignore[attr-defined]


def test_the_controller_rolls_back_when_its_traffic_source_fails() -> None:
    target = _SimulatedTarget(6)
    target.fail_after = 1
    with pytest.raises(ConnectionError):
        _run(target, [])
    assert target.ended == "rolled back"


def test_the_split_follows_the_share_and_keeps_a_request_on_its_side() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    share = np.mean([_canary_side(i, 25) for i in ids])
    assert share == pytest.approx(0.25, abs=0.01)
    assert all(_canary_side(i, 25) for i in ids if _canary_side(i, 10))  # a canary at 10% stays at 25%
    assert not any(_canary_side(i, 0) for i in ids)


def test_scores_are_read_from_v1_and_v2_answers() -> None:
    assert _scores(b'{"predictions": [0.1, 0.9]}') == [0.1, 0.9]
    assert _scores(b'{"outputs": [{"name": "probability", "data": [0.3]}]}') == [0.3]
    assert _scores(b"not json") == [] and _scores(b'{"error": "bad"}') == []


def test_delayed_labels_are_scored_against_the_variant_that_answered(tmp_path: Path) -> None:
    routes = tmp_path / "routes.json"
    write_routes(routes, Routes(Backend("1", "http://127.0.0.1:1"), Backend("2", "http://127.0.0.1:2"), 50))
    splitter = TrafficSplitter(routes)
    splitter.record(Backend("2", "u"), "a", 200, 0.01, b'{"predictions": [0.9, 0.2]}')
    splitter.record(Backend("1", "u"), "b", 200, 0.01, b'{"predictions": [0.5]}')
    splitter.record(Backend("1", "u"), "c", 503, 0.01, b"{}")
    splitter.record(Backend("2", "u"), "d", 200, 0.01, b'{"predictions": [0.5, 0.5]}')
    counts = splitter.add_labels({"a": [1, 0], "b": [1, 1], "zz": [0], "d": ["yes", 1]})
    assert counts == {"matched": 2, "unknown": 1, "mismatched": 1, "invalid": 1}
    variants = splitter.stats()["variants"]
    assert variants["2"]["log_loss"]["n"] == 2
    assert variants["2"]["log_loss"]["total"] == pytest.approx(-math.log(0.9) - math.log(0.8))
    assert variants["1"]["requests"] == 2 and variants["1"]["errors"] == 1 and variants["1"]["log_loss"]["n"] == 0
