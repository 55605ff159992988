"""What the incidents page shows, read from an installation's decision state (never written here).

An incident's story is its ledger entries in order, each told in a line or two: what was
detected, what the investigation found, what was proposed with its expected benefit and cost,
what the safety policy ruled, who answered an escalation, what the gate and the canary decided.
The list of incidents is the ledger grouped by incident, in time order.
"""

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components.common.audit import AuditEntry

__all__ = ["IncidentRow", "StoryStep", "list_incidents", "tell"]

_OUTCOME_KINDS = ("released", "gated", "approved", "rejected", "escalated", "decided")


@dataclass(frozen=True)
class IncidentRow:
    """One incident in the list.

    Attributes:
        incident: Its id.
        started: Time of its first ledger entry (ISO 8601).
        updated: Time of its last.
        kind: What the investigation found (``drift``, ``data_quality``, ...; '' before it).
        action: The response proposed ('' before the decision).
        tier: The safety ruling: ``execute``, ``escalate`` or ``block`` ('' before it).
        outcome: Where it ended: the last of released, gated, approved, rejected, escalated, decided.
        pending: The id of its approval while it waits for an answer ('' otherwise).
    """

    incident: str
    started: str
    updated: str
    kind: str = ""
    action: str = ""
    tier: str = ""
    outcome: str = ""
    pending: str = ""


@dataclass(frozen=True)
class StoryStep:
    """One ledger entry, told.

    Attributes:
        seq: Its position in the ledger.
        time: When (ISO 8601).
        kind: The entry's kind.
        actor: Who.
        title: One line.
        lines: The details worth reading.
    """

    seq: int
    time: str
    kind: str
    actor: str
    title: str
    lines: list[str] = field(default_factory=list)


def _number(value: Any, digits: int = 4) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if math.isnan(number) else f"{number:.{digits}g}"


def list_incidents(entries: Iterable[AuditEntry], pending: Iterable[Mapping[str, Any]] = ()) -> list[IncidentRow]:
    """The incidents of a ledger, the most recent first.

    Args:
        entries: The ledger's entries, in order.
        pending: The pending approvals (``Approvals.pending``).
    """
    waiting = {str(a["proposal"]["incident"]): str(a["id"]) for a in pending}
    rows: dict[str, dict[str, str]] = {}
    for entry in entries:
        row = rows.setdefault(entry.incident, {"incident": entry.incident, "started": entry.time})
        row["updated"] = entry.time
        if entry.kind == "investigated":
            row["kind"] = str(entry.data.get("kind", ""))
        elif entry.kind == "decided":
            row["action"], row["tier"] = str(entry.data.get("action", "")), str(entry.data.get("tier", ""))
        if entry.kind in _OUTCOME_KINDS:
            row["outcome"] = entry.kind
    out = [IncidentRow(**row, pending=waiting.get(incident, "")) for incident, row in rows.items()]
    return sorted(out, key=lambda r: (r.updated, r.incident), reverse=True)


def _detected(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    what = data.get("detector") or data.get("kind") or data.get("signal") or "an alarm"
    lines = [f"{k}: {_number(v)}" for k, v in data.items() if isinstance(v, int | float | str) and k != "joined"]
    joined = " (joined the open incident)" if data.get("joined") else ""
    return f"Detected: {what}{joined}", lines[:6]


def _investigated(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    lines = [str(data.get("summary", ""))] if data.get("summary") else []
    causes = [c.get("feature", "") for c in data.get("causes", []) if isinstance(c, Mapping)]
    if causes:
        lines.append("likely causes: " + ", ".join(causes))
    if data.get("loss"):
        measured = "measured on labels" if data.get("measured") else "estimated from the scores"
        lines.append(f"metric drop {_number(data.get('drop'))} ({_number(data.get('z'), 3)} SE), {measured}")
    if data.get("rollback_gain") is not None and not _is_nan(data.get("rollback_gain")):
        lines.append(f"the previous champion would score {_number(data['rollback_gain'])} better on this batch")
    return f"Investigated: {data.get('kind', 'unknown')}", lines


def _is_nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _decided(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    lines = [str(data["reason"])] if data.get("reason") else []
    lines.append(
        f"expected benefit {_number(data.get('benefit', 0))}, cost {_number(data.get('cost_cpu_seconds', 0))} "
        f"CPU-s, confidence {_number(data.get('confidence', 0), 3)}"
    )
    ruled = f"safety policy: {data.get('tier', '?')}"
    if data.get("reasons"):
        ruled += " — " + "; ".join(str(r) for r in data["reasons"])
    lines.append(ruled)
    return f"Proposed {data.get('action', '?')}; ruled {data.get('tier', '?')}", lines


def _gated(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    verdict = "promote" if data.get("promote") else "keep the champion"
    lines = [str(data["reason"])] if data.get("reason") else []
    lines.append(f"measured benefit {_number(data.get('benefit'))}")
    return f"Gate: {verdict} (version {data.get('version', '?')}, {data.get('action', '')})", lines


def _released(data: Mapping[str, Any]) -> tuple[str, list[str]]:
    steps = [
        f"{s.get('percent', '?')}% {s.get('action', '?')}" for s in data.get("steps", []) if isinstance(s, Mapping)
    ]
    lines = [str(data["reason"])] if data.get("reason") else []
    if steps:
        lines.append("canary steps: " + ", ".join(steps))
    verdict = "promoted" if data.get("promoted") else "rolled back"
    return f"Canary: version {data.get('version', '?')} {verdict}", lines


def tell(entries: Iterable[AuditEntry]) -> list[StoryStep]:
    """An incident's entries told, in order."""
    tellers = {
        "detected": _detected,
        "investigated": _investigated,
        "decided": _decided,
        "gated": _gated,
        "released": _released,
    }
    steps = []
    for entry in entries:
        data = entry.data
        if entry.kind in tellers:
            title, lines = tellers[entry.kind](data)
        elif entry.kind == "escalated":
            title, lines = f"Escalated: {data.get('action', '?')} waits for a person", [str(data.get("reason", ""))]
        elif entry.kind in ("approved", "rejected"):
            title, lines = f"{entry.kind.capitalize()} by {entry.actor} ({data.get('approval', '')})", []
        elif entry.kind == "launched":
            title, lines = f"Launched run {data.get('run', '?')}", [f"model {data.get('model', '?')}"]
        elif entry.kind == "alerted":
            title, lines = f"Alert: {data.get('title', '')}", [f"posted to {data.get('posted', 0)} hook(s)"]
        else:
            title, lines = entry.kind, [f"{k}: {v}" for k, v in data.items() if not isinstance(v, list | dict)]
        steps.append(StoryStep(entry.seq, entry.time, entry.kind, entry.actor, title, [x for x in lines if x]))
    return steps
