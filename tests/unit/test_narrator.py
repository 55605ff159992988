"""The optional narrator against an HTTP endpoint that speaks the OpenAI chat-completions protocol.

No language model runs here: the endpoint answers from the request it got (the entries it was
shown), which is what the narrator's side of the protocol is tested against.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.common.audit import AuditLedger
from pipelines.cli import main

pytestmark = pytest.mark.integration  # a real HTTP server on 127.0.0.1


class ChatServer:
    """``POST /v1/chat/completions``: records the body, answers with how many entries it was shown."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((dict(self.headers.items()), body))
                entries = json.loads(body["messages"][-1]["content"])
                kinds = ", ".join(e["kind"] for e in entries)
                answer = {
                    "choices": [{"message": {"role": "assistant", "content": f" {len(entries)} steps: {kinds} "}}]
                }
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def ledger(tmp_path: Path) -> AuditLedger:
    ledger = AuditLedger(tmp_path / "ledger.jsonl")
    ledger.append(incident="gdelt-tone-1", kind="investigated", data={"kind": "prior", "summary": "prior shift"})
    ledger.append(incident="other", kind="investigated", data={"kind": "none"})
    ledger.append(incident="gdelt-tone-1", kind="decided", data={"action": "recalibrate", "tier": "execute"})
    return ledger


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    server = ChatServer()
    yield server
    server.httpd.shutdown()


def test_the_narrator_summarises_one_incidents_story(
    ledger: AuditLedger, chat: ChatServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", "show", "gdelt-tone-1", "--ledger", str(ledger.path)]
    assert main(argv) == 0 and chat.requests == []  # off unless asked
    monkeypatch.setenv("DRIFTPILOT_NARRATOR_URL", chat.url)
    monkeypatch.setenv("DRIFTPILOT_NARRATOR_MODEL", "small-model")
    monkeypatch.setenv("DRIFTPILOT_NARRATOR_API_KEY", "k3y")
    assert main([*argv, "--narrate"]) == 0
    ((headers, body),) = chat.requests
    assert body["model"] == "small-model" and body["temperature"] == 0 and headers["Authorization"] == "Bearer k3y"
    assert capsys.readouterr().out.rstrip().endswith("2 steps: investigated, decided")


def test_a_failing_narrator_is_a_clear_error(
    ledger: AuditLedger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = ChatServer(status=500)
    try:
        monkeypatch.setenv("DRIFTPILOT_NARRATOR_URL", broken.url)
        monkeypatch.setenv("DRIFTPILOT_NARRATOR_MODEL", "small-model")
        assert main(["audit", "show", "gdelt-tone-1", "--ledger", str(ledger.path), "--narrate"]) == 2
    finally:
        broken.httpd.shutdown()
    assert "gave no summary" in capsys.readouterr().err
    monkeypatch.delenv("DRIFTPILOT_NARRATOR_MODEL")
    assert main(["audit", "show", "gdelt-tone-1", "--ledger", str(ledger.path), "--narrate"]) == 2
    assert "DRIFTPILOT_NARRATOR_MODEL" in capsys.readouterr().err
