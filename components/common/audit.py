"""The audit ledger: every decision and action, append-only JSON Lines, each line hash-chained.

One entry per line: ``seq`` (1, 2, ...), ``time`` (UTC, ISO 8601), ``incident`` (the
correlation id carried into the KFP run, the Optuna study, MLflow tags and InferenceService
annotations), ``kind`` (``detected``, ``decided``, ``approved``, ``released``, ...), ``actor``,
``data``, ``prev`` (the previous entry's hash; 64 zeros for the first) and ``hash``: the
SHA-256 of the entry's canonical JSON without ``hash``. Editing, inserting, deleting or
reordering any line breaks the chain from that line on, and ``verify`` names the first line that
does not hold. The ledger's head (last ``seq`` and ``hash``) is also kept beside it
(``<ledger>.head``), so cutting entries off the end is caught too. Someone who rewrites the whole
chain and the head can forge a consistent ledger: anchor the head elsewhere (an MLflow tag, the
object store) for that.

Appends take an exclusive lock on the ledger, so processes may share one.
"""

import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components.common.errors import DriftpilotError

__all__ = ["GENESIS", "AuditEntry", "AuditLedger", "LedgerCheck", "LedgerError"]

GENESIS = "0" * 64
"""``prev`` of the first entry."""


class LedgerError(DriftpilotError):
    """The ledger cannot be read or appended to."""


@dataclass(frozen=True)
class AuditEntry:
    """One line of the ledger.

    Attributes:
        seq: Position, from 1.
        time: UTC time of the append, ISO 8601.
        incident: The correlation id of the incident it belongs to.
        kind: What happened (``detected``, ``decided``, ``escalated``, ``approved``, ...).
        actor: Who did it (``driftpilot``, a person, a KFP run).
        data: The details (a decision's action, confidence and reason, a run's id, ...).
        prev: The previous entry's hash.
        hash: This entry's hash.
    """

    seq: int
    time: str
    incident: str
    kind: str
    actor: str
    data: dict[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class LedgerCheck:
    """What ``verify`` found.

    Attributes:
        ok: True when every line holds and the head matches.
        entries: Lines read.
        line: The first line that does not hold (1-based), or None.
        problem: What is wrong with it, or None.
    """

    ok: bool
    entries: int
    line: int | None = None
    problem: str | None = None


def _digest(fields: dict[str, Any]) -> str:
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class AuditLedger:
    """An append-only, hash-chained ledger file.

    Args:
        path: The JSON Lines file (created with its folder on the first append).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.head_path = path.with_name(path.name + ".head")

    def _last(self) -> tuple[int, str]:
        """The last entry's seq and hash, read from the ledger itself."""
        seq, last = 0, GENESIS
        for entry in self.entries():
            seq, last = entry.seq, entry.hash
        return seq, last

    def append(
        self,
        *,
        incident: str,
        kind: str,
        data: dict[str, Any],
        actor: str = "driftpilot",
        at: dt.datetime | None = None,
    ) -> AuditEntry:
        """Add one entry at the end.

        Args:
            incident: The incident's correlation id.
            kind: What happened.
            data: JSON-ready details.
            actor: Who did it.
            at: When (default: now, UTC).

        Returns:
            The entry written.

        Raises:
            LedgerError: When the ledger does not verify (nothing is appended to a broken chain)
                or cannot be written.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with (self.path.parent / f".{self.path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            check = self.verify()
            if not check.ok:
                raise LedgerError(f"{self.path} does not verify (line {check.line}: {check.problem}); not appending")
            seq, prev = self._last()
            when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="microseconds")
            fields: dict[str, Any] = {"seq": seq + 1, "time": when, "incident": incident, "kind": kind}
            fields.update({"actor": actor, "data": data, "prev": prev})
            entry = AuditEntry(**fields, hash=_digest(fields))
            line = json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False)
            # All or nothing: a full or failing disk must leave neither part of a line nor a stale head.
            size = self.path.stat().st_size if self.path.exists() else 0
            tmp = self.head_path.with_suffix(".tmp")
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError as exc:
                raise LedgerError(f"cannot append to {self.path}: {exc}") from exc
            try:
                left = memoryview((line + "\n").encode())
                while left:
                    left = left[os.write(fd, left) :]
                os.fsync(fd)
                tmp.write_text(json.dumps({"seq": entry.seq, "hash": entry.hash}) + "\n", encoding="utf-8")
                os.replace(tmp, self.head_path)
            except OSError as exc:
                os.ftruncate(fd, size)
                tmp.unlink(missing_ok=True)
                raise LedgerError(f"cannot append to {self.path}: {exc}; the ledger is as it was") from exc
            finally:
                os.close(fd)
            return entry

    def entries(self) -> Iterator[AuditEntry]:
        """Every entry in order, as written (not verified: see ``verify``).

        Raises:
            LedgerError: When a line is not an entry.
        """
        if not self.path.exists():
            return
        with self.path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    yield AuditEntry(**json.loads(line))
                except (ValueError, TypeError) as exc:
                    raise LedgerError(f"{self.path} line {number} is not a ledger entry: {exc}") from exc

    def verify(self) -> LedgerCheck:
        """Check every line's hash, the chain and the head.

        Returns:
            The first line that does not hold, if any.
        """
        prev, count = GENESIS, 0
        if self.path.exists():
            with self.path.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    count = number
                    try:
                        fields = json.loads(line)
                        stated = fields.pop("hash")
                        entry = AuditEntry(**fields, hash=stated)
                    except (ValueError, TypeError, KeyError) as exc:
                        return LedgerCheck(False, number, number, f"not a ledger entry ({exc})")
                    if entry.seq != number:
                        return LedgerCheck(False, number, number, f"seq {entry.seq} where {number} belongs")
                    if entry.prev != prev:
                        return LedgerCheck(False, number, number, "prev is not the hash of the line before")
                    if _digest(fields) != stated:
                        return LedgerCheck(False, number, number, "its content does not match its hash (edited)")
                    prev = stated
        head = self._head()
        if head is None:
            if count:
                return LedgerCheck(False, count, count, f"the head file {self.head_path} is missing")
            return LedgerCheck(True, 0)
        if head != (count, prev):
            return LedgerCheck(
                False, count, count, f"the head says {head[0]} entries ending in {head[1][:12]}…: entries were cut off"
            )
        return LedgerCheck(True, count)

    def _head(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.head_path.read_text(encoding="utf-8"))
            return int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return (-1, "unreadable")

    def story(self, incident: str) -> list[AuditEntry]:
        """The entries of one incident, in order."""
        return [entry for entry in self.entries() if entry.incident == incident]
