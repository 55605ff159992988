"""The safety policy: may a proposed response run on its own, must a person approve it, or neither?

Declarative (one YAML file, ``SafetyPolicy.from_yaml``) and deterministic: the same proposal,
history and time always get the same ruling. Three tiers:

* ``execute``: the response runs;
* ``escalate``: it waits for a person (``driftpilot approve ID`` / ``reject ID``);
* ``monitor``: nothing runs now (nothing to do, or the loop is cooling down or busy).

Rules, in order (the first that applies decides; every reason found is kept):

1. ``none`` and ``monitor`` proposals are monitored: there is nothing to execute.
2. A confidence below ``confidence_threshold`` escalates.
3. Inside a blackout window, every action but a rollback escalates.
4. Over a budget (retrains per day, tuning CPU-seconds per day, both over the last 24 hours of
   executed responses) escalates.
5. Within the cooldown after the last executed model change (an update, a retrain, a rollback),
   or with ``max_concurrent`` responses running, it is monitored (tried again later).
6. Otherwise it executes. Rollbacks restore a known-good model and skip the budgets and the
   cooldown; a recalibration (seconds, the trees untouched) neither waits for the cooldown nor
   starts one.
"""

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from components.common.errors import ConfigError

__all__ = ["ACTIONS", "DEFAULT_POLICY_FILE", "Blackout", "Executed", "Proposal", "Ruling", "SafetyPolicy", "rule"]

DEFAULT_POLICY_FILE = Path(__file__).with_name("safety-policy.yaml")
"""The default policy, as a file to copy and edit."""

ACTIONS = ("none", "monitor", "recalibrate", "update", "retrain", "retrain_tune", "rollback", "escalate")
"""What the strategist may propose."""
_RETRAINS = frozenset({"update", "retrain", "retrain_tune"})
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Blackout:
    """A recurring window in which nothing but a rollback runs on its own.

    Attributes:
        start: ``HH:MM`` (UTC) the window opens.
        end: ``HH:MM`` (UTC) it closes; before ``start`` means it runs past midnight.
        days: Weekdays it opens on (``mon`` ... ``sun``); empty for every day.
        name: What it is for (a release freeze, a trading close).
    """

    start: str
    end: str
    days: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if not isinstance(value, str):
                raise ConfigError(
                    f"blackout {self.name or self.start!r}: {value!r} is not HH:MM; quote times in YAML "
                    '(start: "22:00"): unquoted, YAML reads 22:00 as the number 1320'
                )
            try:
                dt.time.fromisoformat(value)
            except ValueError as exc:
                raise ConfigError(f"blackout {self.name or self.start!r}: {value!r} is not HH:MM") from exc
        unknown = [d for d in self.days if d not in _WEEKDAYS]
        if unknown:
            raise ConfigError(f"blackout {self.name or self.start!r}: unknown day(s) {unknown}; use {_WEEKDAYS}")

    def contains(self, when: dt.datetime) -> bool:
        """True when ``when`` (UTC) falls inside the window."""
        when = when.astimezone(dt.UTC)
        start, end, now = dt.time.fromisoformat(self.start), dt.time.fromisoformat(self.end), when.time()
        if start <= end:
            opened_on = when if start <= now < end else None
        elif now >= start:
            opened_on = when
        elif now < end:
            opened_on = when - dt.timedelta(days=1)  # opened yesterday evening
        else:
            opened_on = None
        return opened_on is not None and (not self.days or _WEEKDAYS[opened_on.weekday()] in self.days)


@dataclass(frozen=True)
class SafetyPolicy:
    """Limits on what the loop does without a person.

    Attributes:
        confidence_threshold: Proposals less confident than this escalate.
        max_retrains_per_day: Retrains (updates, retrains, retrains with tuning) executed in
            any 24 hours.
        max_tuning_cpu_seconds_per_day: CPU-seconds of tuning executed in any 24 hours.
        cooldown_minutes: Minutes after an executed response before the next one runs.
        max_concurrent: Responses running at once.
        blackouts: Windows in which only rollbacks run on their own.
        retrain_cost: What one retrain costs, in metric units summed over batches (0.05: serving
            a model 0.01 worse for five batches costs as much): the cost ratio the value of
            retraining is weighed against (``components.decide.value``).
        cpu_second_cost: What one CPU-second of training costs, in the same units (added to
            ``retrain_cost`` for the retrain's expected CPU-seconds).
    """

    confidence_threshold: float = 0.8
    max_retrains_per_day: int = 4
    max_tuning_cpu_seconds_per_day: float = 7200.0
    cooldown_minutes: float = 60.0
    max_concurrent: int = 1
    blackouts: tuple[Blackout, ...] = field(default_factory=tuple)
    retrain_cost: float = 0.05
    cpu_second_cost: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.confidence_threshold <= 1:
            raise ConfigError(f"confidence_threshold={self.confidence_threshold} must be within 0-1")
        if min(self.max_retrains_per_day, self.max_tuning_cpu_seconds_per_day, self.cooldown_minutes) < 0:
            raise ConfigError("budgets and the cooldown must not be negative")
        if min(self.retrain_cost, self.cpu_second_cost) < 0:
            raise ConfigError("retrain_cost and cpu_second_cost must not be negative")
        if self.max_concurrent < 1:
            raise ConfigError(f"max_concurrent={self.max_concurrent} must be at least 1")

    def retrain_cost_for(self, cpu_seconds: float) -> float:
        """A retrain's cost in metric-batches: ``retrain_cost`` plus its CPU-seconds at ``cpu_second_cost``."""
        return self.retrain_cost + self.cpu_second_cost * max(cpu_seconds, 0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SafetyPolicy":
        """Read a policy; unknown keys are an error (a misspelt limit must not be ignored).

        Raises:
            ConfigError: On an unknown key or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown safety policy key(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        blackout_keys = {f.name for f in fields(Blackout)}
        blackouts = []
        windows = values.pop("blackouts", None) or []
        if not isinstance(windows, list):
            raise ConfigError(f"blackouts must be a list of windows ({{start, end, days, name}}), got {windows!r}")
        for item in windows:
            if not isinstance(item, Mapping) or not set(item) <= blackout_keys or not {"start", "end"} <= set(item):
                raise ConfigError(f"a blackout takes start and end, and may take days and name; got {item!r}")
            days = item.get("days") or []
            if not isinstance(days, list):
                raise ConfigError(f"a blackout's days must be a list such as [fri, sat], got {days!r}")
            blackouts.append(Blackout(**{**item, "days": tuple(days)}))
        try:
            return cls(**values, blackouts=tuple(blackouts))
        except TypeError as exc:
            raise ConfigError(f"bad safety policy: {exc}") from exc

    @classmethod
    def from_yaml(cls, path: Path) -> "SafetyPolicy":
        """Read a policy file.

        Raises:
            ConfigError: When the file is missing, not YAML, or not a policy.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the safety policy {path}: {exc}") from exc
        return cls.from_text(text, source=str(path))

    @classmethod
    def from_text(cls, text: str, *, source: str = "the safety policy") -> "SafetyPolicy":
        """Read a policy from YAML text.

        Args:
            text: The YAML.
            source: Where it came from, for error messages.

        Raises:
            ConfigError: When it is not YAML, or not a policy.
        """
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot read the safety policy {source}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source} must hold a mapping of policy keys")
        return cls.from_dict(data)


@dataclass(frozen=True)
class Proposal:
    """What the strategist proposes for an incident.

    Attributes:
        incident: The incident's id.
        action: One of ``ACTIONS``.
        confidence: The strategist's confidence, 0–1.
        tuning_cpu_seconds: CPU-seconds of tuning it would spend.
        reason: Why, in plain language.
        benefit: The expected gain, in the metric's units (the loss it wins back).
        cost_cpu_seconds: The expected compute it spends, tuning included.
    """

    incident: str
    action: str
    confidence: float
    tuning_cpu_seconds: float = 0.0
    reason: str = ""
    benefit: float = 0.0
    cost_cpu_seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ConfigError(f"unknown action {self.action!r}; known: {ACTIONS}")


@dataclass(frozen=True)
class Executed:
    """A response that ran (read back from the audit ledger).

    Attributes:
        at: When it started (UTC).
        action: Its action.
        tuning_cpu_seconds: Tuning it spent.
        running: True while it has not finished.
    """

    at: dt.datetime
    action: str
    tuning_cpu_seconds: float = 0.0
    running: bool = False


@dataclass(frozen=True)
class Ruling:
    """The policy's answer.

    Attributes:
        tier: ``execute``, ``escalate`` or ``monitor``.
        reasons: Every rule that spoke, the deciding one first.
        proposal: What was ruled on.
    """

    tier: str
    reasons: tuple[str, ...]
    proposal: Proposal


def rule(proposal: Proposal, history: tuple[Executed, ...], policy: SafetyPolicy, now: dt.datetime) -> Ruling:
    """Rule on a proposal.

    Args:
        proposal: The proposal.
        history: Responses executed before (any order).
        policy: The limits.
        now: The time of the ruling (UTC).

    Returns:
        The tier and its reasons.
    """
    action = proposal.action
    if action in ("none", "monitor"):
        return Ruling("monitor", (f"{action}: nothing to execute",), proposal)
    escalations, waits = [], []
    if action == "escalate":
        escalations.append("the strategist asks for a person")
    if proposal.confidence < policy.confidence_threshold:
        escalations.append(f"confidence {proposal.confidence:.2f} is below {policy.confidence_threshold:.2f}")
    if action != "rollback":
        for blackout in policy.blackouts:
            if blackout.contains(now):
                days = ",".join(blackout.days) or "daily"
                escalations.append(
                    f"inside blackout {blackout.name or ''} {blackout.start}-{blackout.end} UTC ({days})"
                )
        day = [e for e in history if now - dt.timedelta(days=1) <= e.at <= now]
        retrains = sum(e.action in _RETRAINS for e in day)
        if action in _RETRAINS and retrains >= policy.max_retrains_per_day:
            escalations.append(f"{retrains} retrains in the last 24 h (budget {policy.max_retrains_per_day})")
        tuned = sum(e.tuning_cpu_seconds for e in day)
        if proposal.tuning_cpu_seconds and tuned + proposal.tuning_cpu_seconds > policy.max_tuning_cpu_seconds_per_day:
            escalations.append(
                f"tuning would bring the last 24 h to {tuned + proposal.tuning_cpu_seconds:.0f} CPU-s "
                f"(budget {policy.max_tuning_cpu_seconds_per_day:.0f})"
            )
        changes = [e.at for e in history if e.at <= now and e.action != "recalibrate"]
        last = max(changes, default=None) if action != "recalibrate" else None
        if last is not None and now - last < dt.timedelta(minutes=policy.cooldown_minutes):
            until = last + dt.timedelta(minutes=policy.cooldown_minutes)
            waits.append(f"cooling down until {until.isoformat(timespec='minutes')} after the last response")
    running = sum(e.running for e in history)
    if running >= policy.max_concurrent:
        waits.append(f"{running} response(s) running (at most {policy.max_concurrent})")
    if escalations:
        return Ruling("escalate", tuple(escalations + waits), proposal)
    if waits:
        return Ruling("monitor", tuple(waits), proposal)
    return Ruling("execute", (f"{action} within every limit",), proposal)
