"""Alerts posted to real HTTP endpoints on 127.0.0.1: Slack's and a generic format, repeats held and summarised."""

from collections.abc import Iterator

import pytest

from components.common.retry import RetryPolicy
from components.decide.alerts import Alert, Alerter, Webhook
from tests.servers import WebhookReceiver as _Receiver

pytestmark = pytest.mark.integration  # real HTTP servers on 127.0.0.1


@pytest.fixture
def receivers() -> Iterator[tuple[_Receiver, _Receiver, _Receiver]]:
    made = (_Receiver(), _Receiver(), _Receiver(status=500))
    yield made
    for receiver in made:
        receiver.server.shutdown()


FAST = RetryPolicy(attempts=2, initial_s=0.01, max_wait_s=0.01)


def test_repeats_within_the_cooldown_are_held_then_summarised(receivers) -> None:  # type: ignore[no-untyped-def]
    slack, generic, _ = receivers
    now = [1000.0]
    alerter = Alerter(
        [Webhook(slack.url, "slack"), Webhook(generic.url)], cooldown_s=600, clock=lambda: now[0], retry=FAST
    )
    first = alerter.send(Alert("inc-1", "drift", "warning", "Drift on gdelt-tone", "3/16 features drifted"))
    assert first.posted and len(first.delivered) == 2
    now[0] += 60
    assert not alerter.send(Alert("inc-2", "drift", "warning", "Drift again")).posted
    assert not alerter.send(Alert("inc-3", "drift", "warning", "Drift again")).posted
    other = alerter.send(Alert("inc-4", "drift", "critical", "AUC fell 0.1"))  # another severity: its own group
    assert other.posted and other.held_before == 0
    now[0] += 600
    later = alerter.send(Alert("inc-5", "drift", "warning", "Drift once more"))
    assert later.posted and later.held_before == 2
    assert [b["incident"] for b in generic.bodies] == ["inc-1", "inc-4", "inc-5"]
    assert generic.bodies[-1]["held"] == 2 and generic.bodies[-1]["held_incidents"] == ["inc-2", "inc-3"]
    assert slack.bodies[0]["text"].startswith("*[warning] Drift on gdelt-tone* (incident `inc-1`)")
    assert "+2 similar held by the cooldown: inc-2, inc-3" in slack.bodies[-1]["text"]


def test_a_failing_webhook_is_reported_and_the_others_still_get_the_alert(receivers) -> None:  # type: ignore[no-untyped-def]
    _, generic, broken = receivers
    alerter = Alerter([Webhook(broken.url), Webhook(generic.url)], retry=FAST)
    outcome = alerter.send(Alert("inc-1", "data-quality", "critical", "Schema break in 20241022150000"))
    assert outcome.posted and outcome.delivered == (generic.url,)
    ((url, why),) = outcome.failed
    assert url == broken.url and "answered 500" in why and "after 2 attempts" in why
    assert len(broken.bodies) == 2  # retried once


def test_an_alert_no_webhook_took_is_not_counted_as_posted(receivers) -> None:  # type: ignore[no-untyped-def]
    _, _, broken = receivers
    now = [0.0]
    alerter = Alerter([Webhook(broken.url)], clock=lambda: now[0], retry=FAST)
    assert not alerter.send(Alert("inc-1", "release", "warning", "Canary rolled back")).posted
    assert alerter.send(Alert("inc-2", "release", "warning", "Canary rolled back")).failed  # not held: tried again


def test_bad_severities_and_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        Alert("inc", "drift", "panic", "t")
    with pytest.raises(ValueError, match="slack or generic"):
        Webhook("http://x", "teams")
