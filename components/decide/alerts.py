"""Alerts to Slack and generic webhooks, with a cooldown that groups repeats.

Each alert belongs to a group (``drift``, ``data-quality``, ``escalation``, ``release`` ...). The
first alert of a group and severity is posted at once; further ones within ``cooldown_s`` are
held and counted, and the next alert posted for that group after the cooldown says how many
were held and for which incidents. A Slack webhook gets Slack's ``{"text": ...}``; a generic one
the alert as JSON. A webhook that fails is retried (``RetryPolicy``) and reported in the outcome,
and the other webhooks still get the alert.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from components.common.errors import DriftpilotError
from components.common.retry import RetryPolicy, retrying

__all__ = ["SEVERITIES", "Alert", "AlertOutcome", "Alerter", "Webhook"]

SEVERITIES = ("info", "warning", "critical")


class _WebhookError(DriftpilotError):
    """A webhook did not take the alert."""


@dataclass(frozen=True)
class Alert:
    """Something a person should know.

    Attributes:
        incident: The incident's id.
        group: What kind of thing happened (alerts are grouped by it and the severity).
        severity: ``info``, ``warning`` or ``critical``.
        title: One line.
        text: The details, in plain language.
    """

    incident: str
    group: str
    severity: str
    title: str
    text: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: use one of {SEVERITIES}")


@dataclass(frozen=True)
class Webhook:
    """Where alerts go.

    Attributes:
        url: The webhook's URL.
        kind: ``slack`` (Slack's incoming webhook) or ``generic`` (the alert as JSON).
    """

    url: str
    kind: str = "generic"

    def __post_init__(self) -> None:
        if self.kind not in ("slack", "generic"):
            raise ValueError(f"webhook kind {self.kind!r}: use slack or generic")


@dataclass(frozen=True)
class AlertOutcome:
    """What became of one alert.

    Attributes:
        posted: True when it was posted (to at least one webhook), False when held by the cooldown.
        delivered: Webhooks that took it.
        failed: Webhooks that did not, with why.
        held_before: Alerts of its group held since the last post, summarised in this one.
    """

    posted: bool
    delivered: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    held_before: int = 0


@dataclass
class _Group:
    last_posted: float
    held: list[str] = field(default_factory=list)


class Alerter:
    """Posts alerts, holding repeats within a cooldown.

    Args:
        webhooks: Where alerts go.
        cooldown_s: Seconds after a post during which alerts of the same group and severity are held.
        clock: Seconds (``time.time``).
        timeout_s: Seconds a webhook gets to answer.
        retry: Attempts and backoff per webhook.
    """

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        *,
        cooldown_s: float = 900.0,
        clock: Callable[[], float] = time.time,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.webhooks = tuple(webhooks)
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy(attempts=2, initial_s=0.5, max_wait_s=2.0)
        self._groups: dict[tuple[str, str], _Group] = {}

    def send(self, alert: Alert) -> AlertOutcome:
        """Post an alert, or hold it when its group posted less than ``cooldown_s`` ago."""
        now = self.clock()
        key = (alert.group, alert.severity)
        group = self._groups.get(key)
        if group is not None and now - group.last_posted < self.cooldown_s:
            group.held.append(alert.incident)
            return AlertOutcome(posted=False)
        held = group.held if group else []
        delivered, failed = [], []
        for webhook in self.webhooks:
            try:
                self._post(webhook, alert, held)
                delivered.append(webhook.url)
            except _WebhookError as exc:
                failed.append((webhook.url, str(exc)))
        if delivered or not self.webhooks:
            self._groups[key] = _Group(last_posted=now)
        return AlertOutcome(bool(delivered), tuple(delivered), tuple(failed), len(held))

    def _post(self, webhook: Webhook, alert: Alert, held: list[str]) -> None:
        summary = ""
        if held:
            shown = ", ".join(sorted(set(held))[:10])
            summary = f"(+{len(held)} similar held by the cooldown: {shown})"
        body: dict[str, Any]
        if webhook.kind == "slack":
            text = f"*[{alert.severity}] {alert.title}* (incident `{alert.incident}`)\n{alert.text}"
            body = {"text": f"{text}\n{summary}".strip()}
        else:
            body = {**asdict(alert), "held": len(held), "held_incidents": sorted(set(held))}

        def post() -> None:
            try:
                response = requests.post(webhook.url, json=body, timeout=self.timeout_s)
            except requests.RequestException as exc:
                raise _WebhookError(f"{webhook.url}: {exc}") from exc
            if response.status_code >= 300:
                raise _WebhookError(f"{webhook.url} answered {response.status_code}: {response.text[:200]}")

        retrying(
            post, what=f"post alert {alert.title!r}", error=_WebhookError, transient=lambda e: True, policy=self.retry
        )
