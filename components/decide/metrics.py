"""Prometheus metrics of incidents and decisions, read from the audit ledger.

The ledger is the record of every incident and decision, so the metrics are computed from it
at scrape time (re-read only when the file changed): whichever process appends, every scrape
agrees with ``driftpilot audit``. Served by the coordinator (``driftpilot coordinate``).

* ``driftpilot_incidents_total{kind}`` — incidents investigated, by kind;
* ``driftpilot_decisions_total{action, tier}`` — proposals and the policy's ruling on them;
* ``driftpilot_alerts_total{posted}`` — alerts posted, or held by the cooldown;
* ``driftpilot_outcomes_total{action, helped}`` and ``driftpilot_outcome_benefit_sum{action}`` —
  gated candidates and what they measurably gave;
* ``driftpilot_approvals_pending`` — escalations waiting for a person;
* ``driftpilot_ledger_entries`` and ``driftpilot_ledger_intact`` (1 when ``verify`` holds).
"""

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from components.decide.core import DecisionState

__all__ = ["DecisionCollector"]


class DecisionCollector(Collector):
    """Collects the decision layer's metrics from one installation's ledger.

    Args:
        state: The installation's decision folder.
    """

    def __init__(self, state: DecisionState) -> None:
        self.state = state
        self._seen: tuple[float, int] | None = None
        self._metrics: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        """The metrics, recomputed when the ledger changed since the last scrape."""
        path = self.state.ledger.path
        stamp = (path.stat().st_mtime, path.stat().st_size) if path.exists() else (0.0, 0)
        if stamp != self._seen:
            self._metrics = self._compute()
            self._seen = stamp
        pending = GaugeMetricFamily("driftpilot_approvals_pending", "Escalations waiting for a person.")
        pending.add_metric([], len(self.state.approvals().pending()))
        yield from [*self._metrics, pending]

    def _compute(self) -> list[Metric]:
        ledger = self.state.ledger
        incidents: Counter[str] = Counter()
        decisions: Counter[tuple[str, str]] = Counter()
        alerts: Counter[str] = Counter()
        outcomes: Counter[tuple[str, str]] = Counter()
        benefit: dict[str, float] = {}
        entries = 0
        for entry in ledger.entries():
            entries += 1
            data: dict[str, Any] = entry.data
            if entry.kind == "investigated":
                incidents[str(data.get("kind"))] += 1
            elif entry.kind == "decided":
                decisions[(str(data.get("action")), str(data.get("tier")))] += 1
            elif entry.kind == "alerted":
                alerts[str(bool(data.get("posted"))).lower()] += 1
            elif entry.kind == "gated" and data.get("benefit") is not None:
                action = str(data.get("action"))
                outcomes[(action, str(float(data["benefit"]) > 0).lower())] += 1
                benefit[action] = benefit.get(action, 0.0) + float(data["benefit"])
        families: list[Metric] = []
        for name, text, labels, counts in (
            (
                "driftpilot_incidents",
                "Incidents investigated, by kind.",
                ["kind"],
                {(k,): v for k, v in incidents.items()},
            ),
            ("driftpilot_decisions", "Proposals by action and the policy's tier.", ["action", "tier"], decisions),
            (
                "driftpilot_alerts",
                "Alerts posted or held by the cooldown.",
                ["posted"],
                {(k,): v for k, v in alerts.items()},
            ),
            (
                "driftpilot_outcomes",
                "Gated candidates by action and whether they helped.",
                ["action", "helped"],
                outcomes,
            ),
        ):
            family = CounterMetricFamily(name, text, labels=labels)
            for key, value in sorted(counts.items()):
                family.add_metric(list(key), value)
            families.append(family)
        gain = GaugeMetricFamily(
            "driftpilot_outcome_benefit_sum", "Sum of the gated candidates' measured benefit.", labels=["action"]
        )
        for action, total in sorted(benefit.items()):
            gain.add_metric([action], total)
        size = GaugeMetricFamily("driftpilot_ledger_entries", "Entries in the audit ledger.")
        size.add_metric([], entries)
        intact = GaugeMetricFamily("driftpilot_ledger_intact", "1 when the ledger's hash chain verifies.")
        intact.add_metric([], 1.0 if ledger.verify().ok else 0.0)
        return [*families, gain, size, intact]
