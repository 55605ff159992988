"""The audit ledger: any edit, insertion, deletion, reordering or cut is caught and its line named."""

import datetime as dt
import itertools
import json
import threading
from pathlib import Path

import pytest

from components.common.audit import GENESIS, AuditLedger, LedgerError
from pipelines.cli import main

AT = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _ledger(tmp_path: Path, entries: int = 6) -> AuditLedger:
    ledger = AuditLedger(tmp_path / "audit" / "ledger.jsonl")
    for i in range(entries):
        incident = f"inc-{i % 2}"
        ledger.append(
            incident=incident,
            kind=("detected", "decided", "released")[i % 3],
            data={"action": "retrain", "confidence": 0.9, "reason": f"step {i}"},
            at=AT + dt.timedelta(minutes=i),
        )
    return ledger


def _lines(ledger: AuditLedger) -> list[str]:
    return ledger.path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_a_fresh_ledger_chains_every_entry_to_the_one_before(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    entries = list(ledger.entries())
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev == GENESIS and all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert ledger.verify().ok and ledger.verify().entries == 6
    assert [e.seq for e in ledger.story("inc-1")] == [2, 4, 6]


@pytest.mark.parametrize("line", range(1, 7))
def test_editing_any_line_fails_verification_at_that_line(tmp_path: Path, line: int) -> None:
    ledger = _ledger(tmp_path)
    lines = _lines(ledger)
    entry = json.loads(lines[line - 1])
    entry["data"]["confidence"] = 0.99  # a quiet edit: valid JSON, same fields
    lines[line - 1] = json.dumps(entry, sort_keys=True) + "\n"
    ledger.path.write_text("".join(lines), encoding="utf-8")
    check = ledger.verify()
    assert not check.ok and check.line == line and "edited" in (check.problem or "")


def test_a_rehashed_edit_breaks_the_next_line(tmp_path: Path) -> None:
    """An editor who recomputes the edited line's hash still breaks the chain at the next line."""
    import hashlib

    ledger = _ledger(tmp_path)
    lines = _lines(ledger)
    entry = json.loads(lines[2])
    entry["data"]["action"] = "noop"
    del entry["hash"]
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    entry["hash"] = hashlib.sha256(canonical.encode()).hexdigest()
    lines[2] = json.dumps(entry, sort_keys=True) + "\n"
    ledger.path.write_text("".join(lines), encoding="utf-8")
    check = ledger.verify()
    assert not check.ok and check.line == 4 and "prev" in (check.problem or "")


def test_deleting_reordering_inserting_and_cutting_are_caught(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    original = _lines(ledger)
    cases = {
        "deleted": original[:2] + original[3:],
        "reordered": [*original[:2], original[3], original[2], *original[4:]],
        "inserted": [*original[:3], original[1], *original[3:]],
        "cut": original[:4],
        "garbage": [*original[:1], "not json\n", *original[2:]],
    }
    for name, lines in cases.items():
        ledger.path.write_text("".join(lines), encoding="utf-8")
        check = ledger.verify()
        assert not check.ok, name
        assert check.line == {"cut": 4, "garbage": 2, "inserted": 4}.get(name, 3), (name, check)
    ledger.path.write_text("".join(original), encoding="utf-8")
    assert ledger.verify().ok


def test_nothing_is_appended_to_a_broken_ledger(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    ledger.path.write_text("".join(_lines(ledger)[:-1]), encoding="utf-8")
    with pytest.raises(LedgerError, match="does not verify"):
        ledger.append(incident="inc-9", kind="decided", data={})


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    ledger = AuditLedger(tmp_path / "ledger.jsonl")

    def write(worker: int) -> None:
        for i in range(10):
            AuditLedger(ledger.path).append(incident=f"w{worker}", kind="decided", data={"i": i})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check = ledger.verify()
    assert check.ok and check.entries == 40


def test_the_cli_verifies_names_the_line_and_tells_a_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = _ledger(tmp_path)
    assert main(["audit", "verify", "--ledger", str(ledger.path)]) == 0
    assert "6 entries, chain intact" in capsys.readouterr().out
    assert main(["audit", "show", "inc-0", "--ledger", str(ledger.path)]) == 0
    story = [line.strip() for line in capsys.readouterr().out.splitlines()]
    assert len(story) == 4 and "step 0" in story[0] and "released" in story[1] and story[-1] == "chain: intact"
    lines = _lines(ledger)
    lines[4] = lines[4].replace("step 4", "step 5")
    ledger.path.write_text("".join(lines), encoding="utf-8")
    assert main(["audit", "verify", "--ledger", str(ledger.path)]) == 1
    assert "line 5:" in capsys.readouterr().err
    assert main(["audit", "show", "nope", "--ledger", str(ledger.path)]) == 1
