"""The safety policy's tiers, its determinism, and approvals recorded in the ledger."""

import datetime as dt
from pathlib import Path

import pytest

from components.common.audit import AuditLedger
from components.common.errors import ConfigError
from components.decide.approvals import ApprovalError, Approvals
from components.decide.safety import DEFAULT_POLICY_FILE, Blackout, Executed, Proposal, SafetyPolicy, rule
from pipelines.cli import main

NOW = dt.datetime(2026, 11, 20, 14, 0, tzinfo=dt.UTC)  # a Friday
POLICY = SafetyPolicy()


def _retrain(confidence: float = 0.9, cpu: float = 0.0) -> Proposal:
    return Proposal("inc-1", "retrain_tune" if cpu else "retrain", confidence, cpu, "AUC lost with drift")


def test_the_shipped_policy_file_is_the_default_policy() -> None:
    assert SafetyPolicy.from_yaml(DEFAULT_POLICY_FILE) == SafetyPolicy()


def test_a_confident_retrain_within_every_limit_executes() -> None:
    ruling = rule(_retrain(), (), POLICY, NOW)
    assert ruling.tier == "execute"


def test_low_confidence_escalates_and_nothing_to_do_is_monitored() -> None:
    assert rule(_retrain(0.79), (), POLICY, NOW).tier == "escalate"
    assert "below 0.80" in rule(_retrain(0.79), (), POLICY, NOW).reasons[0]
    assert rule(Proposal("inc-1", "monitor", 0.99), (), POLICY, NOW).tier == "monitor"
    assert rule(Proposal("inc-1", "escalate", 0.99), (), POLICY, NOW).tier == "escalate"


def test_budgets_escalate_and_count_only_the_last_24_hours() -> None:
    four = tuple(Executed(NOW - dt.timedelta(hours=2 + 3 * i), "retrain") for i in range(4))
    assert rule(_retrain(), four, POLICY, NOW).tier == "escalate"
    old = tuple(Executed(NOW - dt.timedelta(hours=25 + i), "retrain") for i in range(4))
    assert rule(_retrain(), old, POLICY, NOW).tier == "execute"
    spent = (Executed(NOW - dt.timedelta(hours=3), "retrain_tune", tuning_cpu_seconds=6000),)
    ruling = rule(_retrain(cpu=1500), spent, POLICY, NOW)
    assert ruling.tier == "escalate" and "7500 CPU-s" in ruling.reasons[0]
    assert rule(_retrain(cpu=1000), spent, POLICY, NOW).tier == "execute"


def test_cooldown_and_concurrency_wait_but_a_rollback_does_not_cool_down() -> None:
    recent = (Executed(NOW - dt.timedelta(minutes=20), "retrain"),)
    waiting = rule(_retrain(), recent, POLICY, NOW)
    assert waiting.tier == "monitor" and "cooling down until 2026-11-20T14:40" in waiting.reasons[0]
    assert rule(Proposal("inc-2", "rollback", 0.95), recent, POLICY, NOW).tier == "execute"
    busy = (Executed(NOW - dt.timedelta(hours=5), "retrain", running=True),)
    assert rule(_retrain(), busy, POLICY, NOW).tier == "monitor"


def test_a_recalibration_neither_waits_for_the_cooldown_nor_starts_one() -> None:
    recent = (Executed(NOW - dt.timedelta(minutes=20), "retrain"),)
    assert rule(Proposal("inc-2", "recalibrate", 0.95), recent, POLICY, NOW).tier == "execute"
    recalibrated = (Executed(NOW - dt.timedelta(minutes=5), "recalibrate"),)
    assert rule(_retrain(), recalibrated, POLICY, NOW).tier == "execute"


def test_blackouts_escalate_all_but_rollbacks_across_midnight_and_on_their_days() -> None:
    freeze = SafetyPolicy(blackouts=(Blackout("22:00", "06:00", ("fri",), "weekend freeze"),))
    friday_night = dt.datetime(2026, 11, 20, 23, 0, tzinfo=dt.UTC)
    saturday_early = dt.datetime(2026, 11, 21, 5, 0, tzinfo=dt.UTC)  # opened on Friday
    saturday_night = dt.datetime(2026, 11, 21, 23, 0, tzinfo=dt.UTC)
    assert rule(_retrain(), (), freeze, friday_night).tier == "escalate"
    assert "weekend freeze" in rule(_retrain(), (), freeze, saturday_early).reasons[0]
    assert rule(_retrain(), (), freeze, saturday_night).tier == "execute"
    assert rule(_retrain(), (), freeze, NOW).tier == "execute"
    assert rule(Proposal("inc-3", "rollback", 0.95), (), freeze, friday_night).tier == "execute"


def test_the_same_inputs_always_get_the_same_ruling() -> None:
    history = (Executed(NOW - dt.timedelta(hours=3), "retrain_tune", tuning_cpu_seconds=5000),)
    rulings = {rule(_retrain(0.85, 3000), history, POLICY, NOW) for _ in range(20)}
    assert len(rulings) == 1


def test_a_misspelt_or_bad_policy_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    for text, message in (
        ("confidence_treshold: 0.7\n", "unknown safety policy key"),
        ("confidence_threshold: 1.5\n", "within 0-1"),
        ("blackouts: [{start: '25:00', end: '06:00'}]\n", "not HH:MM"),
        ("blackouts: [{start: '22:00', end: '06:00', days: [funday]}]\n", "unknown day"),
        ("- a list\n", "mapping"),
        # Found by fuzzing (tests/fuzz.py): each was a TypeError before.
        ("blackouts: [{start: 22:00, end: '06:00'}]\n", "quote times in YAML"),  # YAML 1.1 reads 22:00 as 1320
        ("blackouts: [{}]\n", "takes start and end"),
        ("blackouts: true\n", "must be a list of windows"),
        ("blackouts: [{start: '22:00', end: '06:00', days: fri}]\n", "days must be a list"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            SafetyPolicy.from_yaml(path)
    with pytest.raises(ConfigError, match="unknown action"):
        Proposal("inc", "reboot", 1.0)


def test_an_escalation_waits_for_a_person_and_both_are_in_the_ledger(tmp_path: Path) -> None:
    ledger = AuditLedger(tmp_path / "audit" / "ledger.jsonl")
    approvals = Approvals(tmp_path / "audit" / "approvals", ledger)
    ruling = rule(_retrain(0.5), (), POLICY, NOW)
    approval_id = approvals.request(ruling, at=NOW)
    assert [a["id"] for a in approvals.pending()] == [approval_id]
    resolved = approvals.resolve(approval_id, approve=True, actor="ana@ops", at=NOW + dt.timedelta(minutes=5))
    assert resolved["decision"] == "approved" and approvals.pending() == []
    with pytest.raises(ApprovalError, match="already answered"):
        approvals.resolve(approval_id, approve=False, actor="bo@ops")
    with pytest.raises(ApprovalError, match="no pending approval"):
        approvals.resolve("a99", approve=True, actor="bo@ops")
    # Found by fuzzing: a path in the id reached the answered approval and answered it again.
    for bad in (f"../resolved/{approval_id}", "", f"{approval_id}/.", "/etc/passwd"):
        with pytest.raises(ApprovalError, match="not an approval id"):
            approvals.resolve(bad, approve=True, actor="bo@ops")
    story = ledger.story("inc-1")
    assert [e.kind for e in story] == ["escalated", "approved"] and story[1].actor == "ana@ops"
    assert ledger.verify().ok


def test_the_cli_lists_approves_and_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIFTPILOT_HOME", str(tmp_path))
    ledger = AuditLedger(tmp_path / "audit" / "ledger.jsonl")
    approvals = Approvals(tmp_path / "audit" / "approvals", ledger)
    first = approvals.request(rule(_retrain(0.5), (), POLICY, NOW))
    second = approvals.request(rule(Proposal("inc-2", "retrain", 0.6), (), POLICY, NOW))
    assert main(["approvals"]) == 0
    listed = capsys.readouterr().out
    assert first in listed and second in listed and "below 0.80" in listed
    assert main(["approve", first, "--actor", "ana"]) == 0
    assert main(["reject", second, "--actor", "bo"]) == 0
    assert main(["reject", second]) == 2  # answered before: a clear error
    assert "already answered" in capsys.readouterr().err
    assert [e.kind for e in ledger.entries()] == ["escalated", "escalated", "approved", "rejected"]
