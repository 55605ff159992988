"""The incidents and approvals page over a real decision state: read by anyone, answered with the token."""

import re
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from components.decide.core import DecisionState
from components.ui.app import SESSION_COOKIE, create_app
from pipelines.cli import main
from tests.decisions import INCIDENT, escalated_state

TOKEN = "a-long-enough-test-token-0123456789"


@pytest.fixture()
def state(tmp_path: Path, validated, task) -> DecisionState:
    return escalated_state(tmp_path / "audit", validated, task)


def _client(state: DecisionState) -> TestClient:
    return TestClient(create_app(state, token=TOKEN), follow_redirects=False)


def _csrf(page: str) -> str:
    match = re.search(r'name=csrf value="([0-9a-f]+)"', page)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_anyone_reads_the_incidents_their_story_and_drift_report(state: DecisionState) -> None:
    client = _client(state)
    (approval,) = state.approvals().pending()
    home = client.get("/")
    assert home.status_code == 200 and INCIDENT in home.text and approval["id"] in home.text
    assert "sign in to answer" in home.text and "Approve" not in home.text  # read-only without the token
    assert "escalate" in home.text and approval["proposal"]["action"] in home.text
    story = client.get(f"/incidents/{INCIDENT}")
    assert story.status_code == 200
    titles = re.findall(r"<li id=\"entry-\d+\"><strong>(.*?)</strong>", story.text)
    assert titles[0].startswith("Investigated: ") and titles[1].startswith("Proposed ")
    assert titles[2].startswith("Escalated: ") and "expected benefit" in story.text
    assert f'src="/incidents/{INCIDENT}/drift"' in story.text
    drift = client.get(f"/incidents/{INCIDENT}/drift")
    assert drift.status_code == 200 and "NumArticles +" in drift.text and "<svg" in drift.text
    for response in (home, story, drift):
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "<script" not in response.text
    assert client.get("/incidents/no-such-incident").status_code == 404
    assert client.get("/incidents/..%2F..%2Fledger").status_code == 404


def test_an_answer_without_the_token_is_refused_and_changes_nothing(state: DecisionState) -> None:
    client = _client(state)
    (approval,) = state.approvals().pending()
    before = state.ledger.path.read_text()
    refused = client.post(f"/approvals/{approval['id']}", data={"decision": "approve", "actor": "Mallory"})
    assert refused.status_code == 403  # no CSRF token either
    insider = _client(state)
    insider.post("/signin", data={"token": TOKEN})
    csrf = _csrf(insider.get("/").text)  # even a form's CSRF token is no session
    refused = client.post(
        f"/approvals/{approval['id']}", data={"decision": "approve", "actor": "Mallory", "csrf": csrf}
    )
    assert refused.status_code == 401
    wrong = client.post("/signin", data={"token": "not-the-token"})
    assert wrong.status_code == 401 and SESSION_COOKIE not in wrong.cookies
    assert state.ledger.path.read_text() == before and len(state.approvals().pending()) == 1


def test_a_signed_in_person_approves_and_the_ledger_names_them(state: DecisionState) -> None:
    client = _client(state)
    (approval,) = state.approvals().pending()
    signed = client.post("/signin", data={"token": TOKEN})
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    home = client.get("/")
    assert "Approve" in home.text and "Reject" in home.text
    answer = {"decision": "approve", "actor": "Ada Lovelace", "csrf": _csrf(home.text)}
    foreign = client.post(f"/approvals/{approval['id']}", data=answer, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403 and len(state.approvals().pending()) == 1
    done = client.post(f"/approvals/{approval['id']}", data=answer, headers={"origin": "http://testserver"})
    assert done.status_code == 303 and done.headers["location"] == f"/incidents/{INCIDENT}"
    last = list(state.ledger.entries())[-1]
    assert last.kind == "approved" and last.actor == "Ada Lovelace (web)" and last.data["approval"] == approval["id"]
    assert state.approvals().pending() == [] and state.ledger.verify().ok
    assert main(["audit", "verify", "--ledger", str(state.ledger.path)]) == 0
    again = client.post(f"/approvals/{approval['id']}", data=answer)
    assert again.status_code == 409 and "already answered" in again.text
    story = client.get(f"/incidents/{INCIDENT}").text
    assert "Approved by Ada Lovelace (web)" in story


def test_a_command_line_client_rejects_with_the_bearer_token(state: DecisionState) -> None:
    client = _client(state)
    (approval,) = state.approvals().pending()
    rejected = client.post(
        f"/approvals/{approval['id']}",
        data={"decision": "reject", "actor": "ops-bot"},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert rejected.status_code == 303
    last = list(state.ledger.entries())[-1]
    assert last.kind == "rejected" and last.actor == "ops-bot (web)"
    entries = len(list(state.ledger.entries()))
    bad = client.post(
        "/approvals/a999", data={"decision": "approve", "actor": "x"}, headers={"authorization": "Bearer nope"}
    )
    assert bad.status_code == 401 and len(list(state.ledger.entries())) == entries


def test_a_short_token_is_refused(state: DecisionState) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        create_app(state, token="short")


def test_a_release_ends_the_story_with_its_canary_steps(state: DecisionState) -> None:
    from types import SimpleNamespace

    from components.decide.core import record_release

    steps = [SimpleNamespace(percent=10, action="step"), SimpleNamespace(percent=25, action="rollback")]
    outcome = SimpleNamespace(
        promoted=False, verdict=SimpleNamespace(reason="latency canary − stable = +0.7"), decisions=steps
    )
    record_release(state, incident=INCIDENT, version="7", outcome=outcome, actor="run-2")
    story = _client(state).get(f"/incidents/{INCIDENT}").text
    assert "Canary: version 7 rolled back" in story and "canary steps: 10% step, 25% rollback" in story
    assert "latency canary − stable = +0.7" in story
    rows = _client(state).get("/").text
    assert "<td>released" in rows
