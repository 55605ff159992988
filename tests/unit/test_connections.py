"""Kept-alive connections are told to close once old, so a Service balances their next requests again."""

import asyncio
from typing import Any

import pytest

from components.serve.connections import MaxConnectionAge


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"connection", b"keep-alive")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(middleware: MaxConnectionAge, client: tuple[str, int] | None, kind: str = "http") -> list[Any]:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {"type": "http.request"}

    asyncio.run(middleware({"type": kind, "client": client}, receive, send))
    assert sent[1]["body"] == b"ok"
    return list(sent[0]["headers"])


CLOSE = [(b"connection", b"close")]
KEEP = [(b"connection", b"keep-alive")]


def test_the_first_answer_after_a_connections_age_closes_it_and_a_new_one_starts_afresh() -> None:
    clock = Clock()
    middleware = MaxConnectionAge(_app, max_age_s=10, clock=clock)
    peer, other = ("10.244.0.9", 50122), ("10.244.0.9", 50124)
    assert _headers(middleware, peer) == KEEP
    clock.now = 6
    assert _headers(middleware, other) == KEEP
    clock.now = 9.9
    assert _headers(middleware, peer) == KEEP
    clock.now = 10.0
    assert _headers(middleware, peer) == CLOSE  # one close header, the app's own replaced
    assert _headers(middleware, peer) == KEEP  # the client's next connection (the same port again): new
    assert _headers(middleware, other) == KEEP  # 4 s old
    clock.now = 16.0
    assert _headers(middleware, other) == CLOSE


def test_connections_not_seen_for_twice_the_age_are_forgotten() -> None:
    clock = Clock()
    middleware = MaxConnectionAge(_app, max_age_s=1, clock=clock)
    for port in range(100):
        _headers(middleware, ("10.0.0.1", port))
    clock.now = 2.5
    _headers(middleware, ("10.0.0.2", 1))  # prunes the idle ones
    assert list(middleware._first) == [("10.0.0.2", 1)] and list(middleware._last) == [("10.0.0.2", 1)]


def test_requests_without_a_peer_and_other_scopes_pass_untouched() -> None:
    clock = Clock()
    middleware = MaxConnectionAge(_app, max_age_s=1, clock=clock)
    clock.now = 5
    assert _headers(middleware, None) == KEEP
    assert _headers(middleware, ("10.0.0.1", 1), kind="websocket") == KEEP


def test_a_non_positive_age_is_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        MaxConnectionAge(_app, max_age_s=0)
