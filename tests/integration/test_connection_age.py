"""A real uvicorn server (as the model server runs it) closes an old kept-alive connection; the client reconnects."""

import threading
import time
from collections.abc import Iterator

import pytest
import requests
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from components.serve.connections import MaxConnectionAge
from tests.servers import free_port

pytestmark = pytest.mark.integration


async def _peer(request: Request) -> JSONResponse:
    assert request.client is not None
    return JSONResponse({"port": request.client.port})


@pytest.fixture()
def server() -> Iterator[str]:
    app = Starlette(routes=[Route("/", _peer)], middleware=[Middleware(MaxConnectionAge, max_age_s=0.5)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running.started
    yield f"http://127.0.0.1:{port}/"
    running.should_exit = True
    thread.join(timeout=10)


def test_a_kept_alive_client_is_moved_to_a_new_connection_once_its_connection_is_old(server: str) -> None:
    session = requests.Session()
    ports, closes, started = [], 0, time.monotonic()
    while time.monotonic() - started < 2.2:
        response = session.get(server, timeout=5)
        assert response.status_code == 200
        ports.append(response.json()["port"])
        closes += response.headers.get("connection", "").lower() == "close"
        time.sleep(0.02)
    connections = len(set(ports))
    assert len(ports) > 30 and 3 <= connections <= 6, (len(ports), connections)  # one per half second
    assert closes == connections - 1 or closes == connections, (closes, connections)
    runs = [p for i, p in enumerate(ports) if i == 0 or p != ports[i - 1]]
    assert len(runs) == connections  # each connection served one unbroken run of requests, then closed
