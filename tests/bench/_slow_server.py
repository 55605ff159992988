"""The model server with every scoring request answered after twice its own handling time.

``canary_load.py``'s degraded canary: the same ``components.serve`` process and model, each V1/V2
request held back (without CPU) for as long as the app took to answer it, so it is 2x slower on a
busy machine as on an idle one. Other routes (``/metrics``, readiness) answer at once. Takes
``components.serve``'s arguments.
"""

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from components.serve import __main__ as server

_build_app = server.build_app


def _slowed(*args: Any, **kwargs: Any) -> Any:
    inner = _build_app(*args, **kwargs)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/models/", "/v2/models/")):
            await inner(scope, receive, send)
            return
        started = time.perf_counter()
        held: list[dict[str, Any]] = []

        async def hold(message: dict[str, Any]) -> None:
            held.append(message)

        await inner(scope, receive, hold)
        await asyncio.sleep(time.perf_counter() - started)
        for message in held:
            await send(message)

    return app


if __name__ == "__main__":
    server.build_app = _slowed  # type: ignore[assignment]
    server.main()
