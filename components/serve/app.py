"""The model server's HTTP front: KServe's V1 and V2 (Open Inference Protocol) REST routes, lean.

KServe's own ``ModelServer`` spends about half of a single-row request in its generic request
handling (measured by ``tests/bench/serve.py``). This app serves the same ``DriftpilotModel``
(its ``preprocess`` validation and its scoring) on the same routes with Starlette and uvicorn:

* ``POST /v1/models/<name>:predict`` → ``{"predictions": [p, ...]}``;
* ``POST /v2/models/<name>/infer`` → a V2 response with one FP64 output ``probability``;
* ``GET /v1/models/<name>``, ``GET /v2/models/<name>``, ``GET /v2/models/<name>/ready``,
  ``GET /v2/health/live``, ``GET /v2/health/ready``, ``GET /v2`` (server metadata);
* ``GET /metrics``: Prometheus counters and latency histograms per route and status, and the
  running sums a canary analysis reads (answered requests, log latency, scores; by model version).

With ``max_connection_age_s`` a kept-alive connection is closed once that old
(``components.serve.connections``), so a Service balancing connections spreads requests over new pods.

Bad payloads get a 400 ``{"error": "<what is wrong and what to send>"}``, an unknown model a
404, never a 500. Only JSON bodies are read (V2's binary extension and gRPC are not served).
"""

import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from components.serve.connections import MaxConnectionAge
from components.serve.logger import InferenceLogger
from components.serve.model import DriftpilotModel

__all__ = ["build_app"]

_JSON = "application/json"
_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type=_JSON)


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def _v2_request(body: Any, model_name: str) -> InferRequest:
    """A V2 JSON body as KServe's ``InferRequest`` (what ``DriftpilotModel.preprocess`` reads)."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise InvalidInput('a V2 request is a JSON object with an "inputs" list of {name, shape, datatype, data}')
    inputs = []
    for i, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= set(tensor):
            raise InvalidInput(f"input {i} must be an object with name, shape, datatype and data")
        inputs.append(InferInput(tensor["name"], tensor["shape"], str(tensor["datatype"]), tensor["data"]))
    return InferRequest(model_name=model_name, infer_inputs=inputs, request_id=body.get("id"))


def _v2_body(response: InferResponse) -> dict[str, Any]:
    output = response.outputs[0]
    body: dict[str, Any] = {
        "model_name": response.model_name,
        "id": response.id,
        "outputs": [{"name": output.name, "shape": output.shape, "datatype": output.datatype, "data": output.data}],
    }
    if response.model_version:
        body["model_version"] = response.model_version
    return body


def build_app(model: DriftpilotModel, *, logger_url: str = "", max_connection_age_s: float = 0.0) -> Starlette:
    """The ASGI app serving one loaded model.

    Args:
        model: The model, loaded (``model.load()``) before the app takes requests.
        logger_url: Where each request and response is posted as an inference-log CloudEvent
            (``components.serve.logger``); '' for nowhere.
        max_connection_age_s: Seconds a client connection is kept alive at most; 0 for no limit.

    Returns:
        The app (run it with uvicorn).
    """
    registry = CollectorRegistry()
    log_events = Counter(
        "driftpilot_log_events",
        "Inference-log events by outcome (sent, dropped, failed)",
        ["outcome"],
        registry=registry,
    )
    inference_log = (
        InferenceLogger(
            logger_url,
            model.name,
            model.model_version or "",
            on_outcome=lambda outcome: log_events.labels(outcome).inc(),
        )
        if logger_url
        else None
    )
    if inference_log is not None:
        sender = inference_log
        queue = Gauge("driftpilot_log_queue", "Inference-log events waiting to be sent", registry=registry)
        queue.set_function(lambda: sender.queued)
    requests_total = Counter(
        "driftpilot_requests", "Requests by route and status", ["route", "status"], registry=registry
    )
    latency = Histogram(
        "driftpilot_request_seconds", "Request latency by route", ["route"], buckets=_BUCKETS, registry=registry
    )
    rows_total = Counter("driftpilot_rows_scored", "Rows scored", registry=registry)
    # Running sums a canary analysis reads per model version (components.deploy.metrics); one
    # process serves one version, so each is bound to its label once.
    version = model.model_version or ""

    def per_version(kind: type[Counter] | type[Gauge], name: str, text: str) -> Any:
        return kind(name, text, ["model_version"], registry=registry).labels(version)

    answered = per_version(Counter, "driftpilot_answered", "Requests answered 200")
    log_latency = per_version(Gauge, "driftpilot_log_latency", "Sum of log seconds of answered requests")
    log_latency_squares = per_version(Gauge, "driftpilot_log_latency_squares", "Sum of squared log seconds")
    score_sum = per_version(Counter, "driftpilot_score", "Sum of the scores returned")
    score_squares = per_version(Counter, "driftpilot_score_squares", "Sum of the squared scores returned")

    async def score(request: Request, route: str) -> Response:
        started = time.perf_counter()
        name = request.path_params["name"]
        if name != model.name:
            response = _error(f"model {name!r} is not served here; this server serves {model.name!r}", 404)
        else:
            raw = await request.body()
            event_id = request.headers.get("x-request-id") or uuid.uuid4().hex
            if inference_log is not None:
                inference_log.log(event_id, "request", raw)
            try:
                body = orjson.loads(raw)
                payload: Any = _v2_request(body, name) if route == "v2" else body
                batch = model.preprocess(payload)
                scores = model.score(batch)
                result = model.respond(batch, scores)
                rows_total.inc(batch.rows)
                score_sum.inc(float(scores.sum()))
                score_squares.inc(float(np.square(scores).sum()))
                response = _json(_v2_body(result) if isinstance(result, InferResponse) else result)
                if inference_log is not None:
                    inference_log.log(event_id, "response", bytes(response.body))
            except orjson.JSONDecodeError as exc:
                response = _error(f"the body is not JSON: {exc}", 400)
            except InvalidInput as exc:
                response = _error(str(exc.reason), 400)
        seconds = time.perf_counter() - started
        requests_total.labels(route, str(response.status_code)).inc()
        latency.labels(route).observe(seconds)
        if response.status_code == 200:
            answered.inc()
            log_seconds = math.log(max(seconds, 1e-6))
            log_latency.inc(log_seconds)
            log_latency_squares.inc(log_seconds * log_seconds)
        return response

    async def v1_predict(request: Request) -> Response:
        return await score(request, "v1")

    async def v2_infer(request: Request) -> Response:
        return await score(request, "v2")

    def known(request: Request) -> Response | None:
        name = request.path_params["name"]
        return None if name == model.name else _error(f"model {name!r} is not served here", 404)

    async def v1_status(request: Request) -> Response:
        return known(request) or _json({"name": model.name, "ready": bool(model.ready)})

    async def v2_metadata(request: Request) -> Response:
        return known(request) or _json(
            {
                "name": model.name,
                "versions": [model.model_version] if model.model_version else [],
                "platform": "driftpilot",
                "inputs": model.get_input_types(),
                "outputs": model.get_output_types(),
            }
        )

    async def v2_model_ready(request: Request) -> Response:
        return known(request) or _json({"name": model.name, "ready": bool(model.ready)}, 200 if model.ready else 503)

    async def live(request: Request) -> Response:
        return _json({"live": True})

    async def ready(request: Request) -> Response:
        return _json({"ready": bool(model.ready)}, 200 if model.ready else 503)

    async def server_metadata(request: Request) -> Response:
        return _json({"name": "driftpilot", "version": "1", "extensions": []})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if inference_log is not None:
            inference_log.close()  # send what is queued before the process ends

    middleware = [Middleware(MaxConnectionAge, max_age_s=max_connection_age_s)] if max_connection_age_s > 0 else []
    return Starlette(
        lifespan=lifespan,
        middleware=middleware,
        routes=[
            Route("/v1/models/{name}:predict", v1_predict, methods=["POST"]),
            Route("/v1/models/{name}", v1_status, methods=["GET"]),
            Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
            Route("/v2/models/{name}/ready", v2_model_ready, methods=["GET"]),
            Route("/v2/models/{name}", v2_metadata, methods=["GET"]),
            Route("/v2/health/live", live, methods=["GET"]),
            Route("/v2/health/ready", ready, methods=["GET"]),
            Route("/v2", server_metadata, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
    )
