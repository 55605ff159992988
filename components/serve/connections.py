"""Close kept-alive client connections once they are old, so a Service's new pods get their share.

A Kubernetes Service balances connections, not requests: a client that keeps its connection
alive sends every request to the pod it first reached, and pods that start later (a canary, a
scale-up) see none of its traffic. Like gRPC's ``MAX_CONNECTION_AGE``, the server answers the
first request on a connection older than ``max_age_s`` with ``Connection: close``; the client's
next request opens a new connection, which the Service balances again.
"""

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["MaxConnectionAge"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class MaxConnectionAge:
    """ASGI middleware: ``Connection: close`` on the first answer after a connection's ``max_age_s``.

    A connection is known by its peer address (``scope["client"]``) from its first request on;
    addresses not seen for ``2 * max_age_s`` are forgotten.

    Args:
        app: The ASGI app.
        max_age_s: Seconds a connection is kept.
        clock: Monotonic seconds.
    """

    def __init__(self, app: App, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s={max_age_s} must be positive")
        self.app = app
        self.max_age_s = max_age_s
        self.clock = clock
        self._first: dict[tuple[str, int], float] = {}
        self._last: dict[tuple[str, int], float] = {}
        self._pruned = clock()

    def _expired(self, peer: tuple[str, int]) -> bool:
        now = self.clock()
        if now - self._pruned > self.max_age_s:
            idle = [p for p, seen in self._last.items() if now - seen > 2 * self.max_age_s]
            for gone in idle:
                del self._first[gone], self._last[gone]
            self._pruned = now
        first = self._first.setdefault(peer, now)
        self._last[peer] = now
        if now - first < self.max_age_s:
            return False
        del self._first[peer], self._last[peer]
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; mark its answer ``Connection: close`` when its connection is old."""
        client = scope.get("client")
        if scope["type"] != "http" or not client or not self._expired((str(client[0]), int(client[1]))):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)
