"""The knowledge base: past incidents, what was done about them and what it measurably gave.

Each outcome is one JSON line: the incident's drift signature (its kind and its top causes),
the action executed and its measured benefit (the new model's metric minus the old one's on
labelled rows neither was trained on: the gate's holdout, or the next batch in a backtest).
Similar past incidents (same kind, same action, overlapping causes) raise or lower the
strategist's confidence in that action: the success rate of their outcomes, under a prior that
trusts an action with no history at ``prior_successes / (prior_successes + prior_failures)``.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["KnowledgeBase", "Outcome", "Similar"]


@dataclass(frozen=True)
class Outcome:
    """What one executed response measurably gave.

    Attributes:
        incident: The incident's id.
        at: When it was executed (ISO 8601, UTC).
        kind: The investigation's kind.
        causes: Its top causes (feature names).
        action: The action executed.
        benefit: The metric's measured gain from the action (negative: it hurt).
    """

    incident: str
    at: str
    kind: str
    causes: tuple[str, ...]
    action: str
    benefit: float


@dataclass(frozen=True)
class Similar:
    """What similar past incidents say about an action.

    Attributes:
        matches: Similar outcomes found (the most recent ``limit``).
        successes: Those with a positive benefit.
        rate: The posterior success rate.
    """

    matches: int
    successes: int
    rate: float

    def phrase(self, action: str) -> str:
        """Plain words for a reason."""
        if not self.matches:
            return f"no similar past incident; {action} trusted at {self.rate:.0%}"
        return f"{action} helped {self.successes} of {self.matches} similar past incidents"


class KnowledgeBase:
    """Outcomes of past responses, optionally kept in a JSON Lines file.

    Args:
        outcomes: Outcomes known so far, oldest first.
        path: File new outcomes are appended to (None: in memory only).
        prior_successes: Pseudo-successes of an action with no history.
        prior_failures: Pseudo-failures of an action with no history.
        limit: The most recent similar outcomes consulted.
    """

    def __init__(
        self,
        outcomes: Iterable[Outcome] = (),
        *,
        path: Path | None = None,
        prior_successes: float = 8.0,
        prior_failures: float = 0.5,
        limit: int = 10,
    ) -> None:
        self.outcomes = list(outcomes)
        self.path = path
        self.prior_successes = prior_successes
        self.prior_failures = prior_failures
        self.limit = limit

    @classmethod
    def load(cls, path: Path) -> "KnowledgeBase":
        """Read the outcomes kept in ``path`` (none when it does not exist yet)."""
        outcomes = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    data = json.loads(line)
                    outcomes.append(Outcome(**{**data, "causes": tuple(data["causes"])}))
        return cls(outcomes, path=path)

    def add(self, outcome: Outcome) -> None:
        """Remember an outcome (and append it to the file, if any)."""
        self.outcomes.append(outcome)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(asdict(outcome), sort_keys=True) + "\n")

    def similar(self, kind: str, causes: Sequence[str], action: str) -> Similar:
        """The success of ``action`` on past incidents like this one.

        Alike means the same kind and action, and causes that overlap (Jaccard ≥ 0.3) or are
        both empty.
        """
        mine = set(causes)

        def alike(o: Outcome) -> bool:
            theirs = set(o.causes)
            if not mine and not theirs:
                return True
            return len(mine & theirs) / max(len(mine | theirs), 1) >= 0.3

        found = [o for o in self.outcomes if o.kind == kind and o.action == action and alike(o)][-self.limit :]
        successes = sum(o.benefit > 0 for o in found)
        rate = (successes + self.prior_successes) / (len(found) + self.prior_successes + self.prior_failures)
        return Similar(len(found), successes, rate)
