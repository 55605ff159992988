"""Pending approvals: an escalated response waits here until a person approves or rejects it.

Each escalation appends an ``escalated`` entry to the audit ledger; its position names the
approval (``a<seq>``) and ``pending/a<seq>.json`` holds what was proposed and why it escalated.
``resolve`` moves it to ``resolved/`` with the person's answer and appends ``approved`` or
``rejected`` to the ledger, under the same incident. What runs an approved response reads
``resolved/``.
"""

import datetime as dt
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from components.common.audit import AuditLedger
from components.common.errors import DriftpilotError
from components.decide.safety import Ruling

__all__ = ["ApprovalError", "Approvals"]


class ApprovalError(DriftpilotError):
    """No such pending approval."""


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Approvals:
    """The pending and resolved approvals of one installation.

    Args:
        folder: Where approvals are kept.
        ledger: The audit ledger every escalation and answer is appended to.
    """

    def __init__(self, folder: Path, ledger: AuditLedger) -> None:
        self.folder = folder
        self.ledger = ledger

    def request(self, ruling: Ruling, *, at: dt.datetime | None = None) -> str:
        """Record an escalated ruling; return the approval's id."""
        proposal = asdict(ruling.proposal)
        entry = self.ledger.append(
            incident=ruling.proposal.incident,
            kind="escalated",
            data={"action": ruling.proposal.action, "confidence": ruling.proposal.confidence,
                  "reason": "; ".join(ruling.reasons)},
            at=at,
        )  # fmt: skip
        approval_id = f"a{entry.seq}"
        _write(self.folder / "pending" / f"{approval_id}.json", {
            "id": approval_id, "proposal": proposal, "reasons": list(ruling.reasons), "requested_at": entry.time
        })  # fmt: skip
        return approval_id

    def pending(self) -> list[dict[str, Any]]:
        """The approvals waiting for an answer, oldest first."""
        found = [json.loads(p.read_text(encoding="utf-8")) for p in (self.folder / "pending").glob("a*.json")]
        return sorted(found, key=lambda a: int(a["id"][1:]))

    def resolve(self, approval_id: str, *, approve: bool, actor: str, at: dt.datetime | None = None) -> dict[str, Any]:
        """Answer a pending approval.

        Args:
            approval_id: ``a<seq>``.
            approve: True to let the response run, False to reject it.
            actor: Who answers.
            at: When (default: now).

        Returns:
            The resolved approval.

        Raises:
            ApprovalError: When it is not pending (unknown, or answered before).
        """
        if not re.fullmatch(r"a[1-9][0-9]*", approval_id):
            raise ApprovalError(f"{approval_id!r} is not an approval id: a<N> (`driftpilot approvals` lists them)")
        path = self.folder / "pending" / f"{approval_id}.json"
        if not path.exists():
            answered = (self.folder / "resolved" / f"{approval_id}.json").exists()
            raise ApprovalError(
                f"approval {approval_id!r} was already answered" if answered
                else f"no pending approval {approval_id!r}; pending: {[a['id'] for a in self.pending()] or 'none'}"
            )  # fmt: skip
        approval = json.loads(path.read_text(encoding="utf-8"))
        decision = "approved" if approve else "rejected"
        entry = self.ledger.append(
            incident=approval["proposal"]["incident"],
            kind=decision,
            actor=actor,
            data={"approval": approval_id, "action": approval["proposal"]["action"]},
            at=at,
        )
        resolved = {**approval, "decision": decision, "actor": actor, "resolved_at": entry.time}
        _write(self.folder / "resolved" / f"{approval_id}.json", resolved)
        path.unlink()
        return resolved
